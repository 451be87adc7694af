"""The severity policy the security team owns as code (``policy.yaml``).

Parsing never raises anything but :class:`PolicyError`, whose message names the file, the
line, the key and what was expected for every problem found, not just the first. The checks
come from the published JSON Schema (``policy.schema.json``); dates are checked on top.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gatekeeper.domain import accounts as account_rules
from gatekeeper.domain.accounts import Accounts
from gatekeeper.domain.findings import FINDINGS_INCOMPLETE, Finding, Severity
from gatekeeper.domain.kev import KevCatalog
from gatekeeper.domain.policy_errors import PolicyError, PolicyIssue
from gatekeeper.domain.schema import Validator, policy_schema
from gatekeeper.domain.verdict import ExceptionRef, Outcome

if TYPE_CHECKING:
    import yaml

    from gatekeeper.domain.vex import VexIndex

MAX_POLICY_BYTES = 1_000_000
SCHEMA_VERSION = 1
ENFORCE, MONITOR = "enforce", "monitor"
_CHOICES = {"quarantine": Outcome.QUARANTINED, "approve": Outcome.APPROVED}
# Scan states with findings to judge, and states that end a scan without them (the policy's
# on_scan_failure applies). Any other state (IN_PROGRESS, PENDING, ...) is not finished.
# FINDINGS_INCOMPLETE is ours, not ECR's: a finished scan whose findings could not all be read
# (counts that disagree, a token left, a severity AWS does not define, no scan status); its
# findings read that block still block, whatever on_scan_failure says.
SCAN_DONE_STATES = frozenset({"COMPLETE", "ACTIVE"})
SCAN_FAILED_STATES = frozenset(
    {"FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE",
     FINDINGS_INCOMPLETE}
)


@dataclass(frozen=True)
class Rules:
    """The rules that apply to one repository after its override is merged."""

    max_findings: Mapping[Severity, int] = field(default_factory=dict)
    warn_findings: Mapping[Severity, int] = field(default_factory=dict)
    on_scan_failure: Mapping[str, Outcome] = field(
        default_factory=lambda: {"default": Outcome.QUARANTINED})
    ignore_unfixed: bool = False
    min_score: float | None = None
    block_if_exploit_available: bool = False
    block_if_epss_at_least: float | None = None
    block_if_known_exploited: bool = False  # CISA KEV (gatekeeper.domain.kev)
    grace_days: Mapping[Severity, int] = field(default_factory=dict)
    mode: str = ENFORCE
    enforcement: str = "tag"  # or "archive": quarantined images also leave STANDARD storage
    matched: str = "default"

    def scan_failure_outcome(self, state: str) -> Outcome:
        return self.on_scan_failure.get(
            state, self.on_scan_failure.get("default", Outcome.QUARANTINED))


@dataclass(frozen=True)
class Override:
    match: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # Rules fields it replaces
    accounts: Accounts | None = None  # only images of these accounts (domain/accounts.py)

    def applies(self, repository: str, account: str | None) -> bool:
        return (fnmatch.fnmatchcase(repository, self.match)
                and account_rules.applies(self.accounts, account))

    @property
    def name(self) -> str:
        """How verdicts name this override (``matched``), its accounts condition included."""
        limit = f", accounts={self.accounts.describe()}" if self.accounts else ""
        return f"repositories[match={self.match}{limit}]"


@dataclass(frozen=True)
class PolicyException:
    """A vulnerability accepted until ``expires``, for a package and repositories if given."""

    id: str
    expires: datetime
    reason: str
    owner: str
    package: str | None = None
    repositories: tuple[str, ...] = ()
    ticket: str | None = None
    index: int = 0
    # As written: a date reads as the last day it applies, not the instant it stops.
    expires_text: str = field(default="", compare=False)
    accounts: Accounts | None = None  # only images of these accounts (domain/accounts.py)

    def covers_repository(self, repository: str, account: str | None = None) -> bool:
        return (not self.repositories or any(
            fnmatch.fnmatchcase(repository, glob) for glob in self.repositories)
        ) and account_rules.applies(self.accounts, account)

    def active(self, now: datetime) -> bool:
        return now < self.expires

    def covers(self, finding: Finding) -> bool:
        return self.package is None or finding.package == self.package

    @functools.cached_property
    def ref(self) -> ExceptionRef:
        """How verdicts report this exception (built once per policy, not per evaluation)."""
        return ExceptionRef(id=self.id, owner=self.owner,
                            expires=self.expires_text or self.expires.isoformat(),
                            reason=self.reason, package=self.package, ticket=self.ticket)


@dataclass(frozen=True)
class Notifications:
    """How verdict changes are announced: at once or in the periodic digest, on which channel."""

    digest: frozenset[Outcome] = frozenset()
    routes: tuple[tuple[str, str], ...] = ()  # (repository glob, channel), first match wins
    # The accounts: of each route (None: every account), in the order of routes.
    route_accounts: tuple[Accounts | None, ...] = ()

    def channel_for(self, repository: str, account: str | None = None) -> str | None:
        limits = self.route_accounts or (None,) * len(self.routes)
        return next((channel for (glob, channel), accounts in zip(self.routes, limits,
                                                                   strict=True)
                     if fnmatch.fnmatchcase(repository, glob)
                     and account_rules.applies(accounts, account)), None)

    def digested(self, outcome: Outcome) -> bool:
        return outcome in self.digest


@dataclass(frozen=True)
class Policy:
    default: Rules
    repositories: tuple[Override, ...] = ()
    exceptions: tuple[PolicyException, ...] = ()
    expiring_window_days: int = 14
    version: str = "builtin"
    notifications: Notifications = field(default_factory=Notifications)
    # When this version was published ("" for the built-in policy): verdicts are never
    # committed with a policy older than the one behind the stored verdict.
    order: str = ""
    # OpenVEX documents the policy names (files, and an S3 prefix for the stack), and their
    # statements once whoever read the policy loaded them (gatekeeper.domain.vex).
    vex_files: tuple[str, ...] = ()
    vex_prefix: str | None = None
    vex: VexIndex | None = None
    # CISA's KEV catalog, attached by whoever loads the policy (the policy source reads the
    # bucket's copy when a rule uses it); None: none was loaded (the rule fails closed).
    known_exploited: KevCatalog | None = field(default=None, compare=False, repr=False)
    # Caches keyed by (repository, account): a policy lives minutes in a container.
    _by_repository: dict[tuple[str, str | None], list[PolicyException]] = field(
        default_factory=dict, init=False, repr=False, compare=False)
    _rules: dict[tuple[str, str | None], Rules] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def rules_for(self, repository: str, account: str | None = None) -> Rules:
        """The default, with the first matching override's keys replacing the default's.

        An override limited to ``accounts:`` matches only a known account it names: for
        ``account`` None (unknown) it is skipped, as if it were not written."""
        key = (repository, account)
        rules = self._rules.get(key)
        if rules is None:
            rules = next((dataclasses.replace(self.default, **override.settings,
                                              matched=override.name)
                          for override in self.repositories
                          if override.applies(repository, account)), self.default)
            if len(self._rules) < 10_000:
                self._rules[key] = rules
        return rules

    @property
    def uses_known_exploited(self) -> bool:
        """Whether the default or any override sets block_if_known_exploited."""
        return self.default.block_if_known_exploited or any(
            o.settings.get("block_if_known_exploited") for o in self.repositories)

    def exceptions_for(self, repository: str, account: str | None = None
                       ) -> list[PolicyException]:
        key = (repository, account)
        found = self._by_repository.get(key)
        if found is None:
            found = [e for e in self.exceptions if e.covers_repository(repository, account)]
            if len(self._by_repository) < 10_000:
                self._by_repository[key] = found
        return found


# With no policy published yet, the gatekeeper fails closed: any CRITICAL or HIGH finding
# quarantines, and so does a scan that failed, timed out or whose findings could not all be
# read (FINDINGS_INCOMPLETE). UNDEFINED (ECR basic scanning: the scanner gave no severity) and
# UNTRIAGED (Inspector: not rated yet, often a CVE published hours ago) findings are never
# silently approved: one or more makes the image APPROVED_WITH_WARNINGS, notified with the
# findings named. They do not quarantine (Inspector reports UNTRIAGED findings on most images);
# a policy that wants them to block sets max_findings {UNTRIAGED: 0, UNDEFINED: 0}. A finding
# whose severity is missing or not one AWS defines is not UNDEFINED: the scan is
# FINDINGS_INCOMPLETE.
BUILTIN_POLICY = Policy(
    default=Rules(max_findings={Severity.CRITICAL: 0, Severity.HIGH: 0},
                  warn_findings={Severity.UNTRIAGED: 0, Severity.UNDEFINED: 0}),
    version="builtin-strict",
)


def parse_policy(text: str | bytes, *, source: str = "policy.yaml", version: str = "") -> Policy:
    """Parse and validate a policy document; raise PolicyError listing every problem."""
    import yaml  # see _loader

    size = len(text.encode("utf-8", "replace")) if isinstance(text, str) else len(text)
    if size > MAX_POLICY_BYTES:
        raise PolicyError([PolicyIssue("", f"larger than {MAX_POLICY_BYTES} bytes")], source)
    try:
        node = yaml.compose(text, Loader=_loader())
        data = yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyError([PolicyIssue("", f"not valid YAML: {problem}", line)], source) from None
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError) as err:
        # PyYAML's constructors raise these for explicit tags with unreadable values
        # (``!!int ''``, ``!!bool maybe``): still the author's error, never a crash.
        raise PolicyError([PolicyIssue("", f"not valid YAML: {err!r}")], source) from None
    lines = _lines(node)
    try:
        data = _plain(data, [_MAX_NODES])
        issues = [PolicyIssue(_render_path(path), message, _line(lines, path))
                  for path, message in Validator(policy_schema()).errors(data)]
    except (RecursionError, _TooLarge):
        raise PolicyError([PolicyIssue("", "YAML aliases make this document recursive or "
                                           f"larger than {_MAX_NODES} values")], source) from None
    issues += _duplicate_keys(node)
    issues += _open_default(data, lines)
    issues += [PolicyIssue(_render_path(path), message, _line(lines, path))
               for path, message in account_rules.problems(data)]
    raw_exceptions = data.get("exceptions") if isinstance(data, dict) else None
    exceptions, date_issues = _exceptions(raw_exceptions, lines)
    issues += date_issues
    if issues:
        raise PolicyError(sorted(issues, key=lambda i: i.line or 0), source)
    groups = data.get("account_groups") or {}
    return Policy(
        default=dataclasses.replace(Rules(), **{"max_findings": DEFAULT_MAX_FINDINGS,
                                                **_settings(data["default"])}),
        repositories=tuple(Override(entry["match"], _settings(entry),
                                    account_rules.resolve(entry.get("accounts"), groups))
                           for entry in data.get("repositories") or []),
        exceptions=tuple(
            dataclasses.replace(e, accounts=account_rules.resolve(
                raw_exceptions[e.index].get("accounts"), groups)) for e in exceptions),
        expiring_window_days=int(data.get("expiring_window_days", 14)),
        version=version or "unversioned",
        notifications=_notifications(data.get("notifications") or {}, groups),
        vex_files=tuple(data.get("vex") or ()),
        vex_prefix=data.get("vex_prefix"),
    )


# A default without max_findings fails closed: the built-in limits (BUILTIN_POLICY's). The
# default applies to every repository nobody wrote an override for; "a severity not listed is
# unlimited" must never turn a forgotten key into "approve every image".
DEFAULT_MAX_FINDINGS: Mapping[Severity, int] = BUILTIN_POLICY.default.max_findings


def _open_default(data: Any, lines: dict[Path, int]) -> list[PolicyIssue]:
    """``default.max_findings: {}`` would approve every image whatever its findings."""
    default = data.get("default") if isinstance(data, dict) else None
    limits = default.get("max_findings") if isinstance(default, dict) else None
    if limits != {}:
        return []
    path = ("default", "max_findings")
    return [PolicyIssue(_render_path(path), (
        "lists no severity, so every image would be approved whatever its findings; list the "
        "most findings allowed per severity (e.g. CRITICAL: 0), or leave the key out for the "
        "built-in limits (CRITICAL: 0, HIGH: 0). An override may still allow everything for "
        "the repositories it names"), _line(lines, path))]


def _duplicate_keys(root: yaml.Node | None) -> list[PolicyIssue]:
    """Every key written twice in one mapping, at any depth. YAML keeps only the last value
    without a word, so a second ``default:`` would silently replace the first."""
    import yaml

    issues: list[PolicyIssue] = []
    stack: list[tuple[Path, yaml.Node]] = [((), root)] if root is not None else []
    seen: set[int] = set()
    loader = _loader()("")
    try:
        while stack:
            path, node = stack.pop()
            if id(node) in seen:  # anchors and aliases: visit each node once
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, int] = {}
                for key, value in node.value:
                    stack.append(((*path, key.value), value))
                    if key.tag == "tag:yaml.org,2002:merge" or not isinstance(
                            key, yaml.ScalarNode):
                        continue  # merged keys may be overridden: that is what << is for
                    try:
                        name = loader.construct_object(key)
                        hash(name)
                    except (yaml.YAMLError, ValueError, TypeError, LookupError,
                            AttributeError, RecursionError):
                        name = (key.tag, key.value)
                    line = key.start_mark.line + 1
                    if name in first:
                        issues.append(PolicyIssue(
                            _render_path((*path, key.value)),
                            f"duplicate key {key.value!r} (first at line {first[name]}): YAML "
                            "would keep only the last one; write each key once", line))
                    else:
                        first[name] = line
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(((*path, index), item) for index, item in enumerate(node.value))
    finally:
        loader.dispose()
    return sorted(issues, key=lambda issue: issue.line or 0)


def _notifications(raw: Mapping[str, Any], groups: Mapping[str, Any]) -> Notifications:
    routes = raw.get("routes") or ()
    return Notifications(
        digest=frozenset(Outcome(o) for o in raw.get("digest") or ()),
        routes=tuple((r["match"], r["channel"]) for r in routes),
        route_accounts=tuple(account_rules.resolve(r.get("accounts"), groups) for r in routes),
    )


def _settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The Rules fields a validated ``default`` or override entry sets."""
    settings: dict[str, Any] = {}
    for name in ("max_findings", "warn_findings", "grace_days"):
        if name in raw:
            settings[name] = {Severity[k]: int(v) for k, v in raw[name].items()}
    if "on_scan_failure" in raw:
        value = raw["on_scan_failure"]
        choices = {"default": value} if isinstance(value, str) else value
        settings["on_scan_failure"] = {state: _CHOICES[c] for state, c in choices.items()}
    for name in ("ignore_unfixed", "block_if_exploit_available", "block_if_known_exploited",
                 "mode", "enforcement"):
        if name in raw:
            settings[name] = raw[name]
    for name in ("min_score", "block_if_epss_at_least"):
        if name in raw:
            settings[name] = float(raw[name])
    return settings


def parse_expiry(value: str) -> datetime:
    """A date is valid through that day (UTC); a date-time without a zone is UTC."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            if day == date.max:
                return datetime.max.replace(tzinfo=UTC)
            return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _exceptions(raw: Any, lines: dict[Path, int]
                ) -> tuple[list[PolicyException], list[PolicyIssue]]:
    """The exceptions, and every impossible date among them (the schema checks the rest)."""
    found, issues = [], []
    for index, entry in enumerate(raw if isinstance(raw, list) else []):
        expires = entry.get("expires") if isinstance(entry, dict) else None
        if not isinstance(expires, str) or not _EXPIRES.fullmatch(expires):
            continue  # the schema reports it
        try:
            instant = parse_expiry(expires)
        except ValueError as err:
            path = ("exceptions", index, "expires")
            issues.append(PolicyIssue(_render_path(path), f"not a real date: {err}",
                                      _line(lines, path)))
            continue
        try:
            found.append(PolicyException(
                id=entry["id"].strip().upper(), expires=instant, reason=entry["reason"],
                owner=entry["owner"], package=entry.get("package"),
                repositories=tuple(entry.get("repositories") or ()),
                ticket=entry.get("ticket"), index=index,
                expires_text=expires if len(expires) == 10 else instant.isoformat()))
        except (KeyError, AttributeError, TypeError):
            continue  # missing or mistyped keys: the schema reports them
    return found, issues


@functools.cache
def _loader() -> type[yaml.SafeLoader]:
    import yaml  # on the first policy parsed, not at every import (a Lambda cold start)

    class _Loader(yaml.SafeLoader):
        """SafeLoader without implicit timestamps: dates stay text, checked with their line."""

    _Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return _Loader

_EXPIRES = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                      r"(Z|[+-][0-9]{2}:?[0-9]{2})?)?")


Path = tuple[Any, ...]


_MAX_NODES = 200_000


class _TooLarge(Exception):
    pass


def _plain(value: Any, budget: list[int]) -> Any:
    """A plain copy of the document, refusing alias bombs (budget: values left to visit)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(value, dict):
        return {key: _plain(item, budget) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, budget) for item in value]
    return value


def _lines(root: yaml.Node | None) -> dict[Path, int]:
    """Line number (1-based) of every mapping value and sequence item, keyed by its path."""
    import yaml

    lines: dict[Path, int] = {}
    stack: list[tuple[Path, yaml.Node]] = [((), root)] if root is not None else []
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


def _line(lines: dict[Path, int], path: Path) -> int | None:
    text_path = tuple(p if isinstance(p, int) else str(p) for p in path)
    for depth in range(len(text_path), -1, -1):
        line = lines.get(text_path[:depth])
        if line is not None:
            return line
    return None


def _render_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
