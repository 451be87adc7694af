"""The Slack message of a notification: what it says, Slack's limits, escaping, Unicode."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.domain.admission import Decision
from gatekeeper.domain.findings import Severity
from gatekeeper.render.deployment import deployment_refused_notification
from gatekeeper.render.markup import escape
from gatekeeper.render.slack import (
    FIELD_TEXT_MAX,
    FIELDS_MAX,
    HEADER_TEXT_MAX,
    MAX_BLOCKS,
    MESSAGE_BUDGET,
    SECTION_TEXT_MAX,
    UnsupportedDocument,
    clip,
    limit_violations,
    payload_size,
    safe_url,
    slack_length,
    slack_message,
)
from tests.slack_support import (
    DIGEST,
    HOSTILE,
    UNICODE,
    digest_document,
    exceptions_policy,
    finding,
    forgery_document,
    image,
    judged,
    many_findings,
    mrkdwn_texts,
    plain_texts,
    verdict_document,
)

CONSOLE = ("https://us-east-1.console.aws.amazon.com/ecr/repositories/private/123456789012/"
           f"team-b/api/_/image/{DIGEST}/details?region=us-east-1")
LINK = re.compile(r"<([^<>]*)>")


def quarantined() -> dict[str, Any]:
    return verdict_document(judged([
        finding(1, Severity.CRITICAL, package="libwebp", installed_version="0.6.1-2.1",
                fixed_version="1.3.2"),
        finding(2, Severity.HIGH, package="curl", installed_version="7.74.0",
                fixed_version=None, fix_available=False),
        finding(3, Severity.MEDIUM, package="e2fsprogs"),
    ]), previous="APPROVED")


def assert_within_limits(payload: dict[str, Any]) -> None:
    """Every Slack limit, checked here on its own (not only through limit_violations)."""
    blocks = payload["blocks"]
    assert 0 < len(blocks) <= MAX_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_TEXT_MAX
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= SECTION_TEXT_MAX
            assert len(block.get("fields", [])) <= FIELDS_MAX
            assert all(len(f["text"]) <= FIELD_TEXT_MAX for f in block.get("fields", []))
        if block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
    assert len(json.dumps(payload, ensure_ascii=False)) <= MESSAGE_BUDGET
    assert payload_size(payload) <= MESSAGE_BUDGET
    assert limit_violations(payload) == []


def assert_no_markup_but_ours(payload: dict[str, Any], urls: set[str]) -> None:
    """Each <...> in a mrkdwn text is a link built here, to one of ``urls``."""
    for text in mrkdwn_texts(payload):
        for inside in LINK.findall(text):
            url, _, label = inside.partition("|")
            assert url.replace("&amp;", "&") in urls, (inside, text)
            assert "<" not in label and ">" not in label
        assert "<!" not in text and "<@" not in text and "<#" not in text
    for text in plain_texts(payload):
        assert "<" not in text and ">" not in text


def text_of(payload: dict[str, Any]) -> str:
    return "\n".join(mrkdwn_texts(payload) + plain_texts(payload))


# --- what a verdict says -----------------------------------------------------------------------

def test_a_quarantine_names_the_verdict_the_image_and_what_blocks() -> None:
    # Given a quarantine of team-b/api:2.0.0 (a CRITICAL with a fix, a HIGH without)
    payload = slack_message(quarantined())

    # Then the header names verdict and image, and the fields the change and the digest
    header = payload["blocks"][0]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": ":no_entry: QUARANTINED: team-b/api:2.0.0", "emoji": True}}
    text = text_of(payload)
    assert "QUARANTINED (was APPROVED)" in text
    assert f"`{DIGEST}`" in text
    assert payload["text"].startswith("QUARANTINED: team-b/api:2.0.0 — CRITICAL: 1 finding")
    # and the reasons, and each blocking finding with its package, versions and link
    assert "• CRITICAL: 1 finding over the limit of 0 (CVE-2026-00001)" in text
    assert ("<https://nvd.nist.gov/vuln/detail/CVE-2026-00001|CVE-2026-00001> *CRITICAL* · "
            "libwebp 0.6.1-2.1 · fixed in 1.3.2") in text
    assert "curl 7.74.0 · no fix available" in text
    assert "*Findings that block (2)*" in text
    # and the other findings summarised, and the console link
    assert "*Other findings that count (1)*: MEDIUM 1" in text
    assert f"<{CONSOLE}|Open the image in the Amazon ECR console>" in text
    assert_within_limits(payload)


def test_exceptions_applied_and_expiring_show_owner_and_expiry() -> None:
    # Given an image approved thanks to an exception that expires soon
    soon = date.today().replace(year=date.today().year + 1)
    policy = exceptions_policy(["CVE-2026-00001"], owner="appsec@example.com",
                               expires=soon) + "expiring_window_days: 400\n"
    document = verdict_document(judged([finding(1, Severity.CRITICAL)], policy))

    # When it is rendered
    text = text_of(slack_message(document))

    # Then the exception is listed as applied, and as expiring, with owner, expiry and ticket
    assert document["verdict"]["outcome"] == "APPROVED"
    line = (f"• CVE-2026-00001 — appsec@example.com, expires {soon.isoformat()} · SEC-1234: "
            "patched image ships Friday")
    assert f"*Exceptions applied (1)*\n{line}" in text
    assert f"Exceptions expiring soon (1)*\n{line}" in text
    assert "*Findings ignored (1)*: exception 1" in text


def test_an_approval_is_short() -> None:
    payload = slack_message(verdict_document(judged([]), marker="approved-0a87789e4064"))
    assert payload["blocks"][0]["text"]["text"] == (
        ":white_check_mark: APPROVED: team-b/api:2.0.0")
    assert "Findings that block" not in text_of(payload)
    assert_within_limits(payload)


def test_a_first_verdict_says_so_and_names_its_outcome_once() -> None:
    # Given an image's first verdict (nothing was notified before)
    document = verdict_document(judged([]), previous=None, marker="approved-0a87789e4064")

    # When it is rendered
    text = text_of(slack_message(document))

    # Then the verdict field says it is the first, without repeating the outcome
    assert "*Verdict*\nAPPROVED (first verdict)" in text


@pytest.mark.parametrize("kind", ["verdict", "forged_marker", "digest"])
def test_the_time_is_shown_in_utc_to_the_second(kind: str) -> None:
    # Given a notification whose time has microseconds and another offset than UTC
    document = {"verdict": lambda: verdict_document(judged([])), "forged_marker":
                forgery_document, "digest": lambda: digest_document(1)}[kind]()
    document["time"] = "2026-11-20T02:55:49.676849+01:00"

    # When it is rendered
    text = text_of(slack_message(document))

    # Then people read it in UTC, to the second
    assert "2026-11-20T01:55:49Z" in text
    assert "676849" not in text and "+01:00" not in text


def test_a_time_that_is_not_iso_8601_is_shown_as_it_is_escaped() -> None:
    # Given a document whose time is not an ISO 8601 time
    document = verdict_document(judged([]))
    document["time"] = "yesterday <noon>"

    # When it is rendered, then it is shown as it is, escaped
    assert "yesterday &lt;noon&gt;" in text_of(slack_message(document))


def test_monitor_mode_is_said_in_the_header() -> None:
    verdict = judged([finding(1, Severity.CRITICAL)], "version: 1\ndefault:\n  max_findings: "
                     "{CRITICAL: 0}\n  mode: monitor\n")
    payload = slack_message(verdict_document(verdict))
    assert payload["blocks"][0]["text"]["text"].endswith("(monitor mode): team-b/api:2.0.0")


def test_a_forged_marker_alert() -> None:
    payload = slack_message(forgery_document(removed=False))
    text = text_of(payload)
    assert payload["blocks"][0]["text"]["text"] == (
        ":rotating_light: Forged marker tag on team-b/api")
    assert "approved-0a87789e4064" in text and "KEPT" in text and "CloudTrail" in text
    assert_within_limits(payload)


def refusal_document(refused: int = 1, image: str = "team-b/api") -> dict[str, Any]:
    """The ECS hook's deployment_refused notice, as the topic carries it."""
    digest = "sha256:" + "0a" * 32
    task_definition = "arn:aws:ecs:us-east-1:123456789012:task-definition/api:42"
    notice = deployment_refused_notification(
        service="api", cluster="prod", task_definition=task_definition,
        refused=[(f"c{i}", Decision(False, f"{image}@{digest}",
                                    "QUARANTINED (signed): CRITICAL: 1 finding over the limit "
                                    "of 0 (CVE-2023-4863)", image, digest, "QUARANTINED"))
                 for i in range(refused)],
        allowed=[("web", Decision(True, "team-a/web@" + digest, "APPROVED (signed)"))],
        lifecycle_stage="PRE_SCALE_UP", time="2026-12-01T09:00:00+00:00")
    return dict(json.loads(json.loads(notice.sns_message())["default"]))


def test_a_refused_deployment_names_the_service_task_definition_and_images() -> None:
    # Given the ECS hook's notice of a refused deployment
    document = refusal_document()

    # When it is rendered for Slack
    payload = slack_message(document)

    # Then it says which service, task definition, container, image and why
    text = text_of(payload)
    assert payload["blocks"][0]["text"]["text"] == ":no_entry: Deployment refused: api"
    assert "prod" in text and "api:42" in text and "PRE_SCALE_UP" in text
    assert "`c0` team-b/api@sha256:0a0a" in text and "(QUARANTINED)" in text
    assert "CVE-2023-4863" in text
    assert payload["text"] == ("Deployment of ECS service api (cluster prod) refused: "
                               "1 image(s) not approved")
    assert_within_limits(payload)


def test_a_refusal_of_many_hostile_images_stays_escaped_and_within_limits() -> None:
    payload = slack_message(refusal_document(refused=400, image="<!channel> <http://evil|x>"))
    assert_within_limits(payload)
    assert "<!channel>" not in json.dumps(payload)


def test_a_digest_lists_the_changes_with_links() -> None:
    payload = slack_message(digest_document(3))
    text = text_of(payload)
    assert payload["blocks"][0]["text"]["text"] == ":clipboard: Verdict digest: 3 verdict changes"
    assert text.count(":no_entry: *QUARANTINED* <https://") == 3
    assert "(was APPROVED, policy) — CRITICAL: 1 finding over the limit of 0" in text
    assert_within_limits(payload)


# --- Slack's limits ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 60, 5_000])
def test_thousands_of_findings_stay_within_every_limit(count: int) -> None:
    # Given a verdict with ``count`` findings, a quarter of them blocking
    document = verdict_document(judged(many_findings(count)))

    # When it is rendered
    payload = slack_message(document)

    # Then every limit holds, and the lists end with how many were left out
    assert_within_limits(payload)
    text = text_of(payload)
    blocking = sum(1 for i in range(count) if i % 4 in (0, 1))  # CRITICAL and HIGH
    assert f"*Findings that block ({blocking})*" in text
    if count > blocking:
        assert f"*Other findings that count ({count - blocking})*" in text
    if count > 40:
        assert re.search(r"… and \d+ more blocking findings", text)


def test_a_long_reason_list_and_long_texts_are_summarised() -> None:
    # Given 300 reasons of 2,000 characters each, and a 20,000-character repository name
    document = verdict_document(judged([finding(1, Severity.CRITICAL)]),
                                ref=image("team-b/" + "x" * 20_000))
    document["verdict"]["reasons"] = [f"reason {i} " + "y" * 2_000 for i in range(300)]

    # Then the message still fits
    payload = slack_message(document)
    assert_within_limits(payload)
    assert len(payload["blocks"][0]["text"]["text"]) == HEADER_TEXT_MAX
    assert payload["blocks"][0]["text"]["text"].endswith("…")


def test_a_digest_of_thousands_fits() -> None:
    payload = slack_message(digest_document(2_000))
    assert_within_limits(payload)
    assert re.search(r"… and \d+ more", text_of(payload))


def test_findings_the_notification_left_out_are_counted() -> None:
    document = verdict_document(judged(many_findings(8)))
    document["omitted"] = {"counted": 1234, "ignored": 56}
    text = text_of(slack_message(document))
    assert "1234 not included in the notification" in text
    assert "left out 1234 counted and 56 ignored findings" in text


# --- escaping -------------------------------------------------------------------------------------

def test_hostile_text_cannot_mention_broadcast_or_hide_a_link() -> None:
    # Given a verdict whose findings, repository, tags, policy and exceptions carry markup
    hostile = [
        finding(1, Severity.CRITICAL, package=HOSTILE, installed_version=HOSTILE,
                fixed_version=HOSTILE, title=HOSTILE, uri="https://nvd.nist.gov/ok"),
        finding(2, Severity.HIGH, package="<@U999>", uri="http://evil.example|click"),
        finding(3, Severity.HIGH, uri="javascript:alert(1)"),
        finding(4, Severity.HIGH, uri="https://evil.example/<!channel>"),
        finding(5, Severity.MEDIUM, uri="https://evil.example/a b"),
    ]
    policy = exceptions_policy(["CVE-2026-00005"], owner=HOSTILE, reason=HOSTILE)
    document = verdict_document(judged(hostile, policy), ref=image(
        "team-b/<!channel>", tags=("<@U123>&x",)), channel="<!here>")
    document["verdict"]["counted"][0]["description"] = HOSTILE
    document["verdict"]["reasons"].append(HOSTILE)
    document["verdict"]["policy"]["rule"] = HOSTILE
    document["image"]["console_url"] = "https://console.example/<!channel>"

    # When it is rendered
    payload = slack_message(document)

    # Then the only links are the safe finding link, and every < > & from the input is escaped
    assert_no_markup_but_ours(payload, {"https://nvd.nist.gov/ok"})
    text = "\n".join(mrkdwn_texts(payload))
    assert "&lt;!channel&gt; &lt;!here|here&gt; &lt;@U123ABC&gt;" in text
    assert "&lt;http://evil.example|click here&gt; a &amp; b &amp;amp;" in text
    assert "&lt;@U999&gt;" in text
    assert "team-b/&lt;!channel&gt;:&lt;@U123&gt;&amp;x" in text
    # and the header (plain text, never parsed) shows look-alikes instead of < and >
    assert payload["blocks"][0]["text"]["text"] == (
        ":no_entry: QUARANTINED: team-b/\u2039!channel\u203a:\u2039@U123\u203a&x")
    assert_within_limits(payload)


def test_hostile_digest_and_forgery_are_escaped_too() -> None:
    digest = digest_document(2, repository="<!channel>")
    digest["entries"][0]["reasons"] = [HOSTILE]
    digest["entries"][1]["console_url"] = "javascript:alert(1)"
    forgery = forgery_document(image("<!everyone>"), tag="<http://evil|x>")
    for document in (digest, forgery):
        payload = slack_message(document)
        urls = {e["console_url"] for e in digest["entries"]} | {
            forgery["image"]["console_url"]}
        assert_no_markup_but_ours(payload, urls)


@pytest.mark.parametrize(("url", "safe"), [
    ("https://nvd.nist.gov/vuln/detail/CVE-2023-4863", True),
    ("http://people.ubuntu.com/~ubuntu-security/cve/CVE-2019-5188", True),
    ("https://example.com/search?q=a&b=c#frag", True),
    ("javascript:alert(1)", False),
    ("ftp://example.com/x", False),
    ("https://evil.example|click", False),
    ("https://evil.example/<!channel>", False),
    ("https://evil.example/a b", False),
    ("https://user:pass@evil.example/", False),
    ("https://", False),
    ("//evil.example/x", False),
    ("https://exämple.com/", False),
    ("", False),
    (None, False),
])
def test_only_plain_http_urls_become_links(url: Any, safe: bool) -> None:
    assert safe_url(url) == (url if safe else None)


def test_an_ampersand_in_a_link_is_written_as_slack_writes_it() -> None:
    document = quarantined()
    document["verdict"]["counted"][0]["uri"] = "https://example.com/s?a=1&b=2"
    assert "<https://example.com/s?a=1&amp;b=2|CVE-2026-00001>" in text_of(
        slack_message(document))


# --- Unicode -------------------------------------------------------------------------------------

def test_unicode_comes_through_whole() -> None:
    # Given findings and an image whose texts are emoji, RTL, combining marks and CJK
    document = verdict_document(judged([finding(1, Severity.CRITICAL, package=UNICODE,
                                                title=UNICODE)]),
                                ref=image(tags=("v1-✓",)))
    document["verdict"]["reasons"].append(UNICODE)

    # When rendered and sent as JSON (UTF-8)
    payload = slack_message(document)
    sent = json.loads(json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    # Then every character arrives as it was
    text = text_of(sent)
    assert f"• {UNICODE}" in text
    assert UNICODE in text
    assert sent["blocks"][0]["text"]["text"].endswith("team-b/api:v1-✓")


def test_limits_are_counted_in_characters_and_emoji_count_double() -> None:
    # 200 emoji outside the BMP are 400 UTF-16 units: cut to at most 150 of those
    header = clip("🚨" * 200, HEADER_TEXT_MAX)
    assert slack_length(header) <= HEADER_TEXT_MAX and len(header) <= HEADER_TEXT_MAX
    assert header == "🚨" * 74 + "…"


@pytest.mark.parametrize("text", ["&&&&&&&&&&", "<<<<>>>>", "a&b<c>d" * 3])
def test_a_cut_never_splits_an_escape(text: str) -> None:
    for limit in range(0, 40):
        cut = clip(text, limit)
        assert slack_length(cut) <= limit
        body = cut.removesuffix("…")
        assert re.fullmatch(r"([^&]|&amp;|&lt;|&gt;)*", body), (limit, cut)


@settings(max_examples=300, deadline=None)
@given(text=st.text(), limit=st.integers(min_value=0, max_value=300))
def test_clip_is_an_escaped_prefix_within_the_limit(text: str, limit: int) -> None:
    cut = clip(text, limit)
    assert slack_length(cut) <= limit
    body = cut.removesuffix("…") if cut != escape(text) else cut
    unescaped = body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    flat = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)
    assert flat.startswith(unescaped)
    assert "<" not in cut and ">" not in cut


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=400), min_size=6, max_size=6),
       count=st.integers(min_value=0, max_value=120))
def test_any_text_anywhere_stays_escaped_and_within_limits(texts: list[str],
                                                           count: int) -> None:
    # Given arbitrary text in the package, title, versions, reasons, tags and rule
    package, title, version, reason, tag, rule = texts
    findings = [finding(i, Severity.CRITICAL, package=package, title=title,
                        installed_version=version) for i in range(count)]
    document = verdict_document(judged(findings), ref=image(tags=(tag or "v1",)))
    document["verdict"]["reasons"].append(reason)
    document["verdict"]["policy"]["rule"] = rule

    # When rendered; Then Slack would take it, and only our links are links
    payload = slack_message(document)
    assert limit_violations(payload) == []
    urls = {f"https://nvd.nist.gov/vuln/detail/CVE-2026-{i:05d}" for i in range(count)}
    assert_no_markup_but_ours(payload, urls | {CONSOLE})


# --- what is not a notification -------------------------------------------------------------------

@pytest.mark.parametrize("document", [
    {"schema": "gatekeeper.verdict/v1"},
    {"schema": "gatekeeper.notification/v2", "kind": "verdict"},
    {"kind": "verdict"},
    [],
    "text",
])
def test_another_schema_is_unsupported(document: Any) -> None:
    with pytest.raises(UnsupportedDocument, match=r"not a gatekeeper\.notification/v1"):
        slack_message(document)


def test_an_unknown_kind_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocument, match="unknown notification kind 'poll'"):
        slack_message({"schema": "gatekeeper.notification/v1", "kind": "poll"})


@pytest.mark.parametrize("kind", ["verdict", "forged_marker", "digest", "deployment_refused"])
def test_a_document_with_missing_or_odd_fields_still_renders(kind: str) -> None:
    odd: dict[str, Any] = {"schema": "gatekeeper.notification/v1", "kind": kind,
                           "image": "?", "verdict": [], "alert": None, "entries": {"x": 1},
                           "counts": "none", "omitted": {"counted": "many"}, "time": 42}
    payload = slack_message(odd)
    assert_within_limits(payload)
