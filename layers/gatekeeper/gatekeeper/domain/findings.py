"""One finding model for every scanner: ECR basic, ECR enhanced and Amazon Inspector.

The evaluator never sees a raw AWS shape. Everything in a scanner's payload may be missing or
oddly typed (basic attributes are strings, enhanced fixes say "NotAvailable", timestamps come
as epoch numbers, datetimes or several text formats): parsing is lenient field by field, and
a finding whose severity cannot be read counts as UNDEFINED, never as harmless.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Severity(enum.IntEnum):
    """Severities from least to most severe; UNTRIAGED and UNDEFINED sit with LOW: they are
    unknown, not harmless, and policies can set limits on them by name."""

    INFORMATIONAL = 0
    UNDEFINED = 1
    UNTRIAGED = 2
    LOW = 3
    MEDIUM = 4
    HIGH = 5
    CRITICAL = 6

    @classmethod
    def parse(cls, value: object) -> Severity:
        if isinstance(value, str):
            name = value.strip().upper()
            if name in cls.__members__:
                return cls[name]
        return cls.UNDEFINED


class Source(enum.StrEnum):
    BASIC = "basic"
    ENHANCED = "enhanced"


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: Severity
    source: Source
    package: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None
    fix_available: bool | None = None
    exploit_available: bool | None = None
    score: float | None = None
    epss: float | None = None
    first_seen: datetime | None = None
    uri: str | None = None
    title: str | None = None
    # The id upper-cased once, here, so exceptions match case-insensitively at no cost later.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.id.upper())


_NOT_AVAILABLE = {"", "notavailable", "none", "n/a", "null"}


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _NOT_AVAILABLE else text


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == number else None  # NaN is not a score


def _yes_no(value: object) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    upper = text.upper()
    if upper in {"YES", "PARTIAL", "TRUE"}:
        return True
    if upper in {"NO", "FALSE"}:
        return False
    return None


_TEXT_FORMATS = (
    "%b %d, %Y, %I:%M:%S %p",  # Inspector2 Finding events (2021 docs)
    "%a %b %d %H:%M:%S.%f %Z %Y",  # Inspector2 Finding events (2024 docs)
    "%a %b %d %H:%M:%S %Z %Y",
)


def parse_timestamp(value: object) -> datetime | None:
    """Epoch seconds, a datetime, ISO-8601 or Inspector's event text; None when unreadable."""
    try:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), tz=UTC)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
                for fmt in _TEXT_FORMATS:
                    try:
                        parsed = datetime.strptime(text, fmt)
                        break
                    except ValueError:
                        continue
                if parsed is None:
                    return None
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def from_basic(raw: Mapping[str, Any]) -> Finding:
    """An ECR basic-scan finding (``imageScanFindings.findings[]``)."""
    attributes: dict[str, str] = {}
    for attribute in _list(raw.get("attributes")):
        if isinstance(attribute, Mapping) and isinstance(attribute.get("key"), str):
            attributes[attribute["key"]] = attribute.get("value")
    score = _number(attributes.get("CVSS3_SCORE"))
    if score is None:
        score = _number(attributes.get("CVSS2_SCORE"))
    return Finding(
        id=_text(raw.get("name")) or "UNKNOWN",
        severity=Severity.parse(raw.get("severity")),
        source=Source.BASIC,
        package=_text(attributes.get("package_name")),
        installed_version=_text(attributes.get("package_version")),
        score=score,
        uri=_text(raw.get("uri")),
    )


def from_enhanced(raw: Mapping[str, Any]) -> Finding:
    """An enhanced finding: ECR ``enhancedFindings[]``, Inspector ListFindings or Finding event."""
    details = raw.get("packageVulnerabilityDetails")
    details = details if isinstance(details, Mapping) else {}
    packages = [p for p in _list(details.get("vulnerablePackages")) if isinstance(p, Mapping)]
    package = packages[0] if packages else {}
    fixed = _text(package.get("fixedInVersion"))
    fix_available = _yes_no(raw.get("fixAvailable"))
    if fix_available is None and packages:
        fix_available = fixed is not None
    epss = raw.get("epss")
    score = _number(raw.get("inspectorScore"))
    if score is None:
        score = _number(raw.get("score"))
    return Finding(
        id=_text(details.get("vulnerabilityId")) or _text(raw.get("title")) or "UNKNOWN",
        severity=Severity.parse(raw.get("severity")),
        source=Source.ENHANCED,
        package=_text(package.get("name")),
        installed_version=_text(package.get("version")),
        fixed_version=fixed,
        fix_available=fix_available,
        exploit_available=_yes_no(raw.get("exploitAvailable")),
        score=score,
        epss=_number(epss.get("score")) if isinstance(epss, Mapping) else None,
        first_seen=parse_timestamp(raw.get("firstObservedAt")),
        uri=_text(details.get("sourceUrl")),
        title=_text(raw.get("title")),
    )


def from_scan_findings(scan_findings: Mapping[str, Any]) -> list[Finding]:
    """Every finding in one ``imageScanFindings`` object (basic and enhanced alike)."""
    found = [from_basic(f) for f in _mappings(scan_findings, "findings")]
    found += [from_enhanced(f) for f in _mappings(scan_findings, "enhancedFindings")]
    return found


class FindingsError(ValueError):
    """A findings payload that cannot be read; a verdict must not be made from it."""


def _mappings(scan_findings: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = scan_findings.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise FindingsError(f"{key} must be a list, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise FindingsError(f"{key}[{index}] must be an object, got {type(item).__name__}")
    return value


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity.name] = counts.get(finding.severity.name, 0) + 1
    return {name: counts[name] for name in sorted(counts, key=lambda n: -Severity[n])}


def highest_severity(findings: Iterable[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)
