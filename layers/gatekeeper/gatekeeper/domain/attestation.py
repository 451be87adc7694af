"""Signed verdicts: a verdict as an in-toto Statement v1 in a DSSE envelope.

What is signed (the statement, JSON, base64 in the envelope's ``payload``)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<repository>", "digest": {"sha256": "<hex>"}}],
     "predicateType": "https://github.com/ecr-scan-gatekeeper/verdict/v1",
     "predicate": {"schema": "gatekeeper.verdict/v1", "outcome": ..., "repository": ...,
                   "digest": ..., "policy_version": ..., "decided_at": ...,
                   "verdict_revision": ..., "reasons": [...], "counts": {...}}}

The signature is over DSSE's pre-authentication encoding (:func:`pae`) of the payload type and
the payload bytes, never over the JSON as parsed, so what is verified is exactly what was
signed. The envelope::

    {"payloadType": "application/vnd.in-toto+json", "payload": "<base64>",
     "signatures": [{"keyid": "<KMS key ARN>", "sig": "<base64 DER ECDSA>"}]}

Pure: signing and verifying are the adapters' (KMS, or a public key); this module builds and
reads, and checks what a signature alone does not prove (the subject, the current verdict).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatekeeper.domain.scope import Scope

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/ecr-scan-gatekeeper/verdict/v1"
PREDICATE_SCHEMA = "gatekeeper.verdict/v1"
MAX_ENVELOPE_CHARS = 200_000  # an envelope bigger than any the gatekeeper writes is refused


class AttestationError(ValueError):
    """An envelope or statement that is not what the gatekeeper signs (the message says where
    and why), or one that does not vouch for what it is asked about."""


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes  # DER-encoded ECDSA signature


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope as read: the payload's exact bytes and its signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def as_dict(self) -> dict[str, Any]:
        return {"payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                               for s in self.signatures]}


@dataclass(frozen=True)
class Statement:
    """The statement an envelope carries, as read (its predicate kept as a dict)."""

    repository: str
    digest: str  # sha256:<hex>
    predicate: dict[str, Any]

    @property
    def outcome(self) -> str | None:
        value = self.predicate.get("outcome")
        return value if isinstance(value, str) else None

    @property
    def verdict_revision(self) -> int | None:
        value = self.predicate.get("verdict_revision")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 <len type> <type> <len body> <body>``
    (lengths in bytes, ASCII decimal)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def predicate(*, outcome: str, repository: str, digest: str, policy_version: str | None,
              decided_at: str | None, verdict_revision: int, reasons: tuple[str, ...] | list[str],
              counts: Mapping[str, int]) -> dict[str, Any]:
    """The ``gatekeeper.verdict/v1`` document a statement's predicate holds."""
    return {"schema": PREDICATE_SCHEMA, "outcome": outcome, "repository": repository,
            "digest": digest, "policy_version": policy_version, "decided_at": decided_at,
            "verdict_revision": verdict_revision, "reasons": list(reasons),
            "counts": {str(k): int(v) for k, v in sorted(counts.items())}}


def subject_name(repository: str, scope: Scope | None = None) -> str:
    """The name a verdict is signed for: the repository for an image of the stack's own
    account and Region; for a member account's image (an organization's hub) the repository
    as its registry names it, ``<account>.dkr.ecr.<region>.amazonaws.com/<repository>``, so
    that a verdict signed for one account's image never passes for another's with the same
    repository name and digest."""
    if scope is None:
        return repository
    return f"{scope.account}.dkr.ecr.{scope.region}.amazonaws.com/{repository}"


def statement(repository: str, digest: str, document: Mapping[str, Any]) -> bytes:
    """The in-toto Statement v1 for the image, as the exact bytes that are signed."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not hexdigest:
        raise AttestationError(f"{digest!r} is not a sha256 digest")
    body = {"_type": STATEMENT_TYPE,
            "subject": [{"name": repository, "digest": {"sha256": hexdigest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": dict(document)}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def envelope(payload: bytes, signatures: list[Signature] | tuple[Signature, ...]) -> Envelope:
    return Envelope(PAYLOAD_TYPE, payload, tuple(signatures))


def read_envelope(raw: object) -> Envelope:
    """A stored envelope (a dict as written by :meth:`Envelope.as_dict`) back as an
    :class:`Envelope`; AttestationError, saying where, when it is not one."""
    if not isinstance(raw, Mapping):
        raise AttestationError("envelope: not an object")
    if len(json.dumps(raw, default=str)) > MAX_ENVELOPE_CHARS:
        raise AttestationError("envelope: too large")
    if raw.get("payloadType") != PAYLOAD_TYPE:
        raise AttestationError(f"envelope.payloadType: {str(raw.get('payloadType'))[:80]!r} "
                               f"is not {PAYLOAD_TYPE}")
    payload = _b64(raw.get("payload"), "envelope.payload")
    signatures = raw.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise AttestationError("envelope.signatures: none")
    read = []
    for i, entry in enumerate(signatures):
        where = f"envelope.signatures[{i}]"
        if not isinstance(entry, Mapping):
            raise AttestationError(f"{where}: not an object")
        keyid = entry.get("keyid")
        if not isinstance(keyid, str) or not keyid:
            raise AttestationError(f"{where}.keyid: missing")
        read.append(Signature(keyid, _b64(entry.get("sig"), f"{where}.sig")))
    return Envelope(PAYLOAD_TYPE, payload, tuple(read))


def read_statement(env: Envelope) -> Statement:
    """The verdict statement an envelope carries; AttestationError when the payload is not
    JSON, not an in-toto Statement v1, or not of this project's verdict predicate type."""
    try:
        body = json.loads(env.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise AttestationError(f"envelope.payload: not JSON ({err})") from None
    if not isinstance(body, dict):
        raise AttestationError("statement: not an object")
    if body.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"statement._type: {str(body.get('_type'))[:80]!r} is not "
                               f"{STATEMENT_TYPE}")
    if body.get("predicateType") != PREDICATE_TYPE:
        raise AttestationError(f"statement.predicateType: "
                               f"{str(body.get('predicateType'))[:80]!r} is not {PREDICATE_TYPE}")
    subjects = body.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise AttestationError("statement.subject: not exactly one subject")
    name, digests = subjects[0].get("name"), subjects[0].get("digest")
    hexdigest = digests.get("sha256") if isinstance(digests, dict) else None
    if not isinstance(name, str) or not isinstance(hexdigest, str) or not hexdigest:
        raise AttestationError("statement.subject[0]: no name or no sha256 digest")
    document = body.get("predicate")
    if not isinstance(document, dict):
        raise AttestationError("statement.predicate: not an object")
    return Statement(name, f"sha256:{hexdigest}", document)


def check_subject(stmt: Statement, repository: str, digest: str) -> None:
    """The statement is about this very image (its repository and digest)."""
    if stmt.digest != digest or stmt.repository != repository:
        raise AttestationError(f"signed for {stmt.repository}@{stmt.digest}, "
                               f"not {repository}@{digest}")


def check_current(stmt: Statement, outcome: str, verdict_revision: int) -> None:
    """The statement is the verdict the record holds now, not an earlier one."""
    if stmt.verdict_revision != verdict_revision or stmt.outcome != outcome:
        raise AttestationError(f"signed verdict {stmt.outcome} (revision "
                               f"{stmt.verdict_revision}) is not the current one ({outcome}, "
                               f"revision {verdict_revision})")


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise AttestationError(f"{where}: missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{where}: not base64") from None
