"""``gatekeeper policy simulate`` on 1,000 recorded images, beside one pass of the policy alone.

    .venv/bin/python -m benchmarks --only simulate
    .venv/bin/python -m benchmarks.bench_simulate --images 1000 --latency-ms 20

On moto in-process: IMAGES images pushed to ECR across 10 repositories, each with a scan
result (the samples: a CRITICAL, a HIGH, a clean one, an enhanced one with an UNTRIAGED) and
its verdict recorded in the table. Measured in the same run:

* simulate: the table's records, the published policy, every image's findings read once from
  ECR by the pool of WORKERS threads, judged with the published policy and a stricter
  candidate (what ``policy simulate`` does, through its own function);
* the baseline: the same records read, and each image's findings read and judged once with
  the published policy alone, one image after the other.

moto answers in-process, in microseconds, under the interpreter's lock: the threads cannot
overlap anything there, so the first pair shows what judging twice costs. In AWS each read is
a network round trip; the second pair adds ``--latency-ms`` to every ECR call (a sleep before
the call, as a round trip's wait) to show what the pool buys there. Each pair is measured
REPEAT times, interleaved, and the best of each kept. Target: simulating (two policies) takes
at most twice one sequential pass of one policy.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from typing import Any

from benchmarks.common import Row, table

BENCH = "simulate"
IMAGES = 1_000
LATENCY_MS = 20.0
REPOSITORIES = 10
REPEAT = 2
SAMPLES = ("basic-critical", "basic-high-only", "basic-clean", "enhanced-medium")
PUBLISHED = """
    version: 1
    default:
      max_findings: {CRITICAL: 0, HIGH: 0}
      warn_findings: {UNTRIAGED: 0}
    """
CANDIDATE = """
    version: 1
    default:
      max_findings: {CRITICAL: 0, HIGH: 0, MEDIUM: 0}
    """


def _fleet(world: Any, images: int) -> None:
    """``images`` images with their scan results and recorded verdicts."""
    from gatekeeper.adapters.store import ImageRecord, _to_item
    from gatekeeper_tools.local.ecr import push_image, set_scan_result
    from tests.support import ACCOUNT, REGION, load_findings

    ecr, ddb = world.ecr, world.session.client("dynamodb")
    bodies = {name: load_findings(name) for name in SAMPLES}
    for number in range(REPOSITORIES):
        ecr.create_repository(repositoryName=f"team-{number}/app")
    batch = []
    for number in range(images):
        repository, sample = f"team-{number % REPOSITORIES}/app", SAMPLES[number % len(SAMPLES)]
        digest = push_image(ecr, repository, f"v{number}", seed=f"image-{number}")
        set_scan_result(repository, digest, bodies[sample], ACCOUNT, REGION)
        state = "QUARANTINED" if sample.startswith("basic-") and "clean" not in sample \
            else "APPROVED"
        batch.append(_to_item(ImageRecord(repository, digest, state=state, revision=1,
                                          tags=(f"v{number}",), reasons=("recorded",))))
        if len(batch) == 25:
            ddb.batch_write_item(RequestItems={world.config.table_name: [
                {"PutRequest": {"Item": item}} for item in batch]})
            batch = []
    if batch:
        ddb.batch_write_item(RequestItems={world.config.table_name: [
            {"PutRequest": {"Item": item}} for item in batch]})


def _baseline(deployment: Any) -> int:
    """The records read, and each image's findings read and judged once with the published
    policy alone, one after the other; returns the images judged."""
    from datetime import UTC, datetime

    from gatekeeper.adapters.ecr import EcrImages
    from gatekeeper.domain import evaluation
    from gatekeeper_tools.cli.simulate import published_policy, recorded_images

    policy = published_policy(deployment).policy
    images = EcrImages(deployment.ecr())
    now = datetime.now(UTC)
    judged = 0
    for record in recorded_images(deployment, ()):
        scan = images.scan(record.repository, record.digest)
        if scan is not None and evaluation.judge_scan(
                policy, record.repository, scan.status, scan.description, scan.findings,
                now) is not None:
            judged += 1
    return judged


def _latency(session: Any, seconds: float) -> None:
    """Every ECR call of clients made from ``session`` from now on waits ``seconds`` first."""
    def wait(**_: Any) -> None:
        time.sleep(seconds)

    session.events.register("before-call.ecr", wait)


def measure(images: int = IMAGES, latency_ms: float = LATENCY_MS) -> list[Row]:
    from moto import mock_aws

    from gatekeeper.domain.policy import parse_policy
    from gatekeeper_tools.cli import simulate as simulate_module
    from gatekeeper_tools.cli.deployment import resolve
    from tests.support import REGION, make_world

    os.environ.pop("AWS_ENDPOINT_URL", None)
    candidate = parse_policy(textwrap.dedent(CANDIDATE), version="candidate")
    rows: list[Row] = []
    with mock_aws():
        world = make_world(signed=False)
        world.publish_policy(textwrap.dedent(PUBLISHED))
        began = time.perf_counter()
        _fleet(world, images)
        print(f"  {images:,} images pushed, scanned and recorded in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
        for wait_ms in (0.0, latency_ms) if latency_ms else (0.0,):
            deployment = resolve(region=REGION, endpoint_url=None, stack=None,
                                 table=world.config.table_name,
                                 policy_bucket=world.config.policy_bucket,
                                 policy_key=world.config.policy_key, env={})
            if wait_ms:
                _latency(deployment.session, wait_ms / 1e3)
            baseline = spent = float("inf")
            for _ in range(REPEAT):  # interleaved, best of REPEAT: neither pays the warm-up
                began = time.perf_counter()
                baseline_judged = _baseline(deployment)
                baseline = min(baseline, time.perf_counter() - began)
                began = time.perf_counter()
                _, simulation = simulate_module.simulate(deployment, candidate)
                spent = min(spent, time.perf_counter() - began)
            judged = len(simulation.compared)
            assert judged == baseline_judged == images, (judged, baseline_judged)
            where = (f"+{wait_ms:g} ms per ECR call" if wait_ms else "moto in-process")
            rows.append(Row(
                BENCH, f"policy simulate, {images:,} images, {simulate_module.WORKERS} "
                       f"workers ({where})", spent, "s", baseline,
                "one sequential pass of the published policy", target=2.0,
                note=f"{images / spent:,.0f} images/s (baseline {images / baseline:,.0f}); "
                     f"{simulation.flips} would flip"))
    return rows


def run(images: int = IMAGES, latency_ms: float = LATENCY_MS) -> list[Row]:
    return measure(images, latency_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS,
                        help="also measure with this wait before every ECR call (0: skip)")
    args = parser.parse_args()
    print(table(run(args.images, args.latency_ms)))


if __name__ == "__main__":
    main()
