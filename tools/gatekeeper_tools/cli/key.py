"""``gatekeeper key export``: the stack's verdict signing key, as a public key PEM.

Whoever holds it verifies signed verdicts offline (``gatekeeper verify --public-key FILE``,
or any DSSE/in-toto verifier: ECDSA P-256 with SHA-256 over the envelope's PAE). Exit 0
written; 2 when it could not be read (usage, configuration, AWS error).
"""

from __future__ import annotations

import argparse
import base64
import textwrap
from pathlib import Path

from gatekeeper.runtime import BOTO_CONFIG
from gatekeeper_tools.cli.deployment import (
    EXIT_OK,
    Deployment,
    OperatorError,
    deployment_options,
    from_arguments,
    operator_command,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("key", help="the stack's verdict signing key")
    actions = parser.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", parents=[deployment_options()],
        help="write the signing key's public key (PEM)",
        description="Write the public key of the stack's verdict signing key (SigningKeyArn) "
                    "as PEM, for offline verification ('gatekeeper verify --public-key "
                    "FILE'). Exit 0 written; 2 usage, configuration or AWS error.")
    export.add_argument("--out", metavar="FILE", type=Path,
                        help="write it to FILE (default: stdout)")
    export.set_defaults(func=operator_command(
        "key export", lambda args: export_key(from_arguments(args), args.out)))


def export_key(deployment: Deployment, out: Path | None = None) -> int:
    deployment.require("signing_key")
    kms = deployment.session.client("kms", config=BOTO_CONFIG)
    found = kms.get_public_key(KeyId=str(deployment.signing_key))
    if found.get("KeySpec") not in (None, "ECC_NIST_P256"):
        raise OperatorError(f"{deployment.signing_key} is a {found.get('KeySpec')} key, not "
                            "the ECC_NIST_P256 verdict signing key")
    pem = pem_public_key(bytes(found["PublicKey"]))
    if out is None:
        print(pem, end="")
    else:
        out.write_text(pem)
        print(f"public key of {deployment.signing_key} written to {out}")
    return EXIT_OK


def pem_public_key(der: bytes) -> str:
    """A DER SubjectPublicKeyInfo as PEM (RFC 7468)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
