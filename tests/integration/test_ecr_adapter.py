"""The ECR adapter where moto cannot model AWS: pagination and error codes (botocore Stubber)."""

from __future__ import annotations

import weakref
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper.adapters import ecr as ecr_adapter
from gatekeeper.adapters.ecr import EcrImages, ImageGone, ScanResult, TagTaken, UnsafeUntag
from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import FINDINGS_INCOMPLETE, Severity
from gatekeeper.domain.policy import BUILTIN_POLICY
from gatekeeper.domain.verdict import Outcome
from tests.moto_paging import basic_scan, paged_scan_findings
from tests.support import World, push_event, scan_event

REPO = "team-a/web"
DIGEST = "sha256:" + "9b" * 32


def basic(name: str, severity: str) -> dict[str, Any]:
    return {"name": name, "severity": severity,
            "attributes": [{"key": "package_name", "value": "pkg"}]}


def page(findings: list[dict[str, Any]], token: str | None = None,
         enhanced: list[dict[str, Any]] | None = None,
         counts: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "repositoryName": REPO,
        "imageId": {"imageDigest": DIGEST},
        "imageScanStatus": {"status": "COMPLETE", "description": "done"},
        "imageScanFindings": {
            "findings": findings,
            # the whole image, not the page
            "findingSeverityCounts": {"LOW": 2000, "CRITICAL": 1} if counts is None else counts,
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
    assert (scan.status, scan.description) == ("COMPLETE", "done")
    assert scan.pages == 3
    assert len(scan.findings) == 2001
    assert scan.findings[-1].severity is Severity.CRITICAL
    assert evaluation.evaluate(BUILTIN_POLICY, REPO, scan.findings).outcome is Outcome.QUARANTINED


def test_basic_and_enhanced_findings_on_one_page_are_both_read(ecr: Any) -> None:
    enhanced = [{"severity": "HIGH", "packageVulnerabilityDetails": {
        "vulnerabilityId": "CVE-2024-9681", "source": "NVD",
        "vulnerablePackages": [{"name": "curl", "version": "7.88.1"}]}}]
    stubber = Stubber(ecr)
    stubber.add_response("describe_image_scan_findings",
                         page([basic("CVE-1", "LOW")], enhanced=enhanced,
                              counts={"LOW": 1, "HIGH": 1}))
    with stubber:
        scan = EcrImages(ecr).scan(REPO, DIGEST)
    assert scan is not None
    assert scan.status == "COMPLETE"
    assert [f.id for f in scan.findings] == ["CVE-1", "CVE-2024-9681"]


# --- findings that cannot all be read: FINDINGS_INCOMPLETE, never a loop --------------------

def read(ecr: Any, *pages: dict[str, Any]) -> ScanResult:
    """The adapter's scan of these DescribeImageScanFindings responses, asserting it asked
    for exactly as many pages as given."""
    stubber = Stubber(ecr)
    for body in pages:
        stubber.add_response("describe_image_scan_findings", body)
    with stubber:
        scan = EcrImages(ecr).scan(REPO, DIGEST)
    stubber.assert_no_pending_responses()
    assert scan is not None
    return scan


def test_a_token_returned_twice_stops_paging_and_is_incomplete(ecr: Any) -> None:
    # Given ECR answering page 2 with the token that led to it (a loop, if followed)
    pages = [page([basic("CVE-1", "LOW")], token="t1"),
             page([basic("CVE-2", "LOW")], token="t1")]

    # When the adapter reads the scan, Then it stops there, fails closed, and says why
    scan = read(ecr, *pages)
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert "returned the token of an earlier page again on page 2" in scan.description
    assert evaluation.judge_scan(BUILTIN_POLICY, REPO, scan.status, scan.description,
                                     scan.findings).outcome is Outcome.QUARANTINED


def test_a_cycle_of_tokens_is_detected_too(ecr: Any) -> None:
    pages = [page([], token="a"), page([], token="b"), page([], token="a")]
    assert read(ecr, *pages).status == FINDINGS_INCOMPLETE


def test_a_token_ecr_refuses_stops_paging_and_is_incomplete(ecr: Any) -> None:
    # Given a first page whose token ECR then refuses (InvalidParameterException)
    stubber = Stubber(ecr)
    stubber.add_response("describe_image_scan_findings", page([], token="t1"))
    stubber.add_client_error("describe_image_scan_findings", "InvalidParameterException",
                             "Invalid NextToken")
    with stubber:
        scan = EcrImages(ecr).scan(REPO, DIGEST)
    # Then the findings read are kept, and the scan is incomplete, saying why
    assert scan is not None and scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert "refused the token of page 1 (InvalidParameterException)" in scan.description


def test_an_invalid_first_request_is_an_error_for_a_retry(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("describe_image_scan_findings", "InvalidParameterException", "bad")
    with stubber, pytest.raises(Exception, match="InvalidParameterException"):
        EcrImages(ecr).scan(REPO, DIGEST)


def test_paging_stops_at_the_page_limit(ecr: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 3 pages (1,000 in Lambda) and ECR offering a new token every time
    monkeypatch.setattr(ecr_adapter, "MAX_PAGES", 3)
    pages = [page([], token=f"t{i}") for i in range(3)]

    # When read, Then exactly 3 pages are asked for, and the scan is incomplete
    scan = read(ecr, *pages)
    assert (scan.status, scan.pages) == (FINDINGS_INCOMPLETE, 3)
    assert scan.description is not None and "more than 3 pages" in scan.description


def test_the_page_limit_is_a_thousand_pages() -> None:
    assert ecr_adapter.MAX_PAGES == 1000


def test_the_last_page_within_the_limit_is_complete(ecr: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ecr_adapter, "MAX_PAGES", 3)
    counts = {"LOW": 3}
    pages = [page([basic("CVE-1", "LOW")], token="t1", counts=counts),
             page([basic("CVE-2", "LOW")], token="t2", counts=counts),
             page([basic("CVE-3", "LOW")], counts=counts)]
    assert read(ecr, *pages).status == "COMPLETE"


@pytest.mark.parametrize("findings", ["absent", "enhancedFindings-instead"])
def test_a_findings_list_missing_while_counts_are_not_zero_is_incomplete(
        ecr: Any, findings: Any) -> None:
    # Given a response whose counts report a CRITICAL, its findings list gone (botocore reads
    # a null list as absent: moto's tests cover null); or an empty enhanced list in its place
    body = page([], counts={"CRITICAL": 1})
    del body["imageScanFindings"]["findings"]
    if findings != "absent":
        body["imageScanFindings"]["enhancedFindings"] = []

    # When read, Then it is incomplete with the reason, and the strict policy quarantines it
    scan = read(ecr, body)
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert scan.description.startswith("scan COMPLETE, findings incomplete: the severity counts "
                                       "report CRITICAL 1 but no findings were read")
    assert scan.description.endswith("(the response holds no findings list)") is (
        findings == "absent")
    verdict = evaluation.judge_scan(BUILTIN_POLICY, REPO, scan.status, scan.description,
                                    scan.findings)
    assert verdict is not None and verdict.outcome is Outcome.QUARANTINED
    assert verdict.reasons[0].startswith("scan FINDINGS_INCOMPLETE: scan COMPLETE, findings "
                                         "incomplete: the severity counts report CRITICAL 1")


def test_counts_over_all_pages_that_disagree_with_the_findings_read_are_incomplete(
        ecr: Any) -> None:
    # Given two pages whose counts say 2 CRITICAL, one CRITICAL on them in all
    counts = {"CRITICAL": 2}
    scan = read(ecr, page([basic("CVE-1", "CRITICAL")], token="t1", counts=counts),
                page([], counts=counts))
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert "the severity counts report CRITICAL 2 but CRITICAL 1 were read" in scan.description


def test_counts_that_differ_between_pages_are_incomplete(ecr: Any) -> None:
    scan = read(ecr, page([basic("CVE-1", "LOW")], token="t1", counts={"LOW": 2}),
                page([basic("CVE-2", "LOW")], counts={"LOW": 3}))
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None and "differ between pages" in scan.description


@pytest.mark.parametrize("severity", ["BOGUS", "", "UNTRIAGED", "SEVERE"])
def test_a_basic_severity_ecr_does_not_define_is_incomplete(ecr: Any, severity: str) -> None:
    scan = read(ecr, page([basic("CVE-1", severity)], counts={}))
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert f"CVE-1: severity {severity!r} is not one AWS defines for basic findings" in (
        scan.description)
    assert scan.findings == []


def test_enhanced_untriaged_findings_and_counts_are_complete(ecr: Any) -> None:
    # Given an enhanced scan (status ACTIVE) with counts naming UNTRIAGED, as real ones do
    enhanced = [{"severity": "MEDIUM", "packageVulnerabilityDetails": {"vulnerabilityId": "A"}},
                {"severity": "UNTRIAGED", "packageVulnerabilityDetails": {"vulnerabilityId": "B"}}]
    body = page([], enhanced=enhanced, counts={"MEDIUM": 1, "UNTRIAGED": 1})
    del body["imageScanFindings"]["findings"]
    body["imageScanStatus"] = {"status": "ACTIVE", "description": "Continuous scan"}
    scan = read(ecr, body)
    assert scan.status == "ACTIVE"
    assert [f.severity for f in scan.findings] == [Severity.MEDIUM, Severity.UNTRIAGED]


@pytest.mark.parametrize("status", [None, {}, {"description": "done"}, {"status": ""}],
                         ids=["absent", "empty", "no-status", "empty-status"])
def test_a_missing_scan_status_is_not_complete(ecr: Any, status: Any) -> None:
    # Given a response with clean, consistent findings but no scan status
    body = page([basic("CVE-1", "LOW")], counts={"LOW": 1})
    if status is None:
        del body["imageScanStatus"]
    else:
        body["imageScanStatus"] = status

    # When read, Then it is not COMPLETE: incomplete, saying so
    scan = read(ecr, body)
    assert scan.status == FINDINGS_INCOMPLETE
    assert scan.description is not None
    assert "returned no scan status" in scan.description


def test_a_failed_scan_keeps_its_state_whatever_its_findings_say(ecr: Any) -> None:
    body = page([], counts={"CRITICAL": 1})
    body["imageScanStatus"] = {"status": "FAILED", "description": "UnsupportedImageError"}
    scan = read(ecr, body)
    assert (scan.status, scan.description) == ("FAILED", "UnsupportedImageError")


def test_a_scan_in_progress_stays_in_progress(ecr: Any) -> None:
    body = page([], counts={})
    body["imageScanStatus"] = {"status": "IN_PROGRESS"}
    assert read(ecr, body).status == "IN_PROGRESS"


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
    # Given the image already carries the tag (a retry, or the echo of our own write)
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", IMAGE)
    stubber.add_client_error("put_image", "ImageAlreadyExistsException", "already")
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": DIGEST, "imageTags": ["approved-9b9b9b9b9b9b"]}]},
        {"repositoryName": REPO, "imageIds": [{"imageTag": "approved-9b9b9b9b9b9b"}]})
    # When tagged again, Then nothing changes and it says so
    with stubber:
        assert EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b") is False


@pytest.mark.parametrize("code", ["ImageTagAlreadyExistsException",  # AWS, IMMUTABLE
                                  "ImageAlreadyExistsException"])  # moto, IMMUTABLE
def test_add_tag_held_by_another_image_names_that_image(ecr: Any, code: str) -> None:
    # Given the tag is on another image of an IMMUTABLE repository (a forged marker)
    other = "sha256:" + "7" * 64
    stubber = Stubber(ecr)
    stubber.add_response("batch_get_image", IMAGE)
    stubber.add_client_error("put_image", code, "immutable")
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": other, "imageTags": ["approved-9b9b9b9b9b9b"]}]})
    # When tagged, Then the error names the image holding it, for the reconciler to reclaim
    with stubber, pytest.raises(TagTaken) as taken:
        EcrImages(ecr).add_tag(REPO, DIGEST, "approved-9b9b9b9b9b9b")
    assert (taken.value.tag, taken.value.holder) == ("approved-9b9b9b9b9b9b", other)


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


# --- a deleted repository: the image is gone, on every call (no retry, no DLQ) ----------------

SCANNING = {"scanningConfigurations": [{
    "repositoryArn": f"arn:aws:ecr:us-east-1:123456789012:repository/{REPO}",
    "repositoryName": REPO, "scanOnPush": False, "scanFrequency": "MANUAL",
    "appliedScanFilters": []}], "failures": []}
GONE_CALLS = {
    # method: (the AWS call that finds the repository gone, the responses before it)
    "scan": ("describe_image_scan_findings", []),
    "start_scan": ("start_image_scan", [("batch_get_repository_scanning_configuration",
                                         SCANNING)]),
    "add_tag": ("batch_get_image", []),
    "add_tag (after reading the manifest)": ("put_image", [("batch_get_image", IMAGE)]),
    "platforms": ("batch_get_image", []),
    "remove_tag": ("describe_images", []),
    "set_storage_class": ("update_image_storage_class", []),
}
ARGS = {"scan": (), "start_scan": (), "add_tag": ("approved-9b9b9b9b9b9b",),
        "platforms": (), "remove_tag": ("approved-9b9b9b9b9b9b",),
        "set_storage_class": ("ARCHIVE",)}


@pytest.mark.parametrize("code", ["RepositoryNotFoundException", "ImageNotFoundException"])
@pytest.mark.parametrize("case", list(GONE_CALLS))
def test_a_deleted_repository_or_image_is_image_gone_on_every_call(ecr: Any, case: str,
                                                                  code: str) -> None:
    # Given ECR answering this call with RepositoryNotFoundException (or ImageNotFound)
    call, before = GONE_CALLS[case]
    stubber = Stubber(ecr)
    for operation, response in before:
        stubber.add_response(operation, response)
    stubber.add_client_error(call, code, "gone")
    method = case.split(" ")[0]

    # When the adapter makes it, Then the image is gone: ImageGone, never a ClientError
    with stubber, pytest.raises(ImageGone, match=code):
        getattr(EcrImages(ecr), method)(REPO, DIGEST, *ARGS[method])
    stubber.assert_no_pending_responses()


def test_the_tags_of_an_image_in_a_deleted_repository_are_none(ecr: Any) -> None:
    stubber = Stubber(ecr)
    stubber.add_client_error("describe_images", "RepositoryNotFoundException", "gone")
    with stubber:
        assert EcrImages(ecr).tags(REPO, DIGEST) == []


# --- the same through the handlers, on moto: answered, not raised -------------------------------

@pytest.mark.parametrize("event", ["push", "scan"])
def test_a_deleted_repository_is_answered_image_gone_by_the_handlers(
        world: World, context: Any, event: str) -> None:
    # Given an image whose repository is deleted (with the image) before its event is handled
    repo = world.repository("team-a/gone")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    world.ecr.delete_repository(repositoryName=repo, force=True)

    # When its push or scan event arrives (moto answers RepositoryNotFoundException)
    handler = on_push if event == "push" else on_scan
    body = push_event(repo, digest) if event == "push" else scan_event(repo, digest)
    result = handler(body, context)

    # Then the handler returns image-gone: no exception, so no Lambda retry and no DLQ
    assert result["status"] == "image-gone"
    assert "RepositoryNotFoundException" in result["reason"]
    assert world.notifications() == []


def test_removing_tags_from_a_deleted_repository_reports_image_gone(ecr: Any) -> None:
    # Given the repository was deleted meanwhile
    stubber = Stubber(ecr)
    stubber.add_client_error("batch_delete_image", "RepositoryNotFoundException", "gone")
    # When a contradicting marker is removed, Then the image is gone (no retry, no DLQ)
    with stubber, pytest.raises(ImageGone):
        EcrImages(ecr).remove_tags(REPO, DIGEST, ["approved-9b9b9b9b9b9b"])


class PageWatch:
    """A real (moto) ECR client whose DescribeImageScanFindings pages are watched: each parsed
    page is handed out as a dict that can be weakly referenced, and each call counts how
    many earlier pages are still alive when the next one is asked for."""

    class Page(dict):  # type: ignore[type-arg]
        """A parsed page, as botocore parsed it, that a weak reference can follow."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.pages: list[weakref.ref[dict[str, Any]]] = []
        self.alive_when_asked: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_image_scan_findings(self, **kwargs: Any) -> dict[str, Any]:
        self.alive_when_asked.append(sum(ref() is not None for ref in self.pages))
        page = PageWatch.Page(self._client.describe_image_scan_findings(**kwargs))
        self.pages.append(weakref.ref(page))
        return page


def test_reading_many_pages_never_holds_more_than_one_raw_page(world: World) -> None:
    # Given an image whose 2,500 findings ECR pages 1,000 at a time (moto, paged as ECR does)
    with paged_scan_findings():
        repo = world.repository("team-a/big")
        digest = world.push(repo, "v1")
        world.scanned(repo, digest, basic_scan(2500, critical=True))
        watch = PageWatch(world.ecr)

        # When the adapter reads the scan
        scan = EcrImages(watch).scan(repo, digest)

    # Then it read three pages, and each was dropped before the next was asked for: no
    # earlier page was alive at any request, and none outlives the read
    assert scan is not None and scan.pages == 3
    assert len(scan.findings) == 2500 and scan.status == "COMPLETE"
    assert watch.alive_when_asked == [0, 0, 0]
    assert [ref() for ref in watch.pages] == [None, None, None]
