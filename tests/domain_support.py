"""Helpers that need only the domain's own dependencies: the project's recorded events and
sample findings, and the markers a verdict puts on an image.

No boto3, no moto, no Powertools here: the unit tests import this module, and `make test` runs
them in a venv holding only PyYAML, pytest, hypothesis and jsonschema. The moto-backed world
is in tests.support (which re-exports these names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FINDINGS = ROOT / "samples" / "findings"
REGION = "us-east-1"
ACCOUNT = "123456789012"


def load_event(name: str, **detail: Any) -> dict[str, Any]:
    """A recorded event from events/, with ``detail`` keys overridden (underscores → dashes)."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    for key, value in detail.items():
        event["detail"][key.replace("_", "-")] = value
    return event


def push_event(repo: str, digest: str, tag: str | None = "v1") -> dict[str, Any]:
    """ECR's PUSH event for this image (``tag`` None: an untagged push)."""
    event = load_event("ecr-image-push", repository_name=repo, image_digest=digest)
    if tag is None:
        del event["detail"]["image-tag"]
    else:
        event["detail"]["image-tag"] = tag
    return event


def scan_event(repo: str, digest: str, status: str = "COMPLETE",
               tags: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
    """ECR's basic-scan event for this image (COMPLETE or FAILED)."""
    name = "ecr-image-scan-failed" if status == "FAILED" else "ecr-image-scan-complete"
    return load_event(name, repository_name=repo, image_digest=digest, image_tags=list(tags))


def approved(digest: str) -> str:
    """The default approval marker of this digest."""
    return "approved-" + digest[7:19]


def quarantined(digest: str) -> str:
    """The default quarantine marker of this digest."""
    return "quarantined-" + digest[7:19]


def load_findings(name: str) -> dict[str, Any]:
    """A sample scan result from samples/findings/ (the JSON ECR or Inspector returns)."""
    return json.loads((FINDINGS / f"{name}.json").read_text())


# --- CISA's KEV catalog, as its JSON feed writes it -------------------------------------------

KEV_CVE = "CVE-2024-3400"


def kev_entry(cve: str, added: str = "2024-04-12") -> dict[str, Any]:
    """One entry as CISA's catalog writes it (every documented field)."""
    return {"cveID": cve, "vendorProject": "Palo Alto Networks", "product": "PAN-OS",
            "vulnerabilityName": "PAN-OS Command Injection Vulnerability",
            "dateAdded": added, "shortDescription": "A command injection vulnerability.",
            "requiredAction": "Apply mitigations per vendor instructions.",
            "dueDate": "2024-04-19", "knownRansomwareCampaignUse": "Unknown", "notes": "",
            "cwes": ["CWE-77"]}


def catalog_document(*entries: dict[str, Any], **fields: Any) -> dict[str, Any]:
    entries = entries or (kev_entry(KEV_CVE),)
    return {"title": "CISA Catalog of Known Exploited Vulnerabilities",
            "catalogVersion": "2024.04.12", "dateReleased": "2024-04-12T17:00:00.000Z",
            "count": len(entries), "vulnerabilities": list(entries), **fields}
