"""Downloader middlewares shared by every source: retries with back-off, proxy rotation."""

#: request meta: the headers a downloader middleware added that hold credentials (a token). They are set
#: again each time the request is sent, so a scheduler that persists requests drops them first.
CREDENTIAL_HEADERS_META = "credential_headers"
