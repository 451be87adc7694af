"""A verdict as the image's Security Hub finding (ASFF), and the setting that turns it on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gatekeeper.config import Config, ConfigError
from gatekeeper.domain.verdict import Breach, Outcome, Verdict
from gatekeeper.render.notification import ImageRef
from gatekeeper.render.security_hub import asff_finding

DIGEST = "sha256:" + "ab" * 32
IMAGE = ImageRef("team/api", DIGEST, ("v1", "latest"), "123456789012", "eu-west-1")
ENV = {"GATEKEEPER_TABLE": "verdicts",
       "GATEKEEPER_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:verdicts",
       "GATEKEEPER_POLICY_BUCKET": "policy-bucket"}


def quarantine(*ids: str) -> Verdict:
    return Verdict(Outcome.QUARANTINED, ("CRITICAL: 2 findings over the limit of 0",), "v7",
                   highest_severity="CRITICAL",
                   breaches=(Breach("max_findings", "CRITICAL", len(ids), 0, ids),))


def test_a_quarantine_is_an_active_failed_finding_naming_the_blocking_cves() -> None:
    # Given a quarantine by two CRITICAL findings; When it is rendered
    finding = asff_finding(IMAGE, quarantine("CVE-2023-4863", "CVE-2024-3400"),
                           created_at="2026-11-20T10:00:00Z", updated_at="2026-11-21T10:00:00Z")
    # Then the finding is the image's (stable Id, ECR image resource) and active
    assert finding["Id"] == f"ecr-scan-gatekeeper/123456789012/eu-west-1/team/api@{DIGEST}"
    assert finding["ProductArn"] == ("arn:aws:securityhub:eu-west-1:123456789012:"
                                     "product/123456789012/default")
    assert (finding["RecordState"], finding["Workflow"], finding["Compliance"]) == (
        "ACTIVE", {"Status": "NEW"}, {"Status": "FAILED"})
    assert finding["Severity"] == {"Label": "CRITICAL"}
    assert finding["Description"].startswith("Blocking: CVE-2023-4863, CVE-2024-3400. ")
    assert (finding["CreatedAt"], finding["UpdatedAt"]) == ("2026-11-20T10:00:00Z",
                                                            "2026-11-21T10:00:00Z")
    assert finding["Resources"][0]["Details"]["AwsEcrContainerImage"]["ImageTags"] == [
        "v1", "latest"]


def test_an_approval_resolves_it_and_long_texts_fit_asff_limits() -> None:
    # Given an approval, and a quarantine by 500 findings
    approved = Verdict(Outcome.APPROVED, ("0 counted finding(s)",), "v8")
    many = replace(quarantine(*(f"CVE-2024-{n:05d}" for n in range(500))),
                   reasons=("x" * 2000,))
    resolved = asff_finding(IMAGE, approved, created_at="a", updated_at="b")
    crowded = asff_finding(IMAGE, many, created_at="a", updated_at="b")
    # Then the approval archives it; and the crowded description is cut to 1,024 characters
    assert (resolved["RecordState"], resolved["Workflow"]["Status"],
            resolved["Compliance"]["Status"], resolved["Severity"]["Label"]) == (
        "ARCHIVED", "RESOLVED", "PASSED", "INFORMATIONAL")
    assert len(crowded["Description"]) == 1024 and crowded["Description"].endswith("…")
    assert "CVE-2024-00019 and 480 more. Quarantined: xxx" in crowded["Description"]


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("disabled", False),
                                                 ("enabled", True), ("Enabled", True)])
def test_security_hub_is_off_unless_enabled(value: str | None, expected: bool) -> None:
    env = ENV | ({"GATEKEEPER_SECURITY_HUB": value} if value else {})
    assert Config.from_env(env).security_hub is expected


def test_a_wrong_security_hub_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GATEKEEPER_SECURITY_HUB must be one of enabled"):
        Config.from_env(ENV | {"GATEKEEPER_SECURITY_HUB": "yes"})
