"""parse_event: recorded EventBridge events become an ImageEvent, an Ignored, or MalformedEvent."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gatekeeper.domain.events import (
    Ignored,
    ImageEvent,
    Kind,
    MalformedEvent,
    Trigger,
    parse_event,
    parse_reevaluation,
    reevaluation_request,
)
from gatekeeper.domain.scope import Scope
from tests.domain_support import EVENTS, load_event

DIGEST = "sha256:9b1a3f6c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
DIGEST_RE = re.compile(r"sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})")
REPOSITORY_RE = re.compile(r"(?:[a-z0-9]+(?:[._-]+[a-z0-9]+)*/)*[a-z0-9]+(?:[._-]+[a-z0-9]+)*")

PUSH = "ecr-image-push"
SCAN = "ecr-image-scan-complete"
INSPECTOR = "inspector2-scan"


# --- every recorded event --------------------------------------------------------------------

ACCEPTED = {
    "ecr-image-push": (Kind.PUSH, ("v1.4.2",), None),
    "ecr-image-push-untagged": (Kind.PUSH, (), None),
    "ecr-image-push-marker-echo": (Kind.PUSH, ("approved-9b1a3f6c2d4e",), None),
    "ecr-image-scan-complete": (Kind.BASIC_SCAN, ("v1.4.2",), "COMPLETE"),
    "ecr-image-scan-complete-no-counts": (Kind.BASIC_SCAN, (), "COMPLETE"),
    "ecr-image-scan-failed": (Kind.BASIC_SCAN, ("v1.4.2",), "FAILED"),
    "inspector2-scan": (Kind.ENHANCED_SCAN, ("v1.4.2", "latest"), "INITIAL_SCAN_COMPLETE"),
}

IGNORED = {
    "ecr-image-delete": "action-type 'DELETE'",
    "ecr-image-action-storage-class": "action-type 'UPDATE_STORAGE_CLASS'",
    "ecr-image-push-failed": "result 'FAILURE'",
    "ecr-replication-action": "ECR Replication Action",
    "ecr-referrer-action": "ECR Referrer Action",
    "ecr-scan-resource-change": "ECR Scan Resource Change",
    # Not for the push and scan handlers: the re-evaluation queue and the sweeper take these.
    "inspector2-finding": "Inspector2 Finding",
    "s3-policy-object-created": "Object Created",
    "scheduled-event": "Scheduled Event",
    "s3-kev-catalog-object-created": "Object Created",
    "kev-refresh-schedule": "Scheduled Event",
}


# Not EventBridge events: what SNS hands a Lambda subscriber (the Slack notifier's input,
# tests/integration/test_slack_notifier.py) and the re-evaluation queue's SQS batch (its
# bodies are read by parse_reevaluation, tests/template/test_events.py). Should one reach a
# handler of EventBridge events, it is ignored.
NOT_EVENTBRIDGE = {"sns-verdict-notification": "not an event the gatekeeper handles",
                   "sqs-reevaluation": "not an event the gatekeeper handles",
                   "ecs-lifecycle-hook-pre-scale-up": "not an event the gatekeeper handles",
                   "ecs-lifecycle-hook-post-test-traffic-shift":
                       "not an event the gatekeeper handles",
                   "function-url-verdict-request": "not an event the gatekeeper handles"}


def test_every_recorded_event_is_covered_by_these_tests() -> None:
    """Given the events/ folder, then each file is classified below (a new file needs a case)."""
    recorded = {path.stem for path in EVENTS.glob("*.json")}
    assert recorded == set(ACCEPTED) | set(IGNORED) | set(NOT_EVENTBRIDGE)


@pytest.mark.parametrize(("name", "reason"), sorted(NOT_EVENTBRIDGE.items()))
def test_a_recorded_sns_or_sqs_event_is_ignored_by_the_eventbridge_parser(
        name: str, reason: str) -> None:
    parsed = parse_event(json.loads((EVENTS / f"{name}.json").read_text()))
    assert isinstance(parsed, Ignored)
    assert reason in parsed.reason


@pytest.mark.parametrize(("name", "expected"), sorted(ACCEPTED.items()))
def test_recorded_event_parses_to_its_kind(name: str, expected: tuple[Any, ...]) -> None:
    # Given a recorded event the gatekeeper handles
    kind, tags, status = expected
    raw = load_event(name)
    # When it is parsed
    parsed = parse_event(raw)
    # Then it is an ImageEvent of that kind, with every field read from the event
    assert parsed == ImageEvent(
        kind=kind,
        repository="team-a/web",
        digest=DIGEST,
        tags=tags,
        event_id=raw["id"],
        scan_status=status,
        account="123456789012",
        region="us-east-1",
        time=raw["time"],
    )


@pytest.mark.parametrize(("name", "reason"), sorted(IGNORED.items()))
def test_recorded_event_is_ignored_with_a_reason(name: str, reason: str) -> None:
    # Given a recorded event of a kind the gatekeeper does not judge
    raw = load_event(name)
    # When it is parsed
    parsed = parse_event(raw)
    # Then it is ignored, and the reason says why
    assert isinstance(parsed, Ignored)
    assert reason in parsed.reason
    assert (parsed.source, parsed.detail_type) == (raw["source"], raw["detail-type"])


def test_inspector_scan_names_the_repository_by_arn_but_parses_to_its_name() -> None:
    """Given an Inspector2 Scan whose repository-name is an ARN, then the plain name is kept."""
    raw = load_event(INSPECTOR)
    assert raw["detail"]["repository-name"].startswith("arn:aws:ecr:")
    assert parse_event(raw).repository == "team-a/web"


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("arn:aws:ecr:us-east-1:123456789012:repository/web", "web"),
        ("arn:aws-cn:ecr:cn-north-1:123456789012:repository/a/b/c", "a/b/c"),
        ("arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/x.y_z", "x.y_z"),
    ],
)
def test_repository_arn_in_any_partition_yields_the_name(arn: str, name: str) -> None:
    assert parse_event(load_event(INSPECTOR, repository_name=arn)).repository == name


def test_repository_arn_naming_an_invalid_repository_is_malformed() -> None:
    arn = "arn:aws:ecr:us-east-1:123456789012:repository/Team A"
    with pytest.raises(MalformedEvent, match="repository-name"):
        parse_event(load_event(INSPECTOR, repository_name=arn))


def test_verdicts_never_come_from_the_events_severity_counts() -> None:
    """Given two scan events differing only in finding-severity-counts, then they parse equal:
    counts in an event are a summary the gatekeeper must not judge from."""
    assert "counts" not in {f.name for f in dataclasses.fields(ImageEvent)}
    with_counts = parse_event(load_event(SCAN))
    other_counts = parse_event(load_event(SCAN, finding_severity_counts={"CRITICAL": 0}))
    assert with_counts == other_counts


def test_null_image_tags_on_a_scan_mean_untagged() -> None:
    assert parse_event(load_event(SCAN, image_tags=None)).tags == ()


def test_missing_event_id_is_reported_as_unknown() -> None:
    raw = load_event(PUSH)
    del raw["id"]
    assert parse_event(raw).event_id == "unknown"


def test_a_sha512_digest_is_accepted() -> None:
    digest = "sha512:" + "ab" * 64
    assert parse_event(load_event(PUSH, image_digest=digest)).digest == digest


@pytest.mark.parametrize(
    "event",
    [
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
        {"source": "aws.ecr", "detail-type": "ECR Image Delete"},
        {"source": "aws.inspector2", "detail-type": "Inspector2 Finding"},
        {},
        {"source": 7, "detail-type": None},
    ],
    ids=["other-source", "other-detail-type", "inspector-finding", "empty", "odd-types"],
)
def test_events_of_other_kinds_are_ignored_whatever_their_detail(event: dict[str, Any]) -> None:
    parsed = parse_event(event)
    assert isinstance(parsed, Ignored)
    assert parsed.reason.startswith("not an event the gatekeeper handles")


# --- malformed events ------------------------------------------------------------------------


@pytest.mark.parametrize("event", [None, [], "{}", 42, b"{}"], ids=repr)
def test_an_event_that_is_not_an_object_is_malformed(event: Any) -> None:
    with pytest.raises(MalformedEvent, match="not a JSON object"):
        parse_event(event)


@pytest.mark.parametrize("name", [PUSH, SCAN, INSPECTOR])
@pytest.mark.parametrize("detail", ["missing", None, [], "text"])
def test_a_handled_event_without_a_detail_object_is_malformed(name: str, detail: Any) -> None:
    raw = load_event(name)
    if detail == "missing":
        del raw["detail"]
    else:
        raw["detail"] = detail
    with pytest.raises(MalformedEvent, match="'detail' is missing or not an object"):
        parse_event(raw)


BAD_DIGESTS = [
    None,
    42,
    "",
    "sha256:9b1a3f",  # too short
    DIGEST.upper(),  # upper-case hex
    DIGEST + "0",  # too long
    DIGEST.replace("sha256", "md5"),
    DIGEST[len("sha256:"):],  # no algorithm
    " " + DIGEST,
]


@pytest.mark.parametrize("name", [PUSH, SCAN, INSPECTOR])
@pytest.mark.parametrize("digest", BAD_DIGESTS, ids=repr)
def test_an_unreadable_digest_is_malformed(name: str, digest: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.image-digest"):
        parse_event(load_event(name, image_digest=digest))


def test_a_missing_digest_is_malformed() -> None:
    raw = load_event(PUSH)
    del raw["detail"]["image-digest"]
    with pytest.raises(MalformedEvent, match=r"detail\.image-digest"):
        parse_event(raw)


BAD_REPOSITORIES = [
    None,
    ["team-a/web"],
    "Team-A/web",  # upper-case
    "team a/web",  # space
    "a",  # too short
    "x" * 257,  # too long
    "/web",
    "web/",
    "team--/web",
    "arn:aws:ecr:us-east-1:123456789012:repository/",
]


@pytest.mark.parametrize("name", [PUSH, SCAN, INSPECTOR])
@pytest.mark.parametrize("repository", BAD_REPOSITORIES, ids=repr)
def test_an_invalid_repository_name_is_malformed(name: str, repository: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.repository-name"):
        parse_event(load_event(name, repository_name=repository))


@pytest.mark.parametrize("name", [SCAN, INSPECTOR])
@pytest.mark.parametrize(
    "tags", ["v1.4.2", {"v1": True}, 3, [""], ["v1", 2], [None]], ids=repr
)
def test_image_tags_that_are_not_a_list_of_strings_are_malformed(name: str, tags: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.image-tags"):
        parse_event(load_event(name, image_tags=tags))


@pytest.mark.parametrize("name", [SCAN, INSPECTOR])
@pytest.mark.parametrize("status", ["", None, 0, ["COMPLETE"]], ids=repr)
def test_an_empty_or_non_text_scan_status_is_malformed(name: str, status: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.scan-status"):
        parse_event(load_event(name, scan_status=status))


def test_a_scan_without_scan_status_is_malformed() -> None:
    raw = load_event(SCAN)
    del raw["detail"]["scan-status"]
    with pytest.raises(MalformedEvent, match=r"detail\.scan-status"):
        parse_event(raw)


@pytest.mark.parametrize("tag", ["", 1, ["v1"], {"v": 1}, True], ids=repr)
def test_a_push_whose_image_tag_is_not_a_non_empty_string_is_malformed(tag: Any) -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.image-tag "):
        parse_event(load_event(PUSH, image_tag=tag))


def test_a_push_with_a_null_image_tag_is_an_untagged_push() -> None:
    assert parse_event(load_event(PUSH, image_tag=None)).tags == ()


def test_malformed_messages_quote_at_most_a_hundred_characters_of_the_value() -> None:
    with pytest.raises(MalformedEvent) as raised:
        parse_event(load_event(PUSH, image_digest="x" * 10_000))
    assert len(str(raised.value)) < 200


def test_a_digest_with_a_trailing_newline_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.image-digest"):
        parse_event(load_event(PUSH, image_digest=DIGEST + "\n"))


def test_a_repository_name_with_a_trailing_newline_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match=r"detail\.repository-name"):
        parse_event(load_event(PUSH, repository_name="team-a/web\n"))


@pytest.mark.parametrize(
    "event",
    [
        {"source": ["aws.ecr"], "detail-type": "ECR Image Action"},
        {"source": "aws.ecr", "detail-type": {"name": "ECR Image Scan"}},
    ],
    ids=["list-source", "object-detail-type"],
)
def test_an_unhashable_source_or_detail_type_is_not_a_crash(event: dict[str, Any]) -> None:
    """Given an event whose routing fields are JSON arrays/objects, then it is ignored (or, at
    worst, rejected as malformed), never a TypeError."""
    try:
        parsed = parse_event(event)
    except MalformedEvent:
        return
    assert isinstance(parsed, Ignored)


# --- properties ------------------------------------------------------------------------------

TEXT = st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=16,
)
HASHABLE = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
ROUTES = st.sampled_from([
    ("aws.ecr", "ECR Image Action"),
    ("aws.ecr", "ECR Image Scan"),
    ("aws.inspector2", "Inspector2 Scan"),
])
DETAIL_VALUES = JSON | st.sampled_from(
    ["PUSH", "SUCCESS", "COMPLETE", "team-a/web", DIGEST, "v1", ["v1", "latest"], []]
)
DETAIL = st.fixed_dictionaries({}, optional={
    key: DETAIL_VALUES
    for key in ("action-type", "result", "image-tag", "image-tags", "scan-status",
                "repository-name", "image-digest")
}) | JSON


@st.composite
def routed_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events whose source / detail-type are hashable (a known route or any scalar)."""
    source, detail_type = draw(ROUTES | st.tuples(HASHABLE, HASHABLE))
    event = draw(st.dictionaries(st.text(max_size=8), JSON, max_size=3))
    event.update({"source": source, "detail-type": detail_type})
    if draw(st.booleans()):
        event["detail"] = draw(DETAIL)
    return event


def _valid(parsed: ImageEvent) -> bool:
    return (
        DIGEST_RE.fullmatch(parsed.digest) is not None
        and REPOSITORY_RE.fullmatch(parsed.repository) is not None
        and all(isinstance(tag, str) and tag for tag in parsed.tags)
    )


@given(routed_events())
def test_parse_event_only_returns_an_event_or_ignored_or_raises_malformed(event: Any) -> None:
    """Given any JSON-like event, when parsed, then the outcome is one of the three documented
    ones, and an ImageEvent always carries a real digest, repository name and tags."""
    try:
        parsed = parse_event(event)
    except MalformedEvent:
        return
    assert isinstance(parsed, ImageEvent | Ignored)
    if isinstance(parsed, ImageEvent):
        assert _valid(parsed)


@given(JSON | st.fixed_dictionaries({}, optional={"source": JSON, "detail-type": JSON,
                                                   "detail": DETAIL}))
@example({"source": ["aws.ecr"], "detail-type": "ECR Image Action"})
def test_parse_event_on_arbitrary_json_never_raises_anything_but_malformed(event: Any) -> None:
    try:
        parsed = parse_event(event)
    except MalformedEvent:
        return
    assert isinstance(parsed, ImageEvent | Ignored)


NOT_TEXT = st.none() | st.booleans() | st.integers() | st.floats() | st.lists(TEXT, max_size=2)


@given(
    name=st.sampled_from([PUSH, SCAN, INSPECTOR]),
    field=st.sampled_from(["repository-name", "image-digest"]),
    value=NOT_TEXT | TEXT | st.from_regex(r"[a-z0-9._/-]{1,20}", fullmatch=True),
)
def test_a_corrupt_identity_field_never_yields_an_image_event(
    name: str, field: str, value: Any
) -> None:
    """Given a handled event whose repository or digest is replaced by an arbitrary value, then
    parsing either rejects it or yields an event whose repository and digest are well-formed."""
    raw = load_event(name)
    raw["detail"][field] = value
    try:
        parsed = parse_event(raw)
    except MalformedEvent:
        return
    assert isinstance(parsed, ImageEvent)
    assert _valid(parsed)


@given(name=st.sampled_from([SCAN, INSPECTOR]), status=NOT_TEXT | st.just(""))
def test_a_scan_without_a_readable_status_never_yields_an_image_event(name: str,
                                                                      status: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(load_event(name, scan_status=status))


# --- re-evaluation requests ---------------------------------------------------------------------

def test_an_inspector_finding_event_names_the_image_to_reevaluate() -> None:
    # Given Inspector's finding event about an ECR image
    event = load_event("inspector2-finding")

    # When it is read from the re-evaluation queue
    parsed = parse_reevaluation(event)

    # Then it asks for the image named by the event's image ARN, triggered by a finding
    assert isinstance(parsed, ImageEvent)
    assert (parsed.kind, parsed.trigger, parsed.repository) == (
        Kind.REEVALUATE, "finding", "team-a/web")
    assert parsed.digest == event["resources"][0].rsplit("/", 1)[1]


def test_a_finding_event_without_the_envelope_arn_uses_the_detail() -> None:
    event = load_event("inspector2-finding")
    event["resources"] = []
    parsed = parse_reevaluation(event)
    assert isinstance(parsed, ImageEvent) and parsed.repository == "team-a/web"


def test_a_finding_about_an_ec2_instance_is_ignored() -> None:
    event = load_event("inspector2-finding")
    event["resources"] = ["arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"]
    event["detail"]["resources"] = [{"type": "AWS_EC2_INSTANCE", "id": "i-0abc"}]
    assert isinstance(parse_reevaluation(event), Ignored)


@pytest.mark.parametrize("trigger", [t for t in Trigger])
def test_a_sweeper_request_round_trips(trigger: Trigger) -> None:
    digest = "sha256:" + "ab" * 32
    parsed = parse_reevaluation(reevaluation_request("team-a/web", digest, trigger))
    assert isinstance(parsed, ImageEvent)
    assert (parsed.repository, parsed.digest, parsed.trigger, parsed.cause) == (
        "team-a/web", digest, str(trigger), str(trigger))


@pytest.mark.parametrize("message", [
    None, [], "text",
    {"schema": "gatekeeper.reevaluate/v1", "repository": "team-a/web",
     "digest": "sha256:" + "ab" * 32, "trigger": "whim"},
    {"schema": "gatekeeper.reevaluate/v1", "repository": "Team A",
     "digest": "sha256:" + "ab" * 32, "trigger": "policy"},
    {"schema": "gatekeeper.reevaluate/v1", "repository": "team-a/web", "digest": "latest",
     "trigger": "policy"},
])
def test_an_unreadable_request_is_malformed(message: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_reevaluation(message)


# --- where the image lives (account and Region) ------------------------------------------------

def test_an_event_names_the_account_and_region_it_came_from() -> None:
    event = load_event(PUSH)
    event.update(account="111111111111", region="eu-west-1")
    parsed = parse_event(event)
    assert isinstance(parsed, ImageEvent)
    assert parsed.scope == Scope("111111111111", "eu-west-1")


def test_an_inspector_scan_names_the_image_s_account_by_its_repository_arn() -> None:
    # Given Inspector's scan event as a delegated administrator receives it: the event's
    # account is the administrator's, the repository ARN the member's
    event = load_event("inspector2-scan")
    event.update(account="999999999999", region="us-east-1")
    event["detail"]["repository-name"] = (
        "arn:aws:ecr:eu-west-1:111111111111:repository/team/app")
    # When it is parsed
    parsed = parse_event(event)
    # Then the image is the member account's, in the ARN's Region
    assert isinstance(parsed, ImageEvent)
    assert parsed.scope == Scope("111111111111", "eu-west-1")
    assert parsed.repository == "team/app"


@pytest.mark.parametrize(("account", "region"), [
    ("11111111111", "eu-west-1"), ("1111111111111", "eu-west-1"), ("abcdefghijkl", "us-east-1"),
    ("111111111111", "EU-WEST-1"), ("111111111111", "eu-west-1\n"), ("111111111111", ""),
    (111111111111, "eu-west-1"),
])
def test_a_malformed_account_or_region_is_malformed_never_another_account(
        account: Any, region: str) -> None:
    event = load_event(PUSH)
    event.update(account=account, region=region)
    if not isinstance(account, str):
        # a non-string account is no account: the image is the stack's own... unless a
        # Region is named without one, which names no scope either
        parsed = parse_event(event)
        assert isinstance(parsed, ImageEvent) and parsed.scope is None
        return
    with pytest.raises(MalformedEvent, match="account or Region"):
        parse_event(event)


def test_a_reevaluation_request_round_trips_its_scope_and_attempt() -> None:
    scope = Scope("222222222222", "ap-southeast-2")
    request = reevaluation_request("team/app", DIGEST, Trigger.DEFERRED, scope)
    request["attempt"] = 7
    parsed = parse_reevaluation(json.loads(json.dumps(request)))
    assert isinstance(parsed, ImageEvent)
    assert (parsed.scope, parsed.attempt, parsed.trigger) == (scope, 7, "deferred")


@pytest.mark.parametrize("attempt", [-1, 10_001, "3", 2.5, True, None])
def test_a_reevaluation_request_with_a_bad_attempt_is_malformed(attempt: Any) -> None:
    request = reevaluation_request("team/app", DIGEST, Trigger.DEFERRED)
    request["attempt"] = attempt
    with pytest.raises(MalformedEvent, match="attempt"):
        parse_reevaluation(request)


def test_an_inspector_finding_names_the_image_s_account_by_its_arn() -> None:
    message = json.loads((EVENTS / "inspector2-finding.json").read_text())
    arn = next(r for r in message["resources"] if ":repository/" in r)
    message["resources"] = [arn.replace(arn.split(":")[4], "333333333333", 1)]
    parsed = parse_reevaluation(message)
    assert isinstance(parsed, ImageEvent)
    assert parsed.account == "333333333333"


@given(account=st.text(max_size=20), region=st.text(max_size=20))
def test_any_account_and_region_either_name_a_scope_or_are_refused(account: str,
                                                                   region: str) -> None:
    event = load_event(PUSH)
    event.update(account=account, region=region)
    try:
        parsed = parse_event(event)
    except MalformedEvent:
        return
    assert isinstance(parsed, ImageEvent)
    assert parsed.scope == Scope(account, region)
