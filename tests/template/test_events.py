"""events/: a recorded event for every function of the template, each one its function takes.

Each file is what one function is invoked with (EventBridge events for the push, scan and
sweeper functions, an SQS batch for the re-evaluation function, an SNS event for the Slack
notifier) or an EventBridge event no function takes. The tests read them as the functions
do (parse_event, parse_reevaluation, the SNS envelope), and check that the README's
``sam local invoke`` examples name a function of the template and an event meant for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.events import (
    REQUEST_MARK,
    Ignored,
    ImageEvent,
    Kind,
    Trigger,
    parse_event,
    parse_reevaluation,
)
from gatekeeper.render.slack import SCHEMA, slack_message
from gatekeeper_tools.local.stack import load_sam_template
from tests.template.conftest import ROOT, TEMPLATE

EVENTS = ROOT / "events"

# The kinds of image event each EventBridge-invoked judging function accepts (handling.py).
ACCEPTS = {
    "OnPushFunction": {Kind.PUSH},
    "OnScanFunction": {Kind.BASIC_SCAN, Kind.ENHANCED_SCAN},
}
# Every recorded event, and the function it is meant for (None: an EventBridge event that no
# function takes; tests/template/test_rule_patterns.py checks no rule delivers it).
MEANT_FOR: dict[str, str | None] = {
    "ecr-image-push": "OnPushFunction",
    "ecr-image-push-untagged": "OnPushFunction",
    "ecr-image-push-marker-echo": "OnPushFunction",
    "ecr-image-scan-complete": "OnScanFunction",
    "ecr-image-scan-complete-no-counts": "OnScanFunction",
    "ecr-image-scan-failed": "OnScanFunction",
    "inspector2-scan": "OnScanFunction",
    # EventBridge forwards Inspector2 Finding events to the re-evaluation queue: the function
    # reads each as an SQS message body.
    "inspector2-finding": "OnReevaluateFunction",
    "sqs-reevaluation": "OnReevaluateFunction",
    "scheduled-event": "SweeperFunction",
    "s3-policy-object-created": "SweeperFunction",
    "s3-kev-catalog-object-created": "SweeperFunction",
    "kev-refresh-schedule": "KevRefreshFunction",
    "sns-verdict-notification": "SlackNotifierFunction",
    "ecs-lifecycle-hook-pre-scale-up": "EcsDeploymentHookFunction",
    "ecs-lifecycle-hook-post-test-traffic-shift": "EcsDeploymentHookFunction",
    "function-url-verdict-request": "VerdictApiFunction",
    "ecr-image-delete": None,
    "ecr-image-push-failed": None,
    "ecr-image-action-storage-class": None,
    "ecr-replication-action": None,
    "ecr-referrer-action": None,
    "ecr-scan-resource-change": None,
}


def load(name: str) -> Any:
    return json.loads((EVENTS / f"{name}.json").read_text())


def functions() -> set[str]:
    resources = load_sam_template(TEMPLATE)["Resources"]
    return {name for name, resource in resources.items()
            if resource["Type"] == "AWS::Serverless::Function"}


def sqs_bodies(event: dict[str, Any]) -> list[Any]:
    """The message bodies of an SQS batch, as the SQS poller hands it to Lambda."""
    records = event["Records"]
    assert records and all(r["eventSource"] == "aws:sqs" for r in records)
    assert len({r["messageId"] for r in records}) == len(records)
    return [json.loads(r["body"]) for r in records]


def test_every_recorded_event_is_meant_for_a_known_function() -> None:
    # Given the events/ folder; Then each file is in the table, naming a function of the
    # template (a new file must be classified first)
    assert {path.stem for path in EVENTS.glob("*.json")} == set(MEANT_FOR)
    assert {f for f in MEANT_FOR.values() if f} <= functions()


def test_every_function_of_the_template_has_a_recorded_event() -> None:
    assert functions() == {f for f in MEANT_FOR.values() if f}


@pytest.mark.parametrize("name", sorted(n for n, f in MEANT_FOR.items() if f in ACCEPTS))
def test_a_judging_function_accepts_its_event(name: str) -> None:
    # Given an event meant for the push or the scan function; When it is parsed as they do
    parsed = parse_event(load(name))

    # Then it is an image event of a kind that function judges
    assert isinstance(parsed, ImageEvent)
    assert parsed.kind in ACCEPTS[str(MEANT_FOR[name])]


@pytest.mark.parametrize("name", sorted(n for n, f in MEANT_FOR.items() if f is None))
def test_an_event_for_no_function_is_ignored(name: str) -> None:
    assert isinstance(parse_event(load(name)), Ignored)


def test_the_reevaluation_batch_holds_sweeper_requests_and_an_inspector_finding() -> None:
    # Given the recorded SQS batch of the re-evaluation queue
    bodies = sqs_bodies(load("sqs-reevaluation"))

    # When OnReevaluateFunction reads each body
    parsed = [parse_reevaluation(body) for body in bodies]

    # Then every message is a re-evaluation of an image: the sweeper's requests, shaped as
    # reevaluation_request makes them, and the Finding event exactly as recorded
    assert all(isinstance(p, ImageEvent) and p.kind == Kind.REEVALUATE for p in parsed)
    requests = [b for b in bodies if b.get("schema") == REQUEST_MARK]
    assert len(requests) == 2
    assert all(set(b) == {"schema", "repository", "digest", "trigger"} for b in requests)
    assert {p.trigger for p in parsed} == {Trigger.POLICY, Trigger.EXPIRY, Trigger.FINDING}
    assert load("inspector2-finding") in bodies


def test_the_recorded_sqs_bodies_are_the_sweepers_own_serialization() -> None:
    # The sweeper sends json.dumps(request, sort_keys=True) (gatekeeper.adapters.queue)
    for record in load("sqs-reevaluation")["Records"]:
        body = json.loads(record["body"])
        if body.get("schema") == REQUEST_MARK:
            assert record["body"] == json.dumps(body, sort_keys=True)


def test_an_inspector_finding_is_read_as_a_queue_message() -> None:
    parsed = parse_reevaluation(load("inspector2-finding"))
    assert isinstance(parsed, ImageEvent)
    assert parsed.trigger == Trigger.FINDING


@pytest.mark.parametrize(("name", "source"), [("scheduled-event", "aws.events"),
                                              ("s3-policy-object-created", "aws.s3")])
def test_the_sweeper_takes_its_events_by_source(name: str, source: str) -> None:
    # handling.handle_sweep: a schedule sweeps, an S3 event about the policy queues everything
    assert load(name)["source"] == source


def test_the_slack_notifier_reads_the_recorded_sns_event() -> None:
    # Given the recorded SNS event; When each record's message is read as the notifier does
    records = load("sns-verdict-notification")["Records"]
    assert records and all(r["EventSource"] == "aws:sns" for r in records)
    documents = [json.loads(r["Sns"]["Message"]) for r in records]

    # Then it is a gatekeeper notification the notifier renders for Slack
    assert all(d["schema"] == SCHEMA for d in documents)
    assert all(slack_message(d)["blocks"] for d in documents)


# --- the README's sam local invoke examples ---------------------------------------------------

def sam_local_invokes(readme: Path = ROOT / "README.md") -> list[tuple[str, str]]:
    return re.findall(r"^sam local invoke (\w+) -e events/([\w.-]+)\.json",
                      readme.read_text(encoding="utf-8"), re.MULTILINE)


def test_the_readme_shows_sam_local_invoke_for_every_function_with_its_event() -> None:
    # Given the README's sam local invoke lines
    examples = sam_local_invokes()

    # Then there is one per function of the template, each with an event meant for it
    assert sorted(f for f, _ in examples) == sorted(functions())
    for function, event in examples:
        assert MEANT_FOR.get(event) == function, (function, event)
