"""moto's KMS (in-process only) made to sign verdicts as AWS KMS does, for the local
deployment, the demo and the tests.

- :func:`install`: moto honours ``MessageType=DIGEST`` (see below).
- :func:`complete_key`: moto's CloudFormation creates every ``AWS::KMS::Key`` symmetric,
  whatever its KeySpec; this gives the key the spec and usage the template asks for.

moto 5.2 ignores MessageType: a DIGEST message is hashed again before it is signed, so its
signatures are consistent with its own Verify but not with the key's public key (real KMS
signs the digest as given: the signature is the same as over the original message). The
gatekeeper signs with DIGEST and the operator verifies offline with the public key, so the
local tooling needs the real behaviour: :func:`install` makes moto's ECC keys sign and
verify a DIGEST message as a pre-hashed digest (RAW messages are unchanged). Idempotent;
applies to every moto KMS in the process.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.kms import models, responses
from moto.kms.utils import generate_private_key

_installed = False
_PREHASHED = {"ECDSA_SHA_256": hashes.SHA256(), "ECDSA_SHA_384": hashes.SHA384(),
              "ECDSA_SHA_512": hashes.SHA512()}


def _digest_call(self: Any) -> tuple[Any, bytes, Any] | None:
    """(the moto key, the digest, the ECDSA scheme) for a DIGEST call on an ECC key."""
    if self._get_param("MessageType") != "DIGEST":
        return None
    algorithm = _PREHASHED.get(self._get_param("SigningAlgorithm"))
    key = self.kms_backend.describe_key(self._get_param("KeyId"))
    private = getattr(key.private_key, "private_key", None)
    if algorithm is None or not isinstance(private, ec.EllipticCurvePrivateKey):
        return None
    message = self._get_param("Message")
    message = message.encode() if isinstance(message, str) else message
    if len(message) != algorithm.digest_size:
        raise models.ValidationException(
            f"Digest is invalid length for algorithm {self._get_param('SigningAlgorithm')}.")
    return key, message, ec.ECDSA(utils.Prehashed(algorithm))


def install() -> None:
    global _installed
    if _installed:
        return

    sign, verify = responses.KmsResponse.sign, responses.KmsResponse.verify

    def signed(self: Any) -> str:
        call = _digest_call(self)
        if call is None:
            return sign(self)
        key, digest, scheme = call
        signature = key.private_key.private_key.sign(digest, scheme)
        return json.dumps({"KeyId": key.arn, "Signature": base64.b64encode(signature).decode(),
                           "SigningAlgorithm": self._get_param("SigningAlgorithm")})

    def verified(self: Any) -> str:
        call = _digest_call(self)
        if call is None:
            return verify(self)
        key, digest, scheme = call
        signature = self._get_param("Signature")
        signature = (base64.b64decode(signature) if isinstance(signature, str) else signature)
        try:
            key.private_key.private_key.public_key().verify(signature, digest, scheme)
            valid = True
        except InvalidSignature:
            valid = False
        return json.dumps({"KeyId": key.arn, "SignatureValid": valid,
                           "SigningAlgorithm": self._get_param("SigningAlgorithm")})

    responses.KmsResponse.sign = signed  # type: ignore[method-assign]
    responses.KmsResponse.verify = verified  # type: ignore[method-assign]
    _installed = True


def complete_key(key_id: str, region: str, key_spec: str, key_usage: str) -> None:
    """Give the moto key ``key_id`` the spec and usage the template declares (new material),
    and its key policy as the JSON text moto's own API reads (its CloudFormation keeps the
    template's object)."""
    install()
    for account in list(models.kms_backends):
        key = models.kms_backends[account][region].keys.get(key_id)
        if key is not None:
            key.key_spec, key.key_usage = key_spec, key_usage
            key.private_key = generate_private_key(key_spec)
            if not isinstance(key.policy, str):
                key.policy = json.dumps(key.policy)
            return
    raise LookupError(f"no KMS key {key_id} in {region}")
