"""A verdict as an AWS Security Finding Format (ASFF) finding, for Security Hub.

One finding per image (its Id is stable: ``ecr-scan-gatekeeper/ACCOUNT/REGION/REPO@DIGEST``),
so each import updates it: ACTIVE and FAILED while the image is quarantined, ARCHIVED,
RESOLVED and PASSED once it is approved. Pure: the adapter sends what this returns.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.domain.verdict import Verdict
from gatekeeper.render.notification import ImageRef

GENERATOR = "ecr-scan-gatekeeper"
TYPES = ["Software and Configuration Checks/Vulnerabilities/CVE"]
# ASFF's severity labels; ECR's UNDEFINED and Inspector's UNTRIAGED have no rating.
_LABELS = {"CRITICAL": "CRITICAL", "HIGH": "HIGH", "MEDIUM": "MEDIUM", "LOW": "LOW",
           "INFORMATIONAL": "INFORMATIONAL"}
_MAX_DESCRIPTION = 1024  # ASFF's limit
_MAX_TITLE = 256
_MAX_TAGS = 100


def finding_id(image: ImageRef) -> str:
    return f"{GENERATOR}/{image.account}/{image.region}/{image.repository}@{image.digest}"


def image_arn(image: ImageRef, partition: str = "aws") -> str:
    """The image as Amazon Inspector names it in its findings' resources."""
    return (f"arn:{partition}:ecr:{image.region}:{image.account}:repository/"
            f"{image.repository}/{image.digest}")


def blocking_ids(verdict: Verdict) -> list[str]:
    """The findings that quarantine the image, in the breaches' order, each once."""
    return list(dict.fromkeys(i for b in verdict.breaches for i in b.finding_ids))


def asff_finding(image: ImageRef, verdict: Verdict, *, created_at: str, updated_at: str,
                 partition: str = "aws") -> dict[str, Any]:
    """The image's finding: active while ``verdict`` quarantines it, resolved otherwise.
    ``created_at``: when the image was first judged (it stays the same across updates)."""
    quarantined = not verdict.approved
    blocking = blocking_ids(verdict)
    if quarantined:
        title = f"Image {image.short} quarantined by the ECR scan gatekeeper"
        shown = ", ".join(blocking[:20]) + (f" and {len(blocking) - 20} more"
                                            if len(blocking) > 20 else "")
        description = "Quarantined: " + "; ".join(verdict.reasons)
        if shown:
            description = f"Blocking: {shown}. {description}"
        label = _LABELS.get(verdict.highest_severity or "", "MEDIUM")
    else:
        title = f"Image {image.short} approved by the ECR scan gatekeeper"
        description = "Approved: " + "; ".join(verdict.reasons)
        label = "INFORMATIONAL"
    return {
        "SchemaVersion": "2018-10-08",
        "Id": finding_id(image),
        "ProductArn": (f"arn:{partition}:securityhub:{image.region}:{image.account}:"
                       f"product/{image.account}/default"),
        "GeneratorId": GENERATOR,
        "AwsAccountId": image.account,
        "Types": TYPES,
        "CreatedAt": created_at,
        "UpdatedAt": updated_at,
        "Severity": {"Label": label},
        "Title": title[:_MAX_TITLE],
        "Description": _clip(description, _MAX_DESCRIPTION),
        "ProductFields": {"gatekeeper/verdict": str(verdict.outcome),
                          "gatekeeper/policy_version": verdict.policy_version[:1000]},
        "Resources": [{
            "Type": "AwsEcrContainerImage",
            "Id": image_arn(image, partition),
            "Partition": partition,
            "Region": image.region,
            "Details": {"AwsEcrContainerImage": {
                "RegistryId": image.account,
                "RepositoryName": image.repository,
                "ImageDigest": image.digest,
                "ImageTags": list(image.tags[:_MAX_TAGS]),
            }},
        }],
        "Compliance": {"Status": "FAILED" if quarantined else "PASSED"},
        "Workflow": {"Status": "NEW" if quarantined else "RESOLVED"},
        "RecordState": "ACTIVE" if quarantined else "ARCHIVED",
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
