"""Loopback fake of Clearbit's company and person lookups, alive or retired.

* ``GET /v2/companies/find?domain=`` and ``GET /v2/people/find?email=`` with ``Authorization: Bearer
  <key>`` (or HTTP basic with the key as user name, as Clearbit's clients send it);
* answers in the v2 schema, or the old one (``schema="old"``: ``personal`` instead of ``emailProvider``,
  no ``site.emailAddresses``), the shapes of ``/work/shared/samples/clearbit``;
* unknown records: 404 ``{"error": {"type": "unknown_record", ...}}`` (Clearbit's own not-found);
* ``retired=<status>``: every lookup answers that status (401, 403, 404 or 410) with a plain HTML page, as
  a shut-down endpoint does;
* ``requests`` counts what was asked, ``keys_seen`` the credentials sent.
"""

from __future__ import annotations

import base64
import collections
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

from tests.fakes._server import ServerHandle, run_in_thread


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class FakeClearbit:
    def __init__(
        self,
        *,
        keys: Sequence[str] = ("test-clearbit-key",),
        companies: dict[str, dict[str, Any]] | None = None,
        people: dict[str, dict[str, str]] | None = None,
        schema: str = "v2",
        retired: int | None = None,
    ) -> None:
        self.keys = set(keys)
        #: domain -> {"name", "addresses": [...], "webmail": bool}
        self.companies = companies or {}
        #: address -> {"given", "family"}
        self.people = people or {}
        self.schema = schema
        self.retired = retired
        self.requests: collections.Counter[str] = collections.Counter()
        self.keys_seen: list[str] = []
        self.url = ""

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/companies/find", self.company)
        app.router.add_get("/v2/people/find", self.person)
        return app

    def _key(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:]
        if header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode(errors="replace").split(":")[0]
        return ""

    def _refused(self, request: web.Request, what: str) -> web.Response | None:
        self.requests[what] += 1
        key = self._key(request)
        self.keys_seen.append(key)
        if self.retired is not None:
            page = b"<!doctype html><html><body><h1>This API has been retired</h1></body></html>"
            return web.Response(status=self.retired, body=page, content_type="text/html")
        if key not in self.keys:
            return _json({"error": {"type": "auth_required", "message": "API key is invalid"}}, 401)
        return None

    async def company(self, request: web.Request) -> web.Response:
        if refused := self._refused(request, "company"):
            return refused
        domain = request.query.get("domain", "").lower()
        company = self.companies.get(domain)
        if company is None:
            return _json({"error": {"type": "unknown_record", "message": "Unknown domain"}}, 404)
        if self.schema == "old":
            return _json(
                {
                    "id": "c-" + domain,
                    "name": company["name"],
                    "legalName": company["name"],
                    "domain": domain,
                    "url": f"http://{domain}",
                    "personal": company.get("webmail", False),
                    "employees": 200,
                }
            )
        return _json(
            {
                "id": "c-" + domain,
                "name": company["name"],
                "legalName": company["name"] + " Inc",
                "domain": domain,
                "domainAliases": [],
                "site": {"phoneNumbers": [], "emailAddresses": company.get("addresses", [])},
                "emailProvider": company.get("webmail", False),
                "type": "private",
                "metrics": {"employees": 900},
                "indexedAt": "2021-12-24T02:50:54.380Z",
            }
        )

    async def person(self, request: web.Request) -> web.Response:
        if refused := self._refused(request, "person"):
            return refused
        address = request.query.get("email", "").lower()
        person = self.people.get(address)
        if person is None:
            return _json({"error": {"type": "unknown_record", "message": "Unknown email address"}}, 404)
        name = {
            "fullName": f"{person['given']} {person['family']}",
            "givenName": person["given"],
            "familyName": person["family"],
        }
        return _json(
            {"id": "p-" + address, "name": name, "email": address, "employment": {"domain": address.split("@")[1]}}
        )

    @property
    def company_url(self) -> str:
        return self.url + "v2/companies/find"

    @property
    def person_url(self) -> str:
        return self.url + "v2/people/find"

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeClearbit]:
        with run_in_thread(self.make_app(), host, port, name="fake-clearbit") as handle:
            self._bind(handle)
            yield self

    def _bind(self, handle: ServerHandle) -> dict[str, Any]:
        self.url = handle.base_url
        return {"url": self.url}
