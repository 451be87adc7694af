"""The ECR adapter where moto cannot model AWS: pagination and error codes (botocore Stubber)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from gatekeeper.adapters.ecr import EcrImages, ImageGone, UnsafeUntag
from gatekeeper.domain.findings import Severity
from gatekeeper.domain.policy import BUILTIN_POLICY
from gatekeeper.domain.verdict import Outcome

REPO = "team-a/web"
DIGEST = "sha256:" + "9b" * 32


def basic(name: str, severity: str) -> dict[str, Any]:
    return {"name": name, "severity": severity,
            "attributes": [{"key": "package_name", "value": "pkg"}]}


def page(findings: list[dict[str, Any]], token: str | None = None,
         enhanced: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "repositoryName": REPO,
        "imageId": {"imageDigest": DIGEST},
        "imageScanStatus": {"status": "COMPLETE", "description": "done"},
        "imageScanFindings": {
            "findings": findings,
            "findingSeverityCounts": {"LOW": 2000, "CRITICAL": 1},  # whole image, not the page
            "imageScanCompletedAt": 1764000000.0,
        },
    }
    if enhanced is not None:
        body["imageScanFindings"]["enhancedFindings"] = enhanced
    if token:
        body["nextToken"] = token
    return body


@pytest.fixture
def ecr() -> Any:
    return boto3.client("ecr", region_name="us-east-1")


def test_every_page_of_findings_is_read(ecr: Any) -> None:
    # Given 2,001 findings over three pages, the only CRITICAL on the last page
    pages = [
        page([basic(f"CVE-2024-{i:05d}", "LOW") for i in range(1000)], token="t1"),
        page([basic(f"CVE-2024-{i:05d}", "LOW") for i in range(1000, 2000)], token="t2"),
        page([basic("CVE-2021-44228", "CRITICAL")]),
    ]
    stubber = Stubber(ecr)
    expected = {"repositoryName": REPO, "imageId": {"imageDigest": DIGEST}, "maxResults": 1000}
    stubber.add_response("describe_image_scan_findings", pages[0], expected)
    stubber.add_response("describe_image_scan_findings", pages[1], {**expected, "nextToken": "t1"})
    stubber.add_response("describe_image_scan_findings", pages[2], {**expected, "nextToken": "t2"})

    # When the adapter reads the scan
    with stubber:
        scan = EcrImages(ecr).scan(REPO, DIGEST)

    # Then it followed every token, and the verdict sees the finding on the last page
    stubber.assert_no_pending_responses()
    assert scan is not None
    assert scan.pages == 3
    assert len(scan.findings) == 2001
    assert scan.findings[-1].severity is Severity.CRITICAL
    assert BUILTIN_POLICY.evaluate(REPO, scan.findings).outcome is Outcome.QUARANTINED


def test_basic_and_enhanced_findings_on_one_page_are_both_read(ecr: Any) -> None:
    enhanced = [{"severity": "HIGH", "packageVulnerabilityDetails": {
        "vulnerabilityId": "CVE-2024-9681", "source": "NVD",
        "vulnerablePackages": [{"name": "curl", "version": "7.88.1"}]}}]
    stubber = Stubber(ecr)
    stubber.add_response("describe_image_scan_findings",
                         page([basic("CVE-1", "LOW")], enhanced=enhanced))
    with stubber:
        scan = EcrImages(ecr).scan(REPO, DIGEST)
    assert scan is not None
    assert [f.id for f in scan.findings] == ["CVE-1", "CVE-2024-9681"]


@pytest.mark.parametrize("code", ["ImageNotFoundException", "RepositoryNotFoundException"])
def test_missing_image_or_repository_is_image_gone(ecr: Any, code: str) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("describe_image_scan_findings", code, "not here")
    with stubber, pytest.raises(ImageGone):
        EcrImages(ecr).scan(REPO, DIGEST)


def test_scan_not_found_means_not_scanned_yet(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("describe_image_scan_findings", "ScanNotFoundException", "none")
    with stubber:
        assert EcrImages(ecr).scan(REPO, DIGEST) is None


def test_other_errors_propagate_for_a_retry(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("describe_image_scan_findings", "ThrottlingException", "slow down",
                             http_status_code=400)
    with stubber, pytest.raises(Exception, match="ThrottlingException"):
        EcrImages(ecr).scan(REPO, DIGEST)


IMAGE = {"images": [{"imageId": {"imageDigest": DIGEST}, "imageManifest": "{}",
                     "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"}],
         "failures": []}


def test_add_tag_reputs_the_exact_manifest_and_media_type(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", IMAGE)
    stubber.add_response("put_image", {"image": {}}, {
        "repositoryName": REPO, "imageManifest": "{}", "imageTag": "approved-9b9b9b9b9b9b",
        "imageDigest": DIGEST,
        "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"})
    with stubber:
        assert EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b") is True


def test_add_tag_twice_is_idempotent(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", IMAGE)
    stubber.add_client_error("put_image", "ImageAlreadyExistsException", "already")
    with stubber:
        assert EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b") is False


def test_add_tag_held_by_another_image_on_immutable_repository_is_an_error(ecr: Any) -> None:
    # AWS's own code for an IMMUTABLE collision (moto raises ImageAlreadyExists instead)
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", IMAGE)
    stubber.add_client_error("put_image", "ImageTagAlreadyExistsException", "immutable")
    with stubber, pytest.raises(Exception, match="ImageTagAlreadyExistsException"):
        EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b")


def test_add_tag_on_vanished_image_reports_image_gone(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", {"images": [], "failures": [
        {"imageId": {"imageDigest": DIGEST}, "failureCode": "ImageNotFound",
         "failureReason": "Requested image not found"}]})
    with stubber, pytest.raises(ImageGone, match="ImageNotFound"):
        EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b")


def test_remove_tag_refuses_to_remove_the_last_tag(ecr: Any) -> None:
    # Given an image whose only tag is the marker (removing it would delete the image)
    stubber = Stubber(ecr)
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": DIGEST, "imageTags": ["quarantined-9b9b9b9b9b9b"]}]})

    # When asked to remove it, Then it refuses without calling BatchDeleteImage
    with stubber, pytest.raises(UnsafeUntag):
        EcrImages(ecr).remove_tag(REPO, DIGEST, "quarantined-9b9b9b9b9b9b")
    stubber.assert_no_pending_responses()


def test_remove_tag_absent_from_this_image_deletes_nothing(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": DIGEST, "imageTags": ["v1", "approved-9b9b9b9b9b9b"]}]})
    with stubber:
        assert EcrImages(ecr).remove_tag(REPO, DIGEST, "quarantined-9b9b9b9b9b9b") is False


def test_remove_tag_reports_per_image_failures_returned_with_http_200(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": DIGEST, "imageTags": ["v1", "approved-9b9b9b9b9b9b"]}]})
    stubber.add_response("batch_delete_image", {"failures": [
        {"imageId": {"imageTag": "approved-9b9b9b9b9b9b"}, "failureCode": "KmsError",
         "failureReason": "kms"}]})
    with stubber, pytest.raises(UnsafeUntag, match="kms"):
        EcrImages(ecr).remove_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b")


@pytest.mark.parametrize("storage_class", ["ARCHIVE", "STANDARD"])
def test_storage_class_change_names_the_digest(ecr: Any, storage_class: str) -> None:
    # moto does not model UpdateImageStorageClass: the request shape is checked by Stubber
    stubber = Stubber(ecr)
    status = "ARCHIVED" if storage_class == "ARCHIVE" else "ACTIVATING"
    stubber.add_response("update_image_storage_class",
                         {"repositoryName": REPO, "imageId": {"imageDigest": DIGEST},
                          "imageStatus": status},
                         {"repositoryName": REPO, "imageId": {"imageDigest": DIGEST},
                          "targetStorageClass": storage_class})
    with stubber:
        assert EcrImages(ecr).set_storage_class(REPO, DIGEST, storage_class) is True
    stubber.assert_no_pending_responses()


def test_an_image_ecr_cannot_archive_keeps_its_marker_only(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("update_image_storage_class",
                             "ImageStorageClassUpdateNotSupportedException", "not supported")
    with stubber:
        assert EcrImages(ecr).set_storage_class(REPO, DIGEST, "ARCHIVE") is False


def test_archiving_a_vanished_image_is_image_gone(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("update_image_storage_class", "ImageNotFoundException", "gone")
    with stubber, pytest.raises(ImageGone):
        EcrImages(ecr).set_storage_class(REPO, DIGEST, "ARCHIVE")


# --- starting a scan the repository does not run on push --------------------------------------

def scanning(frequency: str, on_push: bool = False) -> dict[str, Any]:
    return {"scanningConfigurations": [{
        "repositoryArn": f"arn:aws:ecr:us-east-1:123456789012:repository/{REPO}",
        "repositoryName": REPO, "scanOnPush": on_push, "scanFrequency": frequency,
        "appliedScanFilters": []}], "failures": []}


@pytest.mark.parametrize(("frequency", "on_push"), [("SCAN_ON_PUSH", True),
                                                    ("CONTINUOUS_SCAN", False),
                                                    ("MANUAL", True)])
def test_no_scan_is_started_where_the_repository_scans_by_itself(
        ecr: Any, frequency: str, on_push: bool) -> None:
    # Given a repository that scans on push or continuously (enhanced)
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_repository_scanning_configuration",
                         scanning(frequency, on_push), {"repositoryNames": [REPO]})

    # When a scan would be started, Then none is: ECR runs it (no StartImageScan queued)
    with stubber:
        assert EcrImages(ecr).start_scan(REPO, DIGEST).startswith("not needed")
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "outcome"), [
    (None, "started"),
    ("LimitExceededException", "not started: LimitExceededException"),
    ("UnsupportedImageTypeException", "not started: UnsupportedImageTypeException"),
    ("ValidationException", "not started: ValidationException"),
])
def test_a_manual_repository_gets_its_scan_started_or_a_reason_why_not(
        ecr: Any, code: str | None, outcome: str) -> None:
    # Given a repository whose scans are manual
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_repository_scanning_configuration", scanning("MANUAL"),
                         {"repositoryNames": [REPO]})
    expected = {"repositoryName": REPO, "imageId": {"imageDigest": DIGEST}}
    if code is None:
        stubber.add_response("start_image_scan", {
            "repositoryName": REPO, "imageId": {"imageDigest": DIGEST},
            "imageScanStatus": {"status": "IN_PROGRESS"}}, expected)
    else:
        stubber.add_client_error("start_image_scan", code, expected_params=expected)

    # When the adapter starts its scan, Then it says what happened and never raises
    with stubber:
        assert EcrImages(ecr).start_scan(REPO, DIGEST) == outcome
    stubber.assert_no_pending_responses()


def test_starting_the_scan_of_a_deleted_image_says_it_is_gone(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_repository_scanning_configuration", scanning("MANUAL"),
                         {"repositoryNames": [REPO]})
    stubber.add_client_error("start_image_scan", "ImageNotFoundException")
    with stubber, pytest.raises(ImageGone):
        EcrImages(ecr).start_scan(REPO, DIGEST)


def test_an_unreadable_scanning_configuration_starts_nothing(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("batch_get_repository_scanning_configuration", "AccessDeniedException")
    with stubber:
        assert EcrImages(ecr).start_scan(REPO, DIGEST) == (
            "scanning configuration unreadable: AccessDeniedException")
