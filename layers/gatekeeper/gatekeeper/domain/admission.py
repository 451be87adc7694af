"""May this image run? The answer every deploy-time check gives (the verdict API, the ECS
deployment hook, the Kubernetes admission webhook, ``gatekeeper verify``), whatever asks.

A :class:`Gate` answers for one image name as deploy tooling writes it; a deployment runs only
when every image of it is allowed (:func:`all_allowed`). Anything the gate cannot establish
(no record, no signature, a signature that does not verify, a store that does not answer) is
a refusal with its reason: the gate fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Decision:
    allowed: bool
    image: str  # as the deployment names it
    reason: str  # one line, for a person: why it may or may not run
    repository: str | None = None
    digest: str | None = None  # what the name resolved to, when it did
    verdict: str | None = None  # the verdict's outcome, when there is one

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Gate(Protocol):
    def check(self, image: str) -> Decision:
        """The decision for ``image``; never raises for a bad or unknown image (a refusal)."""
        ...


def all_allowed(decisions: Iterable[Decision]) -> tuple[bool, list[Decision]]:
    """Whether every image may run, and the refusals (none when it may)."""
    refused = [d for d in decisions if not d.allowed]
    return not refused, refused
