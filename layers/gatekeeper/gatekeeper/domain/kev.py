"""CISA's Known Exploited Vulnerabilities (KEV) catalog: reading it and matching findings.

The catalog is a JSON document (``title``, ``catalogVersion``, ``dateReleased``, ``count``,
``vulnerabilities``: each with ``cveID``, ``dateAdded`` and descriptive fields). The policy's
``block_if_known_exploited`` blocks any finding whose CVE it lists. Its copy lives in the policy
bucket (:data:`KEV_KEY`), refreshed daily from CISA's public URL.

A catalog that is missing or does not read is :meth:`KevCatalog.unavailable`: the rule then
fails closed (every image it applies to is quarantined, the reason saying why), and the images
of repositories without the rule are judged as before.

Pure: no AWS, no network. :func:`parse_catalog` raises only :class:`KevError`, naming every
problem found (at most a few dozen) with where it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

KEV_KEY = "kev/known_exploited_vulnerabilities.json"
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
MAX_CATALOG_BYTES = 20_000_000
# CISA's catalog has listed over 1,000 CVEs since 2022 and only grows: a document with fewer
# is a truncated or substituted one. Tests pass their own floor.
MIN_PLAUSIBLE_ENTRIES = 1_000
# A refresh may drop a few entries (CISA has merged duplicates), never a large share.
MAX_SHRINK = 0.05
_MAX_PROBLEMS = 20

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class KevError(ValueError):
    """The document is not a KEV catalog that can be used."""


@dataclass(frozen=True)
class KevCatalog:
    """The CVE ids the catalog lists, each with the day CISA added it; or, when ``problem``
    is set, why no catalog could be read (then it lists nothing)."""

    added: Mapping[str, str] = field(default_factory=dict)  # "CVE-2024-1234" -> "2024-05-01"
    version: str = ""
    released: str = ""
    problem: str | None = None

    @classmethod
    def unavailable(cls, problem: str) -> KevCatalog:
        return cls(problem=problem)

    @property
    def available(self) -> bool:
        return self.problem is None

    def __len__(self) -> int:
        return len(self.added)

    def date_added(self, vulnerability_id: str) -> str | None:
        """The day CISA added this CVE (ids compare case-insensitively); None if not listed."""
        return self.added.get(vulnerability_id.upper())

    def reason(self, vulnerability_id: str) -> str:
        """What a verdict says about a finding the catalog lists."""
        return (f"{vulnerability_id} is a known exploited vulnerability (CISA KEV, added "
                f"{self.date_added(vulnerability_id)})")

    def describe(self) -> str:
        if self.problem:
            return f"unavailable: {self.problem}"
        return f"version {self.version or '?'} of {self.released or '?'}, {len(self)} CVEs"


def parse_catalog(body: bytes | str, *, source: str = "the KEV catalog") -> KevCatalog:
    """The catalog in ``body``; KevError naming every problem (with its place) otherwise."""
    size = len(body.encode("utf-8", "replace")) if isinstance(body, str) else len(body)
    if size > MAX_CATALOG_BYTES:
        raise KevError(f"{source}: larger than {MAX_CATALOG_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise KevError(f"{source}: not JSON: {err}") from None
    if not isinstance(data, dict):
        raise KevError(f"{source}: expected a JSON object, got {type(data).__name__}")
    problems: list[str] = []
    entries = data.get("vulnerabilities")
    if not isinstance(entries, list):
        raise KevError(f"{source}: vulnerabilities: expected a list")
    added: dict[str, str] = {}
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry)
        if problem:
            problems.append(f"vulnerabilities[{index}]: {problem}")
            continue
        cve, day = entry["cveID"].upper(), entry["dateAdded"]
        added[cve] = min(day, added.get(cve, day))  # a duplicate keeps its first day
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        problems.append(f"count: expected a whole number, got {count!r:.40}")
    elif count != len(entries):
        problems.append(f"count: says {count} but vulnerabilities lists {len(entries)}")
    for name in ("catalogVersion", "dateReleased"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            problems.append(f"{name}: expected a non-empty string")
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) \
            else ""
        raise KevError(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + more)
    return KevCatalog(added=added, version=data["catalogVersion"],
                      released=data["dateReleased"])


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "expected an object"
    cve, day = entry.get("cveID"), entry.get("dateAdded")
    if not isinstance(cve, str) or not _CVE.match(cve.strip().upper()) or cve != cve.strip():
        return f"cveID: expected CVE-YYYY-NNNN, got {cve!r:.40}"
    if not isinstance(day, str) or not _DAY.match(day) or not _real_day(day):
        return f"dateAdded ({cve}): expected YYYY-MM-DD, got {day!r:.40}"
    return None


def _real_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def plausible(new: KevCatalog, current: KevCatalog | None, *,
              min_entries: int = MIN_PLAUSIBLE_ENTRIES) -> str | None:
    """Why ``new`` must not replace ``current`` (None when it may): too few entries, or a
    large share of the current copy's gone."""
    if len(new) < min_entries:
        return f"lists {len(new)} CVEs, fewer than the {min_entries} expected"
    if current is not None and current.available and len(current):
        floor = int(len(current) * (1 - MAX_SHRINK))
        if len(new) < floor:
            return (f"lists {len(new)} CVEs where the current copy lists {len(current)} "
                    f"(more than {MAX_SHRINK:.0%} fewer)")
    return None
