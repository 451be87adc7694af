"""The ECS deployment lifecycle hook: may this deployment's task definition run?

Reads the deployment's task definition (through the service revision the payload names, or
the service's primary deployment), asks the gate for every container image (pinned at the
digest ECS resolved it to, when it did) and answers SUCCEEDED only when every image is
allowed. It fails closed: an unreadable payload, a deployment or task definition that cannot
be read, a gate that cannot be built or raises: FAILED, with the reason logged. A refusal is
logged (service, cluster, task definition, each refused image and why) and published once to
the verdict topic (kind ``deployment_refused``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.adapters.ecs import EcsDeployments, Target
from gatekeeper.domain.admission import Decision, Gate
from gatekeeper.domain.ecs_hook import (
    FAILED,
    SUCCEEDED,
    HookInvocation,
    MalformedHook,
    hook_response,
    parse_hook,
    pinned_image,
)
from gatekeeper.observability import logger
from gatekeeper.render.deployment import deployment_refused_notification
from gatekeeper.service.ports import Notifier


@dataclass(frozen=True)
class HookOutcome:
    """The answer, and why: ``status`` is what ECS reads; ``result`` names the case
    (allowed, refused, malformed, error) for the handler's metrics."""

    status: str
    result: str
    reason: str
    task_definition: str | None = None
    refused: list[tuple[str, Decision]] = field(default_factory=list)

    def response(self) -> dict[str, str]:
        return hook_response(self.status == SUCCEEDED)


class EcsDeploymentHook:
    def __init__(self, deployments: EcsDeployments, gate: Callable[[], Gate],
                 notifier: Notifier, now: Callable[[], str]) -> None:
        self.deployments = deployments
        self.gate = gate  # built on first use: a gate that cannot be built fails the hook
        self.notifier = notifier
        self.now = now

    def handle(self, event: Any) -> HookOutcome:
        try:
            hook = parse_hook(event)
        except MalformedHook as err:
            logger.error("deployment refused: unreadable lifecycle hook payload",
                         reason=str(err))
            return HookOutcome(FAILED, "malformed", str(err))
        try:
            return self._judge(hook)
        except Exception as err:  # fail closed, whatever went wrong
            logger.exception("deployment refused: the hook could not check it",
                             reason=f"{type(err).__name__}: {err}", **hook.log_keys())
            return HookOutcome(FAILED, "error", f"{type(err).__name__}: {err}")

    def _judge(self, hook: HookInvocation) -> HookOutcome:
        target = self._target(hook)
        containers = self.deployments.containers(target.task_definition_arn)
        if not containers:
            raise LookupError(f"task definition {target.task_definition_arn} has no container")
        gate = self.gate()
        decisions = [(c.name, self._check(gate, pinned_image(c.image, target.digests.get(c.name))))
                     for c in containers]
        refused = [(name, d) for name, d in decisions if not d.allowed]
        keys = {**hook.log_keys(), "task_definition": target.task_definition_arn}
        if not refused:
            logger.info("deployment allowed", images=[d.image for _, d in decisions], **keys)
            return HookOutcome(SUCCEEDED, "allowed", "every image is allowed",
                               target.task_definition_arn)
        for name, decision in refused:
            logger.warning("image refused", container=name, image=decision.image,
                           reason=decision.reason, verdict=decision.verdict, **keys)
        reason = "; ".join(f"{name}: {d.image}: {d.reason}" for name, d in refused)
        logger.error("deployment refused", refused=len(refused), images=len(decisions),
                     reason=reason[:1000], **keys)
        self._notify(hook, target, refused, [(n, d) for n, d in decisions if d.allowed])
        return HookOutcome(FAILED, "refused", reason, target.task_definition_arn, refused)

    def _target(self, hook: HookInvocation) -> Target:
        if hook.target_revision_arn:
            return self.deployments.revision(hook.target_revision_arn)
        return self.deployments.primary(hook.cluster, hook.service)

    @staticmethod
    def _check(gate: Gate, image: str) -> Decision:
        """The gate's decision; an error of the gate is a refusal of that image."""
        try:
            return gate.check(image)
        except Exception as err:
            logger.exception("the gate failed on an image; it is refused", image=image)
            return Decision(False, image, f"the gate failed: {type(err).__name__}: {err}")

    def _notify(self, hook: HookInvocation, target: Target,
                refused: list[tuple[str, Decision]],
                allowed: list[tuple[str, Decision]]) -> None:
        """One notice per refusal; the answer stays FAILED if it cannot be sent."""
        try:
            message_id = self.notifier.publish(deployment_refused_notification(
                service=hook.service, cluster=hook.cluster or "default",
                task_definition=target.task_definition_arn, refused=refused, allowed=allowed,
                lifecycle_stage=hook.lifecycle_stage, deployment=hook.deployment_arn,
                time=self.now()))
        except Exception:
            logger.exception("the refusal notice could not be published", **hook.log_keys())
            return
        logger.info("deployment refusal notified", message_id=message_id, **hook.log_keys())
