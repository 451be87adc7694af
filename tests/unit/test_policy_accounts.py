"""Policy by account: ``account_groups`` and ``accounts:`` on overrides, exceptions and routes.

One policy judges the images of every member account of an organization: a sandbox group of
accounts may run ``monitor`` while production enforces. Pure: no AWS packages.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.domain import evaluation
from gatekeeper.domain.accounts import Accounts
from gatekeeper.domain.findings import FINDINGS_INCOMPLETE, Finding, Severity, Source
from gatekeeper.domain.policy import Policy, PolicyError, PolicyIssue, parse_policy
from gatekeeper.domain.verdict import Outcome

SANDBOX, PRODUCTION, UNKNOWN = "111122223333", "222233334444", "999988887777"
NOW = datetime(2027, 1, 1, tzinfo=UTC)

ORGANIZATION = textwrap.dedent("""\
    version: 1
    account_groups:
      sandbox: ["1111*"]
      production: ["222233334444", "3333*"]
    default:
      max_findings: {CRITICAL: 0, HIGH: 0}
    repositories:
      - match: "*"
        accounts: [group:sandbox]
        mode: monitor
        on_scan_failure: approve
      - match: "team-a/*"
        accounts: [group:production]
        max_findings: {CRITICAL: 0}
    exceptions:
      - id: CVE-2027-0001
        accounts: [group:sandbox]
        expires: 2099-01-31
        reason: "sandbox only"
        owner: appsec@example.com
    notifications:
      routes:
        - {match: "*", accounts: [group:sandbox], channel: sandbox}
        - {match: "*", channel: platform}
    """)


@pytest.fixture(scope="module")
def org() -> Policy:
    return parse_policy(ORGANIZATION, version="org")


def finding(severity: Severity, fid: str) -> Finding:
    return Finding(id=fid, severity=severity, source=Source.BASIC)


def problems(text: str) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    return list(raised.value.issues)


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "mode", "matched"),
    [
        (SANDBOX, "monitor", "repositories[match=*, accounts=group:sandbox]"),
        (PRODUCTION, "enforce", "default"),
        (UNKNOWN, "enforce", "default"),
        (None, "enforce", "default"),
        ("1111", "enforce", "default"),  # not an account id: matches no accounts: list
        ("1111abcdefgh", "enforce", "default"),
    ],
    ids=["sandbox", "production-elsewhere", "unknown", "none", "short", "not-digits"],
)
def test_an_override_limited_to_accounts_applies_only_to_a_known_account_it_names(
        org: Policy, account: str | None, mode: str, matched: str) -> None:
    # Given the organization policy (sandbox monitors, production enforces)
    # When the rules of a repository outside team-a/* are read for the account
    rules = org.rules_for("team-b/api", account)
    # Then only the sandbox account gets the sandbox override
    assert (rules.mode, rules.matched) == (mode, matched)


def test_production_gets_its_own_override_and_the_first_match_wins(org: Policy) -> None:
    # Given team-a/* overridden for production, after the sandbox override on "*"
    # When read for production, for the sandbox and for an unknown account
    production = org.rules_for("team-a/web", "333300000000")
    sandbox = org.rules_for("team-a/web", SANDBOX)
    unknown = org.rules_for("team-a/web", UNKNOWN)
    # Then production gets team-a's override, the sandbox its own (first), the unknown the
    # default
    assert production.matched == "repositories[match=team-a/*, accounts=group:production]"
    assert production.max_findings == {Severity.CRITICAL: 0}
    assert sandbox.mode == "monitor"
    assert unknown is org.default


@pytest.mark.parametrize(
    ("glob", "account", "expected"),
    [
        ("123456789012", "123456789012", True),
        ("123456789012", "123456789013", False),
        ("1111*", "111100000000", True),
        ("1111*", "011110000000", False),
        ("*3333", "000000003333", True),
        ("????22223333", "999922223333", True),
        ("????22223333", "99922223333", False),  # eleven digits: not an account id
        ("*", "000000000000", True),
        ("*", None, False),
        ("*", "not-an-account", False),
        ("*", "1234567890123", False),
        ("0000*", "000012345678", True),  # leading zeros are kept: ids are text
    ],
)
def test_account_globs(glob: str, account: str | None, expected: bool) -> None:
    # Given an override limited to one account glob
    policy = parse_policy(f"version: 1\ndefault: {{}}\nrepositories:\n"
                          f"  - {{match: '*', accounts: ['{glob}'], mode: monitor}}\n")
    # When its rules are read for the account
    # Then the override applies exactly when the glob matches a twelve-digit id
    assert (policy.rules_for("r", account).mode == "monitor") is expected


def test_a_group_and_an_id_mix_in_one_list_and_are_named_as_written() -> None:
    # Given an override on a group and one more account
    text = ORGANIZATION.replace("accounts: [group:sandbox]\n    mode",
                                "accounts: [group:sandbox, '444455556666']\n    mode")
    assert text != ORGANIZATION
    policy = parse_policy(text)
    # When read for that account
    rules = policy.rules_for("r", "444455556666")
    # Then it applies, named with both
    assert rules.matched == "repositories[match=*, accounts=group:sandbox,444455556666]"


def test_rules_and_exceptions_are_cached_per_repository_and_account(org: Policy) -> None:
    # Given the same repository read for two accounts, twice each
    first = [org.rules_for("r", SANDBOX), org.rules_for("r", UNKNOWN)]
    again = [org.rules_for("r", SANDBOX), org.rules_for("r", UNKNOWN)]
    # Then each account keeps its own answer
    assert [r.mode for r in first] == ["monitor", "enforce"]
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert [len(org.exceptions_for("r", a)) for a in (SANDBOX, UNKNOWN, SANDBOX)] == [1, 0, 1]


# --- evaluation ------------------------------------------------------------------------------


def test_the_sandbox_monitors_what_production_quarantines(org: Policy) -> None:
    # Given an image of team-b/api with a CRITICAL finding
    found = [finding(Severity.CRITICAL, "CVE-2027-9999")]
    # When it is judged for a sandbox account and for a production account
    sandbox = evaluation.evaluate(org, "team-b/api", found, NOW, account=SANDBOX)
    production = evaluation.evaluate(org, "team-b/api", found, NOW, account=PRODUCTION)
    # Then both are quarantined, but only the sandbox's in monitor mode (no tag changes)
    assert (sandbox.outcome, sandbox.mode) == (Outcome.QUARANTINED, "monitor")
    assert (production.outcome, production.mode) == (Outcome.QUARANTINED, "enforce")
    assert sandbox.matched_rule == "repositories[match=*, accounts=group:sandbox]"


@pytest.mark.parametrize(("account", "outcome"), [
    (SANDBOX, Outcome.APPROVED), (PRODUCTION, Outcome.QUARANTINED), (None, Outcome.QUARANTINED)])
def test_an_exception_limited_to_accounts_exempts_only_their_images(
        org: Policy, account: str | None, outcome: Outcome) -> None:
    # Given a CRITICAL finding the sandbox has an exception for
    found = [finding(Severity.CRITICAL, "CVE-2027-0001")]
    # When judged for the account
    verdict = evaluation.evaluate(org, "team-b/api", found, NOW, account=account)
    # Then only the sandbox's image is exempt
    assert verdict.outcome is outcome
    assert bool(verdict.exceptions_used) is (account == SANDBOX)


def test_every_judging_function_passes_the_account_down(org: Policy) -> None:
    # Given a failed scan, an incomplete one and an image index
    found = [finding(Severity.HIGH, "CVE-2027-0002")]
    # When each is judged for the sandbox (on_scan_failure approve) and an unknown account
    for account, failure, mode in ((SANDBOX, Outcome.APPROVED, "monitor"),
                                   (UNKNOWN, Outcome.QUARANTINED, "enforce")):
        failed = evaluation.judge_scan(org, "r", "FAILED", "boom", [], NOW, account=account)
        direct = evaluation.scan_failed(org, "r", "FAILED", None, account=account)
        partial = evaluation.judge_scan(org, "r", FINDINGS_INCOMPLETE, "token left", found,
                                        NOW, account=account)
        alone = evaluation.incomplete(org, "r", [], "token left", NOW, account=account)
        done = evaluation.judge_scan(org, "r", "COMPLETE", None, [], NOW, account=account)
        index = evaluation.index_verdict(org, "r", [("linux/amd64", "sha256:" + "a" * 64,
                                                     Outcome.APPROVED, ())], account=account)
        # Then each follows that account's rules
        assert failed is not None and done is not None and partial is not None
        assert (failed.outcome, direct.outcome, alone.outcome) == (failure,) * 3
        assert partial.outcome is Outcome.QUARANTINED  # a HIGH finding read still blocks
        assert {v.mode for v in (failed, direct, partial, alone, done, index)} == {mode}


def test_notifications_route_by_account(org: Policy) -> None:
    # Given routes for the sandbox and for everything else
    # When the channel of an image is read per account
    # Then the sandbox's go to its channel, every other account's (and an unknown's) elsewhere
    assert org.notifications.channel_for("r", SANDBOX) == "sandbox"
    assert org.notifications.channel_for("r", PRODUCTION) == "platform"
    assert org.notifications.channel_for("r") == "platform"


# --- validation ------------------------------------------------------------------------------


def test_an_undefined_group_is_a_located_error() -> None:
    # Given a third override naming a group misspelt
    text = ORGANIZATION.replace("exceptions:", "  - match: other\n    accounts: [group:sandbx]\n"
                                       "exceptions:", 1)
    # When it is parsed
    (issue,) = problems(text)
    # Then the error names the entry, the line and the groups defined
    assert issue.render("policy.yaml") == (
        "policy.yaml:16: repositories[2].accounts[0]: group 'sandbx' is not defined in "
        "account_groups (defined: production, sandbox)")


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ("repositories: [{match: '*', accounts: [sandbox]}]", "repositories[0].accounts[0]",
         "or group:<name>, got 'sandbox'"),
        ("repositories: [{match: '*', accounts: [123456789012]}]",
         "repositories[0].accounts[0]", "a quoted account-id glob"),
        ("repositories: [{match: '*', accounts: ['1234']}]", "repositories[0].accounts[0]",
         "got '1234'"),
        ("repositories: [{match: '*', accounts: ['1234567890123*']}]",
         "repositories[0].accounts[0]", "twelve digits"),
        ("repositories: [{match: '*', accounts: ['12[3]*']}]", "repositories[0].accounts[0]",
         "got '12[3]*'"),
        ("repositories: [{match: '*', accounts: []}]", "repositories[0].accounts",
         "expected at least 1 item(s)"),
        ("account_groups: {sandbox: []}", "account_groups.sandbox",
         "expected at least 1 item(s)"),
        ("account_groups: {sandbox: [group:other]}", "account_groups.sandbox[0]",
         "got 'group:other'"),
        ("account_groups: {'my sandbox': ['1111*']}", "account_groups.my sandbox",
         "is not a group name"),
        ("account_groups: ['1111*']", "account_groups", "expected a mapping"),
        ("exceptions: [{id: CVE-1, expires: 2099-01-01, reason: r, owner: o, "
         "accounts: [group:nope]}]", "exceptions[0].accounts[0]",
         "group 'nope' is not defined in account_groups"),
        ("notifications: {routes: [{match: '*', channel: c, accounts: [group:nope]}]}",
         "notifications.routes[0].accounts[0]", "group 'nope' is not defined"),
    ],
    ids=["bare-group-name", "unquoted-id", "too-short", "too-long", "bracket", "empty-list",
         "empty-group", "group-in-group", "bad-group-name", "groups-not-mapping",
         "exception-group", "route-group"],
)
def test_a_bad_account_reference_is_a_located_error(body: str, path: str, message: str) -> None:
    # Given a policy with one bad account reference
    # When it is parsed
    (issue,) = problems(f"version: 1\ndefault: {{}}\n{body}\n")
    # Then the problem names where it is and what is wrong
    assert (issue.path, issue.line) == (path, 3)
    assert message in issue.message


def test_a_group_defined_twice_is_an_error_at_the_second() -> None:
    # Given account_groups naming sandbox twice (YAML would keep the last silently)
    text = ("version: 1\ndefault: {}\naccount_groups:\n  sandbox: ['1111*']\n"
            "  sandbox: ['2222*']\n")
    # When it is parsed
    (issue,) = problems(text)
    # Then the second is refused, at its line
    assert (issue.path, issue.line) == ("account_groups.sandbox", 5)
    assert "duplicate key 'sandbox'" in issue.message


def test_a_group_may_be_defined_and_unused_and_ids_keep_leading_zeros() -> None:
    # Given a group of ids with leading zeros, referenced by nothing
    policy = parse_policy("version: 1\ndefault: {}\naccount_groups:\n"
                          "  spare: ['000000000001', '0000000000*']\n")
    # Then the policy parses; nothing is limited to accounts
    assert policy.repositories == () and policy.rules_for("r", "000000000001") is policy.default


# --- property: naming accounts never changes the others' verdicts -----------------------------

DIGIT_GLOB = st.text("0123456789?", min_size=12, max_size=12) | st.builds(
    lambda head, tail: f"{head}*{tail}", st.text("0123456789?", max_size=4),
    st.text("0123456789", max_size=3))
ACCOUNT = st.text("0123456789", min_size=12, max_size=12)
RULES = st.fixed_dictionaries({}, optional={
    "max_findings": st.dictionaries(st.sampled_from(["CRITICAL", "HIGH", "MEDIUM"]),
                                    st.integers(0, 2)),
    "mode": st.sampled_from(["enforce", "monitor"]),
    "on_scan_failure": st.sampled_from(["approve", "quarantine"]),
    "ignore_unfixed": st.booleans(),
})
FINDINGS = st.lists(st.builds(finding, st.sampled_from([Severity.CRITICAL, Severity.HIGH,
                                                        Severity.MEDIUM]),
                              st.sampled_from(["CVE-1", "CVE-2"])), max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.lists(RULES, max_size=2), added=RULES, at=st.integers(0, 2),
       globs=st.lists(DIGIT_GLOB, min_size=1, max_size=3), use_group=st.booleans(),
       account=st.none() | ACCOUNT, found=FINDINGS, scan=st.sampled_from(["COMPLETE", "FAILED"]))
def test_an_override_for_named_accounts_never_changes_the_verdict_of_another_account(
        base: list[dict[str, Any]], added: dict[str, Any], at: int, globs: list[str],
        use_group: bool, account: str | None, found: list[Finding], scan: str) -> None:
    # Given a policy, and the same policy with one more override limited to some accounts
    # (and an exception limited to them), anywhere in its list
    document: dict[str, Any] = {"version": 1, "default": {"max_findings": {"CRITICAL": 0}},
                                "repositories": [{"match": "*", **rules} for rules in base]}
    accounts = ["group:named"] if use_group else globs
    changed = {**document, "account_groups": {"named": globs},
               "repositories": [*document["repositories"]],
               "exceptions": [{"id": "CVE-1", "expires": "2099-01-01", "reason": "r",
                               "owner": "o", "accounts": accounts}]}
    changed["repositories"].insert(min(at, len(base)),
                                   {"match": "*", "accounts": accounts, **added})
    before = parse_policy(yaml.safe_dump(document), version="v")
    after = parse_policy(yaml.safe_dump(changed), version="v")
    limit = after.repositories[min(at, len(base))].accounts
    assert isinstance(limit, Accounts)
    if limit.matches(account):
        return  # a named account: its verdict may change
    # When an image of an account the override does not name is judged by both
    # Then the verdicts are the same
    assert evaluation.judge_scan(after, "r", scan, None, found, NOW, account=account) == \
        evaluation.judge_scan(before, "r", scan, None, found, NOW, account=account)
