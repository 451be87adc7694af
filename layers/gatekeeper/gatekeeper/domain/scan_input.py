"""Scan results as people save them from the AWS CLI, read for offline evaluation.

Accepted: the output of ``aws ecr describe-image-scan-findings`` (basic or enhanced; one page,
a JSON list of pages, or pages concatenated one after another) and the output of
``aws inspector2 list-findings`` (only its container-image findings are kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.domain.findings import Finding, FindingsError, from_enhanced, from_scan_findings

_ECR_IMAGE = "AWS_ECR_CONTAINER_IMAGE"


@dataclass
class ScanInput:
    findings: list[Finding] = field(default_factory=list)
    status: str = "COMPLETE"
    description: str | None = None
    repository: str | None = None
    digest: str | None = None
    tags: list[str] = field(default_factory=list)
    pages: int = 0


def _documents(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    position, end = 0, len(text)
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position >= end:
            return
        try:
            document, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise FindingsError(f"not JSON at line {err.lineno}, column {err.colno}: "
                                f"{err.msg}") from None
        except (ValueError, RecursionError) as err:  # a 5000-digit number, 10000 nested lists
            raise FindingsError(f"JSON this tool will not read: {err!r:.200}") from None
        if isinstance(document, list):
            yield from document
        else:
            yield document


def read_scan(text: str, digest: str | None = None) -> ScanInput:
    """Every finding in ``text``; FindingsError (with what was expected) when unreadable."""
    try:
        return _read_scan(text, digest)
    except (TypeError, AttributeError, KeyError, ValueError, OverflowError) as err:
        if isinstance(err, FindingsError):
            raise
        # a field of the wrong type deep inside: still the input's fault, never a traceback
        raise FindingsError(f"unexpected shape in the input: {err!r:.200}") from None


def _read_scan(text: str, digest: str | None) -> ScanInput:
    result = ScanInput()
    inspector: list[Mapping[str, Any]] = []
    saw_inspector = False
    for number, document in enumerate(_documents(text), start=1):
        if not isinstance(document, Mapping):
            raise FindingsError(f"document {number} is {type(document).__name__}, expected "
                                "the JSON object the AWS CLI prints")
        if (isinstance(document.get("imageScanFindings"), Mapping)
                or "imageScanStatus" in document):
            _ecr_page(result, document, number)
        elif isinstance(document.get("findings"), list):
            saw_inspector = True
            inspector.extend(_inspector_findings(document["findings"], number))
        else:
            raise FindingsError(
                f"document {number} is neither describe-image-scan-findings output "
                "(imageScanFindings) nor inspector2 list-findings output (findings)")
    if result.pages == 0 and not saw_inspector:
        raise FindingsError("no scan results in the input")
    if saw_inspector:
        _select_image(result, inspector, digest)
    return result


def _ecr_page(result: ScanInput, page: Mapping[str, Any], number: int) -> None:
    scan = page.get("imageScanFindings")
    if scan is not None and not isinstance(scan, Mapping):
        raise FindingsError(f"document {number}: imageScanFindings must be an object")
    try:
        result.findings.extend(from_scan_findings(scan or {}))
    except FindingsError as err:
        raise FindingsError(f"document {number}: {err}") from None
    if result.pages == 0:
        status = page.get("imageScanStatus")
        if isinstance(status, Mapping):
            result.status = str(status.get("status") or "COMPLETE")
            result.description = status.get("description")
        result.repository = _text(page.get("repositoryName"), "repositoryName", number)
        image = page.get("imageId") if isinstance(page.get("imageId"), Mapping) else {}
        result.digest = _text(image.get("imageDigest"), "imageId.imageDigest", number)
        tag = _text(image.get("imageTag"), "imageId.imageTag", number)
        if tag:
            result.tags = [tag]
    result.pages += 1


def _text(value: Any, name: str, number: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise FindingsError(f"document {number}: {name} must be a string, got {type(value).__name__}")


def _inspector_findings(items: list[Any], number: int) -> Iterator[Mapping[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise FindingsError(f"document {number}: findings[{index}] is not an object")
        resources = item.get("resources")
        if isinstance(resources, list) and resources and not any(
                isinstance(r, Mapping) and r.get("type") == _ECR_IMAGE for r in resources):
            continue  # an EC2 instance or Lambda function finding: not about an image
        yield item


def _image_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    for resource in item.get("resources") or ():
        if isinstance(resource, Mapping) and resource.get("type") == _ECR_IMAGE:
            details = resource.get("details")
            image = details.get("awsEcrContainerImage") if isinstance(details, Mapping) else None
            if isinstance(image, Mapping):
                return image
    return {}


def _select_image(result: ScanInput, items: list[Mapping[str, Any]],
                  digest: str | None) -> None:
    by_digest: dict[str | None, list[Mapping[str, Any]]] = {}
    for item in items:
        image_hash = _image_of(item).get("imageHash")
        if image_hash is not None and not isinstance(image_hash, str):
            raise FindingsError("a finding's imageHash must be a string")
        by_digest.setdefault(image_hash, []).append(item)
    if digest is not None and by_digest and digest not in by_digest:
        found = ", ".join(sorted(str(d) for d in by_digest))
        raise FindingsError(f"no findings for --digest {digest}; the input covers: {found}")
    if digest is None:
        if len(by_digest) > 1:
            found = ", ".join(sorted(str(d) for d in by_digest))
            raise FindingsError(f"the findings cover {len(by_digest)} images ({found}); "
                                "choose one with --digest")
        digest = next(iter(by_digest), None)
    chosen = by_digest.get(digest, [])
    image = _image_of(chosen[0]) if chosen else {}
    result.findings.extend(from_enhanced(item) for item in chosen)
    result.digest = result.digest or digest
    result.repository = result.repository or image.get("repositoryName")
    if not result.tags and isinstance(image.get("imageTags"), list):
        result.tags = [str(t) for t in image["imageTags"]]
    result.pages = max(result.pages, 1)
