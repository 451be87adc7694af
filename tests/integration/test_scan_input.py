"""Reading saved scan results (what `gatekeeper evaluate --findings` accepts): read_scan."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gatekeeper.domain.findings import FindingsError, Severity, Source
from gatekeeper.domain.scan_input import read_scan
from tests.support import FINDINGS, load_findings

IMAGE = "sha256:7368dd6c4c0f436ab6524b894ff812900ef6bfc6056a4c99f4ac32199fe8e249"


def page(name: str, **extra: Any) -> dict[str, Any]:
    """A describe-image-scan-findings page from samples/, naming its image like the CLI does."""
    body = load_findings(name)
    body.update(registryId="123456789012", repositoryName="team-a/web",
                imageId={"imageDigest": "sha256:" + "ab" * 32, "imageTag": "v1"})
    body.update(extra)
    return body


def inspector() -> dict[str, Any]:
    return load_findings("inspector-list-findings")


def split(name: str, at: int) -> list[dict[str, Any]]:
    """One image's sample saved as two pages, as ECR pages it: the findings split at ``at``,
    everything else (status, counts for the whole image) repeated, a token on the first."""
    body = page(name)
    first, second = copy.deepcopy(body), copy.deepcopy(body)
    key = "findings" if "findings" in body["imageScanFindings"] else "enhancedFindings"
    first["imageScanFindings"][key] = body["imageScanFindings"][key][:at]
    second["imageScanFindings"][key] = body["imageScanFindings"][key][at:]
    first["nextToken"] = "page-2"
    return [first, second]


def test_pages_concatenated_are_merged() -> None:
    # Given two pages of one image's findings printed one after another
    first, second = split("basic-critical", 3)
    text = json.dumps(first, indent=2) + "\n" + json.dumps(second)

    # When they are read
    scan = read_scan(text)

    # Then every finding of both pages is there, complete, and the image comes from page 1
    assert scan.pages == 2
    assert sorted(f.id for f in scan.findings) == sorted([
        "CVE-2023-4863", "CVE-2023-38545", "CVE-2023-5363", "CVE-2019-5188"])
    assert (scan.problems, scan.next_token) == ([], None)
    assert (scan.repository, scan.digest, scan.tags) == ("team-a/web", "sha256:" + "ab" * 32,
                                                         ["v1"])


def test_a_json_list_of_pages_is_merged_like_concatenated_pages() -> None:
    pages = split("basic-critical", 1)
    assert len(read_scan(json.dumps(pages)).findings) == 4
    assert read_scan(json.dumps(pages)).pages == 2
    assert read_scan(json.dumps(pages)).problems == []


def test_status_and_description_come_from_the_first_page() -> None:
    scan = read_scan(json.dumps(split("basic-critical", 2)))
    assert scan.status == "COMPLETE"
    assert scan.description == "The scan was completed successfully."


def test_pages_of_two_scans_are_not_one_image_s_findings() -> None:
    # Given a completed page and a page of another repository's failed scan
    second = page("scan-failed", repositoryName="team-b/other")
    text = json.dumps(page("basic-clean")) + json.dumps(second)

    # When read, Then the mix is named as a problem, not merged quietly
    problems = read_scan(text).problems
    assert any("document 2 names repository team-b/other, document 1 team-a/web" in p
               for p in problems)
    assert any("document 2 names scan status FAILED, document 1 COMPLETE" in p
               for p in problems)


def test_failed_scan_keeps_its_status_and_description() -> None:
    scan = read_scan(json.dumps(load_findings("scan-failed")))
    assert scan.status == "FAILED"
    assert scan.description is not None
    assert scan.description.startswith("UnsupportedImageError")
    assert scan.findings == []


def test_enhanced_findings_are_read_with_their_details() -> None:
    scan = read_scan((FINDINGS / "enhanced-critical-exploit.json").read_text())
    [finding] = scan.findings
    assert scan.status == "ACTIVE"
    assert finding.source is Source.ENHANCED
    assert (finding.id, finding.severity, finding.package) == (
        "CVE-2021-44228", Severity.CRITICAL, "log4j-core")
    assert finding.exploit_available is True
    assert finding.epss == pytest.approx(0.97)


@pytest.mark.parametrize("text, number, kind", [
    ("42", 1, "int"),
    ('"COMPLETE"', 1, "str"),
    ("null", 1, "NoneType"),
    (json.dumps(load_findings("basic-clean")) + "\n[1]", 2, "int"),
    ("[" + json.dumps(load_findings("basic-clean")) + ", true]", 2, "bool"),
])
def test_a_document_that_is_not_an_object_is_named_by_its_number(text: str, number: int,
                                                                  kind: str) -> None:
    with pytest.raises(FindingsError, match=rf"document {number} is {kind}, expected"):
        read_scan(text)


def test_a_document_of_neither_shape_is_rejected() -> None:
    # Given the output of another command (describe-images) after a real page
    text = json.dumps(load_findings("basic-clean")) + json.dumps({"imageDetails": []})

    # When read, Then the error says which document and what was expected
    with pytest.raises(FindingsError, match=r"document 2 is neither describe-image-scan-findings"
                                            r".*imageScanFindings.*inspector2 list-findings"):
        read_scan(text)


def test_bad_json_is_located_by_line_and_column() -> None:
    # Given a page cut short by a broken copy and paste on its third line
    text = '{\n  "imageScanStatus": {"status": "COMPLETE"},\n  "imageScanFindings": {,\n}'

    # When read, Then the error names the line and the column
    with pytest.raises(FindingsError, match=r"not JSON at line 3, column 25"):
        read_scan(text)


@pytest.mark.parametrize("text", ["", "   \n\t", "[]"])
def test_no_document_at_all_is_an_error(text: str) -> None:
    with pytest.raises(FindingsError, match="no scan results"):
        read_scan(text)


def test_list_findings_without_findings_is_a_valid_clean_result() -> None:
    scan = read_scan('{"findings": []}')
    assert scan.findings == []
    assert scan.status == "COMPLETE"
    assert scan.repository is None
    assert (scan.problems, scan.next_token) == ([], None)


def test_list_findings_with_only_ec2_findings_has_no_image_findings() -> None:
    # Given list-findings output whose only finding is about an EC2 instance
    body = inspector()
    body["findings"] = [f for f in body["findings"]
                        if f["resources"][0]["type"] == "AWS_EC2_INSTANCE"]
    assert len(body["findings"]) == 1

    # When read, Then nothing is judged against the image
    scan = read_scan(json.dumps(body))
    assert scan.findings == []
    assert scan.status == "COMPLETE"


def test_list_findings_keeps_only_the_image_findings_and_names_the_image() -> None:
    scan = read_scan(json.dumps(inspector()))
    assert sorted(f.id for f in scan.findings) == [
        "CVE-2022-22965", "CVE-2023-45853", "CVE-2024-0727", "CVE-2024-26461"]
    assert "CVE-2024-6387" not in {f.id for f in scan.findings}  # the EC2 instance's
    assert scan.repository == "team-a/web"
    assert scan.digest == IMAGE
    assert scan.tags == ["v2"]
    by_id = {f.id: f for f in scan.findings}
    critical = by_id["CVE-2022-22965"]
    assert (critical.severity, critical.exploit_available, critical.epss) == (
        Severity.CRITICAL, True, 0.9)
    assert critical.first_seen is not None and critical.first_seen.isoformat() == (
        "2024-02-02T16:30:33.045000+01:00")
    unfixed = by_id["CVE-2023-45853"]
    assert (unfixed.fix_available, unfixed.fixed_version) == (False, None)
    assert by_id["CVE-2024-26461"].severity is Severity.UNTRIAGED


def test_list_findings_of_two_images_needs_a_digest() -> None:
    # Given list-findings output covering two images
    body = inspector()
    other = copy.deepcopy(body["findings"][2])
    other_hash = "sha256:" + "cd" * 32
    other["resources"][0]["details"]["awsEcrContainerImage"]["imageHash"] = other_hash
    body["findings"].append(other)
    text = json.dumps(body)

    # When read without a digest, Then both images are listed, and a digest picks one
    with pytest.raises(FindingsError, match=r"cover 2 images .*choose one with --digest"):
        read_scan(text)
    assert len(read_scan(text, digest=other_hash).findings) == 1
    assert len(read_scan(text, digest=IMAGE).findings) == 4


# --- incomplete or unreadable input: reported, never judged as clean --------------------------


@pytest.mark.parametrize("name", ["basic-clean", "basic-critical", "basic-high-only",
                                  "enhanced-critical-exploit", "enhanced-medium", "scan-failed",
                                  "inspector-list-findings"])
def test_every_sample_reads_complete(name: str) -> None:
    scan = read_scan((FINDINGS / f"{name}.json").read_text())
    assert (scan.problems, scan.next_token) == ([], None)


def test_enhanced_counts_name_untriaged_like_its_findings() -> None:
    # Given the enhanced sample: counts {MEDIUM: 1, UNTRIAGED: 1}, as real enhanced scans report
    scan = read_scan(json.dumps(page("enhanced-medium")))
    # Then its UNTRIAGED finding is counted under UNTRIAGED and the counts agree
    assert sorted(f.severity.name for f in scan.findings) == ["MEDIUM", "UNTRIAGED"]
    assert scan.problems == []


@pytest.mark.parametrize("key", ["nextToken", "NextToken"])
def test_a_page_that_says_more_follow_leaves_its_token(key: str) -> None:
    # Given a page saved with --max-items (NextToken) or --no-paginate (nextToken)
    body = page("basic-clean", **{key: "eyJuZXh0VG9rZW4iOiAiMiJ9"})
    # When read, Then the token is kept for the caller to refuse
    assert read_scan(json.dumps(body)).next_token == "eyJuZXh0VG9rZW4iOiAiMiJ9"


def test_every_page_carrying_a_token_means_more_follow() -> None:
    first, second = split("basic-critical", 2)
    second["nextToken"] = "page-3"
    assert read_scan(json.dumps([first, second])).next_token == "page-3"


def test_pages_saved_in_any_order_end_with_the_page_without_a_token() -> None:
    first, second = split("basic-critical", 2)
    assert read_scan(json.dumps([second, first])).next_token is None


def test_a_token_that_is_not_text_is_an_error() -> None:
    with pytest.raises(FindingsError, match="nextToken must be a string"):
        read_scan(json.dumps(page("basic-clean", nextToken=3)))


def test_list_findings_with_a_token_says_more_follow() -> None:
    body = inspector()
    body["nextToken"] = "more"
    assert read_scan(json.dumps(body)).next_token == "more"


@pytest.mark.parametrize("value", [None, "absent"])
def test_findings_list_missing_while_counts_are_not_zero_is_incomplete(value: Any) -> None:
    # Given the critical sample whose findings list is null, or gone
    body = page("basic-critical")
    if value == "absent":
        del body["imageScanFindings"]["findings"]
    else:
        body["imageScanFindings"]["findings"] = value

    # When read, Then the counts it still reports say what is missing
    assert read_scan(json.dumps(body)).problems == [
        "the severity counts report CRITICAL 1, HIGH 2, MEDIUM 1 but no findings were read "
        "(the response holds no findings list)"]


def test_counts_that_disagree_with_the_findings_read_are_incomplete() -> None:
    # Given a page that lost its CRITICAL finding, its counts still reporting it
    body = page("basic-critical")
    body["imageScanFindings"]["findings"] = [
        f for f in body["imageScanFindings"]["findings"] if f["severity"] != "CRITICAL"]
    assert read_scan(json.dumps(body)).problems == [
        "the severity counts report CRITICAL 1, HIGH 2, MEDIUM 1 but HIGH 2, MEDIUM 1 were read"]


def test_a_missing_page_is_found_by_the_counts() -> None:
    # Given the first of two pages only, its token removed by hand
    first, _ = split("basic-critical", 2)
    del first["nextToken"]
    scan = read_scan(json.dumps(first))
    assert scan.next_token is None
    assert len(scan.problems) == 1
    assert scan.problems[0].startswith("the severity counts report CRITICAL 1, HIGH 2, MEDIUM 1 "
                                       "but")


def test_counts_absent_leave_nothing_to_compare() -> None:
    body = page("basic-critical")
    del body["imageScanFindings"]["findingSeverityCounts"]
    scan = read_scan(json.dumps(body))
    assert (len(scan.findings), scan.problems) == (4, [])


def test_counts_that_differ_between_pages_are_incomplete() -> None:
    first, second = split("basic-critical", 2)
    second["imageScanFindings"]["findingSeverityCounts"] = {"CRITICAL": 2, "HIGH": 2,
                                                             "MEDIUM": 1}
    problems = read_scan(json.dumps([first, second])).problems
    assert any(p.startswith("the severity counts differ between pages") for p in problems)


@pytest.mark.parametrize(("counts", "problem"), [
    ({"CRITICAL": 1, "HIGH": 2, "MEDIUM": 1, "TOTAL": 4},
     "severities AWS does not define (1): findingSeverityCounts: 'TOTAL' is not a severity AWS "
     "defines"),
    ({"CRITICAL": "1", "HIGH": 2, "MEDIUM": 1},
     "unreadable (1): page 1: findingSeverityCounts.CRITICAL is '1', not a count"),
    ({"CRITICAL": -1, "HIGH": 2, "MEDIUM": 1},
     "unreadable (1): page 1: findingSeverityCounts.CRITICAL is -1, not a count"),
])
def test_counts_that_cannot_be_read_are_a_problem(counts: dict[str, Any], problem: str) -> None:
    body = page("basic-critical")
    body["imageScanFindings"]["findingSeverityCounts"] = counts
    assert problem in read_scan(json.dumps(body)).problems


def test_a_severity_aws_does_not_define_is_a_problem_not_undefined() -> None:
    # Given a finding with severity BOGUS and the counts saying so too
    body = page("basic-high-only")
    body["imageScanFindings"]["findings"][0]["severity"] = "BOGUS"
    body["imageScanFindings"]["findingSeverityCounts"] = {}

    # When read, Then the finding is named and nothing is read as UNDEFINED
    scan = read_scan(json.dumps(body))
    assert scan.problems == ["severities AWS does not define (1): CVE-2023-38545: severity "
                             "'BOGUS' is not one AWS defines for basic findings"]
    assert scan.findings == []


def test_inspector_findings_with_a_severity_aws_does_not_define_are_a_problem() -> None:
    body = inspector()
    body["findings"][0]["severity"] = "SEVERE"
    problems = read_scan(json.dumps(body)).problems
    assert len(problems) == 1
    assert "'SEVERE' is not one AWS defines for enhanced findings" in problems[0]


@pytest.mark.parametrize("status", [None, {}, {"description": "done"}, {"status": ""}],
                         ids=["null", "empty", "no-status", "empty-status"])
def test_a_missing_scan_status_is_not_complete(status: Any) -> None:
    # Given a page whose scan status is missing (its findings otherwise fine)
    body = page("basic-clean")
    body["imageScanStatus"] = status

    # When read, Then nothing says it finished: a problem, never COMPLETE
    scan = read_scan(json.dumps(body))
    assert scan.status == ""
    assert scan.problems == ["document 1 has no imageScanStatus.status: nothing says the scan "
                             "finished"]


def test_a_scan_status_that_is_not_text_is_an_error() -> None:
    body = page("basic-clean")
    body["imageScanStatus"] = {"status": 1}
    with pytest.raises(FindingsError, match=r"imageScanStatus.status must be a string"):
        read_scan(json.dumps(body))
