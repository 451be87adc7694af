"""The tags the gatekeeper writes on an image to mark its verdict.

A marker names the image's digest (``approved-9b1a3f6c2d4e``), so it never collides with a
user's tag nor with another image's marker: that is what makes the scheme safe on IMMUTABLE
repositories (a tag cannot move there) and on MUTABLE ones (moving a tag away from an image
whose last tag it was would delete that image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gatekeeper.domain.verdict import Outcome

_PLACEHOLDERS = {"{digest12}": r"(?P<digest>[0-9a-f]{12})", "{digest}": r"(?P<digest>[0-9a-f]{64})"}
_TAG_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_TAG = 128


def _hex(digest: str) -> str:
    return digest.split(":", 1)[-1].lower()


@dataclass(frozen=True)
class MarkerScheme:
    approved: str = "approved-{digest12}"
    quarantined: str = "quarantined-{digest12}"
    _patterns: dict[Outcome, re.Pattern[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns: dict[Outcome, re.Pattern[str]] = {}
        for outcome, template in ((Outcome.APPROVED, self.approved),
                                  (Outcome.QUARANTINED, self.quarantined)):
            placeholders = [p for p in _PLACEHOLDERS if p in template]
            if len(placeholders) != 1 or template.count(placeholders[0]) != 1:
                raise ValueError(
                    f"tag template {template!r} must contain exactly one of {{digest12}} or "
                    "{digest}: a fixed tag would move between images, which deletes an image "
                    "whose last tag it was (MUTABLE) or fails (IMMUTABLE)"
                )
            rendered = self._render(template, "0" * 64)
            if not _TAG_CHARS.fullmatch(rendered) or rendered[0] in ".-":
                raise ValueError(f"tag template {template!r} has characters a tag cannot hold")
            if len(rendered) > _MAX_TAG:
                raise ValueError(f"tag template {template!r} makes tags over {_MAX_TAG} chars")
            prefix, _, suffix = template.partition(placeholders[0])
            patterns[outcome] = re.compile(
                f"{re.escape(prefix)}{_PLACEHOLDERS[placeholders[0]]}{re.escape(suffix)}"
            )
        if self.approved == self.quarantined:
            raise ValueError("the approved and quarantined tag templates must differ")
        object.__setattr__(self, "_patterns", patterns)

    @staticmethod
    def _render(template: str, digest: str) -> str:
        hexdigest = _hex(digest)
        return template.replace("{digest12}", hexdigest[:12]).replace("{digest}", hexdigest)

    def tag_for(self, outcome: Outcome, digest: str) -> str | None:
        """The marker an image with this outcome carries; None when the outcome has none."""
        if outcome.approved:
            return self._render(self.approved, digest)
        if outcome is Outcome.QUARANTINED:
            return self._render(self.quarantined, digest)
        return None

    def parse(self, tag: str) -> tuple[Outcome, str] | None:
        """(outcome, hex digest or prefix) when ``tag`` has the shape of a marker, else None."""
        for outcome, pattern in self._patterns.items():
            match = pattern.fullmatch(tag)
            if match:
                return outcome, match.group("digest")
        return None

    def is_marker_of(self, tag: str, digest: str) -> bool:
        """True when ``tag`` is a marker naming this very digest."""
        parsed = self.parse(tag)
        return parsed is not None and _hex(digest).startswith(parsed[1])
