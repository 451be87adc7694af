"""The `gatekeeper` command: policy validate, rules and push, --version, usage and file errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from gatekeeper import __version__
from gatekeeper_tools.cli import main
from gatekeeper_tools.local.stack import STACK_NAME, LocalDeployment
from tests.support import REGION, ROOT


def test_repository_policy_is_valid(capsys: Any) -> None:
    assert main(["policy", "validate", str(ROOT / "policy.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_broken_policy_exits_2_with_a_located_error(tmp_path: Path, capsys: Any) -> None:
    # Given a policy with a typo'd key on line 3 and a bad limit on line 5
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  max_finding: {HIGH: 0}\nrepositories:\n"
                      "  - {match: 'a/*', max_findings: {HIGH: -1}}\n")

    # When it is validated, Then it fails with both problems located
    assert main(["policy", "validate", str(policy)]) == 2
    err = capsys.readouterr().err
    assert f"{policy}:3: default.max_finding: unknown key" in err
    assert f"{policy}:5: repositories[0].max_findings.HIGH: expected a whole number >= 0" in err


def test_a_second_default_exits_2_naming_its_line(tmp_path: Path, capsys: Any) -> None:
    # Given a policy whose strict default is followed, further down, by a second default:
    # YAML alone would keep the second one and approve every image
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n"
                      "repositories: []\ndefault:\n  max_findings: {CRITICAL: 99}\n")

    # When it is validated, Then it fails, naming the second default's line and the first's
    assert main(["policy", "validate", str(policy)]) == 2
    err = capsys.readouterr().err
    assert f"{policy}:5: default: duplicate key 'default' (first at line 2)" in err


def test_missing_file_exits_2(tmp_path: Path, capsys: Any) -> None:
    assert main(["policy", "validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


@mock_aws
def test_push_validates_then_publishes_a_new_version(tmp_path: Path, capsys: Any) -> None:
    # Given the deployed policy bucket
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="policy-bucket")
    s3.put_bucket_versioning(Bucket="policy-bucket",
                             VersioningConfiguration={"Status": "Enabled"})

    # When the repository's policy is pushed
    assert main(["policy", "push", str(ROOT / "policy.yaml"), "--bucket", "policy-bucket",
                 "--yes", "--no-simulate"]) == 0

    # Then it is stored as a new version, and the command says which
    head = s3.head_object(Bucket="policy-bucket", Key="policy.yaml")
    assert head["VersionId"] in capsys.readouterr().out

    # When a broken policy is pushed, Then nothing is uploaded
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 2\n")
    assert main(["policy", "push", str(broken), "--bucket", "policy-bucket", "--yes"]) == 2
    versions = s3.list_object_versions(Bucket="policy-bucket")["Versions"]
    assert len(versions) == 1


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2


# --- newcomer fixes --------------------------------------------------------------------------

def test_version_prints_the_package_version(capsys: Any) -> None:
    # When the version is asked
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])

    # Then it is the library's, on stdout, exit 0
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"gatekeeper {__version__}\n"


@pytest.mark.parametrize(("argv", "usage"), [
    (["evaluate", "--findings", "f.json", "--bogus"], "usage: gatekeeper evaluate "),
    (["policy", "push", "policy.yaml", "--bogus"], "usage: gatekeeper policy push "),
    (["policy", "validate", "--bogus"], "usage: gatekeeper policy validate "),
    (["status", "team-a/web", "--bogus", "x"], "usage: gatekeeper status "),
    (["replay-dlq", "--bogus"], "usage: gatekeeper replay-dlq "),
])
def test_a_wrong_flag_shows_the_subcommands_usage(argv: list[str], usage: str,
                                                  capsys: Any) -> None:
    # When a subcommand is given a flag it does not know
    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    # Then that subcommand reports it, with its own usage, exit 2
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    command = usage.removeprefix("usage: ").rstrip()
    assert f"{command}: error: unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("argv", [
    ["policy", "validate", "{missing}"],
    ["policy", "push", "{missing}", "--bucket", "policy-bucket"],
    ["evaluate", "--findings", "{missing}", "--repository", "team-a/web"],
    ["evaluate", "--findings", str(ROOT / "samples/findings/basic-clean.json"),
     "--repository", "team-a/web", "--policy", "{missing}"],
])
def test_a_missing_file_says_no_such_file(argv: list[str], tmp_path: Path,
                                          capsys: Any) -> None:
    # Given a path where there is no file
    missing = str(tmp_path / "nope.yaml")

    # When it is given as the policy or the findings
    code = main([missing if arg == "{missing}" else arg for arg in argv])

    # Then one plain line says so, exit 2
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert captured.err == f"gatekeeper: no such file: {missing}\n"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalDeployment]:
    """Given template.yaml deployed into moto, with its policy under a key of its own, and
    neither a region nor GATEKEEPER_* settings in the environment (only --region gives one)."""
    with mock_aws():
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"), region=REGION,
                                            parameters={"PolicyObjectKey":
                                                        "security/policy.yaml"})
        for name in ("GATEKEEPER_POLICY_BUCKET", "GATEKEEPER_POLICY_KEY", "AWS_REGION",
                     "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        yield deployment


def test_push_finds_the_bucket_and_key_from_the_stack(stack: LocalDeployment,
                                                      capsys: Any) -> None:
    # When the policy is pushed naming only the stack and its region
    code = main(["policy", "push", str(ROOT / "policy.yaml"), "--stack", STACK_NAME,
                 "--region", REGION, "--yes"])

    # Then it is the stack's bucket and PolicyObjectKey that hold it now
    out = capsys.readouterr().out
    assert code == 0
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket=stack.policy_bucket, Key="security/policy.yaml")
    assert out == (f"published {ROOT / 'policy.yaml'} to s3://{stack.policy_bucket}/"
                   f"security/policy.yaml as version {head['VersionId']}\n")
    body = s3.get_object(Bucket=stack.policy_bucket, Key="security/policy.yaml")["Body"].read()
    assert body == (ROOT / "policy.yaml").read_bytes()


def test_push_flags_win_over_the_stack(stack: LocalDeployment, capsys: Any) -> None:
    # Given a second bucket, not the stack's
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="elsewhere")

    # When pushed with the stack named, and --bucket and --key too
    code = main(["policy", "push", str(ROOT / "policy.yaml"), "--stack", STACK_NAME,
                 "--region", REGION, "--bucket", "elsewhere", "--key", "p.yaml", "--yes"])

    # Then the flags decide, and the stack's policy object is untouched
    assert code == 0, capsys.readouterr().err
    assert s3.head_object(Bucket="elsewhere", Key="p.yaml")
    assert "Contents" not in s3.list_objects_v2(Bucket=stack.policy_bucket,
                                                Prefix="security/")


def test_push_without_a_bucket_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: Any) -> None:
    monkeypatch.delenv("GATEKEEPER_POLICY_BUCKET", raising=False)
    code = main(["policy", "push", str(ROOT / "policy.yaml"), "--yes"])
    assert code == 2
    assert capsys.readouterr().err == (
        "gatekeeper policy push: which PolicyBucketName? pass --stack NAME, or "
        "--policy-bucket (or set GATEKEEPER_POLICY_BUCKET)\n")


def test_push_to_an_unknown_stack_is_one_line(capsys: Any) -> None:
    with mock_aws():
        code = main(["policy", "push", str(ROOT / "policy.yaml"), "--stack", "no-such-stack",
                     "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("gatekeeper policy push: stack no-such-stack:")
    assert len(err.splitlines()) == 1


def test_push_reaches_an_endpoint_url(capsys: Any) -> None:
    # Given a moto server with a versioned bucket, known only by its URL
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
        s3.create_bucket(Bucket="remote-policy")
        s3.put_bucket_versioning(Bucket="remote-policy",
                                 VersioningConfiguration={"Status": "Enabled"})

        # When the policy is pushed through --endpoint-url
        code = main(["policy", "push", str(ROOT / "policy.yaml"), "--bucket", "remote-policy",
                     "--endpoint-url", url, "--yes", "--no-simulate"])

        # Then the server holds it
        assert code == 0, capsys.readouterr().err
        head = s3.head_object(Bucket="remote-policy", Key="policy.yaml")
        assert head["VersionId"] in capsys.readouterr().out
    finally:
        server.stop()


def test_policy_rules_shows_the_entry_that_applies_to_a_repository_and_account(
        capsys: Any, tmp_path: Path) -> None:
    # Given a policy whose sandbox accounts monitor, with an exception for them
    policy = tmp_path / "org.yaml"
    policy.write_text(
        "version: 1\naccount_groups:\n  sandbox: ['1111*']\ndefault: {}\n"
        "repositories:\n  - {match: 'team-a/*', accounts: [group:sandbox], mode: monitor,"
        " max_findings: {CRITICAL: 1}}\n"
        "exceptions:\n  - {id: CVE-2027-1, accounts: [group:sandbox], expires: 2099-01-01,"
        " reason: r, owner: o}\n")
    # When the rules of team-a/web are shown for a sandbox account, and for no account
    sandbox = main(["policy", "rules", "team-a/web", str(policy), "--account", "111100000000"])
    shown = capsys.readouterr().out
    unnamed = main(["policy", "rules", "team-a/web", str(policy)])
    default = capsys.readouterr().out
    # Then the sandbox gets its override and exception; no account gets the default
    assert (sandbox, unnamed) == (0, 0)
    assert shown.splitlines()[:3] == [
        "team-a/web in account 111100000000: "
        "repositories[match=team-a/*, accounts=group:sandbox]",
        "mode:            monitor", "max_findings:    CRITICAL 1"]
    assert "exceptions:      CVE-2027-1" in shown
    assert default.splitlines()[:3] == ["team-a/web in account (none given): default",
                                        "mode:            enforce",
                                        "max_findings:    CRITICAL 0, HIGH 0"]
    assert "exceptions:      none" in default


@mock_aws
def test_push_publishes_the_vex_files_the_policy_names_first(tmp_path: Path,
                                                             capsys: Any) -> None:
    # Given the policy bucket, and a policy naming a VEX file beside it under vex/
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="policy-bucket")
    (tmp_path / "vex").mkdir()
    document = ROOT / "tests" / "fixtures" / "vex" / "web.openvex.json"
    (tmp_path / "vex" / "web.openvex.json").write_bytes(document.read_bytes())
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n"
                      "vex: [vex/web.openvex.json]\n")

    # When it is pushed
    assert main(["policy", "push", str(policy), "--bucket", "policy-bucket", "--yes",
                 "--no-simulate"]) == 0

    # Then the VEX file is where the functions read it, and the policy beside it
    body = s3.get_object(Bucket="policy-bucket", Key="vex/web.openvex.json")["Body"].read()
    assert body == document.read_bytes()
    assert "vex/web.openvex.json" in capsys.readouterr().out

    # When a policy names a VEX file the functions could not read, Then nothing is uploaded
    (tmp_path / "web.json").write_bytes(document.read_bytes())
    policy.write_text("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\nvex: [web.json]\n")
    assert main(["policy", "push", str(policy), "--bucket", "policy-bucket", "--yes",
                 "--no-simulate"]) == 2
    assert "under vex/ of the policy bucket only" in capsys.readouterr().err
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="policy-bucket")["Contents"]] == [
        "policy.yaml", "vex/web.openvex.json"]
