"""``gatekeeper verify IMAGE --api URL``: the deploy gate asked through the verdict API.

The request is SigV4-signed (service ``lambda``, as a function URL with ``AuthType: AWS_IAM``
wants) with the credentials of the default chain; the Region is the function URL's own
(``https://<id>.lambda-url.<region>.on.aws``), else the session's. The answer is checked as
``gatekeeper verify`` checks a record: a verdict APPROVED or APPROVED_WITH_WARNINGS, settled,
on an image not gone; then its envelope (:func:`check_envelope`): signed by the stack's key
(kms:Verify with ``--signing-key-arn`` or the ``SigningKeyArn`` output, or offline with
``--public-key``), about this digest, the answered verdict exactly, and approved. The API is
only a messenger: what it answers is trusted only as far as the stack key's signature goes.

Exit 0 approved (one line on stdout); 1 not approved, or no verdict, or no such image (one
line on stderr); 2 when the check could not run (no credentials, refused by IAM, the API
unreachable or failing).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from gatekeeper.adapters.signing import Verifier
from gatekeeper.domain import attestation
from gatekeeper.domain.attestation import AttestationError
from gatekeeper_tools.cli.deployment import EXIT_FAILED, EXIT_OK, OperatorError, parse_reference
from gatekeeper_tools.cli.verify import APPROVED_STATES

TIMEOUT = 10.0  # seconds: the function's own timeout
_FUNCTION_URL_HOST = re.compile(r"[a-z0-9]+\.lambda-url\.(?P<region>[a-z0-9-]+)\.on\.aws")
# An answer the API gives for an image it has no verdict for: not approved (exit 1).
_NOT_APPROVED_CODES = {"no-verdict", "verdict-pending", "tag-not-found", "repository-not-found"}


def verify_with_api(session: boto3.session.Session, api_url: str, reference: str,
                    verifier: Verifier) -> int:
    """0 only when the API answers an approved, settled verdict whose envelope checks out
    under ``verifier`` (the stack's key)."""
    ref = parse_reference(reference)
    path = f"/v1/verdicts/{quote(ref.repository, safe='/')}"
    path += f"@{ref.digest}" if ref.digest else f":{quote(str(ref.tag), safe='')}"
    status, answer = fetch(session, api_url.rstrip("/") + path)
    if status != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if code in _NOT_APPROVED_CODES:
            return _refuse(str(message))
        raise OperatorError(f"the verdict API answered {status}: "
                            f"{message or _excerpt(answer)}")
    why = check_verdict(answer) or check_envelope(answer, verifier)
    if why:
        return _refuse(why)
    verdict = answer["verdict"]
    warnings = ", with warnings" if verdict["outcome"] == "APPROVED_WITH_WARNINGS" else ""
    print(f"approved: {answer['repository']}@{answer['digest']} (policy version "
          f"{verdict.get('policy_version') or '-'}{warnings}; from the verdict API)")
    return EXIT_OK


def check_verdict(answer: Any) -> str | None:
    """Why the API's answer is not an approval now (None: it is), as ``verify`` judges a
    record: outcome, image gone, side effects settled."""
    verdict = answer.get("verdict") if isinstance(answer, dict) else None
    if not isinstance(verdict, dict) or not isinstance(answer.get("digest"), str):
        return f"the verdict API's answer holds no verdict: {_excerpt(answer)}"
    status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
    image = f"{answer.get('repository')}@{answer['digest']}"
    outcome = str(verdict.get("outcome"))
    if status.get("gone"):
        return f"image gone: {image} was recorded as deleted"
    if outcome not in APPROVED_STATES:
        reasons = verdict.get("reasons") or ["no reason recorded"]
        return f"{outcome.lower()}: {image}: {reasons[0]}"
    if not status.get("settled"):
        return (f"not settled: the {outcome} verdict of {image} is still being applied; "
                "retry shortly")
    return None


def check_envelope(answer: dict[str, Any], verifier: Verifier) -> str | None:
    """Why the answer's signed envelope does not vouch for its verdict (None: it does).

    The envelope's signature is the stack key's (``verifier``) over its DSSE encoding; its
    subject is the answered repository and digest; its predicate is the answered verdict,
    field by field (so the signed outcome and verdict_revision are the answer's); and the
    signed outcome is an approval. The checks are :mod:`gatekeeper.domain.attestation`'s,
    as the verdict gate makes them on a record.
    """
    image = f"{answer.get('repository')}@{answer.get('digest')}"
    raw = answer.get("envelope")
    if raw is None:
        return f"unsigned verdict: the verdict API answered no envelope for {image}"
    verdict = answer["verdict"]
    try:
        envelope = attestation.read_envelope(raw)
        _verify(envelope, verifier)
        statement = attestation.read_statement(envelope)
        attestation.check_subject(statement, str(answer.get("repository")),
                                  str(answer.get("digest")))
        attestation.check_current(statement, str(verdict.get("outcome")),
                                  verdict.get("verdict_revision"))
        changed = sorted(name for name in {*statement.predicate, *verdict}
                         if statement.predicate.get(name) != verdict.get(name))
        if changed:
            raise AttestationError(f"the answered verdict differs from the signed one in "
                                   f"{', '.join(changed)}")
    except AttestationError as err:
        return f"signed verdict refused: {image}: {err}"
    if statement.outcome not in APPROVED_STATES:
        return f"signed verdict refused: {image}: signed outcome {statement.outcome}"
    return None


def _verify(envelope: attestation.Envelope, verifier: Verifier) -> None:
    """One of the envelope's signatures is the stack key's over its PAE."""
    first: AttestationError | None = None
    for signature in envelope.signatures:
        try:
            verifier.verify(envelope.pae(), signature)
        except AttestationError as err:
            first = first or err
        else:
            return
    raise first or AttestationError("no signature")


def fetch(session: boto3.session.Session, url: str) -> tuple[int, Any]:
    """GET ``url`` SigV4-signed for a function URL: (status, the JSON answer or its text)."""
    if urlsplit(url).scheme not in ("https", "http"):
        raise OperatorError(f"{url}: not an http(s) URL")
    credentials = session.get_credentials()
    if credentials is None:
        raise OperatorError("no AWS credentials to sign the request with (the default chain "
                            "found none: AWS_PROFILE, environment, instance role...)")
    host = urlsplit(url).hostname or ""
    found = _FUNCTION_URL_HOST.fullmatch(host)
    region = found["region"] if found else session.region_name
    if not region:
        raise OperatorError("which Region signs the request? pass --region")
    request = AWSRequest(method="GET", url=url, headers={"accept": "application/json"})
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    prepared = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, headers=dict(request.headers.items()), method="GET")
    try:
        with urllib.request.urlopen(prepared, timeout=TIMEOUT) as response:  # noqa: S310 - checked above
            return response.status, _json(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _json(err.read())
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise OperatorError(f"the verdict API at {url} could not be reached: "
                            f"{getattr(err, 'reason', err)}") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        return raw.decode("utf-8", "replace")


def _excerpt(value: Any) -> str:
    return " ".join(json.dumps(value)[:160].split())


def _refuse(why: str) -> int:
    print("not approved: " + " ".join(why.split()), file=sys.stderr)  # one line, always
    return EXIT_FAILED
