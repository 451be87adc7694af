"""``gatekeeper verify IMAGE``: the deploy gate.

Exit 0 only for an approved, settled verdict whose marker is on the image now and whose
signed envelope verifies (the stack's key, through KMS; or offline, ``--public-key FILE`` from
``gatekeeper key export``): its subject is this digest, it is the current verdict, and it is
APPROVED (one line on stdout); 1 otherwise, with one line on stderr saying why; 2 when the
check itself could not run (usage, configuration, AWS error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gatekeeper.adapters.signing import KmsVerifier, PublicKeyVerifier, Verifier
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import GateConfig
from gatekeeper.domain.attestation import AttestationError
from gatekeeper.domain.verdict import Outcome
from gatekeeper.runtime import BOTO_CONFIG
from gatekeeper.service.gate import VerdictGate
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    IMAGE_HELP,
    Deployment,
    ImageNotFound,
    ImageReference,
    OperatorError,
    deployment_options,
    describe_image,
    operator_command,
    parse_reference,
)
from gatekeeper_tools.cli.scope import Place, locate, scope_options

APPROVED_STATES = frozenset({str(Outcome.APPROVED), str(Outcome.APPROVED_WITH_WARNINGS)})


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify", parents=[deployment_options(), scope_options()],
        help="deploy gate: is this image approved, now, by a signed verdict?",
        description="For deploy pipelines. Exit 0 only when the recorded verdict is APPROVED "
                    "or APPROVED_WITH_WARNINGS, settled, the image not gone, the image "
                    "carries its approved marker now, and the verdict's signature verifies "
                    "(the stack's key, or --public-key) for this digest as the current "
                    "verdict (one line on stdout). Otherwise exit 1 with one line on stderr "
                    "saying why; 2 when the check itself could not run (usage, "
                    "configuration, AWS error). A member account's image is named by its "
                    "URI, or by --account and --region (see below).")
    parser.add_argument("image", help=IMAGE_HELP)
    parser.add_argument("--public-key", metavar="FILE", type=Path,
                        help="verify offline with the stack key's public key (PEM or DER, "
                             "from 'gatekeeper key export') instead of kms:Verify")
    parser.add_argument("--api", metavar="URL",
                        help="ask the stack's verdict API (its VerdictApiUrl output) instead "
                             "of reading the table and ECR; SigV4-signed with the default "
                             "credentials; its answer's envelope is verified as a record's "
                             "(the stack's key, or --public-key)")
    parser.set_defaults(func=operator_command("verify", _run))


def _run(args: argparse.Namespace) -> int:
    ref = parse_reference(args.image)
    place = locate(args, ref)
    if args.api:
        from gatekeeper_tools.cli.verdict_api_client import verify_with_api

        if place.scope is not None:
            raise OperatorError("the verdict API answers for the stack's own account and "
                                "Region only; without --api, verify reads the table")
        deployment = place.deployment
        return verify_with_api(deployment.session, args.api, args.image,
                               _verifier(deployment, args.public_key))
    return verify(place, ref, args.public_key)


def verify(place: Place, ref: ImageReference, public_key: Path | None = None) -> int:
    """0 only for an approved, settled, signed verdict whose marker is on the image now."""
    deployment = place.deployment
    store = place.store()
    verifier = _verifier(deployment, public_key)
    try:
        digest, tags = describe_image(place.ecr(), ref)
    except ImageNotFound as missing:
        return _refuse(f"{missing}{place.where()}")
    image = f"{ref.repository}@{digest}{place.where()}"
    record = store.get(ref.repository, digest)
    if record is None:
        return _refuse(f"no verdict: the gatekeeper has no record of {image}")
    if not record.judged:
        return _refuse(f"pending: {image} has no verdict yet (waiting for its scan)")
    if record.gone:
        return _refuse(f"image gone: {image} was recorded as deleted")
    if record.state not in APPROVED_STATES:
        first = record.reasons[0] if record.reasons else "no reason recorded"
        return _refuse(f"{record.state.lower()}: {image}: {first}")
    if not record.settled:
        return _refuse(f"not settled: the {record.state} verdict of {image} is still being "
                       "applied; retry shortly")
    expected = deployment.markers.tag_for(Outcome.APPROVED, digest)
    if expected not in tags:
        hint = ""
        if record.marker and record.marker != expected:
            hint = (f"; the verdict names {record.marker}: are the marker templates the "
                    "stack's? (--stack, or GATEKEEPER_APPROVED_TAG)")
        return _refuse(f"marker missing: {image} is {record.state} but does not carry "
                       f"{expected}{hint}")
    # The record says approved: only the stack key's signature makes it so.
    decision = _gate(deployment, store, verifier).check_digest(ref.repository, digest,
                                                               scope=place.scope)
    if not decision.allowed:
        return _refuse(f"not signed by the stack's key: {image}: {decision.reason}")
    warnings = ", with warnings" if record.state == Outcome.APPROVED_WITH_WARNINGS else ""
    print(f"approved: {image} (policy version {record.policy_version or '-'}{warnings})")
    return EXIT_OK


def _verifier(deployment: Deployment, public_key: Path | None) -> Verifier:
    if public_key is not None:
        try:
            return PublicKeyVerifier(public_key.read_bytes(), deployment.signing_key)
        except AttestationError as err:
            raise OperatorError(f"{public_key}: {err}") from None
    if not deployment.signing_key:
        deployment.require("signing_key")
    return KmsVerifier(deployment.session.client("kms", config=BOTO_CONFIG),
                       str(deployment.signing_key))


def _gate(deployment: Deployment, store: VerdictStore, verifier: Verifier) -> VerdictGate:
    config = GateConfig(table_name=str(deployment.table),
                        signing_key_arn=deployment.signing_key or "")
    return VerdictGate(images=_NoTags(), store=store, verifier=verifier, config=config)


class _NoTags:
    """verify resolves the name itself (describe_image); the gate is asked by digest."""

    def holder(self, repository: str, tag: str) -> str | None:  # pragma: no cover
        raise NotImplementedError


def _refuse(why: str) -> int:
    print("not approved: " + " ".join(why.split()), file=sys.stderr)  # one line, always
    return EXIT_FAILED
