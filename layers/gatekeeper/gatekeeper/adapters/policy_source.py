"""The published policy: a versioned S3 object, cached briefly per container.

The S3 version id is the policy version every verdict records, and the object's LastModified
its order (S3 sets it; nobody can write an older one). With no object published yet the
built-in strict policy applies (fail closed). A published object that does not validate
raises PolicyError: the event then fails and lands in the dead-letter queue for replay once
the policy is fixed, rather than being judged by a policy nobody wrote.

The cache is cheap to keep fresh: past its age the object is read again only if its ETag
changed (a conditional GET answering 304 costs no transfer and no parse).

The OpenVEX documents a policy names are read with it, from the same bucket, under ``vex/``
(the only other keys the functions may read): ``vex:`` paths relative to the policy object's
key, and every object under ``vex_prefix:``. They are cached
with the policy and read again, past the cache's age, only when their ETags changed (one
ListObjectsV2 page per 1,000 documents under the prefix, a conditional GET per named file). A
named document missing or one that does not validate raises PolicyError, as a broken policy
does: nothing is judged with part of the VEX the security team published.

A policy that sets ``block_if_known_exploited`` anywhere gets CISA's KEV catalog attached
(``policy.known_exploited``), read from the same bucket (:data:`KEV_KEY`) alongside the policy
and cached the same way. A catalog that is missing or does not read is attached as
unavailable, with the reason: the rule then fails closed, and only the images it applies to are
quarantined (the event does not fail, the catalog is read again past the cache's age).
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from gatekeeper.domain.kev import KEV_KEY, KevCatalog, KevError, parse_catalog
from gatekeeper.domain.policy import BUILTIN_POLICY, Policy, PolicyError, PolicyIssue, parse_policy

if TYPE_CHECKING:
    from gatekeeper.domain.vex import VexIndex

# Where the functions may read VEX documents (template.yaml grants s3:GetObject on it).
VEX_FOLDER = "vex/"


class S3PolicySource:
    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        max_age_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
        with_catalog: bool = True,
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._key = key
        self._max_age = max_age_seconds
        self._clock = clock
        self._cached: tuple[float, Policy] | None = None
        self._etag: str | None = None
        self.reads = 0  # GetObject calls, and how many of them found the object unchanged
        self.unchanged = 0
        self._vex: dict[str, tuple[str, bytes]] = {}  # key: (ETag, body) of each VEX document
        self._vex_index: tuple[tuple[tuple[str, str], ...], VexIndex] | None = None
        # None: the KEV catalog is not attached (the sweeper only asks whether a rule uses it)
        self.catalog = KevCatalogSource(client, bucket, KEV_KEY) if with_catalog else None

    def get(self) -> Policy:
        now = self._clock()
        if self._cached and now - self._cached[0] < self._max_age:
            return self._cached[1]
        policy = self._with_catalog(self._load(self._cached[1] if self._cached else None))
        self._cached = (now, policy)
        return policy

    def refresh(self) -> Policy:
        """Read the object now, whatever the cache's age (a new version was just published, or
        a verdict names a version this container has not seen)."""
        previous = self._cached[1] if self._cached else None
        policy = self._with_catalog(self._load(previous))
        self._cached = (self._clock(), policy)
        return policy

    def _with_catalog(self, policy: Policy) -> Policy:
        """The policy with the KEV catalog attached, when a rule of it uses the catalog."""
        if self.catalog is None or not policy.uses_known_exploited:
            return policy
        catalog = self.catalog.get()
        if catalog is policy.known_exploited:
            return policy
        return dataclasses.replace(policy, known_exploited=catalog)

    def _load(self, cached: Policy | None) -> Policy:
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if cached is not None and self._etag:
            request["IfNoneMatch"] = self._etag
        self.reads += 1
        try:
            response = self._s3.get_object(**request)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code"))
            if code in ("304", "NotModified") and cached is not None:
                self.unchanged += 1
                return self._with_vex(cached)
            if code in ("NoSuchKey", "404"):
                self._etag = None
                return BUILTIN_POLICY
            raise
        body = response["Body"].read()
        version = response.get("VersionId")
        if not version or version == "null":
            version = "sha256:" + hashlib.sha256(body).hexdigest()[:12]
        policy = parse_policy(body, source=f"s3://{self._bucket}/{self._key}", version=version)
        policy = self._with_vex(policy)
        self._etag = response.get("ETag")
        return dataclasses.replace(policy, order=_order(response.get("LastModified")))

    # --- the policy's VEX documents ------------------------------------------------------

    def _with_vex(self, policy: Policy) -> Policy:
        """``policy`` with the statements of the VEX documents it names, read again only
        where their ETags changed."""
        if not policy.vex_files and not policy.vex_prefix:
            return dataclasses.replace(policy, vex=None) if policy.vex else policy
        keys = self._vex_keys(policy)
        current = {key: self._vex_document(key, etag) for key, etag in keys}
        self._vex = current
        signature = tuple((key, current[key][0]) for key in sorted(current))
        if self._vex_index is None or self._vex_index[0] != signature:
            named = [(f"s3://{self._bucket}/{key}", current[key][1]) for key in sorted(current)]
            from gatekeeper.domain import vex  # only a policy naming VEX documents loads it

            self._vex_index = (signature, vex.load_documents(named))
        return dataclasses.replace(policy, vex=self._vex_index[1])

    def _vex_keys(self, policy: Policy) -> list[tuple[str, str | None]]:
        """Each VEX key with its ETag where a listing gave it."""
        folder = posixpath.dirname(self._key)
        keys: list[tuple[str, str | None]] = []
        issues = []
        for index, name in enumerate(policy.vex_files):
            key = posixpath.normpath(posixpath.join(folder, name))
            if not key.startswith(VEX_FOLDER) or name.startswith("/"):
                issues.append(PolicyIssue(f"vex[{index}]", f"{name!r} is the key {key!r}: the "
                                          f"functions read VEX documents under {VEX_FOLDER} of "
                                          "the policy bucket only"))
            else:
                keys.append((key, None))
        if policy.vex_prefix and not policy.vex_prefix.startswith(VEX_FOLDER):
            issues.append(PolicyIssue("vex_prefix", f"{policy.vex_prefix!r}: the functions "
                                      f"read VEX documents under {VEX_FOLDER} of the policy "
                                      "bucket only"))
        if issues:
            raise PolicyError(issues, source=f"s3://{self._bucket}/{self._key}")
        if policy.vex_prefix:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=policy.vex_prefix)
            keys += [(item["Key"], item.get("ETag")) for page in pages
                     for item in page.get("Contents", ()) if not item["Key"].endswith("/")]
        return list(dict.fromkeys(keys))

    def _vex_document(self, key: str, etag: str | None) -> tuple[str, bytes]:
        """The (ETag, body) of one VEX document; the cached one when its ETag is unchanged."""
        cached = self._vex.get(key)
        if cached is not None and etag is not None and cached[0] == etag:
            return cached
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if cached is not None:
            request["IfNoneMatch"] = cached[0]
        try:
            response = self._s3.get_object(**request)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code"))
            if code in ("304", "NotModified") and cached is not None:
                return cached
            if code in ("NoSuchKey", "404"):
                raise PolicyError([PolicyIssue("vex", f"s3://{self._bucket}/{key} does not "
                                                      "exist")],
                                  source=f"s3://{self._bucket}/{self._key}") from None
            raise
        return str(response.get("ETag")), response["Body"].read()


def _order(last_modified: Any) -> str:
    """The publication instant as a sortable string (UTC, seconds)."""
    if not isinstance(last_modified, datetime):
        return ""
    stamp = last_modified if last_modified.tzinfo else last_modified.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KevCatalogSource:
    """The bucket's copy of CISA's KEV catalog, read again only when its ETag changed."""

    def __init__(self, client: Any, bucket: str, key: str = KEV_KEY) -> None:
        self._s3 = client
        self._bucket = bucket
        self._key = key
        self._etag: str | None = None
        self._cached: KevCatalog | None = None

    @property
    def location(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    def get(self) -> KevCatalog:
        """The catalog; an unavailable one (with the reason) when it cannot be read."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        if self._cached is not None and self._etag:
            request["IfNoneMatch"] = self._etag
        try:
            response = self._s3.get_object(**request)
            body = response["Body"].read()
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code"))
            if code in ("304", "NotModified") and self._cached is not None:
                return self._cached
            problem = (f"no catalog at {self.location}" if code in ("NoSuchKey", "404")
                       else f"{self.location} could not be read ({code})")
            return self._unavailable(problem)
        try:
            catalog = parse_catalog(body, source=self.location)
        except KevError as err:
            return self._unavailable(" ".join(line.strip() for line in str(err).splitlines()))
        self._etag, self._cached = response.get("ETag"), catalog
        return catalog

    def put(self, body: bytes) -> str:
        """Write a new copy (a new S3 version); its version id."""
        response = self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body,
                                       ContentType="application/json")
        return str(response.get("VersionId") or "")

    def _unavailable(self, problem: str) -> KevCatalog:
        """No catalog (the verdicts of the rule's images say why); read again next time."""
        self._etag, self._cached = None, None
        return KevCatalog.unavailable(problem)
