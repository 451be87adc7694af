"""Mutated findings pages through the real handlers: an image whose findings the policy blocks,
or whose findings could not all be read, is never APPROVED.

Each example starts from the project's recorded DescribeImageScanFindings responses
(samples/findings/), draws the image's true findings from them, writes the responses ECR would
return for it (the findings split over pages, the status and the whole image's
``findingSeverityCounts`` repeated on every page, a ``nextToken`` on all but the last), then
mutates them: lists dropped or null, counts dropped or altered, severities changed to strings
AWS does not define or removed, keys removed from findings and attributes, findings duplicated
or removed, a token left on the last page (pointing back to an earlier page, or one ECR
refuses), the scan status dropped. The responses are served by moto (paged here: moto does not
page findings) to the ``on_scan`` Lambda handler, called in-process with a real ECR Image Scan
(or Inspector2 Scan) event, on a new image each time. The verdict stored in DynamoDB and the
tags on the image are then checked against an oracle that reads only the mutated responses
and the truth, never the gatekeeper's code:

* must not approve: a token left, no scan status, a finding whose severity is missing or not
  one AWS documents, a blocking (CRITICAL or HIGH) finding in the responses, counts on any page
  that disagree with the findings in the responses, or a truth the policy blocks whose counts
  survive on a page: then the image is QUARANTINED, carries its quarantine marker and never
  its approval marker;
* otherwise the responses are complete and clean, and the image must be approved (with
  warnings when an UNDEFINED or UNTRIAGED finding is among them), so the first rule cannot
  pass by quarantining everything.

A response with neither findings nor counts says nothing about the image: like a clean scan's,
it is judged on what it says (``findingSeverityCounts`` may be absent, then there is nothing
to compare). The same mutated pages are also fed to ``gatekeeper evaluate``: incomplete or
undefined input exits 2 (never 0), blocked input exits 1.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import itertools
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.config import Config
from gatekeeper.observability import logger, metrics
from gatekeeper_tools.cli import main as gatekeeper_cli
from gatekeeper_tools.local.ecr import set_scan_result
from gatekeeper_tools.local.stack import LambdaContext
from tests.support import ACCOUNT, REGION, World, load_event, load_findings, make_world

# `make test` runs 150 examples per property (its time budget); `make test-nightly` runs 1,000.
EXAMPLES = int(os.environ.get("GATEKEEPER_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# What AWS documents (written out here, not imported from the code under test).
BASIC = frozenset({"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL", "UNDEFINED"})
ENHANCED = BASIC | {"UNTRIAGED"}
BLOCKED = {"CRITICAL", "HIGH"}  # the built-in strict policy: no policy is published here
UNRATED = {"UNDEFINED", "UNTRIAGED"}  # the built-in policy warns of these
UNDEFINED_STRINGS = ["BOGUS", "", "SEVERE", "TOTAL", "N/A", "CRITICAL!", "none", "Important"]


@dataclass(frozen=True)
class Kind:
    """Basic (ECR Image Scan event, ``findings``) or enhanced scanning (Inspector2 Scan
    event, ``enhancedFindings``)."""

    key: str
    documented: frozenset[str]
    samples: tuple[str, ...]
    status: str
    id_path: tuple[str, ...]  # where a finding's id lives
    removable: tuple[str, ...]  # keys a mutation may remove from a finding

    def pool(self) -> list[dict[str, Any]]:
        return [f for name in self.samples
                for f in load_findings(name)["imageScanFindings"][self.key]]


BASIC_KIND = Kind("findings", BASIC, ("basic-critical", "basic-clean", "basic-high-only"),
                  "COMPLETE", ("name",), ("name", "severity", "uri", "description",
                                          "attributes"))
ENHANCED_KIND = Kind("enhancedFindings", ENHANCED,
                     ("enhanced-critical-exploit", "enhanced-medium"), "ACTIVE",
                     ("packageVulnerabilityDetails", "vulnerabilityId"),
                     ("severity", "title", "fixAvailable", "exploitAvailable", "score",
                      "inspectorScore", "epss", "packageVulnerabilityDetails", "remediation",
                      "firstObservedAt"))


# --- the responses: truth, pages, mutations ---------------------------------------------------

@dataclass
class Case:
    """A truth, the responses after mutation, and what was done to them."""

    kind: Kind
    truth: list[str]  # the true severities
    pages: list[dict[str, Any]]
    done: list[str] = field(default_factory=list)
    token: str | None = None  # "repeat" or "refused": the last page names a next page

    def raw_severities(self) -> list[Any]:
        """The severity as written of every finding in the responses' lists (None: none)."""
        found = []
        for body in self.pages:
            scan = body.get("imageScanFindings")
            items = scan.get(self.kind.key) if isinstance(scan, dict) else None
            if isinstance(items, list):
                found += [item.get("severity") for item in items]
        return found

    def severities(self) -> list[str | None]:
        """The documented severity of each finding in the responses (None: not documented)."""
        out: list[str | None] = []
        for raw in self.raw_severities():
            name = raw.strip().upper() if isinstance(raw, str) else None
            out.append(name if name in self.kind.documented else None)
        return out

    def counts(self) -> list[dict[str, int]]:
        """The nonzero findingSeverityCounts of each page that still has them."""
        found = []
        for body in self.pages:
            scan = body.get("imageScanFindings")
            counts = scan.get("findingSeverityCounts") if isinstance(scan, dict) else None
            if isinstance(counts, dict):
                found.append({k: v for k, v in counts.items() if v})
        return found

    def verdict_forbids_approval(self) -> list[str]:
        """Why these responses must not approve the image (empty: they are complete, clean)."""
        why = []
        if self.token:
            why.append(f"a token left ({self.token})")
        first = self.pages[0].get("imageScanStatus")
        if not isinstance(first, dict) or not first.get("status"):
            why.append("no scan status")
        severities = self.severities()
        if None in severities:
            why.append("a severity AWS does not define")
        if BLOCKED & set(filter(None, severities)):
            why.append("a blocking finding in the responses")
        read = dict(Counter(s for s in severities if s))
        if any(counts != read for counts in self.counts()):
            why.append("counts that disagree with the findings")
        truth = dict(Counter(self.truth))
        if BLOCKED & set(self.truth) and truth in self.counts():
            why.append("a blocked truth whose counts survive")
        return why

    def expected_approval(self) -> str:
        return ("APPROVED_WITH_WARNINGS" if UNRATED & set(filter(None, self.severities()))
                else "APPROVED")


SEVERITY_OF = {k: st.sampled_from(sorted(k.documented)) for k in (BASIC_KIND, ENHANCED_KIND)}
NOT_BLOCKING = {k: st.sampled_from(sorted(k.documented - BLOCKED))
                for k in (BASIC_KIND, ENHANCED_KIND)}
POOLS: dict[str, list[dict[str, Any]]] = {}


def _set_id(kind: Kind, finding: dict[str, Any], value: str) -> None:
    holder = finding
    for key in kind.id_path[:-1]:
        holder = holder.setdefault(key, {})
    holder[kind.id_path[-1]] = value


@st.composite
def cases(draw: st.DrawFn, kind: Kind) -> Case:
    pool = POOLS.setdefault(kind.key, kind.pool())
    severity = draw(st.sampled_from([SEVERITY_OF[kind], NOT_BLOCKING[kind]]))
    truth = draw(st.lists(severity, max_size=8))
    findings = []
    for number, name in enumerate(truth):
        finding = copy.deepcopy(draw(st.sampled_from(pool)))
        finding["severity"] = name
        _set_id(kind, finding, f"CVE-2026-{number:05d}")
        findings.append(finding)

    # ECR's pages: the findings split, status and whole-image counts on every page
    cuts = sorted(draw(st.lists(st.integers(0, len(findings)), max_size=3)))
    bounds = [0, *cuts, len(findings)]
    pages = [{"imageScanStatus": {"status": kind.status, "description": "The scan was "
                                  "completed successfully."},
              "imageScanFindings": {"findingSeverityCounts": dict(Counter(truth)),
                                    kind.key: findings[start:end]}}
             for start, end in itertools.pairwise(bounds)]
    for number, body in enumerate(pages[:-1], start=1):
        body["nextToken"] = f"page-{number}"
    case = Case(kind, truth, pages)
    for _ in range(draw(st.integers(0, 3))):
        mutate(draw, case)
    return case


def _items(case: Case) -> list[tuple[list[Any], int]]:
    """(list, index) of every finding still in a list."""
    return [(items, index) for body in case.pages
            for items in [(body.get("imageScanFindings") or {}).get(case.kind.key)]
            if isinstance(items, list) for index in range(len(items))]


# Each mutation once; those that touch one finding or one page of several, twice.
MUTATIONS = [
    "drop-list", "null-list", "drop-scan-findings", "drop-counts", "drop-all-counts",
    "alter-count", "alter-count", "undefined-severity", "undefined-severity", "remove-key",
    "remove-key", "remove-attribute", "case", "duplicate", "remove-finding", "remove-finding",
    "token", "token", "drop-status", "drop-status", "split-again"]


def mutate(draw: st.DrawFn, case: Case) -> None:
    kind, pages = case.kind, case.pages
    page = draw(st.integers(0, len(pages) - 1))
    scan = pages[page].get("imageScanFindings")
    items = _items(case)
    what = draw(st.sampled_from(MUTATIONS))
    if what in ("drop-list", "null-list") and isinstance(scan, dict):
        if what == "drop-list":
            scan.pop(kind.key, None)
        else:
            scan[kind.key] = None
    elif what == "drop-scan-findings":
        pages[page].pop("imageScanFindings", None)
    elif what == "drop-counts" and isinstance(scan, dict):
        scan.pop("findingSeverityCounts", None)
    elif what == "drop-all-counts":
        for body in pages:
            (body.get("imageScanFindings") or {}).pop("findingSeverityCounts", None)
    elif what == "alter-count" and isinstance(scan, dict):
        counts = scan.setdefault("findingSeverityCounts", {})
        key = draw(st.sampled_from(sorted(ENHANCED | {"BOGUS", "TOTAL"})))
        value = draw(st.integers(0, 5).filter(lambda v: v != counts.get(key, 0)))
        counts[key] = value
    elif what in ("undefined-severity", "remove-key", "remove-attribute", "case") and items:
        holder, index = draw(st.sampled_from(items))
        finding = holder[index]
        if what == "undefined-severity":
            values = UNDEFINED_STRINGS + (["UNTRIAGED"] if kind is BASIC_KIND else [])
            finding["severity"] = draw(st.sampled_from(values))
        elif what == "remove-key":
            finding.pop(draw(st.sampled_from(kind.removable)), None)
        elif what == "remove-attribute":
            nested = finding.get("attributes") or (finding.get("packageVulnerabilityDetails")
                                                   or {}).get("vulnerablePackages")
            if isinstance(nested, list) and nested:
                entry = nested[draw(st.integers(0, len(nested) - 1))]
                if isinstance(entry, dict) and entry:
                    entry.pop(draw(st.sampled_from(sorted(entry))))
        elif isinstance(finding.get("severity"), str):
            finding["severity"] = draw(st.sampled_from([
                str.lower, str.title, lambda s: f" {s} "]))(finding["severity"])
    elif what == "duplicate" and items:
        holder, index = draw(st.sampled_from(items))
        holder.insert(index, copy.deepcopy(holder[index]))
    elif what == "remove-finding" and items:
        holder, index = draw(st.sampled_from(items))
        del holder[index]
    elif what == "token":
        case.token = draw(st.sampled_from(["repeat", "refused"]))
    elif what == "drop-status":
        target = draw(st.sampled_from(["first", "all"]))
        for body in pages if target == "all" else pages[:1]:
            body.pop("imageScanStatus", None)
    elif what == "split-again":
        return  # a no-op draw: keeps some examples faithful after several draws
    else:
        return
    case.done.append(what)


# --- moto serving the pages (ECR pages findings; moto does not) --------------------------------

SERVED: dict[str, list[dict[str, Any]]] = {}  # digest → its pages


@contextlib.contextmanager
def pages_served() -> Iterator[None]:
    """While active, DescribeImageScanFindings of a digest in SERVED answers with its pages:
    the first without a token, page-N for the next ones; "loop-N" serves page N again (a token
    repeated), any other token is refused as ECR refuses a bad one."""
    from moto.core.responses import ActionResult
    from moto.ecr.exceptions import InvalidParameterException
    from moto.ecr.responses import ECRResponse

    original = ECRResponse.describe_image_scan_findings

    def served(self: ECRResponse) -> ActionResult:
        result = original(self)  # moto's own checks: repository, image, a scan result
        digest = (self._get_param("imageId") or {}).get("imageDigest")
        pages = SERVED.get(digest)
        if pages is None:
            return result
        token = self._get_param("nextToken")
        number = 0
        if token:
            prefix, _, index = str(token).rpartition("-")
            if prefix not in ("page", "loop") or not index.isdigit() or int(index) >= len(pages):
                raise InvalidParameterException("Invalid parameter at 'nextToken'")
            number = int(index)
        ids = {k: v for k, v in result.result.items()  # type: ignore[union-attr]
               if k in ("registryId", "repositoryName", "imageId")}
        return ActionResult({**copy.deepcopy(pages[number]), **ids})

    ECRResponse.describe_image_scan_findings = served  # type: ignore[method-assign]
    try:
        yield
    finally:
        ECRResponse.describe_image_scan_findings = original  # type: ignore[method-assign]


def served_pages(case: Case) -> list[dict[str, Any]]:
    pages = copy.deepcopy(case.pages)
    if case.token == "repeat":  # back to the page after the first (the first, if alone)
        pages[-1]["nextToken"] = f"loop-{min(1, len(pages) - 1)}"
    elif case.token == "refused":
        pages[-1]["nextToken"] = "expired-token"
    return pages


# --- the world, reused by every example of a property ------------------------------------------

@dataclass
class Gate:
    world: World
    context: LambdaContext
    repository: str
    seeds: Iterator[int] = field(default_factory=itertools.count)
    stats: Counter[str] = field(default_factory=Counter)

    def image(self) -> str:
        """A new image (its own digest) in the repository."""
        return self.world.push(self.repository, "v1", seed=f"example-{next(self.seeds)}")

    def stored(self, digest: str) -> str | None:
        item = self.world.session.client("dynamodb").get_item(
            TableName=self.world.config.table_name, ConsistentRead=True,
            Key={"pk": {"S": f"IMAGE#{self.repository}@{digest}"},
                 "sk": {"S": "VERDICT"}}).get("Item")
        return None if item is None else str(TypeDeserializer().deserialize(item["state"]))


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Given the gatekeeper deployed in an in-process moto account, no policy published (the
    built-in strict policy judges), and the handlers' environment pointing at it."""
    with mock_aws(), pages_served():
        world = make_world()
        # (the built-in policy judges: nothing to re-read from the bucket for each example)
        for name, value in {**world.environment(),
                            "GATEKEEPER_POLICY_CACHE_SECONDS": "3600"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(runtime, "gatekeeper", functools.cache(
            lambda: runtime.build(Config.from_env(), world.session)))
        level = logger.log_level
        logger.setLevel(logging.WARNING)  # hundreds of examples: their INFO lines cost seconds
        context = LambdaContext("gatekeeper-properties", 256,
                                "arn:aws:lambda:us-east-1:123456789012:function:properties",
                                "0b4e8f3a-6a52-4d0e-b3a5-1c7e2f9d8a61")
        try:
            yield Gate(world, context, world.repository("team-a/web"))
        finally:
            logger.setLevel(level)
            SERVED.clear()
            metrics.clear_metrics()


def scan_event(kind: Kind, repository: str, digest: str) -> dict[str, Any]:
    if kind is BASIC_KIND:
        return load_event("ecr-image-scan-complete", repository_name=repository,
                          image_digest=digest, image_tags=["v1"])
    arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repository}"
    return load_event("inspector2-scan", repository_name=arn, image_digest=digest,
                      image_tags=["v1"])


def judge(gate: Gate, case: Case) -> None:
    # Given a new image whose scan answers with these (mutated) pages
    digest = gate.image()
    pages = served_pages(case)
    set_scan_result(gate.repository, digest, pages[0], ACCOUNT, REGION)
    SERVED[digest] = pages

    # When the scan event reaches the on_scan handler
    result = on_scan(scan_event(case.kind, gate.repository, digest), gate.context)

    # Then the stored verdict and the image's tags are what the responses allow
    stored, tags = gate.stored(digest), gate.world.tags(gate.repository, digest)
    approved, quarantined = f"approved-{digest[7:19]}", f"quarantined-{digest[7:19]}"
    why = case.verdict_forbids_approval()
    context = (f"pages={json.dumps(pages)[:3000]} done={case.done} token={case.token} "
               f"result={result} stored={stored} tags={tags}")
    if why:
        gate.stats["must not approve"] += 1
        gate.stats.update(f"  {reason}" for reason in why)
        assert result.get("verdict") == "QUARANTINED", f"approved despite {why}: {context}"
        assert stored == "QUARANTINED", context
        assert approved not in tags and quarantined in tags, context
    else:
        expected = case.expected_approval()
        gate.stats["complete and clean"] += 1
        assert (result.get("verdict"), stored) == (expected, expected), context
        assert approved in tags and quarantined not in tags, context
    gate.stats["examples"] += 1
    SERVED.pop(digest, None)


def report(name: str, stats: Counter[str]) -> None:
    print(f"\n{name}: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items())))
    # the generator must have exercised both sides of the property, every time
    assert stats["examples"] >= EXAMPLES
    assert stats["must not approve"] >= EXAMPLES // 10
    assert stats["complete and clean"] >= EXAMPLES // 10


@pytest.mark.parametrize(("name", "kind"), [("basic", BASIC_KIND), ("enhanced", ENHANCED_KIND)],
                         ids=["basic", "enhanced"])
def test_scan_findings_never_approve_what_is_blocked_or_unread(gate: Gate, name: str,
                                                                kind: Kind) -> None:
    @PROPERTY
    @given(case=cases(kind))
    def examples(case: Case) -> None:
        judge(gate, case)

    examples()
    report(name, gate.stats)


# --- the same pages, saved and judged offline by `gatekeeper evaluate` -------------------------

def evaluate(folder: Path, text: str) -> tuple[int, str, str]:
    findings = folder / "findings.json"
    findings.write_text(text, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gatekeeper_cli(["evaluate", "--findings", str(findings),
                               "--repository", "team-a/web", "--format", "json"])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working folder: no ./policy.yaml, so the built-in strict policy judges."""
    with tempfile.TemporaryDirectory() as name:
        monkeypatch.chdir(name)
        yield Path(name)


def test_evaluate_never_exits_0_on_incomplete_or_undefined_input(folder: Path) -> None:
    stats: Counter[str] = Counter()

    @PROPERTY
    @given(case=st.sampled_from([BASIC_KIND, ENHANCED_KIND]).flatmap(cases),
           layout=st.sampled_from(["concatenated", "list"]))
    def examples(case: Case, layout: str) -> None:
        # Given the mutated pages saved as the AWS CLI prints them (a token left: on the last)
        pages = copy.deepcopy(case.pages)
        if case.token:
            pages[-1]["nextToken"] = "eyJ0b2tlbiI6ICJtb3JlIn0="
        text = (json.dumps(pages) if layout == "list"
                else "\n".join(json.dumps(p, indent=2) for p in pages))

        # When `gatekeeper evaluate` judges them
        code, out, err = evaluate(folder, text)

        # Then incomplete or undefined input is refused (exit 2), never approved
        why = case.verdict_forbids_approval()
        blocked_only = why and set(why) <= {"a blocking finding in the responses",
                                            "a blocked truth whose counts survive"}
        context = f"{layout} pages={text[:3000]} done={case.done} code={code} err={err}"
        if not why:
            stats["complete and clean"] += 1
            expected = 3 if case.expected_approval() == "APPROVED_WITH_WARNINGS" else 0
            assert (code, err) == (expected, ""), context
            assert json.loads(out)["outcome"] == case.expected_approval(), context
        elif blocked_only:
            stats["blocked"] += 1
            assert (code, err) == (1, ""), context
            assert json.loads(out)["outcome"] == "QUARANTINED", context
        else:
            stats["incomplete or undefined"] += 1
            assert (code, out) == (2, ""), context
            assert err.startswith(f"gatekeeper: {folder / 'findings.json'}: "), context
            stats["  refused as incomplete"] += "the findings are incomplete" in err
        stats["examples"] += 1

    examples()
    print("\nevaluate: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.items())))
    assert stats["examples"] >= EXAMPLES
    assert min(stats["complete and clean"], stats["blocked"],
               stats["incomplete or undefined"]) >= EXAMPLES // 20
