"""Marker tags: one per verdict, naming the image's digest, never mistaken for a user's tag."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.verdict import Outcome

DIGEST = "sha256:9b1a3f6c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
HEX = DIGEST.removeprefix("sha256:")
OTHER = "sha256:" + "0" * 64
DEFAULT = MarkerScheme()
FULL = MarkerScheme(approved="gk-ok-{digest}", quarantined="gk-bad-{digest}")
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}")  # what ECR accepts as an image tag

DIGESTS = st.builds(lambda h: "sha256:" + h, st.text("0123456789abcdef", min_size=64,
                                                     max_size=64))


@pytest.mark.parametrize(
    ("outcome", "tag"),
    [(Outcome.APPROVED, "approved-9b1a3f6c2d4e"),
     (Outcome.QUARANTINED, "quarantined-9b1a3f6c2d4e")],
)
def test_default_markers_use_the_first_12_hex_of_the_digest(outcome: Outcome, tag: str) -> None:
    assert DEFAULT.tag_for(outcome, DIGEST) == tag


def test_the_recorded_marker_echo_event_carries_the_default_approved_marker() -> None:
    assert DEFAULT.tag_for(Outcome.APPROVED, DIGEST) == "approved-9b1a3f6c2d4e"
    assert DEFAULT.is_marker_of("approved-9b1a3f6c2d4e", DIGEST)


def test_an_approval_with_warnings_carries_the_approved_marker() -> None:
    # Warnings notify but do not block: the image is tagged as any approved image is.
    tag = DEFAULT.tag_for(Outcome.APPROVED_WITH_WARNINGS, DIGEST)
    assert tag == "approved-9b1a3f6c2d4e"
    assert DEFAULT.parse(tag) == (Outcome.APPROVED, "9b1a3f6c2d4e")


def test_a_sha512_digest_gets_a_12_hex_marker_too() -> None:
    digest = "sha512:" + "c" * 128
    tag = DEFAULT.tag_for(Outcome.QUARANTINED, digest)
    assert tag == "quarantined-cccccccccccc"
    assert DEFAULT.is_marker_of(tag, digest)


def test_a_full_digest_template_names_all_64_hex() -> None:
    assert FULL.tag_for(Outcome.APPROVED, DIGEST) == f"gk-ok-{HEX}"
    assert FULL.parse(f"gk-ok-{HEX}") == (Outcome.APPROVED, HEX)
    assert FULL.parse(f"gk-ok-{HEX[:12]}") is None


@pytest.mark.parametrize("scheme", [DEFAULT, FULL], ids=["digest12", "digest"])
@pytest.mark.parametrize("outcome", list(Outcome))
@given(digest=DIGESTS)
def test_markers_round_trip_through_parse(scheme: MarkerScheme, outcome: Outcome,
                                          digest: str) -> None:
    # Given a marker made for an outcome and digest
    tag = scheme.tag_for(outcome, digest)
    assert tag is not None
    # When it is parsed back
    parsed = scheme.parse(tag)
    # Then the marker's outcome (approved or quarantined) and the digest (prefix) come back,
    # and the tag is a valid ECR tag
    assert parsed is not None
    assert parsed[0] is (Outcome.APPROVED if outcome.approved else Outcome.QUARANTINED)
    assert digest.removeprefix("sha256:").startswith(parsed[1])
    assert TAG.fullmatch(tag)
    assert scheme.is_marker_of(tag, digest)


def test_a_marker_is_a_marker_of_its_own_digest_only() -> None:
    tag = DEFAULT.tag_for(Outcome.QUARANTINED, DIGEST)
    assert tag is not None
    assert DEFAULT.is_marker_of(tag, DIGEST)
    assert not DEFAULT.is_marker_of(tag, OTHER)


def test_the_digest_in_a_marker_is_compared_case_insensitively() -> None:
    assert DEFAULT.is_marker_of("approved-9b1a3f6c2d4e", DIGEST.upper().replace("SHA", "sha"))


@given(DIGESTS, DIGESTS)
def test_markers_of_different_digest_prefixes_are_not_confused(a: str, b: str) -> None:
    tag = DEFAULT.tag_for(Outcome.APPROVED, a)
    assert tag is not None
    assert DEFAULT.is_marker_of(tag, b) == (a[:19] == b[:19])


@pytest.mark.parametrize(
    "tag",
    [
        "v1",
        "latest",
        "approved",
        "quarantined",
        "approved-",
        "approved-xyz",
        "approved-9b1a3f6c2d4",  # 11 hex
        "approved-9b1a3f6c2d4e5",  # 13 hex
        "approved-9B1A3F6C2D4E",  # upper-case hex
        "approved_9b1a3f6c2d4e",
        "x-approved-9b1a3f6c2d4e",
        "approved-9b1a3f6c2d4e-rc1",
        "quarantined-ghijklmnopqr",
        "gk-ok-9b1a3f6c2d4e",  # the other scheme
    ],
)
def test_user_tags_are_not_markers(tag: str) -> None:
    assert DEFAULT.parse(tag) is None
    assert not DEFAULT.is_marker_of(tag, DIGEST)


@given(st.from_regex(TAG, fullmatch=True).filter(
    lambda t: not t.startswith(("approved-", "quarantined-"))))
def test_no_tag_outside_the_marker_prefixes_is_a_marker(tag: str) -> None:
    assert DEFAULT.parse(tag) is None


@pytest.mark.parametrize(
    ("approved", "quarantined"),
    [
        ("approved", "quarantined-{digest12}"),  # no placeholder: a tag that moves
        ("approved-{digest12}", "quarantined"),
        ("a-{digest12}-{digest12}", "q-{digest12}"),  # the same placeholder twice
        ("a-{digest12}-{digest}", "q-{digest12}"),  # two placeholders
        ("approved {digest12}", "q-{digest12}"),  # space
        ("approved/{digest12}", "q-{digest12}"),
        ("approved:{digest12}", "q-{digest12}"),
        ("-{digest12}", "q-{digest12}"),  # a tag cannot start with - or .
        (".{digest12}", "q-{digest12}"),
        ("a" * 120 + "{digest12}", "q-{digest12}"),  # over 128 characters once rendered
        ("x" * 65 + "{digest}", "q-{digest12}"),  # 129 characters
        ("gk-{digest12}", "gk-{digest12}"),  # identical templates
        ("{DIGEST12}", "q-{digest12}"),
        ("", "q-{digest12}"),
    ],
)
def test_invalid_templates_are_rejected(approved: str, quarantined: str) -> None:
    with pytest.raises(ValueError, match="template"):
        MarkerScheme(approved=approved, quarantined=quarantined)


def test_a_template_of_exactly_128_characters_is_accepted() -> None:
    scheme = MarkerScheme(approved="a" * 116 + "{digest12}")
    tag = scheme.tag_for(Outcome.APPROVED, DIGEST)
    assert tag is not None and len(tag) == 128


@pytest.mark.parametrize("template", ["{digest12}", "gk_OK.{digest}", "v{digest12}.ok"])
def test_valid_custom_templates_are_accepted(template: str) -> None:
    scheme = MarkerScheme(approved=template)
    tag = scheme.tag_for(Outcome.APPROVED, DIGEST)
    assert tag is not None
    assert scheme.parse(tag) == (Outcome.APPROVED, tag_hex(template))


def tag_hex(template: str) -> str:
    return HEX if "{digest}" in template else HEX[:12]


@pytest.mark.parametrize("template", ["a{x}-{digest12}", "approved-{digest12}-{}",
                                      "a}-{digest12}", "{{digest12}}"])
def test_a_template_with_stray_braces_is_rejected_as_invalid_characters(template: str) -> None:
    with pytest.raises(ValueError, match="characters a tag cannot hold"):
        MarkerScheme(approved=template)


def test_a_template_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValueError, match="template"):
        MarkerScheme(approved="approved-{digest12}\n")
