"""Image names as deploy tooling writes them: ``[REGISTRY/]REPOSITORY[:TAG][@DIGEST]``.

A task definition, a pod spec or a pipeline names an image by a string; the gate must know
whether it is in Amazon ECR (and which account and Region), which repository, and whether it
is pinned by digest. The grammar is the distribution reference's: the first path component is
a registry host when it contains a ``.`` or a ``:`` or is ``localhost``; otherwise there is no
registry (Docker Hub, for a container runtime). A name without tag or digest means ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The parts every reader of an image name shares (this module, the verdict API's paths, the
# operator CLI's references): an Amazon ECR private registry host, tags, content digests.
ECR_HOST = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
                      r"\.amazonaws\.com(?:\.cn)?")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
# Amazon ECR's repository names: lowercase components, one separator between characters.
ECR_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
# Any registry's (the distribution reference's) repository names.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
MAX_NAME = 4096


class ImageNameError(ValueError):
    """Not an image name (the message says which part and why)."""


@dataclass(frozen=True)
class ImageName:
    repository: str
    tag: str | None = None
    digest: str | None = None
    registry: str | None = None  # the host as written; None when the name has none

    @property
    def ecr_account(self) -> str | None:
        """The AWS account of an Amazon ECR private registry host, else None."""
        match = ECR_HOST.fullmatch(self.registry or "")
        return match["account"] if match else None

    @property
    def ecr_region(self) -> str | None:
        match = ECR_HOST.fullmatch(self.registry or "")
        return match["region"] if match else None

    @property
    def in_ecr(self) -> bool:
        return self.ecr_account is not None

    @property
    def pinned(self) -> bool:
        """Named by digest: what runs is exactly what was judged."""
        return self.digest is not None

    def __str__(self) -> str:
        host = f"{self.registry}/" if self.registry else ""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{host}{self.repository}{tag}{digest}"


def parse_image(text: object) -> ImageName:
    """``text`` as an :class:`ImageName`; :class:`ImageNameError` when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ImageNameError("no image name")
    name = text.strip()
    if len(name) > MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        raise ImageNameError(f"{name[:80]!r} is not an image name")
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
        if not DIGEST.fullmatch(digest):
            raise ImageNameError(f"{text!r}: {digest[:80]!r} is not a digest (sha256:<64 hex>)")
    registry = None
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    tag = None
    if ":" in name:
        name, tag = name.rsplit(":", 1)
        if not TAG.fullmatch(tag):
            raise ImageNameError(f"{text!r}: {tag[:80]!r} is not a tag")
    if not name or len(name) > 256 or not _REPOSITORY.fullmatch(name):
        raise ImageNameError(f"{text!r}: {name[:80]!r} is not a repository name")
    if tag is None and digest is None:
        tag = "latest"
    return ImageName(repository=name, tag=tag, digest=digest, registry=registry)
