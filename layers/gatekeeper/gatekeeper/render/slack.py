"""A gatekeeper notification as a Slack message (Block Kit), always within Slack's limits.

:func:`slack_message` turns a ``gatekeeper.notification/v1`` document (the ``default`` message
of the verdict topic) into the payload an incoming webhook accepts: ``{"text", "blocks"}``.

Slack rejects a message that breaks one of its limits, so a long verdict is summarised, never
cut off by Slack: at most 50 blocks, a section's text at most 3,000 characters, a header at
most 150, at most 10 fields of at most 2,000 each, and the whole payload within
:data:`MESSAGE_BUDGET` characters of JSON. Lengths are counted in UTF-16 code units, which is
never less than the number of characters, so an emoji cannot push a text over a limit.

Everything that comes from findings, images or the policy is untrusted text: ``&``, ``<`` and
``>`` are escaped wherever it appears, so a crafted package name or description cannot mention
``<!channel>`` or a user, nor hide a link. The only links are the ones built here, from
http(s) URLs that contain nothing that could end the link early. No boto3, no network.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.render.markup import ESCAPES, ICONS, plain
from gatekeeper.render.notification import SCHEMA

KINDS = ("verdict", "forged_marker", "digest")

# Slack's limits (https://api.slack.com/reference/block-kit/blocks)
MAX_BLOCKS = 50
SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
CONTEXT_ELEMENTS_MAX = 10
URL_MAX = 3000
# Slack refuses a message whose blocks add up to much more than ~13,000 characters of JSON
# (undocumented; observed). Stay well inside it, the fallback text included.
MESSAGE_BUDGET = 12_000
FALLBACK_TEXT_MAX = 300  # the notification text (also what Slack shows without blocks)
_CONTEXT_TEXT_MAX = 500  # our own, per context element
_FINDING_URL_MAX = 400  # a longer finding link is dropped (the id is still shown)

# plain_text (headers) is shown as is, never parsed: '<' and '>' become look-alikes so that
# it can never hold a control sequence, however Slack reads it; '&' stays.
_PLAIN_TEXT = {"<": "\u2039", ">": "\u203a"}
_ELLIPSIS = "…"
_DIGEST = re.compile(r"sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})")
# What a generated link may contain: printable ASCII without space, quotes, backslash,
# braces, '|' (ends the URL part of <url|label>) and '<', '>' (end the link).
_URL_CHARS = re.compile(r"[!#-&(-;=?-\[\]_a-z~]+", re.IGNORECASE)

class UnsupportedDocument(ValueError):
    """Not a notification this module renders: another schema, or an unknown kind."""


# --- text ------------------------------------------------------------------------------------

def slack_length(text: str) -> int:
    """Length as Slack may count it: UTF-16 code units (>= characters; 2 for most emoji)."""
    return len(text.encode("utf-16-le")) // 2


def payload_size(payload: Mapping[str, Any]) -> int:
    """The size :data:`MESSAGE_BUDGET` bounds: the payload's JSON, in UTF-16 code units."""
    return slack_length(json.dumps(payload, ensure_ascii=False))


def clip(value: Any, limit: int, escapes: Mapping[str, str] = ESCAPES) -> str:
    """``value`` escaped, cut to at most ``limit`` (Slack length) with an ellipsis.

    The cut is made on the unescaped text, so it never splits an escape like ``&amp;``.
    """
    pieces = [escapes.get(c, c) for c in plain(value)]
    sizes = [slack_length(p) for p in pieces]
    if sum(sizes) <= limit:
        return "".join(pieces)
    if limit < 1:
        return ""
    kept, used = [], 0
    for piece, size in zip(pieces, sizes, strict=True):
        if used + size > limit - 1:
            break
        kept.append(piece)
        used += size
    while kept and unicodedata.category(kept[-1][-1]) in ("Mn", "Cf"):
        kept.pop()  # no dangling combining mark or joiner before the ellipsis
    return "".join(kept) + _ELLIPSIS


def safe_url(value: Any, *, https_only: bool = False, limit: int = URL_MAX) -> str | None:
    """``value`` if it is an absolute http(s) URL that is safe to put in a link, else None."""
    if not isinstance(value, str) or not value or len(value) > limit:
        return None
    if not _URL_CHARS.fullmatch(value):
        return None
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme.lower() not in schemes or not parts.hostname or parts.username:
        return None
    return value


def link(url: str | None, label: Any, limit: int = 200) -> str:
    """A mrkdwn link to ``url`` (already validated) showing ``label``; just the label without
    a URL. The URL's ``&`` is escaped as Slack itself writes links."""
    text = clip(label, limit)
    if not url or "|" in text:
        return text
    return f"<{url.replace('&', '&amp;')}|{text}>"


# --- blocks ----------------------------------------------------------------------------------

def _header(text: str) -> dict[str, Any]:
    return {"type": "header",
            "text": {"type": "plain_text", "text": clip(text, HEADER_TEXT_MAX, _PLAIN_TEXT),
                     "emoji": True}}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A section of up to 10 ``*label*\\nvalue`` fields; values are mrkdwn already."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"}
              for label, value in list(pairs)[:FIELDS_MAX]]
    return {"type": "section", "fields": fields}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}
                                            for text in texts[:CONTEXT_ELEMENTS_MAX] if text]}


def _listing(heading: str, lines: Sequence[str], *, total: int | None = None,
             cap: int, more: str = "more") -> str:
    """``heading`` then up to ``cap`` lines, as many as fit a section, then "… and N more"."""
    total = len(lines) if total is None else total
    text, shown = heading, 0
    for line in lines[:cap]:
        if slack_length(text) + 1 + slack_length(line) + 60 > SECTION_TEXT_MAX:
            break
        text += "\n" + line
        shown += 1
    if total > shown:
        text += f"\n_{_ELLIPSIS} and {total - shown} {more}_"
    return text


def _chunks(heading: str, lines: Sequence[str], *, total: int, cap: int,
            more: str = "more") -> list[str]:
    """Like :func:`_listing`, over several sections when the lines do not fit one."""
    texts, text, shown = [], heading, 0
    for line in lines[:cap]:
        if slack_length(text) + 1 + slack_length(line) + 60 > SECTION_TEXT_MAX:
            texts.append(text)
            text = ""
        text = f"{text}\n{line}" if text else line
        shown += 1
    if total > shown:
        text += f"\n_{_ELLIPSIS} and {total - shown} {more}_"
    texts.append(text)
    return texts


# --- how much detail fits ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Detail:
    reasons: int  # reasons listed
    blocking: int  # blocking findings listed
    others: int  # other counted findings listed
    exceptions: int  # exceptions listed, per list
    entries: int  # digest entries listed
    text: int  # longest free text shown (a reason, a title, an exception's reason)


# From the most detailed to the least; the first whose message fits the budget is sent.
_LEVELS = (
    _Detail(20, 40, 10, 10, 60, 300),
    _Detail(10, 20, 5, 5, 30, 200),
    _Detail(5, 10, 3, 3, 15, 120),
    _Detail(3, 5, 0, 2, 8, 80),
    _Detail(1, 2, 0, 0, 3, 60),
)


def _fit(build: Callable[[_Detail], dict[str, Any]],
         minimal: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    for detail in _LEVELS:
        payload = build(detail)
        if not limit_violations(payload):
            return payload
    payload = minimal()
    while limit_violations(payload) and len(payload["blocks"]) > 1:
        payload["blocks"].pop()
    return payload


def limit_violations(payload: Mapping[str, Any], budget: int = MESSAGE_BUDGET) -> list[str]:
    """Every Slack limit ``payload`` breaks (empty: Slack accepts it), for checks and tests."""
    problems = []
    blocks = payload.get("blocks") or []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    if slack_length(payload.get("text") or "") > FALLBACK_TEXT_MAX:
        problems.append("fallback text too long")
    for index, block in enumerate(blocks):
        kind = block.get("type")
        text = (block.get("text") or {}).get("text", "")
        if kind == "header" and slack_length(text) > HEADER_TEXT_MAX:
            problems.append(f"block {index}: header over {HEADER_TEXT_MAX}")
        if kind == "section":
            if slack_length(text) > SECTION_TEXT_MAX:
                problems.append(f"block {index}: section text over {SECTION_TEXT_MAX}")
            fields = block.get("fields") or []
            if len(fields) > FIELDS_MAX:
                problems.append(f"block {index}: {len(fields)} fields > {FIELDS_MAX}")
            if any(slack_length(f["text"]) > FIELD_TEXT_MAX for f in fields):
                problems.append(f"block {index}: a field over {FIELD_TEXT_MAX}")
            if not text and not fields:
                problems.append(f"block {index}: empty section")
        if kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > CONTEXT_ELEMENTS_MAX:
                problems.append(f"block {index}: {len(elements)} context elements")
            if any(slack_length(e.get("text", "")) > SECTION_TEXT_MAX for e in elements):
                problems.append(f"block {index}: a context element too long")
    size = payload_size(payload)
    if size > budget:
        problems.append(f"payload of {size} characters > {budget}")
    return problems


# --- the document ------------------------------------------------------------------------------

def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _name(image: Mapping[str, Any]) -> str:
    """repository:tag (the first tag that is not the marker), or repository@sha256:<12>."""
    repository = plain(image.get("repository") or "(unknown repository)")
    marker = image.get("marker")
    tags = [t for t in _list(image.get("tags")) if isinstance(t, str) and t and t != marker]
    if tags:
        return f"{repository}:{plain(tags[0])}"
    digest = plain(image.get("digest") or "")
    return f"{repository}@{digest[:19]}" if digest else repository


def _when(value: Any) -> str:
    """A document's ``time`` as people read it: ``2026-11-20T01:55:49Z`` (UTC, to the second)
    for an ISO 8601 time with its offset; anything else as it is, escaped and clipped."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, OverflowError):  # not ISO 8601, or off the calendar in UTC
            pass
    return clip(value, 40)


def _digest(value: Any) -> str:
    return f"`{value}`" if isinstance(value, str) and _DIGEST.fullmatch(value) else clip(
        value or "(unknown)", 150)


def _console(image: Mapping[str, Any]) -> str | None:
    return safe_url(image.get("console_url"), https_only=True)


def _console_line(url: str | None) -> dict[str, Any] | None:
    return _section(f"*{link(url, 'Open the image in the Amazon ECR console')}*") if url else None


def _finding_line(finding: Mapping[str, Any], detail: _Detail) -> str:
    url = safe_url(finding.get("uri"), limit=_FINDING_URL_MAX)
    parts = [f"{link(url, finding.get('id') or '(no id)', 80)} "
             f"*{clip(finding.get('severity') or 'UNDEFINED', 20)}*"]
    package = clip(finding.get("package") or "(unknown package)", 80)
    installed = finding.get("installed_version")
    parts.append(f"{package} {clip(installed, 60)}" if installed else package)
    if finding.get("fixed_version"):
        parts.append(f"fixed in {clip(finding['fixed_version'], 60)}")
    elif finding.get("fix_available") is False:
        parts.append("no fix available")
    else:
        parts.append("no fixed version known")
    extras = []
    if isinstance(finding.get("score"), int | float):
        extras.append(f"score {finding['score']:g}")
    if isinstance(finding.get("epss"), int | float):
        extras.append(f"EPSS {finding['epss']:g}")
    if finding.get("exploit_available") is True:
        extras.append("exploit available")
    line = "• " + " · ".join(parts)
    if extras:
        line += f" ({', '.join(extras)})"
    about = finding.get("title") or finding.get("description")
    if about:
        line += f" — {clip(about, min(detail.text, 120))}"
    return line


def _exception_line(exception: Mapping[str, Any], detail: _Detail) -> str:
    where = f" in {clip(exception['package'], 60)}" if exception.get("package") else ""
    ticket = exception.get("ticket")
    ticket_text = ""
    if ticket:
        url = safe_url(ticket, https_only=True, limit=_FINDING_URL_MAX)
        ticket_text = f" · {link(url, 'ticket') if url else clip(ticket, 60)}"
    reason = f": {clip(exception['reason'], detail.text)}" if exception.get("reason") else ""
    return (f"• {clip(exception.get('id') or '(no id)', 80)}{where} — "
            f"{clip(exception.get('owner') or '(no owner)', 80)}, expires "
            f"{clip(exception.get('expires') or '?', 40)}{ticket_text}{reason}")


def _severity_summary(findings: Iterable[Mapping[str, Any]]) -> str:
    counts = Counter(str(f.get("severity") or "UNDEFINED") for f in findings)
    order = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNTRIAGED", "UNDEFINED", "INFORMATIONAL")
    ranked = sorted(counts.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                    else len(order), kv[0]))
    return ", ".join(f"{clip(name, 20)} {count}" for name, count in ranked)


def _breach_rule(breach: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a finding blocks by this breach: by its rule (every counted finding of the
    severity; every exploitable one; every one at or above the EPSS limit), or its ids."""
    ids = set(_list(breach.get("finding_ids")))
    rule, severity, limit = breach.get("rule"), breach.get("severity"), breach.get("limit")
    if rule == "max_findings" and severity:
        return lambda f: f.get("severity") == severity or f.get("id") in ids
    if rule == "block_if_exploit_available":
        return lambda f: f.get("exploit_available") is True or f.get("id") in ids
    if rule == "block_if_epss_at_least" and isinstance(limit, int | float):
        return lambda f: (isinstance(f.get("epss"), int | float) and f["epss"] >= limit) or \
            f.get("id") in ids
    return lambda f: f.get("id") in ids


def _verdict_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    image = _dict(doc.get("image"))
    verdict = _dict(doc.get("verdict"))
    outcome = plain(verdict.get("outcome") or "UNKNOWN")
    previous = doc.get("previous")
    name = _name(image)
    mode = plain(verdict.get("mode") or "enforce")
    monitor = " (monitor mode)" if mode == "monitor" else ""
    icon = ICONS.get(outcome, ":grey_question:")
    reasons = [r for r in _list(verdict.get("reasons")) if r]
    breaches = [_dict(b) for b in _list(verdict.get("breaches"))]
    counted = [_dict(f) for f in _list(verdict.get("counted"))]
    ignored = [_dict(i) for i in _list(verdict.get("ignored"))]
    omitted = _dict(doc.get("omitted"))
    # What blocks, by each breach's rule: its id list may have been cut short to fit SNS
    rules = [_breach_rule(b) for b in breaches]
    blockers = [f for f in counted if any(rule(f) for rule in rules)]
    # an exploitable finding blocks even when another rule made it not count
    finding_rules = [r for b, r in zip(breaches, rules, strict=True)
                     if b.get("rule") != "max_findings"]
    blockers += [f for f in (_dict(i.get("finding")) for i in ignored
                             if i.get("why") not in ("exception", "vex"))
                 if any(r(f) for r in finding_rules)]
    # blocking findings the document leaves out: each breach counts all of its own
    unlisted_blockers = sum(max(0, _int(b.get("count")) - sum(1 for f in blockers if rule(f)))
                            for b, rule in zip(breaches, rules, strict=True))
    blocking_total = len(blockers) + unlisted_blockers
    others = [f for f in counted if not any(rule(f) for rule in rules)]
    counted_blockers = len(counted) - len(others)
    others_total = max(len(others), len(counted) + _int(omitted.get("counted"))
                       - counted_blockers - unlisted_blockers)
    exceptions = _dict(verdict.get("exceptions"))
    used = [_dict(e) for e in _list(exceptions.get("used"))]
    expiring = [_dict(e) for e in _list(exceptions.get("expiring"))]
    policy = _dict(verdict.get("policy"))
    url = _console(image)
    change = f"{outcome} (was {plain(previous)})" if previous else f"{outcome} (first verdict)"
    counts = _dict(verdict.get("counts"))
    counts_text = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
    first_reason = reasons[0] if reasons else ""
    fallback = f"{outcome}{monitor}: {name}" + (f" — {plain(first_reason)}" if reasons else "")

    def build(detail: _Detail) -> dict[str, Any]:
        blocks: list[dict[str, Any] | None] = [
            _header(f"{icon} {outcome}{monitor}: {name}"),
            _fields([
                ("Verdict", clip(change, 200)),
                ("Image", clip(name, 300)),
                ("Digest", _digest(image.get("digest"))),
                ("Tags", clip(", ".join(plain(t) for t in _list(image.get("tags")))
                              or "(untagged)", 300)),
                ("Findings", clip(counts_text, 300)),
                ("Policy", clip(f"version {policy.get('version') or '?'}, rule "
                                f"{policy.get('rule') or '?'}", 300)),
                ("Triggered by", clip(doc.get("trigger") or "?", 60)),
                ("Mode", clip(mode, 40) + (" (recorded and notified, no tag changed)"
                                           if monitor else "")),
                ("Scan status", clip(verdict.get("scan_status") or "?", 60)),
                ("Marker tag", clip(image.get("marker") or "(none)", 150)),
            ]),
        ]
        if reasons:
            blocks.append(_section(_listing(
                "*Reasons*", [f"• {clip(r, detail.text)}" for r in reasons],
                cap=detail.reasons, more="more reasons")))
        if blocking_total:
            blocks.append(_section(_listing(
                f"*Findings that block ({blocking_total})*",
                [_finding_line(f, detail) for f in blockers],
                total=blocking_total, cap=detail.blocking, more="more blocking findings")))
        if others_total:
            summary = _severity_summary(others)
            if others_total > len(others):
                summary += (f"{', ' if summary else ''}{others_total - len(others)} not "
                            "included in the notification")
            blocks.append(_section(_listing(
                f"*Other findings that count ({others_total})*: {summary}",
                [_finding_line(f, detail) for f in others],
                total=others_total if others else 0, cap=detail.others, more="more")))
        ignored_total = len(ignored) + _int(omitted.get("ignored"))
        if ignored_total:
            by_reason = _dict(verdict.get("ignored_by_reason")) or Counter(
                str(i.get("why")) for i in ignored)
            reasons_text = ", ".join(f"{clip(why, 40)} {n}" for why, n in by_reason.items())
            blocks.append(_section(f"*Findings ignored ({ignored_total})*: "
                                   f"{reasons_text or 'see the verdict'}"))
        if used:
            blocks.append(_section(_listing(
                f"*Exceptions applied ({len(used)})*",
                [_exception_line(e, detail) for e in used], cap=detail.exceptions)))
        if expiring:
            blocks.append(_section(_listing(
                f"*:hourglass: Exceptions expiring soon ({len(expiring)})*",
                [_exception_line(e, detail) for e in expiring], cap=detail.exceptions)))
        blocks.append(_console_line(url))
        notes = [f"verdict `{clip(doc.get('verdict_id'), 60)}`" if doc.get("verdict_id")
                 else "", _when(doc.get("time"))]
        if doc.get("channel"):
            notes.append(f"channel {clip(doc['channel'], 64)}")
        if _int(omitted.get("counted")) or _int(omitted.get("ignored")):
            notes.append(clip(
                f"The notification left out {_int(omitted.get('counted'))} counted and "
                f"{_int(omitted.get('ignored'))} ignored findings; gatekeeper status "
                f"{plain(image.get('repository'))}@{plain(image.get('digest'))} shows all",
                _CONTEXT_TEXT_MAX))
        blocks.append(_context(*(n for n in notes if n)))
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": [b for b in blocks if b]}

    def minimal() -> dict[str, Any]:
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": [
            _header(f"{icon} {outcome}{monitor}: {name}"),
            _section(clip(first_reason or change, 500)),
            *([_console_line(url)] if url else []),
        ]}

    return _fit(build, minimal)


def _forgery_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    image = _dict(doc.get("image"))
    alert = _dict(doc.get("alert"))
    repository = plain(image.get("repository") or "(unknown repository)")
    tag = plain(alert.get("tag") or "?")
    removed = alert.get("removed") is True
    action = ("removed" if removed else
              "KEPT: it is the image's only tag, and removing it would delete the image")
    url = _console(image)
    fallback = f"Forged marker tag {tag} on {repository}"

    def build(detail: _Detail) -> dict[str, Any]:
        blocks = [
            _header(f":rotating_light: Forged marker tag on {repository}"),
            _section(f"Someone pushed the marker tag *{clip(tag, 150)}* onto "
                     f"*{clip(repository, 300)}*. The gatekeeper writes its marker tags itself: "
                     "the tag is undone and the image re-evaluated. Find who pushed it in "
                     "CloudTrail (`PutImage` on this repository)."),
            _fields([
                ("Repository", clip(repository, 300)),
                ("Digest", _digest(image.get("digest"))),
                ("Tag pushed", clip(tag, 150)),
                ("Action", clip(action, 200)),
                ("Recorded verdict", clip(alert.get("recorded_verdict") or "none yet", 60)),
                ("Time", _when(doc.get("time")) or "?"),
            ]),
            _console_line(url),
        ]
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": [b for b in blocks if b]}

    def minimal() -> dict[str, Any]:
        return {"text": clip(fallback, FALLBACK_TEXT_MAX),
                "blocks": [_header(f":rotating_light: Forged marker tag on {repository}")]}

    return _fit(build, minimal)


def _entry_line(entry: Mapping[str, Any], detail: _Detail) -> str:
    outcome = plain(entry.get("outcome") or "UNKNOWN")
    url = safe_url(entry.get("console_url"), https_only=True)
    name = link(url, _name(entry), 200)
    was = f"was {clip(entry['previous'], 30)}, " if entry.get("previous") else "new, "
    reasons = [r for r in _list(entry.get("reasons")) if r]
    reason = f" — {clip(reasons[0], detail.text)}" if reasons else ""
    more = f" (+{len(reasons) - 1})" if len(reasons) > 1 else ""
    return (f"• {ICONS.get(outcome, ':grey_question:')} *{clip(outcome, 30)}* {name} "
            f"({was}{clip(entry.get('trigger') or '?', 20)}){reason}{more}")


def _digest_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    entries = [_dict(e) for e in _list(doc.get("entries"))]
    omitted = _int(doc.get("omitted_entries"))
    total = len(entries) + omitted
    counts = _dict(doc.get("counts"))
    noun = "change" if total == 1 else "changes"
    title = f":clipboard: Verdict digest: {total} verdict {noun}"
    summary = ", ".join(f"{plain(k)} {v}" for k, v in counts.items())
    fallback = f"Verdict digest: {total} verdict {noun}" + (f" ({summary})" if summary else "")

    def build(detail: _Detail) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [_header(title)]
        if counts:
            blocks.append(_fields([(clip(k, 40), clip(v, 20)) for k, v in counts.items()]))
        if total:
            lines = [_entry_line(e, detail) for e in entries]
            texts = _chunks("*Changes*", lines, total=total, cap=detail.entries)
            blocks.extend(_section(t) for t in texts[:MAX_BLOCKS - 4])
        blocks.append(_context(_when(doc.get("time")),
                               f"channel {clip(doc['channel'], 64)}" if doc.get("channel")
                               else ""))
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": blocks}

    def minimal() -> dict[str, Any]:
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": [
            _header(title), _section(clip(summary or fallback, 1000))]}

    return _fit(build, minimal)


def _refused_line(entry: Mapping[str, Any], detail: _Detail) -> str:
    verdict = f" ({clip(entry['verdict'], 30)})" if entry.get("verdict") else ""
    return (f"• `{clip(entry.get('container') or '?', 100)}` "
            f"{clip(entry.get('image') or '?', 300)}{verdict}: "
            f"{clip(entry.get('reason') or 'no reason given', detail.text)}")


def _deployment_refused_message(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The ECS deployment hook's refusal: the service, its task definition, each refused
    image and why, the allowed ones counted."""
    deployment = _dict(doc.get("deployment"))
    refused = [_dict(e) for e in _list(doc.get("refused"))]
    allowed = [_dict(e) for e in _list(doc.get("allowed"))]
    service = plain(deployment.get("service") or "(unknown service)")
    cluster = plain(deployment.get("cluster") or "?")
    task_definition = plain(deployment.get("task_definition") or "?")
    title = f":no_entry: Deployment refused: {service}"
    fallback = (f"Deployment of ECS service {service} (cluster {cluster}) refused: "
                f"{len(refused)} image(s) not approved")

    def build(detail: _Detail) -> dict[str, Any]:
        blocks: list[dict[str, Any]] = [
            _header(title),
            _section(f"ECS rolls back the deployment of *{clip(service, 200)}*: an image has "
                     "no signed, current APPROVED verdict. `gatekeeper status "
                     "<repository>@<digest>` says why."),
            _fields([
                ("Service", clip(service, 200)),
                ("Cluster", clip(cluster, 200)),
                ("Task definition", clip(task_definition.rsplit("/", 1)[-1], 200)),
                ("Lifecycle stage", clip(deployment.get("lifecycle_stage") or "?", 60)),
                ("Images allowed", clip(len(allowed), 20)),
                ("Time", _when(doc.get("time")) or "?"),
            ]),
        ]
        lines = [_refused_line(e, detail) for e in refused]
        texts = _chunks("*Refused*", lines, total=len(refused), cap=detail.entries)
        blocks.extend(_section(t) for t in texts[:MAX_BLOCKS - 4])
        blocks.append(_context(f"task definition {clip(task_definition, 300)}"))
        return {"text": clip(fallback, FALLBACK_TEXT_MAX), "blocks": blocks}

    def minimal() -> dict[str, Any]:
        return {"text": clip(fallback, FALLBACK_TEXT_MAX),
                "blocks": [_header(title), _section(clip(fallback, 1000))]}

    return _fit(build, minimal)


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "verdict": _verdict_message,
    "forged_marker": _forgery_message,
    "digest": _digest_message,
    "deployment_refused": _deployment_refused_message,
}


def slack_message(document: Mapping[str, Any]) -> dict[str, Any]:
    """The Slack payload (``{"text", "blocks"}``) of a ``gatekeeper.notification/v1`` document.

    Raises :class:`UnsupportedDocument` for another schema or an unknown kind. Anything else
    in the document may be missing or oddly typed: it is shown as unknown, never raised on.
    """
    if not isinstance(document, Mapping) or document.get("schema") != SCHEMA:
        schema = document.get("schema") if isinstance(document, Mapping) else None
        raise UnsupportedDocument(f"not a {SCHEMA} document (schema {schema!r})")
    kind = document.get("kind")
    renderer = _RENDERERS.get(kind) if isinstance(kind, str) else None
    if renderer is None:
        raise UnsupportedDocument(f"unknown notification kind {kind!r}")
    return renderer(document)
