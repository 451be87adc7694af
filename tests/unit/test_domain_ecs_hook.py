"""The ECS lifecycle hook payload, read as the hook function reads it (pure), and the
deployment_refused notice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper.domain.admission import Decision
from gatekeeper.domain.ecs_hook import MalformedHook, hook_response, parse_hook, pinned_image
from gatekeeper.render.deployment import deployment_refused_notification
from tests.domain_support import EVENTS

SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/prod/web"
DIGEST = "sha256:" + "ab" * 32


def recorded(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["ecs-lifecycle-hook-pre-scale-up",
                                  "ecs-lifecycle-hook-post-test-traffic-shift"])
def test_the_recorded_payloads_name_the_service_and_its_revision(name: str) -> None:
    hook = parse_hook(recorded(name))
    assert (hook.cluster, hook.service, hook.service_arn) == ("prod", "web", SERVICE)
    assert hook.target_revision_arn == (
        "arn:aws:ecs:us-east-1:123456789012:service-revision/prod/web/4980306466373577095")
    assert hook.deployment_arn and ":service-deployment/prod/web/" in hook.deployment_arn
    assert hook.execution_id and hook.lifecycle_stage in ("PRE_SCALE_UP",
                                                          "POST_TEST_TRAFFIC_SHIFT")


def test_a_service_arn_of_the_old_format_has_no_cluster() -> None:
    hook = parse_hook({"executionDetails": {
        "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/web"},
        "lifecycleStage": "PRE_SCALE_UP"})
    assert (hook.cluster, hook.service, hook.target_revision_arn) == (None, "web", None)
    assert hook.log_keys()["cluster"] == "default"


@pytest.mark.parametrize("event", [
    None, [], "PRE_SCALE_UP", {}, {"executionDetails": {}},
    {"executionDetails": None, "lifecycleStage": "PRE_SCALE_UP"},
    {"executionDetails": {"serviceArn": SERVICE}},
    {"executionDetails": {"serviceArn": SERVICE}, "lifecycleStage": 3},
    {"executionDetails": {"serviceArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod"},
     "lifecycleStage": "PRE_SCALE_UP"},
    {"executionDetails": {"serviceArn": SERVICE + "/x"}, "lifecycleStage": "PRE_SCALE_UP"},
    {"executionDetails": {"serviceArn": SERVICE, "targetServiceRevisionArn": SERVICE},
     "lifecycleStage": "PRE_SCALE_UP"},
    {"executionDetails": {"serviceArn": SERVICE}, "lifecycleStage": "PRE_SCALE_UP",
     "resourceArn": 7},
], ids=["null", "list", "string", "empty", "no-service", "details-null", "no-stage",
        "stage-number", "cluster-arn", "too-deep", "revision-is-a-service", "resource-number"])
def test_anything_else_is_malformed(event: Any) -> None:
    with pytest.raises(MalformedHook):
        parse_hook(event)


@pytest.mark.parametrize(("image", "digest", "pinned"), [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v1", DIGEST,
     f"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web@{DIGEST}"),
    ("localhost:5000/web", DIGEST, f"localhost:5000/web@{DIGEST}"),
    ("nginx:1.27@sha256:" + "cd" * 32, DIGEST, f"nginx@{DIGEST}"),
    ("nginx:1.27", None, "nginx:1.27"),
])
def test_an_image_is_pinned_at_the_digest_ecs_resolved(image: str, digest: str | None,
                                                       pinned: str) -> None:
    assert pinned_image(image, digest) == pinned


def test_the_answer_is_what_ecs_reads() -> None:
    assert hook_response(True) == {"hookStatus": "SUCCEEDED"}
    assert hook_response(False) == {"hookStatus": "FAILED"}


def test_the_refusal_notice_names_service_task_definition_and_images() -> None:
    # Given a refused image and an allowed one
    refused = Decision(False, f"r/worker@{DIGEST}", "verdict QUARANTINED", "worker", DIGEST,
                       "QUARANTINED")
    allowed = Decision(True, "r/web@sha256:" + "00" * 32, "verdict APPROVED", "web")
    task_definition = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:4"

    # When it is rendered
    notice = deployment_refused_notification(
        service="web", cluster="prod", task_definition=task_definition,
        refused=[("worker", refused)], allowed=[("web", allowed)],
        lifecycle_stage="PRE_SCALE_UP", time="2026-12-01T09:00:00+00:00")

    # Then every rendering says which service, task definition and image, and why
    assert notice.subject == "[DEPLOYMENT REFUSED] web: web:4"
    assert notice.attributes == {"kind": "deployment_refused", "alert": "deployment_refused",
                                 "trigger": "deployment", "service": "web", "cluster": "prod",
                                 "repository": ["worker"]}
    body = json.loads(notice.sns_message())
    document = json.loads(body["default"])
    assert document["schema"] == "gatekeeper.notification/v1"
    assert document["kind"] == "deployment_refused"
    assert document["refused"] == [{"container": "worker", **refused.as_dict()}]
    for text in (body["email"], body["https"]):
        assert "web" in text and "worker" in text and "QUARANTINED" in text
    assert task_definition in body["email"]
