"""The daily KEV refresh: CISA's catalog downloaded, checked, and written to the policy bucket.

A good copy is never replaced by a bad one: a download that fails, a body that does not parse
as a catalog, or one implausibly short (:func:`gatekeeper.domain.kev.plausible`) leaves the
bucket's copy as it is and alerts the operator topic. A catalog identical to the bucket's copy
is not written again (no new S3 version, no re-evaluation).

Writing a new copy is an S3 "Object Created" event like a policy upload: the sweeper then
queues every judged image for re-evaluation, if the published policy uses
``block_if_known_exploited`` (gatekeeper.handling.handle_sweep).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gatekeeper.domain.kev import KevCatalog, KevError, parse_catalog, plausible
from gatekeeper.observability import logger


class Catalogs(Protocol):
    @property
    def location(self) -> str: ...

    def get(self) -> KevCatalog: ...
    def put(self, body: bytes) -> str: ...


class Alerts(Protocol):
    def alert(self, subject: str, message: str) -> str: ...


class RefreshFailed(Exception):
    """Why this refresh wrote nothing."""


@dataclass(frozen=True)
class Refreshed:
    status: str  # updated, unchanged, failed
    cves: int = 0
    added: int = 0  # CVEs the new copy lists that the previous one did not
    catalog_version: str | None = None
    s3_version: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class KevRefresh:
    def __init__(self, download: Callable[[], bytes], catalogs: Catalogs, alerts: Alerts,
                 source: str, min_entries: int) -> None:
        self.download = download
        self.catalogs = catalogs
        self.alerts = alerts
        self.source = source  # the URL, for messages
        self.min_entries = min_entries

    def __call__(self) -> Refreshed:
        current = self.catalogs.get()
        try:
            body, new = self._fetch(current)
        except RefreshFailed as err:
            return self._failed(str(err), current)
        if current.available and new.version == current.version and new.added == current.added:
            logger.info("KEV catalog unchanged", catalog_version=new.version, cves=len(new))
            return Refreshed("unchanged", len(new), 0, new.version)
        try:
            version = self.catalogs.put(body)
        except Exception as err:  # S3 refused: the previous copy stays; tell the operators
            return self._failed(f"writing {self.catalogs.location} failed: "
                                f"{type(err).__name__}: {err}", current)
        added = len(new.added.keys() - current.added.keys())
        logger.info("KEV catalog updated", catalog_version=new.version, cves=len(new),
                    added=added, previous=current.version or current.problem,
                    s3_version=version)
        return Refreshed("updated", len(new), added, new.version, version)

    def _fetch(self, current: KevCatalog) -> tuple[bytes, KevCatalog]:
        try:
            body = self.download()
        except Exception as err:  # FeedError, or anything urllib let through
            raise RefreshFailed(f"download failed: {err}") from None
        try:
            new = parse_catalog(body, source=self.source)
        except KevError as err:
            raise RefreshFailed(f"not a usable catalog: {err}") from None
        problem = plausible(new, current, min_entries=self.min_entries)
        if problem:
            raise RefreshFailed(f"not plausible: {self.source} {problem}")
        return body, new

    def _failed(self, reason: str, current: KevCatalog) -> Refreshed:
        kept = (f"The copy at {self.catalogs.location} was kept "
                f"({current.describe()})." if current.available else
                f"There is no usable copy at {self.catalogs.location} "
                f"({current.problem}): repositories with block_if_known_exploited have their "
                "images quarantined until a catalog is written.")
        logger.error("KEV refresh failed; the bucket's copy is kept", reason=reason,
                     kept=current.version or current.problem)
        self.alerts.alert("ECR scan gatekeeper: KEV catalog refresh failed",
                          f"The daily refresh of CISA's KEV catalog failed: {reason}\n\n{kept}\n"
                          "It is tried again at the next scheduled run; to seed or replace "
                          "the copy by hand, see the README (KEV catalog).")
        return Refreshed("failed", len(current), 0, current.version or None, reason=reason)
