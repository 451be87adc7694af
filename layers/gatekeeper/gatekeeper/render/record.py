"""A recorded verdict (the verdict table's item for one image) as JSON documents.

- :func:`verdict_document`: the verdict itself, the ``gatekeeper.verdict/v1`` document (the
  verdict API's ``verdict``): exactly the predicate the gatekeeper signs for the record's
  current verdict (:func:`gatekeeper.domain.attestation.predicate`), so that a client compares
  it with the envelope's field by field.
- :func:`verdict_status`: what the record says about that verdict now and is not signed
  (it changes after the verdict does): settled, gone, the review time, the rule, the scan.
- :func:`record_document`: everything the record holds, for operators (``gatekeeper status
  --format json``): the verdict, its marker and whether the image carries it, the lease, the
  scan, the review time.

Both read a record as :class:`gatekeeper.adapters.store.ImageRecord` holds it (any object with
its attributes: renderers never import adapters).
"""

from __future__ import annotations

from typing import Any

from gatekeeper.domain.attestation import PREDICATE_SCHEMA, predicate

VERDICT_SCHEMA = PREDICATE_SCHEMA  # one document: the signed predicate


def verdict_document(record: Any) -> dict[str, Any]:
    """The verdict a record holds, as signed: what a deploy gate decides on.

    ``verdict_revision`` is the revision that committed this verdict (a notice's verdict id
    names it); ``outcome`` is PENDING while the image waits for its scan.
    """
    return predicate(outcome=record.state, repository=record.repository, digest=record.digest,
                     policy_version=record.policy_version, decided_at=record.decided_at,
                     verdict_revision=record.verdict_id_revision, reasons=record.reasons,
                     counts=record.counts)


def verdict_status(record: Any) -> dict[str, Any]:
    """The record's state around its verdict: not signed, it changes after the verdict
    (settled once its side effects are done, gone when the image is deleted)."""
    return {
        "settled": record.settled,
        "gone": record.gone,
        "review_at": record.review_at,
        "matched_rule": record.matched_rule,
        "highest_severity": record.highest_severity,
        "scan_status": record.scan_status,
        "trigger": record.trigger,
        "previous_outcome": record.previous_state,
    }


def record_document(record: Any, tags: list[str]) -> dict[str, Any]:
    """Everything the record holds; ``tags``: the image's tags now (is its marker on it?)."""
    return {
        "state": record.state,
        "settled": record.settled,
        "gone": record.gone,
        "reasons": list(record.reasons),
        "marker": record.marker,
        "marker_on_image": record.marker in tags if record.marker else None,
        "lease": ({"owner": record.lease_owner, "until": record.lease_until}
                  if record.lease_owner else None),
        "policy_order": record.policy_order,
        "policy_version": record.policy_version,
        "matched_rule": record.matched_rule,
        "scan_status": record.scan_status,
        "scan_completed_at": record.scan_completed_at,
        "highest_severity": record.highest_severity,
        "counts": dict(record.counts),
        "decided_at": record.decided_at,
        "trigger": record.trigger,
        "previous_state": record.previous_state,
        "review_at": record.review_at,
        "created_at": record.created_at,
        "revision": record.revision,
        # moved to the ARCHIVE storage class by the gatekeeper (policies with archive
        # enforcement); None when this version of the store does not record it
        "archived": getattr(record, "archived", None),
        # the verdict signed with the stack's key (a DSSE envelope), None when unsigned
        "envelope": getattr(record, "envelope", None),
        "signed_by": signed_by(record),
        # whether the image runs somewhere ({count, last_at}); None when unknown
        "in_use": in_use.as_dict() if (in_use := getattr(record, "in_use", None)) else None,
        "exceptions_used": list(getattr(record, "exceptions_used", ())),
    }


def signed_by(record: Any) -> str | None:
    """The key the record's envelope names (what it claims: verify checks it)."""
    envelope = getattr(record, "envelope", None)
    signatures = (envelope.get("signatures") if isinstance(envelope, dict) else None) or [{}]
    keyid = signatures[0].get("keyid") if isinstance(signatures[0], dict) else None
    return str(keyid) if keyid else None
