"""Sweeps: what the hourly sweep reads through DueIndex against the full Scan it replaced,
and how long the paged policy sweep takes, extrapolated to 100,000 images.

    .venv/bin/python -m benchmarks --only sweep
    .venv/bin/python -m benchmarks --only sweep --sweep-sizes 5000,10000,20000
    .venv/bin/python -m benchmarks.bench_sweep --images 10000,100000 --sweep-sizes 2000,5000

On moto in-process: a verdict table of N recorded images (default 10,000; --images), each
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
10,000 (30,000 with --images 10000,30000) for the hourly sweep (the items read grow linearly:
3 per image Scanned with 2 history rows, 1 per due image Queried).

The paged policy sweep (``gatekeeper.service.sweep.policy_sweep``, then the continuations it
hands on) of N recorded images, at SWEEP_SIZES: its time and API calls, every image queued
exactly once. moto's SQS cost grows with the messages waiting (it recomputes the queue's
attributes over every message on each send; AWS does not), so here the re-evaluation queue
is emptied after each SendMessageBatch, as its consumer would, and the images are counted
from the requests themselves. The per-image slope (least squares over the sizes) gives the
time for 100,000 images, beside the sweeper's Timeout in template.yaml, and the number of
invocations the paging takes at PAGE_SIZE with the time budget the handler gives each
invocation (the Timeout less its safety margin). The largest size is then swept again with a
budget of a quarter of its measured time, to show the chain of continuations at work.
moto has no network, but it reads the whole table for every Scan page and every Query (the
sweep's check for a newer upload), so its time per page grows with the table, which
DynamoDB's does not: the slope measured here grows with the sizes it is measured at. In AWS
each call is a network round trip instead, which the per-invocation time check absorbs (more
invocations, each within the Timeout).
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
SIZES = (10_000,)  # the hourly sweep's (--images 10000,30000: a few minutes more)
POLICY_IMAGES = 1_000
SWEEP_SIZES = (1_000, 2_000, 4_000)  # the paged policy sweep's table sizes (by default)
TARGET_IMAGES = 100_000
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


# --- the paged policy sweep ----------------------------------------------------------------

def sweeper_timeout() -> int:
    """SweeperFunction's Timeout in template.yaml (seconds)."""
    from benchmarks.common import ROOT
    from gatekeeper_tools.local.stack import load_sam_template

    sam = load_sam_template(ROOT / "template.yaml")
    properties = sam["Resources"]["SweeperFunction"]["Properties"]
    return int(properties.get("Timeout") or sam["Globals"]["Function"]["Timeout"])


def _budget(seconds: float) -> Any:
    """A fresh invocation's time left: ``seconds`` from now."""
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()


def paged_policy_sweeps(images: int, budgets: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Policy sweeps of one table of ``images`` recorded images (HISTORY rows each), one per
    budget: its continuations followed as the sweep queue feeds them back, each invocation
    given that many seconds (a budget may be a function of the previous sweep's result).
    Each: time, API calls and their time by operation, pages, invocations, the longest
    invocation; every image queued exactly once."""
    import json
    from collections import Counter

    import boto3
    from moto import mock_aws
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    from gatekeeper.adapters.queue import ReevaluationQueue, SweepQueue
    from gatekeeper.adapters.store import VerdictStore
    from gatekeeper.domain.continuation import Continuation, parse_continuation
    from gatekeeper.observability import logger
    from gatekeeper.service import sweep

    logger.setLevel("WARNING")  # one line per page and hand-over otherwise
    results = []
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        _table(ddb, "verdicts")
        fill(ddb, "verdicts", images)
        store = VerdictStore(ddb, "verdicts")
        queue = ReevaluationQueue(sqs, sqs.create_queue(QueueName="reevaluations")["QueueUrl"])
        sweeps_url = sqs.create_queue(QueueName="sweeps")["QueueUrl"]
        sweeps = SweepQueue(sqs, sweeps_url)
        moto_queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues["reevaluations"]
        calls: Counter[str] = Counter()
        spent_in: Counter[str] = Counter()
        queued: Counter[str] = Counter()
        began_call = [0.0]

        def before(**_: Any) -> None:
            began_call[0] = time.perf_counter()

        def after(model: Any, **_: Any) -> None:
            calls[model.name] += 1
            spent_in[model.name] += time.perf_counter() - began_call[0]

        def requested(params: dict[str, Any], **_: Any) -> None:
            queued.update(json.loads(e["MessageBody"])["digest"] for e in params["Entries"])

        def consumed(**_: Any) -> None:
            moto_queue._messages.clear()  # the consumer's part (see the module's docstring)

        for client in (ddb, sqs):
            client.meta.events.register("before-call", before)
            client.meta.events.register("after-call", after)
        sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", requested)
        sqs.meta.events.register("after-call.sqs.SendMessageBatch", consumed)
        for given in budgets:
            budget = given(results[-1]) if callable(given) else float(given)
            for counter in (calls, spent_in, queued):
                counter.clear()
            upload = Continuation("policy", None, NOW.isoformat(), policy_version="v2",
                                  sequencer="0062E5A1")
            began = time.perf_counter()
            outcome = sweep.policy_sweep(store, queue, upload, time_left=_budget(budget),
                                         sweeps=sweeps)
            longest, invocations, pages = time.perf_counter() - began, 1, outcome.pages
            while outcome.handed_on:
                [message] = sqs.receive_message(QueueUrl=sweeps_url).get("Messages", [])
                sqs.delete_message(QueueUrl=sweeps_url, ReceiptHandle=message["ReceiptHandle"])
                started = time.perf_counter()
                outcome = sweep.continue_sweep(
                    store, queue, parse_continuation(message["Body"]), timedelta(0),
                    time_left=_budget(budget), sweeps=sweeps)
                longest = max(longest, time.perf_counter() - started)
                invocations, pages = invocations + 1, pages + outcome.pages
            spent = time.perf_counter() - began
            assert len(queued) == images and set(queued.values()) == {1}, (len(queued), images)
            results.append({"images": images, "budget": budget, "seconds": spent,
                            "calls": dict(calls), "call_seconds": dict(spent_in),
                            "invocations": invocations, "longest": longest, "pages": pages})
    logger.setLevel("INFO")
    return results


def _slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares (intercept, slope) of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else (
        mean_y / mean_x)
    return mean_y - slope * mean_x, slope


def measure_policy_sweep(sizes: tuple[int, ...] = SWEEP_SIZES) -> list[Row]:
    """The paged policy sweep at ``sizes``, extrapolated to TARGET_IMAGES by its slope."""
    from gatekeeper.handling import SAFETY_MARGIN
    from gatekeeper.service.sweep import PAGE_SIZE, RESERVE

    timeout = sweeper_timeout()
    budget = timeout - SAFETY_MARGIN  # what the handler gives an invocation
    runs = [paged_policy_sweeps(images, (budget,))[0] for images in sizes[:-1]]
    # the largest table twice: in full, then with a quarter of that time per invocation
    full, chained = paged_policy_sweeps(sizes[-1], (budget, lambda run: run["seconds"] / 4))
    runs.append(full)
    rows = []
    for run in runs:
        calls = run["calls"]
        rows.append(Row(
            BENCH, f"policy sweep (paged), {run['images']:,} images", run["seconds"], "s",
            timeout, "sweeper Timeout", note=(
                f"{sum(calls.values()):,} API calls ({_calls(calls, run['call_seconds'])}); "
                f"{run['pages']} pages of {PAGE_SIZE:,} items, {run['invocations']} "
                "invocation(s); every image queued once; moto in-process")))
    intercept, slope = _slope([(r["images"], r["seconds"]) for r in runs])
    calls_intercept, calls_slope = _slope([(r["images"], sum(r["calls"].values()))
                                           for r in runs])
    projected = intercept + slope * TARGET_IMAGES
    page_time = max(r["longest"] / r["pages"] for r in runs)  # one invocation each
    per_invocation = max(1.0, budget - RESERVE * page_time)
    invocations = -(-projected // per_invocation)
    rows.append(Row(BENCH, "policy sweep, time per image (slope)", slope * 1e3, "ms",
                    note=f"least squares over {', '.join(f'{n:,}' for n in sizes)} images; "
                         f"intercept {intercept:.2f} s"))
    rows.append(Row(BENCH, f"policy sweep, {TARGET_IMAGES:,} images (slope x images)",
                    projected, "s", timeout, "sweeper Timeout", note=(
                        f"about {calls_intercept + calls_slope * TARGET_IMAGES:,.0f} API "
                        f"calls; in one invocation it would "
                        f"{'not ' if projected > budget else ''}fit the {budget:.0f} s "
                        "budget")))
    rows.append(Row(BENCH, f"policy sweep, {TARGET_IMAGES:,} images: invocations",
                    invocations, "invocations", note=(
                        f"{budget:.0f} s each (Timeout {timeout} s less {SAFETY_MARGIN:.0f} s), "
                        f"handing on when less than {RESERVE:g} x the slowest page "
                        f"({page_time:.2f} s) is left")))
    scaled = chained["budget"]
    rows.append(Row(BENCH, f"policy sweep (paged), {full['images']:,} images, budget "
                           f"{scaled:.1f} s", chained["invocations"], "invocations", note=(
                        f"every image queued once across them; longest "
                        f"invocation {chained['longest']:.1f} s, whole sweep "
                        f"{chained['seconds']:.1f} s")))
    # Lambda gives an invocation its budget plus the handler's safety margin (the Timeout):
    # the hand-over itself (one SendMessage) runs in that margin
    rows.append(Row(BENCH, "policy sweep (paged), longest invocation", chained["longest"], "s",
                    scaled, "its budget", target=scaled + SAFETY_MARGIN, absolute=True,
                    note=f"within its budget + the {SAFETY_MARGIN:.0f} s safety margin, as an "
                         "invocation is within the Timeout"))
    return rows


def _calls(calls: dict[str, int], seconds: dict[str, float]) -> str:
    """``Scan 7 (2.1 s)``: each operation's calls and the time spent in them."""
    return ", ".join(f"{name} {count:,} ({seconds.get(name, 0):.1f} s)"
                     for name, count in sorted(calls.items()))


def run(images: tuple[int, ...] = SIZES, policy_images: int = POLICY_IMAGES,
        sweep_sizes: tuple[int, ...] = SWEEP_SIZES) -> list[Row]:
    rows = measure(images, policy_images)
    return rows + (measure_policy_sweep(sweep_sizes) if sweep_sizes else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=",".join(str(s) for s in SIZES),
                        help="recorded images per measured table, comma separated")
    parser.add_argument("--policy-images", type=int, default=POLICY_IMAGES,
                        help="images the policy sweep queues (0: skip it)")
    parser.add_argument("--sweep-sizes", default=",".join(str(s) for s in SWEEP_SIZES),
                        help="recorded images of each paged policy sweep, comma separated "
                             "(empty: skip it)")
    args = parser.parse_args()
    print(table(run(tuple(int(n) for n in args.images.split(",")), args.policy_images,
                    tuple(int(n) for n in args.sweep_sizes.split(",") if n.strip()))))


if __name__ == "__main__":
    main()
