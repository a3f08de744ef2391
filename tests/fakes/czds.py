"""Loopback fake of ICANN's CZDS: the account API's login, the download links, and zone files.

Built from the CZDS API specification (``../shared/samples/czds/``): ``POST /api/authenticate`` (JSON
credentials, a User-Agent required) answers ``{"accessToken": <JWT>}`` whose ``exp`` is
``token_lifetime`` seconds away, and 429 after ``login_limit`` logins in ``login_window`` seconds;
``GET /czds/downloads/links`` lists ``<base>/czds/downloads/<tld>.zone`` for every zone served;
``HEAD``/``GET`` of a zone give ``Content-Length``, ``Last-Modified``, ``Content-Disposition`` and
the gzip body (``text/dns``... ``application/x-gzip`` on HEAD, as the spec's example shows). A request
without a valid token is a 401 with an empty body.

Faults, per zone (``zone.fault``): ``forbidden`` (403), ``terms`` (409), ``cut`` (the connection closes
half way through the body), ``short`` (HEAD announces more bytes than the body has), ``corrupt`` (the
gzip file itself is cut, with a matching Content-Length: a truncation nothing but the gzip stream
shows). ``expire_tokens()`` makes every issued token answer 401 (a token revoked mid-run).

:func:`write_zone` generates zone files of any size in the registry format or in RFC 1035 syntax, with
names that change from one zone date to the next (``churn`` removed and added per day).

    python -m tests.fakes.czds --port 0 --zone example=/path/example.zone.gz
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from isal import igzip

from tests.fakes._server import run_in_thread, run_standalone

USERNAME = "zone-user@example.com"
PASSWORD = "tlpWtpkEj8NT2#m"
FAULTS = ("forbidden", "terms", "cut", "short", "corrupt")
#: a SHA-256 digest's length (dnspython checks it)
DS_DIGEST = "49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE49FD46E6C4B45C55D4AC69CB"


@dataclass
class Zone:
    path: str
    last_modified: datetime
    fault: str | None = None
    #: seconds between 64 KiB chunks of the body (a slow download, to kill a crawl during it)
    delay: float = 0.0


@dataclass
class FakeCzds:
    zones: dict[str, Zone] = field(default_factory=dict)
    username: str = USERNAME
    password: str = PASSWORD
    token_lifetime: float = 24 * 3600
    login_limit: int = 8
    login_window: float = 300.0
    base_url: str = ""
    #: after this many authorized requests every token is revoked, once (a 401 mid-run)
    revoke_after: int | None = None
    authorized: int = 0
    #: counts, for tests: logins attempted, and requests per (method, tld)
    logins: int = 0
    downloads: dict[str, int] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _login_times: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- control ------------------------------------------------------------------------------------

    def add_zone(
        self, tld: str, path: str | Path, last_modified: datetime, fault: str | None = None, delay: float = 0.0
    ) -> None:
        assert fault in (None, *FAULTS), fault
        self.zones[tld] = Zone(str(path), last_modified, fault, delay)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def auth_url(self) -> str:
        return self.base_url

    @property
    def api_url(self) -> str:
        return self.base_url

    # -- the app ------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/authenticate", self.authenticate)
        app.router.add_get("/czds/downloads/links", self.links)
        app.router.add_route("HEAD", "/czds/downloads/{name}", self.zone)
        app.router.add_get("/czds/downloads/{name}", self.zone, allow_head=False)
        return app

    @contextmanager
    def serve(self) -> Iterator[FakeCzds]:
        with run_in_thread(self.app(), name="fake-czds") as handle:
            self.base_url = handle.base_url.rstrip("/")
            yield self

    def _issue(self) -> str:
        now = time.time()
        header = _b64({"kid": "fake", "alg": "RS256"})
        claims = _b64({"ver": 1, "iat": int(now), "exp": int(now + self.token_lifetime), "sub": self.username})
        token = f"{header}.{claims}.{_b64({'n': len(self._tokens), 't': now})}"
        self._tokens.add(token)
        return token

    async def authenticate(self, request: web.Request) -> web.Response:
        if not request.headers.get("User-Agent"):
            return web.Response(status=302, headers={"Location": "/maintenance"})
        if request.content_type != "application/json":
            return web.json_response({"status": 415, "error": "Unsupported media type"}, status=415)
        with self._lock:
            now = time.monotonic()
            self.logins += 1
            self._login_times = [t for t in self._login_times if now - t < self.login_window]
            if len(self._login_times) >= self.login_limit:
                return web.Response(status=429, headers={"Retry-After": "1"})
            self._login_times.append(now)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400)
        if not isinstance(body, dict) or body.get("username") != self.username or body.get("password") != self.password:
            return web.Response(status=401)
        with self._lock:
            token = self._issue()
        return web.json_response({"accessToken": token})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        with self._lock:
            if not header.startswith("Bearer ") or token not in self._tokens:
                return False
            claims = orjson.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            if claims["exp"] <= time.time():
                return False
            self.authorized += 1
            if self.revoke_after is not None and self.authorized > self.revoke_after:
                self.revoke_after = None
                self._tokens.clear()
                return False
            return True

    async def links(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, content_type="text/dns")
        base = f"{request.scheme}://{request.host}"
        return web.json_response([f"{base}/czds/downloads/{tld}.zone" for tld in sorted(self.zones)])

    async def zone(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, content_type="text/dns")
        name = request.match_info["name"]
        zone = self.zones.get(name.removesuffix(".zone")) if name.endswith(".zone") else None
        if zone is None or zone.fault == "forbidden":
            return web.Response(status=403, content_type="text/dns")
        if zone.fault == "terms":
            return web.Response(status=409, content_type="text/dns")
        tld = name.removesuffix(".zone")
        size = Path(zone.path).stat().st_size
        served = size // 2 if zone.fault == "corrupt" else size
        headers = {
            "Content-Type": "application/x-gzip" if request.method == "HEAD" else "text/dns",
            "Content-Disposition": f"attachment;filename={tld}.txt.gz",
            # the spec's example writes no space after the comma
            "Last-Modified": format_datetime(zone.last_modified, usegmt=True).replace(", ", ",", 1),
        }
        if request.method == "HEAD":
            self.heads[tld] = self.heads.get(tld, 0) + 1
            announced = served + 1000 if zone.fault == "short" else served
            return web.Response(status=200, headers={**headers, "Content-Length": str(announced)})
        self.downloads[tld] = self.downloads.get(tld, 0) + 1
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = served
        await response.prepare(request)
        limit = served // 2 if zone.fault == "cut" else served
        sent = 0
        chunk_size = 64 * 1024 if zone.delay else 1 << 20
        with open(zone.path, "rb") as source:
            while sent < limit:
                chunk = source.read(min(chunk_size, limit - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
                if zone.delay:
                    await asyncio.sleep(zone.delay)
        if zone.fault == "cut":
            assert request.transport is not None
            request.transport.close()  # the connection drops with the body half sent
            return response
        await response.write_eof()
        return response


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


# -- zone files ---------------------------------------------------------------------------------------


def zone_names(count: int, day: int, churn: int) -> range:
    """The indexes of the names delegated on zone day ``day``: each day the ``churn`` oldest go and as
    many new ones come."""
    return range(day * churn, day * churn + count)


def domain_label(index: int) -> str:
    return f"d{index:07x}-{'abcdefgh'[index % 8] * (1 + index % 5)}"


def name_servers(index: int) -> tuple[str, str]:
    host = f"host{(index * 7919) % 5000}.net"
    return f"ns1.{host}", f"ns2.{host}"


def write_zone(
    path: str | Path, tld: str, count: int, *, day: int = 0, churn: int = 0, syntax: str = "registry"
) -> Path:
    """A gzip zone file of ``count`` delegations of ``tld`` on zone day ``day`` (see :func:`zone_names`):
    two NS records each, a DS for every tenth, glue A records for every hundredth name's own name server,
    and the apex's SOA and NS. ``syntax``: ``registry`` or ``rfc1035``."""
    path = Path(path)
    with igzip.open(path, "wb", compresslevel=2) as out:
        lines: list[str] = []
        if syntax == "registry":
            lines.append(f"{tld}.\t86400\tin\tsoa\ta.nic.{tld}. noc.nic.{tld}. {day + 1} 1800 900 604800 86400\n")
            lines.append(f"{tld}.\t172800\tin\tns\ta.nic.{tld}.\n")
        else:
            lines.append(f"$ORIGIN {tld}.\n$TTL 172800 ; two days\n")
            lines.append(f"@ IN SOA a.nic noc.nic (\n\t{day + 1} ; serial\n\t1800 900 604800 86400 )\n\tIN NS a.nic\n")
        for index in zone_names(count, day, churn):
            label = domain_label(index)
            first, second = name_servers(index)
            if syntax == "registry":
                lines.append(f"{label}.{tld}.\t172800\tin\tns\t{first}.\n{label}.{tld}.\t172800\tin\tns\t{second}.\n")
                if index % 10 == 0:
                    lines.append(f"{label}.{tld}.\t86400\tin\tds\t{index % 65535} 8 2 {DS_DIGEST}\n")
                if index % 100 == 0:
                    lines.append(f"ns1.{label}.{tld}.\t172800\tin\ta\t192.0.2.{index % 250}\n")
            else:
                lines.append(f"{label} NS {first}.\n\t NS {second}.\n")
                if index % 10 == 0:
                    lines.append(f'\t86400 IN DS ( {index % 65535} 8 2\n\t\t{DS_DIGEST} ) ; "key"\n')
                if index % 100 == 0:
                    lines.append(f"ns1.{label} A 192.0.2.{index % 250}\n")
            if len(lines) >= 20_000:
                out.write("".join(lines).encode())
                lines = []
        out.write("".join(lines).encode())
    return path


def zone_day(day: int) -> datetime:
    """The Last-Modified of zone day ``day`` (days from 2026-11-01, 00:05 UTC)."""
    start = date(2026, 11, 1).toordinal() + day
    return datetime.combine(date.fromordinal(start), datetime.min.time(), UTC).replace(minute=5)


def main() -> None:  # pragma: no cover - a process for benchmarks
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--zone", action="append", default=[], help="tld=path[@YYYY-MM-DD]")
    arguments = parser.parse_args()
    fake = FakeCzds()
    for spec in arguments.zone:
        tld, _, rest = spec.partition("=")
        path, _, day = rest.partition("@")
        moment = datetime.fromisoformat(day).replace(tzinfo=UTC) if day else zone_day(0)
        fake.add_zone(tld, path, moment)
    run_standalone(fake.app(), arguments.host, arguments.port, lambda h: {"url": h.base_url.rstrip("/")})


if __name__ == "__main__":  # pragma: no cover
    main()
