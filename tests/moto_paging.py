"""ECR pages scan findings; moto does not. ``paged_scan_findings`` makes moto page them.

ECR's DescribeImageScanFindings returns at most ``maxResults`` findings (1 to 1,000, default
100) and a ``nextToken`` while more remain, so an image with 2,500 findings read 1,000 at a
time costs three calls. moto returns every finding in one response whatever ``maxResults``
says, which would hide the per-page cost from the API budget test and the benchmarks.

While the context is active, moto's responses (in-process ``mock_aws`` and a
``ThreadedMotoServer`` in this process alike) slice the stored findings into pages, as ECR
does. Whatever each page carries besides the findings (scan status, severity counts) is
repeated on every page, as ECR repeats it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ECR_DEFAULT_PAGE = 100


@contextmanager
def paged_scan_findings() -> Iterator[None]:
    from moto.core.responses import ActionResult
    from moto.ecr.responses import ECRResponse

    original = ECRResponse.describe_image_scan_findings

    def paged(self: ECRResponse) -> ActionResult:
        body: dict[str, Any] = dict(original(self).result)  # type: ignore[call-overload]
        size = int(self._get_param("maxResults") or ECR_DEFAULT_PAGE)
        start = int(self._get_param("nextToken") or 0)
        scan = dict(body.get("imageScanFindings") or {})
        for key in ("findings", "enhancedFindings"):
            items = scan.get(key)
            if not items:
                continue
            scan[key] = items[start:start + size]
            if start + size < len(items):
                body["nextToken"] = str(start + size)
        body["imageScanFindings"] = scan
        return ActionResult(body)

    ECRResponse.describe_image_scan_findings = paged  # type: ignore[method-assign]
    try:
        yield
    finally:
        ECRResponse.describe_image_scan_findings = original  # type: ignore[method-assign]


def basic_scan(findings: int, *, critical: bool = False) -> dict[str, Any]:
    """A finished basic scan (a DescribeImageScanFindings body) with ``findings`` MEDIUM
    findings, the last one CRITICAL when ``critical``: read 1,000 a page, 2,500 take three."""
    items = [{
        "name": f"CVE-2024-{i:05d}",
        "uri": f"https://security-tracker.debian.org/tracker/CVE-2024-{i:05d}",
        "severity": "MEDIUM",
        "attributes": [{"key": "package_name", "value": f"pkg{i % 300}"},
                       {"key": "package_version", "value": "1.0.0"}],
    } for i in range(findings)]
    if critical and items:
        items[-1]["severity"] = "CRITICAL"
    counts: dict[str, int] = {"MEDIUM": findings - int(critical and findings > 0)}
    if critical and findings:
        counts["CRITICAL"] = 1
    return {
        "imageScanStatus": {"status": "COMPLETE",
                            "description": "The scan was completed successfully."},
        "imageScanFindings": {"findingSeverityCounts": counts, "findings": items},
    }
