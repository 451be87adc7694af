"""What the use cases need from the outside world, and what they answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.adapters.ecr import Platform, ScanResult
from gatekeeper.adapters.store import HistoryEntry, ImageRecord
from gatekeeper.domain.attestation import Signature
from gatekeeper.domain.policy import Policy
from gatekeeper.domain.verdict import Verdict
from gatekeeper.render.notification import ImageRef, Notification


class ScanNotReady(Exception):
    """A scan event arrived but ECR has no finished scan yet: retry later."""


class LeaseBusy(Exception):
    """Another writer holds the image and did not finish in time: the invocation fails so
    that Lambda (or SQS) delivers it again, rather than two writers interleaving."""


class StalePolicy(Exception):
    """The newest policy this container can read is older than the one behind the stored
    verdict (S3 out of sync?): the verdict is not committed; the event is retried."""


class Images(Protocol):
    def scan(self, repository: str, digest: str) -> ScanResult | None: ...
    def start_scan(self, repository: str, digest: str) -> str: ...
    def add_tag(self, repository: str, digest: str, tag: str) -> bool: ...
    def remove_tags(self, repository: str, digest: str, tags: list[str]) -> list[str]: ...
    def observe(self, repository: str, digest: str) -> list[str]: ...
    def holder(self, repository: str, tag: str) -> str | None: ...
    def find(self, repository: str, prefix: str) -> list[str]: ...
    def set_storage_class(self, repository: str, digest: str, storage_class: str) -> bool: ...
    def platforms(self, repository: str, digest: str) -> list[Platform] | None: ...


class Store(Protocol):
    def get(self, repository: str, digest: str) -> ImageRecord | None: ...
    def put(self, record: ImageRecord, expected_revision: int | None,
            history: HistoryEntry | None = None) -> ImageRecord: ...
    def link(self, repository: str, platform_digest: str, index_digest: str) -> None: ...
    def indexes(self, repository: str, digest: str) -> list[str]: ...
    def hold(self, key: str, entry: dict[str, Any], channel: str | None) -> None: ...


class Signer(Protocol):
    def sign(self, pae_bytes: bytes) -> Signature:
        """The stack key's signature over a DSSE pre-authentication encoding."""
        ...


class Notifier(Protocol):
    def publish(self, notification: Notification) -> str: ...


class FindingsPublisher(Protocol):
    def publish(self, image: ImageRef, verdict: Verdict, *, created_at: str,
                updated_at: str) -> dict[str, Any]:
        """Import the image's finding for ``verdict``; the finding sent."""
        ...


class PolicySource(Protocol):
    def get(self) -> Policy: ...
    def refresh(self) -> Policy: ...


@dataclass(frozen=True)
class Result:
    """What one event led to; returned by the handlers and logged."""

    status: str  # judged, unchanged, enforced, pending, ignored, image-gone, stale
    repository: str
    digest: str
    verdict: str | None = None
    previous: str | None = None
    marker: str | None = None
    notified: bool = False
    reason: str | None = None
    in_use: bool | None = None  # the image runs somewhere (None: unknown)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}
