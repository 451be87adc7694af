"""Downloading CISA's KEV catalog over HTTPS (urllib: no dependency), bounded in time and size.

A download that fails in any way (no connection, a timeout, an HTTP error status, a body larger
than the cap) raises :class:`FeedError` with the reason; nothing is written anywhere here.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from gatekeeper.domain.kev import MAX_CATALOG_BYTES

_CHUNK = 256 * 1024
USER_AGENT = "ecr-scan-gatekeeper-kev-refresh"


class FeedError(Exception):
    """The catalog could not be downloaded."""


def download(url: str, *, timeout: float = 30.0, max_bytes: int = MAX_CATALOG_BYTES) -> bytes:
    """The body at ``url`` (http or https only): at most ``max_bytes``, read within
    ``timeout`` seconds in all (not per read, so a server dripping bytes cannot hold it)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise FeedError(f"{url}: only http(s) URLs are fetched")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={  # noqa: S310 - scheme checked above
        "User-Agent": USER_AGENT, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FeedError(f"{url}: {declared} bytes, more than the {max_bytes} allowed")
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise FeedError(f"{url}: more than the {max_bytes} bytes allowed")
                if time.monotonic() > deadline:
                    raise FeedError(f"{url}: not read within {timeout:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as err:
        raise FeedError(f"{url}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise FeedError(f"{url}: {err.reason}") from None
    except (TimeoutError, OSError) as err:
        raise FeedError(f"{url}: {type(err).__name__}: {err}") from None
    return b"".join(chunks)
