"""The hourly sweep reads only what is due: DueIndex, the verdict table's sparse index, holds
exactly the current verdicts time can change; the sweep Queries it (no Scan), and the first
sweep on a table written before the index existed backfills it once (on moto)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.adapters.queue import ReevaluationQueue
from gatekeeper.adapters.store import (
    DUE_INDEX,
    PENDING,
    HistoryEntry,
    ImageRecord,
    VerdictStore,
    _to_item,
    due_at,
)
from gatekeeper.domain.events import Trigger, parse_reevaluation
from gatekeeper.service import sweep
from tests.support import World

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=60)
EARLIER = (NOW - timedelta(hours=3)).isoformat()
LATER = (NOW + timedelta(days=3)).isoformat()


@pytest.fixture
def ddb(world: World) -> Any:
    """The DynamoDB client the store uses (tests hook its calls)."""
    return world.session.client("dynamodb")


@pytest.fixture
def store(world: World, ddb: Any) -> VerdictStore:
    return VerdictStore(ddb, world.config.table_name)


def digest(name: str) -> str:
    """An image digest standing for ``name``."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture
def queue(world: World) -> Iterator[tuple[ReevaluationQueue, str]]:
    sqs = world.session.client("sqs")
    url = sqs.create_queue(QueueName="reevaluation")["QueueUrl"]
    yield ReevaluationQueue(sqs, url), url


def queued(world: World, url: str) -> list[tuple[str, str, str]]:
    """Every re-evaluation request on the queue: (repository, digest, trigger)."""
    sqs = world.session.client("sqs")
    found = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return sorted(found)
        for message in messages:
            request = parse_reevaluation(json.loads(message["Body"]))
            found.append((request.repository, request.digest, str(request.trigger)))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def index_keys(world: World) -> set[str]:
    """The pk of every item in DueIndex (a Scan of the index itself: test only)."""
    ddb = world.session.client("dynamodb")
    items = ddb.scan(TableName=world.config.table_name, IndexName=DUE_INDEX)["Items"]
    return {item["digest"]["S"] for item in items}


def reads(ddb: Any) -> dict[str, Any]:
    """Count the store's Scan and Query calls and the items they read (a botocore hook)."""
    counted: dict[str, Any] = {"Scan": 0, "Query": 0, "scanned": 0}

    def after(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Scan", "Query"):
            counted[model.name] += 1
            counted["scanned"] += parsed.get("ScannedCount", 0)

    ddb.meta.events.register("after-call.dynamodb", after)
    return counted


def record(digest: str, state: str = "APPROVED", created_at: str | None = EARLIER,
           review_at: str | None = None) -> ImageRecord:
    return ImageRecord(repository="web", digest=digest, state=state, created_at=created_at,
                       review_at=review_at, decided_at=EARLIER)


STATES = st.builds(
    record,
    digest=st.just(""),
    state=st.sampled_from([PENDING, "APPROVED", "QUARANTINED"]),
    created_at=st.one_of(st.none(), st.just(EARLIER)),
    review_at=st.one_of(st.none(), st.just(EARLIER), st.just(LATER)),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(STATES, min_size=1, max_size=6), then=st.lists(STATES, max_size=6))
def test_the_index_holds_exactly_the_records_that_can_fall_due(
        world: World, store: VerdictStore, first: list[ImageRecord],
        then: list[ImageRecord]) -> None:
    # Given records in any state written, some of them then rewritten in another state
    run = f"{datetime.now().timestamp()}"
    latest: dict[str, ImageRecord] = {}
    for number, written in enumerate(first):
        name = digest(f"{run}-{number}")
        latest[name] = store.put(replace(written, digest=name), None)
    for number, written in enumerate(then[:len(first)]):
        name = digest(f"{run}-{number}")
        latest[name] = store.put(replace(written, digest=name), latest[name].revision)
    # Then the index holds exactly those whose latest state has a due time
    in_index = index_keys(world) & set(latest)
    assert in_index == {d for d, r in latest.items() if due_at(r) is not None}


def test_the_sweep_queries_only_due_items(world: World, ddb: Any, store: VerdictStore,
                                          queue: tuple[ReevaluationQueue, str]) -> None:
    # Given 200 settled images with history, one expired exception, one future review and
    # one image waiting for its scan past the timeout, the index already backfilled
    store.backfill_due_index()
    for number in range(200):
        store.put(record(digest(f"settled-{number}")), None, history=HistoryEntry(
            decided_at=EARLIER, state="APPROVED", previous=None, trigger="scan",
            policy_version="1"))
    store.put(record(digest("expired"), review_at=EARLIER), None)
    store.put(record(digest("later"), review_at=LATER), None)
    store.put(record(digest("waiting"), state=PENDING), None)
    counted = reads(ddb)
    # When the hourly sweep runs
    sent = sweep.sweep(store, queue[0], NOW, TIMEOUT)
    # Then it queued the two due images
    assert sent == 2
    assert queued(world, queue[1]) == sorted([
        ("web", digest("expired"), str(Trigger.EXPIRY)),
        ("web", digest("waiting"), str(Trigger.SCAN_TIMEOUT))])
    # and read them by Query on the index, two per shard, no Scan, only the due items (and
    # the backfill marker, by one more Query)
    assert counted["Scan"] == 0
    assert counted["Query"] == 16 + 1
    assert counted["scanned"] == 2 + 1


def test_the_first_sweep_backfills_items_written_before_the_index(
        world: World, ddb: Any, store: VerdictStore,
        queue: tuple[ReevaluationQueue, str]) -> None:
    # Given items written before the index existed (no due attributes): an expired
    # exception, a future review, an image waiting for its scan and a settled one
    old = [record(digest("expired"), review_at=EARLIER), record(digest("later"), review_at=LATER),
           record(digest("waiting"), state=PENDING), record(digest("settled"))]
    for written in old:
        item = {k: v for k, v in _to_item(replace(written, revision=1)).items()
                if k not in ("due_shard", "due_at")}
        ddb.put_item(TableName=world.config.table_name, Item=item)
    assert index_keys(world) == set()
    # When the first sweep after the upgrade runs
    assert sweep.sweep(store, queue[0], NOW, TIMEOUT) == 2
    # Then the due images were queued, and every item that can fall due is in the index
    assert {q[1] for q in queued(world, queue[1])} == {digest("expired"), digest("waiting")}
    assert index_keys(world) == {digest("expired"), digest("later"), digest("waiting")}
    assert store.due_index_backfilled()
    # and the records themselves are unchanged
    assert store.get("web", digest("later")) == replace(old[1], revision=1)
    # When the next sweep runs, Then it does not Scan again
    counted = reads(ddb)
    assert sweep.sweep(store, queue[0], NOW, TIMEOUT) == 2
    assert counted["Scan"] == 0


def test_the_backfill_leaves_a_record_written_meanwhile_as_its_writer_wrote_it(
        world: World, ddb: Any, store: VerdictStore) -> None:
    # Given an old item that a writer settles (no due time) between the backfill's Scan and
    # its update
    racing = replace(record(digest("racing"), review_at=EARLIER), revision=1)
    item = {k: v for k, v in _to_item(racing).items() if k not in ("due_shard", "due_at")}
    ddb.put_item(TableName=world.config.table_name, Item=item)

    def settle(**_: Any) -> None:
        if store.get("web", digest("racing")).revision == 1:
            store.put(record(digest("racing")), 1)

    ddb.meta.events.register("after-call.dynamodb.Scan", settle)
    # When the backfill runs
    assert store.backfill_due_index() == 0
    # Then the settled record stays out of the index
    assert index_keys(world) == set()
    assert store.get("web", digest("racing")).revision == 2
