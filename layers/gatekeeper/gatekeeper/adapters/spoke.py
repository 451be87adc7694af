"""A member account, from an organization's hub: the spoke role the hub assumes there, and the
errors that mean "this account cannot be worked on now".

Each member account and Region runs the spoke stack (``spoke.yaml``): one role,
``<SpokeRoleName>-<Region>``, trusting only the hub's function roles, allowed the ECR reads and
marker writes the gatekeeper makes. :class:`SpokeSessions` assumes it once per account and
Region and keeps the credentials in botocore's refreshable credentials, which renew them
before they expire (botocore refreshes 15 minutes ahead, and must 10 minutes ahead), so a
warm container assumes each role about once an hour, not once per event.

Every client made here uses botocore's adaptive retry mode: its client-side rate limiter
belongs to that one client, so a throttled account slows down its own calls only; what is
still throttled after the retries is :func:`throttled`, and the handlers put the event off in
SQS rather than failing it (see gatekeeper.service.hub).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from gatekeeper.domain.scope import Scope

SESSION_NAME = "ecr-scan-gatekeeper"
ROLE_SECONDS = 3600
# Adaptive mode: standard retries plus a client-side token bucket that backs off on throttling.
SPOKE_BOTO_CONFIG = BotoConfig(retries={"mode": "adaptive", "max_attempts": 6},
                               connect_timeout=5, read_timeout=20)
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ProvisionedThroughputExceededException", "SlowDown",
})
# A member account's services answer these when the spoke role may not do what is asked.
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                          "UnrecognizedClientException", "InvalidSignatureException"})
# AssumeRole answers these too when the role is missing, does not trust the hub, or is denied.
_UNAVAILABLE_CODES = DENIED_CODES | {"NoSuchEntity", "InvalidClientTokenId", "ExpiredToken",
                                     "RegionDisabledException"}


class SpokeUnavailable(Exception):
    """The hub cannot act in a member account: its spoke role is missing or denies."""

    def __init__(self, scope: Scope, reason: str) -> None:
        super().__init__(f"spoke role in {scope} unavailable: {reason}")
        self.scope = scope
        self.reason = reason


def throttled(err: BaseException) -> bool:
    """An AWS error that says only "too many requests, try later"."""
    if isinstance(err, ClientError):
        error = err.response.get("Error") or {}
        return error.get("Code") in THROTTLING_CODES
    return False


def role_arn(scope: Scope, role_name: str, partition: str = "aws") -> str:
    """The spoke role of ``scope``: one per member account and Region (``NAME-REGION``)."""
    return f"arn:{partition}:iam::{scope.account}:role/{role_name}-{scope.region}"


class SpokeSessions:
    """boto3 sessions acting in member accounts through their spoke roles, one per scope,
    built on first use and kept (thread-safe); their credentials renew themselves."""

    def __init__(self, sts: Any, role_name: str, partition: str = "aws",
                 session_name: str = SESSION_NAME) -> None:
        self._sts = sts
        self.role_name = role_name
        self.partition = partition
        self.session_name = session_name
        self._sessions: dict[Scope, boto3.session.Session] = {}
        self._lock = threading.Lock()
        # One loader of the service models for every member's session: a new account costs
        # its AssumeRole and its client, not reading ECR's model from disk again.
        self._loader = botocore.session.get_session().get_component("data_loader")

    def client(self, service: str, scope: Scope, config: BotoConfig = SPOKE_BOTO_CONFIG) -> Any:
        """A client for ``service`` in ``scope``; SpokeUnavailable when its role cannot be
        assumed."""
        return self.session(scope).client(service, region_name=scope.region, config=config)

    def session(self, scope: Scope) -> boto3.session.Session:
        with self._lock:
            found = self._sessions.get(scope)
        if found is not None:
            return found
        credentials = RefreshableCredentials.create_from_metadata(
            metadata=self._assume(scope), refresh_using=lambda: self._assume(scope),
            method="sts-assume-role")
        core = botocore.session.get_session()
        core.register_component("data_loader", self._loader)
        # botocore has no public setter for refreshable credentials; this attribute is what
        # its own credential resolver fills, and what boto3 sessions read.
        core._credentials = credentials
        session = boto3.session.Session(botocore_session=core, region_name=scope.region)
        with self._lock:
            return self._sessions.setdefault(scope, session)

    def _assume(self, scope: Scope) -> dict[str, str]:
        arn = role_arn(scope, self.role_name, self.partition)
        try:
            response = self._sts.assume_role(RoleArn=arn, RoleSessionName=self.session_name,
                                             DurationSeconds=ROLE_SECONDS)
        except ClientError as err:
            error = err.response.get("Error") or {}
            if throttled(err):
                raise
            if error.get("Code") in _UNAVAILABLE_CODES or err.response.get(
                    "ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403, 404):
                raise SpokeUnavailable(scope, f"AssumeRole {arn}: {error.get('Code')}: "
                                              f"{error.get('Message')}") from err
            raise
        except BotoCoreError as err:
            raise SpokeUnavailable(scope, f"AssumeRole {arn}: {err}") from err
        credentials = response["Credentials"]
        expiry = credentials["Expiration"]
        return {"access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime)
                else str(expiry)}
