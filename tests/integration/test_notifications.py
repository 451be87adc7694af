"""What subscribers receive: one SNS message per verdict change, rendered per protocol
(e-mail text, the JSON document, AWS Chatbot's format), filterable by attributes, routed to
channels, within SNS's size limit, and summarised in a digest where the policy asks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper.adapters.notifier import SnsNotifier
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import BUILTIN_POLICY, parse_policy
from gatekeeper.render.notification import (
    SNS_MAX_BYTES,
    ImageRef,
    verdict_notification,
)
from gatekeeper.service.sweep import send_digests
from tests.support import World, as_delivered, push_event, scan_event

ROUTED = """\
version: 1
default:
  max_findings: {CRITICAL: 0, HIGH: 0}
notifications:
  routes:
    - {match: "team-a/*", channel: team-a}
    - {match: "*", channel: platform}
"""

DIGESTED = """\
version: 1
default:
  max_findings: {CRITICAL: 0, HIGH: 0}
notifications:
  digest: [APPROVED, APPROVED_WITH_WARNINGS]
  routes:
    - {match: "team-a/*", channel: team-a}
"""


def judge(world: World, context: Any, repo: str, tag: str, findings: str) -> str:
    """Push an image, let its basic scan find ``findings``, run both handlers."""
    if repo not in {r["repositoryName"] for r in
                    world.ecr.describe_repositories()["repositories"]}:
        world.repository(repo)
    digest = world.push(repo, tag, seed=f"{repo}:{tag}")
    on_push(push_event(repo, digest, tag), context)
    world.scanned(repo, digest, findings)
    on_scan(scan_event(repo, digest, tags=(tag,)), context)
    return digest


def attributes(note: dict[str, Any]) -> dict[str, str]:
    return {k: v["Value"] for k, v in note["MessageAttributes"].items()}


def subscribe(world: World, filter_policy: dict[str, Any] | None = None,
              protocol: str = "sqs") -> str:
    """A new SQS queue subscribed to the topic, optionally with a filter policy."""
    sqs = world.session.client("sqs")
    url = sqs.create_queue(QueueName=f"sub-{len(sqs.list_queues().get('QueueUrls', []))}")[
        "QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    extra = {"FilterPolicy": json.dumps(filter_policy)} if filter_policy else {}
    world.session.client("sns").subscribe(TopicArn=world.config.topic_arn, Protocol=protocol,
                                          Endpoint=arn, Attributes=extra)
    return url


def received(world: World, url: str) -> list[dict[str, Any]]:
    sqs = world.session.client("sqs")
    out = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            out.append(as_delivered(json.loads(message["Body"])))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return out


# --- per-protocol renderings -----------------------------------------------------------------


def test_sqs_and_lambda_subscribers_get_the_versioned_json_document(world: World,
                                                                    context: Any) -> None:
    # Given an image whose scan finds a CRITICAL
    digest = judge(world, context, "team-a/web", "v1", "basic-critical")

    # When the subscriber (SQS: the "default" rendering) reads the notification
    [note] = world.notifications()
    document = note["Document"]

    # Then it is the complete, documented document of the verdict change
    assert document["schema"] == "gatekeeper.notification/v1"
    assert document["kind"] == "verdict"
    assert document["verdict_id"] == attributes(note)["verdict_id"]
    assert document["trigger"] == "basic-scan"
    assert document["previous"] is None
    assert document["image"]["repository"] == "team-a/web"
    assert document["image"]["digest"] == digest
    assert document["image"]["tags"] == ["v1"]
    assert document["image"]["marker"] == f"quarantined-{digest[7:19]}"
    assert document["image"]["console_url"].startswith("https://us-east-1.console.aws.amazon")
    verdict = document["verdict"]
    assert verdict["schema"] == "gatekeeper.verdict/v1"
    assert verdict["outcome"] == "QUARANTINED"
    assert verdict["policy"]["version"]
    # And the fields of the signed verdict: the committed revision the verdict id names
    assert verdict["policy_version"] == verdict["policy"]["version"]
    assert verdict["verdict_revision"] == int(document["verdict_id"].rsplit("-", 1)[1])
    assert verdict["decided_at"] == document["time"]
    assert {b["severity"] for b in verdict["breaches"]} == {"CRITICAL", "HIGH"}
    assert [f["id"] for f in verdict["counted"]][:1] == ["CVE-2023-4863"]
    assert document["omitted"] == {"counted": 0, "ignored": 0}
    # and the e-mail's text travels with it, for subscribers that forward it
    assert document["text"].startswith("Image QUARANTINED: team-a/web")


def test_the_message_carries_one_rendering_per_protocol() -> None:
    # Given a quarantine notification
    verdict = evaluation.evaluate(BUILTIN_POLICY, "team-a/web", [
        Finding("CVE-2023-4863", Severity.CRITICAL, Source.BASIC, package="libwebp",
                installed_version="1.2.4", fixed_version="1.3.2")])
    image = ImageRef("team-a/web", "sha256:" + "ab" * 32, ("v1",), "123456789012", "eu-west-1")
    note = verdict_notification(image, verdict, previous="APPROVED", marker="quarantined-x",
                                trigger="enhanced-scan", tags=("v1",), verdict_id="abab-3",
                                time="2026-11-27T05:00:00+00:00")

    # When it is rendered for SNS's MessageStructure=json
    body = json.loads(note.sns_message())

    # Then e-mail gets the readable text, machines the document, and HTTPS (AWS Chatbot)
    # its custom-notification format
    assert set(body) == {"default", "email", "https"}
    assert body["email"] == note.message
    assert body["email"].startswith("Image QUARANTINED: team-a/web")
    assert json.loads(body["default"]) == note.document
    chatbot = json.loads(body["https"])
    assert chatbot["version"] == "1.0"
    assert chatbot["source"] == "custom"
    assert chatbot["id"] == "abab-3"
    content = chatbot["content"]
    assert content["textType"] == "client-markdown"
    assert content["title"] == ":no_entry: QUARANTINED: team-a/web:v1"
    assert "*was APPROVED*" in content["description"]
    assert "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in content["description"]
    assert "ECR console" in content["description"]
    assert any("exception" in step for step in content["nextSteps"])
    assert chatbot["metadata"]["threadId"] == f"team-a/web@{image.digest}"


def test_chatbot_text_from_findings_cannot_mention_or_hide_a_link() -> None:
    # Given a repository and a verdict reason carrying Slack markup
    verdict = evaluation.evaluate(BUILTIN_POLICY, "team-a/web", [
        Finding("<!channel> <http://evil.example|click> & co", Severity.CRITICAL, Source.BASIC)])
    image = ImageRef("team-a/web", "sha256:" + "ab" * 32, ("<@U123>",))
    chatbot = verdict_notification(image, verdict, previous=None, marker=None,
                                   trigger="basic-scan", tags=image.tags).chatbot
    assert chatbot is not None

    # Then the markup is escaped where Chatbot renders it
    rendered = chatbot["content"]["title"] + chatbot["content"]["description"]
    assert "<!channel>" not in rendered and "<@U123>" not in rendered
    assert "<http://evil.example|click>" not in rendered
    assert "&lt;!channel&gt;" in rendered and "&amp; co" in rendered


# --- size ------------------------------------------------------------------------------------


def many(count: int) -> list[Finding]:
    severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    return [Finding(f"CVE-2026-{i:05d}", severities[i % 4], Source.ENHANCED,
                    package=f"package-{i}", installed_version="1.0.0", fixed_version="1.0.1",
                    uri=f"https://nvd.nist.gov/vuln/detail/CVE-2026-{i:05d}")
            for i in range(count)]


def test_ten_thousand_findings_fit_sns_and_say_what_was_left_out(world: World) -> None:
    # Given a verdict over 10,000 findings, 9,000 of them ignored by an exception-like rule
    policy_text = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n  min_score: 9\n"
    findings = [f if i % 10 == 0 else Finding(f.id, f.severity, f.source, package=f.package,
                                               score=1.0)
                for i, f in enumerate(many(10_000))]
    verdict = evaluation.evaluate(parse_policy(policy_text), "team-a/web", findings)
    image = ImageRef("team-a/web", "sha256:" + "cd" * 32, ("v1",), "123456789012", "us-east-1")

    # When its notification is built and published to SNS
    note = verdict_notification(image, verdict, previous=None, marker="quarantined-x",
                                trigger="enhanced-scan", tags=("v1",), verdict_id="cdcd-1")
    message = note.sns_message()
    SnsNotifier(world.session.client("sns"), world.config.topic_arn).publish(note)

    # Then the whole message is within SNS's limit, SNS accepted it, and the document keeps
    # the blocking findings first and counts what it left out
    assert len(message.encode()) + len(note.subject) < SNS_MAX_BYTES
    [delivered] = world.notifications()
    document = delivered["Document"]
    shown = document["verdict"]
    assert len(shown["counted"]) + document["omitted"]["counted"] == len(verdict.counted)
    assert len(shown["ignored"]) + document["omitted"]["ignored"] == len(verdict.ignored)
    assert document["omitted"]["ignored"] > 0
    blocking = set(verdict.breaches[0].finding_ids)
    assert shown["counted"][0]["id"] in blocking
    assert all(len(b["finding_ids"]) <= 50 for b in shown["breaches"])
    assert shown["breaches"][0]["count"] == len(blocking)


# --- attributes, filter policies and routing -------------------------------------------------


def test_readme_filter_policies_pick_the_messages_they_promise(world: World,
                                                               context: Any) -> None:
    # Given subscribers with the README's ready-made filter policies
    only_quarantines = subscribe(world, {"verdict": ["QUARANTINED"]})
    only_critical = subscribe(world, {"highest_severity": ["CRITICAL"]})
    only_team_a = subscribe(world, {"repository": [{"prefix": "team-a/"}]})
    team_b_channel = subscribe(world, {"channel": ["platform"]})
    world.publish_policy(ROUTED)

    # When a CRITICAL quarantine in team-a, a HIGH quarantine in team-b and a clean image
    # in team-a are judged
    judge(world, context, "team-a/web", "v1", "basic-critical")
    judge(world, context, "team-b/api", "v1", "basic-high-only")
    judge(world, context, "team-a/docs", "v1", "basic-clean")

    # Then each subscriber gets exactly what its policy names
    def names(url: str) -> list[str]:
        return sorted(n["Subject"] for n in received(world, url))

    assert names(only_quarantines) == ["[QUARANTINED] team-a/web:v1",
                                       "[QUARANTINED] team-b/api:v1"]
    assert names(only_critical) == ["[QUARANTINED] team-a/web:v1"]
    assert names(only_team_a) == ["[APPROVED] team-a/docs:v1", "[QUARANTINED] team-a/web:v1"]
    assert names(team_b_channel) == ["[QUARANTINED] team-b/api:v1"]


def test_routes_set_the_channel_attribute_first_match_wins(world: World, context: Any) -> None:
    # Given a policy routing team-a/* to team-a and everything else to platform
    world.publish_policy(ROUTED)

    # When images of both are judged
    judge(world, context, "team-a/web", "v1", "basic-critical")
    judge(world, context, "tools/ci", "v1", "basic-clean")

    # Then their messages carry the channel of the first matching route, in the document too
    channels = {n["Subject"]: (attributes(n)["channel"], n["Document"]["channel"])
                for n in world.notifications()}
    assert channels == {"[QUARANTINED] team-a/web:v1": ("team-a", "team-a"),
                        "[APPROVED] tools/ci:v1": ("platform", "platform")}


def test_no_route_no_channel_attribute(world: World, context: Any) -> None:
    judge(world, context, "team-a/web", "v1", "basic-clean")
    [note] = world.notifications()
    assert "channel" not in attributes(note)
    assert note["Document"]["channel"] is None


# --- digest mode -----------------------------------------------------------------------------


def test_digest_mode_holds_approvals_and_announces_quarantines_at_once(world: World,
                                                                       context: Any) -> None:
    # Given a policy that summarises approvals in the digest
    world.publish_policy(DIGESTED)

    # When two images are approved and one is quarantined
    clean = judge(world, context, "team-a/web", "v1", "basic-clean")
    judge(world, context, "team-b/api", "v1", "basic-clean")
    judge(world, context, "team-a/api", "v1", "basic-critical")

    # Then only the quarantine is announced at once
    assert [n["Subject"] for n in world.notifications()] == ["[QUARANTINED] team-a/api:v1"]
    # and a duplicate delivery of an approval holds it only once
    on_scan(scan_event("team-a/web", clean), context)
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    assert len(list(store.held())) == 2

    # When the digest is sent
    notifier = SnsNotifier(world.session.client("sns"), world.config.topic_arn)
    sent = send_digests(store, notifier, datetime(2026, 11, 27, 6, tzinfo=UTC))

    # Then one digest per channel lists the approvals, and nothing is held any more
    assert sent == 2
    digests = world.notifications()[1:]
    by_channel = {attributes(d).get("channel"): d for d in digests}
    assert set(by_channel) == {"team-a", None}
    team_a = by_channel["team-a"]["Document"]
    assert team_a["kind"] == "digest"
    assert [e["repository"] for e in team_a["entries"]] == ["team-a/web"]
    assert team_a["counts"] == {"APPROVED": 1}
    assert by_channel["team-a"]["Subject"] == "[DIGEST] 1 APPROVED"
    assert json.loads(attributes(by_channel["team-a"])["verdict"]) == ["APPROVED"]
    assert list(store.held()) == []
    # and a second run sends nothing
    assert send_digests(store, notifier, datetime(2026, 11, 27, 7, tzinfo=UTC)) == 0
    assert len(world.notifications()) == 3


def test_a_digest_lists_the_policy_s_exceptions_that_expired_or_expire_soon(
        world: World, context: Any) -> None:
    # Given a policy with an exception expiring in 3 days, one expired yesterday and one far
    # off, and an approval held for the digest
    policy_text = DIGESTED + (
        "exceptions:\n"
        "  - {id: CVE-2026-0003, expires: 2026-11-30, reason: r, owner: alice@example.com}\n"
        "  - {id: CVE-2026-0001, expires: 2026-11-26, reason: r, owner: bob@example.com}\n"
        "  - {id: CVE-2026-0009, expires: 2027-06-30, reason: r, owner: carol@example.com}\n")
    world.publish_policy(policy_text)
    judge(world, context, "team-b/api", "v1", "basic-clean")
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    notifier = SnsNotifier(world.session.client("sns"), world.config.topic_arn)

    # When the digest is sent with the published policy
    send_digests(store, notifier, datetime(2026, 11, 27, 6, tzinfo=UTC),
                 parse_policy(policy_text))

    # Then it lists the expired and the expiring exceptions, soonest first, not the far one
    [digest] = world.notifications()
    listed = digest["Document"]["exceptions"]
    assert [(e["id"], e["expired"]) for e in listed] == [("CVE-2026-0001", True),
                                                        ("CVE-2026-0003", False)]
    lines = digest["Message"].splitlines()
    assert "  CVE-2026-0001: expired (2026-11-26, bob@example.com)" in lines
    assert "  CVE-2026-0003: expires in 3 day(s) (2026-11-30, alice@example.com)" in lines


def test_a_digest_that_fails_to_publish_is_sent_next_time(world: World, context: Any) -> None:
    # Given an approval held for the digest
    world.publish_policy(DIGESTED)
    judge(world, context, "team-a/web", "v1", "basic-clean")
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)

    # When publishing the digest fails
    broken = SnsNotifier(world.session.client("sns"), world.config.topic_arn + "-gone")
    with pytest.raises(Exception, match=r"NotFound|does not exist"):
        send_digests(store, broken, datetime(2026, 11, 27, 6, tzinfo=UTC))

    # Then the change is still held, and the next run announces it
    assert len(list(store.held())) == 1
    notifier = SnsNotifier(world.session.client("sns"), world.config.topic_arn)
    assert send_digests(store, notifier, datetime(2026, 11, 27, 7, tzinfo=UTC)) == 1
    assert [n["Subject"] for n in world.notifications()] == ["[DIGEST] 1 APPROVED"]
