"""The newest policy wins: a container whose policy cache still holds an older version must
never commit a verdict older than the one already stored (it re-reads the policy instead).

Two simulated containers on one account: A caches the policy for 60 s (the default) and has
read the first version; B has no cache, as a container that just started. The new version is
published as ``gatekeeper policy push`` does (the CLI itself, one S3 put), and B runs its
re-evaluation (what the sweeper queues for every image on a policy upload); then A judges
the same image again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from gatekeeper.domain.events import (
    Trigger,
    parse_event,
    parse_reevaluation,
    reevaluation_request,
)
from gatekeeper_tools.cli import main
from tests.adversarial.harness import (
    container,
    convergence_problems,
    image_tags,
    markers,
    notice_policy_version,
    notice_verdict,
    notices,
    policy_text,
    publish_newer,
    revision_of,
    verdict_item,
)
from tests.support import REGION, World, approved, push_event, quarantined, scan_event

if TYPE_CHECKING:
    from gatekeeper.service import Gatekeeper

LENIENT = {"CRITICAL": 5, "HIGH": 5}
STRICT = {"CRITICAL": 0, "HIGH": 0}


@pytest.fixture
def publish(world: World, tmp_path: Path) -> Callable[[dict[str, int]], str]:
    """Publish a policy with the CLI (validate, then one S3 put); returns its version id."""
    def push(limits: dict[str, int]) -> str:
        path = tmp_path / f"policy-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(policy_text(limits))
        argv = ["policy", "push", str(path), "--bucket", world.config.policy_bucket,
                "--key", world.config.policy_key, "--yes", "--no-simulate"]
        return publish_newer(world, lambda: _ok(main(argv)))

    return push


def _ok(code: int) -> None:
    assert code == 0, "gatekeeper policy push failed"


def containers(world: World) -> tuple[Gatekeeper, Gatekeeper]:
    """A: a warm container caching the policy for 60 s; B: a fresh one (no cache)."""
    a = container(world, boto3.session.Session(region_name=REGION),
                  GATEKEEPER_POLICY_CACHE_SECONDS="60")
    b = container(world, boto3.session.Session(region_name=REGION),
                  GATEKEEPER_POLICY_CACHE_SECONDS="0")
    return a, b


def policy_reevaluation(repo: str, digest: str, trigger: Trigger = Trigger.POLICY) -> Any:
    """The re-evaluation request the sweeper queues (parsed as on_reevaluate parses it)."""
    return parse_reevaluation(reevaluation_request(repo, digest, trigger))


def given_an_image_judged_by_a(world: World, a: Gatekeeper, findings: str) -> tuple[str, str]:
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, findings)
    a.handle(parse_event(scan_event(repo, digest)))
    return repo, digest


def stored(world: World, repo: str, digest: str) -> dict[str, Any]:
    item = verdict_item(world.session, world.config.table_name, repo, digest)
    assert item is not None
    return item


def received(world: World) -> int:
    """How many notices the subscriber has received so far (a mark for ``verdicts_since``)."""
    return len(notices(world))


def verdicts_since(world: World, digest: str, mark: int) -> list[dict[str, Any]]:
    """The image's verdict notices received after ``mark``, in verdict order."""
    later = [n for n in notices(world)[mark:]
             if n in notices(world, "verdict", digest)]
    return sorted(later, key=revision_of)


def redeliver(gatekeeper: Gatekeeper, event: Any) -> None:
    gatekeeper.handle(parse_event(event) if isinstance(event, dict) else event)


# --- P2 tightens or loosens ---------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """P1 then P2, the verdict each gives an image with a CRITICAL, and P2's marker."""

    p1: dict[str, int]
    p2: dict[str, int]
    by_p1: str
    by_p2: str
    marker: Callable[[str], str]


CHANGES = {
    "tightened": Change(LENIENT, STRICT, "APPROVED", "QUARANTINED", quarantined),
    "loosened": Change(STRICT, LENIENT, "QUARANTINED", "APPROVED", approved),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_stale_container_does_not_undo_a_policy_change(
        world: World, publish: Callable[[dict[str, int]], str], change: str) -> None:
    # Given P1 published, and container A judging an image with a CRITICAL by it
    policy = CHANGES[change]
    p1 = publish(policy.p1)
    a, b = containers(world)
    repo, digest = given_an_image_judged_by_a(world, a, "basic-critical")
    assert (stored(world, repo, digest)["state"], stored(world, repo, digest)["policy_version"]
            ) == (policy.by_p1, p1)

    # And P2 (tightened or loosened) published, its re-evaluation run by container B
    p2 = publish(policy.p2)
    mark = received(world)
    b.handle(policy_reevaluation(repo, digest))
    assert stored(world, repo, digest)["state"] == policy.by_p2

    # When container A, its cache still holding P1, gets a redelivered scan event
    redeliver(a, scan_event(repo, digest))

    # Then P2's verdict stands: stored, on the image, and in every notice since (P2's alone)
    record = stored(world, repo, digest)
    assert (record["state"], record["policy_version"]) == (policy.by_p2, p2)
    assert convergence_problems(world, world.config.markers, repo, digest) == []
    assert markers(world.config.markers, image_tags(world, repo, digest) or []) == [
        policy.marker(digest)]
    later = verdicts_since(world, digest, mark)
    assert [notice_verdict(n) for n in later] == [policy.by_p2]
    assert notice_policy_version(later[-1]) == p2
    assert {notice_policy_version(n) for n in later} == {p2}


# --- no re-approval after a tightening, whatever A is asked to do -----------------------------

REDELIVERIES: dict[str, Callable[[str, str], Any]] = {
    "scan-event": lambda repo, digest: scan_event(repo, digest),
    "inspector-finding": lambda repo, digest: policy_reevaluation(repo, digest,
                                                                  Trigger.FINDING),
    "expiry": lambda repo, digest: policy_reevaluation(repo, digest, Trigger.EXPIRY),
    "push-of-a-new-tag": lambda repo, digest: push_event(repo, digest, tag="v1-release"),
}


@pytest.mark.parametrize("a_judged_p2_first", [False, True],
                         ids=["b-first", "stale-a-first"])
@pytest.mark.parametrize("redelivery", sorted(REDELIVERIES))
def test_no_reapproval_after_a_tightening(world: World,
                                          publish: Callable[[dict[str, int]], str],
                                          redelivery: str, a_judged_p2_first: bool) -> None:
    # Given an image approved under P1 by container A, then P2 (strict) published
    publish(LENIENT)
    a, b = containers(world)
    repo, digest = given_an_image_judged_by_a(world, a, "basic-critical")
    assert stored(world, repo, digest)["state"] == "APPROVED"
    p2 = publish(STRICT)
    event = REDELIVERIES[redelivery](repo, digest)
    if redelivery == "push-of-a-new-tag":
        world.ecr.put_image(repositoryName=repo, imageTag="v1-release", imageManifest=world.ecr
                            .batch_get_image(repositoryName=repo, imageIds=[
                                {"imageDigest": digest}])["images"][0]["imageManifest"])
    if a_judged_p2_first:
        # (A, still on P1, judging before P2's re-evaluation reached B, commits nothing
        # older than what is stored: whatever it does here, B's re-evaluation follows)
        redeliver(a, event)

    # And P2's re-evaluation run by container B: quarantined
    mark = received(world)
    b.handle(policy_reevaluation(repo, digest))
    assert stored(world, repo, digest)["state"] == "QUARANTINED"

    # When container A, its cache still holding P1, is asked to judge the image again
    redeliver(a, event)
    redeliver(a, REDELIVERIES["scan-event"](repo, digest))

    # Then no approval follows the quarantine: stored, marked and announced under P2
    record = stored(world, repo, digest)
    assert (record["state"], record["policy_version"]) == ("QUARANTINED", p2)
    assert convergence_problems(world, world.config.markers, repo, digest) == []
    later = verdicts_since(world, digest, mark)
    assert [notice_verdict(n) for n in later] == ["QUARANTINED"], [
        (revision_of(n), notice_verdict(n), notice_policy_version(n)) for n in later]
