"""Verdicts kept true over time, as deployed: Inspector finding bursts, expiring exceptions,
scan timeouts and new policy versions, through the template's rules, queue and schedule."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gatekeeper import runtime
from gatekeeper_tools.local.ecr import push_image, set_scan_result
from gatekeeper_tools.local.stack import LocalDeployment
from tests.support import ROOT, load_event, load_findings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EXCEPTED = """version: 1
default:
  max_findings: {CRITICAL: 0, HIGH: 0}
exceptions:
  - id: CVE-2023-4863
    expires: 2026-12-02
    reason: not reachable
    owner: appsec@example.com
  - {id: CVE-2023-38545, expires: 2026-12-02, reason: r, owner: appsec@example.com}
  - {id: CVE-2023-5363, expires: 2026-12-02, reason: r, owner: appsec@example.com}
"""


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(runtime, "now", clock)
    return clock


@pytest.fixture
def stack(clock: Clock) -> Iterator[LocalDeployment]:
    with mock_aws():
        runtime.gatekeeper.cache_clear()
        runtime.sweeper.cache_clear()
        yield LocalDeployment.create(str(ROOT / "template.yaml"))
        runtime.gatekeeper.cache_clear()
        runtime.sweeper.cache_clear()


def publish(stack: LocalDeployment, text: str) -> None:
    boto3.client("s3").put_object(Bucket=stack.policy_bucket, Key="policy.yaml",
                                  Body=text.encode())


def image(stack: LocalDeployment, repo: str, findings: str | None, tag: str = "v1") -> str:
    ecr = boto3.client("ecr")
    with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
        ecr.create_repository(repositoryName=repo)
    digest = push_image(ecr, repo, tag, seed=f"{repo}:{tag}")
    stack.deliver(load_event("ecr-image-push", repository_name=repo, image_digest=digest,
                             image_tag=tag))
    if findings:
        set_scan_result(repo, digest, load_findings(findings))
        stack.deliver(load_event("ecr-image-scan-complete", repository_name=repo,
                                 image_digest=digest, image_tags=[tag]))
    return digest


def notes(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages")
        if not got:
            return out
        for message in got:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def finding_event(repo: str, digest: str, cve: str) -> dict[str, Any]:
    event = load_event("inspector2-finding")
    arn = f"arn:aws:ecr:us-east-1:123456789012:repository/{repo}/{digest}"
    event["resources"] = [arn]
    event["detail"]["packageVulnerabilityDetails"]["vulnerabilityId"] = cve
    resource = event["detail"]["resources"][0]
    resource["id"] = arn
    resource["details"]["awsEcrContainerImage"].update(repositoryName=repo, imageHash=digest)
    return event


def verdict(repo: str, digest: str) -> str | None:
    record = runtime.gatekeeper().store.get(repo, digest)
    return record.state if record else None


def test_a_burst_of_inspector_findings_yields_one_verdict_change(stack: LocalDeployment) -> None:
    # Given an approved image under enhanced scanning
    digest = image(stack, "team-a/web", "basic-clean")
    subscriber = stack.subscribe_queue()

    # When Inspector finds a CRITICAL and sends six finding events within the batching window
    # (and one about another image), and they reach the re-evaluation queue as one batch
    set_scan_result("team-a/web", digest, load_findings("enhanced-critical-exploit"))
    other = image(stack, "team-b/api", "basic-clean")
    notes(subscriber)
    burst = [finding_event("team-a/web", digest, f"CVE-2021-4422{i}") for i in range(6)]
    [delivery] = stack.deliver(*burst, finding_event("team-b/api", other, "CVE-2020-1"))

    # Then the batch is judged image by image, once each: one flip, one notification
    assert delivery.function_id == "OnReevaluateFunction"
    assert delivery.result["batchItemFailures"] == []
    assert len(delivery.result["results"]) == 2
    assert verdict("team-a/web", digest) == "QUARANTINED"
    assert [n["Subject"] for n in notes(subscriber)] == ["[QUARANTINED] team-a/web:v1"]
    history = runtime.gatekeeper().store.history("team-a/web", digest)
    assert history[0].trigger == "finding"


def test_an_expiring_exception_is_swept_and_the_verdict_flips(stack: LocalDeployment,
                                                              clock: Clock) -> None:
    # Given an image approved only thanks to exceptions valid through 2026-12-02
    publish(stack, EXCEPTED)
    digest = image(stack, "team-a/web", "basic-critical")
    assert verdict("team-a/web", digest) == "APPROVED"
    record = runtime.gatekeeper().store.get("team-a/web", digest)
    assert record is not None and record.review_at == "2026-12-03T00:00:00+00:00"

    # When the hourly sweep runs before the expiry, nothing is queued
    [early] = stack.tick()
    assert early.result["count"] == 0

    # When it runs after the expiry and the queue is drained
    clock.at = datetime(2026, 12, 3, 0, 30, tzinfo=UTC)
    [sweep] = stack.tick()
    [drained] = stack.drain()

    # Then the image is re-judged without its exceptions, and the history says why
    assert sweep.result == {"status": "queued", "trigger": "sweep", "count": 1, "digested": 0}
    assert drained.result["batchItemFailures"] == []
    assert verdict("team-a/web", digest) == "QUARANTINED"
    tags = boto3.client("ecr").describe_images(
        repositoryName="team-a/web", imageIds=[{"imageDigest": digest}])["imageDetails"][0]
    assert f"quarantined-{digest[7:19]}" in tags["imageTags"]
    assert runtime.gatekeeper().store.history("team-a/web", digest)[0].trigger == "expiry"

    # and the next sweep finds nothing more to do
    [again] = stack.tick()
    assert again.result["count"] == 0


def test_an_image_never_scanned_gets_the_scan_failure_verdict(stack: LocalDeployment,
                                                              clock: Clock) -> None:
    # Given a registry scanning on push, and an image pushed whose scan never arrives (stuck)
    boto3.client("ecr").put_registry_scanning_configuration(scanType="BASIC", rules=[
        {"scanFrequency": "SCAN_ON_PUSH",
         "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}])
    digest = image(stack, "team-a/web", None)
    assert verdict("team-a/web", digest) == "PENDING"

    # When the sweep runs after the scan timeout (60 minutes by default)
    clock.at = T0 + timedelta(minutes=30)
    assert stack.tick()[0].result["count"] == 0
    clock.at = T0 + timedelta(minutes=61)
    assert stack.tick()[0].result["count"] == 1
    stack.drain()

    # Then on_scan_failure applies (the default quarantines), naming the timeout
    record = runtime.gatekeeper().store.get("team-a/web", digest)
    assert record is not None and record.state == "QUARANTINED"
    assert record.scan_status == "SCAN_TIMEOUT"
    assert record.trigger == "scan-timeout"


def test_a_push_to_a_repository_without_scan_on_push_starts_its_scan(
        stack: LocalDeployment) -> None:
    # Given a repository with basic scanning but no scan on push (ECR's default)
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team-a/web")
    digest = push_image(ecr, "team-a/web", "v1", seed="manual")
    with pytest.raises(ecr.exceptions.ScanNotFoundException):
        ecr.describe_image_scan_findings(repositoryName="team-a/web",
                                         imageId={"imageDigest": digest})

    # When the push event arrives
    [pushed] = stack.deliver(load_event("ecr-image-push", repository_name="team-a/web",
                                        image_digest=digest, image_tag="v1"))

    # Then the push handler started the image's basic scan and waits for its result
    assert pushed.result["status"] == "pending"
    assert pushed.result["reason"].endswith("(scan started)")
    scan = ecr.describe_image_scan_findings(repositoryName="team-a/web",
                                            imageId={"imageDigest": digest})
    assert scan["imageScanStatus"]["status"]
    # and a second push of the same image (a new tag) asks no second scan of ECR
    [again] = stack.deliver(load_event("ecr-image-push", repository_name="team-a/web",
                                       image_digest=digest, image_tag="v1.0"))
    assert "scan started" not in again.result.get("reason", "")


def test_a_new_policy_version_reevaluates_every_judged_image(stack: LocalDeployment) -> None:
    # Given two images judged under the strict default
    strict = image(stack, "team-a/web", "basic-high-only")
    clean = image(stack, "team-b/api", "basic-clean")
    assert (verdict("team-a/web", strict), verdict("team-b/api", clean)) == (
        "QUARANTINED", "APPROVED")

    # When a policy allowing HIGH findings is published (S3 sends Object Created)
    publish(stack, "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n")
    created = load_event("s3-policy-object-created")
    created["detail"]["bucket"]["name"] = stack.policy_bucket
    [sweep] = stack.deliver(created)
    stack.drain()

    # Then both were re-judged under the new version; only the first changed
    assert sweep.function_id == "SweeperFunction"
    assert sweep.result["count"] == 2
    assert verdict("team-a/web", strict) == "APPROVED"
    history = runtime.gatekeeper().store.history("team-a/web", strict)
    assert [(h.state, h.trigger) for h in history] == [("APPROVED", "policy"),
                                                       ("QUARANTINED", "basic-scan")]
    assert history[0].policy_version != history[1].policy_version


def test_an_unreadable_message_is_reported_failed_and_kept(stack: LocalDeployment) -> None:
    # Given a message on the re-evaluation queue that is not a request
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.physical_ids["ReevaluationQueue"], MessageBody="{oops")

    # When the queue is drained, Then the message is reported failed (SQS redelivers it,
    # then moves it to the dead-letter queue) and not deleted
    [delivery] = stack.drain()
    assert len(delivery.result["batchItemFailures"]) == 1
    attributes = sqs.get_queue_attributes(QueueUrl=stack.physical_ids["ReevaluationQueue"],
                                          AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
