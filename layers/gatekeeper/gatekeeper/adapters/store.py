"""DynamoDB: one item per image holding its current verdict and the state of its side effects.

Item key: ``pk = IMAGE#<repository>@<digest>``, ``sk = VERDICT``, for an image of the stack's
own account and Region (its *home* scope; every item of a single-account stack), and
``pk = IMAGE#<account>:<region>:<repository>@<digest>`` for a member account's image judged
by an organization's hub (``:`` is in no repository name, so the two never collide); such an
item also carries ``account`` and ``region``, and an item without them is the home scope's, so
a table written before organization mode needs no migration. Beside it one history item
per verdict change, ``sk = H#<decided_at>#<revision>``, written in the same transaction and
expiring (``expires_at``, DynamoDB TTL) after the retention the stack sets.
Every write is conditional on the revision read before it (optimistic locking), so two
deliveries of the same event racing each other cannot both commit a change. The record also
carries the image's lease (``lease_owner``, ``lease_until``): the one writer allowed to change
the image's tags, storage class and notices until it settles (see gatekeeper.service.lease).

Every item is bounded whatever happens: tags are the image's own (capped, with a count of the
rest), and an item that would still come near DynamoDB's 400 KB limit has its reasons
shortened rather than failing every event for that image forever.

The hourly sweep reads only what is due through ``DueIndex``, a sparse global secondary index:
a current-verdict item carries ``due_shard`` and ``due_at`` only while time alone can change it
(``due_at = P#<created_at>`` for an image still waiting for its scan, ``R#<review_at>`` for an
exception expiring or a grace period ending); settled items with nothing to review, history,
index links and digest items are not in it. ``due_shard`` spreads the index over DUE_SHARDS
partitions (see there). Items written before the index existed are given the attributes once
by ``backfill_due_index``, which records that it is done in the item ``pk = SWEEP``,
``sk = DUE_INDEX``.

Verdict changes held for the periodic digest: ``pk = DIGEST``, ``sk = <decided_at>#<verdict
id>`` (a redelivery writes the same item again), deleted once the digest is published.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from gatekeeper.domain.findings import InUse
from gatekeeper.domain.scope import Scope, scope_of

PENDING = "PENDING"
_DIGEST = "DIGEST"
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
MAX_TAGS = 100  # tags kept on a record (notices name them); the rest are counted
MAX_ITEM_BYTES = 300_000  # well below DynamoDB's 400 KB item limit
MAX_REASON_CHARS = 2_000
DUE_INDEX = "DueIndex"
# Every write of a due item (each push of an image not yet scanned, for one) also writes the
# index; 8 partitions keep a burst of pushes far below one partition's write limit while the
# hourly sweep costs only 16 small Queries (two per shard) when nothing is due.
DUE_SHARDS = 8
_PENDING_DUE = "P#"
_REVIEW_DUE = "R#"
_BACKFILL_MARKER = {"pk": {"S": "SWEEP"}, "sk": {"S": "DUE_INDEX"}}
_MEMBER_PK = re.compile(r"IMAGE#(?P<account>[0-9]{12}):(?P<region>[a-z0-9-]+):")
# The newest policy upload a sweep was started for (superseded sweeps stop).
_POLICY_SWEEP_MARKER = {"pk": {"S": "SWEEP"}, "sk": {"S": "POLICY"}}


class Conflict(Exception):
    """Someone else changed the item since it was read."""


@dataclass(frozen=True)
class ImageRecord:
    repository: str
    digest: str
    state: str = PENDING  # PENDING, APPROVED or QUARANTINED
    revision: int = 0
    tags: tuple[str, ...] = ()
    marker: str | None = None  # the marker tag this verdict wants on the image
    settled: bool = True  # tags and notification done for this verdict
    reasons: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    highest_severity: str | None = None
    policy_version: str | None = None
    matched_rule: str | None = None
    scan_status: str | None = None
    scan_completed_at: str | None = None
    decided_at: str | None = None
    trigger: str | None = None
    gone: bool = False
    review_at: str | None = None  # when time alone (an exception expiring, a grace period
    # ending) can change this verdict: the sweeper re-evaluates it then
    created_at: str | None = None  # first seen (push or scan): the scan timeout counts from it
    previous_state: str | None = None  # the verdict before this one (for a retried notice)
    archived: bool = False  # moved to the ARCHIVE storage class by the gatekeeper
    platforms: tuple[tuple[str, str], ...] = ()  # an image index: (digest, platform) pairs
    policy_order: str | None = None  # when the judging policy was published (newest wins)
    tags_omitted: int = 0  # the image's tags beyond MAX_TAGS, not kept
    verdict_revision: int = 0  # the revision that committed this verdict (its verdict_id)
    lease_owner: str | None = None  # the writer holding the image (None: free)
    lease_until: float = 0.0  # epoch seconds; a lease past it may be taken over
    envelope: dict[str, Any] | None = None  # the verdict, signed (a DSSE envelope; see
    # gatekeeper.domain.attestation); None when the stack has no signing key
    account: str | None = None  # the image's account and Region when it is not in the
    region: str | None = None  # hub's own (None: the home scope, as every older item)
    in_use: InUse | None = None  # whether the image runs (enhanced scans); None: unknown
    exceptions_used: tuple[str, ...] = ()  # the ids of the policy exceptions the verdict
    # applied (older items: none recorded)

    @property
    def scope(self) -> Scope | None:
        """The member account and Region the image lives in (None: the home scope)."""
        return scope_of(self.account, self.region)

    def leased_by_other(self, owner: str, now: float) -> bool:
        """Another writer holds this image's lease and it has not expired."""
        return bool(self.lease_owner) and self.lease_owner != owner and self.lease_until > now

    @property
    def verdict_id_revision(self) -> int:
        """The revision a notice of this verdict names (older items: the record's own)."""
        return self.verdict_revision or self.revision

    @property
    def judged(self) -> bool:
        return self.state != PENDING

    @property
    def complete(self) -> bool:
        """Judged, with its tags and notification done, on an image that still exists."""
        return self.judged and self.settled and not self.gone


def _pk(repository: str, digest: str, scope: Scope | None = None) -> dict[str, str]:
    where = f"{scope.key}:" if scope is not None else ""
    return {"S": f"IMAGE#{where}{repository}@{digest}"}


def _key(repository: str, digest: str, scope: Scope | None = None) -> dict[str, Any]:
    return {"pk": _pk(repository, digest, scope), "sk": {"S": "VERDICT"}}


def due_at(record: ImageRecord) -> str | None:
    """The record's sort key in DueIndex (None: nothing can fall due, not in the index).

    An image waiting for its scan is due from ``created_at`` (the sweep compares it with now
    minus the scan timeout); otherwise a record is due at its ``review_at``.
    """
    if record.state == PENDING and record.created_at:
        return _PENDING_DUE + record.created_at
    if record.review_at:
        return _REVIEW_DUE + record.review_at
    return None


def due_shard(digest: str) -> int:
    """The DueIndex partition of an image (stable across processes, unlike ``hash``)."""
    return zlib.crc32(digest.encode()) % DUE_SHARDS


def _due_attributes(record: ImageRecord) -> dict[str, Any]:
    due = due_at(record)
    if due is None:
        return {}
    return {"due_shard": {"N": str(due_shard(record.digest))}, "due_at": {"S": due}}


def _to_item(record: ImageRecord) -> dict[str, Any]:
    plain: dict[str, Any] = {
        "repository": record.repository,
        "digest": record.digest,
        "state": record.state,
        "revision": record.revision,
        "tags": list(record.tags),
        "settled": record.settled,
        "reasons": list(record.reasons),
        "counts": dict(record.counts),
        "gone": record.gone,
        "archived": record.archived,
        "platforms": [list(p) for p in record.platforms],
    }
    if record.tags_omitted:
        plain["tags_omitted"] = record.tags_omitted
    if record.verdict_revision:
        plain["verdict_revision"] = record.verdict_revision
    if record.envelope is not None:
        plain["envelope"] = record.envelope
    if record.in_use is not None:
        plain["in_use"] = {k: v for k, v in record.in_use.as_dict().items() if v is not None}
    if record.exceptions_used:
        plain["exceptions_used"] = list(record.exceptions_used)
    if record.lease_owner:
        plain["lease_owner"] = record.lease_owner
        plain["lease_until"] = Decimal(str(round(record.lease_until, 3)))
    for name in ("marker", "highest_severity", "policy_version", "matched_rule", "scan_status",
                 "scan_completed_at", "decided_at", "trigger", "review_at", "created_at",
                 "previous_state", "policy_order", "account", "region"):
        value = getattr(record, name)
        if value is not None:
            plain[name] = value
    item = {name: _SERIALIZER.serialize(value) for name, value in plain.items()}
    item.update(_due_attributes(record))
    item.update(_key(record.repository, record.digest, record.scope))
    return item


def bounded(record: ImageRecord, limit: int = MAX_ITEM_BYTES) -> ImageRecord:
    """The record as it can always be stored: at most MAX_TAGS tags (the rest counted), each
    reason at most MAX_REASON_CHARS, and reasons dropped from the end (with a note saying how
    many) while the item would exceed ``limit`` bytes (its envelope counted: a verdict is
    bounded to a third of MAX_ITEM_BYTES before it is signed, so that the record and its
    envelope fit together)."""
    if len(record.tags) > MAX_TAGS:
        record = replace(record, tags=record.tags[:MAX_TAGS],
                         tags_omitted=record.tags_omitted + len(record.tags) - MAX_TAGS)
    reasons = tuple(r if len(r) <= MAX_REASON_CHARS else r[:MAX_REASON_CHARS - 1] + "…"
                    for r in record.reasons)
    record = replace(record, reasons=reasons)
    dropped = 0
    while _size(record) > limit and len(reasons) > 1:
        dropped += max(1, len(reasons) // 4)
        reasons = record.reasons[:len(record.reasons) - dropped]
        reasons = (*reasons, f"... {dropped} more reason(s) not kept")
        record = replace(record, reasons=reasons)
    return record


def _size(record: ImageRecord) -> int:
    """An upper bound of the item's stored size (names and values as JSON text)."""
    return len(json.dumps({k: _DESERIALIZER.deserialize(v) for k, v in _to_item(record).items()},
                          default=str))


def _scope_of_key(item: dict[str, Any]) -> dict[str, str]:
    """A member account's item names its account and Region in its key, which every index
    projects (DueIndex projects no more than repository, digest and state)."""
    match = _MEMBER_PK.match(item.get("pk", {}).get("S", ""))
    return {"account": match["account"], "region": match["region"]} if match else {}


def _from_item(item: dict[str, Any]) -> ImageRecord:
    plain = {k: _DESERIALIZER.deserialize(v) for k, v in item.items()
             if k not in ("pk", "sk", "due_shard", "due_at")}
    if "account" not in plain:
        plain.update(_scope_of_key(item))
    return ImageRecord(
        repository=plain["repository"],
        digest=plain["digest"],
        state=plain.get("state", PENDING),
        revision=int(plain.get("revision", 0)),
        tags=tuple(plain.get("tags") or ()),
        marker=plain.get("marker"),
        settled=bool(plain.get("settled", True)),
        reasons=tuple(plain.get("reasons") or ()),
        counts={k: int(v) for k, v in (plain.get("counts") or {}).items()},
        highest_severity=plain.get("highest_severity"),
        policy_version=plain.get("policy_version"),
        matched_rule=plain.get("matched_rule"),
        scan_status=plain.get("scan_status"),
        scan_completed_at=plain.get("scan_completed_at"),
        decided_at=plain.get("decided_at"),
        trigger=plain.get("trigger"),
        gone=bool(plain.get("gone", False)),
        review_at=plain.get("review_at"),
        created_at=plain.get("created_at"),
        previous_state=plain.get("previous_state"),
        archived=bool(plain.get("archived", False)),
        platforms=tuple((str(d), str(p)) for d, p in plain.get("platforms") or ()),
        policy_order=plain.get("policy_order"),
        tags_omitted=int(plain.get("tags_omitted", 0)),
        verdict_revision=int(plain.get("verdict_revision", 0)),
        lease_owner=plain.get("lease_owner"),
        lease_until=float(plain.get("lease_until", 0)),
        envelope=plain.get("envelope"),
        account=plain.get("account"),
        region=plain.get("region"),
        in_use=InUse.from_dict(plain.get("in_use")),
        exceptions_used=tuple(str(e) for e in plain.get("exceptions_used") or ()),
    )


@dataclass(frozen=True)
class HistoryEntry:
    """One verdict change: what, when, caused by what, under which policy version."""

    decided_at: str
    state: str
    previous: str | None
    trigger: str
    policy_version: str | None
    reasons: tuple[str, ...] = ()
    scan_status: str | None = None
    marker: str | None = None
    revision: int = 0
    envelope: dict[str, Any] | None = None  # the signed verdict, as on the record

    def item(self, repository: str, digest: str, expires_at: int | None = None,
             scope: Scope | None = None) -> dict[str, Any]:
        plain: dict[str, Any] = {k: v for k, v in self.__dict__.items() if v is not None}
        plain["reasons"] = [r[:MAX_REASON_CHARS] for r in self.reasons[:50]]
        if expires_at is not None:
            plain["expires_at"] = expires_at
        item = {name: _SERIALIZER.serialize(value) for name, value in plain.items()}
        item["pk"] = _pk(repository, digest, scope)
        item["sk"] = {"S": f"H#{self.decided_at}#{self.revision:08d}"}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> HistoryEntry:
        plain = {k: _DESERIALIZER.deserialize(v) for k, v in item.items() if k not in ("pk", "sk")}
        return cls(
            decided_at=plain["decided_at"], state=plain["state"], previous=plain.get("previous"),
            trigger=plain.get("trigger", "unknown"), policy_version=plain.get("policy_version"),
            reasons=tuple(plain.get("reasons") or ()), scan_status=plain.get("scan_status"),
            marker=plain.get("marker"), revision=int(plain.get("revision", 0)),
            envelope=plain.get("envelope"),
        )


class VerdictStore:
    """The verdict table, as one scope sees it: ``scope`` None is the home scope (a single
    account's stack, the hub's own account and Region); :meth:`scoped` gives a member
    account's view of the same table. Reads and writes of an image name it within the view's
    scope; the sweeps' reads (``records``, ``due_records``) see every scope, each record
    carrying its own."""

    def __init__(self, client: Any, table_name: str,
                 history_retention: timedelta | None = None, scope: Scope | None = None) -> None:
        self._ddb = client
        self._table = table_name
        self._retention = history_retention
        self.scope = scope

    def scoped(self, scope: Scope | None) -> VerdictStore:
        """The same table seen from ``scope`` (None: the home scope)."""
        if scope == self.scope:
            return self
        return VerdictStore(self._ddb, self._table, self._retention, scope)

    def _expires_at(self, decided_at: str) -> int | None:
        """When a history item written at ``decided_at`` expires (TTL, epoch seconds)."""
        if self._retention is None:
            return None
        try:
            written = datetime.fromisoformat(decided_at)
        except ValueError:
            return None
        return int((written + self._retention).timestamp())

    def get(self, repository: str, digest: str) -> ImageRecord | None:
        response = self._ddb.get_item(
            TableName=self._table, Key=_key(repository, digest, self.scope), ConsistentRead=True
        )
        item = response.get("Item")
        return _from_item(item) if item else None

    def put(self, record: ImageRecord, expected_revision: int | None,
            history: HistoryEntry | None = None) -> ImageRecord:
        """Write ``record`` as the next revision (and ``history`` beside it, atomically);
        Conflict if the item moved on meanwhile. ``expected_revision`` None: must be new."""
        new = bounded(replace(record, revision=(expected_revision or 0) + 1,
                              account=self.scope.account if self.scope else None,
                              region=self.scope.region if self.scope else None))
        if expected_revision is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "revision = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected_revision)}},
            }
        try:
            if history is None:
                self._ddb.put_item(TableName=self._table, Item=_to_item(new), **condition)
            else:
                entry = replace(history, revision=new.revision)
                self._ddb.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self._table, "Item": _to_item(new), **condition}},
                    {"Put": {"TableName": self._table,
                             "Item": entry.item(record.repository, record.digest,
                                                self._expires_at(entry.decided_at),
                                                self.scope)}},
                ])
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            reasons = err.response.get("CancellationReasons") or []
            if code == "ConditionalCheckFailedException" or (
                    code == "TransactionCanceledException"
                    and any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)):
                raise Conflict(f"{record.repository}@{record.digest} changed concurrently") from err
            raise
        return new

    def link(self, repository: str, platform_digest: str, index_digest: str) -> None:
        """Remember that an image index references this platform image."""
        self._ddb.put_item(TableName=self._table, Item={
            "pk": _pk(repository, platform_digest, self.scope),
            "sk": {"S": f"INDEX#{index_digest}"}})

    def indexes(self, repository: str, digest: str) -> list[str]:
        """The image indexes that reference this platform image."""
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :index)",
            ExpressionAttributeValues={":pk": _pk(repository, digest, self.scope),
                                       ":index": {"S": "INDEX#"}})
        return [item["sk"]["S"].removeprefix("INDEX#") for item in response.get("Items", [])]

    def history(self, repository: str, digest: str, limit: int = 50) -> list[HistoryEntry]:
        """The image's verdict changes, newest first."""
        response = self._ddb.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :history)",
            ExpressionAttributeValues={":pk": _pk(repository, digest, self.scope),
                                       ":history": {"S": "H#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [HistoryEntry.from_item(item) for item in response.get("Items", [])]

    def hold(self, key: str, entry: dict[str, Any], channel: str | None) -> None:
        """Keep a verdict change for the next digest (idempotent: ``key`` names the change)."""
        item = {"pk": {"S": _DIGEST}, "sk": {"S": key}, "entry": {"S": json.dumps(entry)}}
        if channel:
            item["channel"] = {"S": channel}
        self._ddb.put_item(TableName=self._table, Item=item)

    def held(self) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """Every change waiting for the digest, oldest first: (key, channel, entry)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table, "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": _DIGEST}}, "ConsistentRead": True}
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                yield (item["sk"]["S"], item.get("channel", {}).get("S"),
                       json.loads(item["entry"]["S"]))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def release(self, key: str) -> None:
        """The change was announced in a digest."""
        self._ddb.delete_item(TableName=self._table,
                              Key={"pk": {"S": _DIGEST}, "sk": {"S": key}})

    def records(self, *, due_by: str | None = None, pending_since: str | None = None,
                judged: bool = False) -> Iterator[ImageRecord]:
        """Current verdicts matching one of the filters (a paginated Scan of the table).

        ``due_by``: records whose review_at has passed; ``pending_since``: records still
        PENDING and created before that instant; ``judged``: every judged record.
        """
        start: dict[str, Any] | None = None
        while True:
            page, start = self.records_page(due_by=due_by, pending_since=pending_since,
                                            judged=judged, start=start)
            yield from page
            if start is None:
                return

    def due_records(self, *, due_by: str, pending_since: str) -> Iterator[ImageRecord]:
        """Current verdicts due now, from DueIndex: review_at at or before ``due_by``, or
        still PENDING and created at or before ``pending_since``. Two Queries per shard, each
        reading only due items (the records carry repository, digest and state only)."""
        position: tuple[int, dict[str, Any] | None] | None = (0, None)
        while position is not None:
            page, position = self.due_page(due_by=due_by, pending_since=pending_since,
                                           query=position[0], start=position[1])
            yield from page

    def due_index_backfilled(self) -> bool:
        """Whether every item written before DueIndex existed has been given its attributes."""
        # A Query of the marker's key (the sweeper may Query the table, not GetItem)
        response = self._ddb.query(
            TableName=self._table, KeyConditionExpression="pk = :pk AND sk = :sk",
            ExpressionAttributeValues={":pk": _BACKFILL_MARKER["pk"],
                                       ":sk": _BACKFILL_MARKER["sk"]},
            ConsistentRead=True)
        return bool(response.get("Items"))

    def backfill_due_index(self) -> int:
        """Give DueIndex's attributes to the current verdicts written before it existed (one
        Scan, once per table: the marker item records that it is done). Each update is
        conditional on the revision scanned: a record written meanwhile already carries its
        own. Interrupted, it is simply done again. Returns how many items were updated."""
        if self.due_index_backfilled():
            return 0
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :verdict AND attribute_not_exists(due_at)",
            "ExpressionAttributeValues": {":verdict": {"S": "VERDICT"}},
        }
        updated = 0
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                updated += self._add_due_attributes(_from_item(item))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        self._ddb.update_item(TableName=self._table, Key=_BACKFILL_MARKER,
                              UpdateExpression="SET due_backfilled = :done",
                              ExpressionAttributeValues={":done": {"BOOL": True}})
        return updated

    def _add_due_attributes(self, record: ImageRecord) -> int:
        attributes = _due_attributes(record)
        if not attributes:
            return 0
        try:
            self._ddb.update_item(
                TableName=self._table, Key=_key(record.repository, record.digest, record.scope),
                UpdateExpression="SET due_shard = :shard, due_at = :due",
                ConditionExpression="revision = :revision",
                ExpressionAttributeValues={":shard": attributes["due_shard"],
                                           ":due": attributes["due_at"],
                                           ":revision": {"N": str(record.revision)}})
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return 0
        return 1

    def first_alert(self, subject: str, now: float, quiet_seconds: int) -> bool:
        """Whether an alert about ``subject`` should go out now: True for the first caller
        since the last alert's quiet period ended (a conditional write, so of many containers
        failing at once exactly one alerts). Item ``pk = ALERT#<subject>``, ``sk = ALERT``,
        expiring with its quiet period (TTL)."""
        until = int(now) + quiet_seconds
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item={"pk": {"S": f"ALERT#{subject}"}, "sk": {"S": "ALERT"},
                      "quiet_until": {"N": str(until)}, "expires_at": {"N": str(until)}},
                ConditionExpression="attribute_not_exists(pk) OR quiet_until < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}})
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # --- the sweeps, page by page (the sweeper hands what is left on as a continuation) ---

    def records_page(self, *, due_by: str | None = None, pending_since: str | None = None,
                     judged: bool = False, start: dict[str, Any] | None = None,
                     limit: int | None = None, keys_only: bool = False,
                     ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        """One Scan page of :meth:`records` from ``start`` (a LastEvaluatedKey, None: the
        beginning): (the matching records, where the next page starts or None at the end).
        ``limit``: items the page reads at most (filtered out or not); ``keys_only``: the
        records carry repository, digest, state and scope only (a sweep needs no more)."""
        clauses, values, names = [], {":verdict": {"S": "VERDICT"}}, {"#state": "state"}
        if due_by is not None:
            clauses.append("review_at <= :due")
            values[":due"] = {"S": due_by}
        if pending_since is not None:
            clauses.append("#state = :pending AND created_at <= :since")
            values[":pending"] = {"S": PENDING}
            values[":since"] = {"S": pending_since}
        if judged:
            clauses.append("#state <> :pending_state AND gone = :false")
            values[":pending_state"] = {"S": PENDING}
            values[":false"] = {"BOOL": False}
        if not clauses:
            return [], None
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :verdict AND "
                                + (clauses[0] if len(clauses) == 1
                                   else "(" + " OR ".join(f"({c})" for c in clauses) + ")"),
            "ExpressionAttributeValues": values,
            "ExpressionAttributeNames": names,
        }
        if keys_only:
            # pk names a member account's image's account and Region (see _scope_of_key)
            kwargs["ProjectionExpression"] = "pk, repository, digest, #state"
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        if limit is not None:
            kwargs["Limit"] = limit
        page = self._ddb.scan(**kwargs)
        return [_from_item(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def due_page(self, *, due_by: str, pending_since: str, query: int = 0,
                 start: dict[str, Any] | None = None, limit: int | None = None,
                 ) -> tuple[list[ImageRecord], tuple[int, dict[str, Any] | None] | None]:
        """One Query page of :meth:`due_records`: the hourly sweep's ``query`` (of two per
        shard, 0 to 2 x DUE_SHARDS - 1) from ``start``. Returns (the due records, where the
        next page starts: (query, LastEvaluatedKey or None) or None at the end)."""
        shard, part = divmod(query, 2)
        prefix, until = ((_PENDING_DUE, pending_since), (_REVIEW_DUE, due_by))[part]
        kwargs: dict[str, Any] = {
            "TableName": self._table, "IndexName": DUE_INDEX,
            "KeyConditionExpression": "due_shard = :shard AND due_at BETWEEN :from AND :until",
            "ExpressionAttributeValues": {":shard": {"N": str(shard)}, ":from": {"S": prefix},
                                          ":until": {"S": prefix + until}},
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        if limit is not None:
            kwargs["Limit"] = limit
        page = self._ddb.query(**kwargs)
        records = [_from_item(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" in page:
            return records, (query, page["LastEvaluatedKey"])
        return records, ((query + 1, None) if query + 1 < 2 * DUE_SHARDS else None)

    def claim_policy_sweep(self, order: str, policy_version: str | None,
                           started_at: str) -> bool:
        """Record the policy sweep for the upload ordered ``order`` as the newest; False if a
        newer upload's sweep was recorded already (this one is superseded). The same upload
        claims again (a redelivered event)."""
        try:
            self._ddb.update_item(
                TableName=self._table, Key=_POLICY_SWEEP_MARKER,
                UpdateExpression="SET sweep_order = :order, sweep_version = :version, "
                                 "sweep_started_at = :at",
                ConditionExpression="attribute_not_exists(sweep_order) OR sweep_order <= :order",
                ExpressionAttributeValues={
                    ":order": {"S": order}, ":at": {"S": started_at},
                    ":version": {"S": policy_version} if policy_version else {"NULL": True}})
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def fleet(self, history_since: str = "") -> tuple[list[ImageRecord],
                                                        list[tuple[str, str, HistoryEntry]]]:
        """Every current verdict, and every history item decided at or after
        ``history_since`` as (repository, digest, entry): one paginated Scan of the table
        (what ``gatekeeper report`` reads; index links and digest items are left out)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :verdict OR (begins_with(sk, :history) AND sk >= :since)",
            "ExpressionAttributeValues": {":verdict": {"S": "VERDICT"},
                                          ":history": {"S": "H#"},
                                          ":since": {"S": f"H#{history_since}"}},
        }
        records: list[ImageRecord] = []
        history: list[tuple[str, str, HistoryEntry]] = []
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                if item["sk"]["S"] == "VERDICT":
                    records.append(_from_item(item))
                else:
                    key = item["pk"]["S"]
                    member = _MEMBER_PK.match(key)
                    name = key[member.end():] if member else key.removeprefix("IMAGE#")
                    repository, _, digest = name.rpartition("@")
                    history.append((repository, digest, HistoryEntry.from_item(item)))
            if "LastEvaluatedKey" not in page:
                return records, history
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def records_in(self, account: str, region: str | None = None,
                   home: Scope | None = None) -> Iterator[ImageRecord]:
        """The current verdicts of one member account (of one Region of it, or all), page by
        page: a Scan of the whole table filtered on ``account`` and ``region`` (no index keys
        on them; an operator's command, not a function's). When ``account`` is the ``home``
        scope's, its items without a scope (every item a single-account stack wrote) are
        included when the Region is the home one or not named."""
        names = {"#account": "account"}
        values: dict[str, Any] = {":verdict": {"S": "VERDICT"}, ":account": {"S": account}}
        member = "#account = :account"
        if region is not None:
            member += " AND #region = :region"
            names["#region"] = "region"
            values[":region"] = {"S": region}
        if home is not None and home.account == account and region in (None, home.region):
            member = f"attribute_not_exists(#account) OR ({member})"
        kwargs: dict[str, Any] = {"TableName": self._table,
                                  "FilterExpression": f"sk = :verdict AND ({member})",
                                  "ExpressionAttributeNames": names,
                                  "ExpressionAttributeValues": values}
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                yield _from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def newest_policy_sweep(self) -> str | None:
        """The order of the newest policy upload a sweep was started for (None: none yet)."""
        # A Query of the marker's key (the sweeper may Query the table, not GetItem)
        response = self._ddb.query(
            TableName=self._table, KeyConditionExpression="pk = :pk AND sk = :sk",
            ExpressionAttributeValues={":pk": _POLICY_SWEEP_MARKER["pk"],
                                       ":sk": _POLICY_SWEEP_MARKER["sk"]},
            ConsistentRead=True)
        items = response.get("Items") or []
        return items[0].get("sweep_order", {}).get("S") if items else None
