"""Many Lambda containers judging one image at once: one marker, one truth.

A ThreadedMotoServer (one per module) stands in for AWS; its DynamoDB requests are serialized
to give moto's conditional writes DynamoDB's atomicity (harness.SerializedDynamoDB), every
other service stays concurrent, ECR requests with a few milliseconds of latency added. Each
simulated container is a thread with its own boto3 session and its own Gatekeeper
(``runtime.build``), so its own policy cache: half of them cache the policy for 60 s (warm
containers that may hold an older version), half read it every time. They call the entry
below the Powertools decorators, which are not thread-safe.

Every round all containers are released together on one image, each with one event a real
deployment sends: the scan event (redelivered), the sweeper's re-evaluation after a policy
upload, or the PUSH event of a marker tag someone just wrote on the image (the echo of the
gatekeeper's own write, or a forgery: the gatekeeper cannot tell). An invocation that raises
is retried after a short pause, as Lambda retries; one that exhausts its retries is replayed
afterwards, as ``gatekeeper replay-dlq`` would. Every other round a new policy is published
(lenient, medium, strict in turn) so that verdicts flip, and containers disagree while
their caches differ.

During each round a watcher reads the image's tags: once judged, an image is never seen
without its marker (each writer adds its marker before removing any, one writer at a time).
After each round, for the image of the round:
- no image is lost;
- exactly one marker-shaped tag is on the image, and it is the stored verdict's marker;
- the last verdict notice (highest revision in verdict_id) announced the stored verdict;
- the stored verdict is the newest policy's verdict on the image's findings.

GATEKEEPER_RACE_ROUNDS (default 40) and GATEKEEPER_RACE_CONTAINERS (default 8, at least 8)
scale it; the summary line (printed, shown with -s) counts rounds, invocations, retries and
failures.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from gatekeeper.config import GateConfig
from gatekeeper.domain.events import (
    Trigger,
    parse_event,
    parse_reevaluation,
    reevaluation_request,
)
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.verdict import Outcome
from gatekeeper.runtime import build_gate
from tests.adversarial.harness import (
    Delivery,
    MotoServer,
    ServerSession,
    allows,
    container,
    convergence_problems,
    deliver,
    existing,
    policy_text,
    publish_newer,
    stored_state,
)
from tests.support import World, approved, load_findings, push_event, quarantined, scan_event

if TYPE_CHECKING:
    from gatekeeper.service import Gatekeeper

# `make test` races 40 rounds (its time budget); `make test-nightly` races 300.
ROUNDS = int(os.environ.get("GATEKEEPER_RACE_ROUNDS", "40"))
CONTAINERS = max(8, int(os.environ.get("GATEKEEPER_RACE_CONTAINERS", "8")))
RETRIES = 5  # retries of a failed invocation before it is dead-lettered
POLICY_EVERY = 2  # rounds between policy publications
ECR_LATENCY = (0.002, 0.012)  # seconds added to each ECR request (conftest.moto_server)
POLICIES = [("lenient", {"CRITICAL": 5, "HIGH": 5}),
            ("medium", {"CRITICAL": 0, "HIGH": 5}),
            ("strict", {"CRITICAL": 0, "HIGH": 0})]
# (repository, mutability, findings): four images, each judged every fourth round
IMAGES = [("race/mutable", "MUTABLE", "basic-critical"),
          ("race/mutable", "MUTABLE", "basic-high-only"),
          ("race/immutable", "IMMUTABLE", "basic-critical"),
          ("race/immutable", "IMMUTABLE", "basic-high-only")]


@dataclass
class Image:
    repository: str
    digest: str
    tag: str
    findings: dict[str, Any]


@dataclass
class Tally:
    rounds: int = 0
    deliveries: int = 0
    attempts: int = 0
    dead_lettered: int = 0
    unmarked: int = 0
    results: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, delivery: Delivery) -> None:
        self.deliveries += 1
        self.attempts += delivery.attempts
        for error in delivery.errors:
            self.errors[error.split(":", 1)[0]] += 1
        if delivery.dead_lettered:
            self.dead_lettered += 1
        else:
            self.results[str(getattr(delivery.result, "status", delivery.result))] += 1


def images(world: World, moto: MotoServer) -> list[Image]:
    """The images of the race, pushed, their findings seeded through the moto API."""
    made = []
    for repo, mutability, _ in IMAGES:
        if repo not in {r["repositoryName"]
                        for r in world.ecr.describe_repositories()["repositories"]}:
            world.repository(repo, mutability)
    for number, (repo, _, findings) in enumerate(IMAGES):
        tag = f"release-{number}"
        digest = world.push(repo, tag, seed=f"race-{number}")
        world.ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": digest})
        body = load_findings(findings)
        moto.seed_findings(repo, digest, body)
        made.append(Image(repo, digest, tag, body))
    return made


def events_for(number: int, image: Image, round_number: int) -> list[Any]:
    """What container ``number`` is given in a round: one event, as one Lambda invocation."""
    if number % 4 == 2:  # the sweeper's re-evaluation after a policy upload
        return [reevaluation_request(image.repository, image.digest, Trigger.POLICY)]
    if number % 4 == 3:  # ECR's PUSH event of a marker tag written (see run_round)
        return [push_event(image.repository, image.digest,
                           tag=marker_written(number, image, round_number))]
    return [scan_event(image.repository, image.digest, tags=(image.tag,))]  # (redelivered)


def marker_written(number: int, image: Image, round_number: int) -> str:
    """The marker tag someone with ecr:PutImage writes on the image in this round, of either
    outcome in turn (the gatekeeper's own write echoed, or a forgery: it cannot tell)."""
    return (approved if (number + round_number) % 8 < 4 else quarantined)(image.digest)


def write_tag(ecr: Any, image: Image, tag: str) -> None:
    manifest = ecr.batch_get_image(repositoryName=image.repository,
                                   imageIds=[{"imageDigest": image.digest}])["images"]
    if not manifest:
        return
    try:
        ecr.put_image(repositoryName=image.repository, imageTag=tag,
                      imageManifest=manifest[0]["imageManifest"])
    except ClientError as err:  # already there (ECR, moto: either code)
        if err.response["Error"]["Code"] not in ("ImageAlreadyExistsException",
                                                 "ImageTagAlreadyExistsException"):
            raise


def parse(event: Any) -> Any:
    if event.get("schema", "").startswith("gatekeeper.reevaluate/"):
        return parse_reevaluation(event)
    return parse_event(event)


@dataclass
class RoundLog:
    deliveries: list[tuple[int, Any, Delivery]]
    unmarked: list[list[str]]  # tag lists the watcher saw with no marker of the image


def run_round(fleet: list[Gatekeeper], tagger: Any, watcher: Any | None,
              scheme: MarkerScheme, image: Image, seed: int) -> RoundLog:
    """Release every container at once on ``image``. The containers whose event is a
    marker's PUSH first have ``tagger`` (an ECR client of someone with push rights) write that
    tag, as ECR sends the event only after the write. ``watcher`` (an ECR client; None: no
    watching) reads the image's tags all along: an image that has a verdict must never be
    seen without a marker, since each writer adds its marker before removing any, and one
    writer at a time changes an image's tags."""
    barrier = threading.Barrier(len(fleet))
    log = RoundLog([], [])
    lock = threading.Lock()
    stop = threading.Event()

    def work(number: int, gatekeeper: Gatekeeper) -> None:
        pauses = random.Random(seed * 1000 + number)
        barrier.wait()
        if number % 4 == 3:
            write_tag(tagger, image, marker_written(number, image, seed))
        for event in events_for(number, image, seed):
            delivery = deliver(gatekeeper, event, retries=RETRIES, parse=parse,
                               pause=lambda attempt: pauses.uniform(0.02, 0.08) * (attempt + 1))
            with lock:
                log.deliveries.append((number, event, delivery))

    def watch() -> None:
        while not stop.is_set():
            details = watcher.describe_images(repositoryName=image.repository, imageIds=[
                {"imageDigest": image.digest}])["imageDetails"]
            tags = sorted(details[0].get("imageTags", [])) if details else []
            if not any(scheme.is_marker_of(t, image.digest) for t in tags):
                log.unmarked.append(tags)
            stop.wait(0.015)

    threads = [threading.Thread(target=work, args=(n, g), name=f"container-{n}")
               for n, g in enumerate(fleet)]
    looking = threading.Thread(target=watch, name="watcher") if watcher else None
    if looking:
        looking.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    if looking:
        looking.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a container never returned"
    return log


@pytest.mark.parametrize("rounds", [ROUNDS])
def test_concurrent_containers_converge_on_one_marker_and_one_truth(
        remote_world: World, moto_server: MotoServer, rounds: int) -> None:
    # Given the gatekeeper deployed in the moto server, four images with seeded findings,
    # and a fleet of containers, each on its own session; half cache the policy for 60 s
    world = remote_world
    gate = build_gate(GateConfig.for_key(world.config.table_name,
                                         str(world.config.signing_key_arn)), world.session)
    scheme = world.config.markers
    pool = images(world, moto_server)
    everything = {(i.repository, i.digest) for i in pool}
    fleet = [container(world, ServerSession(moto_server.url),
                       GATEKEEPER_POLICY_CACHE_SECONDS="60" if number % 2 else "0",
                       GATEKEEPER_LEASE_SECONDS="30", GATEKEEPER_LEASE_WAIT_SECONDS="10")
             for number in range(CONTAINERS)]
    tagger = ServerSession(moto_server.url).client("ecr")
    watcher = ServerSession(moto_server.url).client("ecr")
    replayer = container(world, ServerSession(moto_server.url),
                         GATEKEEPER_POLICY_CACHE_SECONDS="0")
    policy = POLICIES[0]
    publish_newer(world, lambda: world.publish_policy(policy_text(policy[1])))
    tally = Tally()
    started = time.monotonic()

    for number in range(rounds):
        if number and number % POLICY_EVERY == 0:
            policy = POLICIES[(number // POLICY_EVERY) % len(POLICIES)]
            limits = policy[1]
            publish_newer(world, lambda limits=limits: world.publish_policy(policy_text(limits)))
        image = pool[number % len(pool)]

        # When every container is handed its events for this image at the same instant
        judged_before = stored_state(world, image.repository, image.digest) not in (None,
                                                                                    "PENDING")
        log = run_round(fleet, tagger, watcher if judged_before else None, scheme, image,
                        seed=number)
        dead = [(event, d) for _, event, d in log.deliveries if d.dead_lettered]
        for _, _, delivery in log.deliveries:
            tally.add(delivery)
        for event, _ in dead:  # the operator replays the dead-letter queue
            replayed = deliver(replayer, event, retries=RETRIES, parse=parse,
                               pause=lambda attempt: 0.05)
            if replayed.dead_lettered:
                tally.failures.append(f"round {number}: replay failed: {replayed.errors[-1]}")
        tally.rounds += 1

        # Then: no image lost, one marker equal to the stored verdict's and the last notice's,
        # and the stored verdict is the newest policy's
        label = f"round {number} ({policy[0]}, {image.repository}@{image.digest[7:19]})"
        problems = convergence_problems(world, scheme, image.repository, image.digest)
        lost = {(r, d) for r, d in everything if d not in existing(world, r)}
        problems += [f"image lost: {r}@{d[7:19]}" for r, d in sorted(lost)]
        if log.unmarked:
            tally.unmarked += len(log.unmarked)
            problems.append(f"seen {len(log.unmarked)} time(s) without its marker during the "
                            f"round, e.g. tags {log.unmarked[0]}")
        state = stored_state(world, image.repository, image.digest)
        newest_approves = allows(policy[1], image.findings)
        if state is None or state == "PENDING":
            problems.append(f"no verdict stored ({state})")
        elif Outcome(state).approved != newest_approves:
            problems.append(f"stored {state}, but the newest policy ({policy[0]}) "
                            f"{'approves' if newest_approves else 'quarantines'}")
        else:
            # and what a deploy gate reads agrees: the signed verdict on the record is the
            # stored one (an approval passes, anything else is refused)
            decision = gate.check_digest(image.repository, image.digest)
            if decision.allowed != Outcome(state).approved:
                problems.append(f"stored {state}, but the verdict gate "
                                f"{'allows' if decision.allowed else 'refuses'} it: "
                                f"{decision.reason}")
        tally.failures += [f"{label}: {p}" for p in problems]

    elapsed = time.monotonic() - started
    print(f"\nraces: {tally.rounds} rounds x {CONTAINERS} containers, {tally.deliveries} "
          f"deliveries, {tally.attempts} invocations ({tally.attempts - tally.deliveries} "
          f"retries), {tally.dead_lettered} dead-lettered and replayed; "
          f"{tally.unmarked} sightings of a judged image without its marker; results "
          f"{dict(tally.results)}; errors {dict(tally.errors)}; "
          f"{moto_server.dynamodb.serialized} DynamoDB requests serialized; "
          f"{len(tally.failures)} failures in {elapsed:.1f} s")
    for failure in tally.failures[:20]:
        print("  " + failure)
    assert tally.failures == [], (f"{len(tally.failures)} failures in {tally.rounds} rounds; "
                                  f"first: {tally.failures[:5]}")
