"""Make images and scan results in moto's ECR (in-process only), for the demo and the tests.

moto stores a scan result per image and returns it verbatim; these helpers put a result
where ``describe_image_scan_findings`` by digest will find it, and replace it on a re-scan.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def manifest(seed: str) -> str:
    """A schema-2 manifest whose layer digests derive from ``seed``: one seed, one image."""
    def digest(part: str) -> str:
        return "sha256:" + hashlib.sha256(f"{seed}/{part}".encode()).hexdigest()

    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 7023, "digest": digest("config")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 32654, "digest": digest("layer")}],
    })


def push_image(ecr: Any, repository: str, tag: str, seed: str | None = None) -> str:
    """Push an image and return its digest (moto's digest is not sha256 of the manifest)."""
    response = ecr.put_image(repositoryName=repository, imageManifest=manifest(seed or tag),
                             imageManifestMediaType=MEDIA_TYPE, imageTag=tag)
    return str(response["image"]["imageId"]["imageDigest"])


def set_scan_result(repository: str, digest: str, result: dict[str, Any],
                    account: str = "123456789012", region: str = "us-east-1") -> None:
    """Make ``result`` (a DescribeImageScanFindings body) the image's latest scan."""
    from moto.ecr.models import ecr_backends

    backend = ecr_backends[account][region]
    image = backend.repositories[repository]._get_image(None, digest)
    body = copy.deepcopy(result)
    body.update(registryId=account, repositoryName=repository,
                imageId={"imageDigest": digest})
    findings = body.setdefault("imageScanFindings", {})
    findings.setdefault("imageScanCompletedAt", datetime.now(UTC).timestamp())
    image.last_scan = datetime.now()
    image.scan_finding_results_queue.clear()
    image.scan_finding_results.clear()
    image.scan_finding_results[json.dumps({"imageDigest": digest})] = body


def load_sample(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
