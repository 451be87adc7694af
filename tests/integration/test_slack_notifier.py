"""The Slack notifier, end to end: SNS events in, a real HTTP webhook on 127.0.0.1 out, the
webhook URL in (moto's) Secrets Manager."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from functions.on_scan.app import handler as on_scan
from functions.slack_notifier.app import handler
from gatekeeper import runtime
from gatekeeper.adapters.secrets import SecretWebhooks, SlackConfigError
from gatekeeper.adapters.webhook import WebhookError, WebhookPoster, retry_after_seconds
from gatekeeper.config import SECRET_ENV, ConfigError
from gatekeeper.domain.findings import Severity
from gatekeeper.observability import logger, metrics
from gatekeeper.render.slack import SCHEMA, limit_violations, slack_message
from gatekeeper.service.slack import MalformedNotification, SlackNotifier
from gatekeeper_tools.local.slack import Reply, WebhookReceiver, render_text, sns_lambda_event
from tests.slack_support import (
    HOSTILE,
    UNICODE,
    digest_document,
    finding,
    forgery_document,
    image,
    judged,
    many_findings,
    mrkdwn_texts,
    sns_event,
    verdict_document,
)
from tests.support import EVENTS, World, scan_event

TOKEN = "T0SECRET/B0SECRET/s3cr3tT0k3nOfTheWebhook"


def recording(slept: list[float]) -> Callable[[float], None]:
    """A real sleep that also notes each wait the poster planned (asserted on, never the
    wall clock: a shared machine is too noisy for timed assertions)."""
    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)
    return sleep


def fast_poster(**overrides: Any) -> WebhookPoster:
    """Real sockets and real sleeps, with short timeouts and backoffs."""
    options: dict[str, Any] = {"timeout": 0.5, "max_attempts": 4, "max_retry_after": 2.0,
                               "backoff": 0.05, "max_backoff": 0.2}
    options.update(overrides)
    return WebhookPoster(**options)


@dataclass
class Slack:
    receiver: WebhookReceiver
    secret_arn: str
    session: boto3.session.Session

    @property
    def url(self) -> str:
        return self.receiver.url

    def set_secret(self, value: str) -> None:
        self.session.client("secretsmanager").put_secret_value(SecretId=self.secret_arn,
                                                               SecretString=value)

    def use(self, monkeypatch: pytest.MonkeyPatch, poster: WebhookPoster | None = None,
            secret_arn: str | None = None) -> SlackNotifier:
        """The handler's notifier: this secret, and ``poster`` (fast by default)."""
        notifier = SlackNotifier(SecretWebhooks(secret_arn or self.secret_arn),
                                 poster or fast_poster())
        monkeypatch.setattr(runtime, "slack_notifier", lambda: notifier)
        return notifier


@pytest.fixture
def slack(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Slack]:
    """Given a webhook receiver on 127.0.0.1 and its URL stored in Secrets Manager, named by
    the function's environment (as the template sets it)."""
    with WebhookReceiver(TOKEN) as receiver:
        secrets = world.session.client("secretsmanager")
        arn = secrets.create_secret(Name="gatekeeper/slack-webhook",
                                    SecretString=receiver.url)["ARN"]
        monkeypatch.setenv(SECRET_ENV, arn)
        built = runtime.slack_notifier  # the container's cached notifier (tests may replace it)
        parameters.clear_caches()
        built.cache_clear()
        yield Slack(receiver, arn, world.session)
        parameters.clear_caches()
        built.cache_clear()
        metrics.clear_metrics()


@dataclass
class ShortContext:
    """A Lambda context with little time left."""

    seconds_left: float
    function_name: str = "slack-notifier-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:slack"
    aws_request_id: str = "6f2c3a1e-0b7d-4c55-9a31-2b0e5d8f1c44"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds_left * 1000)


def quarantine_document(**kwargs: Any) -> dict[str, Any]:
    return verdict_document(judged([finding(1, Severity.CRITICAL, package="libwebp")]),
                            **kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- delivery --------------------------------------------------------------------------------

def test_the_recorded_sns_event_is_posted_to_the_webhook(slack: Slack, context: Any) -> None:
    # Given the recorded SNS event (a quarantine of team-b/api:2.0.0), and the notifier built
    # from the environment as in Lambda
    event = json.loads((EVENTS / "sns-verdict-notification.json").read_text())
    document = json.loads(event["Records"][0]["Sns"]["Message"])

    # When SNS invokes the function
    result = handler(event, context)

    # Then one message reached the webhook: the document's Slack rendering, as JSON
    assert result == {"posted": 1}
    (request,) = slack.receiver.requests
    assert request.path == f"/services/{TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.json == slack_message(document)
    assert request.json["blocks"][0]["text"]["text"] == ":no_entry: QUARANTINED: team-b/api:2.0.0"


def test_a_judged_image_reaches_slack(world: World, slack: Slack, context: Any) -> None:
    # Given an image quarantined by the gatekeeper, its notification published to the topic
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)
    envelopes = [{**{k: v for k, v in note.items() if k != "Document"},
                  "Message": json.dumps(note["Document"])}  # as SNS sent it
                 for note in world.notifications()]

    # When SNS hands the notification to the Slack notifier
    handler(sns_lambda_event(envelopes), context)

    # Then Slack shows the quarantine with its blocking findings
    (message,) = slack.receiver.messages()
    text = render_text(message)
    assert text.startswith(":no_entry: QUARANTINED: team-a/web:v1")
    assert "CVE-2023-4863 CRITICAL · libwebp 0.6.1-2.1" in text


def test_thousands_of_findings_arrive_within_slacks_limits(slack: Slack, context: Any) -> None:
    # Given a verdict with 5,000 findings (the notification shortened to fit SNS)
    document = verdict_document(judged(many_findings(5_000)))
    assert document["omitted"]["counted"] > 0

    # When it is posted
    handler(sns_event(document), context)

    # Then what the webhook received keeps every Slack limit
    (request,) = slack.receiver.requests
    payload = request.json
    assert limit_violations(payload) == []
    assert len(payload["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in payload["blocks"]
               if b["type"] == "section" and "text" in b)
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    assert all(len(f["text"]) <= 2000 and len(b["fields"]) <= 10
               for b in payload["blocks"] for f in b.get("fields", []))
    assert len(request.body.decode("utf-8")) <= 12_000
    assert "*Findings that block (2500)*" in "\n".join(mrkdwn_texts(payload))


def test_hostile_text_arrives_escaped(slack: Slack, context: Any) -> None:
    # Given findings and an image whose texts try to mention everyone and hide a link
    document = verdict_document(judged([
        finding(1, Severity.CRITICAL, package=HOSTILE, title=HOSTILE,
                uri="http://evil.example|click"),
    ]), ref=image("team-b/<!channel>", tags=("<@U123>",)))

    # When posted
    handler(sns_event(document), context)

    # Then no text the webhook received holds a control sequence from the input
    (payload,) = slack.receiver.messages()
    for text in mrkdwn_texts(payload):
        assert not re.search(r"<[!@#]", text), text
        assert "<http://evil" not in text
    assert "&lt;!channel&gt;" in json.dumps(payload)


def test_unicode_arrives_intact(slack: Slack, context: Any) -> None:
    document = verdict_document(judged([finding(1, Severity.CRITICAL, package=UNICODE)]),
                                ref=image(tags=("v1-✓",)))
    handler(sns_event(document), context)
    (request,) = slack.receiver.requests
    body = request.body.decode("utf-8")
    assert UNICODE in body  # sent as UTF-8, not \\u escapes
    assert request.json["blocks"][0]["text"]["text"].endswith("team-b/api:v1-✓")


@pytest.mark.parametrize("document", [forgery_document(), digest_document(25)],
                         ids=["forged_marker", "digest"])
def test_alerts_and_digests_are_posted_too(slack: Slack, context: Any,
                                           document: dict[str, Any]) -> None:
    assert handler(sns_event(document), context) == {"posted": 1}
    assert slack.receiver.messages() == [slack_message(document)]


def test_a_json_secret_and_channel_routes(slack: Slack, context: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a JSON secret: a default webhook and one for the channel team-a
    team_a = slack.url.replace(TOKEN, "T0/B0/team-a-token")
    slack.set_secret(json.dumps({"webhook_url": slack.url, "channels": {"team-a": team_a}}))

    # When notifications for team-a, for another channel and for none arrive
    handler(sns_event(quarantine_document(channel="team-a", verdict_id="a-1"),
                      quarantine_document(channel="team-z", verdict_id="z-1"),
                      quarantine_document(channel=None, verdict_id="n-1")), context)

    # Then team-a's goes to its webhook, the others to the default one
    assert [r.path for r in slack.receiver.requests] == [
        "/services/T0/B0/team-a-token", f"/services/{TOKEN}", f"/services/{TOKEN}"]


# --- what is not delivered -------------------------------------------------------------------

def test_a_duplicate_verdict_is_posted_once(slack: Slack, context: Any) -> None:
    # Given one verdict change delivered twice by SNS (at least once), then another verdict
    document = quarantine_document(verdict_id="0a87789e4064-7")

    # When each delivery invokes the function
    first = handler(sns_event(document, message_ids=["m-1"]), context)
    again = handler(sns_event(document, message_ids=["m-2"]), context)
    other = handler(sns_event(quarantine_document(verdict_id="0a87789e4064-8")), context)

    # Then Slack got the verdict once, and the next one
    assert (first, again, other) == ({"posted": 1}, {"duplicate": 1}, {"posted": 1})
    assert len(slack.receiver.requests) == 2


def test_a_redelivered_alert_without_verdict_id_is_posted_once(slack: Slack,
                                                               context: Any) -> None:
    event = sns_event(forgery_document(), message_ids=["same-sns-message"])
    handler(event, context)
    assert handler(event, context) == {"duplicate": 1}
    assert len(slack.receiver.requests) == 1


@pytest.mark.parametrize("message", [
    json.dumps({"schema": "gatekeeper.notification/v2", "kind": "verdict"}),
    json.dumps({"schema": "gatekeeper.verdict/v1"}),
    json.dumps([1, 2]),
    json.dumps({"schema": SCHEMA, "kind": "heartbeat"}),
])
def test_another_schema_or_kind_is_skipped_with_a_log_line(slack: Slack, context: Any,
                                                           caplog: Any, message: str) -> None:
    assert handler(sns_event(message), context) == {"skipped": 1}
    assert slack.receiver.requests == []
    assert any("skipped" in str(r.msg) for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize("message", ["[QUARANTINED] team-a/web:v1 (plain text)", "{", ""])
def test_a_malformed_message_fails_the_invocation(slack: Slack, context: Any, caplog: Any,
                                                  message: str) -> None:
    with pytest.raises(MalformedNotification):
        handler(sns_event(message), context)
    assert slack.receiver.requests == []
    assert any(str(r.msg).startswith("malformed notification rejected")
               for r in caplog.records if r.levelname == "ERROR")


def test_one_bad_record_fails_the_invocation_after_the_others_are_posted(
        slack: Slack, context: Any) -> None:
    event = sns_event(quarantine_document(verdict_id="ok-1"), "not json",
                      quarantine_document(verdict_id="ok-2"))
    with pytest.raises(MalformedNotification):
        handler(event, context)
    assert len(slack.receiver.requests) == 2


def test_an_event_without_records_is_rejected(slack: Slack, context: Any) -> None:
    with pytest.raises(MalformedNotification):
        handler({"detail-type": "ECR Image Scan"}, context)


# --- the secret --------------------------------------------------------------------------------

def test_a_missing_secret_names_its_arn(slack: Slack, context: Any, caplog: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a function configured with the ARN of a secret that does not exist
    missing = slack.secret_arn.replace("slack-webhook", "slack-webhook-gone")
    slack.use(monkeypatch, secret_arn=missing)

    # When a notification arrives; Then the invocation fails, naming the secret and the fix
    with pytest.raises(SlackConfigError, match=re.escape(missing) + ".*does not exist"):
        handler(sns_event(quarantine_document()), context)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(getattr(r, "secret_arn", None) == missing for r in errors)
    assert slack.receiver.requests == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_without_the_environment_variable_the_function_says_what_to_deploy(
        slack: Slack, context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ConfigError, match="SlackWebhookSecretArn"):
        handler(sns_event(quarantine_document()), context)


@pytest.mark.parametrize(("value", "problem"), [
    ("not-a-url/T0SEKRIT", "is not an absolute URL"),
    ("http://chat.example.org/hook/T0SEKRIT", "uses http"),
    ("ftp://chat.example.org/hook/T0SEKRIT", "is not an https URL"),
    ("https://chat.example.org/hook/T0SEKRIT x", "contains spaces"),
    ('{"url": "https://chat.example.org/hook/T0SEKRIT"}', 'has no "webhook_url"'),
    ('{"webhook_url": 42, "x": "T0SEKRIT"}', "is empty"),
    ('{"webhook_url": "https://chat.example.org/hook/T0SEKRIT", "channels": ["a"]}',
     '"channels" must map'),
    ('{"webhook_url": "https://chat.example.org/hook/T0SEKRIT", "channels": {"a": "T0SEKRIT"}}',
     "the URL of channel 'a' is not an absolute URL"),
    ("{broken json https://chat.example.org/hook/T0SEKRIT", "not valid JSON"),
    ("   ", "is empty"),
])
def test_a_wrong_secret_value_is_named_without_showing_it(
        slack: Slack, context: Any, caplog: Any, capfd: Any, value: str,
        problem: str) -> None:
    # Given a secret whose value is not a usable webhook
    slack.set_secret(value)

    # When a notification arrives; Then the error names the secret and the problem
    with pytest.raises(SlackConfigError) as raised:
        handler(sns_event(quarantine_document()), context)
    message = str(raised.value)
    assert slack.secret_arn in message and problem in message
    # and never the value, in the error or in any log line
    output = capfd.readouterr()
    for secret_part in ("chat.example.org", "T0SEKRIT"):
        assert secret_part not in message
        assert secret_part not in output.out + output.err
        assert not any(secret_part in r.getMessage() or secret_part in str(r.__dict__)
                       for r in caplog.records)


def test_a_fixed_secret_is_read_again_at_the_next_invocation(slack: Slack, context: Any) -> None:
    # Given a wrong value, which fails the invocation
    slack.set_secret("http://hooks.slack.com/wrong")
    with pytest.raises(SlackConfigError):
        handler(sns_event(quarantine_document()), context)

    # When the secret is fixed and Lambda retries (within the 5-minute cache)
    slack.set_secret(slack.url)

    # Then the retry reads it again and posts
    assert handler(sns_event(quarantine_document()), context) == {"posted": 1}


# --- retries -------------------------------------------------------------------------------------

def test_429_is_retried_after_its_retry_after(slack: Slack, context: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook that is rate limited for one second
    slack.use(monkeypatch)
    slack.receiver.answer(Reply(429, "rate_limited", {"Retry-After": "1"}))

    # When a notification is posted
    assert handler(sns_event(quarantine_document()), context) == {"posted": 1}

    # Then it was tried again once the second had passed, and delivered
    first, second = slack.receiver.requests
    assert second.at - first.at >= 1.0
    assert first.body == second.body


def test_a_retry_after_beyond_the_deadline_fails_at_once(slack: Slack,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook asking to come back in two minutes, and 7 s left in the invocation
    slept: list[float] = []
    slack.use(monkeypatch, fast_poster(max_retry_after=30.0, sleep=recording(slept)))
    slack.receiver.answer(Reply(429, "rate_limited", {"Retry-After": "120"}))

    # When posting; Then it gives up without waiting (Lambda's own retry comes later)
    with pytest.raises(WebhookError, match="would pass the deadline") as raised:
        handler(sns_event(quarantine_document()), ShortContext(seconds_left=7))
    assert slept == []
    assert raised.value.retryable and raised.value.status == 429
    assert len(slack.receiver.requests) == 1


def test_a_server_error_is_retried(slack: Slack, context: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    slack.use(monkeypatch)
    slack.receiver.answer(Reply(500, "internal_error"), Reply(503, ""))
    assert handler(sns_event(quarantine_document()), context) == {"posted": 1}
    assert len(slack.receiver.requests) == 3


def test_a_slow_webhook_times_out_and_is_retried(slack: Slack, context: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook that answers the first request after 1.5 s, the client waiting 0.3 s
    slack.use(monkeypatch, fast_poster(timeout=0.3))
    slack.receiver.answer(Reply(200, delay=1.5))

    # When posting; Then the client gave up on the first (had it waited for the 200, there
    # would be no second request) and the second went through
    assert handler(sns_event(quarantine_document()), context) == {"posted": 1}
    assert len(slack.receiver.requests) == 2


def test_a_webhook_that_stays_down_fails_after_bounded_retries(
        slack: Slack, context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook on a port where nothing listens (connection refused)
    slack.set_secret(f"http://127.0.0.1:{closed_port()}/services/{TOKEN}")
    slept: list[float] = []
    slack.use(monkeypatch, fast_poster(max_attempts=3, sleep=recording(slept)))

    # When posting; Then it tries three times, backing off (bounded), and fails the invocation
    with pytest.raises(WebhookError, match=r"after 3 attempt\(s\).*ConnectionRefusedError") as e:
        handler(sns_event(quarantine_document()), context)
    assert e.value.retryable and e.value.attempts == 3
    assert len(slept) == 2 and all(0 < s <= 0.2 for s in slept)


def test_every_failure_ends_within_the_invocation(slack: Slack,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook failing with 500 forever, and 6.5 s left (1.5 s after the margin)
    slept: list[float] = []
    slack.use(monkeypatch, fast_poster(max_attempts=100, backoff=0.2, max_backoff=0.4,
                                       sleep=recording(slept)))
    slack.receiver.answer(*[Reply(500)] * 100)
    with pytest.raises(WebhookError, match=r"deadline|attempt"):
        handler(sns_event(quarantine_document()), ShortContext(seconds_left=6.5))
    # Then it planned no wait past the 1.5 s it had (the deadline, not the attempts, ended it)
    assert sum(slept) <= 1.5
    assert len(slack.receiver.requests) < 100


@pytest.mark.parametrize(("status", "body", "says"), [
    (404, "no_service", "no_service"),
    (403, "invalid_token", "invalid_token"),
    (410, "channel_is_archived", "channel_is_archived"),
    (400, "invalid_payload", "Slack refused the message itself"),
    (302, "", "a redirect, not followed"),
])
def test_a_refusal_is_not_retried(slack: Slack, context: Any, monkeypatch: pytest.MonkeyPatch,
                                  status: int, body: str, says: str) -> None:
    slack.use(monkeypatch)
    slack.receiver.answer(Reply(status, body, {"Location": "https://evil.example/"}
                                if status == 302 else {}))
    with pytest.raises(WebhookError, match=says) as raised:
        handler(sns_event(quarantine_document()), context)
    assert not raised.value.retryable
    assert len(slack.receiver.requests) == 1


def test_a_revoked_webhook_rereads_the_secret_at_the_next_invocation(
        slack: Slack, context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a webhook Slack says is gone
    slack.use(monkeypatch)
    slack.receiver.answer(Reply(404, "no_service"))
    with pytest.raises(WebhookError, match="revoked"):
        handler(sns_event(quarantine_document()), context)

    # When the secret is updated with a new webhook before Lambda's retry
    new_url = slack.url.replace(TOKEN, "T0/B0/new-token")
    slack.set_secret(new_url)

    # Then the retry posts to the new webhook (the cached value was dropped)
    assert handler(sns_event(quarantine_document()), context) == {"posted": 1}
    assert slack.receiver.requests[-1].path == "/services/T0/B0/new-token"


@pytest.mark.parametrize(("value", "seconds"), [
    ("1", 1.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("soon", None), ("", None), (None, None), ("nan", None), ("inf", None),
])
def test_retry_after_is_read_as_seconds_or_a_date(value: str | None,
                                                  seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


# --- the secret never appears in logs -----------------------------------------------------------

def test_the_webhook_url_never_appears_in_logs(slack: Slack, context: Any, caplog: Any,
                                               capfd: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given every log at DEBUG, botocore's included: the Powertools logger (JSON on stdout,
    # as Lambda sends it to CloudWatch) and every other logger; kept only while the function
    # runs (the test's own put_secret_value calls log the URL they store)
    caplog.set_level(logging.DEBUG)
    previous = logger.log_level
    logger.setLevel("DEBUG")
    logged: list[str] = []

    def invoke(event: dict[str, Any], fails: type[Exception] | None = None) -> None:
        capfd.readouterr()
        caplog.clear()
        try:
            if fails:
                with pytest.raises(fails):
                    handler(event, context)
            else:
                handler(event, context)
        finally:
            output = capfd.readouterr()
            logged.append(output.out + output.err + "\n".join(
                f"{r.getMessage()} {r.__dict__}" for r in caplog.records))

    try:
        notifier = slack.use(monkeypatch)
        # When: a success after retries (429, 500), a duplicate, a slow answer, refusals
        # (404, a redirect), a wrong secret, a webhook that is down, a missing secret
        slack.receiver.answer(Reply(429, "rate_limited", {"Retry-After": "0"}),
                              Reply(500, "oops"))
        invoke(sns_event(quarantine_document(verdict_id="v-1")))
        invoke(sns_event(quarantine_document(verdict_id="v-1")))
        slack.receiver.answer(Reply(200, delay=1.0))
        invoke(sns_event(quarantine_document(verdict_id="v-2")))
        for reply in (Reply(404, "no_service"), Reply(302, "", {"Location": slack.url})):
            slack.receiver.answer(reply)
            invoke(sns_event(quarantine_document(verdict_id=f"v-{reply.status}")), WebhookError)
        slack.set_secret(json.dumps({"webhook_url": slack.url.replace("http", "htp")}))
        notifier.webhooks.invalidate()
        invoke(sns_event(quarantine_document(verdict_id="v-bad")), SlackConfigError)
        down = f"http://127.0.0.1:{closed_port()}/services/{TOKEN}"
        slack.set_secret(down)
        invoke(sns_event(quarantine_document(verdict_id="v-down")), WebhookError)
        slack.use(monkeypatch, secret_arn=slack.secret_arn + "-gone")
        invoke(sns_event(quarantine_document(verdict_id="v-gone")), SlackConfigError)
    finally:
        logger.setLevel(previous)

    # Then something was logged about each, botocore's calls included (so the check below is
    # not vacuous)
    text = "\n".join(logged)
    for line in ("Slack message posted", "retrying", "not delivered", "GetSecretValue",
                 "duplicate notification skipped", "secret unusable", "does not exist"):
        assert line in text, line
    assert f"http://127.0.0.1:{slack.receiver.port}/***" in text
    # and neither the URL nor any part of its token is anywhere in it
    for secret in (slack.url, TOKEN, *TOKEN.split("/"), down):
        assert secret not in text, secret
