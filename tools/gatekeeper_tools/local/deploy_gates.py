"""The deploy-time gates on a local deployment, for the demo: an ECS service whose deployment
calls the lifecycle hook, and a Kubernetes Deployment sent to the admission webhook.

Both ask the stack's verdict gate (``runtime.build_gate``: the verdict table, kms:Verify with
the stack's signing key), passed explicitly. The ECS side is moto's: a cluster ``prod`` and a
service ``api`` whose task definition runs the image; the hook gets the recorded payload of
``events/ecs-lifecycle-hook-pre-scale-up.json`` for that service, without its service revision
(moto has none: the hook reads the service's primary deployment instead). The Kubernetes side
is the webhook's own logic (:class:`gatekeeper_tools.webhook.AdmissionWebhook`), in-process:
an AdmissionReview v1 for a Deployment ``shop/api`` whose one container runs the image.

The gates' own logs (a refusal is logged at ERROR) are held back while they run: the demo
prints what they answered.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER = "prod"
SERVICE = "api"
NAMESPACE = "shop"
HOOK_EVENT = "ecs-lifecycle-hook-pre-scale-up"


@dataclass(frozen=True)
class Answers:
    """What the two gates said about one image."""

    ecs_status: str  # SUCCEEDED or FAILED: what ECS reads
    ecs_reason: str
    admitted: bool
    admission_message: str  # the denial's message (empty when allowed)


@contextmanager
def _quiet() -> Iterator[None]:
    from gatekeeper.observability import logger

    level = logger.log_level
    logger.setLevel(logging.CRITICAL)  # the gates log nothing above ERROR
    try:
        yield
    finally:
        logger.setLevel(level)


class LocalGates:
    """The ECS hook and the admission webhook of a LocalDeployment, asking one verdict gate.
    Build it inside the deployment's ``mock_aws()`` (or with AWS_ENDPOINT_URL at its server)."""

    def __init__(self, deployment: Any, events: Path) -> None:
        import boto3

        from gatekeeper import runtime
        from gatekeeper.config import EcsHookConfig, GateConfig
        from gatekeeper_tools.webhook import AdmissionWebhook

        session = boto3.session.Session(region_name=deployment.region)
        key = session.client("kms").describe_key(
            KeyId=deployment.physical_ids["VerdictSigningKey"])["KeyMetadata"]["Arn"]
        gate = runtime.build_gate(GateConfig.for_key(deployment.table_name, key), session)
        self.registry = f"{gate.config.account}.dkr.ecr.{gate.config.region}.amazonaws.com"
        self.hook = runtime.build_ecs_hook(EcsHookConfig(deployment.topic_arn), session,
                                           gate=lambda: gate)
        self.webhook = AdmissionWebhook(gate)
        self.ecs = session.client("ecs")
        self.deployed: dict[str, str] = {}  # image -> its task definition's ARN
        self.ecs.create_cluster(clusterName=CLUSTER)
        self.payload = json.loads((events / f"{HOOK_EVENT}.json").read_text())
        details = self.payload["executionDetails"]
        self.service_arn = details["serviceArn"].replace("/prod/web", f"/{CLUSTER}/{SERVICE}")
        details["serviceArn"] = self.service_arn
        del details["targetServiceRevisionArn"]  # moto has no service revisions
        self.payload["resourceArn"] = self.payload["resourceArn"].replace(
            "/prod/web/", f"/{CLUSTER}/{SERVICE}/")

    def image(self, repository_and_tag: str) -> str:
        """The image as a task definition or a pod spec names it: in this registry."""
        return f"{self.registry}/{repository_and_tag}"

    def deploy(self, repository_and_tag: str) -> str:
        """The service ``api`` updated to a new task definition running the image (created
        the first time); the task definition's ARN."""
        arn = str(self.ecs.register_task_definition(family=SERVICE, containerDefinitions=[{
            "name": SERVICE, "image": self.image(repository_and_tag), "memory": 256,
            "essential": True}])["taskDefinition"]["taskDefinitionArn"])
        found = self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
        if found:
            self.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=arn)
        else:
            self.ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn,
                                    desiredCount=2)
        return arn

    def ask(self, repository_and_tag: str) -> Answers:
        """ECS deploys the image to the service (the hook runs at PRE_SCALE_UP; its task
        definition is registered once, later asks deploy it again), and Kubernetes is asked
        to create a Deployment running it."""
        if repository_and_tag not in self.deployed:
            self.deployed[repository_and_tag] = self.deploy(repository_and_tag)
        with _quiet():
            outcome = self.hook.handle(self.payload)
            reply = self.webhook.validate(review(self.image(repository_and_tag)))
        verdict = reply.body["response"]
        return Answers(outcome.status, outcome.reason, bool(verdict["allowed"]),
                       verdict.get("status", {}).get("message", ""))


def review(image: str) -> dict[str, Any]:
    """An AdmissionReview v1 as the API server sends it for ``kubectl apply`` of a
    Deployment ``shop/api`` with one container running ``image``."""
    deployment = {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {"app": SERVICE}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": SERVICE}}, "template": {
            "metadata": {"labels": {"app": SERVICE}},
            "spec": {"containers": [{"name": SERVICE, "image": image,
                                     "ports": [{"containerPort": 8080}]}]}}},
    }
    kind = {"group": "apps", "version": "v1", "kind": "Deployment"}
    resource = {"group": "apps", "version": "v1", "resource": "deployments"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": kind, "resource": resource, "requestKind": kind,
        "requestResource": resource, "name": SERVICE, "namespace": NAMESPACE,
        "operation": "CREATE", "userInfo": {"username": "deployer"},
        "object": deployment, "oldObject": None, "dryRun": False}}
