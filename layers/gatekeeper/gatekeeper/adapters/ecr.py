"""Amazon ECR: read an image's scan findings (every page) and add or remove marker tags."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from gatekeeper.domain.findings import (
    FINDINGS_INCOMPLETE,
    Finding,
    FindingsReader,
    InUse,
    parse_timestamp,
)
from gatekeeper.domain.policy import SCAN_FAILED_STATES

# Every manifest type ECR stores; without this BatchGetImage may refuse or convert OCI images.
MANIFEST_MEDIA_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
]
_GONE = {"ImageNotFoundException", "RepositoryNotFoundException"}
# At most this many pages of findings are read (1,000 findings a page: a million findings);
# past it the scan is FINDINGS_INCOMPLETE rather than a Lambda that pages until it times out.
MAX_PAGES = 1000
INDEX_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
})


@dataclass(frozen=True)
class Platform:
    """One platform image an image index references."""

    digest: str
    platform: str  # "linux/arm64/v8"


class ImageGone(Exception):
    """The image (or its repository) no longer exists."""


class UnsafeUntag(Exception):
    """Removing this tag would delete the image or touch a tag on another image."""


class TagTaken(Exception):
    """The tag is on another image of the repository (which must give it up first)."""

    def __init__(self, tag: str, holder: str) -> None:
        super().__init__(f"{tag} is on {holder}")
        self.tag = tag
        self.holder = holder


@dataclass(frozen=True)
class ScanResult:
    status: str
    description: str | None
    findings: list[Finding]
    completed_at: datetime | None
    pages: int
    in_use: InUse | None = None  # what enhanced findings say of the image's use


@dataclass(frozen=True)
class _Head:
    """What a scan's first page says besides its findings (kept; the page itself is not)."""

    status: object
    description: object
    completed_at: datetime | None

    @classmethod
    def of(cls, page: dict[str, Any]) -> _Head | None:
        """A page's status, description and completion time; None for an empty page (the
        next page says them then)."""
        if not page:
            return None
        raw_status = page.get("imageScanStatus")
        raw_status = raw_status if isinstance(raw_status, dict) else {}
        scan = page.get("imageScanFindings")
        scan = scan if isinstance(scan, dict) else {}
        return cls(raw_status.get("status"), raw_status.get("description"),
                   parse_timestamp(scan.get("imageScanCompletedAt")))


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class EcrImages:
    def __init__(self, client: Any, page_size: int = 1000) -> None:
        self._ecr = client
        self._page_size = page_size

    def _image(self, repository: str, digest: str) -> dict[str, Any]:
        """The image's manifest (BatchGetImage); ImageGone when it no longer exists."""
        try:
            response = self._ecr.batch_get_image(
                repositoryName=repository,
                imageIds=[{"imageDigest": digest}],
                acceptedMediaTypes=MANIFEST_MEDIA_TYPES,
            )
        except ClientError as err:  # the repository itself deleted
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            raise
        images = response.get("images") or []
        if not images:
            failure = (response.get("failures") or [{}])[0]
            raise ImageGone(f"{repository}@{digest}: {failure.get('failureCode', 'not found')}")
        return dict(images[0])

    def _details(self, repository: str, digest: str) -> dict[str, Any]:
        """The image's details (DescribeImages); ImageGone when it no longer exists."""
        try:
            described = self._ecr.describe_images(
                repositoryName=repository, imageIds=[{"imageDigest": digest}])
        except ClientError as err:
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            raise
        return dict((described.get("imageDetails") or [{}])[0])

    def start_scan(self, repository: str, digest: str) -> str:
        """Start a basic scan of an image its repository does not scan on push; returns what
        happened ("started", or why not). Never raises but for a gone image: a scan that
        cannot start leaves the image to the scan timeout, which fails closed."""
        try:
            configs = self._ecr.batch_get_repository_scanning_configuration(
                repositoryNames=[repository]).get("scanningConfigurations") or [{}]
        except ClientError as err:
            return f"scanning configuration unreadable: {_code(err)}"
        frequency = configs[0].get("scanFrequency")
        if configs[0].get("scanOnPush") or frequency != "MANUAL":
            return f"not needed: scan frequency {frequency}"
        try:
            self._ecr.start_image_scan(repositoryName=repository,
                                       imageId={"imageDigest": digest})
        except ClientError as err:
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            # LimitExceededException (one basic scan a day), UnsupportedImageTypeException,
            # ValidationException (a registry on enhanced scanning), AccessDenied, ...
            return f"not started: {_code(err)}"
        return "started"

    def scan(self, repository: str, digest: str) -> ScanResult | None:
        """The image's latest scan with all its findings; None when it was never scanned.

        A finished scan whose findings could not all be read comes back FINDINGS_INCOMPLETE,
        its description saying why: findings that disagree with the severity counts, a
        severity AWS does not define, no scan status, a token seen twice, a token ECR refuses,
        or more than MAX_PAGES pages (paging stops there: it never loops). A failed scan keeps
        its state.
        """
        reader = FindingsReader()
        kwargs: dict[str, Any] = {
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "maxResults": self._page_size,
        }
        head: _Head | None = None
        tokens: set[str] = set()
        while True:
            # One parsed page at a time: it is read into the reader's findings (and the first
            # page's scan status noted) and dropped before the next page is asked for.
            try:
                page = self._ecr.describe_image_scan_findings(**kwargs)
            except ClientError as err:
                if _code(err) == "ScanNotFoundException":
                    return None
                if _code(err) in _GONE:
                    raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
                if reader.pages and _code(err) == "InvalidParameterException":
                    # ECR refuses the token its own previous page returned: the rest of the
                    # findings cannot be read (a retry would be refused the same way)
                    reader.note(f"DescribeImageScanFindings refused the token of page "
                                f"{reader.pages} (InvalidParameterException); paging stopped")
                    break
                raise
            head = head or _Head.of(page)
            reader.add(page.get("imageScanFindings"))
            token = page.get("nextToken")
            del page
            if not token:
                break
            if token in tokens:
                reader.note(f"DescribeImageScanFindings returned the token of an earlier page "
                            f"again on page {reader.pages}; paging stopped")
                break
            if reader.pages >= MAX_PAGES:
                reader.note(f"more than {MAX_PAGES} pages of findings; paging stopped")
                break
            tokens.add(str(token))
            kwargs["nextToken"] = token
        head = head or _Head(None, None, None)
        status, description = head.status, head.description
        problems = reader.problems()
        if not isinstance(status, str) or not status:
            problems.insert(0, "DescribeImageScanFindings returned no scan status")
        if problems and status not in SCAN_FAILED_STATES:
            description = f"scan {status or 'status missing'}, findings incomplete: " + (
                "; ".join(problems))
            status = FINDINGS_INCOMPLETE
        return ScanResult(
            status=str(status),
            description=description if isinstance(description, str) else None,
            findings=reader.findings,
            completed_at=head.completed_at,
            pages=reader.pages,
            in_use=reader.in_use,
        )

    def add_tag(self, repository: str, digest: str, tag: str) -> bool:
        """Tag the image by re-putting its own manifest; False when it already had the tag.
        TagTaken when the tag is on another image of the repository (IMMUTABLE: it cannot
        move; only a forged marker puts our tag there)."""
        image = self._image(repository, digest)
        request: dict[str, Any] = {
            "repositoryName": repository,
            "imageManifest": image["imageManifest"],
            "imageTag": tag,
            "imageDigest": digest,
        }
        if image.get("imageManifestMediaType"):
            request["imageManifestMediaType"] = image["imageManifestMediaType"]
        try:
            self._ecr.put_image(**request)
        except ClientError as err:
            # ImageAlreadyExists: this digest has this tag already (a retry, or the echo of
            # our own write); ImageTagAlreadyExists (AWS, IMMUTABLE repositories; moto says
            # ImageAlreadyExists there too): the tag may be on another image. Ask which.
            if _code(err) in ("ImageAlreadyExistsException", "ImageTagAlreadyExistsException"):
                holder = self.holder(repository, tag)
                if holder is None or holder == digest:
                    return False
                raise TagTaken(tag, holder) from err
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            raise
        return True

    def holder(self, repository: str, tag: str) -> str | None:
        """The digest of the image carrying ``tag`` now; None when no image has it."""
        try:
            described = self._ecr.describe_images(repositoryName=repository,
                                                  imageIds=[{"imageTag": tag}])
        except ClientError as err:
            if _code(err) == "ImageNotFoundException":
                return None
            if _code(err) == "RepositoryNotFoundException":
                raise ImageGone(f"{repository}: {_code(err)}") from err
            raise
        details = described.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def remove_tags(self, repository: str, digest: str, tags: list[str]) -> list[str]:
        """Remove these tags, which the caller has just read on this image, in one call;
        returns those removed. Refuses (UnsafeUntag) to remove every tag the image has read
        now (ECR deletes an image whose last tag is removed): the caller's plan keeps one."""
        if not tags:
            return []
        try:
            response = self._ecr.batch_delete_image(
                repositoryName=repository, imageIds=[{"imageTag": tag} for tag in tags])
        except ClientError as err:
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            raise
        for failure in response.get("failures") or []:
            if failure.get("failureCode") not in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                raise UnsafeUntag(f"untag failed: {failure.get('failureReason')}")
        return [str(i["imageTag"]) for i in response.get("imageIds") or () if i.get("imageTag")]

    def remove_tag(self, repository: str, digest: str, tag: str) -> bool:
        """Remove ``tag`` from this image only; False when it was not there.

        Refuses (UnsafeUntag) when the tag is the image's last one, since ECR deletes an image
        whose last tag is removed.
        """
        tags = self.observe(repository, digest)
        if tag not in tags:
            return False
        if len(tags) < 2:
            raise UnsafeUntag(f"{tag} is the last tag of {repository}@{digest}")
        return bool(self.remove_tags(repository, digest, [tag]))

    def find(self, repository: str, prefix: str) -> list[str]:
        """The digests in the repository whose hex starts with ``prefix`` (ListImages, every
        page): the images a marker naming that prefix belongs to."""
        found: list[str] = []
        kwargs: dict[str, Any] = {"repositoryName": repository, "maxResults": 1000}
        for _ in range(1000):
            try:
                page = self._ecr.list_images(**kwargs)
            except ClientError as err:
                if _code(err) in _GONE:
                    return found
                raise
            for image in page.get("imageIds") or ():
                digest = str(image.get("imageDigest") or "")
                if digest.split(":", 1)[-1].startswith(prefix) and digest not in found:
                    found.append(digest)
            token = page.get("nextToken")
            if not token or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token
        return found

    def set_storage_class(self, repository: str, digest: str, storage_class: str) -> bool:
        """ARCHIVE (pulls fail) or STANDARD (restore); False when ECR cannot do it for this
        image (ImageStorageClassUpdateNotSupportedException): the marker still stands."""
        try:
            self._ecr.update_image_storage_class(
                repositoryName=repository, imageId={"imageDigest": digest},
                targetStorageClass=storage_class)
        except ClientError as err:
            if _code(err) == "ImageStorageClassUpdateNotSupportedException":
                return False
            if _code(err) in _GONE:
                raise ImageGone(f"{repository}@{digest}: {_code(err)}") from err
            raise
        return True

    def platforms(self, repository: str, digest: str) -> list[Platform] | None:
        """The platform images of an image index (attestations left out); None when the
        image is a single-platform image."""
        image = self._image(repository, digest)
        try:
            manifest = json.loads(image.get("imageManifest") or "{}")
        except ValueError:
            return None
        media_type = image.get("imageManifestMediaType") or manifest.get("mediaType")
        if media_type not in INDEX_MEDIA_TYPES:
            return None
        found = []
        for entry in manifest.get("manifests") or ():
            annotations = entry.get("annotations") or {}
            if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            platform = entry.get("platform") or {}
            name = "/".join(str(p) for p in (platform.get("os"), platform.get("architecture"),
                                             platform.get("variant")) if p)
            if name == "unknown/unknown" or not entry.get("digest"):
                continue
            found.append(Platform(str(entry["digest"]), name or "unknown"))
        return found

    def observe(self, repository: str, digest: str) -> list[str]:
        """The image's tags now (DescribeImages); ImageGone when it no longer exists."""
        return sorted(self._details(repository, digest).get("imageTags") or [])

    def tags(self, repository: str, digest: str) -> list[str]:
        """The image's tags now; none when it no longer exists."""
        try:
            return self.observe(repository, digest)
        except ImageGone:
            return []
