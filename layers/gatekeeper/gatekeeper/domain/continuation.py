"""The sweeper's hand-over: what is left of a sweep, as one message on the sweep queue.

A sweep (every judged image for a new policy, or the due images every hour) reads the verdict
table page by page. When its invocation's time runs short it hands the rest on as a
continuation, and the sweeper's next invocation (fed by the sweep queue) picks it up where
the last page ended::

    {"schema": "gatekeeper.sweep/v1", "sweep": "policy",
     "continue_from": {"pk": {"S": "IMAGE#web@sha256:..."}, "sk": {"S": "VERDICT"}},
     "policy_version": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", "sequencer": "00617F0829...",
     "started_at": "2026-11-21T09:00:00Z"}

``continue_from`` is where DynamoDB stopped (LastEvaluatedKey, attribute values in their
typed form); for the hourly sweep it also names which of its Queries it was in. A policy
sweep carries the upload it is for (``policy_version``, the S3 ``sequencer`` that orders
uploads of one key, ``started_at``): a newer upload supersedes it. Plain data, no AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from gatekeeper.domain.events import MalformedEvent

SWEEP_MARK = "gatekeeper.sweep/v1"
SWEEPS = ("policy", "due")
MAX_BODY_CHARS = 16_000  # a LastEvaluatedKey is a few hundred characters; SQS takes 256 KiB
_KEY_TYPES = frozenset({"S", "N", "B"})  # what DynamoDB key attributes can be

Sweep = Literal["policy", "due"]


@dataclass(frozen=True)
class Continuation:
    """The rest of a sweep: which sweep, where it stopped, and what it was started for."""

    sweep: Sweep
    continue_from: dict[str, Any] | None
    started_at: str
    policy_version: str | None = None
    sequencer: str | None = None
    query: int = 0  # the hourly sweep: which of its Queries continue_from belongs to

    def message(self) -> dict[str, Any]:
        """The JSON object put on the sweep queue."""
        body: dict[str, Any] = {"schema": SWEEP_MARK, "sweep": self.sweep,
                                "continue_from": self.continue_from,
                                "started_at": self.started_at}
        if self.sweep == "policy":
            body.update(policy_version=self.policy_version, sequencer=self.sequencer)
        else:
            body["query"] = self.query
        return body


def parse_continuation(body: Any) -> Continuation:
    """A sweep queue message's body (text) read back; MalformedEvent says what is wrong."""
    if not isinstance(body, str):
        raise MalformedEvent(f"continuation body is {type(body).__name__}, not text")
    if len(body) > MAX_BODY_CHARS:
        raise MalformedEvent(f"continuation of {len(body)} characters (at most "
                             f"{MAX_BODY_CHARS})")
    try:
        message = json.loads(body)
    except ValueError as err:
        raise MalformedEvent(f"continuation is not JSON: {err}") from None
    if not isinstance(message, dict) or message.get("schema") != SWEEP_MARK:
        raise MalformedEvent(f"not a sweep continuation (schema {SWEEP_MARK} expected)")
    sweep = message.get("sweep")
    if sweep not in SWEEPS:
        raise MalformedEvent(f"unknown sweep {sweep!r:.50}; one of {', '.join(SWEEPS)}")
    started_at = _text(message, "started_at", required=True)
    try:
        datetime.fromisoformat(str(started_at))
    except ValueError:
        raise MalformedEvent(f"started_at is not an ISO 8601 instant: {started_at!r:.50}"
                             ) from None
    query = message.get("query", 0)
    if sweep == "due" and (not isinstance(query, int) or isinstance(query, bool)
                           or not 0 <= query < 1_000):
        raise MalformedEvent(f"query must be a small whole number, not {query!r:.50}")
    return Continuation(
        sweep=sweep, continue_from=_start_key(message.get("continue_from")),
        started_at=str(started_at), policy_version=_text(message, "policy_version"),
        sequencer=_text(message, "sequencer"), query=query if sweep == "due" else 0)


def _text(message: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = message.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise MalformedEvent(f"{name} must be non-empty text, not {value!r:.50}")
    return value


def _start_key(value: Any) -> dict[str, Any] | None:
    """A LastEvaluatedKey: attribute name -> {"S"|"N"|"B": text}, or None (the start)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value or len(value) > 4:
        raise MalformedEvent(f"continue_from must be a DynamoDB key, not {value!r:.80}")
    for name, typed in value.items():
        if not (isinstance(typed, dict) and len(typed) == 1
                and next(iter(typed)) in _KEY_TYPES
                and isinstance(next(iter(typed.values())), str)):
            raise MalformedEvent(f"continue_from.{name:.40} is not a DynamoDB key value")
    return value


def upload_order(sequencer: Any) -> str | None:
    """The S3 ``sequencer`` of an upload as a string that sorts as the uploads happened (S3:
    of two sequencers of one key, the greater hexadecimal value is the later; the shorter is
    padded with zeros on the left); None for anything that is not one."""
    if not isinstance(sequencer, str) or not 0 < len(sequencer) <= 64:
        return None
    try:
        int(sequencer, 16)
    except ValueError:
        return None
    return sequencer.upper().rjust(64, "0")


def policy_upload(version: Any, sequencer: Any, started_at: Any, now: str) -> Continuation:
    """The start of a policy sweep for an S3 upload (the event's ``version-id``,
    ``sequencer`` and ``time``), keeping only values a continuation can carry (an odd one is
    dropped: the sweep then runs, unordered, rather than failing)."""
    def kept(value: Any) -> str | None:
        return value if isinstance(value, str) and 0 < len(value) <= 200 else None

    at = kept(started_at)
    try:
        datetime.fromisoformat(str(at))
    except ValueError:
        at = None
    return Continuation("policy", None, at or now, policy_version=kept(version),
                        sequencer=sequencer if upload_order(sequencer) else None)
