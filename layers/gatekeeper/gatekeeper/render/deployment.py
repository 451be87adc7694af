"""What a refused deployment sends: one ``gatekeeper.notification/v1`` message of kind
``deployment_refused``, on the verdict topic like the verdict notices.

It names where the deployment was going (service, cluster, lifecycle stage, the service
deployment), the task definition, and every image refused with its reason; the images that
were allowed are listed too, so the team sees the whole picture in one message. Attributes:
``kind=deployment_refused``, ``alert=deployment_refused``, ``trigger=deployment``,
``service``, ``cluster`` and ``repository`` (the refused images' repositories, a list), so a
subscription filter policy can pick these out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatekeeper.domain.admission import Decision
from gatekeeper.render.markup import escape
from gatekeeper.render.notification import Notification, _clip, _envelope, _subject

KIND = "deployment_refused"
_REASON_MAX = 500
_CHATBOT_TITLE_MAX = 250
_CHATBOT_DESCRIPTION_MAX = 4_000


def deployment_refused_notification(
    *,
    service: str,
    cluster: str,
    task_definition: str,
    refused: Sequence[tuple[str, Decision]],
    allowed: Sequence[tuple[str, Decision]] = (),
    lifecycle_stage: str = "",
    deployment: str | None = None,
    time: str = "",
) -> Notification:
    """``refused`` and ``allowed``: (container name, the gate's decision for its image)."""
    family = task_definition.rsplit("/", 1)[-1]
    lines = [
        f"Deployment refused: ECS service {service} (cluster {cluster})",
        "",
        f"Service:          {service}",
        f"Cluster:          {cluster}",
        f"Task definition:  {task_definition}",
        f"Lifecycle stage:  {lifecycle_stage or '(unknown)'}",
        f"Deployment:       {deployment or '(not named)'}",
        "",
        f"Refused image(s), {len(refused)}:",
    ]
    for container, decision in refused:
        lines += [f"- {container}: {decision.image}",
                  f"  {_clip(decision.reason, _REASON_MAX)}"]
    if allowed:
        lines += ["", f"Allowed image(s), {len(allowed)}:"]
        lines += [f"- {container}: {decision.image}" for container, decision in allowed]
    lines += ["", "ECS rolls the deployment back. Deploy images the gatekeeper approved: "
              "`gatekeeper status <repository>@<digest>` says why an image is not."]
    text = "\n".join(lines)
    repositories = sorted({d.repository or d.image for _, d in refused})
    attributes: dict[str, str | list[str]] = {
        "kind": KIND,
        "alert": KIND,
        "trigger": "deployment",
        "service": service,
        "cluster": cluster,
        "repository": repositories,
    }
    document: dict[str, Any] = {
        **_envelope(KIND, time=time, trigger="deployment", channel=None),
        "deployment": {"service": service, "cluster": cluster,
                       "task_definition": task_definition,
                       "lifecycle_stage": lifecycle_stage, "deployment": deployment},
        "refused": [_entry(c, d) for c, d in refused],
        "allowed": [_entry(c, d) for c, d in allowed],
        "text": text,
    }
    description = [f"Task definition `{escape(family)}`, stage {escape(lifecycle_stage)}", ""]
    description += [f"• `{escape(c)}` {escape(d.image)}: {escape(_clip(d.reason, 300))}"
                    for c, d in refused[:10]]
    chatbot = {
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": _clip(f":no_entry: Deployment refused: {escape(service)} "
                           f"({escape(cluster)})", _CHATBOT_TITLE_MAX),
            "description": _clip("\n".join(description), _CHATBOT_DESCRIPTION_MAX),
            "nextSteps": ["Deploy images the gatekeeper approved",
                          "`gatekeeper status <repository>@<digest>` says why one is not"],
            "keywords": [KIND, service[:64]],
        },
        "metadata": {"eventType": "DeploymentRefused",
                     "summary": _clip(f"Deployment of {service} refused", _CHATBOT_TITLE_MAX),
                     "additionalContext": {"service": service, "cluster": cluster,
                                           "task_definition": task_definition}},
    }
    subject = _subject(f"[DEPLOYMENT REFUSED] {service}: {family}")
    return Notification(subject, text, attributes, document, chatbot)


def _entry(container: str, decision: Decision) -> dict[str, Any]:
    return {"container": container, **decision.as_dict(),
            "reason": _clip(decision.reason, _REASON_MAX)}
