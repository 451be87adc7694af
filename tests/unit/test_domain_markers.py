"""Marker tags: one per verdict, naming the image's digest, never mistaken for a user's tag."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain.markers import RESERVED_WORDS, MarkerScheme
from gatekeeper.domain.verdict import Outcome

DIGEST = "sha256:9b1a3f6c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
HEX = DIGEST.removeprefix("sha256:")
OTHER = "sha256:" + "0" * 64
DEFAULT = MarkerScheme()
FULL = MarkerScheme(approved="passed-ok-{digest}", quarantined="blocked-{digest}")
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
    assert FULL.tag_for(Outcome.APPROVED, DIGEST) == f"passed-ok-{HEX}"
    assert FULL.parse(f"passed-ok-{HEX}") == (Outcome.APPROVED, HEX)
    assert FULL.parse(f"passed-ok-{HEX[:12]}") is None


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
        ("okay-{digest12}-{digest12}", "quarantined-{digest12}"),  # the same placeholder twice
        ("okay-{digest12}-{digest}", "quarantined-{digest12}"),  # two placeholders
        ("approved {digest12}", "quarantined-{digest12}"),  # space
        ("approved/{digest12}", "quarantined-{digest12}"),
        ("approved:{digest12}", "quarantined-{digest12}"),
        ("-{digest12}", "quarantined-{digest12}"),  # a tag cannot start with - or .
        (".{digest12}", "quarantined-{digest12}"),
        ("ok" + "a" * 118 + "-{digest12}", "quarantined-{digest12}"),  # 129 once rendered
        ("ok" + "x" * 62 + "-{digest}", "quarantined-{digest12}"),  # 129 characters
        ("passed-{digest12}", "passed-{digest12}"),  # identical templates
        ("{DIGEST12}", "quarantined-{digest12}"),
        ("", "quarantined-{digest12}"),
    ],
)
def test_invalid_templates_are_rejected(approved: str, quarantined: str) -> None:
    with pytest.raises(ValueError, match="template"):
        MarkerScheme(approved=approved, quarantined=quarantined)


def test_a_template_of_exactly_128_characters_is_accepted() -> None:
    scheme = MarkerScheme(approved="ok" + "a" * 113 + "-{digest12}")
    tag = scheme.tag_for(Outcome.APPROVED, DIGEST)
    assert tag is not None and len(tag) == 128


@pytest.mark.parametrize("template", ["passed-{digest12}", "gatekeeper_OK.{digest}",
                                      "Gatekeeper.ok-{digest12}.v1", "okay_{digest}"])
def test_valid_custom_templates_are_accepted(template: str) -> None:
    scheme = MarkerScheme(approved=template)
    tag = scheme.tag_for(Outcome.APPROVED, DIGEST)
    assert tag is not None
    assert scheme.parse(tag) == (Outcome.APPROVED, tag_hex(template))


def tag_hex(template: str) -> str:
    return HEX if "{digest}" in template else HEX[:12]


@pytest.mark.parametrize("template", ["ok{x}-{digest12}", "approved-{digest12}-{}",
                                      "okay}-{digest12}", "okay-{{digest12}}"])
def test_a_template_with_stray_braces_is_rejected_as_invalid_characters(template: str) -> None:
    with pytest.raises(ValueError, match="characters a tag cannot hold"):
        MarkerScheme(approved=template)


def test_a_template_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ValueError, match="template"):
        MarkerScheme(approved="approved-{digest12}\n")


# --- templates that could describe people's own tags are refused --------------------------

@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{digest12}", "at least 3 letters"),  # every 12-hex git sha would be a marker
        ("{digest}", "at least 3 letters"),
        ("v{digest12}", "at least 3 letters"),
        ("v-{digest12}", "at least 3 letters"),
        ("ok-{digest12}", "at least 3 letters"),
        ("gk-ok-{digest12}", "at least 3 letters"),
        ("1ok-{digest12}", "at least 3 letters"),
        ("approved{digest12}", "at least 3 letters"),  # no separator after the word
        ("approved2-{digest12}", "at least 3 letters"),
        ("bad-{digest12}", "all hex letters"),  # cafe-9b1a..., dead-... read as shas
        ("CAFE.{digest}", "all hex letters"),
        ("sha-{digest12}", "a word people put before"),  # docker/metadata-action's sha-<hex>
        ("SHA_{digest}", "a word people put before"),
        ("git-{digest12}", "a word people put before"),
        ("commit.{digest12}", "a word people put before"),
        ("main-{digest12}", "a word people put before"),
        ("release-{digest12}", "a word people put before"),
        ("latest-{digest12}", "a word people put before"),
    ],
)
def test_a_template_must_start_with_a_word_of_its_own(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as raised:
        MarkerScheme(approved=template)
    # the message names the template, which config.py reports with the variable's name
    assert repr(template) in str(raised.value)


@pytest.mark.parametrize(
    ("approved", "quarantined"),
    [
        ("passed-{digest12}", "passed-{digest}"),  # 12 or 64 hex: still one word for both
        ("passed-{digest12}", "passed.{digest12}"),
        ("passed-{digest12}-ok", "passed-{digest12}-no"),
        ("Passed-{digest12}", "passed-{digest12}"),  # case alone does not set them apart
    ],
)
def test_the_two_templates_need_words_of_their_own(approved: str, quarantined: str) -> None:
    with pytest.raises(ValueError, match="same word"):
        MarkerScheme(approved=approved, quarantined=quarantined)


def test_a_word_that_begins_another_is_still_a_word_of_its_own() -> None:
    # "pass-" and "passed-" cannot both match a tag: the letters run up to the separator
    scheme = MarkerScheme(approved="pass-{digest12}", quarantined="passed-{digest12}")
    assert scheme.parse(f"pass-{HEX[:12]}") == (Outcome.APPROVED, HEX[:12])
    assert scheme.parse(f"passed-{HEX[:12]}") == (Outcome.QUARANTINED, HEX[:12])


WORDS = st.from_regex(r"[A-Za-z]{3,12}", fullmatch=True).filter(
    lambda w: any(c not in "abcdefABCDEF" for c in w) and w.lower() not in RESERVED_WORDS)
TEMPLATES = st.builds(
    lambda word, sep, middle, placeholder, suffix: f"{word}{sep}{middle}{placeholder}{suffix}",
    WORDS, st.sampled_from("-_."), st.from_regex(r"[A-Za-z0-9_.-]{0,6}", fullmatch=True),
    st.sampled_from(["{digest12}", "{digest}"]),
    st.from_regex(r"[A-Za-z0-9_.-]{0,6}", fullmatch=True))


@st.composite
def schemes(draw: st.DrawFn) -> MarkerScheme:
    """The default, or any pair of templates MarkerScheme accepts."""
    if draw(st.booleans()):
        return DEFAULT
    approved, quarantined = draw(TEMPLATES), draw(TEMPLATES)
    try:
        return MarkerScheme(approved=approved, quarantined=quarantined)
    except ValueError:
        return DEFAULT


HEXES = st.text("0123456789abcdef", min_size=7, max_size=64)
SEMVER = st.from_regex(r"v?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-(rc|beta|alpha)\.?[0-9]{0,2})?",
                       fullmatch=True)
USER_TAGS = st.one_of(
    HEXES,  # git shas, short and long
    st.builds(lambda h: h.upper(), HEXES),
    st.builds("{}-{}".format, st.sampled_from(sorted(RESERVED_WORDS)), HEXES),  # sha-<hex>
    st.builds("{}{}{}".format, st.sampled_from(["sha", "SHA", "git", "v", "g", "pr", "r"]),
              st.sampled_from(["-", "_", ".", ""]), HEXES),
    st.builds("{}-{}".format, HEXES, HEXES),  # <sha>-<sha>
    SEMVER,
    st.builds("{}-{}".format, SEMVER, HEXES),  # v1.2.3-9b1a3f6
    st.builds("{}-{}-g{}".format, SEMVER, st.integers(0, 999), HEXES),  # git describe
    st.sampled_from(["latest", "stable", "main", "edge", "nightly", "prod", "Latest"]),
    st.builds("{}-{}".format, st.sampled_from(["main", "master", "dev", "release", "build",
                                               "commit", "feature", "test"]), HEXES),
    st.builds(str, st.integers(0, 10**12)),  # build numbers
)


@given(scheme=schemes(), tag=USER_TAGS)
def test_tags_people_write_never_parse_as_markers(scheme: MarkerScheme, tag: str) -> None:
    # Given the default or any accepted templates, and a tag of the kinds people write
    # (git shas, sha-<hex>, semver, git describe, branch-<sha>, latest, build numbers)
    # Then the gatekeeper never takes it for one of its markers, so never removes it
    assert scheme.parse(tag[:128]) is None


@given(scheme=schemes(), digest=DIGESTS, outcome=st.sampled_from(list(Outcome)))
def test_neither_template_parses_the_others_markers(scheme: MarkerScheme, digest: str,
                                                    outcome: Outcome) -> None:
    tag = scheme.tag_for(outcome, digest)
    if tag is None:
        return
    parsed = scheme.parse(tag)
    assert parsed is not None
    assert parsed[0] is (Outcome.APPROVED if outcome.approved else Outcome.QUARANTINED)
    other = scheme.quarantined if outcome.approved else scheme.approved
    assert not re.fullmatch(re.escape(other).replace(r"\{digest12\}", "[0-9a-f]{12}")
                            .replace(r"\{digest\}", "[0-9a-f]{64}"), tag)
