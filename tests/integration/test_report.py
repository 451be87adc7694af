"""``gatekeeper report`` on moto, and the page as a person sees it: rendered in a real headless
browser (Debian's chromium, which ``make test`` installs where it is missing), whose DOM after
the page's script ran says whether the charts drew, whether a script failed, and which numbers
the page shows."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.adapters.store import HistoryEntry, ImageRecord, VerdictStore
from gatekeeper.domain.findings import InUse
from gatekeeper_tools.cli import main
from tests.support import World

CHROMIUM = Path("/usr/bin/chromium")
NOW = datetime.now(UTC)
HOSTILE = '<img src=x onerror="document.title=1">&amp;"\''
POLICY = f"""\
version: 1
default:
  max_findings: {{CRITICAL: 0, HIGH: 0}}
expiring_window_days: 14
exceptions:
  - id: CVE-2023-4863
    expires: "{(NOW + timedelta(days=5)).date().isoformat()}"
    reason: libwebp fix rolling out
    owner: security@example.com
  - id: CVE-2020-0001
    expires: "{(NOW + timedelta(days=90)).date().isoformat()}"
    reason: not reachable
    owner: security@example.com
"""
# What the test puts in the table: repository -> [(state, tag, in use)]
IMAGES = {
    "team-a/web": [("QUARANTINED", "v1", InUse(3)), ("APPROVED", "v2", InUse(0)),
                   ("APPROVED", "v3", None)],
    "team-b/api": [("QUARANTINED", "2.0.0", None), ("APPROVED_WITH_WARNINGS", "2.1.0", None)],
    "team-c/batch": [("QUARANTINED", "old", InUse(0))],
}


def when(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def fill(world: World) -> dict[str, int]:
    """The images of IMAGES recorded as the gatekeeper records them (each with a history of
    one or two changes); returns how many of each verdict."""
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    counts: dict[str, int] = {}
    for index, (repository, images) in enumerate(sorted(IMAGES.items())):
        for number, (state, tag, in_use) in enumerate(images):
            digest = "sha256:" + f"{index}{number}" * 32
            reasons = (("CRITICAL: 1 finding over the limit of 0 (CVE-2021-44228)",
                        f"HIGH: 1 finding over the limit of 0 ({HOSTILE})")
                       if state == "QUARANTINED" else ("0 counted finding(s) of 2",))
            record = ImageRecord(repository, digest, state=state, tags=(tag,), reasons=reasons,
                                 decided_at=when(number + 1), created_at=when(number + 2),
                                 policy_version="v1", in_use=in_use,
                                 exceptions_used=("CVE-2023-4863",) if tag == "v2" else ())
            first = HistoryEntry(when(number + 2), "QUARANTINED", None, "basic-scan", "v1")
            written = store.put(replace(record, state="QUARANTINED"), None, first)
            if state != "QUARANTINED":
                store.put(record, written.revision,
                          HistoryEntry(when(number + 1), state, "QUARANTINED", "basic-scan",
                                       "v1"))
            else:
                store.put(record, written.revision)
            counts[state] = counts.get(state, 0) + 1
    return counts


def rendered(path: Path) -> str:
    """The page's DOM once its script ran, as chromium renders it."""
    assert CHROMIUM.exists(), "chromium is missing: `make test` installs it (apt-get)"
    done = subprocess.run(
        [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--no-first-run", "--disable-extensions", "--virtual-time-budget=5000",
         f"--user-data-dir={path.parent / 'chromium-profile'}", "--dump-dom",
         path.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """What the DOM says: the root's data attributes, the tiles' counts, every element."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.root: dict[str, str | None] = {}
        self.counts: dict[str, int] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "html":
            self.root = found
        if (found.get("id") or "").startswith("total-") and found.get("data-count"):
            self.counts[str(found["id"]).removeprefix("total-")] = int(
                str(found["data-count"]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def reported(world: World, tmp_path: Path, capsys: Any) -> tuple[dict[str, int], Path, str]:
    """Given the images of IMAGES in the table and POLICY published, When `gatekeeper report`
    runs: what was put, the page, what it printed."""
    counts = fill(world)
    world.publish_policy(POLICY)
    output = tmp_path / "report.html"
    capsys.readouterr()
    assert main(["report", "--output", str(output), "--since", "30d"]) == 0
    return counts, output, capsys.readouterr().out


def test_the_page_draws_its_charts_without_script_errors_and_shows_the_table(
        reported: tuple[dict[str, int], Path, str]) -> None:
    counts, output, summary = reported

    # When a real browser renders the page
    page = Page(rendered(output))

    # Then the page's own checks passed after its script ran, and no script failed
    assert page.root.get("data-checks") == "ok", page.root
    assert "data-errors" not in page.root
    charts = json.loads(str(page.root["data-charts"]))
    # And every chart drew each of its bars with a size: one bar per repository and verdict,
    # one per finding blocking an image, one per day and verdict of the changes
    assert charts["chart-repositories"]["bars"] == sum(
        len({s for s, _, _ in images}) for images in IMAGES.values())
    assert charts["chart-blockers"]["bars"] == 1  # CVE-2021-44228 (the hostile id is not one)
    assert charts["chart-timeline"]["bars"] >= 3
    for name, chart in charts.items():
        assert chart["drawn"] == chart["bars"] > 0, name
        assert chart["width"] > 0 and chart["height"] > 0, name
    # And the numbers shown are the table's
    assert page.counts == {"images": sum(counts.values()), **counts}
    # And the quarantined image that runs is called out first, the hostile text shown as text
    text = " ".join(page.text)
    assert "1 quarantined image(s) are running" in text
    assert "team-a/web:v1" in text and "IN USE: running in 3 places" in text
    assert HOSTILE in text
    assert not [t for t, attrs in page.tags if t == "img"]
    # And the terminal summary says the same
    assert "verdicts:        QUARANTINED 3, APPROVED_WITH_WARNINGS 1, APPROVED 2" in summary
    assert "quarantined:     3, of which IN USE 1" in summary
    assert f"expiring CVE-2023-4863 on {(NOW + timedelta(days=5)).date()}" in summary


class Links(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "xlink:href"):
                self.found.append((tag, name, value or ""))


def test_the_page_fetches_nothing_and_escapes_what_it_shows(
        reported: tuple[dict[str, int], Path, str]) -> None:
    _, output, _ = reported
    page = output.read_text(encoding="utf-8")

    # Then nothing on it is fetched: no src at all; links only to the ECR console, to click
    links = Links(page).found
    assert [(t, n) for t, n, _ in links if n != "href" or t != "a"] == []
    assert links and all(v.startswith("https://us-east-1.console.aws.amazon.com/ecr/")
                         for _, _, v in links)
    assert "url(" not in page and "@import" not in page and "<link" not in page
    # And the hostile reason is escaped, never markup
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=&quot;document.title=1&quot;&gt;&amp;amp;" in page


def test_a_since_it_cannot_read_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    assert main(["report", "--output", str(tmp_path / "r.html"), "--since", "lately"]) == 2
    assert "--since 'lately': expected 48h, 30d, 12w or a date" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_the_fleet_is_read_across_scan_pages_and_accounts(world: World) -> None:
    # Given more current verdicts than one Scan page holds (1 MB), with history, some of them
    # a member account's (keyed by account and Region)
    from gatekeeper.adapters.store import _to_item
    from gatekeeper.domain.scope import Scope

    member = Scope("111111111111", "eu-west-1")
    ddb = world.session.client("dynamodb")
    items = []
    for n in range(300):
        scope = member if n % 3 == 0 else None
        record = ImageRecord(f"team/app{n % 7}", f"sha256:{n:064x}", state="APPROVED",
                             revision=1, reasons=("x" * 3_900,), decided_at="2026-12-01",
                             account=scope.account if scope else None,
                             region=scope.region if scope else None)
        items.append(_to_item(record))
        items.append(HistoryEntry("2026-12-01T00:00:00+00:00", "APPROVED", None, "scan",
                                  "1", revision=1).item(record.repository, record.digest,
                                                        scope=scope))
    for start in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={world.config.table_name: [
            {"PutRequest": {"Item": item}} for item in items[start:start + 25]]})

    # When the report's reader reads the fleet
    records, history = VerdictStore(ddb, world.config.table_name).fleet("2026-11-01")

    # Then every verdict and every history item is read once, each history item under its
    # own repository and digest (a member's key names its account and Region first)
    assert len(records) == 300 and len(history) == 300
    assert sum(1 for r in records if r.account == member.account) == 100
    assert {(repo, digest) for repo, digest, _ in history} == {
        (r.repository, r.digest) for r in records}
