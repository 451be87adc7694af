"""The fleet report's data: every current verdict and the verdict changes since a time, read
from the verdict table, with the published policy's exceptions (``gatekeeper report`` and the
sweeper's weekly report)."""

from __future__ import annotations

from datetime import UTC, datetime

from gatekeeper.adapters.store import ImageRecord, VerdictStore
from gatekeeper.domain.policy import Policy
from gatekeeper.render.fleet_report import Change, Fleet, Image, summarize
from gatekeeper.render.notification import ImageRef


def fleet(store: VerdictStore, policy: Policy, *, now: datetime, since: datetime,
          account: str | None = None, region: str | None = None) -> Fleet:
    """The fleet as the report shows it (one paginated Scan of the table). ``account`` and
    ``region`` make the images' ECR console links (a record naming its own account wins)."""
    records, history = store.fleet(since.astimezone(UTC).isoformat())
    return summarize(
        [_image(r, account, region) for r in records if not r.gone],
        [Change(repo, digest, entry.decided_at, entry.state, entry.previous)
         for repo, digest, entry in history],
        policy.exceptions, now=now, since=since, policy_version=policy.version,
        window_days=policy.expiring_window_days, gone=sum(1 for r in records if r.gone))


def _image(record: ImageRecord, account: str | None, region: str | None) -> Image:
    own = getattr(record, "account", None)  # where the records name their account
    ref = ImageRef(record.repository, record.digest, record.tags, own or account, region)
    return Image(repository=record.repository, digest=record.digest, state=record.state,
                 tags=record.tags, reasons=record.reasons, decided_at=record.decided_at,
                 in_use=record.in_use, exceptions_used=record.exceptions_used, account=own,
                 console_url=ref.console_url())
