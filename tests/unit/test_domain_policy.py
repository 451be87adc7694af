"""The severity policy: parsing policy.yaml with every problem reported, rules and evaluation."""

from __future__ import annotations

import textwrap
from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import (
    BUILTIN_POLICY,
    MAX_POLICY_BYTES,
    Override,
    Policy,
    PolicyError,
    PolicyIssue,
    Rules,
    parse_policy,
)
from gatekeeper.domain.verdict import Outcome
from tests.domain_support import ROOT


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def problems(text: str | bytes, **kwargs: Any) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, **kwargs)
    return list(raised.value.issues)


def only_problem(text: str | bytes) -> PolicyIssue:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def finding(severity: Severity, fid: str) -> Finding:
    return Finding(id=fid, severity=severity, source=Source.BASIC)


def findings(**counts: int) -> list[Finding]:
    """findings(CRITICAL=2, LOW=1) -> CVE-CRITICAL-1, CVE-CRITICAL-2, CVE-LOW-1."""
    return [finding(Severity[name], f"CVE-{name}-{i}")
            for name, n in counts.items() for i in range(1, n + 1)]


def policy(max_findings: dict[str, int], on_scan_failure: str = "quarantine",
           repositories: list[dict[str, Any]] | None = None) -> Policy:
    return parse_policy(yaml.safe_dump({
        "version": 1,
        "default": {"max_findings": max_findings, "on_scan_failure": on_scan_failure},
        "repositories": repositories or [],
    }), version="v7")


# --- parsing valid policies ------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_the_repositorys_own_policy_yaml_parses(as_bytes: bool) -> None:
    # Given the policy.yaml shipped at the repository root
    text = (ROOT / "policy.yaml").read_bytes()
    # When it is parsed
    parsed = parse_policy(text if as_bytes else text.decode(), version="abc")
    # Then it is the strict default with the sandbox override
    assert parsed == Policy(
        default=Rules(max_findings={Severity.CRITICAL: 0, Severity.HIGH: 0},
                      warn_findings={Severity.UNTRIAGED: 0, Severity.UNDEFINED: 0},
                      on_scan_failure={"default": Outcome.QUARANTINED}),
        repositories=(Override(match="sandbox/*",
                               settings={"max_findings": {Severity.CRITICAL: 0}}),),
        version="abc",
    )


EXAMPLE = doc("""
    version: 1
    default:
      max_findings:
        CRITICAL: 0
        HIGH: 2
        UNDEFINED: 5
      on_scan_failure: quarantine
    repositories:
      - match: "team-a/*"
        max_findings: {CRITICAL: 0, HIGH: 10}
      - match: "legacy-*"
        on_scan_failure: approve
      - match: "sandbox/experiments"
        max_findings: {}
""")


def test_an_example_policy_with_overrides_parses() -> None:
    parsed = parse_policy(EXAMPLE, version="s3-version-1")
    assert parsed.version == "s3-version-1"
    assert parsed.default == Rules(
        max_findings={Severity.CRITICAL: 0, Severity.HIGH: 2, Severity.UNDEFINED: 5},
        on_scan_failure={"default": Outcome.QUARANTINED},
    )
    assert parsed.repositories == (
        Override("team-a/*", {"max_findings": {Severity.CRITICAL: 0, Severity.HIGH: 10}}),
        Override("legacy-*", {"on_scan_failure": {"default": Outcome.APPROVED}}),
        Override("sandbox/experiments", {"max_findings": {}}),
    )


def test_a_policy_without_a_version_argument_is_unversioned() -> None:
    assert parse_policy(EXAMPLE).version == "unversioned"


def test_the_minimal_policy_is_version_and_an_empty_default() -> None:
    # A default without max_findings fails closed: the built-in limits, never "unlimited"
    parsed = parse_policy("version: 1\ndefault: {}\n")
    assert parsed.default == Rules(max_findings={Severity.CRITICAL: 0, Severity.HIGH: 0},
                                   on_scan_failure={"default": Outcome.QUARANTINED})
    assert parsed.default.scan_failure_outcome("FAILED") is Outcome.QUARANTINED
    assert parsed.repositories == ()


@pytest.mark.parametrize("rule", ["max_findings", "warn_findings", "grace_days"])
@pytest.mark.parametrize("key", ["critical", "Critical", "cRiTiCaL"])
def test_severity_keys_are_case_sensitive_and_uppercase(rule: str, key: str) -> None:
    # Given a severity written in another case than AWS (and the JSON Schema) write it
    text = f"version: 1\ndefault:\n  {rule}:\n    {key}: 3\n"
    # When it is parsed
    issue = only_problem(text)
    # Then it is an unknown severity, located at that key
    assert (issue.path, issue.line) == (f"default.{rule}.{key}", 4)
    assert issue.message == ("unknown severity; expected one of: CRITICAL, HIGH, MEDIUM, LOW, "
                             "INFORMATIONAL, UNDEFINED, UNTRIAGED")


@pytest.mark.parametrize("severity", list(Severity), ids=lambda s: s.name)
def test_every_severity_can_be_limited(severity: Severity) -> None:
    parsed = parse_policy(f"version: 1\ndefault:\n  max_findings: {{{severity.name}: 1}}\n")
    assert parsed.default.max_findings == {severity: 1}


def test_an_empty_repositories_list_means_no_overrides() -> None:
    assert parse_policy("version: 1\ndefault: {}\nrepositories: []\n").repositories == ()


@pytest.mark.parametrize("key", ["repositories", "exceptions"])
def test_a_null_list_is_an_error_as_the_json_schema_says(key: str) -> None:
    # The schema types both as arrays: null is not an empty list (it used to be accepted).
    issue = only_problem(f"version: 1\ndefault: {{}}\n{key}: ~\n")
    assert (issue.path, issue.line, issue.message) == (key, 3, "expected a list, got nothing")


# --- every problem is reported with its path and line ----------------------------------------


SEVERITIES = ("CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED, UNTRIAGED")
RULE_KEYS = ("block_if_epss_at_least, block_if_exploit_available, block_if_known_exploited, "
             "enforcement, grace_days, "
             "ignore_unfixed, max_findings, min_score, mode, on_scan_failure, warn_findings")
OVERRIDE_KEYS = "accounts, " + RULE_KEYS.replace("max_findings", "match, max_findings")
SCAN_FAILURE = ("expected 'quarantine' or 'approve', or a mapping from scan state to one of "
                "them, got ")


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        pytest.param("version: 1\ndefault: {}\nextra: 1\n", "extra", 3,
                     "unknown key; expected one of: account_groups, default, exceptions, "
                     "expiring_window_days, "
                     "notifications, "
                     "repositories, version, vex, vex_prefix", id="unknown-top-level-key"),
        pytest.param("version: 2\ndefault: {}\n", "version", 1, "expected 1, got 2",
                     id="wrong-version"),
        pytest.param("version: '1'\ndefault: {}\n", "version", 1, "expected 1, got '1'",
                     id="version-string"),
        pytest.param("version: true\ndefault: {}\n", "version", 1, "expected 1, got True",
                     id="version-true"),
        pytest.param("default: {}\n", "version", 1, "missing; this key is required",
                     id="version-missing"),
        pytest.param("version: 1\n", "default", 1, "missing; this key is required",
                     id="default-missing"),
        pytest.param("version: 1\ndefault: [1]\n", "default", 2, "expected a mapping, got a list",
                     id="default-list"),
        pytest.param("version: 1\ndefault:\n", "default", 2, "expected a mapping, got nothing",
                     id="default-null"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    HIGH: -1\n",
                     "default.max_findings.HIGH", 4, "expected a whole number >= 0, got -1",
                     id="max-findings-negative"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    HIGH: 'zero'\n",
                     "default.max_findings.HIGH", 4, "expected a whole number >= 0, got 'zero'",
                     id="max-findings-string"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    HIGH: 1.5\n",
                     "default.max_findings.HIGH", 4, "expected a whole number >= 0, got 1.5",
                     id="max-findings-float"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    HIGH: false\n",
                     "default.max_findings.HIGH", 4, "expected a whole number >= 0, got False",
                     id="max-findings-bool"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    HIGH:\n",
                     "default.max_findings.HIGH", 4, "expected a whole number >= 0, got nothing",
                     id="max-findings-null"),
        pytest.param("version: 1\ndefault:\n  max_findings: [CRITICAL]\n",
                     "default.max_findings", 3, "expected a mapping, got a list",
                     id="max-findings-list"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    SEVERE: 0\n",
                     "default.max_findings.SEVERE", 4,
                     f"unknown severity; expected one of: {SEVERITIES}", id="unknown-severity"),
        pytest.param("version: 1\ndefault:\n  max_finding: {}\n", "default.max_finding", 3,
                     f"unknown key; expected one of: {RULE_KEYS}", id="unknown-default-key"),
        pytest.param("version: 1\ndefault:\n  on_scan_failure: allow\n",
                     "default.on_scan_failure", 3, SCAN_FAILURE + "'allow'",
                     id="on-scan-failure-bad"),
        pytest.param("version: 1\ndefault:\n  on_scan_failure: APPROVE\n",
                     "default.on_scan_failure", 3, SCAN_FAILURE + "'APPROVE'",
                     id="on-scan-failure-case"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  match: x\n", "repositories", 3,
                     "expected a list, got a mapping", id="repositories-not-a-list"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - sandbox/*\n",
                     "repositories[0]", 4, "expected a mapping with 'match', got 'sandbox/*'",
                     id="entry-not-a-mapping"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - [a]\n",
                     "repositories[0]", 4, "expected a mapping with 'match', got a list",
                     id="entry-a-list"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: a\n"
                     "  - max_findings: {HIGH: 0}\n",
                     "repositories[1].match", 5, "missing; this key is required",
                     id="entry-without-match"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: '  '\n",
                     "repositories[0].match", 4, "expected a non-empty string",
                     id="entry-blank-match"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: a\n"
                     "    on_scan_failure: ignore\n",
                     "repositories[0].on_scan_failure", 5, SCAN_FAILURE + "'ignore'",
                     id="entry-on-scan-failure-bad"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: a\n"
                     "    max_findings: {LOW: -2}\n",
                     "repositories[0].max_findings.LOW", 5, "expected a whole number >= 0, got -2",
                     id="entry-max-findings-negative"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: a\n    severity: x\n",
                     "repositories[0].severity", 5,
                     f"unknown key; expected one of: {OVERRIDE_KEYS}",
                     id="entry-unknown-key"),
    ],
)
def test_a_problem_is_reported_with_its_path_line_and_expectation(
    text: str, path: str, line: int | None, message: str
) -> None:
    # Given a policy with exactly one problem
    # When it is parsed
    issue = only_problem(text)
    # Then the problem names its path, its line and what was expected
    assert (issue.path, issue.line, issue.message) == (path, line, message)


def test_the_error_message_renders_source_line_and_path() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy("version: 1\ndefault:\n  max_findings: {HIGH: -1}\n",
                     source="s3://bucket/policy.yaml")
    assert raised.value.source == "s3://bucket/policy.yaml"
    assert "s3://bucket/policy.yaml:3: default.max_findings.HIGH: expected a whole number" in str(
        raised.value)
    assert str(raised.value).startswith("invalid policy (1 problem(s)):")


@pytest.mark.parametrize("key", ["3", "null", "true"])
def test_a_non_text_severity_key_is_an_unknown_severity(key: str) -> None:
    # The line is that of the enclosing max_findings (the key is read as a non-string).
    issue = only_problem(f"version: 1\ndefault:\n  max_findings:\n    {key}: 0\n")
    assert issue.message.startswith("unknown severity")
    assert issue.path.startswith("default.max_findings")
    assert issue.line in (3, 4)


def test_a_version_missing_from_a_document_points_at_its_first_line() -> None:
    issue = only_problem("\n\ndefault: {}\n")
    assert issue.path == "version"
    assert issue.line == 3


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"],
                         ids=["list", "string", "number"])
def test_a_document_that_is_not_a_mapping_is_reported(text: str) -> None:
    issue = only_problem(text)
    assert (issue.path, issue.line) == ("", 1)
    assert issue.message.startswith("expected a mapping with 'version' and 'default', got")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", b""], ids=repr)
def test_an_empty_document_is_reported(text: str | bytes) -> None:
    issue = only_problem(text)
    assert issue.message == "expected a mapping with 'version' and 'default', got nothing"
    assert "(top level)" in issue.render("policy.yaml")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("version: 1\ndefault:\n  max_findings: {HIGH: 0\n", 4),
        ("version: 1\ndefault:\n\tmax_findings: {}\n", 3),
        ("version: 1\ndefault: {}\n  oops: [\n", 3),
        ("version: 1\n---\nversion: 1\n", 2),
        ("version: 1\ndefault: *missing\n", 2),
    ],
    ids=["unclosed-flow", "tab-indent", "bad-indent", "two-documents", "unknown-alias"],
)
def test_invalid_yaml_is_reported_with_its_line(text: str, line: int) -> None:
    issue = only_problem(text)
    assert issue.message.startswith("not valid YAML: ")
    assert issue.line == line
    assert f"policy.yaml:{line}: (top level): not valid YAML" in issue.render("policy.yaml")


def test_bytes_that_are_not_utf8_are_reported_as_invalid_yaml() -> None:
    issue = only_problem(b"version: 1\ndefault: {}\n# \xff\xfe\n")
    assert issue.message.startswith("not valid YAML")


def test_a_date_where_a_list_belongs_is_reported_with_its_line() -> None:
    # YAML dates stay text, so even an impossible one is located and named
    issue = only_problem("version: 1\ndefault: {}\nrepositories: 2024-02-30\n")
    assert (issue.path, issue.line) == ("repositories", 3)
    assert issue.message == "expected a list, got '2024-02-30'"


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_oversized_input_is_rejected_before_parsing(as_bytes: bool) -> None:
    text = "version: 1\ndefault: {}\n" + "#" * MAX_POLICY_BYTES
    issue = only_problem(text.encode() if as_bytes else text)
    assert issue.message == f"larger than {MAX_POLICY_BYTES} bytes"


def test_input_of_exactly_the_limit_is_parsed() -> None:
    head = "version: 1\ndefault: {}\n#"
    parsed = parse_policy((head + "x" * (MAX_POLICY_BYTES - len(head))).encode())
    assert parsed.default.max_findings == BUILTIN_POLICY.default.max_findings


def test_an_oversized_str_is_measured_in_bytes() -> None:
    text = "version: 1\ndefault: {}\n# " + "\u00e9" * (MAX_POLICY_BYTES // 2 + 1)
    assert len(text) < MAX_POLICY_BYTES < len(text.encode())
    assert only_problem(text).message == f"larger than {MAX_POLICY_BYTES} bytes"


def test_every_problem_is_listed_together_in_document_order() -> None:
    # Given a policy with five independent problems
    text = doc("""
        version: 3
        default:
          max_findings:
            CRITICAL: -1
            NOPE: 0
          on_scan_failure: maybe
        repositories:
          - {}
    """)
    # When it is parsed
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    # Then all are reported at once, each with its line
    assert [(i.path, i.line) for i in raised.value.issues] == [
        ("version", 1),
        ("default.max_findings.CRITICAL", 4),
        ("default.max_findings.NOPE", 5),
        ("default.on_scan_failure", 6),
        ("repositories[0].match", 8),
    ]
    assert str(raised.value).startswith("invalid policy (5 problem(s)):")
    assert str(raised.value).count("\n  policy.yaml:") == 5


def test_problems_in_several_overrides_are_all_reported() -> None:
    text = doc("""
        version: 1
        default: {}
        repositories:
          - match: a
            max_findings: {HIGH: x}
          - match: b
            on_scan_failure: 1
    """)
    assert [i.path for i in problems(text)] == ["repositories[0].max_findings.HIGH",
                                                "repositories[1].on_scan_failure"]


def test_anchors_and_aliases_are_followed() -> None:
    text = doc("""
        version: 1
        default:
          max_findings: &strict {CRITICAL: 0, HIGH: 0}
        repositories:
          - match: "prod/*"
            max_findings: *strict
    """)
    parsed = parse_policy(text)
    assert parsed.rules_for("prod/api").max_findings == {Severity.CRITICAL: 0, Severity.HIGH: 0}


@pytest.mark.parametrize(
    "text",
    [
        "version: !!bool maybe\ndefault: {}\n",
        "version: !!timestamp soon\ndefault: {}\n",
        "version: !!int ''\ndefault: {}\n",
        "version: !!float ''\ndefault: {}\n",
        "version: !!int\ndefault: {}\n",
    ],
    ids=["bool", "timestamp", "int-empty", "float-empty", "int-null"],
)
def test_an_explicit_yaml_tag_with_an_unreadable_value_is_a_policy_error(text: str) -> None:
    issue = only_problem(text)
    assert issue.message.startswith("not valid YAML")


# --- a key written twice, an empty default: never silently approving -------------------------

@pytest.mark.parametrize(
    ("text", "path", "line", "first"),
    [
        pytest.param("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\ndefault: {}\n",
                     "default", 4, 2, id="a-second-default"),
        pytest.param("version: 1\ndefault:\n  max_findings:\n    CRITICAL: 0\n"
                     "    CRITICAL: 50\n", "default.max_findings.CRITICAL", 5, 4, id="severity"),
        pytest.param("version: 1\ndefault: {max_findings: {HIGH: 0, HIGH: 9}}\n",
                     "default.max_findings.HIGH", 2, 2, id="flow-mapping"),
        pytest.param("version: 1\ndefault: {}\nrepositories:\n  - match: a\n"
                     "    on_scan_failure: quarantine\n    on_scan_failure: approve\n",
                     "repositories[0].on_scan_failure", 6, 5, id="in-an-override"),
        pytest.param("version: 1\ndefault: {}\nexceptions:\n  - id: CVE-1\n    expires: "
                     "2027-01-01\n    reason: r\n    owner: o\n    expires: 2099-01-01\n",
                     "exceptions[0].expires", 8, 5, id="in-an-exception"),
        pytest.param("version: 1\ndefault: {}\nversion: 1\n", "version", 3, 1,
                     id="same-value-still-twice"),
        pytest.param("version: 1\ndefault:\n  ignore_unfixed: true\n  'ignore_unfixed': false\n",
                     "default.ignore_unfixed", 4, 3, id="quoted-the-second-time"),
    ],
)
def test_a_key_written_twice_is_reported_with_its_line(text: str, path: str, line: int,
                                                        first: int) -> None:
    # Given a policy where one mapping holds a key twice (YAML would keep the last, silently)
    # When it is parsed
    issue = only_problem(text)
    # Then the second one is reported where it is, naming the key and the first one's line
    assert (issue.path, issue.line) == (path, line)
    key = path.rsplit(".", 1)[-1].split("]")[-1] or path
    assert f"duplicate key {key!r} (first at line {first})" in issue.message


def test_every_key_written_twice_is_reported_with_the_other_problems() -> None:
    text = doc("""
        version: 1
        default:
          max_findings: {CRITICAL: 0}
          mode: monitor
          mode: enforce
        default: {}
        repositories: 3
    """)
    assert [(i.path, i.line) for i in problems(text)] == [
        ("default.mode", 5), ("default", 6), ("repositories", 7)]


def test_merged_keys_may_be_overridden_as_yaml_means_them_to() -> None:
    text = doc("""
        version: 1
        default: &base
          max_findings: {CRITICAL: 0}
          mode: enforce
        repositories:
          - match: "sandbox/*"
            <<: *base
            mode: monitor
    """)
    assert parse_policy(text).rules_for("sandbox/x").mode == "monitor"


def test_the_same_key_in_different_mappings_is_no_duplicate() -> None:
    text = doc("""
        version: 1
        default:
          max_findings: {CRITICAL: 0}
        repositories:
          - match: a
            max_findings: {CRITICAL: 0}
          - match: b
            max_findings: {CRITICAL: 0}
    """)
    assert len(parse_policy(text).repositories) == 2


@pytest.mark.parametrize("default", ["{}", "{mode: enforce}", "{warn_findings: {LOW: 0}}",
                                     "{ignore_unfixed: true}"])
@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.HIGH])
def test_a_default_without_max_findings_fails_closed(default: str, severity: Severity) -> None:
    # Given a default that sets no max_findings (a severity not listed would be unlimited)
    parsed = parse_policy(f"version: 1\ndefault: {default}\n")
    # When an image with one CRITICAL or HIGH finding is judged by it
    verdict = evaluation.evaluate(parsed, "any/repo", [finding(severity, "CVE-1")])
    # Then it is quarantined, as by the built-in policy: a forgotten key approves nothing
    assert parsed.default.max_findings == BUILTIN_POLICY.default.max_findings
    assert verdict.outcome is Outcome.QUARANTINED


def test_an_empty_default_max_findings_is_an_error_not_an_approval_of_everything() -> None:
    issue = only_problem("version: 1\ndefault:\n  on_scan_failure: quarantine\n"
                         "  max_findings: {}\n")
    assert (issue.path, issue.line) == ("default.max_findings", 4)
    assert "every image would be approved" in issue.message


def test_an_override_may_still_lift_every_limit_for_the_repositories_it_names() -> None:
    parsed = parse_policy("version: 1\ndefault: {}\nrepositories:\n"
                          "  - {match: sandbox/*, max_findings: {}}\n")
    assert parsed.rules_for("sandbox/x").max_findings == {}
    assert parsed.rules_for("prod/x").max_findings == BUILTIN_POLICY.default.max_findings


# --- rules_for -------------------------------------------------------------------------------

ORDERED = policy(
    {"CRITICAL": 0, "HIGH": 0},
    on_scan_failure="approve",
    repositories=[
        {"match": "team-a/*", "max_findings": {"CRITICAL": 1}},
        {"match": "team-a/web", "max_findings": {"CRITICAL": 5}, "on_scan_failure": "quarantine"},
        {"match": "team-?/api", "on_scan_failure": "quarantine"},
        {"match": "*-sandbox", "max_findings": {}},
    ],
)


@pytest.mark.parametrize(
    ("repository", "matched"),
    [
        ("team-a/web", "repositories[match=team-a/*]"),  # first match wins over the exact one
        ("team-a/nested/deep", "repositories[match=team-a/*]"),
        ("team-b/api", "repositories[match=team-?/api]"),
        ("ml-sandbox", "repositories[match=*-sandbox]"),
        ("team-bb/api", "default"),
        ("TEAM-A/web", "default"),  # matching is case-sensitive, like repository names
        ("other", "default"),
    ],
)
def test_the_first_matching_override_wins(repository: str, matched: str) -> None:
    assert ORDERED.rules_for(repository).matched == matched


def test_an_override_max_findings_replaces_the_default_wholesale() -> None:
    """team-a/* sets only CRITICAL: HIGH is no longer limited there."""
    assert ORDERED.rules_for("team-a/web").max_findings == {Severity.CRITICAL: 1}


def test_an_override_without_max_findings_inherits_the_default_limits() -> None:
    assert ORDERED.rules_for("team-b/api").max_findings == {Severity.CRITICAL: 0,
                                                             Severity.HIGH: 0}


def test_an_override_without_on_scan_failure_inherits_the_default() -> None:
    assert ORDERED.rules_for("team-a/web").scan_failure_outcome("FAILED") is Outcome.APPROVED


def test_an_override_on_scan_failure_replaces_the_default() -> None:
    assert ORDERED.rules_for("team-b/api").scan_failure_outcome("FAILED") is Outcome.QUARANTINED


def test_an_empty_override_max_findings_lifts_every_limit() -> None:
    assert ORDERED.rules_for("ml-sandbox").max_findings == {}
    assert evaluation.evaluate(ORDERED, "ml-sandbox",
                               findings(CRITICAL=9)).outcome is Outcome.APPROVED


def test_a_repository_matching_nothing_gets_the_default() -> None:
    assert ORDERED.rules_for("other") is ORDERED.default


# --- evaluate --------------------------------------------------------------------------------

STRICT = policy({"CRITICAL": 0, "HIGH": 1})


def test_findings_within_the_limits_are_approved() -> None:
    # Given one HIGH (limit 1) and many unlimited MEDIUM/LOW findings
    # When evaluated
    verdict = evaluation.evaluate(STRICT, "team-a/web", findings(HIGH=1, MEDIUM=40, LOW=3))
    # Then the image is approved, and the reason says so
    assert verdict.outcome is Outcome.APPROVED
    assert verdict.approved
    assert verdict.reasons == ("44 counted finding(s) of 44, all within the limits of default",)
    assert (verdict.breaches, verdict.warnings, verdict.ignored) == ((), (), ())
    assert len(verdict.counted) == 44
    assert verdict.counts == {"HIGH": 1, "MEDIUM": 40, "LOW": 3}
    assert verdict.highest_severity == "HIGH"
    assert (verdict.policy_version, verdict.matched_rule) == ("v7", "default")
    assert verdict.scan_status == "COMPLETE"


def test_no_findings_at_all_are_approved_with_no_highest_severity() -> None:
    verdict = evaluation.evaluate(STRICT, "team-a/web", [])
    assert verdict.outcome is Outcome.APPROVED
    assert (verdict.counts, verdict.highest_severity) == ({}, None)
    assert verdict.reasons == ("0 counted finding(s) of 0, all within the limits of default",)


def test_findings_over_a_limit_are_quarantined_naming_the_findings() -> None:
    # Given two HIGH findings where one is allowed, and a CRITICAL where none is
    found = findings(CRITICAL=1, HIGH=2, MEDIUM=1)
    # When evaluated
    verdict = evaluation.evaluate(STRICT, "team-a/web", found)
    # Then the image is quarantined, with one reason per breached severity, most severe first
    assert verdict.outcome is Outcome.QUARANTINED
    assert not verdict.approved
    assert verdict.reasons == (
        "CRITICAL: 1 finding over the limit of 0 (CVE-CRITICAL-1)",
        "HIGH: 2 findings over the limit of 1 (CVE-HIGH-1, CVE-HIGH-2)",
    )
    assert [(b.rule, b.severity, b.count, b.limit) for b in verdict.breaches] == [
        ("max_findings", "CRITICAL", 1, 0), ("max_findings", "HIGH", 2, 1)]
    assert verdict.counts == {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 1}
    assert verdict.highest_severity == "CRITICAL"


def test_a_limit_is_reached_not_breached_at_exactly_its_value() -> None:
    assert evaluation.evaluate(STRICT, "r", findings(HIGH=1)).outcome is Outcome.APPROVED
    assert evaluation.evaluate(STRICT, "r", findings(HIGH=2)).outcome is Outcome.QUARANTINED


def test_the_matched_override_is_named_in_the_verdict() -> None:
    verdict = evaluation.evaluate(ORDERED, "team-a/web", findings(HIGH=3))
    assert verdict.outcome is Outcome.APPROVED
    assert verdict.matched_rule == "repositories[match=team-a/*]"
    assert verdict.reasons == ("3 counted finding(s) of 3, all within the limits of "
                               "repositories[match=team-a/*]",)


def test_breach_ids_are_sorted_and_truncated_after_ten() -> None:
    found = [finding(Severity.CRITICAL, f"CVE-{i:02d}") for i in range(12, 0, -1)]
    verdict = evaluation.evaluate(STRICT, "r", found)
    assert verdict.reasons == (
        "CRITICAL: 12 findings over the limit of 0 (CVE-01, CVE-02, CVE-03, CVE-04, CVE-05, "
        "CVE-06, CVE-07, CVE-08, CVE-09, CVE-10 and 2 more)",
    )
    assert verdict.breaches[0].finding_ids == tuple(f"CVE-{i:02d}" for i in range(1, 13))


def test_one_vulnerability_in_several_packages_counts_each_but_is_named_once() -> None:
    found = [finding(Severity.CRITICAL, "CVE-1"), finding(Severity.CRITICAL, "CVE-1")]
    breach = evaluation.evaluate(STRICT, "r", found).breaches[0]
    assert (breach.count, breach.finding_ids) == (2, ("CVE-1",))


def test_a_severity_absent_from_max_findings_is_unlimited() -> None:
    verdict = evaluation.evaluate(STRICT, "r", findings(MEDIUM=1000, UNDEFINED=50, INFORMATIONAL=5))
    assert verdict.outcome is Outcome.APPROVED


def test_undefined_findings_breach_a_limit_on_undefined() -> None:
    verdict = evaluation.evaluate(policy({"UNDEFINED": 0}), "r", findings(UNDEFINED=1))
    assert verdict.reasons == ("UNDEFINED: 1 finding over the limit of 0 (CVE-UNDEFINED-1)",)


def test_evaluate_accepts_any_iterable_of_findings() -> None:
    verdict = evaluation.evaluate(STRICT, "r", iter(findings(CRITICAL=1)))
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.counts == {"CRITICAL": 1}


# --- scan_failed -----------------------------------------------------------------------------


def test_a_failed_scan_is_quarantined_by_default() -> None:
    verdict = evaluation.scan_failed(parse_policy("version: 1\ndefault: {}\n", version="v1"),
        "team-a/web", "FAILED", "UnsupportedImageError: not supported")
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.scan_status == "FAILED"
    assert verdict.reasons == ("scan FAILED: UnsupportedImageError: not supported; "
                               "on_scan_failure of default is quarantine",)
    assert (verdict.counts, verdict.highest_severity, verdict.breaches) == ({}, None, ())


@pytest.mark.parametrize("description", [
    "UnsupportedImageError: The operating system and/or package manager are not supported.",
    "UnsupportedImageError: The operating system and/or package manager are not supported",
    "UnsupportedImageError: The operating system and/or package manager are not supported. \n",
    "UnsupportedImageError: The operating system and/or package manager are not supported;",
])
def test_a_failed_scan_reason_joins_its_description_without_doubled_punctuation(
        description: str) -> None:
    # Given a failed scan whose description (ECR's own text) ends with a period or a space
    # When it is judged
    verdict = evaluation.scan_failed(parse_policy("version: 1\ndefault: {}\n", version="v1"),
                                     "team-c/legacy", "FAILED", description)

    # Then the reason reads as one sentence: no ".;" where the clauses meet
    assert verdict.reasons == (
        "scan FAILED: UnsupportedImageError: The operating system and/or package manager are "
        "not supported; on_scan_failure of default is quarantine",)


def test_a_failed_scan_whose_description_is_only_punctuation_has_no_detail() -> None:
    verdict = evaluation.scan_failed(parse_policy("version: 1\ndefault: {}\n", version="v1"),
                                     "r", "FAILED", " . ")
    assert verdict.reasons == ("scan FAILED; on_scan_failure of default is quarantine",)


def test_a_failed_scan_is_approved_when_the_policy_says_approve() -> None:
    verdict = evaluation.scan_failed(policy({"CRITICAL": 0}, on_scan_failure="approve"),
        "r", "UNSUPPORTED_IMAGE", None)
    assert verdict.outcome is Outcome.APPROVED
    assert verdict.reasons == ("scan UNSUPPORTED_IMAGE; on_scan_failure of default is approve",)


def test_a_failed_scan_follows_the_matching_override() -> None:
    assert evaluation.scan_failed(ORDERED, "other", "FAILED", None).outcome is Outcome.APPROVED
    verdict = evaluation.scan_failed(ORDERED, "team-b/api", "FAILED", None)
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.matched_rule == "repositories[match=team-?/api]"


# --- the built-in policy ---------------------------------------------------------------------


def test_the_builtin_policy_is_strict() -> None:
    assert BUILTIN_POLICY.default.max_findings == {Severity.CRITICAL: 0, Severity.HIGH: 0}
    assert BUILTIN_POLICY.default.on_scan_failure == {"default": Outcome.QUARANTINED}
    assert BUILTIN_POLICY.default.mode == "enforce"
    assert (BUILTIN_POLICY.repositories, BUILTIN_POLICY.exceptions) == ((), ())
    assert BUILTIN_POLICY.version == "builtin-strict"


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.HIGH])
def test_the_builtin_policy_quarantines_a_single_high_or_critical(severity: Severity) -> None:
    verdict = evaluation.evaluate(BUILTIN_POLICY, "any/repo", [finding(severity, "CVE-1")])
    assert verdict.outcome is Outcome.QUARANTINED


@pytest.mark.parametrize("state", ["FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED",
                                   "FINDINGS_UNAVAILABLE", "SOMETHING_NEW"])
def test_the_builtin_policy_quarantines_a_failed_scan(state: str) -> None:
    assert evaluation.scan_failed(BUILTIN_POLICY, "any/repo", state,
                                  None).outcome is Outcome.QUARANTINED


# --- properties ------------------------------------------------------------------------------

FINDINGS = st.lists(
    st.builds(finding, st.sampled_from(Severity), st.sampled_from(["CVE-1", "CVE-2", "CVE-3"])),
    max_size=12,
)
# At least one severity: a default max_findings listing none is refused (it would approve all)
LIMITS = st.dictionaries(st.sampled_from([s.name for s in Severity]), st.integers(0, 3),
                         min_size=1)


@given(LIMITS, FINDINGS, st.builds(finding, st.sampled_from(Severity), st.just("CVE-9")))
def test_adding_a_finding_never_turns_quarantined_into_approved(
    limits: dict[str, int], found: list[Finding], extra: Finding
) -> None:
    judged = policy(limits)
    before = evaluation.evaluate(judged, "r", found)
    after = evaluation.evaluate(judged, "r", [*found, extra])
    if before.outcome is Outcome.QUARANTINED:
        assert after.outcome is Outcome.QUARANTINED


@given(LIMITS, FINDINGS, st.randoms(use_true_random=False))
def test_the_verdict_does_not_depend_on_finding_order(limits: dict[str, int],
                                                      found: list[Finding], rnd: Any) -> None:
    # Given the findings and a shuffled copy of them
    judged = policy(limits)
    shuffled = list(found)
    rnd.shuffle(shuffled)
    # When both are evaluated
    before, after = evaluation.evaluate(judged, "r", found), evaluation.evaluate(judged, "r",
                                        shuffled)
    # Then everything but the order of the counted and ignored findings is the same
    assert (after.outcome, after.reasons, after.breaches, after.warnings, after.counts) == (
        before.outcome, before.reasons, before.breaches, before.warnings, before.counts)
    assert Counter(after.counted) == Counter(before.counted)
    assert Counter(after.ignored) == Counter(before.ignored)


@given(LIMITS, FINDINGS)
def test_quarantine_happens_exactly_when_some_count_exceeds_its_limit(
    limits: dict[str, int], found: list[Finding]
) -> None:
    over = any(sum(f.severity.name == name for f in found) > limit
               for name, limit in limits.items())
    outcome = evaluation.evaluate(policy(limits), "r", found).outcome
    assert (outcome is Outcome.QUARANTINED) == over


YAML_KEYS = st.sampled_from(["version", "default", "repositories", "max_findings",
                             "on_scan_failure", "match", "CRITICAL", "high", "bogus"])
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(["quarantine", "approve", "team-*"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(YAML_KEYS | st.integers() | st.none(), inner, max_size=4),
    max_leaves=20,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(YAML_KEYS, YAML_VALUES, max_size=4), st.booleans())
def test_parse_policy_on_any_yaml_document_returns_or_raises_policy_error(
    data: dict[Any, Any], flow: bool
) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow)
    try:
        parsed = parse_policy(text)
    except PolicyError as err:
        assert err.issues
        return
    assert isinstance(parsed, Policy)


SOUP = st.lists(
    st.sampled_from([*"&*|>-:? \n\t{}[],'\"#%@`abc01", "version", "default", "max_findings",
                     "CRITICAL", "repositories", "match", "<<", "~", "&a ", "*a", "\u00e9",
                     "\x00", "\ufeff"]),
    max_size=40,
).map("".join)


@settings(deadline=None)
@given(st.text() | SOUP | st.binary())
def test_parse_policy_on_any_text_raises_only_policy_error(text: str | bytes) -> None:
    try:
        parse_policy(text)
    except PolicyError as err:
        assert err.issues
