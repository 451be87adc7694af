"""AWS Security Hub: a verdict imported as the image's finding (BatchImportFindings).

An image is one finding (a stable Id), so importing again updates it. Re-evaluations carry no
account or region; this stack's own fill them in (Security Hub accepts a product's findings
only in the account and region it runs in). A finding Security Hub refuses raises
:class:`SecurityHubError`, like a failed notification: the event is retried.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gatekeeper.domain.verdict import Verdict
from gatekeeper.render.notification import ImageRef
from gatekeeper.render.security_hub import asff_finding


class SecurityHubError(Exception):
    """Security Hub did not import the finding."""


class SecurityHubFindings:
    def __init__(self, client: Any, sts: Any = None, account: str | None = None,
                 partition: str = "aws") -> None:
        self._hub = client
        self._sts = sts
        self._account = account
        self._region = str(client.meta.region_name)
        self._partition = partition

    def publish(self, image: ImageRef, verdict: Verdict, *, created_at: str,
                updated_at: str) -> dict[str, Any]:
        """Import the image's finding for ``verdict``; the finding sent."""
        image = replace(image, account=image.account or self._own_account(),
                        region=image.region or self._region)
        finding = asff_finding(image, verdict, created_at=_asff_time(created_at),
                               updated_at=_asff_time(updated_at), partition=self._partition)
        response = self._hub.batch_import_findings(Findings=[finding])
        if response.get("FailedCount"):
            failed = (response.get("FailedFindings") or [{}])[0]
            raise SecurityHubError(f"finding {finding['Id']} not imported: "
                                   f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
        return finding

    def _own_account(self) -> str:
        if self._account is None:
            self._account = str(self._sts.get_caller_identity()["Account"])
        return self._account


def _asff_time(stamp: str) -> str:
    """ISO 8601 in UTC with a Z, as ASFF's examples write it."""
    return stamp.replace("+00:00", "Z")
