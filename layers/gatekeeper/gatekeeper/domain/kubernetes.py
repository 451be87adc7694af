"""Kubernetes admission reviews: which images a Pod or a workload would run, and the answer.

A validating admission webhook receives an ``AdmissionReview`` (``admission.k8s.io/v1``) for
each object the ValidatingWebhookConfiguration's rules select, and answers one with the same
``uid``. :func:`read_review` reads the request: the object's kind, namespace and name, and
every container image of its pod spec (``containers``, ``initContainers`` and
``ephemeralContainers``), for a Pod and for the pod templates of Deployments, StatefulSets,
DaemonSets, ReplicaSets, Jobs and CronJobs (``spec.jobTemplate.spec.template.spec``).
:func:`answer` turns one decision per image into the response, a denial naming each refused
container. An UPDATE that runs no new image (a label, a finalizer, a replica count changed) is
allowed: it changes nothing the gate judges, and refusing it would stop controllers from
maintaining workloads already running; new pods are still checked at their CREATE. A review
that cannot be read is refused with its reason (:func:`refusal`): the webhook fails closed.
An object of another kind, which the manifest's rules never send, is allowed with a warning
(:class:`Unsupported`): it runs no container this module can see.

Pure: plain dictionaries in, plain dictionaries out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gatekeeper.domain.admission import Decision

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
DENIED_CODE = 403  # the HTTP status the API server reports with a denial
MAX_LISTED = 20  # refused containers named in a denial; the rest are counted
MAX_MESSAGE = 4000  # characters of a denial's message

# (API group, kind) -> the path from the object to its pod spec.
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
# The operations that make containers run; any other (DELETE, CONNECT) runs nothing new.
RUNNING_OPERATIONS = frozenset({"CREATE", "UPDATE"})


class MalformedReview(ValueError):
    """Not an AdmissionReview v1 request this webhook can read (the message says why).

    ``uid`` is the request's uid when it could be read: the review is then answered, refused
    with the reason; without it there is nobody to answer (HTTP 400)."""

    def __init__(self, reason: str, uid: str | None = None) -> None:
        super().__init__(reason)
        self.uid = uid


@dataclass(frozen=True)
class Container:
    field: str  # containers, initContainers or ephemeralContainers
    name: str
    image: str

    def describe(self) -> str:
        kind = {"containers": "container", "initContainers": "init container",
                "ephemeralContainers": "ephemeral container"}[self.field]
        return f"{kind} {self.name}"


@dataclass(frozen=True)
class Workload:
    """The object under review: what it is, where, and the containers it would run."""

    kind: str
    namespace: str | None
    name: str
    containers: tuple[Container, ...]
    # An UPDATE's containers that the old object already had (same field, name and image):
    # they run already, and an update that adds no other runs nothing new.
    unchanged: frozenset[Container] = frozenset()

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @property
    def to_check(self) -> tuple[Container, ...]:
        """The containers whose images the gate must allow: all but the unchanged ones."""
        return tuple(c for c in self.containers if c not in self.unchanged)

    @property
    def images(self) -> tuple[str, ...]:
        """Each image to check once, in the order the containers name them."""
        return tuple(dict.fromkeys(c.image for c in self.to_check))


@dataclass(frozen=True)
class Unsupported:
    """An object of a kind this webhook does not read, or an operation that runs nothing."""

    warning: str


@dataclass(frozen=True)
class Review:
    uid: str
    operation: str
    namespace: str | None
    subject: Workload | Unsupported


def read_review(document: object) -> Review:
    """The request of an AdmissionReview v1; :class:`MalformedReview` when it is not one."""
    if not isinstance(document, Mapping):
        raise MalformedReview("the body is not a JSON object")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise MalformedReview(f"not an {KIND} {API_VERSION} (apiVersion "
                              f"{_shown(document.get('apiVersion'))}, kind "
                              f"{_shown(document.get('kind'))})")
    request = document.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview(f"the {KIND} has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid.strip():
        raise MalformedReview("the request has no uid")
    try:
        return _read_request(uid, request)
    except MalformedReview as err:
        raise MalformedReview(str(err), uid) from None


def _read_request(uid: str, request: Mapping[str, Any]) -> Review:
    operation = _text(request.get("operation"), "request.operation")
    namespace = _optional_text(request.get("namespace"), "request.namespace")
    kind = request.get("kind")
    if not isinstance(kind, Mapping):
        raise MalformedReview("request.kind is not a group/version/kind")
    group = _optional_text(kind.get("group"), "request.kind.group") or ""
    name_of_kind = _text(kind.get("kind"), "request.kind.kind")
    path = POD_SPEC_PATHS.get((group, name_of_kind))
    if path is None:
        shown = f"{group}/{name_of_kind}" if group else name_of_kind
        return Review(uid, operation, namespace, Unsupported(
            f"the image gatekeeper does not check {shown} objects: allowed unchecked"))
    if operation not in RUNNING_OPERATIONS:
        return Review(uid, operation, namespace, Unsupported(
            f"the image gatekeeper checks only CREATE and UPDATE, not {operation}"))
    body = request.get("object")
    if not isinstance(body, Mapping):
        raise MalformedReview(f"request.object is not a {name_of_kind}")
    metadata = body.get("metadata") if body.get("metadata") is not None else {}
    if not isinstance(metadata, Mapping):
        raise MalformedReview("object.metadata is not an object")
    namespace = namespace or _optional_text(metadata.get("namespace"), "metadata.namespace")
    name = (_optional_text(request.get("name"), "request.name")
            or _optional_text(metadata.get("name"), "metadata.name"))
    if not name:  # a Pod a controller creates has only a generateName when it is reviewed
        prefix = _optional_text(metadata.get("generateName"), "metadata.generateName")
        name = f"{prefix}*" if prefix else "(unnamed)"
    spec = _walk(body, path, name_of_kind)
    containers = tuple(_containers(spec, ".".join(path)))
    unchanged = frozenset(containers) & _previous(request, path, name_of_kind, operation)
    return Review(uid, operation, namespace,
                  Workload(name_of_kind, namespace, name, containers, unchanged))


def _previous(request: Mapping[str, Any], path: tuple[str, ...], kind: str,
              operation: str) -> frozenset[Container]:
    """The containers of an UPDATE's old object (none when it cannot be read: all checked)."""
    old = request.get("oldObject")
    if operation != "UPDATE" or not isinstance(old, Mapping):
        return frozenset()
    try:
        return frozenset(_containers(_walk(old, path, kind), "oldObject"))
    except MalformedReview:
        return frozenset()


def _walk(body: Mapping[str, Any], path: tuple[str, ...], kind: str) -> Mapping[str, Any]:
    node: Any = body
    for depth, key in enumerate(path):
        node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            where = ".".join(path[:depth + 1])
            raise MalformedReview(f"the {kind} has no pod spec: {where} is not an object")
    return node


def _containers(spec: Mapping[str, Any], where: str) -> Iterable[Container]:
    found = False
    for field in CONTAINER_FIELDS:
        listed = spec.get(field)
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise MalformedReview(f"{where}.{field} is not a list")
        for index, container in enumerate(listed):
            at = f"{where}.{field}[{index}]"
            if not isinstance(container, Mapping):
                raise MalformedReview(f"{at} is not a container")
            name = _optional_text(container.get("name"), f"{at}.name") or f"#{index}"
            image = container.get("image")
            if not isinstance(image, str) or not image.strip():
                raise MalformedReview(f"{at} ({name}) names no image")
            found = True
            yield Container(field, name, image.strip())
    if not found:
        raise MalformedReview(f"{where} has no containers")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedReview(f"{where} is not set")
    return value


def _optional_text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedReview(f"{where} is not a string")
    return value or None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the answer ------------------------------------------------------------------------------

def response(uid: str, allowed: bool, message: str | None = None,
             warnings: Iterable[str] = ()) -> dict[str, Any]:
    """An AdmissionReview v1 response for ``uid``; a denial carries its message (403)."""
    answer: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        answer["status"] = {"code": DENIED_CODE, "message": _cut(message or "denied")}
    elif message:
        answer["status"] = {"code": 200, "message": _cut(message)}
    listed = [_cut(w, 256) for w in warnings]
    if listed:
        answer["warnings"] = listed
    return {"apiVersion": API_VERSION, "kind": KIND, "response": answer}


def refusal(uid: str, reason: str) -> dict[str, Any]:
    """The denial of a review the webhook could not judge (fail closed)."""
    return response(uid, False, f"image gatekeeper: {' '.join(reason.split())}")


def answer(review: Review, decisions: Mapping[str, Decision]) -> dict[str, Any]:
    """The response to ``review``, given the decision for each of its images.

    Allowed only when every container's image is allowed (of an UPDATE, every container it
    adds or changes: the others run already); a denial names each refused
    container (kind namespace/name, container, image and reason). An image without a decision
    is refused (fail closed)."""
    subject = review.subject
    if isinstance(subject, Unsupported):
        return response(review.uid, True, warnings=[subject.warning])
    refused = []
    for container in subject.to_check:
        decision = decisions.get(container.image)
        if decision is None or not decision.allowed:
            reason = decision.reason if decision is not None else "no decision for this image"
            refused.append(f"{container.describe()} image {container.image}: "
                           f"{' '.join(reason.split())}")
    if not refused:
        return response(review.uid, True)
    listed = refused[:MAX_LISTED]
    if len(refused) > MAX_LISTED:
        listed.append(f"and {len(refused) - MAX_LISTED} more")
    return response(review.uid, False,
                    f"image gatekeeper refused {subject.describe()}: " + "; ".join(listed))


def _cut(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
