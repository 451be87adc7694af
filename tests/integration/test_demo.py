"""``make demo``, run as a person runs it: what it prints is short, true to the README, and
ends with the summary.

The demo runs in a subprocess (as ``make demo`` does, with this worktree's code first on the
path): it moves the gatekeeper's clock and fills process-wide caches, which must not leak
into the other tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache

from gatekeeper_tools.local.demo import RULE, SCENARIOS, SUMMARY_TITLE, TRY_NEXT, WIDTH
from tests.support import ROOT

# What the demo must keep judging: one verdict per image, as the policy says.
VERDICTS = {
    "team-a/web:v1.4.2": "APPROVED",
    "team-b/api:2.0.0": "QUARANTINED",
    "sandbox/tools:nightly": "APPROVED",
    "team-c/legacy:1.0": "QUARANTINED",
    "team-a/worker:3.1.0": "QUARANTINED",
}


@cache
def run_demo(*args: str) -> list[str]:
    """The demo's output lines (one run per set of arguments, shared by the tests)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / part) for part in ("layers/gatekeeper", "tools", "."))}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "gatekeeper_tools.local.demo", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def readme_excerpt() -> list[str]:
    """The fenced block that follows "An excerpt:" in the README's "Try it" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"An excerpt:\n\n```\n(.*?)\n```", text, re.DOTALL)
    assert found, "README: no fenced block after 'An excerpt:'"
    return found.group(1).split("\n")


def first_missing(excerpt: list[str], output: list[str]) -> str | None:
    """The first excerpt line not found in ``output`` after the previous one (None: all)."""
    position = 0
    for line in excerpt:
        try:
            position = output.index(line, position) + 1
        except ValueError:
            return line
    return None


def test_the_demo_judges_each_image_as_the_policy_says() -> None:
    # Given the demo's output
    output = run_demo()

    # Then each image's section reports its verdict
    for scenario in SCENARIOS:
        heading = output.index(f"{scenario.title}: {scenario.image} ({scenario.mutability})")
        verdict = next(line for line in output[heading:] if line.startswith("  verdict:"))
        assert verdict.split()[-1] == VERDICTS[scenario.image], scenario.image

    # And the summary ends with the same verdicts
    summary = output.index(SUMMARY_TITLE)
    rows = {line.split()[0]: line.split()[1] for line in output[summary + 3:summary + 8]}
    assert rows == VERDICTS


def test_no_line_of_the_demo_is_longer_than_100_characters() -> None:
    too_long = [line for line in run_demo() if len(line) > WIDTH]
    assert too_long == []


def test_the_demo_ends_with_the_summary_table_and_what_to_try_next() -> None:
    # Given the demo's output
    output = run_demo()

    # Then its last section is the summary: a header row, one row per image, then the hints
    start = len(output) - 1 - output[::-1].index(SUMMARY_TITLE)
    assert output[start - 1] == output[start + 1] == RULE
    assert output[start + 2].split() == ["image", "verdict", "why"]
    table = output[start + 3:start + 3 + len(SCENARIOS)]
    assert [line.split()[0] for line in table] == [s.image for s in SCENARIOS]
    assert output[start + 3 + len(SCENARIOS):] == ["", "What to try next:",
                                                    *(f"  {line}" for line in TRY_NEXT)]
    assert not any(line == RULE for line in output[start + 2:])


def test_every_line_of_the_readme_excerpt_is_printed_by_the_demo_in_order() -> None:
    # Given the README's excerpt of the demo, and what the demo prints now
    excerpt = readme_excerpt()
    assert len(excerpt) > 20

    # Then each line of the excerpt is an output line, in the same order (lines may be skipped)
    assert first_missing(excerpt, run_demo()) is None


def test_the_excerpt_check_rejects_a_line_the_demo_does_not_print() -> None:
    output = ["a", "b", "c"]
    assert first_missing(["a", "c"], output) is None
    assert first_missing(["c", "a"], output) == "a"  # out of order
    assert first_missing(["a", "b2"], output) == "b2"


def test_full_adds_each_notices_email_text_and_the_slack_message() -> None:
    # Given the demo's output with and without --full
    short, full = run_demo(), run_demo("--full")

    # Then --full shows an e-mail text under every SNS message, and the Slack message
    notices = sum(line.startswith("  SNS message: [") for line in full)
    assert notices == sum(line.startswith("  SNS message: [") for line in short) > 5
    assert sum(line == "    e-mail text:" for line in full) == notices
    assert not any(line == "    e-mail text:" for line in short)
    assert any(line.startswith("    | ") for line in full)
    assert not any(line.startswith("    | ") for line in short)
    # And the same verdicts
    assert [line for line in full if line.startswith("  verdict:")] == [
        line for line in short if line.startswith("  verdict:")]
