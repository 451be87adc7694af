"""The sweeper's continuations read back exactly as written, and anything else is refused
with a reason (it then fails to the dead-letter queue instead of sweeping something)."""

from __future__ import annotations

import json

import pytest

from gatekeeper.domain.continuation import (
    SWEEP_MARK,
    Continuation,
    parse_continuation,
    policy_upload,
    upload_order,
)
from gatekeeper.domain.events import MalformedEvent

KEY = {"pk": {"S": "IMAGE#web@sha256:" + "a" * 64}, "sk": {"S": "VERDICT"}}
INDEX_KEY = {**KEY, "due_shard": {"N": "3"}, "due_at": {"S": "R#2026-12-01T09:00:00+00:00"}}


@pytest.mark.parametrize("continuation", [
    Continuation("policy", KEY, "2026-11-21T09:00:00Z", policy_version="v2",
                 sequencer="0062E5A1"),
    Continuation("policy", None, "2026-11-21T09:00:00Z"),
    Continuation("due", INDEX_KEY, "2026-12-01T09:00:00+00:00", query=7),
    Continuation("due", None, "2026-12-01T09:00:00+00:00", query=15),
])
def test_a_continuation_reads_back_as_written(continuation: Continuation) -> None:
    # Given a continuation as the sweeper puts it on the sweep queue
    body = json.dumps(continuation.message())
    # When it is read back, Then it is the same continuation
    assert parse_continuation(body) == continuation
    assert json.loads(body)["schema"] == SWEEP_MARK


@pytest.mark.parametrize(("body", "reason"), [
    (None, "not text"),
    ("{oops", "not JSON"),
    ("[]", "not a sweep continuation"),
    (json.dumps({"schema": "gatekeeper.reevaluate/v1"}), "not a sweep continuation"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "all", "started_at": "2026-12-01T09:00Z"}),
     "unknown sweep"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "due"}), "started_at must be"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "due", "started_at": "soon"}),
     "not an ISO 8601"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "due", "started_at": "2026-12-01T09:00Z",
                 "query": -1}), "query must be"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "due", "started_at": "2026-12-01T09:00Z",
                 "query": True}), "query must be"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "policy", "started_at": "2026-12-01T09:00Z",
                 "continue_from": "IMAGE#web"}), "must be a DynamoDB key"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "policy", "started_at": "2026-12-01T09:00Z",
                 "continue_from": {"pk": {"SS": ["a"]}}}), "not a DynamoDB key value"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "policy", "started_at": "2026-12-01T09:00Z",
                 "sequencer": 12}), "sequencer must be"),
    (json.dumps({"schema": SWEEP_MARK, "sweep": "policy", "started_at": "2026-12-01T09:00Z",
                 "padding": "x" * 20_000}), "characters"),
])
def test_anything_else_is_refused_with_its_reason(body: object, reason: str) -> None:
    # Given a sweep queue message that is not a continuation
    # When it is read, Then it is refused, saying why
    with pytest.raises(MalformedEvent, match=reason):
        parse_continuation(body)


def test_uploads_are_ordered_by_their_sequencer_padded_on_the_left() -> None:
    # Given S3 sequencers of one key, the later one longer
    earlier, later = upload_order("0062E5A1"), upload_order("0062E5A1FF")
    # Then the later sorts after the earlier, case aside
    assert earlier is not None and later is not None
    assert earlier < later
    assert upload_order("0062e5a1") == earlier
    # and what is not a sequencer has no order
    assert [upload_order(v) for v in (None, "", "xyz", 12, "0" * 65)] == [None] * 5


def test_a_policy_upload_keeps_only_what_a_continuation_can_carry() -> None:
    # Given an S3 upload event's values, When its sweep starts, Then they are carried
    upload = policy_upload("v2", "0062E5A1", "2026-11-21T09:00:00Z", "2026-11-21T09:00:05Z")
    assert upload == Continuation("policy", None, "2026-11-21T09:00:00Z",
                                  policy_version="v2", sequencer="0062E5A1")
    assert parse_continuation(json.dumps(upload.message())) == upload
    # and odd ones are dropped (the sweep runs unordered) rather than failing it later
    odd = policy_upload(12, "not-hex", "yesterday", "2026-11-21T09:00:05Z")
    assert odd == Continuation("policy", None, "2026-11-21T09:00:05Z")
    assert parse_continuation(json.dumps(odd.message())) == odd
