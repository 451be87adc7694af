"""EventBridge events from ECR and Amazon Inspector, parsed into typed values.

Three kinds concern the gatekeeper: an image push, a basic scan result and an Inspector
(enhanced) scan result. Anything else that arrives on the same sources (deletes, storage
class changes, replication, referrers, scan configuration changes) is *ignored* with a
reason; anything that claims to be one of our kinds but cannot be read is *malformed* and
raises, so that it ends in the dead-letter queue instead of producing a verdict.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gatekeeper.domain.scope import Scope, ScopeError, scope_of

# Patterns are used with fullmatch: "$" alone would accept a trailing newline.
_DIGEST = re.compile(r"sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})")
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-]+[a-z0-9]+)*/)*[a-z0-9]+(?:[._-]+[a-z0-9]+)*")
_REPOSITORY_ARN = re.compile(
    r"arn:[a-z0-9-]+:ecr:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):repository/(?P<name>.+)")


class Kind(enum.StrEnum):
    PUSH = "push"
    BASIC_SCAN = "basic-scan"
    ENHANCED_SCAN = "enhanced-scan"
    REEVALUATE = "reevaluate"  # not from EventBridge: the gatekeeper's own re-evaluations


class Trigger(enum.StrEnum):
    """What caused a re-evaluation; recorded in the verdict history."""

    FINDING = "finding"  # Inspector2 Finding events (created, updated, closed)
    POLICY = "policy"  # a new policy version was published
    EXPIRY = "expiry"  # an exception expired or a grace period ended
    SCAN_TIMEOUT = "scan-timeout"  # pushed, but no scan result in time
    FORGERY = "forgery"  # a marker tag the gatekeeper did not write was pushed
    PLATFORM = "platform"  # a platform image of this image index changed verdict
    OPERATOR = "operator"  # gatekeeper reevaluate
    DEFERRED = "deferred"  # an event put off because its account was throttled or unreachable


@dataclass(frozen=True)
class ImageEvent:
    kind: Kind
    repository: str
    digest: str
    tags: tuple[str, ...]
    event_id: str
    scan_status: str | None = None
    account: str | None = None
    region: str | None = None
    time: str | None = None
    trigger: str | None = None  # for REEVALUATE: a Trigger
    attempt: int = 0  # times this image's event was put off (an account throttled or unreachable)

    @property
    def cause(self) -> str:
        return self.trigger or str(self.kind)

    @property
    def scope(self) -> Scope | None:
        """The account and Region the image lives in, when the event names both."""
        return scope_of(self.account, self.region)


def reevaluation(repository: str, digest: str, trigger: Trigger,
                 tags: tuple[str, ...] = (), scope: Scope | None = None) -> ImageEvent:
    return ImageEvent(Kind.REEVALUATE, repository, digest, tags, event_id=f"reevaluate:{trigger}",
                      trigger=str(trigger), account=scope.account if scope else None,
                      region=scope.region if scope else None)


@dataclass(frozen=True)
class Ignored:
    reason: str
    source: str | None = None
    detail_type: str | None = None


class MalformedEvent(ValueError):
    """An event of a kind we handle that cannot be read; it must never yield a verdict."""


def parse_event(event: Any) -> ImageEvent | Ignored:
    if not isinstance(event, Mapping):
        raise MalformedEvent(f"event is {type(event).__name__}, not a JSON object")
    source = _str(event.get("source"))
    detail_type = _str(event.get("detail-type"))
    detail = event.get("detail")
    kind = _KINDS.get((source, detail_type))
    if kind is None:
        return Ignored(f"not an event the gatekeeper handles ({source} / {detail_type})",
                       source, detail_type)
    if not isinstance(detail, Mapping):
        raise MalformedEvent(f"{detail_type}: 'detail' is missing or not an object")
    if kind is Kind.PUSH:
        action, result = detail.get("action-type"), detail.get("result")
        if action != "PUSH":
            return Ignored(f"ECR Image Action with action-type {action!r}", source, detail_type)
        if result != "SUCCESS":
            return Ignored(f"ECR image push with result {result!r}", source, detail_type)
        tag = detail.get("image-tag")
        if tag is not None and (not isinstance(tag, str) or not tag):
            raise MalformedEvent("detail.image-tag must be a non-empty string when present")
        tags: tuple[str, ...] = (tag,) if tag else ()
        status = None
    else:
        raw_tags = detail.get("image-tags", [])
        if raw_tags is None:
            raw_tags = []
        if not isinstance(raw_tags, list) or not all(isinstance(t, str) and t for t in raw_tags):
            raise MalformedEvent("detail.image-tags must be a list of non-empty strings")
        tags = tuple(raw_tags)
        status = detail.get("scan-status")
        if not isinstance(status, str) or not status:
            raise MalformedEvent("detail.scan-status must be a non-empty string")
    # The image's own account and Region: an Inspector2 event names the repository by its
    # ARN, which says them even where the event is delivered elsewhere (a delegated
    # administrator's bus); otherwise the account and Region the event came from.
    raw_repository = detail.get("repository-name")
    arn = _REPOSITORY_ARN.fullmatch(raw_repository) if isinstance(raw_repository, str) else None
    account = arn["account"] if arn else _str(event.get("account"))
    region = arn["region"] if arn else _str(event.get("region"))
    _check_scope(account, region)
    return ImageEvent(
        kind=kind,
        repository=_repository(raw_repository, kind),
        digest=_digest(detail.get("image-digest")),
        tags=tags,
        event_id=_str(event.get("id")) or "unknown",
        scan_status=status,
        account=account,
        region=region,
        time=_str(event.get("time")),
    )


_KINDS = {
    ("aws.ecr", "ECR Image Action"): Kind.PUSH,
    ("aws.ecr", "ECR Image Scan"): Kind.BASIC_SCAN,
    ("aws.inspector2", "Inspector2 Scan"): Kind.ENHANCED_SCAN,
}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _check_scope(account: str | None, region: str | None) -> Scope | None:
    """Where the image lives: both or neither of account and Region, each well formed (an
    image must never be judged, or marked, in an account it is not in)."""
    try:
        return scope_of(account, region)
    except ScopeError as err:
        raise MalformedEvent(f"the event's account or Region: {err}") from None


def _digest(value: Any) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise MalformedEvent(f"detail.image-digest is not an image digest: {value!r:.100}")
    return value


def _repository(value: Any, kind: Kind) -> str:
    if not isinstance(value, str):
        raise MalformedEvent(f"detail.repository-name is missing or not a string: {value!r:.100}")
    name = value
    arn = _REPOSITORY_ARN.fullmatch(value)
    if arn:  # Inspector2 Scan names the repository by its ARN
        name = arn.group("name")
    if not (2 <= len(name) <= 256) or not _REPOSITORY.fullmatch(name):
        raise MalformedEvent(f"detail.repository-name is not a repository name: {value!r:.100}")
    return name


# --- re-evaluation requests (the re-evaluation queue) ------------------------------------------

_IMAGE_ARN = re.compile(
    r"arn:[a-z0-9-]+:ecr:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"repository/(?P<repository>.+)/(?P<digest>sha256:[0-9a-f]{64})")
REQUEST_MARK = "gatekeeper.reevaluate/v1"
MAX_ATTEMPT = 10_000


def reevaluation_request(repository: str, digest: str, trigger: Trigger,
                         scope: Scope | None = None) -> dict[str, str]:
    """The message the sweeper (and a deferred event) puts on the re-evaluation queue; an
    image outside the hub's home scope carries its account and Region."""
    request = {"schema": REQUEST_MARK, "repository": repository, "digest": digest,
               "trigger": str(trigger)}
    if scope is not None:
        request.update(account=scope.account, region=scope.region)
    return request


def parse_reevaluation(message: Any) -> ImageEvent | Ignored:
    """A re-evaluation request, or an ``Inspector2 Finding`` event about an ECR image."""
    if not isinstance(message, Mapping):
        raise MalformedEvent(f"message is {type(message).__name__}, not a JSON object")
    if message.get("schema") == REQUEST_MARK:
        trigger = message.get("trigger")
        if trigger not in Trigger.__members__.values():
            raise MalformedEvent(f"unknown re-evaluation trigger {trigger!r:.50}")
        attempt = message.get("attempt", 0)
        if type(attempt) is not int or not 0 <= attempt <= MAX_ATTEMPT:
            raise MalformedEvent(f"re-evaluation attempt is not a count: {attempt!r:.50}")
        event = reevaluation(_repository(message.get("repository"), Kind.REEVALUATE),
                             _digest(message.get("digest")), Trigger(trigger),
                             scope=_check_scope(message.get("account"), message.get("region")))
        return replace(event, attempt=attempt) if attempt else event
    if (message.get("source"), message.get("detail-type")) != ("aws.inspector2",
                                                                "Inspector2 Finding"):
        return Ignored("not an Inspector2 Finding event nor a re-evaluation request",
                       _str(message.get("source")), _str(message.get("detail-type")))
    for resource in message.get("resources") or ():
        match = _IMAGE_ARN.fullmatch(resource) if isinstance(resource, str) else None
        if match:
            return reevaluation(_repository(match.group("repository"), Kind.REEVALUATE),
                                _digest(match.group("digest")), Trigger.FINDING,
                                scope=_check_scope(match["account"], match["region"]))
    detail = message.get("detail")
    for resource in (detail.get("resources") if isinstance(detail, Mapping) else None) or ():
        details = resource.get("details") if isinstance(resource, Mapping) else None
        image = details.get("awsEcrContainerImage") if isinstance(details, Mapping) else None
        if isinstance(image, Mapping):
            scope = _check_scope(_str(message.get("account")), _str(message.get("region")))
            return reevaluation(_repository(image.get("repositoryName"), Kind.REEVALUATE),
                                _digest(image.get("imageHash")), Trigger.FINDING, scope=scope)
    return Ignored("Inspector2 Finding about something other than an ECR image",
                   "aws.inspector2", "Inspector2 Finding")
