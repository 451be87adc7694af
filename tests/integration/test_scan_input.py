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


def test_pages_concatenated_are_merged() -> None:
    # Given two pages of one image's findings printed one after another
    first, second = page("basic-critical"), page("basic-clean", nextToken=None)
    text = json.dumps(first, indent=2) + "\n" + json.dumps(second)

    # When they are read
    scan = read_scan(text)

    # Then every finding of both pages is there, and the image comes from the first page
    assert scan.pages == 2
    assert len(scan.findings) == 4 + 2
    assert sorted(f.id for f in scan.findings) == sorted([
        "CVE-2023-4863", "CVE-2023-38545", "CVE-2023-5363", "CVE-2019-5188",
        "CVE-2019-5188", "CVE-2022-3219"])
    assert (scan.repository, scan.digest, scan.tags) == ("team-a/web", "sha256:" + "ab" * 32,
                                                         ["v1"])


def test_a_json_list_of_pages_is_merged_like_concatenated_pages() -> None:
    pages = [page("basic-critical"), page("basic-high-only")]
    assert len(read_scan(json.dumps(pages)).findings) == 5
    assert read_scan(json.dumps(pages)).pages == 2


def test_status_and_description_come_from_the_first_page() -> None:
    # Given a first page that completed and a later page that claims another status
    second = page("scan-failed", repositoryName="team-b/other")
    text = json.dumps(page("basic-clean")) + json.dumps(second)

    # When read, Then the first page names the scan and the image
    scan = read_scan(text)
    assert scan.status == "COMPLETE"
    assert scan.description == "The scan was completed successfully."
    assert scan.repository == "team-a/web"


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
