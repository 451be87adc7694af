"""What a verdict change sends: one SNS message with a rendering per kind of subscriber.

Published with ``MessageStructure=json``:

- ``email``: a short readable text (the subject names the verdict and the image);
- ``https``: the AWS Chatbot (Amazon Q Developer in chat applications) custom-notification
  format, so a Chatbot subscription renders it natively;
- ``default`` (SQS, Lambda, email-json, Firehose, ...): the ``gatekeeper.notification/v1``
  JSON document, documented in the README; fields are only ever added within a version.

Message attributes (``verdict``, ``repository``, ``highest_severity``, ``channel``, ``kind``,
``account``, ``region``, ...) let subscription filter policies pick what each subscriber gets
(``account`` and ``region``: where the image lives, when known; an organization's hub
judges many accounts). The whole message stays
under SNS's 256 KB: long finding lists are shortened, and the document says by how many.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gatekeeper.domain.verdict import Verdict
from gatekeeper.render.markup import ICONS, escape
from gatekeeper.render.report import explain, verdict_document

SCHEMA = "gatekeeper.notification/v1"
SNS_MAX_BYTES = 262_144  # message, subject and attributes together
_BUDGET = SNS_MAX_BYTES - 8_192  # headroom for the attributes and the envelope
_SUBJECT_MAX = 100  # SNS: at most 100 printable ASCII characters
_CHATBOT_TITLE_MAX = 250
_CHATBOT_DESCRIPTION_MAX = 4_000
_BREACH_IDS_SHOWN = 50


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
    message: str  # the readable text (e-mail)
    attributes: Mapping[str, str | list[str]]
    document: dict[str, Any] = field(default_factory=dict)  # gatekeeper.notification/v1
    chatbot: dict[str, Any] | None = None

    def sns_message(self) -> str:
        """The ``MessageStructure=json`` body: one rendering per subscriber protocol."""
        return _structure(self.message, self.document, self.chatbot)


def _structure(text: str, document: Mapping[str, Any], chatbot: Mapping[str, Any] | None
               ) -> str:
    body = {"default": _json(document), "email": text}
    if chatbot is not None:
        body["https"] = _json(chatbot)
    return json.dumps(body, ensure_ascii=False)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _subject(text: str) -> str:
    subject = _ascii(text)
    return subject if len(subject) <= _SUBJECT_MAX else subject[: _SUBJECT_MAX - 3] + "..."


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _envelope(kind: str, *, time: str, trigger: str, channel: str | None,
              verdict_id: str = "") -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": kind, "verdict_id": verdict_id, "time": time,
            "trigger": trigger, "channel": channel}


def _where(image: ImageRef) -> dict[str, str]:
    """The ``account`` and ``region`` attributes, when the image's are known."""
    return {name: value for name, value in (("account", image.account),
                                            ("region", image.region)) if value}


def _where_lines(image: ImageRef) -> list[str]:
    return [f"Account:      {image.account} ({image.region})"] if image.account else []


def _image(image: ImageRef, tags: Sequence[str], marker: str | None) -> dict[str, Any]:
    return {"repository": image.repository, "digest": image.digest, "tags": list(tags),
            "marker": marker, "account": image.account, "region": image.region,
            "console_url": image.console_url()}


def verdict_notification(
    image: ImageRef,
    verdict: Verdict,
    *,
    previous: str | None,
    marker: str | None,
    trigger: str,
    tags: Sequence[str] = (),
    verdict_id: str = "",
    channel: str | None = None,
    time: str = "",
) -> Notification:
    shown_tags = ", ".join(tags) if tags else "(untagged)"
    name = f"{image.repository}:{tags[0]}" if tags else image.short
    label = f"{verdict.outcome}, IN USE" if verdict.quarantined_in_use else verdict.outcome
    subject = _subject(f"[{label}] {name}")
    change = f"was {previous}" if previous else "first verdict"  # the outcome is said once
    counts = ", ".join(f"{k} {v}" for k, v in verdict.counts.items()) or "none"
    lines = [
        f"Image {verdict.outcome}: {image.repository}",
        "",
        f"Repository:   {image.repository}",
        *_where_lines(image),
        f"Tags:         {shown_tags}",
        f"Digest:       {image.digest}",
        f"Verdict:      {verdict.outcome} ({change})",
        *([f"In use:       {verdict.in_use.describe()}"] if verdict.in_use else []),
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
    text = "\n".join(lines)
    attributes: dict[str, str | list[str]] = {
        "kind": "verdict",
        "verdict": str(verdict.outcome),
        "previous_verdict": previous or "NONE",
        "repository": image.repository,
        "highest_severity": verdict.highest_severity or "NONE",
        "scan_status": verdict.scan_status,
        "trigger": trigger,
        "mode": verdict.mode,
    }
    attributes.update(_where(image))
    if channel:
        attributes["channel"] = channel
    if verdict_id:  # the same for every delivery of one verdict: subscribers drop duplicates
        attributes["verdict_id"] = verdict_id
    if verdict.in_use is not None:  # absent when unknown (basic scanning never knows)
        attributes["in_use"] = "true" if verdict.in_use.running else "false"
    document = {
        **_envelope("verdict", time=time, trigger=trigger, channel=channel,
                    verdict_id=verdict_id),
        "image": _image(image, tags, marker),
        "previous": previous,
        "verdict": verdict_document(verdict, repository=image.repository,
                                    digest=image.digest, tags=tags, decided_at=time or None,
                                    verdict_revision=_revision(verdict_id)),
        "omitted": {"counted": 0, "ignored": 0},
        "in_use": verdict.in_use.as_dict() if verdict.in_use else None,
        "text": text,
    }
    chatbot = _verdict_chatbot(image, verdict, name, previous, verdict_id)
    _fit(document, text, chatbot)
    return Notification(subject, text, attributes, document, chatbot)


def _revision(verdict_id: str) -> int | None:
    """The revision a verdict id (``<digest prefix>-<revision>``) names, if it names one."""
    _, _, revision = verdict_id.rpartition("-")
    return int(revision) if revision.isdigit() else None


def _verdict_chatbot(image: ImageRef, verdict: Verdict, name: str, previous: str | None,
                     verdict_id: str) -> dict[str, Any]:
    outcome = str(verdict.outcome)
    change = f"was {previous}" if previous else "first verdict"  # the title says the outcome
    description = [f"*{escape(change)}* · `{image.digest}`",
                   *([f"*{escape(verdict.in_use.describe())}*"] if verdict.in_use else []),
                   f"Policy version `{escape(verdict.policy_version)}`, rule "
                   f"`{escape(verdict.matched_rule)}`, mode {verdict.mode}", ""]
    description += [f"• {escape(reason)}" for reason in verdict.reasons[:10]]
    if len(verdict.reasons) > 10:
        description.append(f"• … and {len(verdict.reasons) - 10} more")
    if verdict.exceptions_used:
        description += ["", "*Exceptions applied*"]
        description += [f"• {escape(e.id)} ({escape(e.owner)}), expires "
                        f"{e.expires}" for e in verdict.exceptions_used[:10]]
    url = image.console_url()
    if url:
        description += ["", f"<{url}|Open in the ECR console>"]
    if outcome == "QUARANTINED":
        steps = ["Upgrade the blocking packages to their fixed versions and push a new image",
                 "Or grant a time-limited exception in policy.yaml and run "
                 "`gatekeeper policy push`"]
    elif outcome == "APPROVED_WITH_WARNINGS":
        steps = ["Plan the upgrades listed in the warnings before they become blocking"]
    else:
        steps = []
    steps.append(f"`gatekeeper status {image.repository}@{image.digest}`")
    return {
        "version": "1.0",
        "source": "custom",
        "id": verdict_id or f"{image.digest[7:19]}-{outcome}",
        "content": {
            "textType": "client-markdown",
            "title": _clip(f"{ICONS.get(outcome, '')} {outcome}"
                           f"{', IN USE' if verdict.quarantined_in_use else ''}: {escape(name)}",
                           _CHATBOT_TITLE_MAX),
            "description": _clip("\n".join(description), _CHATBOT_DESCRIPTION_MAX),
            "nextSteps": steps,
            "keywords": [outcome, image.repository[:64], verdict.highest_severity or "NONE"],
        },
        "metadata": {
            "threadId": f"{image.repository}@{image.digest}"[:128],
            "summary": _clip(f"{outcome}: {name}", _CHATBOT_TITLE_MAX),
            "eventType": "ImageVerdict",
            "relatedResources": [image.digest],
            "additionalContext": {"repository": image.repository, "digest": image.digest,
                                  "verdict": outcome, "verdict_id": verdict_id},
        },
    }


def _size(text: str, document: Mapping[str, Any], chatbot: Mapping[str, Any] | None) -> int:
    """The UTF-8 size of ``_structure(text, document, chatbot)``, without building it whole.

    The verdict's finding lists (thousands of findings on a large image) are measured item by
    item: the document is serialized with those lists empty, then each item's size is added
    as it is once escaped into the outer JSON string, plus its comma. JSON escapes a string
    character by character, so the sum is exact; the peak is one item's text, not three
    copies of the whole document's (its JSON, that JSON escaped, and the bytes)."""
    verdict = document["verdict"]
    lists = [verdict[name] for name in _LISTED]
    shell = {**document, "verdict": {**verdict, **{name: [] for name in _LISTED}}}
    size = len(_structure(text, shell, chatbot).encode("utf-8"))
    for items in lists:
        if items:
            size += sum(_quoted_size(item) for item in items) + len(items) - 1
    return size


_LISTED = ("counted", "ignored")


def _quoted_size(value: Any) -> int:
    """The UTF-8 size of ``value``'s JSON once escaped inside a JSON string (no quotes)."""
    return len(json.dumps(_json(value), ensure_ascii=False).encode("utf-8")) - 2


def _fit(document: dict[str, Any], text: str, chatbot: Mapping[str, Any] | None) -> None:
    """Shorten the document's finding lists until the whole message fits SNS's limit.

    Ignored findings go first, then counted ones that block nothing, then blockers; breach
    finding-id lists are cut to their first ids. ``omitted`` says how many were dropped.
    """
    size = _size(text, document, chatbot)
    if size <= _BUDGET:
        return
    verdict = document["verdict"]
    for breach in verdict["breaches"] + verdict["warnings"]:
        breach["finding_ids"] = breach["finding_ids"][:_BREACH_IDS_SHOWN]
    blocking = {i for b in verdict["breaches"] for i in b["finding_ids"]}
    verdict["counted"].sort(key=lambda f: f["id"] not in blocking)  # stable: blockers first
    for name in ("ignored", "counted"):
        items = verdict[name]
        while items and (size := _size(text, document, chatbot)) > _BUDGET:
            keep = min(len(items) - 1, int(len(items) * _BUDGET / size * 0.9))
            document["omitted"][name] += len(items) - keep
            del items[keep:]
    if _size(text, document, chatbot) > _BUDGET:  # reasons or text alone too long
        document["text"] = _clip(text, 20_000)


def forgery_notification(image: ImageRef, tag: str, *, removed: bool,
                         verdict: str | None, time: str = "",
                         channel: str | None = None) -> Notification:
    """A security alert: someone pushed a marker tag the gatekeeper did not write."""
    action = "removed" if removed else "KEPT (it is the image's only tag; removing it would " \
        "delete the image)"
    lines = [
        f"Forged marker tag on {image.repository}",
        "",
        f"Repository:   {image.repository}",
        *_where_lines(image),
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
    text = "\n".join(lines)
    attributes: dict[str, str | list[str]] = {
        "kind": "forged_marker",
        "verdict": verdict or "PENDING",
        "repository": image.repository,
        "alert": "forged_marker",
        "trigger": "forgery",
        **_where(image),
    }
    if channel:
        attributes["channel"] = channel
    document = {
        **_envelope("forged_marker", time=time, trigger="forgery", channel=channel),
        "image": _image(image, image.tags, None),
        "alert": {"tag": tag, "removed": removed, "recorded_verdict": verdict},
        "text": text,
    }
    chatbot = {
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": _clip(f":rotating_light: Forged marker tag on "
                           f"{escape(image.repository)}", _CHATBOT_TITLE_MAX),
            "description": _clip(
                f"Tag `{escape(tag)}` pushed on `{image.digest}` was not written by "
                f"the gatekeeper; it was {'removed' if removed else 'kept (only tag)'} and the "
                "image is being re-evaluated.", _CHATBOT_DESCRIPTION_MAX),
            "nextSteps": ["Find who pushed it: CloudTrail, PutImage on this repository"],
            "keywords": ["forged_marker", image.repository[:64]],
        },
        "metadata": {"threadId": f"{image.repository}@{image.digest}"[:128],
                     "eventType": "ForgedMarker"},
    }
    return Notification(_subject(f"[FORGED MARKER] {image.repository}: {tag}"), text,
                        attributes, document, chatbot)


DIGEST_ENTRIES_SHOWN = 200


def digest_entry(image: ImageRef, verdict: Verdict, *, previous: str | None, trigger: str,
                 tags: Sequence[str], verdict_id: str, time: str) -> dict[str, Any]:
    """One verdict change held for the periodic digest (stored until the digest is sent)."""
    return {"repository": image.repository, "digest": image.digest, "tags": list(tags)[:10],
            "outcome": str(verdict.outcome), "previous": previous, "trigger": trigger,
            "verdict_id": verdict_id, "reasons": [r[:300] for r in verdict.reasons[:5]],
            "highest_severity": verdict.highest_severity, "console_url": image.console_url(),
            "time": time, "in_use": verdict.in_use.as_dict() if verdict.in_use else None}


def digest_notification(entries: Sequence[Mapping[str, Any]], *, time: str,
                        channel: str | None = None,
                        exceptions: Sequence[Mapping[str, Any]] = ()) -> Notification:
    """A summary of many verdict changes: one message instead of one per image; with the
    policy's ``exceptions`` that expired or expire soon (``id``, ``expires``, ``owner``,
    ``days_left``, ``expired``), so that the policy file shrinks instead of growing."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    shown = list(entries[:DIGEST_ENTRIES_SHOWN])
    lines = [f"{len(entries)} verdict change(s) since the last digest: {summary}", ""]
    for entry in shown:
        name = (f"{entry['repository']}:{entry['tags'][0]}" if entry["tags"]
                else f"{entry['repository']}@{entry['digest'][:19]}")
        was = f" (was {entry['previous']})" if entry["previous"] else ""
        lines.append(f"{entry['outcome']:<22} {name}{was} [{entry['trigger']}]")
    omitted = len(entries) - len(shown)
    if omitted:
        lines.append(f"... and {omitted} more")
    if exceptions:
        lines += ["", "Policy exceptions to renew or remove (gatekeeper policy lint):"]
        lines += [f"  {e['id']}: " + ("expired" if e.get("expired") else
                                      f"expires in {e['days_left']} day(s)")
                  + f" ({e['expires']}, {e['owner'] or 'no owner'})"
                  for e in exceptions[:DIGEST_ENTRIES_SHOWN]]
    text = "\n".join(lines)
    document = {**_envelope("digest", time=time, trigger="digest", channel=channel),
                "entries": shown, "counts": counts, "omitted_entries": omitted,
                "exceptions": list(exceptions[:DIGEST_ENTRIES_SHOWN]), "text": text}
    attributes: dict[str, str | list[str]] = {"kind": "digest", "verdict": sorted(counts),
                                              "trigger": "digest"}
    if channel:
        attributes["channel"] = channel
    chatbot = {
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": f":memo: Verdict digest: {summary}"[:_CHATBOT_TITLE_MAX],
            "description": _clip("\n".join(escape(line) for line in lines[2:]),
                                 _CHATBOT_DESCRIPTION_MAX),
            "keywords": ["digest", *sorted(counts)],
        },
        "metadata": {"eventType": "VerdictDigest", "summary": summary},
    }
    return Notification(_subject(f"[DIGEST] {summary}"), text, attributes, document, chatbot)
