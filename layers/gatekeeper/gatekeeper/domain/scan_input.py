"""Scan results as people save them from the AWS CLI, read for offline evaluation.

Accepted: the output of ``aws ecr describe-image-scan-findings`` (basic or enhanced; one page,
a JSON list of pages, or pages concatenated one after another) and the output of
``aws inspector2 list-findings`` (only its container-image findings are kept); and the JSON
reports of Trivy and Grype (:mod:`gatekeeper.domain.foreign_scans`), named by ``input_format``
or recognised by their shape.

What the input says about its own completeness is kept, not judged: ``problems`` lists why
these are not all the image's findings (see FindingsReader: counts that disagree with the
findings, severities AWS does not define, no scan status, pages of two images), and
``next_token`` the token of a page that says more pages follow. The caller refuses to judge
either.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.domain import foreign_scans
from gatekeeper.domain.findings import (
    Finding,
    FindingsError,
    FindingsReader,
    InUse,
    from_enhanced,
)

_ECR_IMAGE = "AWS_ECR_CONTAINER_IMAGE"
AWS, AUTO = "aws", "auto"
INPUT_FORMATS = (AUTO, AWS, *foreign_scans.FORMATS)
_NOTHING = object()


@dataclass
class ScanInput:
    findings: list[Finding] = field(default_factory=list)
    status: str = ""  # "" when the input says nothing about the scan's state
    description: str | None = None
    repository: str | None = None
    digest: str | None = None
    tags: list[str] = field(default_factory=list)
    pages: int = 0
    problems: list[str] = field(default_factory=list)
    next_token: str | None = None  # every page says more follow: the last one's token
    in_use: InUse | None = None  # what enhanced findings say of the image's use


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


def read_scan(text: str, digest: str | None = None, input_format: str = AUTO) -> ScanInput:
    """Every finding in ``text``; FindingsError (with what was expected) when unreadable.

    ``input_format``: ``aws`` (ECR or Inspector output), ``trivy``, ``grype``, or ``auto``
    (the first document's shape decides)."""
    if input_format not in INPUT_FORMATS:
        raise FindingsError(f"unknown input format {input_format!r}; expected one of "
                            f"{', '.join(INPUT_FORMATS)}")
    try:
        documents = _documents(text)
        first = next(documents, _NOTHING)
        if first is not _NOTHING:
            documents = itertools.chain([first], documents)
        kind = foreign_scans.detect(first) if input_format == AUTO else input_format
        if kind in foreign_scans.FORMATS:
            return _foreign(kind, documents)
        return _read_scan(documents, digest)
    except (TypeError, AttributeError, KeyError, ValueError, OverflowError) as err:
        if isinstance(err, FindingsError):
            raise
        # a field of the wrong type deep inside: still the input's fault, never a traceback
        raise FindingsError(f"unexpected shape in the input: {err!r:.200}") from None


def _foreign(kind: str, documents: Iterable[Any]) -> ScanInput:
    report = foreign_scans.read_report(kind, documents)
    return ScanInput(findings=report.reader.findings, status="COMPLETE",
                     repository=report.repository, digest=report.digest, tags=report.tags,
                     pages=1, problems=report.reader.problems())


def _read_scan(documents: Iterable[Any], digest: str | None) -> ScanInput:
    result = ScanInput()
    reader = FindingsReader()
    inspector: list[Mapping[str, Any]] = []
    saw_inspector = False
    tokens: dict[str, list[str | None]] = {"ecr": [], "inspector": []}
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, Mapping):
            raise FindingsError(f"document {number} is {type(document).__name__}, expected "
                                "the JSON object the AWS CLI prints")
        if (isinstance(document.get("imageScanFindings"), Mapping)
                or "imageScanStatus" in document):
            _ecr_page(result, reader, document, number)
            tokens["ecr"].append(_token(document, number))
        elif isinstance(document.get("findings"), list):
            saw_inspector = True
            inspector.extend(_inspector_findings(document["findings"], number))
            tokens["inspector"].append(_token(document, number))
        else:
            raise FindingsError(
                f"document {number} is neither describe-image-scan-findings output "
                "(imageScanFindings) nor inspector2 list-findings output (findings); "
                "a Trivy or Grype JSON report is read with --input-format trivy|grype "
                "(or recognised by its SchemaVersion and Results, or matches)")
    if result.pages == 0 and not saw_inspector:
        raise FindingsError("no scan results in the input")
    if saw_inspector:
        if result.pages == 0:
            result.status = "COMPLETE"  # list-findings lists the findings in force now
        _select_image(result, reader, inspector, digest)
    for found in tokens.values():
        # A complete read ends with a page that names no next page (in whatever order the
        # pages were saved); when every page names one, more follow.
        if found and all(found):
            result.next_token = found[-1]
    result.findings = reader.findings
    result.in_use = reader.in_use
    result.problems = reader.problems()
    if result.pages and not result.status:
        result.problems.insert(0, "document 1 has no imageScanStatus.status: nothing says the "
                                  "scan finished")
    return result


def _token(document: Mapping[str, Any], number: int) -> str | None:
    """The page's next-page token: ``nextToken`` (the API's, --no-paginate) or ``NextToken``
    (the AWS CLI's own, with --max-items)."""
    for key in ("nextToken", "NextToken"):
        value = document.get(key)
        if value is not None and value != "":
            if not isinstance(value, str):
                raise FindingsError(f"document {number}: {key} must be a string, got "
                                    f"{type(value).__name__}")
            return value
    return None


def _ecr_page(result: ScanInput, reader: FindingsReader, page: Mapping[str, Any],
              number: int) -> None:
    scan = page.get("imageScanFindings")
    if scan is not None and not isinstance(scan, Mapping):
        raise FindingsError(f"document {number}: imageScanFindings must be an object")
    reader.add(scan)
    status = page.get("imageScanStatus")
    state = status.get("status") if isinstance(status, Mapping) else None
    if state is not None and not isinstance(state, str):
        raise FindingsError(f"document {number}: imageScanStatus.status must be a string, "
                            f"got {type(state).__name__}")
    repository = _text(page.get("repositoryName"), "repositoryName", number)
    image = page.get("imageId") if isinstance(page.get("imageId"), Mapping) else {}
    image_digest = _text(image.get("imageDigest"), "imageId.imageDigest", number)
    if result.pages == 0:
        result.status = state or ""
        if isinstance(status, Mapping):
            result.description = status.get("description")
        result.repository = repository
        result.digest = image_digest
        tag = _text(image.get("imageTag"), "imageId.imageTag", number)
        if tag:
            result.tags = [tag]
    else:
        for what, first, this in (("repository", result.repository, repository),
                                  ("image", result.digest, image_digest),
                                  ("scan status", result.status or None, state)):
            if first and this and first != this:
                reader.note(f"document {number} names {what} {this}, document 1 {first}: "
                            "pages of more than one scan")
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


def _select_image(result: ScanInput, reader: FindingsReader, items: list[Mapping[str, Any]],
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
    reader.add_list(list(chosen), from_enhanced, "list-findings: findings")
    result.digest = result.digest or digest
    result.repository = result.repository or image.get("repositoryName")
    if not result.tags and isinstance(image.get("imageTags"), list):
        result.tags = [str(t) for t in image["imageTags"]]
    result.pages = max(result.pages, 1)
