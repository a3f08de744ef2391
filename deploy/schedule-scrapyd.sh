#!/usr/bin/env bash
# Schedule one crawl on scrapyd: POST $SCRAPYD_URL/schedule.json, print scrapyd's JSON answer.
#
#   deploy/schedule-scrapyd.sh SPIDER [-s SETTING=VALUE]... [ARGUMENT=VALUE]...
#   SCRAPYD_URL=http://127.0.0.1:6800 deploy/schedule-scrapyd.sh npm mode=incremental
#   deploy/schedule-scrapyd.sh pypi -s LOG_LEVEL=DEBUG packages=requests,Django
#
# Environment:
#   SCRAPYD_URL        scrapyd's base URL, no trailing slash (default http://127.0.0.1:6800)
#   SCRAPYD_PROJECT    the deployed project (default crawler, the [deploy] project of scrapy.cfg)
#   SCRAPYD_USERNAME   with SCRAPYD_PASSWORD: basic auth, when scrapyd.conf sets username/password
#   SCRAPYD_JOB_ID     the job id (default: UTC time + random hex)
#
# The job id is also passed as the RUN_ID setting: scrapyd >= 1.5 no longer exports it to the crawl, and
# this way the ingestion_runs row and the records' _run_id carry the id that scrapyd's job list shows.
# Exit status: 0 when scrapyd answered "status": "ok", 1 when it refused, 2 on a usage error.
set -euo pipefail

usage() {
  sed -n '3,6p' "$0" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
spider=$1
shift
[[ $spider =~ ^[A-Za-z0-9_-]+$ ]] || usage

url=${SCRAPYD_URL:-http://127.0.0.1:6800}
url=${url%/} # "<url>/schedule.json" must not become "//schedule.json"
project=${SCRAPYD_PROJECT:-crawler}
job=${SCRAPYD_JOB_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}

# --data-urlencode encodes what follows the first "=", so URLs and commas in values arrive intact
form=(
  --data-urlencode "project=$project"
  --data-urlencode "spider=$spider"
  --data-urlencode "jobid=$job"
  --data-urlencode "setting=RUN_ID=$job"
)
while [[ $# -gt 0 ]]; do
  case $1 in
    -s)
      [[ $# -ge 2 && $2 == *=* ]] || usage
      form+=(--data-urlencode "setting=$2")
      shift 2
      ;;
    *=*)
      form+=(--data-urlencode "$1")
      shift
      ;;
    *) usage ;;
  esac
done

# credentials go to curl on stdin, not on its command line where `ps` would show them
auth=""
if [[ -n ${SCRAPYD_USERNAME:-} ]]; then
  credentials="$SCRAPYD_USERNAME:${SCRAPYD_PASSWORD:-}"
  credentials=${credentials//\\/\\\\}
  credentials=${credentials//\"/\\\"}
  auth="user = \"$credentials\""
fi

answer=$(printf '%s\n' "$auth" | curl --silent --show-error --config - \
  --connect-timeout 10 --max-time 60 "${form[@]}" "$url/schedule.json")
if [[ $answer =~ \"status\":\ *\"ok\" ]]; then
  printf '%s\n' "$answer"
else
  printf 'schedule-scrapyd: %s/schedule.json refused %s: %s\n' "$url" "$spider" "$answer" >&2
  exit 1
fi
