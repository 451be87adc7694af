"""A verdict as SARIF 2.1.0, so code-scanning UIs show the findings behind it.

One run of the tool ``ecr-scan-gatekeeper``:

- ``tool.driver.rules``: one rule per vulnerability id, its severity in ``properties``
  (``severity``, and ``security-severity``: the CVSS score, else a score inside the band of
  the severity, as code-scanning UIs rank alerts by it);
- ``results``: each finding of the verdict at the level the verdict gives it: ``error`` when it
  blocks the image, ``warning`` when it is over a warning limit, ``note`` when it counts within
  the limits; a finding the policy did not count (an exception, a VEX statement, an ignore
  rule) is ``suppressed`` (kind ``external``: the policy decided, not the scanned code) with
  its justification;
- each result's location is the image: ``artifactLocation.uri`` is the repository, the
  logical location the package in it;
- the verdict (outcome, reasons, policy, exit code) is in the run's ``properties``, and each
  reason a notification of the invocation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gatekeeper import __version__
from gatekeeper.domain.findings import Finding, Severity
from gatekeeper.domain.verdict import Ignored, Outcome, Verdict

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "ecr-scan-gatekeeper"
# A score inside each severity's band (CVSS v3: critical 9.0-10, high 7.0-8.9, medium
# 4.0-6.9, low 0.1-3.9) for findings the scanner gave no score.
_BAND_SCORE = {Severity.CRITICAL: 9.5, Severity.HIGH: 8.0, Severity.MEDIUM: 5.5,
               Severity.LOW: 2.0}


def _security_severity(findings: Iterable[Finding]) -> str:
    scores = [f.score if f.score is not None else _BAND_SCORE.get(f.severity, 0.0)
              for f in findings]
    return f"{max(scores, default=0.0):.1f}"


def _rules(findings: list[Finding]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    by_id: dict[str, list[Finding]] = {}
    for finding in findings:
        by_id.setdefault(finding.id, []).append(finding)
    rules, index = [], {}
    for number, (vulnerability, group) in enumerate(sorted(by_id.items())):
        index[vulnerability] = number
        severity = max(f.severity for f in group)
        title = next((f.title for f in group if f.title), None)
        uri = next((f.uri for f in group if f.uri and f.uri.startswith("http")), None)
        rule: dict[str, Any] = {
            "id": vulnerability,
            "shortDescription": {"text": title or vulnerability},
            "properties": {
                "severity": severity.name,
                "security-severity": _security_severity(group),
                "tags": ["security", "vulnerability", severity.name],
            },
        }
        if uri:
            rule["helpUri"] = uri
        rules.append(rule)
    return rules, index


def _location(repository: str, image: str, finding: Finding) -> dict[str, Any]:
    package = finding.package or "(unknown package)"
    version = f"@{finding.installed_version}" if finding.installed_version else ""
    return {
        "physicalLocation": {"artifactLocation": {"uri": repository},
                             "region": {"startLine": 1}},
        "logicalLocations": [{"name": package, "kind": "package",
                              "fullyQualifiedName": f"{image}/{package}{version}"}],
    }


def _message(finding: Finding, how: str) -> str:
    package = finding.package or "an unknown package"
    version = f" {finding.installed_version}" if finding.installed_version else ""
    fix = f", fixed in {finding.fixed_version}" if finding.fixed_version else ""
    return f"{finding.id} ({finding.severity.name}) in {package}{version}{fix}: {how}"


def log(verdict: Verdict, *, repository: str, digest: str | None = None,
        tags: list[str] | tuple[str, ...] = (), policy_source: str | None = None,
        exit_code: int | None = None) -> dict[str, Any]:
    """The SARIF 2.1.0 log of ``verdict`` on an image of ``repository``."""
    image = repository + (f":{tags[0]}" if tags else "") + (f"@{digest}" if digest else "")
    blocking = {i for b in verdict.breaches for i in b.finding_ids}
    warned = {i for w in verdict.warnings for i in w.finding_ids}
    ignored = sorted(verdict.ignored, key=lambda i: (i.why, -i.finding.severity, i.finding.id))
    counted = sorted(verdict.counted, key=lambda f: (-f.severity, f.id, f.package or ""))
    rules, index = _rules([*counted, *(i.finding for i in ignored)])

    def result(finding: Finding, level: str, how: str) -> dict[str, Any]:
        return {
            "ruleId": finding.id,
            "ruleIndex": index[finding.id],
            "level": level,
            "message": {"text": _message(finding, how)},
            "locations": [_location(repository, image, finding)],
            "partialFingerprints": {
                "vulnerabilityPackageImage/v1": f"{finding.id}|{finding.package or ''}|"
                                                f"{repository}"},
            "properties": {"severity": finding.severity.name, "package": finding.package,
                           "installedVersion": finding.installed_version,
                           "fixedVersion": finding.fixed_version, "score": finding.score,
                           "source": str(finding.source)},
        }

    results = []
    for finding in counted:
        if finding.id in blocking:
            results.append(result(finding, "error", "blocks the image"))
        elif finding.id in warned:
            results.append(result(finding, "warning", "over a warning limit"))
        else:
            results.append(result(finding, "note", "counts, within the policy's limits"))
    for item in ignored:
        results.append(_ignored(result, item, blocking))
    code = exit_code if exit_code is not None else 0
    run: dict[str, Any] = {
        "tool": {"driver": {"name": TOOL_NAME, "version": __version__,
                            "semanticVersion": __version__, "rules": rules}},
        "invocations": [{
            "executionSuccessful": True,
            "exitCode": code,
            "toolExecutionNotifications": [
                {"level": "error" if verdict.outcome is Outcome.QUARANTINED else "note",
                 "message": {"text": reason}} for reason in verdict.reasons],
        }],
        "results": results,
        "properties": {
            "verdict": str(verdict.outcome),
            "approved": verdict.approved,
            "reasons": list(verdict.reasons),
            "image": image,
            "repository": repository,
            "digest": digest,
            "tags": list(tags),
            "policy": {"version": verdict.policy_version, "rule": verdict.matched_rule,
                       "mode": verdict.mode, "source": policy_source},
            "scanStatus": verdict.scan_status,
            "counts": dict(verdict.counts),
            "exitCode": code,
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _ignored(result: Any, item: Ignored, blocking: set[str]) -> dict[str, Any]:
    """A finding the policy did not count; one that blocks anyway (a known exploit whose fix
    is unavailable, say) is an error, not suppressed."""
    finding = item.finding
    if finding.id in blocking and item.why not in ("exception", "vex"):
        return dict(result(finding, "error", f"blocks the image (also: {item.detail})"))
    entry = dict(result(finding, "note", f"not counted: {item.detail}"))
    entry["suppressions"] = [{"kind": "external", "status": "accepted",
                              "justification": item.detail}]
    return entry
