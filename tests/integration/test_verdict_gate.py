"""The verdict gate on moto: images pushed, scanned and judged by the real handlers, then
asked about as deploy tooling names them. Only a verdict signed by the stack's key, about this
very digest, and current, lets an image run; everything else is a one-line refusal."""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.adapters.signing import KmsSigner
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import Config, GateConfig
from gatekeeper.domain import attestation
from gatekeeper.runtime import build_gate
from gatekeeper.service.gate import VerdictGate
from tests.support import (
    ACCOUNT,
    REGION,
    World,
    make_world,
    push_event,
    scan_event,
    signing_key,
)

STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def judged(world: World, context: Any, repo: str, tag: str, findings: str,
           seed: str | None = None) -> str:
    """An image pushed with ``tag``, scanned with ``findings`` and judged: its digest."""
    with contextlib.suppress(world.ecr.exceptions.RepositoryAlreadyExistsException):
        world.repository(repo)
    digest = world.push(repo, tag, seed)
    on_push(push_event(repo, digest), context)
    world.scanned(repo, digest, findings)
    on_scan(scan_event(repo, digest), context)
    return digest


def gate(world: World, other_registries: str = "deny") -> VerdictGate:
    assert world.config.signing_key_arn
    return build_gate(GateConfig.for_key(world.config.table_name, world.config.signing_key_arn,
                                         other_registries), world.session)


def store(world: World) -> VerdictStore:
    return VerdictStore(world.session.client("dynamodb"), world.config.table_name)


def rewrite(world: World, repo: str, digest: str, **changes: Any) -> None:
    """Someone with write access to the table changes the image's record."""
    record = store(world).get(repo, digest)
    assert record is not None
    store(world).put(replace(record, **changes), record.revision)


@pytest.fixture
def images(world: World, context: Any) -> dict[str, str]:
    """Given the strict policy, web:v1 approved and api:v1 quarantined by the handlers."""
    world.publish_policy(STRICT)
    return {"web": judged(world, context, "team-a/web", "v1", "basic-clean"),
            "api": judged(world, context, "team-a/api", "v1", "basic-critical", seed="api")}


def test_an_approved_signed_image_may_run_by_tag_or_by_digest(world: World,
                                                               images: dict[str, str]) -> None:
    # When the gate is asked about the approved image by tag and by digest
    by_tag = gate(world).check(f"{REGISTRY}/team-a/web:v1")
    by_digest = gate(world).check(f"{REGISTRY}/team-a/web@{images['web']}")

    # Then both are allowed, the tag resolved to the digest judged
    assert by_tag.allowed and by_digest.allowed
    assert by_tag.digest == images["web"]
    assert by_tag.verdict == "APPROVED"
    assert by_tag.reason.startswith("APPROVED (signed")


def test_a_quarantined_image_is_refused_even_signed(world: World,
                                                    images: dict[str, str]) -> None:
    decision = gate(world).check(f"{REGISTRY}/team-a/api:v1")
    assert not decision.allowed
    assert decision.verdict == "QUARANTINED"
    assert decision.reason.startswith("QUARANTINED (signed)")


def test_a_tag_is_resolved_when_asked(world: World, context: Any,
                                      images: dict[str, str]) -> None:
    # Given web:v1 moved to a new image with a CRITICAL finding, quarantined
    newer = judged(world, context, "team-a/web", "v1", "basic-critical", seed="newer")

    # When the gate is asked about web:v1, Then it judges the image the tag names now
    decision = gate(world).check(f"{REGISTRY}/team-a/web:v1")
    assert (decision.allowed, decision.digest) == (False, newer)


@pytest.mark.parametrize(("image", "reason"), [
    (f"{REGISTRY}/team-a/web:nope", "no image tagged nope in team-a/web"),
    (f"{REGISTRY}/team-z/none:v1", "no repository team-z/none"),
    (f"{REGISTRY}/team-a/web@sha256:{'0' * 64}", "no verdict for this image"),
    ("999999999999.dkr.ecr.us-east-1.amazonaws.com/team-a/web:v1",
     "not this gatekeeper's registry"),
    (f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team-a/web:v1",
     "not this gatekeeper's registry"),
    ("docker.io/library/nginx:1.27", "outside Amazon ECR: refused"),
    ("Not An Image", "not an image name"),
])
def test_what_the_gate_cannot_vouch_for_is_refused(world: World, images: dict[str, str],
                                                   image: str, reason: str) -> None:
    decision = gate(world).check(image)
    assert not decision.allowed
    assert reason in decision.reason
    assert "\n" not in decision.reason


def test_other_registries_follow_the_setting(world: World, images: dict[str, str]) -> None:
    decision = gate(world, other_registries="allow").check("nginx:1.27")
    assert decision.allowed
    assert "allowed by the stack's setting" in decision.reason


def test_a_tampered_payload_is_refused(world: World, images: dict[str, str]) -> None:
    # Given someone with table write turning the quarantined verdict's signed statement and
    # record into an approval
    record = store(world).get("team-a/api", images["api"])
    assert record is not None and record.envelope is not None
    statement = json.loads(base64.b64decode(record.envelope["payload"]))
    statement["predicate"]["outcome"] = "APPROVED"
    forged = {**record.envelope,
              "payload": base64.b64encode(json.dumps(statement).encode()).decode()}
    rewrite(world, "team-a/api", images["api"], state="APPROVED", envelope=forged)

    # When the gate is asked, Then the signature does not verify
    decision = gate(world).check(f"{REGISTRY}/team-a/api:v1")
    assert not decision.allowed
    assert "signature does not verify" in decision.reason


def test_an_envelope_copied_from_another_image_is_refused(world: World,
                                                          images: dict[str, str]) -> None:
    # Given the approved image's envelope copied onto the quarantined image's record, its
    # state and revision set to match
    web = store(world).get("team-a/web", images["web"])
    assert web is not None
    rewrite(world, "team-a/api", images["api"], state="APPROVED", envelope=web.envelope,
            verdict_revision=web.verdict_id_revision)

    # Then the signature verifies but names another image
    decision = gate(world).check(f"{REGISTRY}/team-a/api:v1")
    assert not decision.allowed
    assert "signed for team-a/web@" in decision.reason


def test_an_earlier_verdict_is_refused(world: World, context: Any,
                                       images: dict[str, str]) -> None:
    # Given the approved image's envelope kept, then the image quarantined by a new scan
    old = store(world).get("team-a/web", images["web"])
    assert old is not None
    world.scanned("team-a/web", images["web"], "basic-critical")
    assert on_scan(scan_event("team-a/web", images["web"]), context)["verdict"] == "QUARANTINED"

    # When someone puts the earlier approval back on the current record
    rewrite(world, "team-a/web", images["web"], state="APPROVED", envelope=old.envelope)

    # Then it is not the current verdict
    decision = gate(world).check(f"{REGISTRY}/team-a/web@{images['web']}")
    assert not decision.allowed
    assert "is not the current one" in decision.reason


def test_an_envelope_signed_by_another_key_is_refused(world: World,
                                                      images: dict[str, str]) -> None:
    # Given a statement for the quarantined image, approving it, signed by another key of
    # the account (named as itself, then as the stack's key)
    record = store(world).get("team-a/api", images["api"])
    assert record is not None and record.envelope is not None
    other = signing_key(world.session)
    statement = json.loads(base64.b64decode(record.envelope["payload"]))
    statement["predicate"]["outcome"] = "APPROVED"
    payload = json.dumps(statement).encode()
    signature = KmsSigner(world.session.client("kms"), other).sign(
        attestation.pae(attestation.PAYLOAD_TYPE, payload))
    for keyid, reason in ((other, "signed by another key"),
                          (world.config.signing_key_arn, "signature does not verify")):
        envelope = attestation.envelope(payload, [replace(signature, keyid=keyid)]).as_dict()
        rewrite(world, "team-a/api", images["api"], state="APPROVED", envelope=envelope)

        # Then it is refused
        decision = gate(world).check(f"{REGISTRY}/team-a/api:v1")
        assert not decision.allowed
        assert reason in decision.reason


@pytest.mark.parametrize("operation", ["kms.Verify", "dynamodb.GetItem", "ecr.DescribeImages"])
def test_an_aws_error_is_a_refusal(world: World, images: dict[str, str],
                                   operation: str) -> None:
    # Given one AWS call the gate makes failing
    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}},
                          operation.split(".")[1])
    world.session.events.register(f"before-call.{operation}", fail)
    checker = gate(world)

    # When the gate is asked, Then it refuses, naming the error, and does not raise
    decision = checker.check(f"{REGISTRY}/team-a/web:v1")
    assert not decision.allowed
    assert "could not check the verdict (ClientError" in decision.reason
    assert "\n" not in decision.reason


def test_without_a_signing_key_every_verdict_is_unsigned(
        context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stack without a signing key, and an image approved there
    with mock_aws():
        world = make_world(signed=False)
        for name, value in world.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("GATEKEEPER_SIGNING_KEY_ARN", raising=False)
        monkeypatch.setattr(runtime, "gatekeeper",
                            lambda: runtime.build(Config.from_env(), world.session))
        world.publish_policy(STRICT)
        digest = judged(world, context, "team-a/web", "v1", "basic-clean")
        record = store(world).get("team-a/web", digest)
        assert record is not None and record.state == "APPROVED" and record.envelope is None

        # When a gate (with a key of its own) is asked, Then: unsigned verdict
        key = signing_key(world.session)
        decision = build_gate(GateConfig.for_key("verdicts", key), world.session).check(
            f"{REGISTRY}/team-a/web:v1")
        assert (decision.allowed, decision.reason) == (False, "unsigned verdict")


def test_the_record_and_its_history_hold_the_envelope(world: World,
                                                      images: dict[str, str]) -> None:
    record = store(world).get("team-a/web", images["web"])
    history = store(world).history("team-a/web", images["web"])
    assert record is not None and record.envelope is not None
    assert record.envelope["signatures"][0]["keyid"] == world.config.signing_key_arn
    assert history[0].envelope == record.envelope
