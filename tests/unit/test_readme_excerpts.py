"""The README's excerpts of notifications are what the renderers print.

Each rendered excerpt in README.md sits just below a marker ``<!-- excerpt: NAME -->``. Here
each NAME is rendered again, from the same inputs as the README's example (the quarantine of
``team-b/api:2.0.0`` in ``make demo``: ``policy.yaml`` and ``samples/findings``), and every
line of the excerpt must be a line of the rendering, in the same order. An excerpt may leave
lines out; it may not say what the code does not print. Every whole policy the README shows
(a ```yaml block starting ``version: 1``) parses. Pure: no boto3, no moto.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import from_scan_findings
from gatekeeper.domain.policy import parse_policy
from gatekeeper.render.notification import (
    ImageRef,
    Notification,
    digest_entry,
    digest_notification,
    verdict_notification,
)
from gatekeeper.render.slack import slack_message
from gatekeeper_tools.local.slack import render_text

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
EXCERPT = re.compile(r"<!-- excerpt: ([\w-]+) -->\n```[^\n]*\n(.*?)\n```", re.DOTALL)

# The README's example: what make demo shows for its second image.
REPOSITORY, TAG = "team-b/api", "2.0.0"
DIGEST = "sha256:0a87789e406445a4bcbf252e8ecc7041130f29f3227285d89fde47bd91c97f83"
POLICY_VERSION = "3f94Lx0qWc8Ez1T9mVbN2pRk7hYdAsUj"  # an S3 version id
DECIDED_AT = "2026-11-20T01:55:49.676849+00:00"  # as the verdict table records it
NOW = datetime(2026, 11, 20, 1, 55, 49, tzinfo=UTC)


def quarantine() -> Notification:
    """The first verdict on team-b/api:2.0.0: a CRITICAL and two HIGH findings."""
    policy = parse_policy((ROOT / "policy.yaml").read_text(), version=POLICY_VERSION)
    scan = json.loads((ROOT / "samples" / "findings" / "basic-critical.json").read_text())
    verdict = evaluation.judge_scan(policy, REPOSITORY, scan["imageScanStatus"]["status"],
                                    None, from_scan_findings(scan["imageScanFindings"]), NOW)
    assert verdict is not None
    image = ImageRef(REPOSITORY, DIGEST, (TAG,), "123456789012", "us-east-1")
    return verdict_notification(image, verdict, previous=None,
                                marker="quarantined-0a87789e4064", trigger="basic-scan",
                                tags=(TAG,), verdict_id="0a87789e4064-2", time=DECIDED_AT)


def email_quarantined() -> str:
    note = quarantine()
    return f"Subject: {note.subject}\n\n{note.message}"


def slack_quarantined() -> str:
    return render_text(slack_message(quarantine().document))


RENDERINGS: dict[str, Callable[[], str]] = {
    "email-quarantined": email_quarantined,
    "slack-quarantined": slack_quarantined,
}


def excerpts() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, body in EXCERPT.findall(README.read_text()):
        assert name not in found, f"two excerpts named {name}"
        found[name] = [line.rstrip() for line in body.splitlines()]
    return found


def test_every_marked_excerpt_has_a_rendering_and_every_rendering_an_excerpt() -> None:
    # Given the excerpts marked in the README
    # Then each is checked below, and none of those checked has lost its marker
    assert set(excerpts()) == set(RENDERINGS)


@pytest.mark.parametrize("name", sorted(RENDERINGS))
def test_an_excerpt_is_what_the_renderer_prints(name: str) -> None:
    # Given the README's excerpt and the rendering of the same example
    excerpt = excerpts()[name]
    rendered = [line.rstrip() for line in RENDERINGS[name]().splitlines()]

    # Then each line of the excerpt is a line of the rendering, in the same order
    position = 0
    for line in excerpt:
        if not line:
            continue
        assert line in rendered[position:], (
            f"README excerpt {name}: {line!r} is not printed (after line {position}); the "
            "rendering is:\n" + "\n".join(rendered))
        position = rendered.index(line, position) + 1


def test_the_inline_examples_of_subjects_and_titles_are_rendered() -> None:
    # Given a quarantine of team-a/web:v1 and a digest of twelve approvals
    policy = parse_policy((ROOT / "policy.yaml").read_text(), version=POLICY_VERSION)
    blocked = evaluation.evaluate(policy, "team-a/web", from_scan_findings(json.loads(
        (ROOT / "samples" / "findings" / "basic-critical.json").read_text())[
            "imageScanFindings"]), NOW)
    image = ImageRef("team-a/web", DIGEST, ("v1",))
    note = verdict_notification(image, blocked, previous=None, marker=None,
                                trigger="basic-scan", tags=("v1",))
    approved = evaluation.evaluate(policy, "team-a/web", [], NOW)
    digest = digest_notification([
        digest_entry(ImageRef("team-a/web", DIGEST, (f"v{i}",)), approved, previous=None,
                     trigger="push", tags=(f"v{i}",), verdict_id=f"{i:012x}-1",
                     time=DECIDED_AT) for i in range(12)], time=DECIDED_AT)

    # Then the README's subjects and Chatbot title are the rendered ones
    assert note.chatbot is not None
    readme = README.read_text()
    for rendered in (note.subject, note.chatbot["content"]["title"], digest.subject):
        assert f"`{rendered}`" in readme, rendered


def readme_policies() -> dict[str, str]:
    """Each whole policy the README shows (a ```yaml block starting ``version: 1``), by the
    heading it sits under."""
    found: dict[str, str] = {}
    heading = ""
    for block in re.split(r"^(#+ .*)$", README.read_text(), flags=re.MULTILINE):
        if block.startswith("#"):
            heading = block.lstrip("# ").strip()
            continue
        for index, text in enumerate(re.findall(r"```yaml\n(.*?)```", block, re.DOTALL)):
            if text.startswith("version: 1\n"):
                found[f"{heading} {index}"] = text
    return found


@pytest.mark.parametrize("name", sorted(readme_policies()))
def test_every_policy_the_readme_shows_parses(name: str) -> None:
    assert parse_policy(readme_policies()[name]).version == "unversioned"


@pytest.mark.parametrize(("account", "mode", "matched"), [
    ("111100001111", "monitor", "repositories[match=*, accounts=group:sandbox]"),
    ("222233334444", "monitor", "repositories[match=*, accounts=group:sandbox]"),
    ("333300001111", "enforce", "repositories[match=payments/*, accounts=group:production]"),
    ("444400001111", "enforce", "default"),
    (None, "enforce", "default"),
])
def test_the_readme_policy_by_account_judges_as_it_says(account: str | None, mode: str,
                                                         matched: str) -> None:
    # Given the README's policy by account
    (text,) = [text for name, text in readme_policies().items()
               if name.startswith("Policy by account")]
    policy = parse_policy(text)
    # When the rules of payments/api are read for an account of each kind
    rules = policy.rules_for("payments/api", account)
    # Then the sandbox monitors, production enforces its override, and any other account (or
    # none) gets the default
    assert (rules.mode, rules.matched) == (mode, matched)
