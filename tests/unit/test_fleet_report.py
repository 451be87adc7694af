"""The fleet report's summary and page from plain data (no AWS): what it counts, which
findings it says block, how it classes the policy's exceptions, and that the page is inert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.domain.findings import InUse
from gatekeeper.domain.policy import parse_policy
from gatekeeper.render.fleet_report import (
    Change,
    Image,
    blocking_ids,
    html_report,
    summarize,
    text_summary,
)

NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
POLICY = parse_policy(b"""\
version: 1
default: {max_findings: {CRITICAL: 0}}
expiring_window_days: 14
exceptions:
  - {id: CVE-2026-0001, expires: 2026-12-01, reason: gone, owner: a@example.com}
  - {id: CVE-2026-0002, expires: 2026-12-15, reason: soon, owner: b@example.com}
  - {id: CVE-2026-0003, expires: 2027-03-01, reason: used, owner: c@example.com}
  - {id: CVE-2026-0004, expires: 2027-03-01, reason: idle, owner: d@example.com}
""", source="policy.yaml", version="v7")


def image(repository: str, state: str, tag: str = "v1", *reasons: str,
          in_use: InUse | None = None, used: tuple[str, ...] = ()) -> Image:
    digest = "sha256:" + (repository + tag).encode().hex()[:64].ljust(64, "0")
    return Image(repository, digest, state, (tag,), reasons, "2026-12-01T00:00:00+00:00",
                 in_use, used)


FLEET = [
    image("team-a/web", "QUARANTINED", "v1",
          "CRITICAL: 2 findings over the limit of 0 (CVE-2021-44228, CVE-2023-4863)"),
    image("team-a/web", "APPROVED", "v2", "0 counted", used=("CVE-2026-0003",)),
    image("team-b/api", "QUARANTINED", "1",
          "1 finding with a known exploit (CVE-2021-44228)", in_use=InUse(2)),
    image("team-b/api", "APPROVED_WITH_WARNINGS", "2"),
]


def fleet() -> object:
    changes = [Change("team-a/web", FLEET[0].digest, "2026-12-06T10:00:00+00:00",
                      "QUARANTINED"),
               Change("team-a/web", FLEET[1].digest, "2026-12-06T11:00:00+00:00", "APPROVED"),
               Change("team-a/web", FLEET[1].digest, "2026-10-01T00:00:00+00:00", "APPROVED")]
    return summarize(FLEET, changes, POLICY.exceptions, now=NOW, since=NOW - timedelta(days=7),
                     policy_version=POLICY.version, window_days=14)


@pytest.mark.parametrize(("reason", "ids"), [
    ("CRITICAL: 12 findings over the limit of 0 (CVE-1-1, GHSA-abcd-efgh-ijkl and 10 more)",
     ("CVE-1-1", "GHSA-abcd-efgh-ijkl")),
    ("linux/amd64 (sha256:0123456789ab): QUARANTINED: HIGH: 1 finding over the limit of 0 "
     "(RHSA-2020:3915)", ("RHSA-2020:3915",)),
    ("scan FAILED: no layers; on_scan_failure of default is quarantine", ()),
    ("HIGH: 1 finding over the limit of 0 (<script>x</script>)", ()),
])
def test_blocking_ids_are_the_ids_a_breach_reason_names(reason: str,
                                                        ids: tuple[str, ...]) -> None:
    assert blocking_ids([reason]) == ids


def test_the_summary_counts_verdicts_per_repository_and_ranks_blockers() -> None:
    # Given four images of two repositories, two quarantined (one running)
    summary = fleet()

    # Then it counts them by verdict, overall and per repository (most quarantined first)
    assert summary.totals == {"QUARANTINED": 2, "APPROVED_WITH_WARNINGS": 1, "APPROVED": 1}
    assert [(r, c) for _, r, c in summary.repositories] == [
        ("team-a/web", {"QUARANTINED": 1, "APPROVED": 1}),
        ("team-b/api", {"QUARANTINED": 1, "APPROVED_WITH_WARNINGS": 1})]
    # And the running quarantined image comes first; the finding blocking both leads
    assert [i.repository for i, _ in summary.quarantined] == ["team-b/api", "team-a/web"]
    assert [i.repository for i in summary.in_use_quarantined] == ["team-b/api"]
    assert summary.blockers == [("CVE-2021-44228", 2), ("CVE-2023-4863", 1)]
    assert summary.use_unknown == 3
    # And the changes of the window count on their day; the older one is left out
    assert summary.changes == 2
    assert dict(summary.timeline)["2026-12-06"] == {"QUARANTINED": 1, "APPROVED": 1}
    assert len(summary.timeline) == 8


def test_exceptions_are_used_unused_expiring_or_expired() -> None:
    statuses = {row.exception.id: (row.status, row.images) for row in fleet().exceptions}
    assert statuses == {"CVE-2026-0001": ("expired", 0), "CVE-2026-0002": ("expiring", 0),
                        "CVE-2026-0003": ("used", 1), "CVE-2026-0004": ("unused", 0)}


def test_the_calendar_marks_the_last_day_of_each_exception_in_view() -> None:
    page = html_report(fleet())
    assert 'title="CVE-2026-0002 (b@example.com, expiring)" data-expiring="1"' in page
    assert "March 2027" not in page  # three months from December
    assert page.count('class="month"') == 3


def test_hostile_text_is_escaped_everywhere() -> None:
    # Given a repository, tag and reason carrying markup, and a console link that is not one
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    bad = Image(f"x/{hostile}", "sha256:" + "e" * 64, "QUARANTINED", (hostile,),
                (f"HIGH: 1 finding over the limit of 0 ({hostile})",),
                console_url="javascript:alert(3)")
    page = html_report(summarize([bad], [], [], now=NOW, since=NOW, policy_version=hostile))

    # Then none of it is markup on the page, and the link is not made
    assert hostile not in page
    assert "<img" not in page and "javascript:" not in page
    assert page.count("<script>") == 1  # the page's own


def test_the_page_refers_to_nothing_outside_it() -> None:
    page = html_report(fleet())
    assert "http://" not in page and "https://" not in page
    assert "src=" not in page and "<link" not in page and "url(" not in page


def test_the_terminal_summary_says_the_numbers_and_strips_control_characters() -> None:
    text = text_summary(fleet())
    assert "verdicts:        QUARANTINED 2, APPROVED_WITH_WARNINGS 1, APPROVED 1" in text
    assert "quarantined:     2, of which IN USE 1" in text
    assert "team-b/api:1: IN USE: running in 2 places" in text
    assert "blocking most:   CVE-2021-44228 (2), CVE-2023-4863 (1)" in text
    assert "exceptions:      4 (1 expired, 1 expiring, 1 unused, 1 used)" in text
    assert "expiring CVE-2026-0002 on 2026-12-15 (b@example.com)" in text
    escape = summarize([image("a\x1b[31mred", "APPROVED")], [], [], now=NOW, since=NOW,
                       policy_version="v")
    assert "\x1b" not in text_summary(escape)
