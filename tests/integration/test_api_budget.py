"""The AWS calls an image event costs on the happy path: the API budget.

Call counts are deterministic, so they are asserted here; timings live in benchmarks/, apart
from the tests. The budget per event: one DescribeImageScanFindings per page of findings (ECR
pages them 1,000 at a time), plus at most FIXED other calls, with the policy in its cache (a
container reads it at most once a minute: GATEKEEPER_POLICY_CACHE_SECONDS, default 60).

A verdict change costs more than FIXED, by design: it reads the record (GetItem) and the
image's tags as they are (DescribeImages: the reconciler converges what it observes, not what
it remembers), signs the verdict with the stack's KMS key (Sign: before the commit, so the
record never holds an unsigned verdict), commits the verdict with its history entry and takes
the image's lease (TransactWriteItems, one call for both) before touching a tag, writes the marker
(BatchGetImage for the manifest, then PutImage), asks which image indexes reference the image
(Query: after the commit, so an index linked meanwhile is not missed), publishes (Publish) and
settles the record, releasing the lease (PutItem: what makes a crash between publish and
settle recoverable); a flip also removes the old marker (BatchDeleteImage, every
contradicting marker in one call, never the image's last tag). The lease itself costs no call:
it rides on the commit and the settle. ``CHANGES`` pins those calls exactly, so that a new one
is a deliberate decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from tests.moto_paging import basic_scan, paged_scan_findings
from tests.support import World, approved, push_event, quarantined, scan_event

FIXED = 5
PAGE = "DescribeImageScanFindings"
CHANGES = {
    "first verdict": ["GetItem", "DescribeImages", "Sign", "TransactWriteItems",
                      "BatchGetImage", "PutImage", "Query", "Publish", "PutItem"],
    "flip": ["GetItem", "DescribeImages", "Sign", "TransactWriteItems", "BatchGetImage",
             "PutImage", "BatchDeleteImage", "Query", "Publish", "PutItem"],
}
POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
FINDINGS = {1: 10, 3: 2_500}  # pages of findings -> findings (1,000 a page)

class Calls(list[str]):
    """The AWS operations the handlers called, in order."""

    def pages(self) -> int:
        return self.count(PAGE)

    def others(self) -> list[str]:
        return [name for name in self if name != PAGE]


@pytest.fixture
def calls(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Given a published policy, in the container's cache as it is between reads, the
    template's defaults (a push starts the scan where the repository does not scan on push),
    ECR paging findings as it does, and every AWS call of the handlers counted."""
    world.publish_policy(POLICY)
    monkeypatch.setenv("GATEKEEPER_POLICY_CACHE_SECONDS", "60")
    monkeypatch.setenv("GATEKEEPER_START_SCANS", "true")
    seen = Calls()
    world.session.events.register("before-call.*.*", lambda model, **_: seen.append(model.name))
    runtime.gatekeeper.cache_clear()
    runtime.gatekeeper().policies.get()
    seen.clear()
    with paged_scan_findings():
        yield seen


def judged_image(world: World, context: Any, calls: Calls, pages: int) -> tuple[str, str]:
    """An image pushed, scanned with ``pages`` pages of MEDIUM findings, and approved."""
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    on_push(push_event(repo, digest), context)
    world.scanned(repo, digest, basic_scan(FINDINGS[pages]))
    assert on_scan(scan_event(repo, digest), context)["verdict"] == "APPROVED"
    calls.clear()
    return repo, digest


def test_a_push_before_its_scan_is_within_budget(world: World, context: Any,
                                                 calls: Calls) -> None:
    # Given an image just pushed to a repository that does not scan on push (moto's default)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    calls.clear()

    # When its push event arrives
    result = on_push(push_event(repo, digest), context)

    # Then it is recorded as pending after one look for a scan, and its scan started, within
    # the budget
    assert result["status"] == "pending"
    assert "scan started" in result["reason"]
    assert calls.pages() == 1
    assert len(calls.others()) <= FIXED, calls


def first_verdict(world: World, context: Any, calls: Calls, pages: int) -> Calls:
    """A pending image's scan-complete event approves and marks it: the calls it made."""
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    on_push(push_event(repo, digest), context)
    world.scanned(repo, digest, basic_scan(FINDINGS[pages]))
    calls.clear()

    result = on_scan(scan_event(repo, digest), context)
    made = Calls(calls)  # before this test's own calls

    assert result["status"] == "judged"
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])
    return made


@pytest.mark.parametrize("pages", sorted(FINDINGS))
def test_a_first_verdict_reads_each_page_once_and_makes_exactly_the_calls_a_change_needs(
        world: World, context: Any, calls: Calls, pages: int) -> None:
    # Given a pending image whose scan has this many pages of findings
    # When its scan-complete event arrives, Then it is approved and marked (first_verdict),
    made = first_verdict(world, context, calls, pages)

    # reading each page of findings once, and exactly the calls a change needs
    assert made.pages() == pages
    assert made.others() == CHANGES["first verdict"]



@pytest.mark.parametrize("pages", sorted(FINDINGS))
def test_the_echo_of_our_marker_and_a_duplicate_delivery_are_within_budget(
        world: World, context: Any, calls: Calls, pages: int) -> None:
    # Given an approved image whose scan has this many pages of findings
    repo, digest = judged_image(world, context, calls, pages)

    # When the push event of our own marker comes back
    echo = on_push(push_event(repo, digest, tag=approved(digest)), context)

    # Then it is recognised from the record alone
    assert echo["status"] == "ignored"
    assert calls == ["GetItem"]

    # When EventBridge delivers the scan event a second time
    calls.clear()
    again = on_scan(scan_event(repo, digest), context)

    # Then the findings are read again, each page once, and nothing is written (nor signed)
    assert again["status"] == "unchanged"
    assert "Sign" not in calls
    assert calls.pages() == pages
    assert len(calls.others()) <= FIXED, calls


def flip(world: World, context: Any, calls: Calls, pages: int) -> Calls:
    """An approved image rescanned with a CRITICAL on its last page is quarantined and its
    marker swapped: the calls the new scan event made."""
    repo, digest = judged_image(world, context, calls, pages)
    world.scanned(repo, digest, basic_scan(FINDINGS[pages], critical=True))

    result = on_scan(scan_event(repo, digest), context)
    made = Calls(calls)  # before this test's own calls

    assert (result["status"], result["previous"]) == ("judged", "APPROVED")
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    return made


@pytest.mark.parametrize("pages", sorted(FINDINGS))
def test_a_flip_reads_each_page_once_and_makes_exactly_the_calls_a_change_needs(
        world: World, context: Any, calls: Calls, pages: int) -> None:
    # Given an approved image, When a new scan finds a CRITICAL on its last page,
    # Then it is quarantined and its marker swapped (flip),
    made = flip(world, context, calls, pages)

    # reading each page of findings once, and exactly the calls a change needs
    assert made.pages() == pages
    assert made.others() == CHANGES["flip"]
