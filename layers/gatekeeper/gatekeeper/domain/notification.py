"""The message a verdict change sends: a readable subject and body, and filterable attributes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from gatekeeper.domain.report import explain
from gatekeeper.domain.verdict import Verdict

_SUBJECT_MAX = 100  # SNS: at most 100 printable ASCII characters


@dataclass(frozen=True)
class ImageRef:
    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    account: str | None = None
    region: str | None = None

    @property
    def short(self) -> str:
        return f"{self.repository}@{self.digest[:19]}"

    def console_url(self) -> str | None:
        if not (self.account and self.region):
            return None
        return (
            f"https://{self.region}.console.aws.amazon.com/ecr/repositories/private/"
            f"{self.account}/{quote(self.repository, safe='/')}/_/image/{self.digest}/details"
            f"?region={self.region}"
        )


@dataclass(frozen=True)
class Notification:
    subject: str
    message: str
    attributes: dict[str, str]


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def verdict_notification(
    image: ImageRef,
    verdict: Verdict,
    *,
    previous: str | None,
    marker: str | None,
    trigger: str,
    tags: Sequence[str] = (),
    verdict_id: str = "",
) -> Notification:
    shown_tags = ", ".join(tags) if tags else "(untagged)"
    name = f"{image.repository}:{tags[0]}" if tags else image.short
    subject = _ascii(f"[{verdict.outcome}] {name}")
    if len(subject) > _SUBJECT_MAX:
        subject = subject[: _SUBJECT_MAX - 3] + "..."
    change = f"{previous} -> {verdict.outcome}" if previous else f"new verdict: {verdict.outcome}"
    counts = ", ".join(f"{k} {v}" for k, v in verdict.counts.items()) or "none"
    lines = [
        f"Image {verdict.outcome}: {image.repository}",
        "",
        f"Repository:   {image.repository}",
        f"Tags:         {shown_tags}",
        f"Digest:       {image.digest}",
        f"Verdict:      {verdict.outcome} ({change})",
        f"Marker tag:   {marker or '(none)'}",
        f"Scan status:  {verdict.scan_status}",
        f"Findings:     {counts}",
        f"Policy:       version {verdict.policy_version}, rule {verdict.matched_rule}",
        f"Mode:         {verdict.mode}",
        f"Triggered by: {trigger}",
        "",
        *explain(verdict, limit=20),
    ]
    url = image.console_url()
    if url:
        lines += ["", f"Console: {url}"]
    attributes = {
        "verdict": str(verdict.outcome),
        "previous_verdict": previous or "NONE",
        "repository": image.repository,
        "highest_severity": verdict.highest_severity or "NONE",
        "scan_status": verdict.scan_status,
        "trigger": trigger,
        "mode": verdict.mode,
    }
    if verdict_id:  # the same for every delivery of one verdict: subscribers drop duplicates
        attributes["verdict_id"] = verdict_id
    return Notification(subject=subject, message="\n".join(lines), attributes=attributes)


def forgery_notification(image: ImageRef, tag: str, *, removed: bool,
                         verdict: str | None) -> Notification:
    """A security alert: someone pushed a marker tag the gatekeeper did not write."""
    action = "removed" if removed else "KEPT (it is the image's only tag; removing it would " \
        "delete the image)"
    lines = [
        f"Forged marker tag on {image.repository}",
        "",
        f"Repository:   {image.repository}",
        f"Digest:       {image.digest}",
        f"Tag pushed:   {tag}",
        f"Action:       {action}; the image is being re-evaluated",
        f"Verdict:      {verdict or 'none yet'} (as recorded before the push)",
        "",
        "The gatekeeper writes its marker tags itself. Find who pushed this tag in CloudTrail "
        "(PutImage on this repository).",
    ]
    url = image.console_url()
    if url:
        lines += ["", f"Console: {url}"]
    subject = _ascii(f"[FORGED MARKER] {image.repository}: {tag}")[:_SUBJECT_MAX]
    return Notification(
        subject=subject,
        message="\n".join(lines),
        attributes={
            "verdict": verdict or "PENDING",
            "repository": image.repository,
            "alert": "forged_marker",
            "trigger": "forgery",
        },
    )
