"""Policy features through the real handlers, against moto: exceptions (and their expiry),
warnings, monitor mode and per-state scan failure choices."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from functions.on_scan.app import handler as on_scan
from gatekeeper.domain.events import parse_event
from gatekeeper.service import Gatekeeper
from tests.support import World, approved, load_findings, quarantined, scan_event

STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"


def attributes(note: dict[str, Any]) -> dict[str, str]:
    return {k: v["Value"] for k, v in note["MessageAttributes"].items()}


def exception_policy(expires: date) -> str:
    """Only CRITICAL findings are limited; the libwebp CRITICAL is accepted until ``expires``."""
    return (
        "version: 1\n"
        "default:\n"
        "  max_findings: {CRITICAL: 0}\n"
        "exceptions:\n"
        "  - id: CVE-2023-4863\n"
        "    package: libwebp\n"
        "    repositories: ['team-a/*']\n"
        f"    expires: {expires.isoformat()}\n"
        "    reason: Not reachable, the service never decodes images\n"
        "    owner: appsec@example.com\n"
        "    ticket: SEC-1234\n"
    )


# --- exceptions ------------------------------------------------------------------------------

def test_exception_covering_the_only_critical_approves_and_names_its_owner(
        world: World, context: Any) -> None:
    # Given an exception for the image's only CRITICAL finding
    world.publish_policy(exception_policy(datetime.now(UTC).date() + timedelta(days=30)))
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")

    # When the scan event arrives
    result = on_scan(scan_event(repo, digest), context)

    # Then the image is approved and carries the approval marker
    assert result["verdict"] == "APPROVED"
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])
    # and the notification says which exception let it through, and whose it is
    [note] = world.notifications()
    assert attributes(note)["verdict"] == "APPROVED"
    assert "Findings ignored (1):" in note["Message"]
    assert "exception CVE-2023-4863 in libwebp by appsec@example.com" in note["Message"]
    assert "SEC-1234" in note["Message"]


def test_once_the_exception_expires_the_image_is_quarantined(world: World,
                                                             context: Any) -> None:
    # Given an image approved thanks to an exception that expires in 30 days
    expires = datetime.now(UTC).date() + timedelta(days=30)
    world.publish_policy(exception_policy(expires))
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    assert on_scan(scan_event(repo, digest), context)["verdict"] == "APPROVED"

    # When the scan event is handled again after the expiry day has ended (UTC)
    gatekeeper: Gatekeeper = world.gatekeeper()
    gatekeeper.clock = lambda: datetime.combine(expires + timedelta(days=1), time(0, 0, 1),
                                                tzinfo=UTC)
    result = gatekeeper.handle(parse_event(scan_event(repo, digest)))

    # Then the exception no longer applies: quarantined, and the marker flips
    assert (result.status, result.previous, result.verdict) == (
        "judged", "APPROVED", "QUARANTINED")
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    verdicts = [attributes(n)["verdict"] for n in world.notifications()]
    assert verdicts == ["APPROVED", "QUARANTINED"]
    assert "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in (
        world.notifications()[-1]["Message"])


def test_exception_still_applies_on_its_last_day(world: World, context: Any) -> None:
    # Given an image approved thanks to an exception written `expires: <D>`
    expires = datetime.now(UTC).date() + timedelta(days=30)
    world.publish_policy(exception_policy(expires))
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)

    # When it is judged again in the last minute of D (UTC)
    gatekeeper = world.gatekeeper()
    gatekeeper.clock = lambda: datetime.combine(expires, time(23, 59), tzinfo=UTC)
    result = gatekeeper.handle(parse_event(scan_event(repo, digest)))

    # Then nothing changes
    assert (result.status, result.verdict) == ("unchanged", "APPROVED")
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])


# --- warnings --------------------------------------------------------------------------------

def test_warnings_approve_with_the_approval_marker_and_notify(world: World,
                                                              context: Any) -> None:
    # Given a policy that warns above 0 MEDIUM findings
    world.publish_policy(STRICT + "  warn_findings: {MEDIUM: 0}\n")
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")

    # When an image with one MEDIUM finding is judged
    result = on_scan(scan_event(repo, digest), context)

    # Then it is approved with warnings: deployable (approved marker), and notified as such
    assert result["verdict"] == "APPROVED_WITH_WARNINGS"
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])
    [note] = world.notifications()
    assert attributes(note)["verdict"] == "APPROVED_WITH_WARNINGS"
    assert note["Subject"] == "[APPROVED_WITH_WARNINGS] team-a/web:v1"
    assert "MEDIUM: 1 finding over the warning limit of 0 (CVE-2019-5188)" in note["Message"]
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None and record.state == "APPROVED_WITH_WARNINGS"
    assert record.marker == approved(digest)


# --- monitor mode ----------------------------------------------------------------------------

MONITOR = STRICT + "repositories:\n  - match: 'team-a/*'\n    mode: monitor\n"


def test_monitor_mode_records_and_notifies_but_changes_no_tag(world: World,
                                                              context: Any) -> None:
    # Given team-a/* in monitor mode, and an image there that breaks the limits
    world.publish_policy(MONITOR)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")

    # When its scan event arrives
    result = on_scan(scan_event(repo, digest), context)

    # Then the quarantine verdict is recorded
    assert result["verdict"] == "QUARANTINED"
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None and record.state == "QUARANTINED" and record.settled
    # and notified once, flagged as monitor mode
    [note] = world.notifications()
    assert attributes(note)["verdict"] == "QUARANTINED"
    assert attributes(note)["mode"] == "monitor"
    assert "Mode:         monitor" in note["Message"]
    # but the image keeps exactly its own tags
    assert world.tags(repo, digest) == ["v1"]


def test_monitor_mode_leaves_other_repositories_enforced(world: World, context: Any) -> None:
    world.publish_policy(MONITOR)
    repo = world.repository("team-b/api")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    result = on_scan(scan_event(repo, digest), context)
    assert result["verdict"] == "QUARANTINED"
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    [note] = world.notifications()
    assert attributes(note)["mode"] == "enforce"


def test_switching_back_to_enforce_tags_the_image_on_the_next_event(world: World,
                                                                    context: Any) -> None:
    # Given an image judged QUARANTINED while its repository was in monitor mode
    world.publish_policy(MONITOR)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)
    assert world.tags(repo, digest) == ["v1"]

    # When the repository is enforced again and the scan event is delivered again
    world.publish_policy(STRICT)
    on_scan(scan_event(repo, digest), context)

    # Then the image gets its quarantine marker
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])


def test_switching_back_to_enforce_tags_an_image_whose_verdict_changes(world: World,
                                                                       context: Any) -> None:
    # Given an image judged QUARANTINED in monitor mode
    world.publish_policy(MONITOR)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)

    # When enforce mode returns together with a rescan that comes back clean
    world.publish_policy(STRICT)
    world.scanned(repo, digest, "basic-clean")
    result = on_scan(scan_event(repo, digest), context)

    # Then the new verdict is enforced with its marker
    assert (result["previous"], result["verdict"]) == ("QUARANTINED", "APPROVED")
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])


# --- scan failures, per state ----------------------------------------------------------------

PER_STATE = STRICT + "  on_scan_failure: {default: quarantine, FAILED: approve}\n"


@pytest.mark.parametrize("state, verdict, marker", [
    ("FAILED", "APPROVED", approved),
    ("UNSUPPORTED_IMAGE", "QUARANTINED", quarantined),
])
def test_on_scan_failure_is_chosen_per_scan_state(world: World, context: Any, state: str,
                                                  verdict: str, marker: Any) -> None:
    # Given a policy that approves FAILED scans and quarantines every other failure
    world.publish_policy(PER_STATE)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    body = copy.deepcopy(load_findings("scan-failed"))
    body["imageScanStatus"]["status"] = state
    world.scanned(repo, digest, body)

    # When the failed scan event arrives
    result = on_scan(scan_event(repo, digest, status="FAILED"), context)

    # Then the choice for that state applies, and the reason names it
    assert result["verdict"] == verdict
    assert world.tags(repo, digest) == sorted(["v1", marker(digest)])
    [note] = world.notifications()
    assert attributes(note)["scan_status"] == state
    choice = "approve" if verdict == "APPROVED" else "quarantine"
    assert f"scan {state}: UnsupportedImageError" in note["Message"]
    assert f"on_scan_failure of default is {choice}" in note["Message"]
