"""The verdict API's paths, read purely: which image a request names, and every refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain.verdict_request import (
    RequestError,
    VerdictRequest,
    parse_request,
)

DIGEST = "sha256:" + "ab" * 32

# (path, status, code): what the parser refuses, and how (the handler answers the same).
MALFORMED = [
    ("/", 404, "not-found"),
    ("/v2/verdicts/team-a/web:v1", 404, "not-found"),
    ("/v1/verdictsteam-a/web:v1", 404, "not-found"),
    ("/v1/verdicts", 400, "bad-reference"),
    ("/v1/verdicts/", 400, "bad-reference"),
    ("/v1/verdicts/team-a/web", 400, "bad-reference"),            # neither tag nor digest
    ("/v1/verdicts/team-a/web@sha256:abc", 400, "bad-reference"),  # short digest
    ("/v1/verdicts/team-a/web@" + DIGEST.upper(), 400, "bad-reference"),
    ("/v1/verdicts/Team-A/web:v1", 400, "bad-reference"),          # upper case
    ("/v1/verdicts/team-a//web:v1", 400, "bad-reference"),
    ("/v1/verdicts/team-a/web/:v1", 400, "bad-reference"),
    ("/v1/verdicts/team-a/web:.v1", 400, "bad-reference"),
    ("/v1/verdicts/team-a/web:", 400, "bad-reference"),
    ("/v1/verdicts/:v1", 400, "bad-reference"),
    ("/v1/verdicts/a:v1", 400, "bad-reference"),                   # one character
    ("/v1/verdicts/team-a/web:v1@" + DIGEST, 400, "bad-reference"),  # both: pin by digest
    ("/v1/verdicts/team-a/web%FF:v1", 400, "bad-reference"),       # not UTF-8
    ("/v1/verdicts/team-a/web%2540" + DIGEST, 400, "bad-reference"),  # encoded twice
    ("/v1/verdicts/" + "a" * 2000 + ":v1", 400, "bad-reference"),
    ("/v1/verdicts/" + "a" * 257 + ":v1", 400, "bad-reference"),
]


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/verdicts/web:v1", VerdictRequest("web", tag="v1")),
    ("/v1/verdicts/team-a/web:1.2.3_rc-1", VerdictRequest("team-a/web", tag="1.2.3_rc-1")),
    ("/v1/verdicts/a/b/c.d_e-f:latest", VerdictRequest("a/b/c.d_e-f", tag="latest")),
    (f"/v1/verdicts/team-a/web@{DIGEST}", VerdictRequest("team-a/web", digest=DIGEST)),
    (f"/v1/verdicts/team-a/web%40{DIGEST}", VerdictRequest("team-a/web", digest=DIGEST)),
    (f"/v1/verdicts/team-a%2Fweb%40{DIGEST.replace(':', '%3A')}",
     VerdictRequest("team-a/web", digest=DIGEST)),
    ("/v1/verdicts/team-a/web%3av1", VerdictRequest("team-a/web", tag="v1")),
])
def test_a_path_names_its_image(path: str, expected: VerdictRequest) -> None:
    assert parse_request("GET", path) == expected
    assert parse_request("HEAD", path) == expected
    assert parse_request("get", path) == expected


@pytest.mark.parametrize(("path", "status", "code"), MALFORMED)
def test_a_malformed_path_is_refused_with_its_status(path: str, status: int, code: str) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request("GET", path)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert "\n" not in refused.value.message and len(refused.value.message) < 300


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "", None])
def test_only_reads_are_allowed(method: object) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request(method, "/v1/verdicts/team-a/web:v1")
    assert (refused.value.status, refused.value.code) == (405, "method-not-allowed")


def test_an_unknown_route_is_a_404_whatever_the_method() -> None:
    with pytest.raises(RequestError) as refused:
        parse_request("POST", "/admin")
    assert refused.value.status == 404


def test_a_request_reads_back_as_its_reference() -> None:
    assert str(VerdictRequest("team-a/web", tag="v1")) == "team-a/web:v1"
    assert str(VerdictRequest("team-a/web", digest=DIGEST)) == f"team-a/web@{DIGEST}"


@given(method=st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["GET", "HEAD"])),
       path=st.one_of(st.none(), st.integers(), st.text(max_size=300),
                      st.text(max_size=120).map(lambda t: "/v1/verdicts/" + t)))
def test_any_input_is_an_image_or_a_4xx_never_anything_else(method: object,
                                                             path: object) -> None:
    try:
        request = parse_request(method, path)
    except RequestError as refused:
        assert 400 <= refused.status < 500
        assert refused.message and "\n" not in refused.message
    else:
        assert (request.digest is None) != (request.tag is None)
        assert str(request).startswith(request.repository)
