"""Reading AdmissionReview v1 requests and answering them (gatekeeper.domain.kubernetes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.admission import Decision
from gatekeeper.domain.kubernetes import (
    POD_SPEC_PATHS,
    Container,
    MalformedReview,
    Unsupported,
    Workload,
    answer,
    read_review,
    refusal,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kubernetes"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
WEB = f"{ECR}/team-a/web@sha256:" + "1" * 64
API = f"{ECR}/team-b/api:2.0.0"
MIGRATE = f"{ECR}/team-a/migrate@sha256:" + "2" * 64
DEBUG = "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2"
KINDS = {"pod-create": ("Pod", "web-7c9f8d6b5d-*"), "deployment-create": ("Deployment", "web"),
         "statefulset-create": ("StatefulSet", "db"),
         "daemonset-create": ("DaemonSet", "node-agent"),
         "replicaset-create": ("ReplicaSet", "web-7c9f8d6b5d"),
         "job-create": ("Job", "report"), "cronjob-create": ("CronJob", "nightly")}


def review(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def allow(*images: str) -> dict[str, Decision]:
    return {image: Decision(True, image, "approved") for image in images}


def test_the_fixtures_cover_every_kind_the_domain_reads() -> None:
    read = {(r["request"]["kind"]["group"], r["request"]["kind"]["kind"])
            for r in map(review, KINDS)}
    assert read == set(POD_SPEC_PATHS)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_workload_kind_gives_its_containers(name: str) -> None:
    # Given the AdmissionReview the API server sends for a new object of this kind
    document = review(name)

    # When it is read
    read = read_review(document)

    # Then its uid, kind, place and every container image, init containers included
    kind, object_name = KINDS[name]
    assert read.uid == document["request"]["uid"]
    assert read.subject == Workload(kind, "shop", object_name, (
        Container("initContainers", "migrate", MIGRATE),
        Container("containers", "web", WEB),
        Container("containers", "api", API)))
    assert read.subject.images == (MIGRATE, WEB, API)


def test_ephemeral_containers_are_read_too() -> None:
    # Given kubectl debug adding an ephemeral container to a running Pod
    read = read_review(review("pod-ephemeral-containers"))

    # Then the ephemeral container is the one to check (the others run already)
    assert isinstance(read.subject, Workload)
    assert read.operation == "UPDATE"
    assert read.subject.to_check == (
        Container("ephemeralContainers", "debugger-x7k2q", DEBUG),)
    assert read.subject.images == (DEBUG,)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_image_allowed_is_an_allowed_answer_with_the_same_uid(name: str) -> None:
    read = read_review(review(name))
    assert answer(read, allow(MIGRATE, WEB, API)) == {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": read.uid, "allowed": True}}


def test_a_denial_names_each_refused_container_its_image_and_reason() -> None:
    # Given a Deployment whose api image is quarantined and whose migrate image has no verdict
    read = read_review(review("deployment-create"))
    decisions = {**allow(WEB), API: Decision(False, API, "quarantined: CRITICAL: 1"),
                 MIGRATE: Decision(False, MIGRATE, "no verdict for this image")}

    # When answered
    response = answer(read, decisions)["response"]

    # Then refused (403), and the message names both containers, their images and reasons
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"] == (
        "image gatekeeper refused Deployment shop/web: "
        f"init container migrate image {MIGRATE}: no verdict for this image; "
        f"container api image {API}: quarantined: CRITICAL: 1")


def updated(image: str = API) -> dict[str, Any]:
    """kubectl apply of the Deployment again: the old object is the current one."""
    document = review("deployment-create")
    request = document["request"]
    request.update(operation="UPDATE", oldObject=copy.deepcopy(request["object"]))
    request["options"] = {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    request["object"]["spec"]["replicas"] = 5
    request["object"]["spec"]["template"]["spec"]["containers"][1]["image"] = image
    return document


def test_an_update_that_runs_no_new_image_is_allowed_unasked() -> None:
    # Given a Deployment scaled by kubectl apply, its images as before
    read = read_review(updated())

    # Then no image is to check, and the answer allows it
    assert isinstance(read.subject, Workload)
    assert read.subject.images == ()
    assert answer(read, {})["response"]["allowed"] is True


def test_an_update_checks_the_images_it_changes() -> None:
    # Given a Deployment whose api container moves to a new image
    new = f"{ECR}/team-b/api:2.1.0"
    read = read_review(updated(new))

    # Then only that image is checked, and its refusal names the container
    assert read.subject.images == (new,)
    response = answer(read, {new: Decision(False, new, "no verdict")})["response"]
    assert response["status"]["message"] == (
        f"image gatekeeper refused Deployment shop/web: container api image {new}: no verdict")


def test_an_update_whose_old_object_cannot_be_read_checks_every_image() -> None:
    document = updated()
    document["request"]["oldObject"]["spec"] = "?"
    assert read_review(document).subject.images == (MIGRATE, WEB, API)


def test_an_image_without_a_decision_is_refused() -> None:
    read = read_review(review("pod-create"))
    response = answer(read, allow(WEB, API))["response"]
    assert response["allowed"] is False
    assert "init container migrate" in response["status"]["message"]
    assert "no decision for this image" in response["status"]["message"]


def test_a_long_denial_is_counted_not_listed() -> None:
    document = review("pod-create")
    document["request"]["object"]["spec"]["containers"] = [
        {"name": f"c{i}", "image": f"{ECR}/repo{i}:v1"} for i in range(30)]
    response = answer(read_review(document), {})["response"]
    assert response["status"]["message"].endswith("; and 11 more")
    assert len(response["status"]["message"]) <= 4000


def test_another_kind_is_allowed_with_a_warning() -> None:
    # Given a Service (which the manifest's rules never send)
    document = review("deployment-create")
    document["request"]["kind"] = {"group": "", "version": "v1", "kind": "Service"}
    document["request"]["object"] = {"kind": "Service", "spec": {}}

    # When read and answered
    read = read_review(document)
    response = answer(read, {})["response"]

    # Then allowed, with a warning saying it was not checked
    assert isinstance(read.subject, Unsupported)
    assert response["allowed"] is True
    assert response["warnings"] == [
        "the image gatekeeper does not check Service objects: allowed unchecked"]


def test_a_delete_runs_nothing_and_is_allowed() -> None:
    document = review("deployment-create")
    document["request"].update(operation="DELETE", object=None)
    response = answer(read_review(document), {})["response"]
    assert response["allowed"] is True and response["warnings"]


def broken(path: str, value: Any) -> dict[str, Any]:
    """The Deployment review with the value at ``path`` (dots) replaced (None: removed)."""
    document = copy.deepcopy(review("deployment-create"))
    *parents, last = path.split(".")
    node: Any = document
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    key: Any = int(last) if isinstance(node, list) else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return document


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("request.object", None, "request.object is not a Deployment"),
    ("request.object.spec.template", None, "spec.template is not an object"),
    ("request.object.spec.template.spec.containers", "web", "containers is not a list"),
    ("request.object.spec.template.spec.containers.0.image", None, "(web) names no image"),
    ("request.object.spec.template.spec.containers.1", 7, "containers[1] is not a container"),
    ("request.operation", None, "request.operation is not set"),
    ("request.kind", "Deployment", "request.kind is not a group/version/kind"),
])
def test_a_malformed_request_with_a_uid_is_refused_with_its_reason(
        path: str, value: Any, reason: str) -> None:
    # Given a review whose object cannot be read
    document = broken(path, value)

    # When read, then MalformedReview with the uid to answer and the reason
    with pytest.raises(MalformedReview) as raised:
        read_review(document)
    assert raised.value.uid == "6f1a9c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"
    assert reason in str(raised.value)

    # And its answer is a denial (fail closed)
    response = refusal(raised.value.uid, str(raised.value))["response"]
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("image gatekeeper: ")


def test_a_pod_spec_without_containers_is_malformed() -> None:
    document = review("pod-create")
    spec = document["request"]["object"]["spec"]
    del spec["containers"], spec["initContainers"]
    with pytest.raises(MalformedReview, match="has no containers"):
        read_review(document)


@pytest.mark.parametrize("document", [
    [], "x", {}, {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": ""}},
])
def test_a_review_without_a_uid_cannot_be_answered(document: Any) -> None:
    with pytest.raises(MalformedReview) as raised:
        read_review(document)
    assert raised.value.uid is None
