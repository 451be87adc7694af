"""The `gatekeeper evaluate` command: saved findings judged offline, in-process, as CI runs it.

Exit codes: 0 approved, 1 quarantined, 3 approved with warnings (or monitor mode that would
quarantine), 2 usage or input error with a message on stderr.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gatekeeper_tools.cli import main
from tests.domain_support import catalog_document, kev_entry
from tests.support import FINDINGS, ROOT, load_findings

IMAGE = "sha256:7368dd6c4c0f436ab6524b894ff812900ef6bfc6056a4c99f4ac32199fe8e249"
OTHER_IMAGE = "sha256:" + "cd" * 32
STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in an empty folder: the repository's own ./policy.yaml is never read."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str | dict[str, Any] | list[Any]) -> str:
    path.write_text(text if isinstance(text, str) else json.dumps(text, indent=2),
                    encoding="utf-8")
    return str(path)


def sample(name: str) -> str:
    return str(FINDINGS / f"{name}.json")


def page(name: str, repository: str = "team-a/web", tag: str = "v1",
         digest: str = "sha256:" + "ab" * 32) -> dict[str, Any]:
    """A describe-image-scan-findings page as the AWS CLI prints it (naming its image)."""
    body = load_findings(name)
    body.update(registryId="123456789012", repositoryName=repository,
                imageId={"imageDigest": digest, "imageTag": tag})
    return body


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate_json(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, "evaluate", "--format", "json", *argv)
    assert err == ""
    return code, json.loads(out)


def in_days(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


def why_of(out: str, finding_id: str) -> str:
    """The `why:` line printed under a finding in the "Findings ignored" section."""
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("Findings ignored")))
    for index in range(start, len(lines) - 1):
        if lines[index].strip().startswith(finding_id):
            return lines[index + 1].strip()
    raise AssertionError(f"{finding_id} is not among the ignored findings:\n{out}")


@pytest.fixture
def strict(tmp_path: Path) -> str:
    return write(tmp_path / "strict.yaml", STRICT)


# --- exit codes ------------------------------------------------------------------------------

def test_clean_image_exits_0(capsys: Any, strict: str) -> None:
    # Given a clean scan (MEDIUM and LOW only) and the strict policy
    # When it is evaluated
    code, out, err = run(capsys, "evaluate", "--findings", sample("basic-clean"),
                         "--repository", "team-a/web", "--policy", strict)

    # Then it is approved, exit 0
    assert (code, err) == (0, "")
    assert out.startswith("APPROVED  team-a/web\n")
    assert "findings: 2 (MEDIUM 1, LOW 1); counted 2, ignored 0" in out


def test_critical_finding_exits_1_and_says_why(capsys: Any, strict: str) -> None:
    code, out, _ = run(capsys, "evaluate", "--findings", sample("basic-critical"),
                       "--repository", "team-a/web", "--policy", strict)
    assert code == 1
    assert out.startswith("QUARANTINED  team-a/web\n")
    assert "  - CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in out
    assert "  - HIGH: 2 findings over the limit of 0 (CVE-2023-38545, CVE-2023-5363)" in out
    assert "Findings that block (3):" in out


def test_warnings_exit_3(capsys: Any, tmp_path: Path) -> None:
    # Given a policy that warns above 0 MEDIUM findings
    policy = write(tmp_path / "warn.yaml", STRICT + "  warn_findings: {MEDIUM: 0}\n")

    # When a clean image with one MEDIUM finding is evaluated
    code, out, _ = run(capsys, "evaluate", "--findings", sample("basic-clean"),
                       "--repository", "team-a/web", "--policy", policy)

    # Then it is approved with warnings, exit 3
    assert code == 3
    assert out.startswith("APPROVED_WITH_WARNINGS  team-a/web\n")
    assert "MEDIUM: 1 finding over the warning limit of 0 (CVE-2019-5188)" in out


def test_monitor_mode_that_would_quarantine_exits_3_and_says_so(capsys: Any,
                                                                tmp_path: Path) -> None:
    # Given a strict policy in monitor mode
    policy = write(tmp_path / "monitor.yaml", STRICT + "  mode: monitor\n")

    # When an image with a CRITICAL finding is evaluated
    code, out, _ = run(capsys, "evaluate", "--findings", sample("basic-critical"),
                       "--repository", "team-a/web", "--policy", policy)

    # Then the verdict is quarantine, but the exit code does not block, and the text says why
    assert code == 3
    assert out.startswith("QUARANTINED  team-a/web\n")
    assert "mode monitor" in out
    assert "(monitor mode: recorded and notified, no tag changed)" in out


@pytest.mark.parametrize("choice, expected", [("quarantine", 1), ("approve", 0)])
def test_failed_scan_follows_on_scan_failure(capsys: Any, tmp_path: Path, choice: str,
                                             expected: int) -> None:
    policy = write(tmp_path / "policy.yaml", STRICT + f"  on_scan_failure: {choice}\n")
    code, out, _ = run(capsys, "evaluate", "--findings", sample("scan-failed"),
                       "--repository", "team-a/web", "--policy", policy)
    assert code == expected
    assert "scan:     FAILED" in out
    assert "scan FAILED: UnsupportedImageError" in out
    assert f"on_scan_failure of default is {choice}" in out


def test_failed_scan_state_can_be_chosen_per_state(capsys: Any, tmp_path: Path) -> None:
    policy = write(tmp_path / "policy.yaml",
                   STRICT + "  on_scan_failure: {default: quarantine, FAILED: approve}\n")
    code, _, _ = run(capsys, "evaluate", "--findings", sample("scan-failed"),
                     "--repository", "team-a/web", "--policy", policy)
    assert code == 0


def test_scan_in_progress_is_an_input_error(capsys: Any, tmp_path: Path, strict: str) -> None:
    # Given findings saved while the scan was still running
    body = page("basic-clean")
    body["imageScanStatus"] = {"status": "IN_PROGRESS", "description": "Scan in progress"}
    findings = write(tmp_path / "findings.json", body)

    # When evaluated, Then nothing is judged: exit 2 with a clear message and no verdict
    code, out, err = run(capsys, "evaluate", "--findings", findings, "--policy", strict)
    assert (code, out) == (2, "")
    assert err == (f"gatekeeper: {findings}: the scan is IN_PROGRESS, not finished: "
                   "nothing to judge yet\n")


# --- incomplete or unreadable input: exit 2, never a verdict ---------------------------------

def refused(capsys: Any, tmp_path: Path, body: Any, *extra: str) -> str:
    """Evaluate ``body`` with the strict policy; assert it is refused (exit 2, no verdict on
    stdout, one message on stderr naming the file) and return the message."""
    findings = write(tmp_path / "findings.json", body)
    policy = write(tmp_path / "strict.yaml", STRICT)
    code, out, err = run(capsys, "evaluate", "--findings", findings, "--policy", policy, *extra)
    assert (code, out) == (2, "")
    assert err.startswith(f"gatekeeper: {findings}: the findings are incomplete")
    return err


@pytest.mark.parametrize("key", ["nextToken", "NextToken"])
def test_a_page_that_says_more_follow_exits_2_naming_the_token_and_how_to_read_them_all(
        capsys: Any, tmp_path: Path, key: str) -> None:
    # Given the clean sample saved with --max-items (NextToken) or --no-paginate (nextToken):
    # its findings alone would be approved
    body = page("basic-clean")
    body[key] = "eyJuZXh0VG9rZW4iOiBudWxsLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAxfQ=="

    # When evaluated, Then it is refused, naming the token and the command that reads it all
    err = refused(capsys, tmp_path, body)
    assert "more pages follow (next token 'eyJuZXh0VG9rZW4iOiBudWxsLCAiYm90b190cnVu'…)" in err
    assert ("'aws ecr describe-image-scan-findings --repository-name team-a/web --image-id "
            f"imageDigest=sha256:{'ab' * 32}' without --max-items pages through them all") in err


def test_pages_that_all_say_more_follow_exit_2(capsys: Any, tmp_path: Path) -> None:
    first, second = pages_of("basic-clean", 1)
    second["nextToken"] = "page-3"
    assert "next token 'page-3'" in refused(capsys, tmp_path, [first, second])


def test_list_findings_with_a_token_left_exits_2(capsys: Any, tmp_path: Path) -> None:
    body = load_findings("inspector-list-findings")
    body["nextToken"] = "abc"
    assert "aws inspector2 list-findings' without --max-items" in refused(
        capsys, tmp_path, body, "--digest", IMAGE)


def test_a_bogus_severity_with_no_scan_status_exits_2(capsys: Any, tmp_path: Path) -> None:
    # Given one finding of severity BOGUS and no scan status at all
    body = {"repositoryName": "team-a/web", "imageScanFindings": {"findings": [
        {"name": "CVE-2024-0001", "severity": "BOGUS"}]}}

    # When evaluated, Then both problems are named, and nothing is judged
    err = refused(capsys, tmp_path, body)
    assert "document 1 has no imageScanStatus.status: nothing says the scan finished" in err
    assert "CVE-2024-0001: severity 'BOGUS' is not one AWS defines for basic findings" in err


def test_a_finding_without_a_severity_exits_2(capsys: Any, tmp_path: Path) -> None:
    body = page("basic-critical")
    del body["imageScanFindings"]["findings"][0]["severity"]
    assert "CVE-2023-4863: no severity" in refused(capsys, tmp_path, body)


@pytest.mark.parametrize("change", ["null", "drop", "lose-critical"])
def test_findings_that_disagree_with_the_counts_exit_2(capsys: Any, tmp_path: Path,
                                                       change: str) -> None:
    # Given the critical sample whose findings list is null, gone, or lost its CRITICAL
    body = page("basic-critical")
    scan = body["imageScanFindings"]
    if change == "null":
        scan["findings"] = None
    elif change == "drop":
        del scan["findings"]
    else:
        scan["findings"] = [f for f in scan["findings"] if f["severity"] != "CRITICAL"]

    # When evaluated, Then the counts of the same output give it away: exit 2, not 0
    err = refused(capsys, tmp_path, body)
    assert "the severity counts report CRITICAL 1, HIGH 2, MEDIUM 1 but" in err


def test_enhanced_counts_with_untriaged_agree_with_their_findings(capsys: Any,
                                                                 strict: str) -> None:
    code, out, err = run(capsys, "evaluate", "--findings", sample("enhanced-medium"),
                         "--policy", strict, "--repository", "team-a/web")
    assert (code, err) == (0, "")
    assert out.startswith("APPROVED  team-a/web")


# --- inputs ------------------------------------------------------------------------------------

def test_one_page_names_its_image(capsys: Any, tmp_path: Path, strict: str) -> None:
    findings = write(tmp_path / "findings.json", page("basic-clean", tag="1.4.2"))
    code, out, _ = run(capsys, "evaluate", "--findings", findings, "--policy", strict)
    assert code == 0
    assert out.startswith(f"APPROVED  team-a/web:1.4.2  (sha256:{'ab' * 32})\n")


def pages_of(name: str, at: int, token: str = "page-2") -> list[dict[str, Any]]:
    """One image's sample as ECR pages it: findings split at ``at``; status and counts (which
    cover the whole image) repeated; a token on the first page."""
    body = page(name)
    first, second = copy.deepcopy(body), copy.deepcopy(body)
    key = "findings" if "findings" in body["imageScanFindings"] else "enhancedFindings"
    first["imageScanFindings"][key] = body["imageScanFindings"][key][:at]
    second["imageScanFindings"][key] = body["imageScanFindings"][key][at:]
    first["nextToken"] = token
    return [first, second]


def test_concatenated_pages_are_all_counted(capsys: Any, tmp_path: Path, strict: str) -> None:
    # Given two pages of one image saved back to back, the CRITICAL on the second
    first, second = pages_of("basic-critical", 2)
    second["imageScanFindings"]["findings"].reverse()
    text = json.dumps(first, indent=4) + "\n" + json.dumps(second, indent=4)
    findings = write(tmp_path / "findings.json", text)

    # When evaluated
    code, document = evaluate_json(capsys, "--findings", findings, "--policy", strict)

    # Then every finding of both pages counts
    assert code == 1
    assert document["counts"] == {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 1}
    assert len(document["counted"]) == 4
    assert document["repository"] == "team-a/web"


def test_a_json_list_of_pages_is_read_like_concatenated_pages(capsys: Any, tmp_path: Path,
                                                              strict: str) -> None:
    findings = write(tmp_path / "pages.json", pages_of("basic-critical", 1))
    code, document = evaluate_json(capsys, "--findings", findings, "--policy", strict)
    assert code == 1
    assert document["counts"] == {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 1}


@pytest.mark.parametrize("name, expected, counts", [
    ("enhanced-medium", 0, {"MEDIUM": 1, "UNTRIAGED": 1}),
    ("enhanced-critical-exploit", 1, {"CRITICAL": 1}),
])
def test_enhanced_findings(capsys: Any, strict: str, name: str, expected: int,
                           counts: dict[str, int]) -> None:
    code, document = evaluate_json(capsys, "--findings", sample(name),
                                   "--repository", "team-a/web", "--policy", strict)
    assert code == expected
    assert document["counts"] == counts
    assert {f["source"] for f in document["counted"]} == {"enhanced"}


def test_enhanced_exploit_blocks_whatever_its_severity(capsys: Any, tmp_path: Path) -> None:
    # Given a policy whose limits allow the CRITICAL finding, but not a known exploit
    policy = write(tmp_path / "policy.yaml", "version: 1\ndefault:\n"
                   "  max_findings: {CRITICAL: 5}\n  block_if_exploit_available: true\n")
    code, document = evaluate_json(capsys, "--findings", sample("enhanced-critical-exploit"),
                                   "--repository", "team-a/web", "--policy", policy)
    assert code == 1
    [breach] = document["breaches"]
    assert breach["rule"] == "block_if_exploit_available"
    assert breach["finding_ids"] == ["CVE-2021-44228"]
    assert breach["text"] == "1 finding with a known exploit (CVE-2021-44228)"


def test_inspector_list_findings_judges_the_image_and_ignores_ec2(capsys: Any,
                                                                  strict: str) -> None:
    # Given `aws inspector2 list-findings` output: 4 findings on one image, 1 on an instance
    # When it is evaluated without naming the repository
    code, out, err = run(capsys, "evaluate", "--findings", sample("inspector-list-findings"),
                         "--policy", strict)

    # Then the image's repository, tag and digest come from the findings
    assert (code, err) == (1, "")
    assert out.startswith(f"QUARANTINED  team-a/web:v2  ({IMAGE})\n")
    # and only the image's findings count: the EC2 instance's CRITICAL is not among them
    assert "findings: 4 (CRITICAL 1, HIGH 1, MEDIUM 1, UNTRIAGED 1)" in out
    assert "CVE-2024-6387" not in out
    assert "CVE-2022-22965" in out


def two_images(tmp_path: Path) -> str:
    """list-findings output with one more finding, on another image of the same repository."""
    body = load_findings("inspector-list-findings")
    other = copy.deepcopy(body["findings"][2])
    image = other["resources"][0]["details"]["awsEcrContainerImage"]
    image.update(imageHash=OTHER_IMAGE, imageTags=["v3"])
    other["findingArn"] = other["findingArn"][:-8] + "00000000"
    body["findings"].append(other)
    return write(tmp_path / "two-images.json", body)


def test_list_findings_of_two_images_asks_for_a_digest(capsys: Any, tmp_path: Path,
                                                       strict: str) -> None:
    findings = two_images(tmp_path)
    code, out, err = run(capsys, "evaluate", "--findings", findings, "--policy", strict)
    assert (code, out) == (2, "")
    assert "the findings cover 2 images" in err
    assert IMAGE in err and OTHER_IMAGE in err
    assert "choose one with --digest" in err


def test_digest_picks_one_image_out_of_list_findings(capsys: Any, tmp_path: Path,
                                                     strict: str) -> None:
    findings = two_images(tmp_path)
    code, document = evaluate_json(capsys, "--findings", findings, "--policy", strict,
                                   "--digest", OTHER_IMAGE)
    assert code == 0
    assert (document["digest"], document["tags"]) == (OTHER_IMAGE, ["v3"])
    assert document["counts"] == {"MEDIUM": 1}

    code, document = evaluate_json(capsys, "--findings", findings, "--policy", strict,
                                   "--digest", IMAGE)
    assert code == 1
    assert sum(document["counts"].values()) == 4


def test_digest_of_no_image_in_the_findings_is_an_input_error(capsys: Any, tmp_path: Path,
                                                              strict: str) -> None:
    # Given list-findings output, and a digest mistyped in the pipeline
    # When it is evaluated for that digest
    code, _, err = run(capsys, "evaluate", "--findings", sample("inspector-list-findings"),
                       "--policy", strict, "--repository", "team-a/web",
                       "--digest", "sha256:" + "0" * 64)

    # Then nothing is approved: the digest is not among the findings
    assert code == 2
    assert "sha256:" + "0" * 64 in err


def test_findings_from_stdin(capsys: Any, monkeypatch: pytest.MonkeyPatch,
                             strict: str) -> None:
    # Given the findings piped in, as `aws ecr describe-image-scan-findings ... | gatekeeper`
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(page("basic-critical"))))

    # When read from `--findings -`
    code, out, _ = run(capsys, "evaluate", "--findings", "-", "--policy", strict)

    # Then they are judged like a file
    assert code == 1
    assert out.startswith("QUARANTINED  team-a/web:v1")


def test_stdin_with_garbage_is_an_input_error(capsys: Any, monkeypatch: pytest.MonkeyPatch,
                                              strict: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("An error occurred (AccessDenied)"))
    code, out, err = run(capsys, "evaluate", "--findings", "-", "--policy", strict)
    assert (code, out) == (2, "")
    assert err.startswith("gatekeeper: -: not JSON at line 1, column 1")


# --- repository and policy -----------------------------------------------------------------------

def test_repository_option_overrides_the_findings(capsys: Any, tmp_path: Path) -> None:
    # Given a policy where sandbox/* allows HIGH findings, and findings saved from team-a/web
    policy = write(tmp_path / "policy.yaml", STRICT + "repositories:\n"
                   "  - match: 'sandbox/*'\n    max_findings: {CRITICAL: 0}\n")
    findings = write(tmp_path / "findings.json", page("basic-high-only"))

    # When evaluated as the repository the findings name, and then as sandbox/tools
    as_saved, _ = evaluate_json(capsys, "--findings", findings, "--policy", policy)
    code, document = evaluate_json(capsys, "--findings", findings, "--policy", policy,
                                    "--repository", "sandbox/tools", "--tag", "nightly")

    # Then --repository decides which rules apply, and is what the verdict names
    assert as_saved == 1
    assert code == 0
    assert document["repository"] == "sandbox/tools"
    assert document["tags"] == ["nightly"]
    assert document["policy"]["rule"] == "repositories[match=sandbox/*]"


def test_findings_without_repository_need_the_option(capsys: Any, strict: str) -> None:
    # The samples are `imageScanFindings` bodies without repositoryName
    code, out, err = run(capsys, "evaluate", "--findings", sample("basic-clean"),
                         "--policy", strict)
    assert (code, out) == (2, "")
    assert err.rstrip().endswith("the findings do not name the repository; pass --repository")


SAMPLE_VERDICTS = {  # under the repository's policy.yaml
    "basic-clean": ("APPROVED", 0),
    "basic-critical": ("QUARANTINED", 1),
    "basic-high-only": ("QUARANTINED", 1),
    "enhanced-critical-exploit": ("QUARANTINED", 1),
    "enhanced-critical-in-use": ("QUARANTINED", 1),
    "enhanced-medium": ("APPROVED_WITH_WARNINGS", 3),
    "inspector-list-findings": ("QUARANTINED", 1),
    "scan-failed": ("QUARANTINED", 1),
}


def test_every_sample_has_an_expected_verdict() -> None:
    assert sorted(SAMPLE_VERDICTS) == sorted(p.stem for p in FINDINGS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(SAMPLE_VERDICTS))
def test_each_sample_as_the_aws_cli_prints_it_names_its_repository(
        name: str, capsys: Any, tmp_path: Path) -> None:
    # Given the sample as the AWS CLI prints it: describe-image-scan-findings output names
    # the repository (repositoryName), list-findings output names it in each finding
    # (resources[].details.awsEcrContainerImage.repositoryName)
    body = load_findings(name)
    saved = body if "findings" in body else page(name, repository="team-a/web")
    findings = write(tmp_path / f"{name}.json", saved)

    # When it is evaluated without --repository
    code, out, err = run(capsys, "evaluate", "--findings", findings,
                         "--policy", str(ROOT / "policy.yaml"))

    # Then the findings' repository is judged
    outcome, expected = SAMPLE_VERDICTS[name]
    assert (code, err) == (expected, "")
    assert out.startswith(f"{outcome}  team-a/web")


BARE_SAMPLES = sorted(n for n in SAMPLE_VERDICTS if n != "inspector-list-findings")


@pytest.mark.parametrize("name", BARE_SAMPLES)
def test_each_bare_sample_is_judged_with_the_repository_option(name: str, capsys: Any) -> None:
    # Given a sample as stored: the body alone, naming no repository
    assert "repositoryName" not in load_findings(name)

    # When it is evaluated without, then with --repository
    refused = run(capsys, "evaluate", "--findings", sample(name),
                  "--policy", str(ROOT / "policy.yaml"))
    code, out, err = run(capsys, "evaluate", "--findings", sample(name),
                         "--policy", str(ROOT / "policy.yaml"), "--repository", "team-a/web")

    # Then without it nothing is judged (the repository decides which rules apply); with it,
    # the sample gets its verdict
    assert refused[:2] == (2, "")
    assert refused[2] == (f"gatekeeper: {sample(name)}: the findings do not name the "
                          "repository; pass --repository\n")
    outcome, expected = SAMPLE_VERDICTS[name]
    assert (code, err) == (expected, "")
    assert out.startswith(f"{outcome}  team-a/web\n")


def readme_evaluate_commands() -> list[str]:
    """The `gatekeeper evaluate` command lines the README shows (shell and CI)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    found = []
    for line in lines:
        command = line.strip().removeprefix("- run: ")
        if command.startswith((".venv/bin/gatekeeper evaluate", "gatekeeper evaluate")):
            found.append(command)
    return found


def saved_as_the_aws_cli_does(tmp_path: Path, findings: str) -> Path:
    """`aws ecr describe-image-scan-findings --repository-name team-a/web ... > findings.json`
    against moto: the response as the AWS CLI prints it (timestamps in ISO 8601)."""
    import boto3
    from moto import mock_aws

    from gatekeeper_tools.local.ecr import manifest, set_scan_result

    with mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        ecr.create_repository(repositoryName="team-a/web")
        digest = ecr.put_image(repositoryName="team-a/web", imageManifest=manifest("readme"),
                               imageTag="v1.4.2")["image"]["imageId"]["imageDigest"]
        set_scan_result("team-a/web", digest, load_findings(findings))
        response = ecr.describe_image_scan_findings(repositoryName="team-a/web",
                                                    imageId={"imageDigest": digest})
    response.pop("ResponseMetadata")
    path = tmp_path / "findings.json"
    path.write_text(json.dumps(response, indent=4, default=lambda value: value.isoformat()),
                    encoding="utf-8")
    return path


def test_the_readme_examples_run_as_written(capsys: Any, tmp_path: Path) -> None:
    # Given the README's evaluate examples, and where they run: findings.json saved by the
    # AWS CLI, the repository's policy.yaml, TAG set
    commands = readme_evaluate_commands()
    assert len(commands) == 2, commands
    saved_as_the_aws_cli_does(tmp_path, "basic-critical")
    (tmp_path / "policy.yaml").write_bytes((ROOT / "policy.yaml").read_bytes())

    for command in commands:
        # When each runs as written (with TAG=v1.4.2; a "> FILE" redirection captured)
        words = shlex.split(command.replace("$TAG", "v1.4.2"))
        redirect = words[words.index(">") + 1] if ">" in words else None
        argv = words[1:words.index(">")] if redirect else words[1:]
        code, out, err = run(capsys, *argv)

        # Then the image of the repository the findings name is judged, exit 1 (CRITICAL)
        assert (code, err) == (1, ""), command
        if redirect:
            document = json.loads(out)
            assert (document["repository"], document["outcome"]) == ("team-a/web",
                                                                       "QUARANTINED")
        else:
            assert out.startswith("QUARANTINED  team-a/web:v1.4.2  (sha256:")
            assert "policy:   policy.yaml (version local, rule default, mode enforce)" in out


def test_the_readme_sample_evaluation_prints_what_the_readme_shows(
        capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the README's example run on a sample (a "$ command" line, then its output)
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("$ .venv/bin/gatekeeper evaluate "))
    end = lines.index("```", start)
    command, shown = lines[start].removeprefix("$ "), lines[start + 1:end]

    # When it runs, in a checkout of the repository
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, *shlex.split(command)[1:])

    # Then it prints exactly what the README shows (the sample is quarantined: exit 1)
    assert (code, err) == (1, "")
    assert out.splitlines() == shown


def test_missing_findings_file_is_an_input_error(capsys: Any, tmp_path: Path,
                                                 strict: str) -> None:
    code, _, err = run(capsys, "evaluate", "--findings", str(tmp_path / "none.json"),
                       "--policy", strict)
    assert code == 2
    assert "none.json" in err


def test_findings_not_utf8_is_an_input_error(capsys: Any, tmp_path: Path,
                                             strict: str) -> None:
    findings = tmp_path / "findings.json"
    findings.write_bytes(b"\xff\xfe{\x00}\x00")
    code, _, err = run(capsys, "evaluate", "--findings", str(findings), "--policy", strict)
    assert code == 2
    assert "is not UTF-8 text" in err


def test_missing_policy_file_is_an_input_error(capsys: Any, tmp_path: Path) -> None:
    code, out, err = run(capsys, "evaluate", "--findings", sample("basic-clean"),
                         "--repository", "team-a/web", "--policy", str(tmp_path / "nope.yaml"))
    assert (code, out) == (2, "")
    assert "nope.yaml" in err


def test_broken_policy_is_an_input_error_located_on_stderr(capsys: Any, tmp_path: Path) -> None:
    # Given a policy with a typo'd key on line 3
    policy = write(tmp_path / "policy.yaml", "version: 1\ndefault:\n  max_finding: {HIGH: 0}\n")

    # When used to evaluate, Then nothing is judged and the problem is located
    code, out, err = run(capsys, "evaluate", "--findings", sample("basic-critical"),
                         "--repository", "team-a/web", "--policy", policy)
    assert (code, out) == (2, "")
    assert f"{policy}:3: default.max_finding: unknown key" in err


def test_without_a_policy_the_builtin_strict_policy_is_used_and_named(capsys: Any) -> None:
    # Given no --policy and no ./policy.yaml in the working folder (the autouse fixture)
    assert not Path("policy.yaml").exists()

    # When an image with HIGH findings is evaluated
    code, out, _ = run(capsys, "evaluate", "--findings", sample("basic-high-only"),
                       "--repository", "team-a/web")
    code_json, document = evaluate_json(capsys, "--findings", sample("basic-high-only"),
                                        "--repository", "team-a/web")

    # Then the built-in policy (fail closed: no CRITICAL nor HIGH) judges it, and says so
    assert code == code_json == 1
    assert "built-in strict policy" in out
    assert "version builtin-strict" in out
    assert document["policy"]["version"] == "builtin-strict"
    assert "built-in strict policy" in document["policy"]["source"]


def test_policy_yaml_in_the_working_folder_is_the_default(capsys: Any) -> None:
    # Given a lenient ./policy.yaml
    write(Path("policy.yaml"), "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n")

    # When evaluated without --policy, Then that policy is used
    code, document = evaluate_json(capsys, "--findings", sample("basic-high-only"),
                                   "--repository", "team-a/web")
    assert code == 0
    assert document["policy"]["source"] == "policy.yaml"


# --- the JSON document ---------------------------------------------------------------------------

def explained_policy(tmp_path: Path, limits: str = "{CRITICAL: 0, HIGH: 0}",
                     extra: str = "") -> tuple[str, date]:
    """A policy with an exception (expiring soon), ignore_unfixed and min_score, and an
    exception this image does not use."""
    expires = in_days(10)
    text = (
        "version: 1\n"
        "default:\n"
        f"  max_findings: {limits}\n"
        "  ignore_unfixed: true\n"
        "  min_score: 4.0\n"
        f"{extra}"
        "exceptions:\n"
        "  - id: cve-2022-22965\n"
        "    package: org.springframework:spring-beans\n"
        f"    expires: {expires.isoformat()}\n"
        "    reason: Not reachable; no data binding on JDK 9+\n"
        "    owner: appsec@example.com\n"
        "    ticket: SEC-1234\n"
        "  - id: CVE-2021-44228\n"
        f"    expires: {in_days(200).isoformat()}\n"
        "    reason: log4j is not in this image family\n"
        "    owner: platform@example.com\n"
    )
    return write(tmp_path / "policy.yaml", text), expires


def test_json_document_has_the_documented_stable_fields(capsys: Any, tmp_path: Path) -> None:
    # Given a policy that limits MEDIUM findings too, and warns on them
    policy, expires = explained_policy(tmp_path, "{CRITICAL: 0, HIGH: 0, MEDIUM: 0}",
                                       "  warn_findings: {MEDIUM: 0}\n")

    # When the list-findings sample is evaluated as JSON
    code, out, err = run(capsys, "evaluate", "--findings", sample("inspector-list-findings"),
                         "--policy", policy, "--format", "json")
    document = json.loads(out)

    # Then the document has every documented field, and its exit code is the process's
    assert (code, err) == (1, "")
    assert document["exit_code"] == code
    assert {"schema", "repository", "digest", "tags", "outcome", "approved", "mode",
            "scan_status", "policy", "reasons", "counts", "highest_severity", "breaches",
            "warnings", "counted", "ignored", "ignored_by_reason", "exceptions",
            "exit_code"} <= set(document)
    assert document["schema"] == "gatekeeper.verdict/v1"
    # And it holds every field of the signed verdict of that schema (nothing committed here)
    assert {"policy_version", "decided_at", "verdict_revision"} <= set(document)
    assert (document["policy_version"], document["decided_at"],
            document["verdict_revision"]) == ("local", None, None)
    assert (document["repository"], document["digest"], document["tags"]) == (
        "team-a/web", IMAGE, ["v2"])
    assert (document["outcome"], document["approved"], document["mode"],
            document["scan_status"]) == ("QUARANTINED", False, "enforce", "COMPLETE")
    assert document["policy"] == {"version": "local", "rule": "default", "source": policy}
    assert document["counts"] == {"CRITICAL": 1, "HIGH": 1, "MEDIUM": 1, "UNTRIAGED": 1}
    assert document["highest_severity"] == "CRITICAL"

    # each limit that broke, and each warning
    text = "MEDIUM: 1 finding over the limit of 0 (CVE-2024-0727)"
    assert document["breaches"] == [{"rule": "max_findings", "severity": "MEDIUM", "count": 1,
                                     "limit": 0, "finding_ids": ["CVE-2024-0727"],
                                     "text": text}]
    assert document["reasons"] == [text]
    [warning] = document["warnings"]
    assert (warning["rule"], warning["severity"], warning["finding_ids"]) == (
        "warn_findings", "MEDIUM", ["CVE-2024-0727"])
    assert "warning limit of 0" in warning["text"]

    # each finding that counted, with its details
    assert document["counted"] == [{
        "id": "CVE-2024-0727",
        "severity": "MEDIUM",
        "package": "openssl",
        "installed_version": "3.0.11",
        "fixed_version": "0:3.0.13-1~deb12u1",
        "fix_available": True,
        "exploit_available": False,
        "score": 5.5,
        "epss": 0.00043,
        "first_seen": "2024-02-02T16:30:33.045000+01:00",
        "source": "enhanced",
        "uri": "https://security-tracker.debian.org/tracker/CVE-2024-0727",
    }]

    # each finding ignored, and why
    ignored = {i["finding"]["id"]: i for i in document["ignored"]}
    assert set(ignored) == {"CVE-2022-22965", "CVE-2023-45853", "CVE-2024-26461"}
    for item in document["ignored"]:
        assert set(item) >= {"finding", "why", "detail", "exception"}
    by_exception = ignored["CVE-2022-22965"]
    assert by_exception["why"] == "exception"
    assert by_exception["finding"]["exploit_available"] is True
    assert by_exception["finding"]["epss"] == 0.9
    exception = by_exception["exception"]
    assert exception["id"] == "CVE-2022-22965"
    assert exception["owner"] == "appsec@example.com"
    assert exception["ticket"] == "SEC-1234"
    assert exception["package"] == "org.springframework:spring-beans"
    assert exception["reason"] == "Not reachable; no data binding on JDK 9+"
    # as written: a date is the last day the exception applies
    assert exception["expires"] == expires.isoformat()
    assert "appsec@example.com" in by_exception["detail"]
    assert (ignored["CVE-2023-45853"]["why"], ignored["CVE-2023-45853"]["exception"]) == (
        "unfixed", None)
    assert ignored["CVE-2023-45853"]["detail"] == "no fix available (ignore_unfixed)"
    assert ignored["CVE-2023-45853"]["finding"]["fix_available"] is False
    assert ignored["CVE-2023-45853"]["finding"]["fixed_version"] is None
    assert ignored["CVE-2024-26461"]["why"] == "below_score"
    assert ignored["CVE-2024-26461"]["detail"] == "score 2.1 below min_score 4"
    assert document["ignored_by_reason"] == {"exception": 1, "unfixed": 1, "below_score": 1}

    # and the exceptions: used, unused by this image, expiring soon
    exceptions = document["exceptions"]
    assert [e["id"] for e in exceptions["used"]] == ["CVE-2022-22965"]
    assert [e["id"] for e in exceptions["unused"]] == ["CVE-2021-44228"]
    assert [e["id"] for e in exceptions["expiring"]] == ["CVE-2022-22965"]
    assert exceptions["unused"][0]["owner"] == "platform@example.com"


@pytest.mark.parametrize("name, policy, expected", [
    ("basic-clean", STRICT, 0),
    ("basic-critical", STRICT, 1),
    ("basic-clean", STRICT + "  warn_findings: {MEDIUM: 0}\n", 3),
    ("basic-critical", STRICT + "  mode: monitor\n", 3),
])
def test_json_exit_code_is_the_process_exit_code(capsys: Any, tmp_path: Path, name: str,
                                                 policy: str, expected: int) -> None:
    policy_file = write(tmp_path / "policy.yaml", policy)
    code, document = evaluate_json(capsys, "--findings", sample(name),
                                   "--repository", "team-a/web", "--policy", policy_file)
    assert code == document["exit_code"] == expected
    assert document["approved"] is (document["outcome"] != "QUARANTINED")
    assert document["tags"] == [] and document["digest"] is None


def test_json_document_of_a_failed_scan(capsys: Any, strict: str) -> None:
    code, document = evaluate_json(capsys, "--findings", sample("scan-failed"),
                                   "--repository", "team-a/web", "--policy", strict)
    assert code == document["exit_code"] == 1
    assert document["scan_status"] == "FAILED"
    assert document["counts"] == {} and document["highest_severity"] is None
    assert document["counted"] == [] and document["ignored"] == []
    assert document["reasons"][0].startswith("scan FAILED: UnsupportedImageError")


# --- explainability in text ----------------------------------------------------------------------

def test_text_explains_each_finding_and_each_exception(capsys: Any, tmp_path: Path) -> None:
    # Given a policy with an exception for the image's CRITICAL, ignore_unfixed and min_score
    policy, _ = explained_policy(tmp_path)

    # When the list-findings sample is evaluated
    code, out, _ = run(capsys, "evaluate", "--findings", sample("inspector-list-findings"),
                       "--policy", policy)

    # Then it is approved, and the text explains every finding
    assert code == 0
    assert "counted 1, ignored 3" in out
    counted = out.split("Other findings that count (1):\n", 1)[1].splitlines()[0]
    assert counted.split() == ["CVE-2024-0727", "MEDIUM", "openssl", "3.0.11,", "fixed", "in",
                               "0:3.0.13-1~deb12u1", "[score", "5.5,", "EPSS", "0.00043]"]
    assert "Findings ignored (3):" in out
    # the CRITICAL, by its exception, with the owner and the expiry
    why = why_of(out, "CVE-2022-22965")
    assert why.startswith("why: exception CVE-2022-22965 in org.springframework:spring-beans "
                          "by appsec@example.com, expires ")
    assert why.endswith(", SEC-1234: Not reachable; no data binding on JDK 9+")
    # the unfixed HIGH, and the UNTRIAGED below the minimum score
    assert why_of(out, "CVE-2023-45853") == "why: no fix available (ignore_unfixed)"
    assert why_of(out, "CVE-2024-26461") == "why: score 2.1 below min_score 4"
    # and the exceptions expiring soon, and those this image does not use
    expiring = out.split("Exceptions expiring soon (1):\n", 1)[1].splitlines()[0]
    assert expiring.strip().startswith("CVE-2022-22965 (appsec@example.com) expires ")
    unused = out.split("Exceptions unused by this image (1):\n", 1)[1].splitlines()[0]
    assert unused.strip().startswith("CVE-2021-44228 (platform@example.com) expires ")


def test_text_without_exceptions_has_no_exception_sections(capsys: Any, strict: str) -> None:
    _, out, _ = run(capsys, "evaluate", "--findings", sample("basic-critical"),
                    "--repository", "team-a/web", "--policy", strict)
    assert "Exceptions expiring soon" not in out
    assert "Exceptions unused" not in out
    assert "Findings ignored" not in out


def test_exception_is_explained_with_the_expiry_date_it_was_written_with(
        capsys: Any, tmp_path: Path) -> None:
    # Given an exception written as `expires: <D>` (valid through D, UTC)
    policy, expires = explained_policy(tmp_path)

    # When it exempts a finding
    _, out, _ = run(capsys, "evaluate", "--findings", sample("inspector-list-findings"),
                    "--policy", policy)

    # Then the explanation does not claim it lasts a day longer: D, or the exact instant
    why = why_of(out, "CVE-2022-22965")
    instant = f"{expires + timedelta(days=1)}T00:00:00+00:00"
    assert f"expires {expires.isoformat()}," in why or f"expires {instant}" in why


# --- fuzzing: main() never raises, whatever the files hold ---------------------------------------

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

RICH_POLICY = f"""\
version: 1
expiring_window_days: 30
default:
  max_findings: {{CRITICAL: 0, HIGH: 0}}
  warn_findings: {{MEDIUM: 0}}
  ignore_unfixed: true
  min_score: 3.0
  block_if_exploit_available: true
  block_if_epss_at_least: 0.95
  grace_days: {{HIGH: 7}}
repositories:
  - match: "sandbox/*"
    mode: monitor
exceptions:
  - id: CVE-2023-4863
    expires: {in_days(30).isoformat()}
    reason: not reachable
    owner: appsec@example.com
  - id: CVE-2024-0727
    package: openssl
    repositories: ["team-*/*"]
    expires: 2020-01-01
    reason: expired long ago
    owner: appsec@example.com
"""

SAMPLES = ["basic-clean", "basic-critical", "basic-high-only", "enhanced-critical-exploit",
           "enhanced-medium", "scan-failed"]


def sample_documents() -> list[Any]:
    documents: list[Any] = [page(name) for name in SAMPLES]
    documents.append(load_findings("inspector-list-findings"))
    documents.append([page("basic-critical"), page("enhanced-medium")])
    return documents


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def quietly(argv: list[str]) -> tuple[int, str, str]:
    """main() with its output captured, for use inside @given (no function-scoped capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def evaluate_file(folder: Path, content: str | bytes, *extra: str) -> tuple[int, str, str]:
    findings = folder / "fuzzed.json"
    if isinstance(content, bytes):
        findings.write_bytes(content)
    else:
        findings.write_text(content, encoding="utf-8", errors="surrogatepass")
    policy = folder / "rich.yaml"
    if not policy.exists():
        policy.write_text(RICH_POLICY)
    return quietly(["evaluate", "--findings", str(findings), "--policy", str(policy), *extra])


def assert_contract(code: Any, err: str) -> None:
    assert type(code) is int
    assert code in {0, 1, 2, 3}
    if code == 2:
        assert err.strip(), "an input error must say what is wrong on stderr"
    else:
        assert err == ""


def pick_path(draw: st.DrawFn, document: Any) -> tuple[Any, ...] | None:
    """A path into ``document``, as likely at any depth (structure, not just leaves)."""
    by_depth: dict[int, list[tuple[Any, ...]]] = {}
    for path in paths_in(document):
        by_depth.setdefault(len(path), []).append(path)
    if not by_depth:
        return None
    depth = draw(st.sampled_from(sorted(by_depth)))
    return draw(st.sampled_from(by_depth[depth]))


def paths_in(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from paths_in(value, (*prefix, key))


def at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def drop(document: Any, path: tuple[Any, ...]) -> None:
    parent = at(document, path[:-1])
    del parent[path[-1]]


@st.composite
def with_keys_dropped(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(sample_documents())))
    for _ in range(draw(st.integers(1, 4))):
        path = pick_path(draw, document)
        if path is None:
            break
        drop(document, path)
    return document


@st.composite
def with_wrong_types(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(sample_documents())))
    for _ in range(draw(st.integers(1, 3))):
        path = pick_path(draw, document)
        if path is None:
            break
        old = at(document, path)
        new = draw(json_values.filter(lambda v, old=old: type(v) is not type(old)))
        at(document, path[:-1])[path[-1]] = new
    return document


REPOSITORY_OPTION = st.sampled_from([(), ("--repository", "team-a/web"),
                                     ("--repository", "sandbox/tools")])
FORMAT_OPTION = st.sampled_from([("--format", "text"), ("--format", "json")])


@FUZZ
@given(text=st.text(max_size=300))
def test_evaluate_never_raises_on_arbitrary_text(tmp_path: Path, text: str) -> None:
    code, _, err = evaluate_file(tmp_path, text, "--repository", "team-a/web")
    assert_contract(code, err)
    if "findings" not in text and "imageScan" not in text:
        assert code == 2


@FUZZ
@given(data=st.binary(max_size=200))
def test_evaluate_never_raises_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    code, _, err = evaluate_file(tmp_path, data, "--repository", "team-a/web")
    assert_contract(code, err)
    assert code == 2


@FUZZ
@given(value=json_values, options=REPOSITORY_OPTION, output=FORMAT_OPTION)
def test_evaluate_never_raises_on_arbitrary_json(tmp_path: Path, value: Any,
                                                 options: tuple[str, ...],
                                                 output: tuple[str, ...]) -> None:
    code, out, err = evaluate_file(tmp_path, json.dumps(value), *options, *output)
    assert_contract(code, err)
    if code != 2 and output[1] == "json":
        assert json.loads(out)["exit_code"] == code


@FUZZ
@given(document=with_keys_dropped(), options=REPOSITORY_OPTION, output=FORMAT_OPTION)
def test_evaluate_never_raises_on_samples_with_keys_dropped(
        tmp_path: Path, document: Any, options: tuple[str, ...],
        output: tuple[str, ...]) -> None:
    code, out, err = evaluate_file(tmp_path, json.dumps(document), *options, *output)
    assert_contract(code, err)
    if code != 2 and output[1] == "json":
        assert json.loads(out)["exit_code"] == code


@FUZZ
@given(data=st.data())
def test_evaluate_never_raises_on_truncated_samples(tmp_path: Path, data: st.DataObject) -> None:
    document = data.draw(st.sampled_from(sample_documents()))
    text = json.dumps(document, indent=data.draw(st.sampled_from([None, 2])))
    cut = text[:data.draw(st.integers(0, len(text) - 1))]
    code, _, err = evaluate_file(tmp_path, cut, "--repository", "team-a/web")
    assert_contract(code, err)
    assert code == 2


@settings(FUZZ, derandomize=True, phases=[Phase.generate])  # no shrinking: it is slow
@given(document=with_wrong_types(), options=REPOSITORY_OPTION)
def test_evaluate_never_raises_on_samples_with_wrongly_typed_values(
        tmp_path: Path, document: Any, options: tuple[str, ...]) -> None:
    code, _, err = evaluate_file(tmp_path, json.dumps(document), *options)
    assert_contract(code, err)


def ecr_page(**changes: Any) -> str:
    body = page("basic-critical")
    body.update(changes)
    return json.dumps(body)


def list_findings(**resource_changes: Any) -> str:
    body = load_findings("inspector-list-findings")
    image = body["findings"][0]["resources"][0]["details"]["awsEcrContainerImage"]
    image.update(resource_changes)
    return json.dumps(body)


@pytest.mark.parametrize("text, policy", [
    pytest.param(ecr_page(imageScanFindings=[]), STRICT, id="imageScanFindings-list"),
    pytest.param(ecr_page(imageScanFindings="none"), STRICT, id="imageScanFindings-str"),
    pytest.param(ecr_page(repositoryName=["team-a/web"]), STRICT, id="repositoryName-list"),
    pytest.param(ecr_page(repositoryName=42),
                 STRICT + "repositories:\n  - {match: 'sandbox/*', mode: monitor}\n",
                 id="repositoryName-number"),
    pytest.param('{"findings": [{"severity": "HIGH", "resources": 5}]}', STRICT,
                 id="resources-number"),
    pytest.param(list_findings(imageHash=["sha256:x"]), STRICT, id="imageHash-list"),
    pytest.param('{"findings": [{"severity": "HIGH", "inspectorScore": 1' + "0" * 400 + "}]}",
                 STRICT, id="score-huge-integer"),
    pytest.param('{"findings": [{"severity": "HIGH", "x": 1' + "0" * 5000 + "}]}", STRICT,
                 id="integer-over-4300-digits"),
    pytest.param("[" * 100_000, STRICT, id="deeply-nested"),
])
def test_evaluate_input_of_the_wrong_shape_is_an_input_error(capsys: Any, tmp_path: Path,
                                                             text: str, policy: str) -> None:
    # Given saved findings whose shape is not what the AWS CLI prints
    findings = write(tmp_path / "findings.json", text)
    policy_file = write(tmp_path / "policy.yaml", policy)

    # When evaluated, Then it is an input error with a message, never a traceback
    code, out, err = run(capsys, "evaluate", "--findings", findings, "--policy", policy_file)
    assert (code, out) == (2, "")
    assert err.startswith(f"gatekeeper: {findings}: ")


def test_finding_first_seen_at_the_end_of_the_calendar_is_in_grace(capsys: Any,
                                                                   tmp_path: Path) -> None:
    # Given a CRITICAL finding whose first-seen date is the last day datetime can hold
    body = page("enhanced-critical-exploit")
    body["imageScanFindings"]["enhancedFindings"][0]["firstObservedAt"] = "9999-12-31T00:00:00Z"
    findings = write(tmp_path / "findings.json", body)
    policy = write(tmp_path / "policy.yaml", STRICT + "  grace_days: {CRITICAL: 7}\n")

    # When evaluated with a grace period (whose end is past the calendar)
    code, out, err = run(capsys, "evaluate", "--findings", findings, "--policy", policy)

    # Then it is in grace, explained, and nothing raises
    assert (code, err) == (0, "")
    assert why_of(out, "CVE-2021-44228").startswith("why: in grace until 9999-12-31")


def test_huge_grace_period_is_an_input_error_not_a_crash(capsys: Any, tmp_path: Path) -> None:
    # Given a grace period longer than the calendar goes back
    policy = write(tmp_path / "policy.yaml", STRICT + "  grace_days: {HIGH: 1000000}\n")

    # When used, Then nothing raises out of the command
    code, _, err = run(capsys, "evaluate", "--findings", sample("enhanced-medium"),
                       "--repository", "team-a/web", "--policy", policy)
    assert_contract(code, err)
    assert code in {0, 2}


# --- fuzzing `gatekeeper policy validate` ---------------------------------------------------------

VALID_POLICY = yaml.safe_load(RICH_POLICY)


def validate_file(folder: Path, content: str | bytes) -> tuple[int, str, str]:
    policy = folder / "fuzzed.yaml"
    if isinstance(content, bytes):
        policy.write_bytes(content)
    else:
        policy.write_text(content, encoding="utf-8", errors="surrogatepass")
    return quietly(["policy", "validate", str(policy)])


def assert_validate_contract(code: Any, out: str, err: str) -> None:
    assert type(code) is int
    assert code in {0, 2}
    if code == 2:
        assert err.startswith("invalid policy (") or err.startswith("gatekeeper: ")
    else:
        assert out.rstrip().endswith("override(s))")


@FUZZ
@given(text=st.text(max_size=300))
def test_validate_never_raises_on_arbitrary_text(tmp_path: Path, text: str) -> None:
    code, out, err = validate_file(tmp_path, text)
    assert_validate_contract(code, out, err)
    if "version" not in text:
        assert code == 2


@FUZZ
@given(data=st.binary(max_size=200))
def test_validate_never_raises_on_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    code, out, err = validate_file(tmp_path, data)
    assert_validate_contract(code, out, err)


@FUZZ
@given(value=json_values)
def test_validate_never_raises_on_arbitrary_yaml_data(tmp_path: Path, value: Any) -> None:
    code, out, err = validate_file(tmp_path, yaml.safe_dump(value))
    assert_validate_contract(code, out, err)


@st.composite
def mutated_policies(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(VALID_POLICY)
    for _ in range(draw(st.integers(1, 3))):
        path = pick_path(draw, document)
        if path is None:
            break
        if draw(st.booleans()):
            drop(document, path)
        else:
            at(document, path[:-1])[path[-1]] = draw(json_values)
    return document


@FUZZ
@given(document=mutated_policies())
def test_validate_never_raises_on_mutated_policies(tmp_path: Path, document: Any) -> None:
    code, out, err = validate_file(tmp_path, yaml.safe_dump(document))
    assert_validate_contract(code, out, err)


@FUZZ
@given(data=st.data())
def test_validate_never_raises_on_truncated_policies(tmp_path: Path,
                                                     data: st.DataObject) -> None:
    cut = RICH_POLICY[:data.draw(st.integers(0, len(RICH_POLICY)))]
    code, out, err = validate_file(tmp_path, cut)
    assert_validate_contract(code, out, err)


@FUZZ
@given(expires=st.dates(max_value=date(9000, 1, 1)) | st.datetimes(
    max_value=datetime(9000, 1, 1), timezones=st.none() | st.just(UTC)))
def test_validate_accepts_any_real_expiry(tmp_path: Path, expires: date) -> None:
    document = copy.deepcopy(VALID_POLICY)
    document["exceptions"][0]["expires"] = expires.isoformat()
    code, _, err = validate_file(tmp_path, yaml.safe_dump(document))
    assert (code, err) == (0, "")


@pytest.mark.parametrize("text", [
    pytest.param("version: 1\ndefault: {}\nexceptions:\n  - {id: CVE-2023-4863, "
                 "expires: '9999-12-31', reason: forever, owner: appsec}\n",
                 id="expires-9999-12-31"),
    pytest.param("version: 1\ndefault: {}\nrepositories: &r [*r]\n", id="recursive-alias"),
    pytest.param("version: 1\ndefault: &d {max_findings: *d}\n", id="recursive-mapping"),
])
def test_validate_pathological_policies(capsys: Any, tmp_path: Path, text: str) -> None:
    policy = write(tmp_path / "policy.yaml", text)
    code, out, err = run(capsys, "policy", "validate", policy)
    assert_validate_contract(code, out, err)


# --- --account: the policy's accounts: limits ----------------------------------------------

ORGANIZATION = STRICT.replace("default:", "account_groups:\n  sandbox: ['1111*']\ndefault:") + (
    "repositories:\n  - {match: '*', accounts: [group:sandbox], mode: monitor}\n")


@pytest.mark.parametrize(("account", "expected", "rule"), [
    (["--account", "111122223333"], 3, "repositories[match=*, accounts=group:sandbox]"),
    (["--account", "222233334444"], 1, "default"),
    ([], 1, "default"),
], ids=["sandbox", "production", "no-account"])
def test_account_chooses_the_rules_limited_to_accounts(capsys: Any, tmp_path: Path,
                                                       account: list[str], expected: int,
                                                       rule: str) -> None:
    # Given a policy whose sandbox accounts only monitor, and an image with a CRITICAL finding
    policy = write(tmp_path / "org.yaml", ORGANIZATION)
    # When it is evaluated for a sandbox account, another account, and no account
    code, document = evaluate_json(capsys, "--findings", sample("basic-critical"),
                                   "--repository", "team-a/web", "--policy", policy, *account)
    # Then only the sandbox's verdict is monitored (exit 3); the others quarantine (exit 1)
    assert (code, document["policy"]["rule"]) == (expected, rule)
    assert document["account"] == (account[1] if account else None)


def test_account_is_shown_in_the_text_report(capsys: Any, tmp_path: Path) -> None:
    policy = write(tmp_path / "org.yaml", ORGANIZATION)
    code, out, _ = run(capsys, "evaluate", "--findings", sample("basic-critical"),
                       "--repository", "team-a/web", "--policy", policy,
                       "--account", "111122223333")
    assert code == 3
    assert "account:  111122223333\n" in out
    assert "rule repositories[match=*, accounts=group:sandbox], mode monitor" in out


@pytest.mark.parametrize("bad", ["1111", "11112222333a", "1111222233334"])
def test_an_account_that_is_not_an_account_id_is_a_usage_error(capsys: Any, strict: str,
                                                               bad: str) -> None:
    # Given an --account that is not twelve digits
    # When evaluate is run with it
    with pytest.raises(SystemExit) as stopped:
        main(["evaluate", "--findings", sample("basic-critical"), "--repository", "r",
              "--policy", strict, "--account", bad])
    # Then it is a usage error naming the value; nothing is judged
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"not a twelve-digit AWS account id: {bad!r}" in err


# --- Trivy / Grype reports in, SARIF out -----------------------------------------------------

SCANNERS = ROOT / "tests" / "fixtures" / "scanners"


@pytest.mark.parametrize("scanner", ["trivy", "grype"])
def test_a_scanner_report_is_judged_before_the_push(capsys: Any, strict: str,
                                                    scanner: str) -> None:
    # Given a Trivy or Grype report of team-a/web:v1 with a fixed CRITICAL finding
    report = str(SCANNERS / f"{scanner}-image.json")
    # When CI evaluates it, naming the format, as the positional FINDINGS argument
    code, out, err = run(capsys, "evaluate", "--input-format", scanner, report,
                         "--policy", strict)
    # Then the image is quarantined, named as the report names it
    assert (code, err) == (1, "")
    assert out.startswith("QUARANTINED  team-a/web:v1  (sha256:7368dd6c")
    assert "CVE-2024-5535" in out


def test_a_clean_scanner_report_approves(capsys: Any, strict: str) -> None:
    code, out, _ = run(capsys, "evaluate", str(SCANNERS / "trivy-clean.json"),
                       "--policy", strict)
    assert code == 0 and out.startswith("APPROVED  team-a/web:v2")


@pytest.mark.parametrize("scanner", ["trivy", "grype"])
def test_a_malformed_scanner_report_is_an_input_error(capsys: Any, strict: str,
                                                      scanner: str) -> None:
    code, out, err = run(capsys, "evaluate", "--findings",
                         str(SCANNERS / f"{scanner}-malformed.json"), "--policy", strict)
    assert (code, out) == (2, "")
    assert "nothing is judged" in err and "CVE-2024-5535" in err


def test_an_unrecognised_document_says_which_formats_are_read(capsys: Any, tmp_path: Path,
                                                              strict: str) -> None:
    code, _, err = run(capsys, "evaluate", write(tmp_path / "x.json", {"vulns": []}),
                       "--policy", strict)
    assert code == 2 and "--input-format trivy|grype" in err


def test_findings_named_twice_or_not_at_all_is_a_usage_error(capsys: Any, strict: str) -> None:
    report = str(SCANNERS / "trivy-clean.json")
    assert run(capsys, "evaluate", report, "--findings", report, "--policy", strict)[0] == 2
    code, _, err = run(capsys, "evaluate", "--policy", strict)
    assert code == 2 and "name the findings once" in err


def test_sarif_output_keeps_the_exit_code_and_names_the_verdict(capsys: Any,
                                                                strict: str) -> None:
    code, out, err = run(capsys, "evaluate", str(SCANNERS / "grype-image.json"),
                         "--format", "sarif", "--policy", strict)
    log = json.loads(out)
    assert (code, err, log["version"]) == (1, "", "2.1.0")
    assert log["runs"][0]["properties"]["verdict"] == "QUARANTINED"
    assert log["runs"][0]["invocations"][0]["exitCode"] == 1


# --- OpenVEX documents named by the policy -------------------------------------------------

VEX_FIXTURES = ROOT / "tests" / "fixtures" / "vex"


def policy_with_vex(tmp_path: Path, *documents: str) -> str:
    """A policy in its own folder naming ``documents``, copied beside it under vex/."""
    folder = tmp_path / "security"
    (folder / "vex").mkdir(parents=True)
    for name in documents:
        (folder / "vex" / name).write_bytes((VEX_FIXTURES / name).read_bytes())
    names = ", ".join(f"vex/{name}" for name in documents)
    return write(folder / "policy.yaml", "version: 1\ndefault:\n  max_findings: "
                 "{CRITICAL: 0, HIGH: 0}\n  ignore_unfixed: true\n" + f"vex: [{names}]\n")


def test_vex_statements_named_by_the_policy_approve_what_they_cover(capsys: Any,
                                                                    tmp_path: Path) -> None:
    # Given a policy naming the image's VEX document (a path relative to the policy file)
    policy = policy_with_vex(tmp_path, "web.openvex.json")
    report = str(SCANNERS / "trivy-image.json")
    # When the Trivy report is evaluated
    code, out, err = run(capsys, "evaluate", report, "--policy", policy)
    # Then the CRITICAL and HIGH findings the VEX document covers are excepted, with why
    assert (code, err) == (0, ""), out
    assert ("CVE-2024-5535: excepted by VEX https://vex.example.com/team-a/web/2026-11-30.1: "
            "not_affected (vulnerable_code_not_in_execute_path)") in out
    # and the JSON document names the statement
    _, json_out, _ = run(capsys, "evaluate", report, "--policy", policy, "--format", "json")
    by_vex = {i["finding"]["id"]: i["vex"] for i in json.loads(json_out)["ignored"]
              if i["why"] == "vex"}
    assert by_vex["CVE-2024-5535"]["justification"] == "vulnerable_code_not_in_execute_path"
    assert by_vex["CVE-2024-4068"]["status"] == "fixed"
    # and in SARIF they are suppressed with that justification
    _, sarif_out, _ = run(capsys, "evaluate", report, "--policy", policy, "--format", "sarif")
    suppressed = {r["ruleId"]: r["suppressions"][0]["justification"]
                  for r in json.loads(sarif_out)["runs"][0]["results"] if "suppressions" in r}
    assert suppressed["CVE-2024-4068"].startswith("excepted by VEX")


def test_a_broken_vex_document_fails_the_policy_with_a_located_error(capsys: Any,
                                                                     tmp_path: Path) -> None:
    policy = policy_with_vex(tmp_path, "web.openvex.json", "broken.openvex.json")
    code, out, err = run(capsys, "evaluate", str(SCANNERS / "trivy-image.json"),
                         "--policy", policy)
    assert (code, out) == (2, "")
    assert "broken.openvex.json: statements[1].status: expected one of" in err
    # and policy validate refuses it the same way
    assert run(capsys, "policy", "validate", policy)[0] == 2


def test_a_missing_vex_file_is_a_located_error(capsys: Any, tmp_path: Path) -> None:
    policy = policy_with_vex(tmp_path)
    Path(policy).write_text(Path(policy).read_text().replace("vex: []", "vex: [vex/gone.json]"))
    code, _, err = run(capsys, "policy", "validate", policy)
    assert code == 2 and "vex[0]: cannot read" in err and "gone.json" in err


def test_policy_validate_counts_the_vex_statements(capsys: Any, tmp_path: Path) -> None:
    policy = policy_with_vex(tmp_path, "web.openvex.json")
    code, out, _ = run(capsys, "policy", "validate", policy)
    assert code == 0 and "1 VEX document(s) with 5 statement(s)" in out


def test_the_readme_scanner_examples_run_as_written(capsys: Any, tmp_path: Path) -> None:
    # Given the README's CI lines that scan with Trivy or Grype, then evaluate the report
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [line.split("&& ", 1)[1].rstrip("`.") for line in lines
                if "&& gatekeeper evaluate --input-format" in line]
    assert {shlex.split(c)[3] for c in commands} == {"trivy", "grype"}, commands
    (tmp_path / "policy.yaml").write_bytes((ROOT / "policy.yaml").read_bytes())
    for command in commands:
        words = shlex.split(command)
        scanner = words[words.index("--input-format") + 1]
        (tmp_path / "scan.json").write_bytes((SCANNERS / f"{scanner}-image.json").read_bytes())
        argv = words[1:words.index(">")] if ">" in words else words[1:]
        # When each runs as written, on the scanner's report of an image with a CRITICAL
        code, out, err = run(capsys, *argv)
        # Then the image is judged with the repository's rules: quarantined, exit 1
        assert (code, err) == (1, ""), command
        if "sarif" in words:
            assert json.loads(out)["runs"][0]["properties"]["verdict"] == "QUARANTINED"
        else:
            assert out.startswith("QUARANTINED  team-a/web:")


# --- block_if_known_exploited: the KEV catalog from a file -----------------------------------

KEV_POLICY = ("version: 1\ndefault:\n  max_findings: {CRITICAL: 5, HIGH: 5}\n"
              "  block_if_known_exploited: true\n")


def test_the_kev_rule_reads_the_catalog_given_and_fails_closed_without_one(
        capsys: Any, tmp_path: Path) -> None:
    # Given a policy with block_if_known_exploited and a catalog listing the image's CRITICAL
    policy = write(tmp_path / "policy.yaml", KEV_POLICY)
    catalog = write(tmp_path / "kev.json",
                    catalog_document(kev_entry("CVE-2023-4863", "2023-09-13")))
    findings = write(tmp_path / "page.json", page("basic-critical"))
    # When it is evaluated with the catalog; Then it is quarantined for that CVE
    code, out, _ = run(capsys, "evaluate", "--findings", findings, "--policy", policy,
                       "--kev", catalog)
    assert code == 1
    assert ("CVE-2023-4863 is a known exploited vulnerability (CISA KEV, added 2023-09-13)"
            in out)
    # and without one, the rule fails closed, saying so
    code, out, _ = run(capsys, "evaluate", "--findings", findings, "--policy", policy)
    assert code == 1 and "KEV catalog unavailable: no catalog was loaded" in out
    # and a file that is not a catalog is an input error
    broken = write(tmp_path / "broken.json", "{}")
    code, _, err = run(capsys, "evaluate", "--findings", findings, "--policy", policy,
                       "--kev", broken)
    assert code == 2 and "broken.json: vulnerabilities: expected a list" in err
