"""The verdict API's requests, read from an HTTP method and path: which image they name.

Routes: ``GET /v1/verdicts/{repository}@{digest}`` and ``GET /v1/verdicts/{repository}:{tag}``
(``HEAD`` too). A repository may hold slashes (``team-a/web``); ``@`` and ``:`` may come
URL-encoded (``%40``, ``%3A``), and so may the slashes. The path is decoded once, then checked
against Amazon ECR's rules for repository names, tags and digests. Every refusal is a
:class:`RequestError` carrying its HTTP status (400, 404 or 405) and a one-line message; no
input raises anything else. Pure: no AWS, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from gatekeeper.domain.images import DIGEST, ECR_REPOSITORY, TAG

PREFIX = "/v1/verdicts/"
READ_METHODS = ("GET", "HEAD")
MAX_PATH = 1024  # far above the longest valid path (256 + 1 + 71 + the prefix)

USAGE = "expected /v1/verdicts/REPOSITORY@sha256:DIGEST or /v1/verdicts/REPOSITORY:TAG"


class RequestError(Exception):
    """A request the API refuses: ``status`` (4xx), a short ``code`` and a one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VerdictRequest:
    """One image, by digest or by tag (exactly one of them is set)."""

    repository: str
    digest: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return (f"{self.repository}@{self.digest}" if self.digest
                else f"{self.repository}:{self.tag}")


def parse_request(method: object, path: object) -> VerdictRequest:
    """The image a request names; RequestError (404 no such route, 405 not a read, 400 not an
    image reference) otherwise."""
    if not isinstance(path, str) or not path.startswith(PREFIX.rstrip("/")):
        raise RequestError(404, "not-found", f"no such resource; {USAGE}")
    if path.rstrip("/") == PREFIX.rstrip("/"):
        raise RequestError(400, "bad-reference", f"the path names no image; {USAGE}")
    if not path.startswith(PREFIX):
        raise RequestError(404, "not-found", f"no such resource; {USAGE}")
    if not isinstance(method, str) or method.upper() not in READ_METHODS:
        raise RequestError(405, "method-not-allowed",
                           "the verdict API is read-only: GET or HEAD only")
    if len(path) > MAX_PATH:
        raise RequestError(400, "bad-reference", f"the path is longer than {MAX_PATH} "
                           "characters")
    try:
        reference = unquote(path[len(PREFIX):], errors="strict")
    except UnicodeDecodeError:
        raise RequestError(400, "bad-reference", "the path's %-escapes are not UTF-8") from None
    return parse_reference(reference)


def parse_reference(text: str) -> VerdictRequest:
    """``REPOSITORY@DIGEST`` or ``REPOSITORY:TAG`` (both required: no default tag here)."""
    if "@" in text:
        repository, _, digest = text.partition("@")
        if not DIGEST.fullmatch(digest):
            raise RequestError(400, "bad-reference",
                               f"{_shown(digest)} is not an image digest (sha256:<64 hex>)")
        return VerdictRequest(_repository(repository), digest=digest)
    repository, colon, tag = text.rpartition(":")
    if not colon:
        raise RequestError(400, "bad-reference",
                           f"{_shown(text)} names no tag nor digest; {USAGE}")
    if not TAG.fullmatch(tag):
        raise RequestError(400, "bad-reference", f"{_shown(tag)} is not an image tag")
    return VerdictRequest(_repository(repository), tag=tag)


def _repository(name: str) -> str:
    if not 2 <= len(name) <= 256 or not ECR_REPOSITORY.fullmatch(name):
        raise RequestError(400, "bad-reference",
                           f"{_shown(name)} is not a repository name (2 to 256 of a-z 0-9 "
                           "._- in components separated by /)")
    return name


def _shown(value: str) -> str:
    """A value quoted for a message: printable, cut short."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return ascii(text)
