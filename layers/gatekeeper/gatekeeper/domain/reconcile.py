"""From an image's actual tags to the tags its verdict calls for: the reconciler's plan.

The image's tags are the truth, whoever wrote them; the record only says what the gatekeeper
did. Each judgement compares the two and converges the image to its verdict:

- the marker the verdict calls for is added first (none in monitor mode, nor while pending);
- then every marker-shaped tag that contradicts the verdict is removed, whoever wrote it: the
  other outcome's marker, a marker naming another digest;
- a tag that is not marker-shaped is never touched;
- the image's last tag is never removed (ECR would delete the image): it goes as soon as the
  right marker is on the image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.verdict import Outcome


@dataclass(frozen=True)
class TagPlan:
    add: str | None  # the verdict's marker, missing from the image
    remove: tuple[str, ...]  # contradicting markers that can go (the image keeps a tag)
    kept: tuple[str, ...]  # contradicting markers that cannot go yet: the image's last tag
    foreign: tuple[tuple[str, str], ...]  # (tag, digest prefix) of markers naming other images

    @property
    def converged(self) -> bool:
        """The image already carries exactly what its verdict calls for."""
        return self.add is None and not self.remove and not self.kept

    @property
    def writes(self) -> bool:
        return self.add is not None or bool(self.remove)


def plan(scheme: MarkerScheme, digest: str, actual: Iterable[str], outcome: Outcome | None,
         *, write: bool) -> TagPlan:
    """What to change so the image carries the marker of ``outcome`` (None: no verdict yet)
    and no other marker. ``write`` False (monitor mode, pending): add nothing; a marker that
    agrees with the verdict stays."""
    tags = list(dict.fromkeys(actual))
    wanted = scheme.tag_for(outcome, digest) if outcome is not None else None
    add = wanted if write and wanted and wanted not in tags else None
    contradicting = [t for t in tags if scheme.parse(t) is not None and t != wanted]
    foreign = tuple((t, parsed[1]) for t in contradicting
                    if (parsed := scheme.parse(t)) and not scheme.is_marker_of(t, digest))
    others = len(tags) + (1 if add else 0) - len(contradicting)
    if others >= 1:
        return TagPlan(add, tuple(contradicting), (), foreign)
    # Every tag is a contradicting marker and nothing is added: one must stay.
    return TagPlan(add, tuple(contradicting[1:]), tuple(contradicting[:1]), foreign)


def user_tags(scheme: MarkerScheme, actual: Iterable[str]) -> tuple[str, ...]:
    """The image's tags that are not marker-shaped, as a record keeps them."""
    return tuple(t for t in dict.fromkeys(actual) if scheme.parse(t) is None)
