"""Sweeps of any size, as deployed: the sweeper reads the verdict table page by page and,
when its invocation's time runs short, hands the rest on through the template's sweep queue
to its next invocation (on moto; the time budget is a fake so that pages, not the machine's
speed, decide when the time runs out)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gatekeeper import runtime
from gatekeeper.adapters.notifier import SnsNotifier
from gatekeeper.adapters.queue import ReevaluationQueue, SweepQueue
from gatekeeper.adapters.store import (
    PENDING,
    HistoryEntry,
    ImageRecord,
    VerdictStore,
    _to_item,
)
from gatekeeper.config import SweeperConfig
from gatekeeper.domain.continuation import SWEEP_MARK
from gatekeeper.domain.events import Trigger, parse_reevaluation
from gatekeeper.handling import handle_sweep
from gatekeeper.runtime import SweeperDeps
from gatekeeper_tools.local.stack import LocalDeployment
from tests.support import ROOT, load_event

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EARLIER = (NOW - timedelta(days=2)).isoformat()
PAGE = 10  # items a page reads at most: 120 images with their history rows take 25 pages


@pytest.fixture(scope="module")
def deployed() -> Iterator[LocalDeployment]:
    """The template in moto, once for this module (each test starts it empty: ``stack``)."""
    with mock_aws():
        runtime.sweeper.cache_clear()
        yield LocalDeployment.create(str(ROOT / "template.yaml"))
        runtime.sweeper.cache_clear()


@pytest.fixture
def stack(deployed: LocalDeployment) -> Iterator[LocalDeployment]:
    """The deployment with an empty verdict table and empty queues."""
    yield deployed
    ddb = boto3.client("dynamodb")
    table = deployed.table_name
    for page in ddb.get_paginator("scan").paginate(TableName=table,
                                                  ProjectionExpression="pk, sk"):
        for item in page["Items"]:
            ddb.delete_item(TableName=table, Key=item)
    for queue_id in ("ReevaluationQueue", "SweepQueue", "DeadLetterQueue"):
        receive(deployed.physical_ids[queue_id])


@pytest.fixture
def deps(stack: LocalDeployment) -> SweeperDeps:
    """The sweeper's store and queues, configured from its environment in the template."""
    config = SweeperConfig.from_env(stack.environment("SweeperFunction"))
    assert config.sweep_queue_url == stack.physical_ids["SweepQueue"]
    sqs = boto3.client("sqs")
    return SweeperDeps(VerdictStore(boto3.client("dynamodb"), config.table_name),
                       ReevaluationQueue(sqs, config.reevaluation_queue_url), config,
                       SnsNotifier(boto3.client("sns"), config.topic_arn),
                       sweeps=SweepQueue(sqs, str(config.sweep_queue_url)))


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def pages(allowed: int) -> Callable[[Any], Callable[[], float]]:
    """A time budget that runs out after ``allowed`` pages of each invocation (the sweeper
    asks for the time left before every page but the first)."""
    def budget(_context: Any) -> Callable[[], float]:
        asked = iter(range(10_000))
        return lambda: 3600.0 if next(asked) < allowed - 1 else 0.0
    return budget


def write(table: str, records: list[ImageRecord], history: bool = False) -> None:
    """Current verdicts written as the store writes them (a history row each with
    ``history``), by BatchWriteItem: the test's setup, not what it checks."""
    ddb = boto3.client("dynamodb")
    items = []
    for written in records:
        items.append(_to_item(replace(written, revision=1)))
        if history:
            items.append(HistoryEntry(decided_at=EARLIER, state=written.state, previous=None,
                                      trigger="scan", policy_version="1", revision=1
                                      ).item(written.repository, written.digest))
    for start in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}}
                                                   for item in items[start:start + 25]]})


def record_images(table: str, judged: int) -> set[str]:
    """``judged`` approved images with a history row each, and beside them images a policy
    sweep must leave alone: pending ones and gone ones. Returns the judged digests."""
    names = {digest(f"judged-{number}") for number in range(judged)}
    write(table, [ImageRecord(repository="web", digest=name, state="APPROVED",
                              created_at=EARLIER, decided_at=EARLIER) for name in names],
          history=True)
    write(table, [ImageRecord(repository="web", digest=digest(f"pending-{number}"),
                              state=PENDING, created_at=NOW.isoformat())
                  for number in range(4)]
          + [ImageRecord(repository="web", digest=digest(f"gone-{number}"), state="APPROVED",
                         created_at=EARLIER, decided_at=EARLIER, gone=True)
             for number in range(4)])
    return names


def upload(stack: LocalDeployment, version: str, sequencer: str) -> dict[str, Any]:
    """The S3 event of a policy upload (its version and its place in the uploads' order)."""
    event = load_event("s3-policy-object-created")
    event["detail"]["bucket"]["name"] = stack.policy_bucket
    event["detail"]["object"].update({"version-id": version, "sequencer": sequencer})
    return event


def receive(url: str) -> list[dict[str, Any]]:
    """Every message on the queue, deleted."""
    sqs = boto3.client("sqs")
    got: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages"):
        got += messages
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def queued(stack: LocalDeployment) -> Counter[tuple[str, str]]:
    """The re-evaluation requests queued: (digest, trigger) -> how many times."""
    return Counter((r.digest, str(r.trigger)) for r in (
        parse_reevaluation(json.loads(m["Body"]))
        for m in receive(stack.physical_ids["ReevaluationQueue"])))


def follow(stack: LocalDeployment, deps: SweeperDeps, budget: Any,
           limit: int = 50) -> list[dict[str, Any]]:
    """Feed the sweep queue's messages back to the sweeper (one per SQS batch, as the event
    source mapping does) until none is left; each invocation's result, in order."""
    results = []
    for _ in range(limit):
        messages = receive(stack.physical_ids["SweepQueue"])
        if not messages:
            return results
        for message in messages:
            assert json.loads(message["Body"])["schema"] == SWEEP_MARK
            batch = {"Records": [{"messageId": message["MessageId"], "body": message["Body"],
                                  "eventSource": "aws:sqs"}]}
            results.append(handle_sweep(batch, lambda: deps, lambda: NOW, budget=budget,
                                        page_size=PAGE))
    raise AssertionError(f"the sweep was still handed on after {limit} rounds")


def test_a_policy_sweep_hands_on_page_by_page_and_queues_every_judged_image_once(
        stack: LocalDeployment, deps: SweeperDeps) -> None:
    # Given 120 judged images (with their history), and pending and gone ones
    judged = record_images(deps.config.table_name, 120)
    budget = pages(4)

    # When a new policy is uploaded and each invocation has time for 4 pages of 10 items
    first = handle_sweep(upload(stack, "v2", "0062E5A1"), lambda: deps, lambda: NOW,
                         budget=budget, page_size=PAGE)
    # and the sweep queue's continuations are fed back to the sweeper until none is left
    rest = follow(stack, deps, budget)

    # Then the first invocation handed on, and so did the continuations but the last
    assert first == {"status": "queued", "trigger": "policy", "count": first["count"],
                     "handed_on": True}
    assert len(rest) >= 3
    assert all(r["batchItemFailures"] == [] for r in rest)
    assert [r["results"][0].get("handed_on", False) for r in rest] == [True] * (
        len(rest) - 1) + [False]
    # and every judged image was queued exactly once, for the policy, none of the others
    assert queued(stack) == Counter({(name, str(Trigger.POLICY)): 1 for name in judged})
    assert first["count"] + sum(r["results"][0]["count"] for r in rest) == 120


def test_a_policy_sweep_superseded_by_a_newer_upload_stops(
        stack: LocalDeployment, deps: SweeperDeps) -> None:
    # Given a policy sweep that handed on after its first page
    judged = record_images(deps.config.table_name, 30)
    older = upload(stack, "v2", "0062E5A1")
    assert handle_sweep(older, lambda: deps, lambda: NOW, budget=pages(1),
                        page_size=PAGE)["handed_on"]
    [continuation] = receive(stack.physical_ids["SweepQueue"])
    receive(stack.physical_ids["ReevaluationQueue"])

    # When a newer policy is uploaded (a longer sequencer: S3 pads the shorter with zeros),
    # and its sweep runs to the end
    newer = handle_sweep(upload(stack, "v3", "0062E5A1FF"), lambda: deps, lambda: NOW)
    assert newer == {"status": "queued", "trigger": "policy", "count": 30}
    assert queued(stack) == Counter({(name, str(Trigger.POLICY)): 1 for name in judged})

    # Then the older sweep's continuation stops: nothing queued, nothing handed on, and the
    # message is done with (not failed)
    batch = {"Records": [{"messageId": continuation["MessageId"],
                          "body": continuation["Body"], "eventSource": "aws:sqs"}]}
    stopped = handle_sweep(batch, lambda: deps, lambda: NOW, budget=pages(1), page_size=PAGE)
    assert stopped == {"batchItemFailures": [], "results": [
        {"status": "superseded", "trigger": "policy", "count": 0}]}
    assert queued(stack) == Counter()
    assert receive(stack.physical_ids["SweepQueue"]) == []
    # and the older upload's event, delivered late (EventBridge keeps no order), sweeps nothing
    late = handle_sweep(older, lambda: deps, lambda: NOW)
    assert late == {"status": "superseded", "trigger": "policy", "count": 0}
    assert queued(stack) == Counter()


def test_a_redelivered_upload_event_sweeps_again(stack: LocalDeployment,
                                                 deps: SweeperDeps) -> None:
    # Given a policy upload swept once
    judged = record_images(deps.config.table_name, 5)
    event = upload(stack, "v2", "0062E5A1")
    handle_sweep(event, lambda: deps, lambda: NOW)
    # When EventBridge delivers the same event again, Then the same images are queued again
    # (at least once: re-evaluating twice gives the same verdict), not superseded
    assert handle_sweep(event, lambda: deps, lambda: NOW)["status"] == "queued"
    assert queued(stack) == Counter({(name, str(Trigger.POLICY)): 2 for name in judged})


def test_the_hourly_sweep_hands_on_page_by_page_through_the_due_index(
        stack: LocalDeployment, deps: SweeperDeps) -> None:
    # Given 25 images whose exception expired, 5 waiting past the scan timeout for a scan,
    # and settled images
    expired = {digest(f"expired-{n}") for n in range(25)}
    waiting = {digest(f"waiting-{n}") for n in range(5)}
    write(deps.config.table_name, [ImageRecord(repository="web", digest=name, state="APPROVED",
                                   created_at=EARLIER, decided_at=EARLIER, review_at=EARLIER)
                       for name in expired]
          + [ImageRecord(repository="web", digest=name, state=PENDING, created_at=EARLIER)
             for name in waiting])
    record_images(deps.config.table_name, 10)

    # When the hourly schedule fires, each invocation having time for 3 pages of 2 items
    tick = load_event("scheduled-event")
    first = handle_sweep(tick, lambda: deps, lambda: NOW, budget=pages(3), page_size=2)
    rest = follow(stack, deps, pages(3))

    # Then the sweep went on over several invocations and queued each due image once
    assert first["handed_on"] and first["digested"] == 0
    assert len(rest) >= 3 and all(r["batchItemFailures"] == [] for r in rest)
    assert queued(stack) == Counter(
        {(n, str(Trigger.EXPIRY)): 1 for n in expired}
        | {(n, str(Trigger.SCAN_TIMEOUT)): 1 for n in waiting})


def test_an_unreadable_continuation_fails_to_the_dead_letter_queue(
        stack: LocalDeployment) -> None:
    # Given messages on the sweep queue that are not continuations
    sqs = boto3.client("sqs")
    url = stack.physical_ids["SweepQueue"]
    bodies = ["{oops", json.dumps({"schema": SWEEP_MARK, "sweep": "everything",
                                   "started_at": NOW.isoformat()}),
              json.dumps({"schema": SWEEP_MARK, "sweep": "policy", "started_at": "soon",
                          "continue_from": None})]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)

    # When the template's sweeper takes them, one per invocation, until the queue is empty
    # (each receive makes the message visible again at once, as its retries would)
    failures = Counter()
    while got := sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"):
        [message] = got
        delivery = stack.invoke("SweeperFunction", {"Records": [
            {"messageId": message["MessageId"], "body": message["Body"],
             "eventSource": "aws:sqs"}]}, "SweepQueue")
        # Then each is reported failed, never swept nor deleted
        assert delivery.ok, delivery.error
        assert delivery.result == {"batchItemFailures": [
            {"itemIdentifier": message["MessageId"]}], "results": []}
        failures[message["MessageId"]] += 1
        assert sum(failures.values()) < 20, "a malformed continuation loops"

    # and after the redrive limit (3 receives each) all of them are in the dead-letter queue
    assert sorted(failures.values()) == [3, 3, 3]
    dead = [m["Body"] for m in receive(stack.dlq_url)]
    assert sorted(dead) == sorted(bodies)


def test_the_template_routes_the_sweep_queue_to_the_sweeper(stack: LocalDeployment) -> None:
    # Given a continuation of an hourly sweep at its last query's start, on the sweep queue
    boto3.client("sqs").send_message(
        QueueUrl=stack.physical_ids["SweepQueue"],
        MessageBody=json.dumps({"schema": SWEEP_MARK, "sweep": "due", "continue_from": None,
                                "query": 15, "started_at": NOW.isoformat()}))
    # When the queue is drained as Lambda's poller would, Then the sweeper goes on with it
    [delivery] = stack.drain("SweepQueue")
    assert delivery.function_id == "SweeperFunction"
    assert delivery.result == {"batchItemFailures": [], "results": [
        {"status": "queued", "trigger": "sweep", "count": 0}]}
