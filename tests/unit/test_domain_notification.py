"""The verdict notification (subject, body, filterable attributes) and verdict descriptions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import BUILTIN_POLICY, parse_policy
from gatekeeper.domain.verdict import Breach, Outcome, Verdict
from gatekeeper.render.notification import ImageRef, _size, _structure, verdict_notification

DIGEST = "sha256:9b1a3f6c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
ACCOUNT, REGION = "123456789012", "us-east-1"
IMAGE = ImageRef("team-a/web", DIGEST, ("v1.4.2", "latest"), ACCOUNT, REGION)

QUARANTINED = evaluation.evaluate(BUILTIN_POLICY, "team-a/web", [
    Finding("CVE-2023-4863", Severity.CRITICAL, Source.BASIC),
    Finding("CVE-2019-5188", Severity.MEDIUM, Source.BASIC),
    Finding("CVE-2019-5189", Severity.MEDIUM, Source.BASIC),
])
APPROVED = evaluation.evaluate(BUILTIN_POLICY, "team-a/web", [])


def notify(image: ImageRef = IMAGE, verdict: Verdict = QUARANTINED, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"previous": "APPROVED", "marker": "quarantined-9b1a3f6c2d4e",
                               "trigger": "basic-scan", "tags": image.tags}
    options.update(kwargs)
    return verdict_notification(image, verdict, **options)


def is_sns_subject(subject: str) -> bool:
    return 0 < len(subject) <= 100 and all(32 <= ord(c) < 127 for c in subject)


# --- subject ---------------------------------------------------------------------------------


def test_subject_names_the_outcome_repository_and_first_tag() -> None:
    assert notify().subject == "[QUARANTINED] team-a/web:v1.4.2"


def test_subject_of_an_untagged_image_names_its_short_digest() -> None:
    image = ImageRef("team-a/web", DIGEST)
    assert notify(image).subject == "[QUARANTINED] team-a/web@sha256:9b1a3f6c2d4e"


def test_subject_is_truncated_to_100_characters_with_an_ellipsis() -> None:
    image = ImageRef("team-a/" + "x" * 200, DIGEST, ("v1",))
    subject = notify(image).subject
    assert len(subject) == 100
    assert subject.endswith("...")
    assert subject.startswith("[QUARANTINED] team-a/xxx")


def test_an_image_whose_account_is_unknown_has_no_account_attributes_nor_line() -> None:
    # Given an image named without its account and Region (a tool that does not know them)
    image = ImageRef("team-a/web", DIGEST, ("v1",))
    # When its verdict is announced
    notice = notify(image)
    # Then no account or region attribute is invented, and the text has no account line
    assert "account" not in notice.attributes and "region" not in notice.attributes
    assert "Account:" not in notice.message


def test_the_account_and_region_are_attributes_and_a_line_of_the_text() -> None:
    image = ImageRef("team-a/web", DIGEST, ("v1",), "111111111111", "eu-west-1")
    notice = notify(image)
    assert (notice.attributes["account"], notice.attributes["region"]) == (
        "111111111111", "eu-west-1")
    assert "Account:      111111111111 (eu-west-1)" in notice.message.splitlines()
    assert notice.document["image"]["account"] == "111111111111"


def test_subject_replaces_non_ascii_and_control_characters() -> None:
    image = ImageRef("team-a/web", DIGEST, ("caf\u00e9-\U0001f680\n\tv1",))
    assert notify(image).subject == "[QUARANTINED] team-a/web:caf?-???v1"


@given(repository=st.text(min_size=1, max_size=300), tags=st.lists(st.text(max_size=300),
                                                                    max_size=3))
def test_subject_is_always_printable_ascii_of_at_most_100(repository: str,
                                                         tags: list[str]) -> None:
    image = ImageRef(repository, DIGEST, tuple(tags))
    assert is_sns_subject(notify(image).subject)


# --- attributes ------------------------------------------------------------------------------


def test_attributes_carry_verdict_repository_severity_and_previous_verdict() -> None:
    assert notify().attributes == {
        "kind": "verdict",
        "verdict": "QUARANTINED",
        "previous_verdict": "APPROVED",
        "repository": "team-a/web",
        "highest_severity": "CRITICAL",
        "scan_status": "COMPLETE",
        "trigger": "basic-scan",
        "mode": "enforce",
        "account": "123456789012",
        "region": "us-east-1",
    }


def test_attributes_say_none_for_a_first_verdict_with_no_findings() -> None:
    attributes = notify(verdict=APPROVED, previous=None, marker="approved-9b1a3f6c2d4e").attributes
    assert attributes["verdict"] == "APPROVED"
    assert attributes["previous_verdict"] == "NONE"
    assert attributes["highest_severity"] == "NONE"


def test_attributes_are_all_non_empty_strings() -> None:
    for verdict in (QUARANTINED, APPROVED, evaluation.scan_failed(BUILTIN_POLICY, "r", "FAILED",
                                                                  None)):
        attributes = notify(verdict=verdict, previous=None).attributes
        assert all(isinstance(v, str) and v for v in attributes.values()), attributes


def test_a_failed_scan_notification_carries_its_scan_status() -> None:
    verdict = evaluation.scan_failed(BUILTIN_POLICY, "team-a/web", "FAILED",
                                     "UnsupportedImageError")
    note = notify(verdict=verdict)
    assert note.attributes["scan_status"] == "FAILED"
    assert "Scan status:  FAILED" in note.message
    assert "scan FAILED: UnsupportedImageError" in note.message


# --- body ------------------------------------------------------------------------------------


def test_body_names_the_image_verdict_reasons_and_counts() -> None:
    # Given a quarantine following an approval
    # When the notification is built
    message = notify().message
    # Then the body tells a reader what, why and how much
    for expected in (
        "Image QUARANTINED: team-a/web",
        "Repository:   team-a/web",
        "Tags:         v1.4.2, latest",
        f"Digest:       {DIGEST}",
        "Verdict:      QUARANTINED (was APPROVED)",
        "Marker tag:   quarantined-9b1a3f6c2d4e",
        "Findings:     CRITICAL 1, MEDIUM 2",
        "Policy:       version builtin-strict, rule default",
        "Triggered by: basic-scan",
        "  - CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)",
    ):
        assert expected in message.splitlines(), expected


def test_body_of_a_first_verdict_without_findings_or_tags() -> None:
    image = ImageRef("team-a/web", DIGEST)
    lines = notify(image, APPROVED, previous=None, marker=None).message.splitlines()
    assert "Verdict:      APPROVED (first verdict)" in lines
    assert "Tags:         (untagged)" in lines
    assert "Findings:     none" in lines
    assert "Marker tag:   (none)" in lines
    assert "  - 0 counted finding(s) of 0, all within the limits of default" in lines


@pytest.mark.parametrize(("previous", "said"), [(None, "first verdict"),
                                                 ("APPROVED", "was APPROVED")])
def test_the_verdict_line_says_the_outcome_once(previous: str | None, said: str) -> None:
    # Given a quarantine, first or following an approval
    # When the notification is built
    note = notify(previous=previous)

    # Then the e-mail names the outcome once, then what it was before (or that it is the first)
    assert f"Verdict:      QUARANTINED ({said})" in note.message.splitlines()
    # and the Chatbot description, under a title that names the outcome, only the change
    assert note.chatbot["content"]["title"].startswith(":no_entry: QUARANTINED: ")
    description = note.chatbot["content"]["description"]
    assert description.startswith(f"*{said}* · `{DIGEST}`")
    assert "QUARANTINED" not in description


def test_body_lists_every_reason() -> None:
    verdict = Verdict(Outcome.QUARANTINED, ("first reason", "second reason"), "v1")
    lines = notify(verdict=verdict).message.splitlines()
    assert lines[-4:-2] == ["  - first reason", "  - second reason"]


def test_console_url_is_given_with_account_and_region() -> None:
    lines = notify().message.splitlines()
    assert lines[-1] == (
        "Console: https://us-east-1.console.aws.amazon.com/ecr/repositories/private/"
        f"123456789012/team-a/web/_/image/{DIGEST}/details?region=us-east-1"
    )


@pytest.mark.parametrize(("account", "region"), [(None, REGION), (ACCOUNT, None), (None, None),
                                                 ("", REGION)])
def test_console_url_is_left_out_without_account_and_region(account: str | None,
                                                             region: str | None) -> None:
    image = ImageRef("team-a/web", DIGEST, ("v1",), account, region)
    assert image.console_url() is None
    assert "Console:" not in notify(image).message


def test_console_url_quotes_the_repository_but_keeps_its_slashes() -> None:
    url = ImageRef("team a/web", DIGEST, (), ACCOUNT, REGION).console_url()
    assert url is not None and "/123456789012/team%20a/web/_/image/" in url


# --- Breach / Verdict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("breach", "text"),
    [
        (Breach("max_findings", "HIGH", 1, 0, ("CVE-1",)),
         "HIGH: 1 finding over the limit of 0 (CVE-1)"),
        (Breach("max_findings", "HIGH", 3, 2, ("CVE-1", "CVE-2")),
         "HIGH: 3 findings over the limit of 2 (CVE-1, CVE-2)"),
        (Breach("max_findings", "LOW", 12, 0, tuple(f"C{i}" for i in range(12))),
         "LOW: 12 findings over the limit of 0 "
         "(C0, C1, C2, C3, C4, C5, C6, C7, C8, C9 and 2 more)"),
    ],
    ids=["one", "several", "truncated"],
)
def test_breach_describes_count_limit_and_ids(breach: Breach, text: str) -> None:
    assert breach.describe() == text


def test_breach_shows_as_many_ids_as_asked() -> None:
    breach = Breach("max_findings", "HIGH", 3, 0, ("A", "B", "C"))
    assert breach.describe(shown=1) == "HIGH: 3 findings over the limit of 0 (A and 2 more)"
    assert breach.describe(shown=3) == "HIGH: 3 findings over the limit of 0 (A, B, C)"


@pytest.mark.parametrize(("outcome", "approved"), [(Outcome.APPROVED, True),
                                                   (Outcome.QUARANTINED, False)])
def test_verdict_approved_follows_its_outcome(outcome: Outcome, approved: bool) -> None:
    assert Verdict(outcome, (), "v").approved is approved


_TEXTS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@given(ids=st.lists(_TEXTS, max_size=30), packages=st.lists(_TEXTS, min_size=1, max_size=4),
       text=_TEXTS)
def test_the_measured_size_is_the_size_of_the_whole_message(
        ids: list[str], packages: list[str], text: str) -> None:
    # Given a verdict on findings whose ids and packages need escaping (quotes, backslashes,
    # control and non-ASCII characters), some counted and some ignored
    findings = [Finding(fid or "UNKNOWN", Severity.MEDIUM if n % 3 else Severity.LOW,
                        Source.ENHANCED, package=packages[n % len(packages)],
                        fixed_version="2.0" if n % 2 else None)
                for n, fid in enumerate(ids)]
    policy = parse_policy("version: 1\ndefault:\n  max_findings: {MEDIUM: 2}\n"
                          "  ignore_unfixed: true\n", version="test")
    verdict = evaluation.evaluate(policy, "team-a/web", findings)
    notice = notify(verdict=verdict)

    # When its size is measured item by item
    size = _size(text, notice.document, notice.chatbot)

    # Then it is the UTF-8 size of the whole message built at once
    assert size == len(_structure(text, notice.document, notice.chatbot).encode("utf-8"))
