"""Signed verdicts, pure: the in-toto statement, DSSE's PAE, the envelope read back, and the
checks a signature alone does not make (subject, current verdict). Signatures here are made
and verified with ``cryptography`` directly (the algorithm the stack's KMS key uses)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.domain import attestation as at

DIGEST = "sha256:" + "ab" * 32
KEY = ec.generate_private_key(ec.SECP256R1())
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def document(outcome: str = "APPROVED", revision: int = 3) -> dict:
    return at.predicate(outcome=outcome, repository="team-a/web", digest=DIGEST,
                        policy_version="v7", decided_at="2026-01-02T03:04:05+00:00",
                        verdict_revision=revision, reasons=("all within the limits",),
                        counts={"HIGH": 1, "CRITICAL": 0})


def signed(payload: bytes) -> dict:
    sig = KEY.sign(at.pae(at.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return at.envelope(payload, [at.Signature(KEY_ARN, sig)]).as_dict()


def verifies(raw: dict) -> bool:
    """Reads the envelope and checks its signature over the PAE of what it carries."""
    try:
        env = at.read_envelope(raw)
        KEY.public_key().verify(env.signatures[0].sig, env.pae(), ec.ECDSA(hashes.SHA256()))
    except (at.AttestationError, InvalidSignature):
        return False
    return True


def test_pae_is_dsse_v1() -> None:
    # Given DSSE's worked example, When encoded, Then it reads as the specification's
    assert at.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_the_statement_names_the_image_and_carries_the_verdict() -> None:
    # Given a verdict document, When its statement is built
    body = json.loads(at.statement("team-a/web", DIGEST, document()))

    # Then it is an in-toto Statement v1 about this repository and digest, of our predicate
    assert body["_type"] == "https://in-toto.io/Statement/v1"
    assert body["subject"] == [{"name": "team-a/web", "digest": {"sha256": "ab" * 32}}]
    assert body["predicateType"] == "https://github.com/ecr-scan-gatekeeper/verdict/v1"
    assert body["predicate"]["schema"] == "gatekeeper.verdict/v1"
    assert {k: body["predicate"][k] for k in ("outcome", "verdict_revision", "policy_version",
                                               "counts")} == {
        "outcome": "APPROVED", "verdict_revision": 3, "policy_version": "v7",
        "counts": {"CRITICAL": 0, "HIGH": 1}}


def test_an_envelope_reads_back_and_passes_the_checks() -> None:
    # Given a signed envelope as stored
    raw = signed(at.statement("team-a/web", DIGEST, document()))

    # When it is read back
    env = at.read_envelope(raw)
    stmt = at.read_statement(env)

    # Then its payload type, key, signature, subject and verdict are the ones signed
    assert raw["payloadType"] == "application/vnd.in-toto+json"
    assert env.signatures[0].keyid == KEY_ARN
    assert verifies(raw)
    at.check_subject(stmt, "team-a/web", DIGEST)
    at.check_current(stmt, "APPROVED", 3)


@pytest.mark.parametrize(("raw", "where"), [
    ("nope", "not an object"),
    ({"payloadType": "text/plain", "payload": "e30=", "signatures": []}, "payloadType"),
    ({"payloadType": at.PAYLOAD_TYPE, "payload": "%%%", "signatures": []}, "payload"),
    ({"payloadType": at.PAYLOAD_TYPE, "payload": "e30=", "signatures": []}, "signatures"),
    ({"payloadType": at.PAYLOAD_TYPE, "payload": "e30=", "signatures": [{"sig": "AA=="}]},
     "signatures[0].keyid"),
    ({"payloadType": at.PAYLOAD_TYPE, "payload": "e30=",
      "signatures": [{"keyid": "k", "sig": "not base64!"}]}, "signatures[0].sig"),
])
def test_a_malformed_envelope_is_a_located_error(raw: object, where: str) -> None:
    # Given an envelope that is not what the gatekeeper writes, When it is read,
    # Then the error says where, and nothing else is raised
    with pytest.raises(at.AttestationError, match=where.replace("[", r"\[").replace("]", r"\]")):
        at.read_envelope(raw)


@pytest.mark.parametrize(("payload", "where"), [
    (b"\xff\xfe", "not JSON"),
    (b"[1]", "not an object"),
    (json.dumps({"_type": "https://in-toto.io/Statement/v0.1"}).encode(), "_type"),
    (json.dumps({"_type": at.STATEMENT_TYPE, "predicateType": "https://slsa.dev/provenance/v1",
                 "subject": [], "predicate": {}}).encode(), "predicateType"),
    (json.dumps({"_type": at.STATEMENT_TYPE, "predicateType": at.PREDICATE_TYPE,
                 "subject": [], "predicate": {}}).encode(), "subject"),
    (json.dumps({"_type": at.STATEMENT_TYPE, "predicateType": at.PREDICATE_TYPE,
                 "subject": [{"name": "a", "digest": {"sha256": "ab"}}],
                 "predicate": []}).encode(), "predicate"),
])
def test_a_statement_of_another_kind_is_a_located_error(payload: bytes, where: str) -> None:
    # Given an envelope carrying something other than a verdict statement
    env = at.read_envelope(signed(payload))

    # When its statement is read, Then the error says where
    with pytest.raises(at.AttestationError, match=where):
        at.read_statement(env)


def test_another_subject_or_an_earlier_verdict_does_not_pass() -> None:
    # Given the signed statement of revision 3, APPROVED, for team-a/web@DIGEST
    stmt = at.read_statement(at.read_envelope(signed(
        at.statement("team-a/web", DIGEST, document()))))

    # When it is checked against another digest, another repository, a later revision or
    # another outcome, Then each is refused
    with pytest.raises(at.AttestationError, match="signed for team-a/web@"):
        at.check_subject(stmt, "team-a/web", "sha256:" + "cd" * 32)
    with pytest.raises(at.AttestationError, match="not team-b/web@"):
        at.check_subject(stmt, "team-b/web", DIGEST)
    with pytest.raises(at.AttestationError, match="not the current one"):
        at.check_current(stmt, "APPROVED", 4)
    with pytest.raises(at.AttestationError, match="not the current one"):
        at.check_current(stmt, "QUARANTINED", 3)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_change_to_the_payload_fails_verification(data: st.DataObject) -> None:
    # Given a signed verdict envelope
    payload = at.statement("team-a/web", DIGEST, document())
    raw = signed(payload)

    # When any byte of its payload is changed, or bytes are added or cut
    mutated = bytearray(payload)
    how = data.draw(st.sampled_from(["flip", "append", "truncate"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] ^= data.draw(st.integers(1, 255))
    elif how == "append":
        mutated += data.draw(st.binary(min_size=1, max_size=8))
    else:
        del mutated[data.draw(st.integers(0, len(mutated) - 1)):]
    tampered = {**raw, "payload": base64.b64encode(bytes(mutated)).decode()}

    # Then its signature no longer verifies
    assert verifies(raw)
    assert not verifies(tampered)


def test_a_non_sha256_digest_has_no_statement() -> None:
    with pytest.raises(at.AttestationError, match="not a sha256 digest"):
        at.statement("team-a/web", "sha512:" + "ab" * 64, document())
