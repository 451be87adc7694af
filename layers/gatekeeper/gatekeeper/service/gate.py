"""The verdict gate: may this image run? Answered from the signed verdict only.

For one image name as a deployment writes it (:func:`gatekeeper.domain.images.parse_image`):

1. outside Amazon ECR: the stack's setting (``other_registries``: allow or deny);
2. in another account's or Region's registry: refused (not this gatekeeper's registry), except
   at an organization's hub, which answers for its member accounts' registries too (their
   verdicts are the table's items of that account and Region, signed for the image as that
   registry names it; their tags are resolved through the account's spoke role);
3. a tag is resolved to the digest it names in ECR now (an unknown tag or repository:
   refused); a digest is taken as written;
4. the image's verdict record, its envelope (none: "unsigned verdict"), the envelope's
   signature under the stack's key (KMS Verify, or the exported public key offline), its
   subject (this repository and digest), and that it is the record's current verdict (the
   signed outcome and verdict_revision are the record's);
5. APPROVED or APPROVED_WITH_WARNINGS: allowed; anything else refused.

A tag, a record or an envelope written by anyone without the key cannot pass step 4. Any error
(ECR, DynamoDB, KMS) is a refusal naming it: the gate fails closed and never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gatekeeper.adapters.ecr import ImageGone
from gatekeeper.adapters.signing import Verifier
from gatekeeper.adapters.store import PENDING, ImageRecord
from gatekeeper.config import GateConfig
from gatekeeper.domain import attestation
from gatekeeper.domain.admission import Decision
from gatekeeper.domain.attestation import AttestationError
from gatekeeper.domain.images import ImageName, ImageNameError, parse_image
from gatekeeper.domain.scope import Scope
from gatekeeper.domain.verdict import Outcome
from gatekeeper.observability import logger

_APPROVED = {str(Outcome.APPROVED), str(Outcome.APPROVED_WITH_WARNINGS)}


class TagResolver(Protocol):
    def holder(self, repository: str, tag: str) -> str | None: ...


class RecordReader(Protocol):
    def get(self, repository: str, digest: str) -> ImageRecord | None: ...
    def scoped(self, scope: Scope | None) -> RecordReader: ...


class VerdictGate:
    """Implements :class:`gatekeeper.domain.admission.Gate` for the stack's verdicts."""

    def __init__(self, images: TagResolver, store: RecordReader, verifier: Verifier,
                 config: GateConfig,
                 member_images: Callable[[Scope], TagResolver] | None = None) -> None:
        self.images = images
        self.store = store
        self.verifier = verifier
        self.config = config
        self.member_images = member_images  # an organization's hub: a member's ECR

    def _scope(self, name: ImageName) -> tuple[Scope | None, str | None]:
        """The registry's scope (None: the stack's own), or why the gate cannot answer."""
        account, region = name.ecr_account, name.ecr_region
        if (account, region) == (self.config.account, self.config.region):
            return None, None
        if self.config.organization_id and account and region:
            try:
                return Scope(account, region), None
            except ValueError as err:
                return None, f"not a registry of this organization's accounts ({err})"
        return None, (f"not this gatekeeper's registry (it judges {self.config.account} in "
                      f"{self.config.region})")

    def check(self, image: str) -> Decision:
        try:
            name = parse_image(image)
        except ImageNameError as err:
            return Decision(False, str(image)[:200], f"not an image name: {err}")
        try:
            decision = self._check(image, name)
        except Exception as err:  # fail closed: whatever went wrong, the image does not run
            logger.warning("verdict gate could not check an image; refused", image=image,
                           error=type(err).__name__, reason=str(err))
            detail = " ".join(str(err).split())[:200]
            decision = Decision(False, image, f"could not check the verdict "
                                f"({type(err).__name__}: {detail}); refused",
                                repository=name.repository, digest=name.digest)
        logger.info("verdict gate", **decision.as_dict())
        return decision

    def _check(self, image: str, name: ImageName) -> Decision:
        repo = name.repository
        if not name.in_ecr:
            allowed = self.config.other_registries == "allow"
            return Decision(allowed, image, "outside Amazon ECR: "
                            + ("allowed by the stack's setting" if allowed
                               else "refused by the stack's setting (other registries: deny)"),
                            repository=repo)
        scope, refusal = self._scope(name)
        if refusal is not None:
            return Decision(False, image, refusal, repository=repo)
        digest = name.digest
        if digest is None:
            if scope is not None and self.member_images is None:
                return Decision(False, image, "a tag in a member account's registry cannot be "
                                "resolved here; name the image by digest", repository=repo)
            images = self.images if scope is None else self.member_images(scope)  # type: ignore[misc]
            try:
                digest = images.holder(repo, name.tag or "latest")
            except ImageGone:
                return Decision(False, image, f"no repository {repo} in this registry",
                                repository=repo)
            if digest is None:
                return Decision(False, image, f"no image tagged {name.tag} in {repo}",
                                repository=repo)
        return self.check_digest(repo, digest, image, scope)

    def check_digest(self, repo: str, digest: str, image: str | None = None,
                     scope: Scope | None = None) -> Decision:
        """Steps 4 and 5 for an image already resolved to its digest (``gatekeeper verify``
        resolves names itself), of the stack's own registry or (``scope``) a member
        account's; errors are the caller's to handle."""
        image = image or f"{repo}@{digest}"

        def refused(reason: str, verdict: str | None = None) -> Decision:
            return Decision(False, image, reason, repository=repo, digest=digest,
                            verdict=verdict)

        record = (self.store if scope is None else self.store.scoped(scope)).get(repo, digest)
        if record is None:
            return refused("no verdict for this image")
        if record.state == PENDING:
            return refused("not judged yet (scan pending)", PENDING)
        if record.envelope is None:
            return refused("unsigned verdict", record.state)
        try:
            envelope = attestation.read_envelope(record.envelope)
            self._verify(envelope)
            statement = attestation.read_statement(envelope)
            attestation.check_subject(statement, attestation.subject_name(repo, scope), digest)
            attestation.check_current(statement, record.state, record.verdict_id_revision)
        except AttestationError as err:
            return refused(f"signed verdict refused: {err}", record.state)
        if record.state not in _APPROVED:
            why = f": {record.reasons[0]}" if record.reasons else ""
            return refused(f"{record.state} (signed){why}"[:300], record.state)
        return Decision(True, image, f"{record.state} (signed, verdict revision "
                        f"{record.verdict_id_revision}, policy {record.policy_version})",
                        repository=repo, digest=digest, verdict=record.state)

    def _verify(self, envelope: attestation.Envelope) -> None:
        """One of the envelope's signatures is the stack key's over its PAE."""
        first: AttestationError | None = None
        for signature in envelope.signatures:
            try:
                self.verifier.verify(envelope.pae(), signature)
            except AttestationError as err:
                first = first or err
            else:
                return
        raise first or AttestationError("no signature")
