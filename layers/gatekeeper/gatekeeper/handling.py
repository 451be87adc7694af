"""What every Lambda handler does with its event: parse it, hand it to its use case, count
the result, log why. The functions' ``app.py`` modules import this module only: it gives them
the observability decorators and one entry function each (``on_push``, ``on_scan``,
``on_reevaluate``, ``on_sweep``, ``on_slack``, ``on_ecs_hook``, ``on_verdict_api``,
``on_kev_refresh``), bound to
the container's wiring
(:mod:`gatekeeper.runtime`)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gatekeeper import runtime
from gatekeeper.config import ConfigError
from gatekeeper.domain.continuation import parse_continuation, policy_upload
from gatekeeper.domain.events import (
    Ignored,
    ImageEvent,
    Kind,
    MalformedEvent,
    Trigger,
    parse_event,
    parse_reevaluation,
)
from gatekeeper.domain.kev import KEV_KEY
from gatekeeper.observability import (
    EVENTBRIDGE_CORRELATION,
    MetricUnit,
    logger,
    metrics,
    tracer,
)
from gatekeeper.service import Gatekeeper, sweep

if TYPE_CHECKING:
    from gatekeeper.runtime import SweeperDeps
    from gatekeeper.service.ecs_hook import EcsDeploymentHook
    from gatekeeper.service.hub import Hub
    from gatekeeper.service.kev_refresh import KevRefresh
    from gatekeeper.service.slack import SlackNotifier
    from gatekeeper.service.verdict_api import VerdictApi

__all__ = [
    "EVENTBRIDGE_CORRELATION",
    "FUNCTION_URL_CORRELATION",
    "PUSH_KINDS",
    "SCAN_KINDS",
    "logger",
    "metrics",
    "on_ecs_hook",
    "on_kev_refresh",
    "on_push",
    "on_reevaluate",
    "on_scan",
    "on_slack",
    "on_sweep",
    "on_verdict_api",
    "tracer",
]

# A function URL request's id (payload format 2.0), for the verdict API's logs.
FUNCTION_URL_CORRELATION = "requestContext.requestId"

# The EventBridge events each function judges (``gatekeeper replay-dlq`` routes by them too).
PUSH_KINDS: frozenset[Kind] = frozenset({Kind.PUSH})
SCAN_KINDS: frozenset[Kind] = frozenset({Kind.BASIC_SCAN, Kind.ENHANCED_SCAN})

SAFETY_MARGIN = 5.0  # seconds kept back from the Lambda timeout for logging and the raise

# One metric per result, so every invocation is counted by what it led to.
_RESULT_METRICS = {
    "pending": "ImagesPending",
    "unchanged": "VerdictsUnchanged",
    "enforced": "VerdictsEnforced",
    "image-gone": "ImagesGone",
    "stale": "EventsStale",
    "ignored": "EventsIgnored",
    "deferred": "EventsDeferred",
}


_VERDICT_METRICS = {
    "APPROVED": "ImagesApproved",
    "APPROVED_WITH_WARNINGS": "ImagesApprovedWithWarnings",
    "QUARANTINED": "ImagesQuarantined",
}


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def handle_event(event: Any, accept: Collection[Kind],
                 gatekeeper: Callable[[], Gatekeeper],
                 hub: Callable[[], Hub] | None = None) -> dict[str, Any]:
    """One EventBridge event, judged by the gatekeeper of its image's account and Region
    (``hub``; without one, ``gatekeeper`` judges every image)."""
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

    logger.append_keys(repository=parsed.repository, digest=parsed.digest, kind=str(parsed.kind),
                       account=parsed.account, region=parsed.region)
    try:
        result = (hub or _single(gatekeeper))().handle(parsed)
    except Exception:
        logger.exception("event failed; Lambda retries it, then it goes to the dead-letter queue")
        _count("EventsFailed")
        raise
    logger.info("event handled", **result.as_dict())
    _record_metrics(result)
    return result.as_dict()


def _record_metrics(result: Any) -> None:
    if result.status == "judged":
        _count(_VERDICT_METRICS.get(str(result.verdict), "ImagesJudged"))
        _count("VerdictChanges")
        if result.verdict == "QUARANTINED" and result.in_use:
            _count("QuarantinedInUse")  # the alert that matters most: it is running
    else:
        _count(_RESULT_METRICS.get(result.status, "EventsIgnored"))


def _single(gatekeeper: Callable[[], Gatekeeper]) -> Callable[[], Hub]:
    """A hub of one gatekeeper that judges every image (replays, tools)."""
    from gatekeeper.service.hub import Hub

    return lambda: Hub(gatekeeper)


def handle_batch(event: Any, gatekeeper: Callable[[], Gatekeeper],
                 hub: Callable[[], Hub] | None = None) -> dict[str, Any]:
    """An SQS batch of re-evaluation requests and Inspector2 Finding events.

    Messages about the same image are judged once (the queue's batching window is the
    debounce). A failed image reports its messages as failed, so SQS re-delivers only those
    and, after the redrive limit, moves them to the dead-letter queue.
    """
    by_image: dict[tuple[Any, str, str], tuple[ImageEvent, list[str]]] = {}
    failures: list[str] = []
    for record in event.get("Records") or ():
        message_id = record.get("messageId", "?")
        try:
            parsed = parse_reevaluation(json.loads(record.get("body") or "null"))
        except (MalformedEvent, ValueError) as err:
            logger.error("unreadable re-evaluation message; it will reach the dead-letter "
                         "queue", message_id=message_id, reason=str(err))
            _count("EventsMalformed")
            failures.append(message_id)
            continue
        if isinstance(parsed, Ignored):
            logger.info("message ignored", message_id=message_id, reason=parsed.reason)
            _count("EventsIgnored")
            continue
        key = (parsed.scope, parsed.repository, parsed.digest)
        first, ids = by_image.get(key, (parsed, []))
        by_image[key] = (first, [*ids, message_id])

    results = []
    if any(e.trigger == Trigger.POLICY for e, _ in by_image.values()):
        # the container may hold the previous version for its cache period: read it now
        policy = gatekeeper().policies.refresh()
        logger.info("policy re-read for a new version", policy_version=policy.version)
    judge = (hub or _single(gatekeeper))()
    for (_, repository, digest), (image_event, ids) in by_image.items():
        try:
            result = judge.handle(image_event)
        except Exception:
            logger.exception("re-evaluation failed; SQS will retry it", repository=repository,
                             digest=digest, trigger=image_event.trigger,
                             account=image_event.account, region=image_event.region)
            _count("EventsFailed")
            failures.extend(ids)
            continue
        logger.info("re-evaluated", trigger=image_event.trigger, messages=len(ids),
                    **result.as_dict())
        _record_metrics(result)
        if image_event.trigger == Trigger.SCAN_TIMEOUT and result.status == "judged":
            _count("ScanTimeouts")  # no scan in time: judged by on_scan_failure
        results.append(result.as_dict())
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failures],
            "results": results}


def handle_sweep(event: Any, deps: Callable[[], SweeperDeps],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), context: Any = None,
                 *, budget: Callable[[Any], Callable[[], float]] | None = None,
                 page_size: int = sweep.PAGE_SIZE) -> dict[str, Any]:
    """The hourly schedule queues what time changed and sends the digest; a new policy object
    queues everything; the sweep queue's messages go on with a sweep an earlier invocation
    handed on (``budget``: the time left of the invocation, from its ``context``)."""
    store, queue, config, notifier, policies, sweeps = deps()
    time_left = (budget or _time_left)(context)
    paging = {"time_left": time_left, "sweeps": sweeps, "page_size": page_size}
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return _continue_sweeps(event["Records"], deps, paging)
    source = event.get("source") if isinstance(event, dict) else None
    if source == "aws.s3":
        detail = event.get("detail") or {}
        found = detail.get("object") or {}
        key = found.get("key")
        if key == KEV_KEY and key != config.policy_key:
            return _kev_published(store, queue, policies)
        if key != config.policy_key:
            return {"status": "ignored", "reason": f"object {key!r} is not the policy"}
        upload = policy_upload(found.get("version-id"), found.get("sequencer"),
                               event.get("time"), now().isoformat())
        outcome = sweep.policy_sweep(store, queue, upload, **paging)
        _count("PolicyReevaluationsQueued")
        return _swept("policy", outcome)
    if source == "aws.events":
        at = now()
        outcome = sweep.due_sweep(store, queue, at,
                                  timedelta(minutes=config.scan_timeout_minutes), **paging)
        metrics.add_metric(name="SweepReevaluationsQueued", unit=MetricUnit.Count,
                           value=outcome.queued)
        digested = sweep.send_digests(store, notifier, at, _published(policies))
        if digested:
            metrics.add_metric(name="VerdictsDigested", unit=MetricUnit.Count, value=digested)
        return {**_swept("sweep", outcome), "digested": digested}
    logger.info("event ignored", reason="not a schedule nor a policy upload", source=source)
    return {"status": "ignored", "reason": "not a schedule nor a policy upload"}


def _kev_published(store: Any, queue: Any, policies: Any) -> dict[str, Any]:
    """A new KEV catalog copy: every judged image is queued if the published policy uses
    block_if_known_exploited (an added CVE may quarantine an approved image); else nothing."""
    policy = policies.get() if policies is not None else None
    if policy is None or not policy.uses_known_exploited:
        logger.info("KEV catalog written; no rule uses it",
                    policy_version=getattr(policy, "version", None))
        return {"status": "ignored", "reason": "no rule of the policy uses the KEV catalog"}
    count = sweep.policy_published(store, queue)
    _count("KevReevaluationsQueued")
    logger.info("KEV catalog written: queued every judged image", count=count,
                policy_version=policy.version)
    return {"status": "queued", "trigger": "kev", "count": count}


def handle_kev_refresh(refresh: Callable[[], KevRefresh]) -> dict[str, Any]:
    """The daily schedule: refresh the bucket's KEV catalog (a failure keeps the last copy and
    alerts the operator topic; the invocation still succeeds, the next run tries again)."""
    result = refresh()()
    _count({"updated": "KevCatalogUpdated", "unchanged": "KevCatalogUnchanged"}.get(
        result.status, "KevRefreshFailed"))
    logger.info("KEV refresh done", **result.as_dict())
    return result.as_dict()


def _published(policies: Any) -> Any:
    """The published policy, for the digest's exceptions; None (the digest goes without
    them) when it cannot be read: the digest of verdict changes must not wait for it."""
    if policies is None:
        return None
    try:
        return policies.get()
    except Exception as err:
        logger.warning("policy unreadable; the digest lists no exceptions", reason=str(err))
        return None


def _swept(trigger: str, outcome: sweep.SweepOutcome) -> dict[str, Any]:
    """A sweep's result: what it queued, and whether it handed the rest on or was stopped."""
    result: dict[str, Any] = {"status": "superseded" if outcome.superseded else "queued",
                              "trigger": trigger, "count": outcome.queued}
    if outcome.handed_on:
        _count("SweepsHandedOn")
        result["handed_on"] = True
    return result


def _continue_sweeps(records: list[Any], deps: Callable[[], SweeperDeps],
                     paging: dict[str, Any]) -> dict[str, Any]:
    """The sweep queue's batch (one message each, BatchSize 1): each continuation goes on.
    A message that cannot be read, or whose sweep fails, is reported failed: SQS delivers it
    again, and after the redrive limit moves it to the dead-letter queue (never a loop)."""
    store, queue, config, *_ = deps()
    failures: list[str] = []
    results = []
    for record in records:
        message_id = (record.get("messageId") if isinstance(record, dict) else None) or "?"
        try:
            continuation = parse_continuation(record.get("body")
                                              if isinstance(record, dict) else None)
        except MalformedEvent as err:
            logger.error("unreadable sweep continuation; it will reach the dead-letter queue",
                         message_id=message_id, reason=str(err))
            _count("SweepContinuationsMalformed")
            failures.append(message_id)
            continue
        try:
            outcome = sweep.continue_sweep(
                store, queue, continuation, timedelta(minutes=config.scan_timeout_minutes),
                **paging)
        except Exception:
            logger.exception("sweep continuation failed; SQS will retry it",
                             message_id=message_id, sweep=continuation.sweep)
            _count("EventsFailed")
            failures.append(message_id)
            continue
        if continuation.sweep == "due":
            metrics.add_metric(name="SweepReevaluationsQueued", unit=MetricUnit.Count,
                               value=outcome.queued)
        results.append(_swept("policy" if continuation.sweep == "policy" else "sweep",
                              outcome))
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failures],
            "results": results}


def _time_left(context: Any) -> Callable[[], float]:
    """Seconds left for posting: the invocation's remaining time less a safety margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    budget = (remaining() / 1000 if callable(remaining) else 60.0) - SAFETY_MARGIN
    end = time.monotonic() + max(1.0, budget)
    return lambda: end - time.monotonic()


def handle_sns(event: Any, notifier: Callable[[], SlackNotifier],
               context: Any = None) -> dict[str, int]:
    """Post every record's notification; raise (after trying them all) if any failed."""
    # the Slack function's own modules, which the judging functions never load
    from gatekeeper.adapters.webhook import WebhookError
    from gatekeeper.service.slack import MalformedNotification, deliver

    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        logger.error("malformed SNS event rejected: no Records; it goes to the dead-letter "
                     "queue")
        _count("SlackNotificationsMalformed")
        raise MalformedNotification("the event has no SNS Records")
    try:
        slack = notifier()
    except ConfigError as err:
        logger.error("Slack notifier not configured; the invocation fails", reason=str(err))
        raise
    time_left = _time_left(context)
    outcomes: Counter[str] = Counter()
    errors: list[Exception] = []
    for record in records:
        try:
            outcomes[deliver(record, slack, time_left)] += 1
        except (MalformedNotification, ConfigError, WebhookError) as err:
            errors.append(err)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise WebhookError(f"{len(errors)} of {len(records)} notifications failed; first: "
                           f"{errors[0]}")
    return dict(outcomes)


# An ECS hook answer, counted by what led to it.
_HOOK_METRICS = {
    "allowed": "DeploymentsAllowed",
    "refused": "DeploymentsRefused",
    "malformed": "DeploymentHookErrors",
    "error": "DeploymentHookErrors",
}


def handle_ecs_hook(event: Any, hook: Callable[[], EcsDeploymentHook]) -> dict[str, str]:
    """An ECS deployment lifecycle hook: ``{"hookStatus": "SUCCEEDED"}`` only when every
    image of the deployment may run; FAILED (ECS rolls back) otherwise, and on any error,
    a configuration error included. It never raises: the answer is always the hook's."""
    try:
        outcome = hook().handle(event)
    except Exception as err:  # the hook could not even be built: fail closed
        logger.exception("deployment refused: the hook is not configured",
                         reason=f"{type(err).__name__}: {err}")
        _count("DeploymentHookErrors")
        return {"hookStatus": "FAILED"}
    _count(_HOOK_METRICS.get(outcome.result, "DeploymentHookErrors"))
    logger.info("lifecycle hook answered", hook_status=outcome.status, result=outcome.result,
                task_definition=outcome.task_definition)
    return outcome.response()


def handle_http(event: Any, api: Callable[[], VerdictApi]) -> dict[str, Any]:
    """A Lambda function URL request (payload format 2.0) answered by the verdict API.

    Always a function URL response: a 4xx for what the caller sent wrong, 503 when the
    verdict could not be read, 500 only for a fault of the function itself (logged)."""
    from gatekeeper.service.verdict_api import Response, error

    context = event.get("requestContext") if isinstance(event, dict) else None
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else None
    path = event.get("rawPath") if isinstance(event, dict) else None
    if not isinstance(path, str) and isinstance(http, dict):
        path = http.get("path")
    response: Response
    if not isinstance(method, str) or not isinstance(path, str):
        logger.warning("not a function URL request (payload format 2.0)")
        response = error(400, "bad-request", "not a function URL request (payload format 2.0)")
    else:
        try:
            response = api().answer(method, path)
        except ConfigError as err:
            logger.error("verdict API not configured", reason=str(err))
            response = error(500, "misconfigured", "the verdict API is not configured")
        except Exception:
            logger.exception("verdict request failed")
            response = error(500, "internal", "the verdict API failed; see its logs")
    logger.info("verdict request answered", method=method, path=_shown(path),
                status=response.status, code=response.code)
    _count("VerdictRequests")
    if response.status == 503:
        _count("VerdictRequestsUnavailable")
    return {"statusCode": response.status, "headers": response.headers,
            "body": "" if response.body is None else json.dumps(response.body),
            "isBase64Encoded": False}


def _shown(value: object) -> object:
    """A caller's value for a log line, cut short."""
    return value[:300] if isinstance(value, str) else value


# --- one entry per function, bound to the container's wiring (looked up on every call, so
# tests may replace runtime's factories) ---------------------------------------------------

def on_push(event: Any) -> dict[str, Any]:
    """ECR push: judge the image if it was already scanned, else record it as pending."""
    return handle_event(event, accept=PUSH_KINDS, gatekeeper=runtime.gatekeeper, hub=runtime.hub)


def on_scan(event: Any) -> dict[str, Any]:
    """ECR basic scan and Inspector2 scan results: judge, tag and notify."""
    return handle_event(event, accept=SCAN_KINDS, gatekeeper=runtime.gatekeeper, hub=runtime.hub)


def on_reevaluate(event: Any) -> dict[str, Any]:
    """The re-evaluation queue's SQS batches."""
    return handle_batch(event, gatekeeper=runtime.gatekeeper, hub=runtime.hub)


def on_sweep(event: Any, context: Any = None) -> dict[str, Any]:
    """The hourly schedule, policy uploads and the sweep queue's continuations."""
    return handle_sweep(event, deps=runtime.sweeper, now=runtime.now, context=context)


def on_slack(event: Any, context: Any) -> dict[str, int]:
    """The verdict topic's notifications, posted to Slack."""
    return handle_sns(event, notifier=runtime.slack_notifier, context=context)


def on_ecs_hook(event: Any) -> dict[str, str]:
    """An ECS service deployment's lifecycle hook: SUCCEEDED only if every image may run."""
    return handle_ecs_hook(event, hook=runtime.ecs_hook)


def on_verdict_api(event: Any) -> dict[str, Any]:
    """The verdict API's function URL requests."""
    return handle_http(event, api=runtime.verdict_api)


def on_kev_refresh(event: Any) -> dict[str, Any]:
    """The daily schedule: CISA's KEV catalog, downloaded to the policy bucket."""
    return handle_kev_refresh(refresh=runtime.kev_refresh)
