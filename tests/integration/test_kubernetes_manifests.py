"""deploy/kubernetes: the manifests send the webhook what it reads, and wait for its answer.

The ValidatingWebhookConfiguration's rules must select every kind the domain reads (else a
kind would run unchecked), fail closed, wait longer than the server's deadline (else the API
server gives up first), and exempt the webhook's own namespace; the Deployment must run the
command as the CLI parses it, on the port the Service and the webhook call.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.domain.kubernetes import POD_SPEC_PATHS
from gatekeeper_tools.cli import build_parser
from gatekeeper_tools.webhook import MARGIN

ROOT = Path(__file__).resolve().parent.parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The plural resource of each kind the domain reads (group, kind) -> (group, resource).
RESOURCES = {("", "Pod"): "pods", ("apps", "Deployment"): "deployments",
             ("apps", "StatefulSet"): "statefulsets", ("apps", "DaemonSet"): "daemonsets",
             ("apps", "ReplicaSet"): "replicasets", ("batch", "Job"): "jobs",
             ("batch", "CronJob"): "cronjobs"}
EXEMPT = {"key": "gatekeeper.io/exempt", "operator": "NotIn", "values": ["true"]}


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest of the folder by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return documents()


@pytest.fixture(scope="module")
def webhook(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    configuration = manifests[("ValidatingWebhookConfiguration", "ecr-scan-gatekeeper")]
    (only,) = configuration["webhooks"]
    return only


@pytest.fixture(scope="module")
def container(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    deployment = manifests[("Deployment", "gatekeeper-webhook")]
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_the_rules_select_every_kind_the_domain_reads(webhook: dict[str, Any]) -> None:
    # Given the webhook's rules
    selected = {(group, resource) for rule in webhook["rules"]
                for group in rule["apiGroups"] for resource in rule["resources"]
                if rule["apiVersions"] == ["v1"]
                and set(rule["operations"]) == {"CREATE", "UPDATE"}}

    # Then every kind the domain reads is sent on CREATE and UPDATE, ephemeral containers too
    assert set(RESOURCES) == set(POD_SPEC_PATHS)
    expected = {(group, RESOURCES[(group, kind)]) for group, kind in POD_SPEC_PATHS}
    assert expected | {("", "pods/ephemeralcontainers")} == selected


def test_it_fails_closed_and_waits_longer_than_the_servers_deadline(
        webhook: dict[str, Any], container: dict[str, Any]) -> None:
    args = build_parser().parse_args(container["args"])
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert args.timeout + MARGIN < webhook["timeoutSeconds"] <= 30


def test_exempt_namespaces_are_never_sent(webhook: dict[str, Any],
                                          manifests: dict[tuple[str, str], dict[str, Any]],
                                          ) -> None:
    expressions = webhook["namespaceSelector"]["matchExpressions"]
    assert EXEMPT in expressions
    by_name = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
    assert by_name["operator"] == "NotIn"
    assert {"kube-system", "gatekeeper-system"} <= set(by_name["values"])
    own = manifests[("Namespace", "gatekeeper-system")]
    assert own["metadata"]["labels"]["gatekeeper.io/exempt"] == "true"


def test_the_webhook_calls_the_port_the_server_listens_on(
        webhook: dict[str, Any], container: dict[str, Any],
        manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    args = build_parser().parse_args(container["args"])
    called = webhook["clientConfig"]["service"]
    service = manifests[("Service", called["name"])]
    assert called["path"] == "/validate"
    assert service["metadata"]["namespace"] == called["namespace"] == "gatekeeper-system"
    (port,) = service["spec"]["ports"]
    assert port["port"] == called["port"] == 443
    (listening,) = container["ports"]
    assert port["targetPort"] == listening["name"]
    assert listening["containerPort"] == args.port == 8443
    base64.b64decode(webhook["clientConfig"]["caBundle"], validate=True)


def test_the_server_runs_ready_replicated_unprivileged(
        container: dict[str, Any], manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = manifests[("Deployment", "gatekeeper-webhook")]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert container["readinessProbe"]["httpGet"] | {"port": None} == {
        "scheme": "HTTPS", "path": "/healthz", "port": None}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["serviceAccountName"] in {name for kind, name in manifests
                                         if kind == "ServiceAccount"}
    assert ("PodDisruptionBudget", "gatekeeper-webhook") in manifests


def test_kustomize_lists_the_manifests() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    present = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml",
                                                          "cert-manager.yaml"}
    assert set(listed) == present
