"""OpenVEX documents: a supplier's word that an image is not affected by a vulnerability.

A policy names VEX documents (``vex:``, and ``vex_prefix:`` for the deployed stack); their
``not_affected`` and ``fixed`` statements for a vulnerability and a product act as exceptions,
shown in the verdict with their justification (``excepted by VEX <document @id>:
not_affected (vulnerable_code_not_in_execute_path)``). ``affected`` and
``under_investigation`` never exempt, and when several statements cover one finding the latest
one (by statement timestamp, else its document's) decides, a non-exempting one on a tie.

OpenVEX v0.2.0 (https://openvex.dev/ns/v0.2.0), checked here: the document's ``@context``,
``@id``, ``author``, ``timestamp``, ``version`` and ``statements[]``; each statement's
``vulnerability`` (``name`` or ``@id``, ``aliases``), ``products[]`` (``@id`` or
``identifiers``; ``subcomponents[]``), ``status`` (not_affected, affected, fixed,
under_investigation), a ``justification`` (or an ``impact_statement``) for not_affected and
an ``action_statement`` for affected. A document that breaks any of these is a
:class:`~gatekeeper.domain.policy.PolicyError` naming the document, the statement and what
is wrong: the policy then fails to load, like any broken policy, and approves nothing.

A product names:

- an image by digest: ``pkg:oci/web@sha256%3A...`` (its ``repository_url`` must then be
  the image's repository too), an image reference with a digest, or a bare digest;
- a repository: ``pkg:oci/web?repository_url=<registry>/team-a/web`` or a reference without
  tag or digest (``<registry>/team-a/web``); every image of the repository;
- a package: any other purl (``pkg:deb/debian/openssl@3.0.11-1``), in every image.

Its ``subcomponents`` (purls) narrow an image or repository product to those packages. A
reference by tag names no image (tags move) and is refused; identifiers this does not read
(a CPE) match nothing, which only ever makes verdicts stricter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from urllib.parse import unquote

from gatekeeper.domain.findings import Finding, parse_timestamp
from gatekeeper.domain.images import DIGEST, ImageNameError, parse_image
from gatekeeper.domain.policy_errors import PolicyError, PolicyIssue

CONTEXT = "https://openvex.dev/ns"
EXEMPTING = frozenset({"not_affected", "fixed"})
STATUSES = ("not_affected", "affected", "fixed", "under_investigation")
JUSTIFICATIONS = ("component_not_present", "vulnerable_code_not_present",
                  "vulnerable_code_not_in_execute_path",
                  "vulnerable_code_cannot_be_controlled_by_adversary",
                  "inline_mitigations_already_exist")
MAX_VEX_BYTES = 5_000_000
_PURL = re.compile(r"pkg:(?P<type>[A-Za-z.+-][A-Za-z0-9.+-]*)/(?P<path>[^@?#]+)"
                   r"(?:@(?P<version>[^?#]+))?(?:\?(?P<qualifiers>[^#]*))?(?:#.*)?")


class VexError(PolicyError):
    """VEX documents that do not validate: the policy naming them is not used either."""

    def __init__(self, issues: Iterable[PolicyIssue]) -> None:
        super().__init__(issues, source="VEX")
        lines = "\n".join("  " + issue.render(self.source) for issue in self.issues)
        self.args = (f"invalid VEX ({len(self.issues)} problem(s)); the policy naming it is "
                     f"not used:\n{lines}",)


@dataclass(frozen=True)
class Package:
    """A package a purl names (its version, when given, must match too)."""

    names: frozenset[str]  # the name, and namespace/name (npm scopes, Maven groups)
    version: str | None = None

    def covers(self, finding: Finding) -> bool:
        return finding.package in self.names and (
            self.version is None or finding.installed_version == self.version)


@dataclass(frozen=True)
class Product:
    """One product of a statement: an image (digest), a repository, or a package."""

    repository: str | None = None
    digest: str | None = None
    package: Package | None = None
    subcomponents: tuple[Package, ...] = ()

    def names_image(self, repository: str, digest: str | None) -> bool:
        if self.package is not None:
            return True  # a package product applies in every image
        if self.digest is not None and self.digest != digest:
            return False
        return self.repository is None or self.repository == repository

    def covers(self, finding: Finding) -> bool:
        if self.package is not None and not self.package.covers(finding):
            return False
        return not self.subcomponents or any(p.covers(finding) for p in self.subcomponents)


@dataclass(frozen=True)
class VexRef:
    """A statement as a verdict reports it."""

    document: str
    status: str
    justification: str | None = None
    impact_statement: str | None = None
    source: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    def describe(self) -> str:
        why = self.justification or (f"impact: {self.impact_statement}"
                                     if self.impact_statement else None)
        return f"excepted by VEX {self.document}: {self.status}" + (f" ({why})" if why else "")


@dataclass(frozen=True)
class Statement:
    vulnerabilities: frozenset[str]  # upper-cased: name, @id and aliases
    products: tuple[Product, ...]
    status: str
    timestamp: datetime | None
    ref: VexRef

    @property
    def exempts(self) -> bool:
        return self.status in EXEMPTING


@dataclass(frozen=True)
class VexDocument:
    id: str
    source: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class ImageStatements:
    """The statements that name one image, by vulnerability id (upper-cased)."""

    by_id: Mapping[str, tuple[tuple[Statement, Product], ...]]

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def exempting(self, finding: Finding) -> VexRef | None:
        """The statement that exempts ``finding``, if the latest that covers it does."""
        candidates = self.by_id.get(finding.key)
        if not candidates:
            return None
        covering = [s for s, product in candidates if product.covers(finding)]
        if not covering:
            return None
        latest = max(covering, key=_order)
        return latest.ref if latest.exempts else None


def _order(statement: Statement) -> tuple[float, int]:
    stamp = statement.timestamp.timestamp() if statement.timestamp else float("-inf")
    return stamp, 0 if statement.exempts else 1  # on a tie the non-exempting one wins


@dataclass(frozen=True)
class VexIndex:
    """Every statement of a policy's VEX documents."""

    documents: tuple[VexDocument, ...] = ()
    _cache: dict[tuple[str, str | None], ImageStatements] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def for_image(self, repository: str, digest: str | None) -> ImageStatements:
        key = (repository, digest)
        found = self._cache.get(key)
        if found is None:
            by_id: dict[str, list[tuple[Statement, Product]]] = {}
            for document in self.documents:
                for statement in document.statements:
                    for product in statement.products:
                        if product.names_image(repository, digest):
                            for name in statement.vulnerabilities:
                                by_id.setdefault(name, []).append((statement, product))
            found = ImageStatements({k: tuple(v) for k, v in by_id.items()})
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found


# --- reading ---------------------------------------------------------------------------------

def load_documents(named: Iterable[tuple[str, str | bytes]]) -> VexIndex:
    """The documents ``(name, text)``; VexError listing every problem of every one."""
    documents, issues = [], []
    for name, text in named:
        found, problems = _document(name, text)
        issues += [PolicyIssue(f"{name}: {path}" if path else name, message)
                   for path, message in problems]
        if found is not None:
            documents.append(found)
    if issues:
        raise VexError(issues)
    return VexIndex(tuple(documents))


def _document(name: str, text: str | bytes) -> tuple[VexDocument | None,
                                                       list[tuple[str, str]]]:
    if len(text) > MAX_VEX_BYTES:
        return None, [("", f"larger than {MAX_VEX_BYTES} bytes")]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        return None, [("", f"not JSON: {err}")]
    problems: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return None, [("", f"an OpenVEX document is a JSON object, got {type(data).__name__}")]
    context = data.get("@context")
    if not isinstance(context, str) or not context.startswith(CONTEXT):
        problems.append(("@context", f"expected the OpenVEX context {CONTEXT}/v0.2.0, got "
                                     f"{context!r:.80}"))
    for key in ("@id", "author"):
        if not _text(data.get(key)):
            problems.append((key, "missing; a non-empty string is required"))
    stamp = _timestamp(data.get("timestamp"))
    if stamp is None:
        problems.append(("timestamp", "missing or not an ISO 8601 date-time"))
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(("version", f"expected a whole number >= 1, got {version!r:.40}"))
    raw = data.get("statements")
    if not isinstance(raw, list):
        problems.append(("statements", "missing; a list of statements is required"))
        raw = []
    document_id = _text(data.get("@id")) or name
    statements = []
    for index, item in enumerate(raw):
        statement = _statement(item, f"statements[{index}]", document_id, name, stamp,
                               problems)
        if statement is not None:
            statements.append(statement)
    if problems:
        return None, problems
    return VexDocument(document_id, name, tuple(statements)), []


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _timestamp(value: object) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None


def _statement(item: object, where: str, document: str, source: str,
               document_stamp: datetime | None,
               problems: list[tuple[str, str]]) -> Statement | None:
    if not isinstance(item, dict):
        problems.append((where, "a statement is an object"))
        return None
    before = len(problems)
    vulnerability = item.get("vulnerability")
    names: set[str] = set()
    if isinstance(vulnerability, dict):
        for key in ("name", "@id"):
            if _text(vulnerability.get(key)):
                names.add(vulnerability[key].strip().upper())
        aliases = vulnerability.get("aliases", [])
        if not isinstance(aliases, list) or not all(_text(a) for a in aliases):
            problems.append((f"{where}.vulnerability.aliases", "expected a list of ids"))
        else:
            names.update(a.strip().upper() for a in aliases)
    if not names:
        problems.append((f"{where}.vulnerability",
                         "missing; an object with a 'name' (e.g. CVE-2024-5535) is required"))
    status = item.get("status")
    if status not in STATUSES:
        problems.append((f"{where}.status",
                         f"expected one of: {', '.join(STATUSES)}; got {status!r:.40}"))
    justification = item.get("justification")
    impact = _text(item.get("impact_statement"))
    if justification is not None and justification not in JUSTIFICATIONS:
        problems.append((f"{where}.justification", f"expected one of: "
                         f"{', '.join(JUSTIFICATIONS)}; got {justification!r:.60}"))
    if status == "not_affected" and justification is None and impact is None:
        problems.append((f"{where}.justification", "a not_affected statement needs a "
                         "justification or an impact_statement"))
    if status == "affected" and not _text(item.get("action_statement")):
        problems.append((f"{where}.action_statement",
                         "an affected statement needs an action_statement"))
    stamp = document_stamp
    if "timestamp" in item:
        stamp = _timestamp(item["timestamp"])
        if stamp is None:
            problems.append((f"{where}.timestamp", "not an ISO 8601 date-time"))
    products = _products(item.get("products"), f"{where}.products", problems)
    if len(problems) > before:
        return None
    return Statement(
        vulnerabilities=frozenset(names), products=products, status=status, timestamp=stamp,
        ref=VexRef(document=document, status=status,
                   justification=justification, impact_statement=impact, source=source))


def _products(raw: object, where: str, problems: list[tuple[str, str]]) -> tuple[Product, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append((where, "missing; a statement names at least one product (an image "
                                "digest, a repository or a package purl)"))
        return ()
    products = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        ids = _identifiers(item, at, problems)
        subcomponents = []
        raw_subs = item.get("subcomponents", []) if isinstance(item, dict) else []
        if not isinstance(raw_subs, list):
            problems.append((f"{at}.subcomponents", "expected a list"))
            raw_subs = []
        for number, sub in enumerate(raw_subs):
            sub_at = f"{at}.subcomponents[{number}]"
            packages = [p for p in (_package(i) for i in _identifiers(sub, sub_at, problems))
                        if p is not None]
            if not packages and isinstance(sub, dict):
                problems.append((sub_at, "names no package purl (pkg:TYPE/NAME@VERSION)"))
            subcomponents.extend(packages)
        for identifier in ids:
            try:
                product = _product(identifier)
            except ValueError as err:
                problems.append((at, str(err)))
                continue
            if product is not None:
                products.append(Product(product.repository, product.digest, product.package,
                                        tuple(subcomponents)))
    return tuple(products)


def _identifiers(item: object, at: str, problems: list[tuple[str, str]]) -> list[str]:
    if not isinstance(item, dict):
        problems.append((at, "a product is an object with an '@id' or 'identifiers'"))
        return []
    found = [item["@id"].strip()] if _text(item.get("@id")) else []
    identifiers = item.get("identifiers")
    if isinstance(identifiers, dict):
        found += [v.strip() for v in identifiers.values() if _text(v)]
    elif identifiers is not None:
        problems.append((f"{at}.identifiers", "expected an object (purl, cpe23, cpe22)"))
    if not found:
        problems.append((at, "missing; an '@id' or 'identifiers' is required"))
    return found


# Purl types whose namespace is the distribution (pkg:deb/debian/openssl): scanners name the
# package alone. Elsewhere the namespace is part of the name as scanners write it.
_DISTRO_TYPES = frozenset({"deb", "rpm", "apk", "alpm"})


def _package(identifier: str) -> Package | None:
    """The package a purl names, by each name scanners give it: ``openssl`` for
    ``pkg:deb/debian/openssl``, ``@angular/core`` for ``pkg:npm/%40angular/core``,
    ``org.example:lib`` and ``lib`` for ``pkg:maven/org.example/lib``, the module path for
    ``pkg:golang/...``. Never the name alone of a scoped or namespaced package elsewhere."""
    match = _PURL.fullmatch(identifier)
    if match is None or match["type"].lower() == "oci":
        return None
    kind = match["type"].lower()
    path = [unquote(part) for part in match["path"].strip("/").split("/")]
    name, namespace = path[-1], "/".join(path[:-1])
    if not namespace or kind in _DISTRO_TYPES:
        names = {name}
    elif kind == "maven":
        names = {f"{namespace}:{name}", name}  # Trivy writes group:artifact, Grype artifact
    else:
        names = {f"{namespace}/{name}"}
    version = unquote(match["version"]) if match["version"] else None
    return Package(frozenset(names), version)


def _product(identifier: str) -> Product | None:
    """The image, repository or package ``identifier`` names; None when it is none this
    reads (a CPE); ValueError when it names an image by tag only."""
    match = _PURL.fullmatch(identifier)
    if match is not None and match["type"].lower() == "oci":
        qualifiers = dict(part.partition("=")[::2]
                          for part in (match["qualifiers"] or "").split("&") if part)
        digest = unquote(match["version"]) if match["version"] else None
        if digest is not None and not DIGEST.fullmatch(digest):
            raise ValueError(f"{identifier!r:.120}: an OCI purl's version is the image "
                             "digest (sha256%3A...)")
        url = unquote(qualifiers.get("repository_url", ""))
        repository = _repository(url) if url else None
        if digest is None and repository is None:
            raise ValueError(f"{identifier!r:.120}: names no image: give its digest as the "
                             "version or its repository_url")
        return Product(repository=repository, digest=digest)
    if match is not None:
        return Product(package=_package(identifier))
    if DIGEST.fullmatch(identifier):
        return Product(digest=identifier)
    if identifier.startswith(("cpe:", "http://", "https://")):
        return None
    try:
        image = parse_image(identifier)
    except ImageNameError:
        return None
    if image.digest is None and identifier.rsplit("/", 1)[-1].count(":"):
        raise ValueError(f"{identifier!r:.120}: names an image by tag, and tags move; name "
                         "it by digest, or the repository alone for all its images")
    return Product(repository=image.repository, digest=image.digest)


def _repository(url: str) -> str | None:
    """The repository of a ``repository_url`` (``<registry host>/<repository>``)."""
    try:
        return parse_image(url.removeprefix("https://")).repository
    except ImageNameError:
        return None
