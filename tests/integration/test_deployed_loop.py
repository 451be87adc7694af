"""The loop as deployed: template.yaml in moto, events routed by the template's own rules to
the handlers it wires, each run with the environment the template gives it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gatekeeper import runtime
from gatekeeper_tools.local.ecr import push_image, set_scan_result
from gatekeeper_tools.local.stack import LocalDeployment
from tests.support import ROOT, load_event, load_findings


@pytest.fixture
def deployment() -> Iterator[LocalDeployment]:
    with mock_aws():
        runtime.gatekeeper.cache_clear()
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"))
        boto3.client("s3").put_object(Bucket=deployment.policy_bucket, Key="policy.yaml",
                                      Body=(ROOT / "policy.yaml").read_bytes())
        yield deployment
        runtime.gatekeeper.cache_clear()


def messages(queue_url: str) -> list[dict[str, Any]]:
    got = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def test_push_and_scan_events_flow_through_the_template_wiring(
        deployment: LocalDeployment) -> None:
    # Given an image in a repository and a subscriber that only wants quarantines
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team-a/web")
    digest = push_image(ecr, "team-a/web", "v1")
    quarantines = deployment.subscribe_queue({"verdict": ["QUARANTINED"]})
    everything = deployment.subscribe_queue()

    # When ECR's push and scan events go through the template's rules
    pushed = deployment.deliver(load_event("ecr-image-push", repository_name="team-a/web",
                                           image_digest=digest, image_tag="v1"))
    set_scan_result("team-a/web", digest, load_findings("basic-critical"))
    scanned = deployment.deliver(load_event("ecr-image-scan-complete",
                                            repository_name="team-a/web", image_digest=digest,
                                            image_tags=["v1"]))

    # Then each reached exactly the function the template wires, and the image is quarantined
    assert [(d.function_id, d.result["status"]) for d in pushed] == [
        ("OnPushFunction", "pending")]
    assert [(d.function_id, d.result["verdict"]) for d in scanned] == [
        ("OnScanFunction", "QUARANTINED")]
    tags = ecr.describe_images(repositoryName="team-a/web",
                               imageIds=[{"imageDigest": digest}])["imageDetails"][0]["imageTags"]
    assert sorted(tags) == sorted(["v1", f"quarantined-{digest[7:19]}"])
    # and the verdict is in the template's table, naming the published policy version
    record = runtime.gatekeeper().store.get("team-a/web", digest)
    assert record is not None and record.policy_version not in (None, "builtin-strict")
    # and the filtered subscriber got it through the topic's message attributes
    assert [m["Subject"] for m in messages(quarantines)] == ["[QUARANTINED] team-a/web:v1"]
    assert len(messages(everything)) == 1


@pytest.mark.parametrize("name", ["ecr-image-delete", "ecr-replication-action",
                                  "ecr-scan-resource-change", "ecr-image-push-failed"])
def test_events_not_for_us_reach_no_function(deployment: LocalDeployment, name: str) -> None:
    assert deployment.deliver(load_event(name)) == []


def test_a_handler_failure_is_captured_not_swallowed(deployment: LocalDeployment) -> None:
    # Given a scan event for an image ECR has no scan for (so the handler must fail, for a retry)
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team-a/web")
    digest = push_image(ecr, "team-a/web", "v1")

    # When it is delivered
    [delivery] = deployment.deliver(load_event("ecr-image-scan-complete",
                                               repository_name="team-a/web",
                                               image_digest=digest))

    # Then the failure surfaces (in AWS: Lambda retries, then the dead-letter queue)
    assert delivery.error is not None and "ScanNotReady" in type(delivery.error).__name__
