"""The severity policy the security team owns as code (``policy.yaml``), and its evaluation.

Parsing never raises anything but :class:`PolicyError`, whose message names the file, the
line, the key and what was expected for every problem found, not just the first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gatekeeper.domain.findings import Finding, Severity, highest_severity, severity_counts
from gatekeeper.domain.verdict import Breach, Outcome, Verdict

MAX_POLICY_BYTES = 1_000_000
SCHEMA_VERSION = 1
_SCAN_FAILURE_CHOICES = {"quarantine": Outcome.QUARANTINED, "approve": Outcome.APPROVED}


@dataclass(frozen=True)
class PolicyIssue:
    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class PolicyError(ValueError):
    def __init__(self, issues: Iterable[PolicyIssue], source: str = "policy.yaml") -> None:
        self.issues = tuple(issues)
        self.source = source
        lines = "\n".join("  " + issue.render(source) for issue in self.issues)
        super().__init__(f"invalid policy ({len(self.issues)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Rules:
    """The limits that apply to one repository after overrides are merged."""

    max_findings: Mapping[Severity, int] = field(default_factory=dict)
    on_scan_failure: Outcome = Outcome.QUARANTINED
    matched: str = "default"


@dataclass(frozen=True)
class Override:
    match: str
    max_findings: Mapping[Severity, int] | None = None
    on_scan_failure: Outcome | None = None


@dataclass(frozen=True)
class Policy:
    default: Rules
    repositories: tuple[Override, ...] = ()
    version: str = "builtin"

    def rules_for(self, repository: str) -> Rules:
        """The default, with the first matching override's keys replacing the default's."""
        for override in self.repositories:
            if fnmatch.fnmatchcase(repository, override.match):
                return Rules(
                    max_findings=(
                        self.default.max_findings
                        if override.max_findings is None
                        else override.max_findings
                    ),
                    on_scan_failure=override.on_scan_failure or self.default.on_scan_failure,
                    matched=f"repositories[match={override.match}]",
                )
        return self.default

    def evaluate(self, repository: str, findings: Iterable[Finding]) -> Verdict:
        findings = list(findings)
        rules = self.rules_for(repository)
        by_severity: dict[Severity, list[str]] = {}
        for finding in findings:
            by_severity.setdefault(finding.severity, []).append(finding.id)
        breaches = []
        for severity in sorted(rules.max_findings, reverse=True):
            limit = rules.max_findings[severity]
            ids = sorted(set(by_severity.get(severity, ())))
            count = len(by_severity.get(severity, ()))
            if count > limit:
                breaches.append(Breach(severity.name, count, limit, tuple(ids)))
        highest = highest_severity(findings)
        if breaches:
            outcome = Outcome.QUARANTINED
            reasons = tuple(b.describe() for b in breaches)
        else:
            outcome = Outcome.APPROVED
            reasons = (
                f"{len(findings)} finding(s), all within the limits of {rules.matched}",
            )
        return Verdict(
            outcome=outcome,
            reasons=reasons,
            policy_version=self.version,
            counts=severity_counts(findings),
            highest_severity=highest.name if highest is not None else None,
            breaches=tuple(breaches),
            matched_rule=rules.matched,
        )

    def scan_failed(self, repository: str, status: str, description: str | None) -> Verdict:
        rules = self.rules_for(repository)
        detail = f": {description}" if description else ""
        return Verdict(
            outcome=rules.on_scan_failure,
            reasons=(
                f"scan {status}{detail}; on_scan_failure of {rules.matched} is "
                f"{'approve' if rules.on_scan_failure is Outcome.APPROVED else 'quarantine'}",
            ),
            policy_version=self.version,
            scan_status=status,
            matched_rule=rules.matched,
        )


# With no policy published yet, the gatekeeper fails closed.
BUILTIN_POLICY = Policy(
    default=Rules(max_findings={Severity.CRITICAL: 0, Severity.HIGH: 0}),
    version="builtin-strict",
)


def parse_policy(text: str | bytes, *, source: str = "policy.yaml", version: str = "") -> Policy:
    """Parse and validate a policy document; raise PolicyError listing every problem."""
    size = len(text.encode("utf-8", "replace")) if isinstance(text, str) else len(text)
    if size > MAX_POLICY_BYTES:
        raise PolicyError([PolicyIssue("", f"larger than {MAX_POLICY_BYTES} bytes")], source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyError([PolicyIssue("", f"not valid YAML: {problem}", line)], source) from None
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError) as err:
        # PyYAML's constructors raise these for explicit tags with unreadable values
        # (``!!int ''``, ``!!bool maybe``): still the author's error, never a crash.
        raise PolicyError([PolicyIssue("", f"not valid YAML: {err!r}")], source) from None
    checker = _Checker(_lines(node))
    policy = checker.policy(data, version or "unversioned")
    if checker.issues:
        raise PolicyError(checker.issues, source)
    assert policy is not None
    return policy


def _lines(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """Line number (1-based) of every mapping value and sequence item, keyed by its path."""
    lines: dict[tuple[Any, ...], int] = {}
    stack: list[tuple[tuple[Any, ...], yaml.Node]] = [((), root)] if root is not None else []
    seen: set[int] = set()
    while stack:
        path, node = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:  # anchors and aliases: visit each node once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines.setdefault((*path, key.value), key.start_mark.line + 1)
                stack.append(((*path, key.value), value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                stack.append(((*path, index), item))
    return lines


def _render_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Checker:
    def __init__(self, lines: dict[tuple[Any, ...], int]) -> None:
        self.lines = lines
        self.issues: list[PolicyIssue] = []

    def fail(self, path: tuple[Any, ...], message: str) -> None:
        line = None
        for depth in range(len(path), -1, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                break
        self.issues.append(PolicyIssue(_render_path(path), message, line))

    def keys(self, value: Mapping[Any, Any], path: tuple[Any, ...], allowed: set[str]) -> None:
        for key in value:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                self.fail((*path, key), f"unknown key; expected one of: {expected}")

    def policy(self, data: Any, version: str) -> Policy | None:
        if not isinstance(data, Mapping):
            self.fail((), f"expected a mapping with 'version' and 'default', got {_kind(data)}")
            return None
        self.keys(data, (), {"version", "default", "repositories"})
        version_value = data.get("version")
        if type(version_value) is not int or version_value != SCHEMA_VERSION:
            self.fail(("version",), f"expected {SCHEMA_VERSION}, got {data.get('version')!r}")
        default_raw = data.get("default")
        if not isinstance(default_raw, Mapping):
            self.fail(("default",), f"expected a mapping, got {_kind(default_raw)}")
            default_raw = {}
        self.keys(default_raw, ("default",), {"max_findings", "on_scan_failure"})
        max_findings = self.limits(default_raw.get("max_findings", {}), ("default", "max_findings"))
        on_failure = self.scan_failure(
            default_raw.get("on_scan_failure", "quarantine"), ("default", "on_scan_failure")
        )
        overrides = []
        raw_repos = data.get("repositories", [])
        if raw_repos is None:
            raw_repos = []
        if not isinstance(raw_repos, list):
            self.fail(("repositories",), f"expected a list, got {_kind(raw_repos)}")
            raw_repos = []
        for index, entry in enumerate(raw_repos):
            override = self.override(entry, ("repositories", index))
            if override is not None:
                overrides.append(override)
        return Policy(
            default=Rules(max_findings=max_findings or {}, on_scan_failure=on_failure
                          or Outcome.QUARANTINED),
            repositories=tuple(overrides),
            version=version,
        )

    def override(self, entry: Any, path: tuple[Any, ...]) -> Override | None:
        if not isinstance(entry, Mapping):
            self.fail(path, f"expected a mapping with 'match', got {_kind(entry)}")
            return None
        self.keys(entry, path, {"match", "max_findings", "on_scan_failure"})
        match = entry.get("match")
        if not isinstance(match, str) or not match.strip():
            self.fail((*path, "match"), "expected a repository name or glob such as 'team-a/*'")
            return None
        max_findings = None
        if "max_findings" in entry:
            max_findings = self.limits(entry["max_findings"], (*path, "max_findings"))
        on_failure = None
        if "on_scan_failure" in entry:
            on_failure = self.scan_failure(entry["on_scan_failure"], (*path, "on_scan_failure"))
        return Override(match=match, max_findings=max_findings, on_scan_failure=on_failure)

    def limits(self, value: Any, path: tuple[Any, ...]) -> dict[Severity, int] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping of severity to limit, got {_kind(value)}")
            return None
        limits: dict[Severity, int] = {}
        for key, limit in value.items():
            name = key.upper() if isinstance(key, str) else key
            if not isinstance(name, str) or name not in Severity.__members__:
                self.fail((*path, key), "unknown severity; expected one of: "
                          + ", ".join(s.name for s in sorted(Severity, reverse=True)))
                continue
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                self.fail((*path, key), f"expected a whole number >= 0, got {limit!r}")
                continue
            limits[Severity[name]] = limit
        return limits

    def scan_failure(self, value: Any, path: tuple[Any, ...]) -> Outcome | None:
        if not isinstance(value, str) or value not in _SCAN_FAILURE_CHOICES:
            self.fail(path, f"expected 'quarantine' or 'approve', got {value!r}")
            return None
        return _SCAN_FAILURE_CHOICES[value]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)
