"""The verdict API's use case: answer a read of one image's recorded verdict.

``GET /v1/verdicts/{repository}@{digest}`` reads the record; ``.../{repository}:{tag}`` first
resolves the tag to the digest it names in ECR now. The answer is 200 with the verdict
document and its signed envelope, or a JSON error: 4xx for anything the caller asked wrong
(see :mod:`gatekeeper.domain.verdict_request`), 404 for an image without a verdict, 503 when
the verdict table or ECR could not be read. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gatekeeper.adapters.ecr import ImageGone
from gatekeeper.adapters.store import ImageRecord
from gatekeeper.domain.verdict_request import RequestError, VerdictRequest, parse_request
from gatekeeper.observability import logger
from gatekeeper.render.record import verdict_document, verdict_status

JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


class Records(Protocol):
    def get(self, repository: str, digest: str) -> ImageRecord | None: ...


class TagResolver(Protocol):
    def holder(self, repository: str, tag: str) -> str | None: ...


class Unavailable(Exception):
    """The verdict table or ECR could not be read (throttled, down, not allowed)."""


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, JSON body (None for HEAD) and headers."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))

    @property
    def code(self) -> str | None:
        """The error's code, None for a success."""
        error = (self.body or {}).get("error")
        return error.get("code") if isinstance(error, dict) else None


def error(status: int, code: str, message: str, **headers: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}},
                    {**JSON_HEADERS, **headers})


class VerdictApi:
    """Reads verdicts from the store, resolving tags through ECR."""

    def __init__(self, records: Records, images: TagResolver) -> None:
        self.records = records
        self.images = images

    def answer(self, method: str, path: str) -> Response:
        """The response to one request; never raises for any method or path."""
        try:
            request = parse_request(method, path)
            response = self._lookup(request)
        except RequestError as refused:
            extra = {"allow": "GET, HEAD"} if refused.status == 405 else {}
            response = error(refused.status, refused.code, refused.message, **extra)
        except Unavailable as err:
            response = error(503, "unavailable", f"the verdict could not be read now ({err}); "
                             "retry later")
        if str(method).upper() == "HEAD":
            return Response(response.status, None, response.headers)
        return response

    def _lookup(self, request: VerdictRequest) -> Response:
        digest = request.digest or self._resolve(request.repository, str(request.tag))
        try:
            record = self.records.get(request.repository, digest)
        except Exception as err:  # the table: throttled, unreachable, access denied
            logger.warning("verdict table read failed", repository=request.repository,
                           digest=digest, reason=_reason(err))
            raise Unavailable("verdict table read failed") from err
        image = f"{request.repository}@{digest}"
        if record is None:
            raise RequestError(404, "no-verdict", f"no verdict recorded for {image}")
        if not record.judged:
            raise RequestError(404, "verdict-pending",
                               f"{image} has no verdict yet (waiting for its scan)")
        body: dict[str, Any] = {"repository": request.repository, "digest": digest}
        if request.tag:
            body["tag"] = request.tag
        body["verdict"] = verdict_document(record)  # exactly what the envelope's predicate is
        body["status"] = verdict_status(record)  # settled, gone...: not signed
        body["envelope"] = getattr(record, "envelope", None)  # signed verdicts, when present
        return Response(200, body)

    def _resolve(self, repository: str, tag: str) -> str:
        """The digest the tag names in ECR now."""
        try:
            digest = self.images.holder(repository, tag)
        except ImageGone:
            raise RequestError(404, "repository-not-found",
                               f"repository {repository} not found") from None
        except Exception as err:  # ECR: throttled, unreachable, access denied
            logger.warning("tag resolution failed", repository=repository, tag=tag,
                           reason=_reason(err))
            raise Unavailable("ECR tag resolution failed") from err
        if digest is None:
            raise RequestError(404, "tag-not-found", f"no image {repository}:{tag}")
        return digest


def _reason(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]
