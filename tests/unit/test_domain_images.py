from __future__ import annotations

import pytest

from gatekeeper.domain.admission import Decision, all_allowed
from gatekeeper.domain.images import ImageName, ImageNameError, parse_image

DIGEST = "sha256:" + "ab" * 32
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(("text", "expected"), [
    (f"{ECR}/team-a/web@{DIGEST}", ImageName("team-a/web", None, DIGEST, ECR)),
    (f"{ECR}/team-a/web:v1", ImageName("team-a/web", "v1", None, ECR)),
    (f"{ECR}/team-a/web:v1@{DIGEST}", ImageName("team-a/web", "v1", DIGEST, ECR)),
    ("nginx", ImageName("nginx", "latest", None, None)),
    ("library/nginx:1.27", ImageName("library/nginx", "1.27", None, None)),
    ("localhost:5000/app", ImageName("app", "latest", None, "localhost:5000")),
    ("ghcr.io/org/app:2", ImageName("org/app", "2", None, "ghcr.io")),
    ("public.ecr.aws/nginx/nginx:1", ImageName("nginx/nginx", "1", None, "public.ecr.aws")),
])
def test_image_names_as_deploy_tooling_writes_them(text: str, expected: ImageName) -> None:
    # Given a name from a task definition or pod spec; When parsed; Then its parts
    assert parse_image(text) == expected


def test_an_ecr_registry_names_its_account_and_region() -> None:
    name = parse_image(f"{ECR}/team-a/web@{DIGEST}")
    assert (name.in_ecr, name.ecr_account, name.ecr_region, name.pinned) == (
        True, "123456789012", "eu-west-1", True)
    assert str(name) == f"{ECR}/team-a/web@{DIGEST}"
    public = parse_image("public.ecr.aws/nginx/nginx:1")
    assert (public.in_ecr, public.ecr_account, public.pinned) == (False, None, False)


@pytest.mark.parametrize("text", [
    "", "   ", None, 7, "UPPER/case", "app:", "app@sha256:short", "app:bad tag",
    f"{ECR}/", "app@md5:" + "0" * 32, "a" * 5000, "app:\u202etag",
])
def test_what_is_not_an_image_name_is_refused_with_a_reason(text: object) -> None:
    with pytest.raises(ImageNameError):
        parse_image(text)


def test_a_deployment_runs_only_when_every_image_is_allowed() -> None:
    ok = Decision(True, "a", "approved")
    no = Decision(False, "b", "quarantined")
    assert all_allowed([ok, ok]) == (True, [])
    assert all_allowed([ok, no]) == (False, [no])
    assert no.as_dict() == {"allowed": False, "image": "b", "reason": "quarantined"}
