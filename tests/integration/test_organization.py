"""Organization mode on moto: one hub judging images in several member accounts and Regions.

moto keeps resources per account (and Region), and STS AssumeRole hands out credentials of
the role's account, so each member account's ECR is its own: the hub reads findings and writes
markers there through the spoke role, with the hub's one policy, table, signer and topic.
What moto cannot do (refuse AssumeRole for a role that is missing, throttle one account) is
injected on that one client's calls with a botocore ``before-call`` hook: the error arrives as
it would once botocore's own retries are spent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.sqs.models import sqs_backends

from functions.on_push.app import handler as on_push
from functions.on_reevaluate.app import handler as on_reevaluate
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.adapters.spoke import SpokeSessions
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import Config, GateConfig
from gatekeeper.domain.events import parse_event
from gatekeeper.domain.policy import parse_policy
from gatekeeper.domain.scope import Scope
from gatekeeper.service import sweep
from gatekeeper.service.hub import MAX_DELAY, deferral_delay
from gatekeeper_tools.cli.deployment import Deployment
from gatekeeper_tools.cli.simulate import simulate
from gatekeeper_tools.local.ecr import push_image, set_scan_result
from tests.support import (
    ACCOUNT,
    EVENTS,
    REGION,
    World,
    approved,
    load_findings,
    push_event,
    quarantined,
    scan_event,
)

ORGANIZATION = "o-abcdefghij"
ROLE = "ecr-scan-gatekeeper-spoke"
HOME = Scope(ACCOUNT, REGION)
A_EAST, A_WEST = Scope("111111111111", "us-east-1"), Scope("111111111111", "eu-west-1")
B_EAST, B_WEST = Scope("222222222222", "us-east-1"), Scope("222222222222", "eu-west-1")
MISSING = Scope("333333333333", "eu-west-1")  # no spoke role there
STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"


class Org:
    """The hub (the world's account) and its member accounts, seen through their roles."""

    def __init__(self, world: World, operator_queue: str, reevaluations: str) -> None:
        self.world = world
        self.operator_queue = operator_queue
        self.reevaluations = reevaluations
        self._spokes = SpokeSessions(world.session.client("sts"), ROLE)

    def ecr(self, scope: Scope) -> Any:
        return self._spokes.client("ecr", scope)

    def push(self, scope: Scope, repository: str, tag: str = "v1", seed: str | None = None
             ) -> str:
        ecr = self.ecr(scope)
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=repository)
        return push_image(ecr, repository, tag, seed)

    def scanned(self, scope: Scope, repository: str, digest: str, findings: str) -> None:
        set_scan_result(repository, digest, load_findings(findings), scope.account, scope.region)

    def tags(self, scope: Scope, repository: str, digest: str) -> list[str]:
        [image] = self.ecr(scope).describe_images(
            repositoryName=repository, imageIds=[{"imageDigest": digest}])["imageDetails"]
        return sorted(image.get("imageTags", []))

    def store(self) -> VerdictStore:
        return VerdictStore(self.world.session.client("dynamodb"), self.world.config.table_name)

    def operator_alerts(self) -> list[dict[str, Any]]:
        return _drain(self.world.session.client("sqs"), self.operator_queue)

    def delayed(self) -> int:
        """How many re-evaluation messages are waiting out a delivery delay (SQS's count)."""
        return int(self.world.session.client("sqs").get_queue_attributes(
            QueueUrl=self.reevaluations, AttributeNames=["ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]["ApproximateNumberOfMessagesDelayed"])

    def queued(self) -> list[dict[str, Any]]:
        """The re-evaluation queue's messages, received as if their delays had passed (moto
        keeps a delayed message back like SQS; the test moves its clock on)."""
        queue = sqs_backends[ACCOUNT][REGION].queues["reevaluations"]
        for message in queue._messages:
            message.delayed_until = 0.0
        return [json.loads(m["Body"]) for m in
                _drain(self.world.session.client("sqs"), self.reevaluations, raw=True)]


def _drain(sqs: Any, url: str, raw: bool = False) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return got
        for message in batch:
            got.append(message if raw else json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def event_in(scope: Scope, event: dict[str, Any]) -> dict[str, Any]:
    """The event as the member account's bus forwards it to the hub's (its own account and
    Region kept)."""
    return {**event, "account": scope.account, "region": scope.region}


def sqs_batch(requests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": json.dumps(body)}
                        for i, body in enumerate(requests)]}


@pytest.fixture
def org(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """Given the world's stack deployed as an organization's hub (its own account and Region
    known, a re-evaluation queue for deferred events, an operator topic with a subscriber)."""
    session = world.session
    sqs, sns = session.client("sqs"), session.client("sns")
    reevaluations = sqs.create_queue(QueueName="reevaluations")["QueueUrl"]
    operator_topic = sns.create_topic(Name="operator")["TopicArn"]
    operator_queue = sqs.create_queue(QueueName="operator-inbox")["QueueUrl"]
    operator_arn = sqs.get_queue_attributes(
        QueueUrl=operator_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=operator_topic, Protocol="sqs", Endpoint=operator_arn,
                  Attributes={"RawMessageDelivery": "false"})
    for name, value in {"GATEKEEPER_ACCOUNT_ID": ACCOUNT, "AWS_REGION": REGION,
                        "GATEKEEPER_ORGANIZATION_ID": ORGANIZATION,
                        "GATEKEEPER_SPOKE_ROLE_NAME": ROLE,
                        "GATEKEEPER_REEVALUATION_QUEUE_URL": reevaluations,
                        "GATEKEEPER_OPERATOR_TOPIC_ARN": operator_topic}.items():
        monkeypatch.setenv(name, value)
    runtime.gatekeeper.cache_clear()
    world.publish_policy(STRICT)
    yield Org(world, operator_queue, reevaluations)
    runtime.gatekeeper.cache_clear()


def deny_assume_role(account: str) -> None:
    """The hub's STS refuses the roles of ``account``, as AWS does for a role that does not
    exist or does not trust the hub."""
    def refuse(params: dict[str, Any], **_: Any) -> None:
        if f":{account}:" in params.get("RoleArn", ""):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": (
                f"User is not authorized to perform: sts:AssumeRole on {params['RoleArn']}")},
                "ResponseMetadata": {"HTTPStatusCode": 403}}, "AssumeRole")

    spokes = runtime.hub().spokes
    assert spokes is not None
    spokes._sts.meta.events.register("before-parameter-build.sts.AssumeRole", refuse)


# --- the loop, across accounts and Regions ---------------------------------------------------

def test_two_accounts_in_two_regions_are_judged_and_marked_each_in_its_own_account(
        org: Org, context: Any) -> None:
    # Given the same repository in two member accounts and two Regions each, one image each,
    # and the image in account A's eu-west-1 has a CRITICAL finding
    images = {scope: org.push(scope, "team/app", seed=str(scope)) for scope in
              (A_EAST, A_WEST, B_EAST, B_WEST)}

    # When each account's push event, and then its scan's, reach the hub's bus
    results = {}
    for scope, digest in images.items():
        assert on_push(event_in(scope, push_event("team/app", digest)), context)[
            "status"] == "pending"
        org.scanned(scope, "team/app", digest,
                    "basic-critical" if scope == A_WEST else "basic-clean")
        results[scope] = on_scan(event_in(scope, scan_event("team/app", digest)), context)

    # Then each image is judged with the hub's policy and marked in its own account and
    # Region, and only there
    for scope, digest in images.items():
        verdict = "QUARANTINED" if scope == A_WEST else "APPROVED"
        assert results[scope]["verdict"] == verdict
        marker = quarantined(digest) if scope == A_WEST else approved(digest)
        assert org.tags(scope, "team/app", digest) == sorted(["v1", marker])
    assert org.world.ecr.describe_repositories()["repositories"] == []  # nothing in the hub
    # and the hub's table holds one record per account and Region, each naming its scope
    store = org.store()
    for scope, digest in images.items():
        record = store.scoped(scope).get("team/app", digest)
        assert record is not None and (record.account, record.region) == (
            scope.account, scope.region)
        assert record.envelope is not None  # signed by the hub's key
        assert store.get("team/app", digest) is None  # not the hub's own image
    # and every notice says where the image lives, as attributes and in its text
    notices = org.world.notifications()
    where = {(n["MessageAttributes"]["account"]["Value"],
              n["MessageAttributes"]["region"]["Value"]) for n in notices}
    assert where == {(s.account, s.region) for s in images}
    [bad] = [n for n in notices if n["MessageAttributes"]["verdict"]["Value"] == "QUARANTINED"]
    assert "Account:      111111111111 (eu-west-1)" in bad["Message"]


def test_one_digest_in_two_accounts_is_two_images_and_one_approval_does_not_lend_itself(
        org: Org, context: Any) -> None:
    # Given the very same image (same digest) pushed to account A and account B, where B's
    # scan finds a CRITICAL and A's finds nothing
    digest = org.push(A_EAST, "team/app", seed="same")
    assert org.push(B_EAST, "team/app", seed="same") == digest
    org.scanned(A_EAST, "team/app", digest, "basic-clean")
    org.scanned(B_EAST, "team/app", digest, "basic-critical")

    # When both scans reach the hub
    a = on_scan(event_in(A_EAST, scan_event("team/app", digest)), context)
    b = on_scan(event_in(B_EAST, scan_event("team/app", digest)), context)

    # Then each account has its own verdict: A's approval is not B's
    assert (a["verdict"], b["verdict"]) == ("APPROVED", "QUARANTINED")
    assert approved(digest) in org.tags(A_EAST, "team/app", digest)
    assert org.tags(B_EAST, "team/app", digest) == sorted(["v1", quarantined(digest)])


def test_an_inspector_event_names_the_member_account_by_its_repository_arn(
        org: Org, context: Any) -> None:
    # Given an image in account B, and Inspector's scan event as the delegated administrator
    # (the hub's own account) receives it: the event's account is the hub's, the repository
    # ARN is B's
    digest = org.push(B_WEST, "team/app")
    org.scanned(B_WEST, "team/app", digest, "basic-clean")
    event = json.loads((EVENTS / "inspector2-scan.json").read_text())
    event["account"], event["region"] = ACCOUNT, REGION
    event["detail"]["repository-name"] = (
        f"arn:aws:ecr:{B_WEST.region}:{B_WEST.account}:repository/team/app")
    event["detail"]["image-digest"] = digest

    # When it reaches the hub
    result = on_scan(event, context)

    # Then the image is judged and marked in B, where it lives
    assert result["status"] == "judged"
    assert approved(digest) in org.tags(B_WEST, "team/app", digest)


# --- the sweeps see every account ------------------------------------------------------------

def test_a_new_policy_re_evaluates_every_account_s_images_in_their_accounts(
        org: Org, context: Any) -> None:
    # Given approved images in two accounts and the hub's own account
    images = {scope: org.push(scope, "team/app", seed=str(scope)) for scope in (A_EAST, B_WEST)}
    for scope, digest in images.items():
        org.scanned(scope, "team/app", digest, "basic-high-only")
    org.world.publish_policy("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n")
    for scope, digest in images.items():
        assert on_scan(event_in(scope, scan_event("team/app", digest)), context)[
            "verdict"] == "APPROVED"

    # When a stricter policy is published and the policy sweep queues every judged image
    org.world.publish_policy(STRICT)
    queue = runtime.hub().deferrals.queue  # type: ignore[union-attr]
    assert sweep.policy_published(org.store(), queue) == 2
    requests = org.queued()
    assert {(r["account"], r["region"]) for r in requests} == {
        (s.account, s.region) for s in images}

    # and the re-evaluation function drains them
    outcome = on_reevaluate(sqs_batch(requests), context)

    # Then each image is quarantined in its own account
    assert outcome["batchItemFailures"] == []
    for scope, digest in images.items():
        assert quarantined(digest) in org.tags(scope, "team/app", digest)


def test_the_hourly_sweep_times_out_a_member_account_s_scan_in_that_account(
        org: Org, context: Any) -> None:
    # Given an image pushed in account B that never got a scan
    digest = org.push(B_WEST, "team/app")
    assert on_push(event_in(B_WEST, push_event("team/app", digest)), context)[
        "status"] == "pending"

    # When the hourly sweep runs past the scan timeout (reading DueIndex, which projects only
    # the keys, repository, digest and state)
    later = datetime.now(UTC) + timedelta(hours=2)
    queue = runtime.hub().deferrals.queue  # type: ignore[union-attr]
    assert sweep.sweep(org.store(), queue, later, timedelta(minutes=60)) == 1

    # Then the request names the member account and Region, and judging it happens there
    [request] = org.queued()
    assert (request["account"], request["region"], request["trigger"]) == (
        B_WEST.account, B_WEST.region, "scan-timeout")
    outcome = on_reevaluate(sqs_batch([request]), context)
    assert outcome["results"][0]["status"] == "judged"
    assert org.store().scoped(B_WEST).get("team/app", digest).judged  # type: ignore[union-attr]


# --- an account that cannot be worked on ------------------------------------------------------

def test_a_spoke_without_its_role_fails_closed_alerts_once_and_keeps_the_events(
        org: Org, context: Any) -> None:
    # Given a member account where the spoke role is missing, with three images pushed
    deny_assume_role(MISSING.account)
    digests = [f"sha256:{n:064x}" for n in (1, 2, 3)]

    # When their scan events reach the hub
    results = [on_scan(event_in(MISSING, scan_event("team/app", d)), context) for d in digests]

    # Then none is judged (nothing approved, nothing recorded), each is put off, not failed
    assert [r["status"] for r in results] == ["deferred"] * 3
    assert all(org.store().scoped(MISSING).get("team/app", d) is None for d in digests)
    # and each waits in the re-evaluation queue, delayed, naming its account, as a deferred
    # attempt
    assert org.delayed() == 3
    queued = org.queued()
    assert sorted(r["digest"] for r in queued) == digests
    assert all((r["account"], r["region"], r["trigger"], r["attempt"]) ==
               (MISSING.account, MISSING.region, "deferred", 1) for r in queued)
    # and the operator heard once, not three times
    [alert] = org.operator_alerts()
    attributes = {k: v["Value"] for k, v in alert["MessageAttributes"].items()}
    assert attributes == {"kind": "spoke_unavailable", "alert": "spoke_unavailable",
                          "account": MISSING.account, "region": MISSING.region}

    # When the retries come round while the role is still missing
    again = on_reevaluate(sqs_batch(queued), context)

    # Then they are put off again (never dead-lettered for this alone), without a new alert
    assert again["batchItemFailures"] == []
    assert sorted(r["attempt"] for r in org.queued()) == [2, 2, 2]
    assert org.operator_alerts() == []


def test_a_deferred_event_is_judged_once_the_spoke_role_exists(org: Org, context: Any) -> None:
    # Given an image whose event was put off because account A's role was refused
    digest = org.push(A_WEST, "team/app")
    org.scanned(A_WEST, "team/app", digest, "basic-clean")
    deny_assume_role(A_WEST.account)
    assert on_scan(event_in(A_WEST, scan_event("team/app", digest)), context)[
        "status"] == "deferred"
    [request] = org.queued()

    # When the role is deployed (a new container, which assumes it afresh) and the deferred
    # request comes round
    runtime.gatekeeper.cache_clear()
    outcome = on_reevaluate(sqs_batch([request]), context)

    # Then the image is judged and marked in its account
    assert outcome["batchItemFailures"] == []
    assert outcome["results"][0]["verdict"] == "APPROVED"
    assert approved(digest) in org.tags(A_WEST, "team/app", digest)


def test_one_throttled_account_does_not_delay_another_s_verdicts(org: Org, context: Any) -> None:
    # Given images in accounts A and B awaiting re-evaluation in one batch, and A's ECR
    # throttling every call (after botocore's adaptive retries)
    a = org.push(A_EAST, "team/app", seed="a")
    b = org.push(B_EAST, "team/app", seed="b")
    org.scanned(A_EAST, "team/app", a, "basic-clean")
    org.scanned(B_EAST, "team/app", b, "basic-clean")
    member = runtime.hub().route(A_EAST)

    def throttle(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "DescribeImages")

    member.images._ecr.meta.events.register("before-parameter-build.ecr.*", throttle)

    # When the batch is handled
    outcome = on_reevaluate(sqs_batch([
        {"schema": "gatekeeper.reevaluate/v1", "repository": "team/app", "digest": digest,
         "trigger": "operator", "account": scope.account, "region": scope.region}
        for scope, digest in ((A_EAST, a), (B_EAST, b))]), context)

    # Then B is judged in this very invocation, A waits in the queue, and nothing fails
    assert outcome["batchItemFailures"] == []
    assert [r["digest"] for r in outcome["results"] if r["status"] == "judged"] == [b]
    assert approved(b) in org.tags(B_EAST, "team/app", b)
    assert org.delayed() == 1
    [waiting] = org.queued()
    assert (waiting["digest"], waiting["account"], waiting["attempt"]) == (a, A_EAST.account, 1)
    assert org.operator_alerts() == []  # throttling is not an outage


@pytest.mark.parametrize("unavailable", [False, True])
def test_deferral_delays_grow_and_stay_within_sqs_limits(unavailable: bool) -> None:
    # Given an event put off again and again, with any jitter
    delays = [deferral_delay(n, unavailable=unavailable, jitter=j)
              for n in range(12) for j in (0.0, 0.5, 0.999)]
    # Then every delay is one SQS accepts (1 s to 15 minutes), throttling starts short and
    # grows, an unreachable account waits the longest at once
    assert all(1 <= d <= MAX_DELAY for d in delays)
    if unavailable:
        assert min(delays) > MAX_DELAY * 0.74
    else:
        assert delays[0] == 30 and max(delays) == MAX_DELAY


# --- a single-account stack --------------------------------------------------------------------

def test_a_single_account_stack_never_acts_in_another_account(
        world: World, context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stack that knows its own account and Region, not in organization mode
    monkeypatch.setenv("GATEKEEPER_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("AWS_REGION", REGION)
    runtime.gatekeeper.cache_clear()
    assert runtime.hub().spokes is None

    # When an event about another account's image reaches it
    digest = "sha256:" + "b" * 64
    result = on_scan(event_in(A_EAST, scan_event("team/app", digest)), context)

    # Then it is ignored with the reason (no spoke sessions exist to act anywhere else)
    assert result["status"] == "ignored"
    assert "organization mode is off" in result["reason"]
    runtime.gatekeeper.cache_clear()


def test_the_policy_s_account_rules_apply_to_each_member_account(org: Org, context: Any) -> None:
    # Given one policy that lets the sandbox accounts (B) only monitor, and enforces elsewhere
    org.world.publish_policy(
        STRICT + "account_groups:\n  sandbox: ['2222*']\n"
        "repositories:\n  - match: '*'\n    accounts: [group:sandbox]\n    mode: monitor\n")
    a = org.push(A_EAST, "team/app", seed="a")
    b = org.push(B_EAST, "team/app", seed="b")
    org.scanned(A_EAST, "team/app", a, "basic-critical")
    org.scanned(B_EAST, "team/app", b, "basic-critical")

    # When both images' scans reach the hub
    judged_a = on_scan(event_in(A_EAST, scan_event("team/app", a)), context)
    judged_b = on_scan(event_in(B_EAST, scan_event("team/app", b)), context)

    # Then A's image is quarantined (enforce) and B's sandbox image is monitored by its rule
    assert judged_a["verdict"] == "QUARANTINED"
    record = org.store().scoped(B_EAST).get("team/app", b)
    assert record is not None and record.matched_rule is not None
    assert "group:sandbox" in record.matched_rule
    assert quarantined(a) in org.tags(A_EAST, "team/app", a)
    assert judged_b["status"] == "judged"


# --- the verdict gate answers for the organization's registries --------------------------------

def registry(scope: Scope) -> str:
    return f"{scope.account}.dkr.ecr.{scope.region}.amazonaws.com"


def hub_gate(org: Org) -> Any:
    config = GateConfig.for_key(org.world.config.table_name, str(org.world.config.signing_key_arn))
    return runtime.build_gate(replace(config, organization_id=ORGANIZATION,
                                      spoke_role_name=ROLE), org.world.session)


def test_the_hub_s_gate_answers_for_a_member_account_s_image_by_digest_and_by_tag(
        org: Org, context: Any) -> None:
    # Given an approved image in account A and a quarantined one in account B
    a = org.push(A_WEST, "team/app", tag="v1", seed="a")
    b = org.push(B_WEST, "team/app", tag="v1", seed="b")
    org.scanned(A_WEST, "team/app", a, "basic-clean")
    org.scanned(B_WEST, "team/app", b, "basic-critical")
    for scope, digest in ((A_WEST, a), (B_WEST, b)):
        on_scan(event_in(scope, scan_event("team/app", digest)), context)
    gate = hub_gate(org)

    # When deploy tooling asks about each by its registry's URI
    # Then A's image may run, by digest and by tag (resolved in A through its spoke role),
    # and B's may not
    assert gate.check(f"{registry(A_WEST)}/team/app@{a}").allowed
    assert gate.check(f"{registry(A_WEST)}/team/app:v1").allowed
    refused = gate.check(f"{registry(B_WEST)}/team/app:v1")
    assert not refused.allowed and refused.verdict == "QUARANTINED"


def test_a_member_s_approval_copied_onto_another_account_s_record_is_refused(
        org: Org, context: Any) -> None:
    # Given the same image (same digest) approved in account A and quarantined in account B
    digest = org.push(A_EAST, "team/app", seed="same")
    org.push(B_EAST, "team/app", seed="same")
    org.scanned(A_EAST, "team/app", digest, "basic-clean")
    org.scanned(B_EAST, "team/app", digest, "basic-critical")
    on_scan(event_in(A_EAST, scan_event("team/app", digest)), context)
    on_scan(event_in(B_EAST, scan_event("team/app", digest)), context)
    store = org.store()
    approved_a = store.scoped(A_EAST).get("team/app", digest)
    quarantined_b = store.scoped(B_EAST).get("team/app", digest)
    assert approved_a is not None and quarantined_b is not None

    # When someone with write access to the table copies A's signed approval onto B's record
    forged = replace(quarantined_b, state=approved_a.state, envelope=approved_a.envelope,
                     verdict_revision=approved_a.verdict_id_revision, reasons=())
    store.scoped(B_EAST).put(forged, quarantined_b.revision)

    # Then the gate refuses B's image: the signature names A's registry, not B's
    decision = hub_gate(org).check(f"{registry(B_EAST)}/team/app@{digest}")
    assert not decision.allowed
    assert "signed for" in decision.reason and registry(A_EAST) in decision.reason
    # while A's own image still passes
    assert hub_gate(org).check(f"{registry(A_EAST)}/team/app@{digest}").allowed


def test_a_single_account_stack_s_gate_refuses_other_registries(org: Org) -> None:
    config = GateConfig.for_key(org.world.config.table_name, str(org.world.config.signing_key_arn))
    gate = runtime.build_gate(config, org.world.session)
    decision = gate.check(f"{registry(A_EAST)}/team/app@sha256:{'c' * 64}")
    assert not decision.allowed and "not this gatekeeper's registry" in decision.reason


# --- the security team's tools see every account ------------------------------------------------

def test_simulate_judges_each_member_image_in_its_account_with_its_account_s_rules(
        org: Org, context: Any) -> None:
    # Given a published policy that only monitors the sandbox account B, images judged in
    # accounts A and B, each with a HIGH finding, and both approved under today's policy
    org.world.publish_policy("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n")
    images = {scope: org.push(scope, "team/app", seed=str(scope)) for scope in (A_EAST, B_WEST)}
    for scope, digest in images.items():
        org.scanned(scope, "team/app", digest, "basic-high-only")
        assert on_scan(event_in(scope, scan_event("team/app", digest)), context)[
            "verdict"] == "APPROVED"
    candidate = parse_policy(
        "version: 1\naccount_groups:\n  sandbox: ['2222*']\n"
        "default:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
        "repositories:\n  - match: '*'\n    accounts: [group:sandbox]\n"
        "    max_findings: {CRITICAL: 0}\n")

    # When the team simulates a candidate that blocks HIGH everywhere but in the sandbox
    config = org.world.config
    deployment = Deployment(org.world.session, config.table_name, config.topic_arn,
                            config.policy_bucket, config.policy_key, None, config.markers)
    _, simulation = simulate(deployment, candidate)

    # Then A's image (read in A through the spoke role) would flip, B's would not
    flipped = {c.digest for c in simulation.compared if c.flips}
    assert flipped == {images[A_EAST]}
    assert len(simulation.compared) == 2
    assert not simulation.not_judged


def test_containers_racing_on_member_images_leave_one_marker_and_one_verdict_each(
        org: Org) -> None:
    # Given the same image (same digest) in accounts A and B, A's clean and B's with a CRITICAL,
    # and four containers of the hub (each its own clients, spoke sessions and leases)
    digest = org.push(A_EAST, "team/app", seed="raced")
    assert org.push(B_EAST, "team/app", seed="raced") == digest
    org.scanned(A_EAST, "team/app", digest, "basic-clean")
    org.scanned(B_EAST, "team/app", digest, "basic-critical")
    config = Config.from_env()

    def container() -> Any:
        home = runtime.build(config, org.world.session)
        return runtime.build_hub(config, lambda: home, org.world.session)

    hubs = [container() for _ in range(4)]
    events = [parse_event(event_in(scope, scan_event("team/app", digest)))
              for scope in (A_EAST, B_EAST)]

    # When every container handles both accounts' scan events at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda job: job[0].handle(job[1]),
                                [(hub, event) for hub in hubs for event in events]))

    # Then nothing failed, each account's image carries exactly its own verdict's marker
    assert {r.status for r in results} <= {"judged", "unchanged"}
    assert org.tags(A_EAST, "team/app", digest) == sorted(["v1", approved(digest)])
    assert org.tags(B_EAST, "team/app", digest) == sorted(["v1", quarantined(digest)])
    # and each has one verdict change recorded and announced, signed for its own registry
    store = org.store()
    for scope, verdict in ((A_EAST, "APPROVED"), (B_EAST, "QUARANTINED")):
        record = store.scoped(scope).get("team/app", digest)
        assert record is not None and record.state == verdict and record.settled
        assert [h.state for h in store.scoped(scope).history("team/app", digest)] == [verdict]
    notices = org.world.notifications()
    assert sorted(n["MessageAttributes"]["account"]["Value"] for n in notices) == [
        A_EAST.account, B_EAST.account]
