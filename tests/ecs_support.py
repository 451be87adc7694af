"""ECS service revisions for the moto-backed tests: the one ECS call the deployment hook makes
that moto does not implement (``DescribeServiceRevisions``, moto 5.2 raises
NotImplementedError).

:class:`ServiceRevisions` takes moto's place on the session's ``before-send`` (as
tests/faults.py does) and answers ``DescribeServiceRevisions`` in the ECS API's JSON shape,
from revisions a test records with :meth:`ServiceRevisions.deploy`: the service's task
definition as moto holds it, and, as ECS does with software version consistency, each
container's image resolved to its digest in moto's ECR. Every other request goes to moto.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.models import botocore_stubber

from gatekeeper.domain.images import parse_image

_TARGET = "AmazonEC2ContainerServiceV20141113.DescribeServiceRevisions"


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Any:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


class ServiceRevisions:
    def __init__(self, session: boto3.session.Session) -> None:
        self.session = session
        self.revisions: dict[str, dict[str, Any]] = {}

    def install(self) -> ServiceRevisions:
        """Before the hook's clients are built (clients copy the session's handlers)."""
        events = self.session.events
        events.unregister("before-send", botocore_stubber)
        events.register_first("before-send", self._before_send, unique_id="ecs-revisions")
        return self

    def uninstall(self) -> None:
        events = self.session.events
        events.unregister("before-send", unique_id="ecs-revisions")
        events.register("before-send", botocore_stubber)

    def deploy(self, revision_arn: str, cluster: str, service: str,
               resolve: bool = True) -> dict[str, Any]:
        """Record the revision ECS would make of the service's current task definition
        (``resolve``: its ECR images' tags resolved to digests)."""
        ecs = self.session.client("ecs")
        (found,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
        definition = ecs.describe_task_definition(
            taskDefinition=found["taskDefinition"])["taskDefinition"]
        images = []
        for container in definition["containerDefinitions"]:
            digest = self._digest(container["image"]) if resolve else None
            if digest:
                images.append({"containerName": container["name"], "imageDigest": digest,
                               "image": container["image"]})
        revision = {"serviceRevisionArn": revision_arn, "serviceArn": found["serviceArn"],
                    "clusterArn": found["clusterArn"],
                    "taskDefinition": found["taskDefinition"], "containerImages": images,
                    "launchType": "FARGATE", "createdAt": 1.78e9}
        self.revisions[revision_arn] = revision
        return revision

    def _digest(self, image: str) -> str | None:
        name = parse_image(image)
        if not name.in_ecr:
            return None
        if name.digest:
            return name.digest
        ecr = self.session.client("ecr")
        details = ecr.describe_images(repositoryName=name.repository,
                                      imageIds=[{"imageTag": name.tag or "latest"}])
        return str(details["imageDetails"][0]["imageDigest"])

    def _before_send(self, event_name: str, request: AWSPreparedRequest,
                     **_: Any) -> AWSResponse | None:
        if request.headers.get("X-Amz-Target", b"") not in (_TARGET, _TARGET.encode()):
            return botocore_stubber(event_name=event_name, request=request)
        arns = json.loads(request.body or b"{}").get("serviceRevisionArns", [])
        found = [self.revisions[a] for a in arns if a in self.revisions]
        failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in self.revisions]
        body = json.dumps({"serviceRevisions": found, "failures": failures}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1",
                   "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"}
        return AWSResponse(request.url, 200, headers, _Raw(body))
