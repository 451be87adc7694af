"""Scan reports of scanners run outside AWS, read into the gatekeeper's findings.

CI can gate an image with the same policy before it is pushed to ECR by scanning it with
Trivy or Grype and evaluating their JSON:

- Trivy, ``trivy image --format json`` (``SchemaVersion`` 2): ``Results[].Vulnerabilities[]``
  with ``VulnerabilityID``, ``PkgName``, ``InstalledVersion``, ``FixedVersion``, ``Status``,
  ``Severity``, ``CVSS``; the image from ``ArtifactName`` and ``Metadata.RepoDigests``.
- Grype, ``grype -o json``: ``matches[]`` with ``vulnerability`` (``id``, ``severity``,
  ``fix.versions``/``fix.state``, ``cvss[]``), ``relatedVulnerabilities[]`` and ``artifact``
  (``name``, ``version``, ``purl``); the image from ``source.target``.

Severities map onto the gatekeeper's (:data:`TRIVY_SEVERITIES`, :data:`GRYPE_SEVERITIES`):
each scanner's "unknown" becomes UNDEFINED (the scanner gave none), Grype's Negligible
becomes INFORMATIONAL. Any other severity, a vulnerability without an id, or a report whose
shape is not the documented one is a located problem: the caller judges nothing then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gatekeeper.domain.findings import (
    Finding,
    FindingsError,
    FindingsReader,
    Severity,
    Source,
    UndefinedSeverity,
    _list,
    _number,
    _shared,
    _text,
)
from gatekeeper.domain.images import DIGEST, ImageNameError, parse_image

TRIVY, GRYPE = "trivy", "grype"
FORMATS = (TRIVY, GRYPE)

TRIVY_SEVERITIES: Mapping[str, Severity] = {
    "CRITICAL": Severity.CRITICAL, "HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM,
    "LOW": Severity.LOW, "UNKNOWN": Severity.UNDEFINED,
}
GRYPE_SEVERITIES: Mapping[str, Severity] = {
    "Critical": Severity.CRITICAL, "High": Severity.HIGH, "Medium": Severity.MEDIUM,
    "Low": Severity.LOW, "Negligible": Severity.INFORMATIONAL, "Unknown": Severity.UNDEFINED,
}
# Trivy's Status values that say no fix will come (or none is known yet).
_TRIVY_UNFIXED = {"affected", "will_not_fix", "fix_deferred", "end_of_life"}
_GRYPE_UNFIXED = {"not-fixed", "wont-fix"}


def detect(document: object) -> str | None:
    """``trivy`` or ``grype`` when ``document`` has that report's shape, else None."""
    if not isinstance(document, Mapping):
        return None
    if "SchemaVersion" in document and ("Results" in document or "ArtifactName" in document):
        return TRIVY
    if "matches" in document and ("descriptor" in document or "source" in document):
        return GRYPE
    return None


class ForeignScan:
    """What one report says: its findings, its image, and why it may be incomplete."""

    def __init__(self) -> None:
        self.reader = FindingsReader(undefined="severities the scanner does not define")
        self.repository: str | None = None
        self.digest: str | None = None
        self.tags: list[str] = []


def read_report(kind: str, documents: Iterable[Any]) -> ForeignScan:
    """The one ``kind`` report in ``documents``; FindingsError when it is not one."""
    reports = list(documents)
    if len(reports) != 1:
        raise FindingsError(f"expected one {kind} JSON report, got {len(reports)} documents")
    report = reports[0]
    if not isinstance(report, Mapping):
        raise FindingsError(f"a {kind} JSON report is an object, got {type(report).__name__}")
    scan = ForeignScan()
    (_trivy if kind == TRIVY else _grype)(scan, report)
    return scan


def _severity(value: object, mapping: Mapping[str, Severity], kind: str,
              name: str) -> Severity:
    # as each scanner writes them, but read in any case
    known = {name.upper(): severity for name, severity in mapping.items()}
    severity = known.get(value.strip().upper()) if isinstance(value, str) else None
    if severity is None:
        what = (f"severity {value!r:.40} is not one {kind} defines" if value is not None
                else "no severity")
        raise UndefinedSeverity(f"{name}: {what} ({kind}'s: {', '.join(mapping)})")
    return severity


def _required_id(value: object, where: str) -> str:
    text = _text(value)
    if text is None:
        raise FindingsError(f"{where}: no vulnerability id")
    return text


def _image(scan: ForeignScan, reference: object, digests: object) -> None:
    """The repository, tag and digest of the scanned image, as far as the report names them."""
    try:
        image = parse_image(reference) if reference else None
    except ImageNameError:
        image = None  # a tarball or a directory: --repository names whose rules apply
    if image is not None:
        scan.repository = image.repository
        scan.tags = [image.tag] if image.tag else []
        scan.digest = image.digest
    for entry in _list(digests):
        digest = str(entry).rpartition("@")[2]
        if scan.digest is None and DIGEST.fullmatch(digest):
            scan.digest = digest


# --- Trivy -----------------------------------------------------------------------------------

def _trivy(scan: ForeignScan, report: Mapping[str, Any]) -> None:
    version = report.get("SchemaVersion")
    if version != 2 or isinstance(version, bool):
        raise FindingsError(f"Trivy SchemaVersion {version!r:.40} is not 2, the version this "
                            "reads (trivy image --format json)")
    metadata = report.get("Metadata") if isinstance(report.get("Metadata"), Mapping) else {}
    _image(scan, report.get("ArtifactName"), metadata.get("RepoDigests"))
    results = report.get("Results")
    if results is None:
        scan.reader.note("the report has no Results: nothing says what was scanned")
        return
    if not isinstance(results, list):
        raise FindingsError(f"Results is {type(results).__name__}, not a list")
    for index, result in enumerate(results):
        if not isinstance(result, Mapping):
            raise FindingsError(f"Results[{index}] is not an object")
        scan.reader.add_list(result.get("Vulnerabilities"), from_trivy,
                             f"Results[{index}].Vulnerabilities", located=from_trivy)


def from_trivy(raw: Mapping[str, Any], where: str = "a Trivy vulnerability") -> Finding:
    """One ``Results[].Vulnerabilities[]`` entry of a Trivy report."""
    name = _required_id(raw.get("VulnerabilityID"), where)
    fixed = _text(raw.get("FixedVersion"))
    status = _text(raw.get("Status"))
    if fixed is not None or status == "fixed":
        fix_available: bool | None = True
    elif status is None or status in _TRIVY_UNFIXED:
        fix_available = False
    else:
        fix_available = None
    return Finding(
        id=name,
        severity=_severity(raw.get("Severity"), TRIVY_SEVERITIES, "Trivy", f"{where} {name}"),
        source=Source.TRIVY,
        package=_shared(_text(raw.get("PkgName"))),
        installed_version=_shared(_text(raw.get("InstalledVersion"))),
        fixed_version=_shared(fixed),
        fix_available=fix_available,
        score=_trivy_score(raw.get("CVSS"), _text(raw.get("SeveritySource"))),
        uri=_text(raw.get("PrimaryURL")),
        title=_text(raw.get("Title")),
    )


def _trivy_score(cvss: object, source: str | None) -> float | None:
    """The CVSS base score of the source Trivy took the severity from, else NVD's, else any;
    version 3 before version 2."""
    if not isinstance(cvss, Mapping):
        return None
    vendors = [v for k, v in sorted(cvss.items(), key=lambda kv: (kv[0] != source,
                                                                  kv[0] != "nvd", kv[0]))
               if isinstance(v, Mapping)]
    for key in ("V3Score", "V2Score"):
        for vendor in vendors:
            score = _number(vendor.get(key))
            if score is not None:
                return score
    return None


# --- Grype -----------------------------------------------------------------------------------

def _grype(scan: ForeignScan, report: Mapping[str, Any]) -> None:
    source = report.get("source") if isinstance(report.get("source"), Mapping) else {}
    target = source.get("target") if isinstance(source.get("target"), Mapping) else {}
    _image(scan, _grype_reference(target.get("userInput")), target.get("repoDigests"))
    if scan.digest is None and DIGEST.fullmatch(str(target.get("manifestDigest") or "")):
        scan.digest = target["manifestDigest"]
    matches = report.get("matches")
    if matches is None:
        scan.reader.note("the report has no matches list: nothing says what was found")
        return
    scan.reader.add_list(matches, from_grype, "matches", located=from_grype)


# Grype's source schemes: an image from a daemon or a registry names it; an archive, a
# directory or an SBOM does not (--repository names whose rules apply then).
_GRYPE_IMAGE_SCHEMES = ("docker:", "podman:", "registry:")
_GRYPE_OTHER_SCHEMES = ("docker-archive:", "oci-archive:", "oci-dir:", "singularity:",
                        "dir:", "file:", "sbom:")


def _grype_reference(user_input: object) -> object:
    if not isinstance(user_input, str):
        return user_input
    if user_input.startswith(_GRYPE_OTHER_SCHEMES):
        return None
    for scheme in _GRYPE_IMAGE_SCHEMES:
        if user_input.startswith(scheme):
            return user_input.removeprefix(scheme)
    return user_input


def from_grype(raw: Mapping[str, Any], where: str = "a Grype match") -> Finding:
    """One ``matches[]`` entry of a Grype report. Its id is the CVE when Grype reports another
    database's id (a GHSA) with a related CVE, so exceptions and VEX written for CVEs apply."""
    vulnerability = raw.get("vulnerability")
    if not isinstance(vulnerability, Mapping):
        raise FindingsError(f"{where}: no vulnerability object")
    artifact = raw.get("artifact") if isinstance(raw.get("artifact"), Mapping) else {}
    reported = _required_id(vulnerability.get("id"), f"{where}.vulnerability")
    name = reported
    if not reported.upper().startswith("CVE-"):
        related = [_text(r.get("id")) for r in _list(raw.get("relatedVulnerabilities"))
                   if isinstance(r, Mapping)]
        name = next((r for r in related if r and r.upper().startswith("CVE-")), reported)
    fix = vulnerability.get("fix") if isinstance(vulnerability.get("fix"), Mapping) else {}
    versions = [v for v in (_text(v) for v in _list(fix.get("versions"))) if v]
    state = _text(fix.get("state"))
    if versions or state == "fixed":
        fix_available: bool | None = True
    else:
        fix_available = False if state in _GRYPE_UNFIXED else None
    urls = [u for u in (_text(u) for u in _list(vulnerability.get("urls"))) if u]
    return Finding(
        id=name,
        severity=_severity(vulnerability.get("severity"), GRYPE_SEVERITIES, "Grype",
                           f"{where} {reported}"),
        source=Source.GRYPE,
        package=_shared(_text(artifact.get("name"))),
        installed_version=_shared(_text(artifact.get("version"))),
        fixed_version=_shared(", ".join(versions) if versions else None),
        fix_available=fix_available,
        score=_grype_score(vulnerability.get("cvss")),
        uri=_text(vulnerability.get("dataSource")) or (urls[0] if urls else None),
        title=reported if name != reported else _text(vulnerability.get("description")),
    )


def _grype_score(cvss: object) -> float | None:
    """The highest CVSS version's base score (``cvss[].metrics.baseScore``)."""
    best: tuple[str, float] | None = None
    for entry in _list(cvss):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("metrics"), Mapping):
            continue
        score = _number(entry["metrics"].get("baseScore"))
        version = str(entry.get("version") or "")
        if score is not None and (best is None or version > best[0]):
            best = (version, score)
    return best[1] if best else None
