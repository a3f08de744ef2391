"""Stream a response body to a temporary file instead of memory: bulk downloads (zone files, dumps).

Scrapy holds every response body in memory; a file of gigabytes cannot go that way. A request whose
meta has :data:`STREAM_TO_FILE_META` (a directory, or ``True`` for the system's temporary one) is
fetched by :class:`FileDownloadHandler` with its own aiohttp session: a 2xx body is written to a new
file in that directory, chunk by chunk, and the response comes back with an empty body and the file's
path and size in its meta (:data:`DOWNLOADED_FILE_META`, :data:`DOWNLOADED_BYTES_META`). A body cut
short by the connection is flagged ``dataloss`` (the bytes received are kept, for the spider to judge).
Every other request goes to the project's usual handler. The callback owns the file: it deletes it
(:func:`discard_download`), and a bulk spider removes what a killed process left behind
(:func:`remove_stale_downloads`).

Downloader middlewares (retries, authentication, the user agent) apply as to any request; the size cap
(``DOWNLOAD_MAXSIZE``) does not, since nothing is held in memory. ``download_timeout`` bounds the wait for
each read, not the whole transfer (a zone file takes minutes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from scrapy import Request
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadConnectionRefusedError, DownloadFailedError, DownloadTimeoutError
from scrapy.http import Headers, Response
from scrapy.utils.misc import build_from_crawler, load_object

from crawler.scrapy_compat import AIOHTTP_HANDLER
from crawler.storage import ObjectStore
from crawler.storage.base import TEMP_PREFIX

logger = logging.getLogger(__name__)

#: request meta: stream the body to a file in this directory (``True``: the system's temporary directory)
STREAM_TO_FILE_META = "stream_to_file"
#: response meta: the path of the file holding the body (absent when the status was not 2xx)
DOWNLOADED_FILE_META = "downloaded_file"
#: response meta: the number of body bytes written to that file
DOWNLOADED_BYTES_META = "downloaded_bytes"
#: name prefix of the files this handler writes (a bulk spider removes stale ones, and names the files
#: it derives from them with the same prefix)
FILE_PREFIX = ".download-"
CHUNK_BYTES = 1 << 20
#: the most of an error body (not 2xx) kept in memory
ERROR_BODY_BYTES = 64 * 1024


class FileDownloadHandler(BaseDownloadHandler):
    """See the module docstring. Registered for ``http`` and ``https`` by the sources that need it."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        handler = crawler.settings.get("FILE_DOWNLOAD_FALLBACK_HANDLER") or AIOHTTP_HANDLER
        self.fallback = build_from_crawler(load_object(handler), crawler)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made in the running event loop, on first use
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
            )
        return self._session

    async def download_request(self, request: Request) -> Response:
        target = request.meta.get(STREAM_TO_FILE_META)
        if not target:
            return await self.fallback.download_request(request)
        directory = tempfile.gettempdir() if target is True else str(target)
        read_timeout = float(request.meta.get("download_timeout") or 180)
        timeout = aiohttp.ClientTimeout(total=None, connect=min(read_timeout, 30), sock_read=read_timeout)
        try:
            async with self.session().request(
                request.method,
                request.url,
                data=request.body or None,
                headers=request.headers.to_unicode_dict(),
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                headers = Headers(list(answer.headers.items()))
                if not 200 <= answer.status < 300 or request.method == "HEAD":
                    body = await answer.content.read(ERROR_BODY_BYTES)
                    return Response(request.url, status=answer.status, headers=headers, body=body, request=request)
                path, written, flags = await self._write(answer, directory)
        except TimeoutError as exc:
            raise DownloadTimeoutError(f"{request.url}: no data for {read_timeout} s") from exc
        except aiohttp.ClientConnectorError as exc:
            raise DownloadConnectionRefusedError(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise DownloadFailedError(str(exc)) from exc
        request.meta[DOWNLOADED_FILE_META] = path
        request.meta[DOWNLOADED_BYTES_META] = written
        return Response(request.url, status=answer.status, headers=headers, request=request, flags=flags)

    @staticmethod
    async def _write(answer: aiohttp.ClientResponse, directory: str) -> tuple[str, int, list[str]]:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=FILE_PREFIX, suffix=".part", dir=directory)
        written = 0
        flags: list[str] = []
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    async for chunk in answer.content.iter_chunked(CHUNK_BYTES):
                        out.write(chunk)
                        written += len(chunk)
                except aiohttp.ClientPayloadError:
                    flags.append("dataloss")  # the connection ended before the body did
        except BaseException:
            discard_download(path)
            raise
        return path, written, flags

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.fallback.close()


def downloaded_file(response: Response) -> tuple[str, int] | None:
    """The (path, size) of a response streamed to a file by :class:`FileDownloadHandler`, else None."""
    meta: dict[str, Any] = response.meta if response.request is not None else {}
    path = meta.get(DOWNLOADED_FILE_META)
    return (path, int(meta.get(DOWNLOADED_BYTES_META, 0))) if path else None


def discard_download(path: str | None) -> None:
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def keep_file(store: ObjectStore, key: str, path: str, content_type: str) -> None:
    """Store the local file ``path`` under ``key``. Into a local store on the same file system it is
    hard-linked (atomically: a temporary name renamed over the key), which costs no copy of a file of
    gigabytes; the caller may then delete ``path`` and must not change it. Elsewhere it is uploaded."""
    target = store.local_path(key)
    if target is not None:
        directory = os.path.dirname(target)
        temporary = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            os.makedirs(directory, exist_ok=True)
            os.link(path, temporary)
        except OSError:  # another file system, or links not allowed: a copy
            pass
        else:
            try:
                # the store's own files are 0666 less the umask; a download's temporary file is 0600
                os.chmod(temporary, 0o666 & ~_umask())
                os.replace(temporary, target)
            except BaseException:
                discard_download(temporary)
                raise
            return
    store.put_file(key, path, content_type)


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it: a race with other threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def remove_stale_downloads(directory: str) -> int:
    """Remove the files a killed process left in ``directory`` (call before a crawl downloads there)."""
    removed = 0
    for path in Path(directory).glob(f"{FILE_PREFIX}*") if Path(directory).is_dir() else ():
        discard_download(str(path))
        removed += 1
    return removed
