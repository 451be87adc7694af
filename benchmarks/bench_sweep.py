"""Sweeps: what the hourly sweep reads through DueIndex against the full Scan it replaced.

    .venv/bin/python -m benchmarks --only sweep
    .venv/bin/python -m benchmarks.bench_sweep --images 10000,100000

On moto in-process: a verdict table of N recorded images (default 10,000 and 30,000), each
with its current verdict and HISTORY history rows, 1% of them due (an exception expired an
hour ago). Per size, the hourly sweep's reads (items DynamoDB read: ScannedCount summed over
the calls) and time, Querying DueIndex (the index already backfilled), beside the Scan with
a filter the sweep did before (``VerdictStore.records``), measured in the same run on the same
table. DynamoDB bills a Scan by the items it reads, filtered out or not, and a Query by the
items it returns, so the items read are the cost. Then the time the policy sweep takes to
queue a re-evaluation of POLICY_IMAGES images on SQS (moto), beside the Scan that finds them.

Times on moto are for comparison only: moto answers a Query on an index by going through the
whole table, so there the Query is no faster than the Scan (DynamoDB reads only the index's
items), and in AWS each page is a network round trip. moto's SQS grows worse than linearly
with the messages queued (1,000 images: about 10 s; 2,000: about 90 s), so the policy sweep
is measured at 1,000 by default; 100,000 images are out of reach on moto in-process, hence
10,000 and 30,000 for the hourly sweep (the items read grow linearly: 3 per image Scanned
with 2 history rows, 1 per due image Queried).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import Row, table

BENCH = "sweep"
HISTORY = 2  # history rows per image (verdict changes kept for the retention)
DUE_SHARE = 100  # one image in 100 is due
SIZES = (10_000, 30_000)
POLICY_IMAGES = 1_000
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=60)


def _table(ddb: Any, name: str) -> None:
    from tests.support import DUE_INDEX, DUE_INDEX_ATTRIBUTES
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              *DUE_INDEX_ATTRIBUTES],
        GlobalSecondaryIndexes=[DUE_INDEX], BillingMode="PAY_PER_REQUEST")


def fill(ddb: Any, name: str, images: int) -> None:
    """``images`` current verdicts (1 in DUE_SHARE due) with HISTORY history rows each."""
    from gatekeeper.adapters.store import HistoryEntry, ImageRecord, _to_item
    earlier = (NOW - timedelta(hours=1)).isoformat()
    later = (NOW + timedelta(days=30)).isoformat()
    batch: list[dict[str, Any]] = []
    for number in range(images):
        digest = f"sha256:{number:064x}"
        review = earlier if number % DUE_SHARE == 0 else (later if number % 7 == 0 else None)
        record = ImageRecord(repository="web", digest=digest, state="APPROVED", revision=1,
                             created_at=earlier, decided_at=earlier, review_at=review,
                             reasons=("no finding above the policy's limits",))
        batch.append(_to_item(record))
        for change in range(HISTORY):
            batch.append(HistoryEntry(decided_at=f"{earlier}-{change}", state="APPROVED",
                                      previous=None, trigger="scan", policy_version="1",
                                      revision=change + 1).item("web", digest))
        while len(batch) >= 25:
            ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": item}}
                                                      for item in batch[:25]]})
            del batch[:25]
    if batch:
        ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": i}} for i in batch]})


def _counting(ddb: Any) -> dict[str, int]:
    counted = {"calls": 0, "read": 0}

    def after(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in ("Scan", "Query"):
            counted["calls"] += 1
            counted["read"] += parsed.get("ScannedCount", 0)

    ddb.meta.events.register("after-call.dynamodb", after)
    return counted


def _timed(counted: dict[str, int], work: Any) -> tuple[int, float, int, int]:
    """(items found, seconds, calls, items read) of ``work``."""
    counted.update(calls=0, read=0)
    began = time.perf_counter()
    found = sum(1 for _ in work())
    return found, time.perf_counter() - began, counted["calls"], counted["read"]


def measure(sizes: tuple[int, ...] = SIZES, policy_images: int = POLICY_IMAGES) -> list[Row]:
    import boto3
    from moto import mock_aws

    from gatekeeper.adapters.queue import ReevaluationQueue
    from gatekeeper.adapters.store import VerdictStore
    from gatekeeper.service import sweep

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    rows: list[Row] = []
    since = (NOW - TIMEOUT).isoformat()
    for images in sizes:
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1")
            _table(ddb, "verdicts")
            fill(ddb, "verdicts", images)
            store = VerdictStore(ddb, "verdicts")
            store.backfill_due_index()
            counted = _counting(ddb)
            found, spent, calls, read = _timed(counted, lambda s=store: s.due_records(
                due_by=NOW.isoformat(), pending_since=since))
            old_found, old_spent, old_calls, old_read = _timed(counted, lambda s=store: s.records(
                due_by=NOW.isoformat(), pending_since=since))
            assert found == old_found == -(-images // DUE_SHARE), (found, old_found)
            shape = f"{images:,} images, {found:,} due, {images * HISTORY:,} history rows"
            rows.append(Row(BENCH, f"hourly sweep, items read, {shape}", read, "items",
                            old_read, "full Scan (before)",
                            note=f"{calls} Queries on DueIndex vs {old_calls} Scan pages"))
            rows.append(Row(BENCH, f"hourly sweep, time, {shape}", spent * 1e3, "ms",
                            old_spent * 1e3, "full Scan (before)", note="moto in-process"))
    if not policy_images:
        return rows
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        _table(ddb, "verdicts")
        fill(ddb, "verdicts", policy_images)
        store = VerdictStore(ddb, "verdicts")
        url = sqs.create_queue(QueueName="reevaluations")["QueueUrl"]
        counted = _counting(ddb)
        _, scan_spent, _, _ = _timed(counted, lambda: store.records(judged=True))
        began = time.perf_counter()
        sent = sweep.policy_published(store, ReevaluationQueue(sqs, url))
        spent = time.perf_counter() - began
        assert sent == policy_images, sent
        rows.append(Row(BENCH, f"policy sweep, queue {policy_images:,} images", spent * 1e3,
                        "ms", scan_spent * 1e3, "the Scan alone",
                        note=f"{-(-sent // 10):,} SendMessageBatch calls, moto in-process"))
    return rows


def run(images: tuple[int, ...] = SIZES, policy_images: int = POLICY_IMAGES) -> list[Row]:
    return measure(images, policy_images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(str(s) for s in SIZES),
                        help="recorded images per measured table, comma separated")
    parser.add_argument("--policy-images", type=int, default=POLICY_IMAGES,
                        help="images the policy sweep queues (0: skip it)")
    args = parser.parse_args()
    print(table(run(tuple(int(n) for n in args.images.split(",")), args.policy_images)))


if __name__ == "__main__":
    main()
