"""Amazon ECS, read only: which task definition a deployment runs, and its container images.

The hook's payload names the service revision being deployed: ``DescribeServiceRevisions``
gives its task definition and, where ECS resolved the images' tags to digests (software
version consistency, the default), the digest each container will run. Without a revision
the service's primary deployment (``DescribeServices``) is the one being deployed. The images
come from ``DescribeTaskDefinition``. Anything not found raises :class:`DeploymentNotFound`;
AWS errors propagate (the hook fails closed on either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DeploymentNotFound(LookupError):
    """The service, service revision or task definition does not exist (or is not readable)."""


@dataclass(frozen=True)
class Container:
    name: str
    image: str  # as the task definition names it


@dataclass(frozen=True)
class Target:
    """What a deployment runs: its task definition and the digests ECS resolved, by
    container name (empty when it resolved none)."""

    task_definition_arn: str
    digests: dict[str, str] = field(default_factory=dict)


class EcsDeployments:
    def __init__(self, client: Any) -> None:
        self._ecs = client

    def revision(self, revision_arn: str) -> Target:
        """The task definition and resolved image digests of a service revision."""
        found = self._ecs.describe_service_revisions(serviceRevisionArns=[revision_arn])
        revisions = [r for r in found.get("serviceRevisions", [])
                     if r.get("serviceRevisionArn") == revision_arn]
        if not revisions or not revisions[0].get("taskDefinition"):
            reasons = "; ".join(f"{f.get('arn')}: {f.get('reason')}"
                                for f in found.get("failures", []))
            raise DeploymentNotFound(f"service revision {revision_arn} not found"
                                     + (f" ({reasons})" if reasons else ""))
        revision = revisions[0]
        digests = {c["containerName"]: c["imageDigest"]
                   for c in revision.get("containerImages", [])
                   if c.get("containerName") and c.get("imageDigest")}
        return Target(revision["taskDefinition"], digests)

    def primary(self, cluster: str | None, service: str) -> Target:
        """The task definition of the service's primary (newest) deployment."""
        found = self._ecs.describe_services(cluster=cluster or "default", services=[service])
        services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise DeploymentNotFound(f"service {service} not found in cluster "
                                     f"{cluster or 'default'}")
        primary = [d for d in services[0].get("deployments", [])
                   if d.get("status") == "PRIMARY" and d.get("taskDefinition")]
        task_definition = (primary[0]["taskDefinition"] if primary
                           else services[0].get("taskDefinition"))
        if not task_definition:
            raise DeploymentNotFound(f"service {service} has no task definition")
        return Target(task_definition)

    def containers(self, task_definition_arn: str) -> list[Container]:
        """Every container of the task definition, with the image it names."""
        try:
            found = self._ecs.describe_task_definition(taskDefinition=task_definition_arn)
        except self._ecs.exceptions.ClientException as err:
            # ECS answers an unknown task definition with a ClientException
            raise DeploymentNotFound(f"task definition {task_definition_arn} not found: "
                                     f"{err.response['Error'].get('Message', '')}") from err
        definitions = found.get("taskDefinition", {}).get("containerDefinitions", [])
        return [Container(str(d.get("name", "")), str(d.get("image", "")))
                for d in definitions]
