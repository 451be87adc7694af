"""The `gatekeeper` command: policy validate and policy push."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from gatekeeper_tools.cli import main
from tests.support import ROOT


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
    assert main(["policy", "push", str(ROOT / "policy.yaml"), "--bucket", "policy-bucket"]) == 0

    # Then it is stored as a new version, and the command says which
    head = s3.head_object(Bucket="policy-bucket", Key="policy.yaml")
    assert head["VersionId"] in capsys.readouterr().out

    # When a broken policy is pushed, Then nothing is uploaded
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 2\n")
    assert main(["policy", "push", str(broken), "--bucket", "policy-bucket"]) == 2
    versions = s3.list_object_versions(Bucket="policy-bucket")["Versions"]
    assert len(versions) == 1


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
