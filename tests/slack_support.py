"""Helpers for the Slack notifier's tests: notification documents built by the gatekeeper's
own notification code, findings by the thousand or hostile, and SNS events around them."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import parse_policy
from gatekeeper.domain.verdict import Verdict
from gatekeeper.render.notification import (
    ImageRef,
    digest_entry,
    digest_notification,
    forgery_notification,
    verdict_notification,
)
from tests.domain_support import ACCOUNT, EVENTS, REGION

DIGEST = "sha256:0a87789e4064d1f3b5a0c9e2f7d6b4a1c3e5f7091b2d4f6a8c0e2f4a6b8d0f2a"
STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
# Text that would be a mention, a broadcast or a hidden link if Slack parsed it as markup.
HOSTILE = ("<!channel> <!here|here> <@U123ABC> <#C0123|general> <!subteam^S012> "
           "<http://evil.example|click here> a & b &amp; <https://x.example> >quote")
# Unicode that must come through whole: emoji (one outside the BMP, one ZWJ sequence), RTL
# (Arabic and Hebrew with an RTL override), combining marks, CJK.
UNICODE = ("🚨 👩‍💻 مكتبة ‮txt.exe‭ עברית e\u0301a\u0300 Z\u0351\u0362a\u0352l\u035bg"
           "\u0315o 漢字 ✓")


def finding(index: int, severity: Severity = Severity.HIGH, **fields: Any) -> Finding:
    defaults: dict[str, Any] = {
        "package": f"lib{index % 97}", "installed_version": f"1.{index % 13}.0",
        "fixed_version": f"1.{index % 13}.1", "fix_available": True, "score": 7.5,
        "uri": f"https://nvd.nist.gov/vuln/detail/CVE-2026-{index:05d}",
    }
    defaults.update(fields)
    return Finding(f"CVE-2026-{index:05d}", severity, Source.ENHANCED, **defaults)


def many_findings(count: int) -> list[Finding]:
    """``count`` findings over every severity, a quarter of them CRITICAL."""
    order = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW]
    return [finding(i, order[i % 4]) for i in range(count)]


def judged(findings: Iterable[Finding], policy: str = STRICT,
           repository: str = "team-b/api") -> Verdict:
    return evaluation.evaluate(parse_policy(policy, version="3Hb5yQ1oVfA"), repository,
                               list(findings))


def image(repository: str = "team-b/api", digest: str = DIGEST,
          tags: Sequence[str] = ("2.0.0",)) -> ImageRef:
    return ImageRef(repository, digest, tuple(tags), ACCOUNT, REGION)


def verdict_document(verdict: Verdict, *, ref: ImageRef | None = None,
                     previous: str | None = None, verdict_id: str = "0a87789e4064-1",
                     channel: str | None = "team-b", trigger: str = "basic-scan",
                     marker: str | None = "quarantined-0a87789e4064") -> dict[str, Any]:
    """The ``gatekeeper.notification/v1`` document the gatekeeper publishes for a verdict."""
    ref = ref or image()
    return verdict_notification(ref, verdict, previous=previous, marker=marker,
                                trigger=trigger, tags=ref.tags, verdict_id=verdict_id,
                                channel=channel, time="2026-11-20T01:55:49Z").document


def forgery_document(ref: ImageRef | None = None, tag: str = "approved-0a87789e4064",
                     removed: bool = True) -> dict[str, Any]:
    return forgery_notification(ref or image(), tag, removed=removed, verdict="QUARANTINED",
                                time="2026-11-20T02:00:00Z").document


def digest_document(count: int, repository: str = "team-a/web") -> dict[str, Any]:
    verdict = judged([finding(1, Severity.CRITICAL)])
    entries = [digest_entry(image(f"{repository}-{i}", tags=(f"v{i}",)), verdict,
                            previous="APPROVED", trigger="policy", tags=(f"v{i}",),
                            verdict_id=f"{i:012x}-2", time="2026-11-20T03:00:00Z")
               for i in range(count)]
    return digest_notification(entries, time="2026-11-20T04:00:00Z").document


def exceptions_policy(ids: Iterable[str], owner: str = "appsec@example.com",
                      reason: str = "patched image ships Friday",
                      expires: date = date(2099, 1, 31)) -> str:
    return STRICT + "exceptions:\n" + "".join(
        f"  - {{id: {i}, expires: {expires.isoformat()}, reason: {json.dumps(reason)}, "
        f"owner: {json.dumps(owner)}, ticket: SEC-1234}}\n" for i in ids)


def sns_event(*documents: Any, message_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """The recorded SNS → Lambda event (events/sns-verdict-notification.json), one record per
    document (a dict becomes its JSON; a string is the message as is)."""
    recorded = json.loads((EVENTS / "sns-verdict-notification.json").read_text())
    template = recorded["Records"][0]
    records = []
    for index, document in enumerate(documents):
        record = copy.deepcopy(template)
        record["Sns"]["Message"] = (document if isinstance(document, str)
                                    else json.dumps(document, ensure_ascii=False))
        record["Sns"]["MessageId"] = (message_ids[index] if message_ids
                                      else f"00000000-0000-4000-8000-{index:012d}")
        records.append(record)
    return {"Records": records}


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    """Every text of a payload Slack parses as mrkdwn (the fallback text included)."""
    texts = [payload.get("text", "")]
    for block in payload["blocks"]:
        if block.get("text", {}).get("type") == "mrkdwn":
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return texts


def plain_texts(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"]
            if b.get("text", {}).get("type") == "plain_text"]
