"""The tags the gatekeeper writes on an image to mark its verdict.

A marker names the image's digest (``approved-9b1a3f6c2d4e``), so it never collides with a
user's tag nor with another image's marker: that is what makes the scheme safe on IMMUTABLE
repositories (a tag cannot move there) and on MUTABLE ones (moving a tag away from an image
whose last tag it was would delete that image).

A template must also never describe a tag people write themselves: the gatekeeper treats every
tag of a marker's shape as its own, and removes one that names another image or contradicts the
verdict. So a template starts with a word of its own, then a separator, before the digest:

- the word is letters only, at least 3 of them, and holds a letter outside a-f. A tag that
  starts with a digit (``1.2.3``, a git sha such as ``9b1a3f6``) or with one or two letters
  (``v1.2.3``, ``pr-42``) never has that shape, nor does one made of hex and separators only
  (``deadbeef``, ``cafe-9b1a3f6c2d4e``), however the sha's letters fall;
- a separator (``-``, ``_`` or ``.``) follows the word, so a single word (``latest``,
  ``stable``) and a bare digest (``9b1a3f6c2d4e``) never match either;
- the word is not one people prefix their own tags with (:data:`RESERVED_WORDS`:
  ``sha-<hex>`` from docker/metadata-action, ``git-``, ``commit-``, ``main-<hex>``,
  ``release-``...), compared without regard to case;
- the approved and quarantined words differ (without regard to case): a tag's leading word
  then decides which template it could belong to, so neither template parses the other's tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gatekeeper.domain.verdict import Outcome

_PLACEHOLDERS = {"{digest12}": r"(?P<digest>[0-9a-f]{12})", "{digest}": r"(?P<digest>[0-9a-f]{64})"}
_TAG_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_TAG = 128
# Words users put before a sha, a version or a build number in their own tags.
RESERVED_WORDS = frozenset({
    "sha", "git", "commit", "rev", "revision", "hash", "digest", "ref", "build", "version",
    "release", "main", "master", "trunk", "dev", "develop", "feature", "hotfix", "bugfix",
    "latest", "stable", "nightly", "snapshot", "prod", "production", "staging", "test",
})
# The template's own word (group 1) and the separator after it.
_LEADING_WORD = re.compile(r"([A-Za-z]*)([-_.]?)")
_NOT_HEX = re.compile(r"[g-zG-Z]")


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
            _check_leading_word(template)
            prefix, _, suffix = template.partition(placeholders[0])
            patterns[outcome] = re.compile(
                f"{re.escape(prefix)}{_PLACEHOLDERS[placeholders[0]]}{re.escape(suffix)}"
            )
        if self.approved == self.quarantined:
            raise ValueError("the approved and quarantined tag templates must differ")
        words = [_leading_word(t).lower() for t in (self.approved, self.quarantined)]
        if words[0] == words[1]:
            raise ValueError(
                f"tag templates {self.approved!r} and {self.quarantined!r} start with the same "
                f"word {words[0]!r}: each template needs a word of its own, or a tag of one "
                "could be read as the other's"
            )
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


def _leading_word(template: str) -> str:
    match = _LEADING_WORD.match(template)
    return match.group(1) if match else ""


def _check_leading_word(template: str) -> None:
    """Refuse a template whose markers could be a tag people write themselves (module doc)."""
    match = _LEADING_WORD.match(template)
    word, separator = (match.group(1), match.group(2)) if match else ("", "")
    rule = ("must start with a word of at least 3 letters (one of them outside a-f), then "
            "-, _ or ., before its placeholder, as approved-{digest12} does")
    if len(word) < 3 or not separator:
        raise ValueError(f"tag template {template!r} {rule}: anything shorter could match "
                         "tags people write themselves (git shas, v1.2.3, latest)")
    if not _NOT_HEX.search(word):
        raise ValueError(f"tag template {template!r} {rule}: {word!r} is all hex letters, "
                         "which is how a git sha can start")
    if word.lower() in RESERVED_WORDS:
        raise ValueError(f"tag template {template!r} starts with {word!r}, a word people "
                         f"put before their own shas and versions ({word.lower()}-<hex>): "
                         "choose a word of the gatekeeper's own, such as approved")
