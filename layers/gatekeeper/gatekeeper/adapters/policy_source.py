"""The published policy: a versioned S3 object, cached briefly per container.

The S3 version id is the policy version every verdict records. With no object published yet
the built-in strict policy applies (fail closed). A published object that does not validate
raises PolicyError: the event then fails and lands in the dead-letter queue for replay once
the policy is fixed, rather than being judged by a policy nobody wrote.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from gatekeeper.domain.policy import BUILTIN_POLICY, Policy, parse_policy


class S3PolicySource:
    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        max_age_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._key = key
        self._max_age = max_age_seconds
        self._clock = clock
        self._cached: tuple[float, Policy] | None = None

    def get(self) -> Policy:
        now = self._clock()
        if self._cached and now - self._cached[0] < self._max_age:
            return self._cached[1]
        policy = self._load()
        self._cached = (now, policy)
        return policy

    def refresh(self) -> Policy:
        """Read the object now, whatever the cache holds (a new version was just published)."""
        self._cached = None
        return self.get()

    def _load(self) -> Policy:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self._key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return BUILTIN_POLICY
            raise
        body = response["Body"].read()
        version = response.get("VersionId")
        if not version or version == "null":
            version = "sha256:" + hashlib.sha256(body).hexdigest()[:12]
        return parse_policy(body, source=f"s3://{self._bucket}/{self._key}", version=version)
