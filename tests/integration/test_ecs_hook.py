"""The ECS deployment lifecycle hook on moto: task definitions and a service in moto's ECS,
images in moto's ECR, the recorded hook payloads from events/, the function's handler called
in-process, refusals published to the verdict topic.

The gate here is a small fake (:class:`VerdictsGate`) implementing the Gate protocol from
verdicts the test gives it, so each case of the hook is set up in a line; the hook with the
stack's real, signed verdict gate is tests/integration/test_deploy_gates_end_to_end.py."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions.ecs_deployment_hook.app import handler
from gatekeeper import runtime
from gatekeeper.config import EcsHookConfig
from gatekeeper.domain.admission import Decision
from gatekeeper.domain.images import ImageNameError, parse_image
from tests.ecs_support import ServiceRevisions
from tests.support import ACCOUNT, EVENTS, REGION, World

REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
EVENT = "ecs-lifecycle-hook-pre-scale-up"


def load_hook(name: str = EVENT) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@dataclass
class VerdictsGate:
    """A Gate over a fixed set of verdicts (digest -> outcome); a tag resolved in moto's ECR;
    other registries as ``other_registries`` says (deny by default, as the stack's gate)."""

    world: World
    verdicts: dict[str, str] = field(default_factory=dict)
    other_registries: str = "deny"
    fail: bool = False
    asked: list[str] = field(default_factory=list)

    def check(self, image: str) -> Decision:
        self.asked.append(image)
        if self.fail:
            raise RuntimeError("verdict store unreachable")
        try:
            name = parse_image(image)
        except ImageNameError as err:
            return Decision(False, image, str(err))
        if not name.in_ecr:
            allowed = self.other_registries == "allow"
            return Decision(allowed, image, f"not in Amazon ECR: other registries are "
                            f"{'allowed' if allowed else 'denied'}")
        digest = name.digest
        if digest is None:
            found = self.world.ecr.describe_images(repositoryName=name.repository,
                                                   imageIds=[{"imageTag": name.tag}])
            digest = found["imageDetails"][0]["imageDigest"]
        outcome = self.verdicts.get(digest)
        allowed = outcome in ("APPROVED", "APPROVED_WITH_WARNINGS")
        return Decision(allowed, image, f"verdict {outcome or 'none'}", name.repository,
                        digest, outcome)


@dataclass
class Ecs:
    """The deployment's side: a cluster ``prod`` and its service ``web`` in moto."""

    world: World
    revisions: ServiceRevisions
    gate: VerdictsGate

    @property
    def client(self) -> Any:
        return self.world.session.client("ecs")

    def image(self, repository: str, tag: str, verdict: str | None) -> str:
        """An image pushed to moto's ECR, with the verdict the gate knows for it."""
        if repository not in {r["repositoryName"] for r in
                              self.world.ecr.describe_repositories()["repositories"]}:
            self.world.repository(repository)
        digest = self.world.push(repository, tag, seed=f"{repository}:{tag}")
        if verdict:
            self.gate.verdicts[digest] = verdict
        return f"{REGISTRY}/{repository}:{tag}"

    def deploy(self, *images: str, resolve: bool = True) -> str:
        """Service ``web`` updated to a new task definition running ``images``; the recorded
        event's service revision is that deployment. Returns the task definition's ARN."""
        containers = [{"name": f"c{i}", "image": image, "memory": 128, "essential": True}
                      for i, image in enumerate(images)]
        arn = self.client.register_task_definition(
            family="web", containerDefinitions=containers)["taskDefinition"]["taskDefinitionArn"]
        services = self.client.describe_services(cluster="prod", services=["web"])["services"]
        if services:
            self.client.update_service(cluster="prod", service="web", taskDefinition=arn)
        else:
            self.client.create_service(cluster="prod", serviceName="web", taskDefinition=arn,
                                       desiredCount=1)
        revision = load_hook()["executionDetails"]["targetServiceRevisionArn"]
        self.revisions.deploy(revision, "prod", "web", resolve=resolve)
        return str(arn)


@pytest.fixture
def ecs(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ecs]:
    """Given a cluster in moto's ECS and the hook function pointed at it, its verdict topic
    the world's, asking a fake gate."""
    revisions = ServiceRevisions(world.session).install()
    gate = VerdictsGate(world)
    world.session.client("ecs").create_cluster(clusterName="prod")
    config = EcsHookConfig.from_env()
    monkeypatch.setattr(runtime, "ecs_hook", functools.cache(
        lambda: runtime.build_ecs_hook(config, world.session, gate=lambda: gate)))
    yield Ecs(world, revisions, gate)
    revisions.uninstall()


def refusals(world: World) -> list[dict[str, Any]]:
    return [n for n in world.notifications()
            if n["MessageAttributes"]["kind"]["Value"] == "deployment_refused"]


# --- allowed --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [EVENT, "ecs-lifecycle-hook-post-test-traffic-shift"])
def test_every_image_approved_succeeds(ecs: Ecs, world: World, context: Any,
                                       name: str) -> None:
    # Given a deployment whose two images are approved (one with warnings)
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"),
               ecs.image("team-a/sidecar", "v2", "APPROVED_WITH_WARNINGS"))

    # When ECS invokes the hook with its recorded payload
    answer = handler(load_hook(name), context)

    # Then the deployment goes on, and nobody is notified
    assert answer == {"hookStatus": "SUCCEEDED"}
    assert refusals(world) == []


def test_the_gate_is_asked_about_the_digest_ecs_resolved(ecs: Ecs, context: Any) -> None:
    # Given a deployment of a tag that ECS resolved to a digest
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"))
    [resolved] = ecs.revisions.revisions.values()
    digest = resolved["containerImages"][0]["imageDigest"]

    # When the hook runs; Then it asks about that digest, not the tag (which could move)
    assert handler(load_hook(), context) == {"hookStatus": "SUCCEEDED"}
    assert ecs.gate.asked == [f"{REGISTRY}/team-a/web@{digest}"]


def test_without_a_resolved_digest_the_image_is_asked_as_named(ecs: Ecs, context: Any) -> None:
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"), resolve=False)
    assert handler(load_hook(), context) == {"hookStatus": "SUCCEEDED"}
    assert ecs.gate.asked == [f"{REGISTRY}/team-a/web:v1"]


def test_without_a_service_revision_the_primary_deployment_is_checked(
        ecs: Ecs, world: World, context: Any) -> None:
    # Given a payload that names no service revision, and a quarantined image deployed
    task_definition = ecs.deploy(ecs.image("team-a/web", "v1", "QUARANTINED"))
    event = load_hook()
    del event["executionDetails"]["targetServiceRevisionArn"]

    # When the hook runs; Then the service's primary deployment is what it refuses
    assert handler(event, context) == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    assert notice["Document"]["deployment"]["task_definition"] == task_definition


# --- refused --------------------------------------------------------------------------------

def test_one_quarantined_image_fails_and_notifies_once(ecs: Ecs, world: World,
                                                       context: Any) -> None:
    # Given a deployment with an approved image and a quarantined one
    good = ecs.image("team-a/web", "v1", "APPROVED")
    bad = ecs.image("team-a/worker", "v7", "QUARANTINED")
    task_definition = ecs.deploy(good, bad)

    # When ECS invokes the hook
    answer = handler(load_hook(), context)

    # Then ECS rolls it back, and one notice names the service, task definition and image
    assert answer == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    attributes = {k: v["Value"] for k, v in notice["MessageAttributes"].items()}
    assert attributes["kind"] == "deployment_refused"
    assert attributes["service"] == "web" and attributes["cluster"] == "prod"
    assert json.loads(attributes["repository"]) == ["team-a/worker"]
    document = notice["Document"]
    assert document["deployment"]["service"] == "web"
    assert document["deployment"]["task_definition"] == task_definition
    assert document["deployment"]["lifecycle_stage"] == "PRE_SCALE_UP"
    [refused] = document["refused"]
    assert refused["container"] == "c1" and refused["verdict"] == "QUARANTINED"
    assert refused["image"].startswith(f"{REGISTRY}/team-a/worker@sha256:")
    assert [a["container"] for a in document["allowed"]] == ["c0"]
    text = notice["Message"]
    assert "web" in text and task_definition in text and "team-a/worker" in text
    assert "verdict QUARANTINED" in text
    assert notice["Subject"] == "[DEPLOYMENT REFUSED] web: web:1"


def test_an_image_without_a_verdict_is_refused(ecs: Ecs, world: World, context: Any) -> None:
    ecs.deploy(ecs.image("team-a/web", "v1", None))
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    assert notice["Document"]["refused"][0]["reason"] == "verdict none"


@pytest.mark.parametrize(("setting", "status"), [("deny", "FAILED"), ("allow", "SUCCEEDED")])
def test_an_image_outside_ecr_follows_the_gates_setting(ecs: Ecs, world: World, context: Any,
                                                        setting: str, status: str) -> None:
    # Given a deployment of an approved ECR image and a Docker Hub image
    ecs.gate.other_registries = setting
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"), "public.ecr.aws/nginx/nginx:1.27")

    # When the hook runs; Then the outside image is refused or allowed as the gate says
    assert handler(load_hook(), context) == {"hookStatus": status}
    assert len(refusals(world)) == (1 if setting == "deny" else 0)


# --- fails closed ---------------------------------------------------------------------------

def test_a_missing_task_definition_fails(ecs: Ecs, world: World, context: Any) -> None:
    # Given a revision naming a task definition that was deleted (deregistered and gone)
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"))
    for revision in ecs.revisions.revisions.values():
        revision["taskDefinition"] = (f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/"
                                      "gone:9")
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}
    assert refusals(world) == []  # an error, not a refusal: logged, no notice
    assert ecs.gate.asked == []


def test_a_missing_service_revision_fails(ecs: Ecs, context: Any) -> None:
    # Given no deployment at all: the revision the payload names does not exist
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}


def test_a_missing_service_fails(ecs: Ecs, context: Any) -> None:
    event = load_hook()
    del event["executionDetails"]["targetServiceRevisionArn"]
    assert handler(event, context) == {"hookStatus": "FAILED"}


@pytest.mark.parametrize("event", [
    None,
    {"executionDetails": {"serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/prod/web",
                          "targetServiceRevisionArn": "not-an-arn"},
     "lifecycleStage": "PRE_SCALE_UP"},
], ids=["null", "bad-revision"])  # every other shape: tests/unit/test_domain_ecs_hook.py
def test_a_malformed_payload_fails(ecs: Ecs, context: Any, event: Any) -> None:
    assert handler(event, context) == {"hookStatus": "FAILED"}
    assert ecs.gate.asked == []


def test_a_gate_that_raises_fails(ecs: Ecs, world: World, context: Any) -> None:
    # Given a gate whose verdict store does not answer
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"))
    ecs.gate.fail = True

    # When the hook runs; Then the image is refused with the gate's error, and notified
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}
    [notice] = refusals(world)
    assert "verdict store unreachable" in notice["Document"]["refused"][0]["reason"]


def test_a_gate_that_cannot_be_built_fails(ecs: Ecs, world: World, context: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stack's own wiring (runtime.verdict_gate), deployed without its signing key
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"))
    monkeypatch.delenv("GATEKEEPER_SIGNING_KEY_ARN")
    monkeypatch.setattr(runtime, "ecs_hook", functools.cache(
        lambda: runtime.build_ecs_hook(EcsHookConfig.from_env(), world.session)))

    # When the hook runs; Then the gate's ConfigError fails it closed, and nobody is notified
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}
    assert refusals(world) == []


def test_a_hook_without_its_configuration_fails(ecs: Ecs, context: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the function deployed without its topic
    monkeypatch.delenv("GATEKEEPER_TOPIC_ARN")
    monkeypatch.setattr(runtime, "ecs_hook", functools.cache(
        lambda: runtime.build_ecs_hook(EcsHookConfig.from_env())))
    ecs.deploy(ecs.image("team-a/web", "v1", "APPROVED"))
    assert handler(load_hook(), context) == {"hookStatus": "FAILED"}
