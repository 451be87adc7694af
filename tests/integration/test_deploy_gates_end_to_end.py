"""The deploy-time gates end to end, on moto, with the stack's REAL verdict gate: images
pushed, scanned and judged by the real handlers (their verdicts signed by the stack's key in
moto's KMS), then deployed through the ECS lifecycle hook (the function's handler and its own
wiring: ``runtime.ecs_hook`` asking ``runtime.verdict_gate``) and through the Kubernetes
admission webhook over TLS on 127.0.0.1 (``runtime.verdict_gate``, as ``gatekeeper webhook
serve`` builds it). No fake gate: a verdict passes only as signed, current and approved."""

from __future__ import annotations

import base64
import copy
import functools
import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from functions.ecs_deployment_hook.app import handler as ecs_hook
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import EcsHookConfig
from gatekeeper_tools.webhook import AdmissionWebhook, WebhookServer
from tests.ecs_support import ServiceRevisions
from tests.integration.test_ecs_hook import load_hook, refusals
from tests.integration.test_verdict_gate import STRICT, judged
from tests.support import ACCOUNT, REGION, World, scan_event
from tests.tls_support import make_certificates

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kubernetes"
CRITICAL = "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)"


@pytest.fixture
def images(world: World, context: Any) -> dict[str, str]:
    """Given the strict policy, web:v1 approved and api:v1 quarantined by the handlers."""
    world.publish_policy(STRICT)
    return {"web": judged(world, context, "team-a/web", "v1", "basic-clean"),
            "api": judged(world, context, "team-a/api", "v1", "basic-critical", seed="api")}


def store(world: World) -> VerdictStore:
    return VerdictStore(world.session.client("dynamodb"), world.config.table_name)


# --- ECS: the lifecycle hook ------------------------------------------------------------------

@pytest.fixture
def deploy(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Given cluster ``prod`` in moto's ECS, and the hook function wired as in Lambda (its
    gate runtime.verdict_gate, from the environment, on the world's session). Yields a
    function deploying images as service ``web``'s new task definition (its ARN)."""
    revisions = ServiceRevisions(world.session).install()
    ecs = world.session.client("ecs")
    ecs.create_cluster(clusterName="prod")
    monkeypatch.setattr(runtime, "ecs_hook", functools.cache(
        lambda: runtime.build_ecs_hook(EcsHookConfig.from_env(), world.session)))

    def run(*images: str) -> str:
        containers = [{"name": name, "image": image, "memory": 128, "essential": True}
                      for name, image in zip(("web", "api"), images, strict=False)]
        arn = str(ecs.register_task_definition(family="web", containerDefinitions=containers)[
            "taskDefinition"]["taskDefinitionArn"])
        if ecs.describe_services(cluster="prod", services=["web"])["services"]:
            ecs.update_service(cluster="prod", service="web", taskDefinition=arn)
        else:
            ecs.create_service(cluster="prod", serviceName="web", taskDefinition=arn,
                               desiredCount=1)
        revisions.deploy(load_hook()["executionDetails"]["targetServiceRevisionArn"], "prod",
                         "web")
        return arn

    yield run
    revisions.uninstall()


def test_ecs_deploys_only_signed_approved_images_and_follows_a_new_verdict(
        world: World, context: Any, images: dict[str, str], deploy: Any) -> None:
    # Given a deployment of the approved image only
    deploy(f"{REGISTRY}/team-a/web:v1")

    # When ECS invokes the hook; Then it goes on, nobody notified
    assert ecs_hook(load_hook(), context) == {"hookStatus": "SUCCEEDED"}
    assert refusals(world) == []

    # Given a deployment adding the quarantined image
    task_definition = deploy(f"{REGISTRY}/team-a/web:v1", f"{REGISTRY}/team-a/api:v1")

    # When the hook runs; Then ECS rolls it back, and one notice names the image and why
    assert ecs_hook(load_hook(), context) == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    assert notice["Document"]["deployment"]["task_definition"] == task_definition
    [refused] = notice["Document"]["refused"]
    assert refused["container"] == "api" and refused["verdict"] == "QUARANTINED"
    assert refused["image"] == f"{REGISTRY}/team-a/api@{images['api']}"
    assert refused["reason"] == f"QUARANTINED (signed): {CRITICAL}"

    # Given the quarantined image rescanned clean and judged again: APPROVED, signed anew
    world.scanned("team-a/api", images["api"], "basic-clean")
    assert on_scan(scan_event("team-a/api", images["api"]), context)["verdict"] == "APPROVED"

    # When the same deployment is tried again; Then it goes on
    assert ecs_hook(load_hook(), context) == {"hookStatus": "SUCCEEDED"}
    assert len(refusals(world)) == 1  # the earlier notice only


def test_ecs_refuses_an_approval_the_stack_key_did_not_sign(
        world: World, context: Any, images: dict[str, str], deploy: Any) -> None:
    # Given someone with table access who wrote web's envelope onto the quarantined api's
    # record and marked it APPROVED
    web = store(world).get("team-a/web", images["web"])
    api = store(world).get("team-a/api", images["api"])
    assert web is not None and api is not None
    store(world).put(replace(api, state="APPROVED", envelope=web.envelope), api.revision)
    deploy(f"{REGISTRY}/team-a/api:v1")

    # When the hook runs; Then it is refused: the signature is about another image
    assert ecs_hook(load_hook(), context) == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    assert "signed verdict refused: signed for team-a/web@" in (
        notice["Document"]["refused"][0]["reason"])


# --- Kubernetes: the admission webhook over TLS ----------------------------------------------

class Cluster:
    """The API server's side: AdmissionReviews posted over TLS, the CA trusted."""

    def __init__(self, server: WebhookServer, ca: Path) -> None:
        self.server = server
        self.context = ssl.create_default_context(cafile=str(ca))

    def admit(self, **images: str) -> dict[str, Any]:
        """The response to a Pod CREATE running ``images`` (container name -> image)."""
        review = json.loads((FIXTURES / "pod-create.json").read_text())
        spec = review["request"]["object"]["spec"]
        template = spec["containers"][0]
        spec["initContainers"] = []
        spec["containers"] = [{**copy.deepcopy(template), "name": name, "image": image}
                              for name, image in images.items()]
        connection = http.client.HTTPSConnection("127.0.0.1", self.server.port,
                                                 context=self.context, timeout=10)
        try:
            connection.request("POST", "/validate", body=json.dumps(review).encode(),
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert answer.status == 200
            body = json.loads(answer.read())
        finally:
            connection.close()
        assert body["response"]["uid"] == review["request"]["uid"]
        return dict(body["response"])


@pytest.fixture
def cluster(world: World, tmp_path: Path) -> Iterator[Cluster]:
    """Given the admission webhook on 127.0.0.1 over TLS (a certificate made here), its gate
    the stack's (runtime.verdict_gate, from the environment, on the world's session)."""
    certificates = make_certificates(tmp_path)
    webhook = AdmissionWebhook(runtime.verdict_gate(), deadline=5.0, exempt_namespaces=set())
    server = WebhookServer(webhook, str(certificates.cert), str(certificates.key),
                           host="127.0.0.1", port=0)
    with server.running():
        yield Cluster(server, certificates.ca)


def test_the_webhook_admits_approved_and_denies_quarantined_and_tampered(
        world: World, images: dict[str, str], cluster: Cluster) -> None:
    web, api = f"{REGISTRY}/team-a/web:v1", f"{REGISTRY}/team-a/api:v1"

    # When a Pod of the approved image is created; Then it is allowed
    assert cluster.admit(web=web)["allowed"] is True

    # When a Pod adds the quarantined image; Then denied, naming the container and why
    denied = cluster.admit(web=web, api=api)
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert f"container api image {api}: QUARANTINED (signed): {CRITICAL}" in message
    assert "container web" not in message

    # Given web's record tampered with: one byte of its signed payload flipped
    record = store(world).get("team-a/web", images["web"])
    assert record is not None and record.envelope is not None
    payload = bytearray(base64.b64decode(record.envelope["payload"]))
    payload[-3] ^= 0x01
    tampered = {**record.envelope, "payload": base64.b64encode(bytes(payload)).decode("ascii")}
    store(world).put(replace(record, envelope=tampered), record.revision)

    # When the approved-looking image is admitted again; Then it is denied
    denied = cluster.admit(web=web)
    assert denied["allowed"] is False
    assert f"container web image {web}: signed verdict refused" in denied["status"]["message"]


@pytest.fixture
def unreachable_store(world: World, images: dict[str, str]) -> Iterator[None]:
    """Given the verdict table unreachable from clients built from now on (the gate's): every
    GetItem fails to connect, as with no route to DynamoDB."""
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")

    world.session.events.register("before-call.dynamodb.GetItem", unreachable)
    yield
    world.session.events.unregister("before-call.dynamodb.GetItem", unreachable)


def test_the_webhook_denies_when_the_verdict_store_is_unreachable(
        images: dict[str, str], unreachable_store: None, cluster: Cluster) -> None:
    # When a Pod of the approved image is created; Then it is denied, saying why
    denied = cluster.admit(web=f"{REGISTRY}/team-a/web@{images['web']}")
    assert denied["allowed"] is False
    assert "could not check the verdict (EndpointConnectionError" in denied["status"]["message"]
