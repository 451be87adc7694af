"""Signing and verifying verdict envelopes: the stack's asymmetric KMS key (ECC_NIST_P256,
ECDSA_SHA_256), or its exported public key.

KMS signs the SHA-256 digest of the DSSE pre-authentication encoding (``MessageType=DIGEST``):
an envelope's PAE may exceed the 4,096 bytes KMS accepts as a RAW message, and an ECDSA_SHA_256
signature over the digest is the same signature as over the message, so any verifier holding
the public key checks it over the PAE itself.

The Lambda functions verify with KMS ``Verify`` (no cryptography library in the layer);
:class:`PublicKeyVerifier` (offline, the operator's CLI) imports ``cryptography`` when built.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from botocore.exceptions import ClientError

from gatekeeper.domain.attestation import AttestationError, Signature

ALGORITHM = "ECDSA_SHA_256"


class Verifier(Protocol):
    def verify(self, message: bytes, signature: Signature) -> None:
        """Nothing when ``signature`` over ``message`` is the key's; AttestationError else."""
        ...


class KmsSigner:
    """Signs with the stack's KMS key (kms:Sign, which only the judging roles may call)."""

    def __init__(self, kms_client: Any, key_arn: str) -> None:
        self._kms = kms_client
        self.key_arn = key_arn

    def sign(self, pae_bytes: bytes) -> Signature:
        response = self._kms.sign(KeyId=self.key_arn, Message=hashlib.sha256(pae_bytes).digest(),
                                  MessageType="DIGEST", SigningAlgorithm=ALGORITHM)
        return Signature(keyid=str(response.get("KeyId") or self.key_arn),
                         sig=bytes(response["Signature"]))


class KmsVerifier:
    """Verifies with KMS ``Verify`` under the stack's key, whatever key the envelope names."""

    def __init__(self, kms_client: Any, key_arn: str) -> None:
        self._kms = kms_client
        self.key_arn = key_arn

    def verify(self, message: bytes, signature: Signature) -> None:
        if signature.keyid != self.key_arn:
            raise AttestationError(f"signed by another key ({signature.keyid[:120]})")
        try:
            response = self._kms.verify(
                KeyId=self.key_arn, Message=hashlib.sha256(message).digest(),
                MessageType="DIGEST", Signature=signature.sig, SigningAlgorithm=ALGORITHM)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
                raise AttestationError("signature does not verify") from None
            raise
        if not response.get("SignatureValid"):
            raise AttestationError("signature does not verify")


class PublicKeyVerifier:
    """Verifies with the stack key's public key (a DER or PEM SubjectPublicKeyInfo, as
    ``gatekeeper key export`` writes it): offline, no AWS call. Needs ``cryptography``."""

    def __init__(self, public_key: bytes, key_arn: str | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import (
            load_der_public_key,
            load_pem_public_key,
        )

        try:
            loaded = (load_pem_public_key(public_key) if public_key.lstrip().startswith(b"-----")
                      else load_der_public_key(public_key))
        except ValueError as err:
            raise AttestationError(f"not a public key: {err}") from None
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or loaded.curve.name != "secp256r1":
            raise AttestationError("not an ECC_NIST_P256 public key")
        self._key = loaded
        self.key_arn = key_arn  # when known, an envelope naming another key is refused

    def verify(self, message: bytes, signature: Signature) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        if self.key_arn is not None and signature.keyid != self.key_arn:
            raise AttestationError(f"signed by another key ({signature.keyid[:120]})")
        try:
            self._key.verify(signature.sig, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise AttestationError("signature does not verify") from None
