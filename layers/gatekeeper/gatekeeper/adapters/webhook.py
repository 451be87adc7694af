"""An HTTP webhook (a Slack incoming webhook): POST a JSON document, with bounded retries.

The URL of an incoming webhook is its only credential: it never appears in an exception
message, a log line or a retry report; :func:`redact` gives the form that may (the scheme and
host). No dependency beyond the standard library.

Retries, all inside one overall deadline (shorter than the Lambda timeout):

- HTTP 429: after the ``Retry-After`` seconds the server asks for (capped), or the backoff;
- HTTP 5xx, timeouts and connection errors: exponential backoff with jitter;
- any other answer (400, 403, 404, 410; a redirect, which is never followed): no retry, a
  :class:`WebhookError` at once, with Slack's reason (``invalid_token``, ``no_service``...).

A final failure raises :class:`WebhookError`, so the caller's invocation fails.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

# What Slack answers for a webhook that is wrong or gone (404/403/410 bodies).
REVOKED = frozenset({"invalid_token", "no_service", "no_team", "team_disabled",
                     "action_prohibited", "channel_is_archived", "channel_not_found",
                     "no_service_id", "no_active_hooks", "posting_to_general_channel_denied",
                     "user_not_found"})


class WebhookError(Exception):
    """The webhook did not take the message. ``retryable``: a later attempt may succeed
    (throttled, server error, network); otherwise the request or the webhook is wrong."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 retryable: bool = False, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts

    @property
    def revoked(self) -> bool:
        """The webhook URL itself is wrong, revoked or its channel gone."""
        return self.status in (403, 404, 410) or (self.reason or "") in REVOKED


@dataclass(frozen=True)
class Posted:
    status: int
    attempts: int
    seconds: float


@dataclass(frozen=True)
class Retry:
    """One failed attempt that is retried (for the caller's log): nothing secret in it."""

    attempt: int
    status: int | None
    reason: str
    wait: float
    host: str


def redact(url: str) -> str:
    """What may be shown of a webhook URL: its scheme and host, never its path (the token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme or '?'}://{host}{port}/***"
    except ValueError:
        return "(unparseable URL)"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: the payload goes nowhere else."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirects())


def _body(response: Any, limit: int = 512) -> str:
    try:
        raw = response.read(limit)
    except (OSError, HTTPException):
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return "".join(c for c in text if c.isprintable()).strip()[:100]


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (a number of seconds, or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
        return None
    return max(0.0, seconds)


class WebhookPoster:
    """POSTs JSON to a webhook URL; see the module's docstring for the retry rules."""

    def __init__(self, *, timeout: float = 10.0, max_attempts: int = 5,
                 max_retry_after: float = 30.0, backoff: float = 0.5, max_backoff: float = 8.0,
                 deadline: float = 50.0,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random,
                 opener: urllib.request.OpenerDirector | None = None) -> None:
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.deadline = deadline
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._opener = opener or _opener()

    def _backoff(self, attempt: int) -> float:
        """Exponential, with "equal jitter": between half and all of base * 2^(attempt-1)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * self._jitter()

    def post(self, url: str, payload: Mapping[str, Any], *, deadline: float | None = None,
             on_retry: Callable[[Retry], None] | None = None) -> Posted:
        """POST ``payload`` as JSON to ``url`` within ``deadline`` seconds from now (retries
        included; the poster's default when None). Raises :class:`WebhookError`."""
        host = redact(url)
        if not _postable(url):  # checked first: urllib's errors would quote the URL
            raise WebhookError(f"webhook {host}: not an http(s) URL that can be posted to")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        start = self._clock()
        end = start + (self.deadline if deadline is None else deadline)
        last, made, status = "no time left for an attempt", 0, None
        for attempt in range(1, self.max_attempts + 1):
            remaining = end - self._clock()
            if remaining <= 0:
                break
            status = None
            made = attempt
            try:
                request = urllib.request.Request(  # noqa: S310 - https (or local http) only
                    url, data=body, method="POST",
                    headers={"Content-Type": "application/json; charset=utf-8",
                             "User-Agent": "ecr-scan-gatekeeper"})
                with self._opener.open(request, timeout=min(self.timeout, remaining)) as answer:
                    status = int(answer.status)
                    _body(answer)
                return Posted(status=status, attempts=attempt, seconds=self._clock() - start)
            except urllib.error.HTTPError as err:
                status = int(err.code)
                reason = _body(err)
                if status == 429:
                    asked = retry_after_seconds(err.headers.get("Retry-After") if err.headers
                                                else None)
                    wait = self._backoff(attempt) if asked is None else min(
                        asked, self.max_retry_after)
                    last = "HTTP 429 (rate limited; Retry-After " + (
                        f"{asked:g} s)" if asked is not None else "absent)")
                elif status >= 500:
                    wait = self._backoff(attempt)
                    last = f"HTTP {status} {reason}".strip()
                else:
                    raise WebhookError(self._refused(status, reason, host), status=status,
                                       reason=reason or None, attempts=attempt) from None
            except ValueError:  # a URL urllib cannot use: its message would quote the URL
                raise WebhookError(f"webhook {host}: not a URL that can be posted to",
                                   attempts=attempt) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException,
                    OSError) as err:
                wait = self._backoff(attempt)
                cause = getattr(err, "reason", None) or err
                last = f"{type(cause).__name__}: {_describe(cause)}"
            if attempt == self.max_attempts:
                break
            if self._clock() + wait >= end:
                last += f"; the next attempt, in {wait:.1f} s, would pass the deadline"
                break
            if on_retry:
                on_retry(Retry(attempt=attempt, status=status, reason=last, wait=wait,
                               host=host))
            self._sleep(wait)
        raise WebhookError(
            f"webhook {host} did not take the message after {made} attempt(s) in "
            f"{self._clock() - start:.1f} s: {last}", status=status, retryable=True,
            attempts=made)

    @staticmethod
    def _refused(status: int, reason: str, host: str) -> str:
        if 300 <= status < 400:
            return (f"webhook {host} answered HTTP {status} (a redirect, not followed): "
                    "check the webhook URL")
        said = f" {reason!r}" if reason else ""
        hint = ""
        if status in (403, 404, 410) or reason in REVOKED:
            hint = ("; the webhook URL is wrong, or the webhook was revoked or its channel "
                    "removed: create a new one and update the secret")
        elif status == 400:
            hint = "; Slack refused the message itself"
        return f"webhook {host} refused the message: HTTP {status}{said}{hint}"


def _postable(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except (ValueError, TypeError):
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(
        c.isspace() or not c.isprintable() for c in url)


def _describe(error: BaseException) -> str:
    """An error's text without any URL in it (socket errors name no URL; be sure anyway)."""
    text = str(error)
    return "(URL withheld)" if "://" in text else text[:200]
