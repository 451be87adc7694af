"""What every handler does with an event: parse it, judge it, count it, log why."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from gatekeeper.domain.events import Ignored, Kind, MalformedEvent, parse_event
from gatekeeper.observability import MetricUnit, logger, metrics
from gatekeeper.service import Gatekeeper

# One metric per result, so every invocation is counted by what it led to.
_RESULT_METRICS = {
    "pending": "ImagesPending",
    "unchanged": "VerdictsUnchanged",
    "enforced": "VerdictsEnforced",
    "image-gone": "ImagesGone",
    "stale": "EventsStale",
    "ignored": "EventsIgnored",
}


_VERDICT_METRICS = {
    "APPROVED": "ImagesApproved",
    "APPROVED_WITH_WARNINGS": "ImagesApprovedWithWarnings",
    "QUARANTINED": "ImagesQuarantined",
}


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def handle_event(event: Any, accept: Collection[Kind],
                 gatekeeper: Callable[[], Gatekeeper]) -> dict[str, Any]:
    try:
        parsed = parse_event(event)
    except MalformedEvent as err:
        logger.error("malformed event rejected; it goes to the dead-letter queue",
                     reason=str(err))
        _count("EventsMalformed")
        raise
    if isinstance(parsed, Ignored) or parsed.kind not in accept:
        reason = parsed.reason if isinstance(parsed, Ignored) else (
            f"{parsed.kind} event delivered to a handler for {', '.join(sorted(accept))}")
        logger.info("event ignored", reason=reason,
                    source=event.get("source"), detail_type=event.get("detail-type"))
        _count("EventsIgnored")
        return {"status": "ignored", "reason": reason}

    logger.append_keys(repository=parsed.repository, digest=parsed.digest, kind=str(parsed.kind))
    try:
        result = gatekeeper().handle(parsed)
    except Exception:
        logger.exception("event failed; Lambda retries it, then it goes to the dead-letter queue")
        _count("EventsFailed")
        raise
    logger.info("event handled", **result.as_dict())
    if result.status == "judged":
        _count(_VERDICT_METRICS.get(str(result.verdict), "ImagesJudged"))
        _count("VerdictChanges")
    else:
        _count(_RESULT_METRICS.get(result.status, "EventsIgnored"))
    return result.as_dict()
