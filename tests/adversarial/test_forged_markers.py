"""Forged marker tags: anyone with ecr:PutImage can write a tag shaped like the gatekeeper's
markers. Whatever order the events arrive in, once an image has a verdict its marker-shaped
tags are exactly its verdict's marker, no image is deleted for it, and security is told.

Each test checks the properties (harness.convergence_problems) after every delivered event,
not only at the end: a judgement reads the image's actual tags and converges them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper.config import Config
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.verdict import Outcome
from tests.adversarial.harness import (
    add_tag,
    convergence_problems,
    existing,
    image_tags,
    markers,
    notices,
    stored_state,
    untag,
)
from tests.support import World, approved, push_event, quarantined, scan_event

MUTABILITIES = ["MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION"]
# an approval marker naming a digest that is not the image's (nor any image's here)
ELSEWHERE = "approved-" + hashlib.sha256(b"an image elsewhere").hexdigest()[:12]


def repository(world: World, name: str, mutability: str) -> str:
    extra: dict[str, Any] = {}
    if mutability.endswith("_WITH_EXCLUSION"):
        extra["imageTagMutabilityExclusionFilters"] = [{"filterType": "WILDCARD",
                                                        "filter": "latest"}]
    world.ecr.create_repository(repositoryName=name, imageTagMutability=mutability, **extra)
    return name


def digest_of(world: World, seed: str) -> str:
    """The digest an image will have, known before it is pushed (as an attacker knows it: the
    digest depends on the manifest alone), by pushing it to a scratch repository."""
    if "scratch/digests" not in {r["repositoryName"] for r in
                                 world.ecr.describe_repositories()["repositories"]}:
        world.ecr.create_repository(repositoryName="scratch/digests")
    return world.push("scratch/digests", f"s-{hashlib.sha256(seed.encode()).hexdigest()[:8]}",
                      seed=seed)


def forged_tag(kind: str, digest: str, scheme: MarkerScheme | None = None) -> str:
    """The forged approval: this image's own approval marker, or one naming another digest."""
    if kind == "own":
        return (scheme or MarkerScheme()).tag_for(Outcome.APPROVED, digest) or ""
    return ELSEWHERE


def assert_converged(world: World, scheme: MarkerScheme, repo: str, *digests: str,
                     when: str) -> None:
    problems = [p for d in digests for p in convergence_problems(world, scheme, repo, d)]
    assert problems == [], f"after {when}: {problems}"


def assert_forgery_alerted(world: World, tag: str) -> None:
    alerts = notices(world, "forged_marker")
    assert alerts, "no forged_marker notice was published"
    assert any(tag in alert["Message"] for alert in alerts), [a["Message"] for a in alerts]


def assert_none_deleted(world: World, repo: str, before: set[str]) -> None:
    assert existing(world, repo) >= before, f"deleted: {sorted(before - existing(world, repo))}"


# --- a forged approval as the image's only tag ---------------------------------------------------

@pytest.mark.parametrize("findings", ["basic-critical", "basic-clean"])
@pytest.mark.parametrize("kind", ["own", "other"])
@pytest.mark.parametrize("mutability", MUTABILITIES)
def test_forged_only_tag_pushed_before_the_scan(world: World, context: Any, mutability: str,
                                               kind: str, findings: str) -> None:
    # Given an image pushed with nothing but a forged approval marker as its tag
    scheme = world.config.markers
    repo = repository(world, "team-a/web", mutability)
    digest = digest_of(world, "before-scan")
    forged = forged_tag(kind, digest)
    assert world.push(repo, forged, seed="before-scan") == digest
    before = existing(world, repo)

    # When its push event arrives, then its scan completes and the scan event arrives
    on_push(push_event(repo, digest, tag=forged), context)
    assert_converged(world, scheme, repo, digest, when="the push event (pending)")
    world.scanned(repo, digest, findings)
    on_scan(scan_event(repo, digest, tags=(forged,)), context)

    # Then the image carries its verdict's marker and nothing else marker-shaped, it still
    # exists, and security was told of the forged tag
    state = stored_state(world, repo, digest)
    assert state == ("QUARANTINED" if findings == "basic-critical" else "APPROVED")
    assert_converged(world, scheme, repo, digest, when="the scan event")
    if forged != scheme.tag_for(Outcome(state), digest):
        assert forged not in (image_tags(world, repo, digest) or [])
        assert_forgery_alerted(world, forged)
    assert_none_deleted(world, repo, before)


@pytest.mark.parametrize("kind", ["own", "other"])
@pytest.mark.parametrize("mutability", MUTABILITIES)
def test_forged_only_tag_pushed_after_the_scan_finished(world: World, context: Any,
                                                        mutability: str, kind: str) -> None:
    # Given an image whose only tag is a forged approval, its scan (a CRITICAL) already
    # finished in ECR before any event reaches the gatekeeper
    scheme = world.config.markers
    repo = repository(world, "team-a/web", mutability)
    digest = digest_of(world, "after-scan")
    forged = forged_tag(kind, digest)
    world.push(repo, forged, seed="after-scan")
    world.scanned(repo, digest, "basic-critical")
    before = existing(world, repo)

    # When the forged tag's push event arrives, then the scan event
    on_push(push_event(repo, digest, tag=forged), context)
    assert_converged(world, scheme, repo, digest, when="the push event")
    on_scan(scan_event(repo, digest, tags=(forged,)), context)

    # Then the quarantine marker is the image's only marker, and the forgery was reported
    assert stored_state(world, repo, digest) == "QUARANTINED"
    assert_converged(world, scheme, repo, digest, when="the scan event")
    assert markers(scheme, image_tags(world, repo, digest) or []) == [quarantined(digest)]
    assert_forgery_alerted(world, forged)
    assert_none_deleted(world, repo, before)


@pytest.mark.parametrize("mutability", MUTABILITIES)
def test_image_stripped_to_a_forged_approval_after_its_quarantine(world: World, context: Any,
                                                                  mutability: str) -> None:
    # Given a quarantined image
    scheme = world.config.markers
    repo = repository(world, "team-a/web", mutability)
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_push(push_event(repo, digest), context)
    on_scan(scan_event(repo, digest), context)
    assert stored_state(world, repo, digest) == "QUARANTINED"

    # When someone adds the approval marker, then removes every other tag (the quarantine
    # marker included), so that the forged approval is the image's only tag
    forged_push = add_tag(world, repo, digest, approved(digest))
    untag(world, repo, "v1")
    untag(world, repo, quarantined(digest))
    assert image_tags(world, repo, digest) == [approved(digest)]
    before = existing(world, repo)
    on_push(forged_push, context)

    # Then the quarantine marker is back and the forged approval is gone (after the marker was
    # added: the image never lost its last tag); a redelivered scan event keeps it so
    assert_converged(world, scheme, repo, digest, when="the forged tag's push event")
    on_scan(scan_event(repo, digest), context)
    assert_converged(world, scheme, repo, digest, when="a redelivered scan event")
    assert image_tags(world, repo, digest) == [quarantined(digest)]
    assert_forgery_alerted(world, approved(digest))
    assert_none_deleted(world, repo, before)


@pytest.mark.parametrize("mutability", MUTABILITIES)
def test_forged_approval_whose_push_event_arrives_after_the_verdict(
        world: World, context: Any, mutability: str) -> None:
    # Given an image pushed, and a forged approval marker added before its scan finished
    scheme = world.config.markers
    repo = repository(world, "team-a/web", mutability)
    digest = world.push(repo, "v1")
    late_push = add_tag(world, repo, digest, approved(digest))
    before = existing(world, repo)

    # When the image's push event and then its scan event (a CRITICAL) are delivered, and
    # only then the forged tag's push event (EventBridge does not order events)
    on_push(push_event(repo, digest), context)
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest, tags=("v1", approved(digest))), context)

    # Then the verdict itself already removed the forged approval: the image's tags are the
    # truth, read at judgement time, not what the events said
    assert stored_state(world, repo, digest) == "QUARANTINED"
    assert_converged(world, scheme, repo, digest, when="the scan event")
    on_push(late_push, context)
    assert_converged(world, scheme, repo, digest, when="the late push event")
    assert image_tags(world, repo, digest) == sorted(["v1", quarantined(digest)])
    assert_forgery_alerted(world, approved(digest))
    assert_none_deleted(world, repo, before)


# --- a marker of one digest on another ----------------------------------------------------------

@pytest.mark.parametrize("a_keeps_a_tag", [True, False], ids=["a-tagged", "a-only-marker"])
def test_approval_marker_moved_onto_another_image(world: World, context: Any,
                                                  a_keeps_a_tag: bool) -> None:
    # Given, in a MUTABLE repository, image A approved and image B quarantined
    scheme = world.config.markers
    repo = repository(world, "team-a/web", "MUTABLE")
    a = world.push(repo, "a-1", seed="image-a")
    b = world.push(repo, "b-1", seed="image-b")
    for digest, tag, findings in ((a, "a-1", "basic-clean"), (b, "b-1", "basic-critical")):
        world.scanned(repo, digest, findings)
        on_push(push_event(repo, digest, tag=tag), context)
    assert (stored_state(world, repo, a), stored_state(world, repo, b)) == ("APPROVED",
                                                                            "QUARANTINED")
    if not a_keeps_a_tag:
        untag(world, repo, "a-1")  # A's approval marker is now its only tag

    # When someone moves A's approval marker onto B (a MUTABLE tag moves: ECR takes it off A,
    # and deletes A if it was A's last tag) and the push event arrives
    moved = add_tag(world, repo, b, approved(a))
    before = existing(world, repo)
    assert (a in before) is a_keeps_a_tag
    on_push(moved, context)

    # Then B carries only its own marker, A (if it still exists) is marked by its own verdict
    # again, no image was deleted by the gatekeeper, and the forgery was reported
    assert markers(scheme, image_tags(world, repo, b) or []) == [quarantined(b)]
    assert_converged(world, scheme, repo, *sorted(before), when="the moved marker's push")
    if a_keeps_a_tag:
        assert image_tags(world, repo, a) == sorted(["a-1", approved(a)])
    assert_forgery_alerted(world, approved(a))
    assert_none_deleted(world, repo, before)

    # and a redelivered scan event of either image changes nothing of that
    on_scan(scan_event(repo, b, tags=("b-1",)), context)
    assert_converged(world, scheme, repo, *sorted(before), when="a redelivered scan event")


# --- a custom marker template ---------------------------------------------------------------

def test_custom_marker_templates_are_the_ones_reconciled(
        world: World, context: Any, configure: Callable[..., Config]) -> None:
    # Given the functions configured with their own marker templates
    config = configure(GATEKEEPER_APPROVED_TAG="passed-{digest12}",
                       GATEKEEPER_QUARANTINED_TAG="blocked-{digest12}")
    scheme = config.markers
    repo = repository(world, "team-a/web", "MUTABLE")
    digest = digest_of(world, "custom")
    forged = scheme.tag_for(Outcome.APPROVED, digest) or ""
    assert forged.startswith("passed-")

    # And an image pushed with a forged approval of that template as its only tag, to which
    # its owner adds a tag that only looks like the default template (an ordinary tag here)
    world.push(repo, forged, seed="custom")
    on_push(push_event(repo, digest, tag=forged), context)
    lookalike = add_tag(world, repo, digest, approved(digest))
    before = existing(world, repo)

    # When the look-alike's push event and the scan event (a CRITICAL) arrive
    on_push(lookalike, context)
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest, tags=(forged, approved(digest))), context)

    # Then the image carries the configured quarantine marker only, the forged "passed-" tag
    # is gone, and the look-alike (not a marker under this configuration) is untouched
    assert stored_state(world, repo, digest) == "QUARANTINED"
    assert_converged(world, scheme, repo, digest, when="the scan event")
    assert image_tags(world, repo, digest) == sorted([approved(digest), f"blocked-{digest[7:19]}"])
    assert_forgery_alerted(world, forged)
    assert_none_deleted(world, repo, before)
