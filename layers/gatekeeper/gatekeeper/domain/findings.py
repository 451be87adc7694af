"""One finding model for every scanner: ECR basic, ECR enhanced and Amazon Inspector.

The evaluator never sees a raw AWS shape. Everything in a scanner's payload may be missing or
oddly typed (basic attributes are strings, enhanced fixes say "NotAvailable", timestamps come
as epoch numbers, datetimes or several text formats): parsing is lenient field by field, but
never about what decides a verdict. A finding whose severity is not one AWS documents (or is
missing) is an error, not UNDEFINED; and :class:`FindingsReader` checks the findings read
against the severity counts the same response reports, so that findings missing from a
response make it *incomplete* (:data:`FINDINGS_INCOMPLETE`), never clean.
"""

from __future__ import annotations

import enum
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

# The scan state of a finished scan whose findings could not all be read; a policy's
# on_scan_failure decides it (default quarantine), and findings read that block still block.
FINDINGS_INCOMPLETE = "FINDINGS_INCOMPLETE"


class Severity(enum.IntEnum):
    """Severities from least to most severe. UNDEFINED (ECR: the scanner gave none) and
    UNTRIAGED (Inspector: not rated yet) are severities AWS reports, not unreadable ones; they
    rank just above INFORMATIONAL, and policies set limits on them by name."""

    INFORMATIONAL = 0
    UNDEFINED = 1
    UNTRIAGED = 2
    LOW = 3
    MEDIUM = 4
    HIGH = 5
    CRITICAL = 6

    @classmethod
    def read(cls, value: object, documented: frozenset[str] | None = None) -> Severity | None:
        """The severity ``value`` names (any case, spaces around ignored), if it is one of
        ``documented`` (default: every severity AWS documents); None otherwise."""
        if isinstance(value, str):
            name = value.strip().upper()
            if name in (ENHANCED_SEVERITIES if documented is None else documented):
                return cls[name]
        return None


# What AWS documents: ECR's FindingSeverity for basic findings (and findingSeverityCounts);
# enhanced findings and Amazon Inspector add UNTRIAGED (seen in real enhanced counts too).
BASIC_SEVERITIES = frozenset(
    {"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL", "UNDEFINED"})
ENHANCED_SEVERITIES = BASIC_SEVERITIES | {"UNTRIAGED"}


class Source(enum.StrEnum):
    BASIC = "basic"
    ENHANCED = "enhanced"
    # Scanners run outside AWS (``gatekeeper evaluate --input-format``, before a push).
    TRIVY = "trivy"
    GRYPE = "grype"


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding, held compactly: slots, no raw payload, the strings many findings repeat
    (package names and versions) interned, and ``first_seen`` in a shared time zone (botocore
    gives every timestamp a time-zone object of its own). An image's findings are read page by
    page into these and the pages dropped, so memory grows with this value, not the JSON."""

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
        key = self.id.upper()
        object.__setattr__(self, "key", self.id if key == self.id else key)


def _shared(text: str | None) -> str | None:
    """``text`` interned: one object for a value many findings repeat (a package, a version)."""
    return sys.intern(text) if type(text) is str else text


@lru_cache(maxsize=64)
def _zone(offset: timedelta) -> timezone:
    return UTC if not offset else timezone(offset)


def _shared_zone(value: datetime) -> datetime:
    """The same instant, shown at the same offset, with a shared ``timezone`` object instead
    of a time-zone object of its own (botocore's dateutil ``tzlocal``/``tzutc``, three objects
    a timestamp). A ``datetime.timezone`` is kept as it is."""
    offset = value.utcoffset()
    if offset is None or isinstance(value.tzinfo, timezone):
        return value
    return value.replace(tzinfo=_zone(offset))


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
            return _shared_zone(value) if value.tzinfo else value.replace(tzinfo=UTC)
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


class FindingsError(ValueError):
    """A findings payload that cannot be read; a verdict must not be made from it."""


class UndefinedSeverity(FindingsError):
    """A finding whose severity is missing or not one AWS documents."""


def _severity(raw: Mapping[str, Any], source: Source, name: str | None) -> Severity:
    documented = BASIC_SEVERITIES if source is Source.BASIC else ENHANCED_SEVERITIES
    severity = Severity.read(raw.get("severity"), documented)
    if severity is None:
        what = (f"severity {_shown(raw['severity'])} is not one AWS defines for {source} "
                "findings" if "severity" in raw else "no severity")
        raise UndefinedSeverity(f"{name or 'a finding'}: {what}")
    return severity


def _shown(value: object, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def from_basic(raw: Mapping[str, Any]) -> Finding:
    """An ECR basic-scan finding (``imageScanFindings.findings[]``); UndefinedSeverity when
    its severity is not ECR's."""
    attributes: dict[str, str] = {}
    for attribute in _list(raw.get("attributes")):
        if isinstance(attribute, Mapping) and isinstance(attribute.get("key"), str):
            attributes[attribute["key"]] = attribute.get("value")
    score = _number(attributes.get("CVSS3_SCORE"))
    if score is None:
        score = _number(attributes.get("CVSS2_SCORE"))
    name = _text(raw.get("name"))
    return Finding(
        id=name or "UNKNOWN",
        severity=_severity(raw, Source.BASIC, name),
        source=Source.BASIC,
        package=_shared(_text(attributes.get("package_name"))),
        installed_version=_shared(_text(attributes.get("package_version"))),
        score=score,
        uri=_text(raw.get("uri")),
    )


def from_enhanced(raw: Mapping[str, Any]) -> Finding:
    """An enhanced finding: ECR ``enhancedFindings[]``, Inspector ListFindings or Finding event;
    UndefinedSeverity when its severity is not one AWS documents."""
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
    name = _text(details.get("vulnerabilityId")) or _text(raw.get("title"))
    return Finding(
        id=name or "UNKNOWN",
        severity=_severity(raw, Source.ENHANCED, name),
        source=Source.ENHANCED,
        package=_shared(_text(package.get("name"))),
        installed_version=_shared(_text(package.get("version"))),
        fixed_version=_shared(fixed),
        fix_available=fix_available,
        exploit_available=_yes_no(raw.get("exploitAvailable")),
        score=score,
        epss=_number(epss.get("score")) if isinstance(epss, Mapping) else None,
        first_seen=parse_timestamp(raw.get("firstObservedAt")),
        uri=_text(details.get("sourceUrl")),
        title=_text(raw.get("title")),
    )


def from_scan_findings(scan_findings: Mapping[str, Any]) -> list[Finding]:
    """Every finding in one ``imageScanFindings`` object (basic and enhanced alike);
    FindingsError naming every problem when any finding cannot be read."""
    reader = FindingsReader()
    reader.add(scan_findings)
    problems = reader.problems(compare_counts=False)
    if problems:
        raise FindingsError("; ".join(problems))
    return reader.findings


_Parse = Callable[[Mapping[str, Any]], Finding]
_LISTS: tuple[tuple[str, _Parse], ...] = (("findings", from_basic),
                                          ("enhancedFindings", from_enhanced))
_SHOWN = 5  # problems of one kind named in a reason; the rest are counted


class FindingsReader:
    """One image's findings read page by page, with everything that makes them incomplete.

    ``problems()`` is empty only when every finding was read with a severity AWS documents
    and the findings read agree, severity by severity over all pages, with the
    ``findingSeverityCounts`` the responses report (counts cover the whole image, on every
    page; when no page has them there is nothing to compare). A findings list missing, null
    or unreadable while the counts are not zero is therefore incomplete, and so are counts
    that differ between pages (the scan changed while it was read) or name a severity AWS
    does not define.
    """

    def __init__(self, undefined: str = "severities AWS does not define") -> None:
        self._undefined_kind = undefined  # how problems() names findings of no known severity
        self.findings: list[Finding] = []
        self.pages = 0
        self._problems: list[str] = []
        self._undefined: list[str] = []
        self._unreadable: list[str] = []
        self._reported: dict[str, int] | None = None
        self._lists = 0  # findings lists read (an empty list is a list)
        self.in_use: InUse | None = None  # what the findings' resources say (None: unknown)

    def note(self, problem: str) -> None:
        """A problem found outside the pages (a token left, a page limit reached)."""
        self._problems.append(problem)

    def add(self, scan_findings: object) -> None:
        """One page's ``imageScanFindings`` (None or missing: a page without findings)."""
        self.pages += 1
        where = f"page {self.pages}"
        if scan_findings is None:
            return
        if not self._is_object(scan_findings, f"{where}: imageScanFindings"):
            return
        self._counts(scan_findings.get("findingSeverityCounts"), where)
        for key, parse in _LISTS:
            self.add_list(scan_findings.get(key), parse, f"{where}: {key}")

    def add_list(self, value: object, parse: _Parse, where: str, *,
                 located: Callable[[Mapping[str, Any], str], Finding] | None = None) -> None:
        """A list of raw findings (None: absent); ``located`` instead of ``parse`` is also
        given each finding's place in the input (``where[index]``) for its messages."""
        if value is None:
            return
        if not isinstance(value, list):
            self._unreadable.append(f"{where} is {type(value).__name__}, not a list")
            return
        self._lists += 1
        for index, item in enumerate(value):
            if not self._is_object(item, f"{where}[{index}]"):
                continue
            try:
                self.findings.append(located(item, f"{where}[{index}]") if located
                                     else parse(item))
            except UndefinedSeverity as err:
                self._undefined.append(str(err))
            if "resources" in item:
                self.in_use = InUse.combine(self.in_use, in_use_of(item))

    def _is_object(self, value: object, what: str) -> bool:
        """Whether ``value`` is a JSON object; if not, ``what`` is noted as unreadable."""
        if isinstance(value, Mapping):
            return True
        self._unreadable.append(f"{what} is {type(value).__name__}, not an object")
        return False

    def _counts(self, counts: object, where: str) -> None:
        if counts is None:
            return
        if not self._is_object(counts, f"{where}: findingSeverityCounts"):
            return
        read: dict[str, int] = {}
        for key, value in counts.items():
            severity = Severity.read(key)
            if severity is None:
                self._undefined.append(f"findingSeverityCounts: {_shown(key)} is not a "
                                       "severity AWS defines")
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self._unreadable.append(f"{where}: findingSeverityCounts.{severity.name} is "
                                        f"{_shown(value)}, not a count")
                continue
            if value:
                read[severity.name] = read.get(severity.name, 0) + value
        if self._reported is None:
            self._reported = read
        elif read != self._reported:
            self.note(f"the severity counts differ between pages ({_render(self._reported)}, "
                      f"then {_render(read)} on {where}): the scan changed while it was read")

    def problems(self, compare_counts: bool = True) -> list[str]:
        """Why these findings are not the image's complete findings; empty when they are."""
        problems = list(self._problems)
        for kind, found in (("unreadable", self._unreadable),
                            (self._undefined_kind, self._undefined)):
            if found:
                more = f"; and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
                problems.append(f"{kind} ({len(found)}): " + "; ".join(found[:_SHOWN]) + more)
        if compare_counts and self._reported is not None:
            read = dict(Counter(f.severity.name for f in self.findings))
            if read != self._reported:
                problems.append(f"the severity counts report {_render(self._reported)} but "
                                f"{_render(read)} were read"
                                + ("" if self._lists else " (the response holds no findings "
                                                          "list)"))
        return problems


def _render(counts: Mapping[str, int]) -> str:
    if not counts:
        return "no findings"
    return ", ".join(f"{name} {counts[name]}"
                     for name in sorted(counts, key=lambda n: -Severity[n]))


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.severity.name] = counts.get(finding.severity.name, 0) + 1
    return {name: counts[name] for name in sorted(counts, key=lambda n: -Severity[n])}


def highest_severity(findings: Iterable[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


@dataclass(frozen=True, slots=True)
class InUse:
    """Whether the image runs somewhere, as Amazon Inspector reports it on enhanced findings
    (``resources[].details.awsEcrContainerImage``: ``inUseCount``, the ECS tasks and EKS pods
    running it, and ``lastInUseAt``). Basic scanning never knows: no InUse at all then."""

    count: int
    last_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.count > 0

    def describe(self) -> str:
        """"IN USE: running in 3 places, last seen 2026-11-21T18:03:16+00:00" and the like."""
        seen = f"last seen {self.last_at.isoformat()}" if self.last_at else None
        if self.running:
            places = "place" if self.count == 1 else "places"
            return f"IN USE: running in {self.count} {places}" + (f", {seen}" if seen else "")
        return "not in use" + (f" ({seen})" if seen else "")

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count,
                "last_at": self.last_at.isoformat() if self.last_at else None}

    @classmethod
    def from_dict(cls, value: object) -> InUse | None:
        """An InUse from :meth:`as_dict` (or a stored record's map); None when not one."""
        if not isinstance(value, Mapping):
            return None
        count = _count(value.get("count"))
        return None if count is None else cls(count, parse_timestamp(value.get("last_at")))

    @staticmethod
    def combine(first: InUse | None, second: InUse | None) -> InUse | None:
        """What two findings of one image say together (the highest count, the latest
        sighting): every finding of an image repeats the image's resource details."""
        if first is None or second is None:
            return first or second
        last = [t for t in (first.last_at, second.last_at) if t is not None]
        return InUse(max(first.count, second.count), max(last) if last else None)


def _count(value: object) -> int | None:
    """A count AWS reports (a whole number >= 0, maybe as text or a float); None otherwise."""
    number = _number(value)
    if number is None or number < 0 or number != int(number) or number > 2**53:
        return None
    return int(number)


def in_use_of(raw: Mapping[str, Any]) -> InUse | None:
    """What an enhanced finding's image resource says about the image's use; None when it
    says nothing (no ``inUseCount`` and no ``lastInUseAt``, or values that are not ones)."""
    for resource in _list(raw.get("resources")):
        details = resource.get("details") if isinstance(resource, Mapping) else None
        image = details.get("awsEcrContainerImage") if isinstance(details, Mapping) else None
        if not isinstance(image, Mapping):
            continue
        count = _count(image.get("inUseCount"))
        last = parse_timestamp(image.get("lastInUseAt"))
        if count is not None or last is not None:
            return InUse(count or 0, last)
    return None
