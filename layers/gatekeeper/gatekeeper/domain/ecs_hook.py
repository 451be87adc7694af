"""An Amazon ECS deployment lifecycle hook invocation, and the answer ECS expects.

ECS service deployments (the ECS deployment controller: blue/green, linear, canary) invoke a
Lambda function at the lifecycle stages a service's ``deploymentConfiguration.lifecycleHooks``
names, with this payload (ECS developer guide, "Lifecycle hooks for Amazon ECS service
deployments")::

    {"executionDetails": {"testTrafficWeights": {}, "productionTrafficWeights": {},
                          "serviceArn": "arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/SERVICE",
                          "targetServiceRevisionArn":
                              "arn:aws:ecs:REGION:ACCOUNT:service-revision/CLUSTER/SERVICE/ID"},
     "executionId": "...", "lifecycleStage": "PRE_SCALE_UP",
     "resourceArn": "arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID"}

and rolls the deployment back when the function answers ``{"hookStatus": "FAILED"}``
(``SUCCEEDED`` lets it go on; ``IN_PROGRESS`` asks to be invoked again, which this hook never
needs: it answers at once). Parsing is pure; :class:`MalformedHook` says what is missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"

_ECS_ARN = re.compile(r"arn:aws[a-z-]*:ecs:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
                      r"(?P<type>[a-z-]+)/(?P<path>[A-Za-z0-9_./-]+)")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


class MalformedHook(ValueError):
    """Not an ECS lifecycle hook invocation (the message says which field and why)."""


@dataclass(frozen=True)
class HookInvocation:
    """What ECS asks about: one deployment of one service, at one lifecycle stage."""

    service_arn: str
    service: str
    cluster: str | None  # None for a service ARN of the old format (no cluster in it)
    lifecycle_stage: str
    execution_id: str | None = None
    deployment_arn: str | None = None  # the payload's resourceArn (the service deployment)
    target_revision_arn: str | None = None  # the service revision being deployed

    def log_keys(self) -> dict[str, str]:
        keys = {"service": self.service, "cluster": self.cluster or "default",
                "lifecycle_stage": self.lifecycle_stage}
        if self.deployment_arn:
            keys["deployment"] = self.deployment_arn
        return keys


def parse_hook(event: object) -> HookInvocation:
    """``event`` as a :class:`HookInvocation`; :class:`MalformedHook` when it is not one."""
    if not isinstance(event, Mapping):
        raise MalformedHook("the event is not a JSON object")
    details = event.get("executionDetails")
    if not isinstance(details, Mapping):
        raise MalformedHook("no executionDetails object")
    service_arn = details.get("serviceArn")
    match = _ECS_ARN.fullmatch(service_arn) if isinstance(service_arn, str) else None
    if not match or match["type"] != "service":
        raise MalformedHook(f"executionDetails.serviceArn {_shown(service_arn)} is not an ECS "
                            "service ARN")
    parts = match["path"].split("/")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        raise MalformedHook(f"executionDetails.serviceArn {_shown(service_arn)} names no "
                            "service")
    cluster, service = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    stage = event.get("lifecycleStage")
    if not isinstance(stage, str) or not stage:
        raise MalformedHook("no lifecycleStage")
    revision = _optional_arn(details, "targetServiceRevisionArn", "service-revision")
    return HookInvocation(
        service_arn=service_arn, service=service, cluster=cluster, lifecycle_stage=stage,
        execution_id=_optional_text(event, "executionId"),
        deployment_arn=_optional_arn(event, "resourceArn", "service-deployment"),
        target_revision_arn=revision)


def _optional_text(source: Mapping[str, Any], name: str) -> str | None:
    value = source.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedHook(f"{name} is not a string")
    return value or None


def _optional_arn(source: Mapping[str, Any], name: str, kind: str) -> str | None:
    value = _optional_text(source, name)
    if value is None:
        return None
    match = _ECS_ARN.fullmatch(value)
    if not match or match["type"] != kind:
        raise MalformedHook(f"{name} {_shown(value)} is not an ECS {kind} ARN")
    return value


def pinned_image(image: str, digest: str | None) -> str:
    """The image a container runs: ``image`` itself, or, when ECS resolved it to ``digest``
    (software version consistency), the same repository pinned at that digest."""
    if not digest:
        return image
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a tag (a ':' before the last '/' is a registry's port)
        name = name[:colon]
    return f"{name}@{digest}"


def hook_response(allowed: bool) -> dict[str, str]:
    """What ECS reads from the function's answer."""
    return {"hookStatus": SUCCEEDED if allowed else FAILED}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
