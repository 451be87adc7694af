"""``make demo``: the whole gatekeeper loop on an embedded AWS (moto), no account, no Docker.

It deploys template.yaml into moto, publishes policy.yaml, pushes a few images with the
project's sample findings, and sends EventBridge events shaped like the real ones through the
rules of the template (their own patterns decide which handler runs). For every image it
prints the verdict, the reasons, the tags before and after, and the SNS message delivered.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass(frozen=True)
class Scenario:
    title: str
    repository: str
    tag: str
    findings: str  # samples/findings/<name>.json
    scan_event: str  # events/<name>.json
    mutability: str = "MUTABLE"


SCENARIOS = [
    Scenario("A clean image", "team-a/web", "v1.4.2", "basic-clean", "ecr-image-scan-complete"),
    Scenario("A CRITICAL and two HIGH findings, IMMUTABLE repository", "team-b/api", "2.0.0",
             "basic-critical", "ecr-image-scan-complete", "IMMUTABLE"),
    Scenario("HIGH findings under the sandbox/* override", "sandbox/tools", "nightly",
             "basic-high-only", "ecr-image-scan-complete"),
    Scenario("A scan that FAILED (on_scan_failure: quarantine)", "team-c/legacy", "1.0",
             "scan-failed", "ecr-image-scan-failed"),
    Scenario("Enhanced scanning (Amazon Inspector): an exploitable CRITICAL", "team-a/worker",
             "3.1.0", "enhanced-critical-exploit", "inspector2-scan"),
]

RULE = "=" * 78


def _event(name: str, **detail: Any) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / f"{name}.json").read_text())
    event["detail"].update({k.replace("_", "-"): v for k, v in detail.items()})
    return event


def _say(text: str = "", indent: int = 0) -> None:
    print(textwrap.indent(text, " " * indent) if text else "")


class Demo:
    slack: Any = None  # a LocalSlack: the first quarantine is also shown as Slack shows it

    def __init__(self, deployment: Any, ecr: Any, sqs: Any, queue_url: str) -> None:
        self.deployment = deployment
        self.ecr = ecr
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, label: str, event: dict[str, Any]) -> list[Any]:
        deliveries = self.deployment.deliver(event)
        if not deliveries:
            _say(f"{label}: no rule of the template matches; not delivered", 2)
        for delivery in deliveries:
            outcome = (f"raised {type(delivery.error).__name__}: {delivery.error}"
                       if delivery.error else json.dumps(delivery.result, default=str))
            _say(f"{label}: rule {delivery.rule_id} -> {delivery.function_id}", 2)
            _say(f"-> {outcome}", 6)
        return deliveries

    def tags(self, repository: str, digest: str) -> list[str]:
        found = self.ecr.describe_images(repositoryName=repository,
                                         imageIds=[{"imageDigest": digest}])["imageDetails"]
        return sorted(found[0].get("imageTags", [])) if found else ["(image gone)"]

    def messages(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        out = []
        for message in got.get("Messages", []):
            out.append(json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=self.queue_url,
                                    ReceiptHandle=message["ReceiptHandle"])
        return out

    def show_messages(self) -> list[dict[str, Any]]:
        messages = self.messages()
        if not messages:
            _say("SNS: no message (verdict unchanged)", 2)
        for note in messages:
            attrs = {k: v["Value"] for k, v in note.get("MessageAttributes", {}).items()}
            _say(f"SNS message: {note['Subject']}", 2)
            _say("attributes: " + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())), 4)
            _say(json.loads(note["Message"])["text"], 4)  # what the e-mail shows
        return messages

    def show_slack(self, notes: list[dict[str, Any]]) -> None:
        """Once: SlackNotifierFunction run on these notifications, and the channel's view."""
        if self.slack is None or not notes:
            return
        from gatekeeper_tools.local.slack import render_text

        slack, self.slack = self.slack, None
        result, received = slack.deliver(notes)
        _say("Slack (SlackNotifierFunction in-process; webhook URL from Secrets Manager, "
             "a receiver on 127.0.0.1):", 2)
        _say(f"-> {result!r}" if isinstance(result, Exception) else f"-> {json.dumps(result)}",
             6)
        for message in received:
            _say("\n".join(f"| {line}" for line in render_text(message).splitlines()), 4)
        slack.stop()

    def run(self, scenario: Scenario, scanned: Callable[..., None],
            push: Callable[..., str]) -> str:
        _say(RULE)
        _say(f"{scenario.title}: {scenario.repository}:{scenario.tag} ({scenario.mutability})")
        _say(RULE)
        self.ecr.create_repository(repositoryName=scenario.repository,
                                   imageTagMutability=scenario.mutability)
        digest = push(self.ecr, scenario.repository, scenario.tag)
        before = self.tags(scenario.repository, digest)
        self.send("ECR Image Action (PUSH)",
                  _event("ecr-image-push", repository_name=scenario.repository,
                         image_digest=digest, image_tag=scenario.tag))
        scanned(scenario.repository, digest,
                json.loads((ROOT / "samples" / "findings" / f"{scenario.findings}.json")
                           .read_text()), ACCOUNT, REGION)
        repository_field = scenario.repository
        if scenario.scan_event.startswith("inspector2"):
            repository_field = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{scenario.repository}"
        deliveries = self.send(
            f"{_event(scenario.scan_event)['detail-type']} "
            f"({_event(scenario.scan_event)['detail']['scan-status']})",
            _event(scenario.scan_event, repository_name=repository_field, image_digest=digest,
                   image_tags=[scenario.tag]))
        after = self.tags(scenario.repository, digest)
        result = next((d.result for d in deliveries if d.result), {}) or {}
        _say(f"verdict:     {result.get('verdict', '(none)')}", 2)
        _say(f"tags before: {', '.join(before)}", 2)
        _say(f"tags after:  {', '.join(after)}", 2)
        notes = self.show_messages()
        if result.get("verdict") == "QUARANTINED":
            self.show_slack(notes)
        marker = result.get("marker")
        if marker:
            _say("The marker write comes back as a PUSH event; the gatekeeper knows its own:", 2)
            self.send("ECR Image Action (PUSH of the marker)",
                      _event("ecr-image-push", repository_name=scenario.repository,
                             image_digest=digest, image_tag=marker))
        _say()
        return digest

    def forgery(self, repository: str, digest: str) -> None:
        _say(RULE)
        _say(f"Someone pushes the approval marker onto the quarantined {repository} themselves")
        _say(RULE)
        forged = f"approved-{digest[7:19]}"
        manifest = self.ecr.batch_get_image(repositoryName=repository,
                                            imageIds=[{"imageDigest": digest}])["images"][0]
        self.ecr.put_image(repositoryName=repository, imageTag=forged,
                           imageManifest=manifest["imageManifest"])
        _say(f"tags after the forged push: {', '.join(self.tags(repository, digest))}", 2)
        self.send("ECR Image Action (PUSH of a forged marker)",
                  _event("ecr-image-push", repository_name=repository, image_digest=digest,
                         image_tag=forged))
        _say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.show_messages()
        _say()

    def time_passes(self, repository: str, digest: str, deployment: Any, s3: Any) -> None:
        from datetime import UTC, datetime, timedelta

        from gatekeeper import runtime

        _say(RULE)
        _say(f"A new policy version grants {repository} exceptions for three days")
        _say(RULE)
        expires = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
        text = (ROOT / "policy.yaml").read_text() + "\nexceptions:\n" + "".join(
            f"  - {{id: {cve}, repositories: ['{repository}'], expires: {expires}, "
            f"reason: 'patched image ships Friday', owner: appsec@example.com, "
            f"ticket: SEC-1234}}\n"
            for cve in ("CVE-2023-4863", "CVE-2023-38545", "CVE-2023-5363"))
        s3.put_object(Bucket=deployment.policy_bucket, Key="policy.yaml", Body=text.encode())
        created = _event("s3-policy-object-created")
        created["detail"]["bucket"]["name"] = deployment.policy_bucket
        self.send("Object Created (the policy bucket)", created)
        self.drain(deployment)
        _say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.show_messages()
        _say()
        _say(RULE)
        _say("Four days later: the hourly sweep finds the expired exceptions")
        _say(RULE)
        later = datetime.now(UTC) + timedelta(days=4)
        runtime.now = lambda: later  # the demo's clock jumps ahead
        for delivery in deployment.tick():
            _say(f"Scheduled Event: {delivery.rule_id} -> {delivery.function_id} -> "
                 f"{json.dumps(delivery.result)}", 2)
        self.drain(deployment)
        _say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.show_messages()
        history = runtime.gatekeeper().store.history(repository, digest)
        _say("verdict history (newest first):", 2)
        for entry in history:
            _say(f"{entry.decided_at[:19]}  {entry.state:<23} by {entry.trigger:<11} "
                 f"policy {entry.policy_version}", 4)
        _say()

    def drain(self, deployment: Any) -> None:
        for delivery in deployment.drain():
            results = (delivery.result or {}).get("results", [])
            _say(f"ReevaluationQueue -> {delivery.function_id}: {len(results)} image(s)", 2)
            for result in results:
                _say(f"-> {json.dumps(result)}", 6)


def main() -> int:
    for name, value in {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
                        "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        os.environ[name] = value
    os.environ.pop("AWS_PROFILE", None)
    if not (ROOT / "template.yaml").exists():
        print("run the demo from the repository root (where template.yaml is)", file=sys.stderr)
        return 2

    import boto3
    from moto import mock_aws

    from gatekeeper_tools.local.ecr import push_image, set_scan_result
    from gatekeeper_tools.local.stack import LocalDeployment

    with mock_aws():
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"), region=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        policy = (ROOT / "policy.yaml").read_bytes()
        version = s3.put_object(Bucket=deployment.policy_bucket, Key="policy.yaml",
                                Body=policy)["VersionId"]
        queue_url = deployment.subscribe_queue()
        _say(RULE)
        _say("ECR Scan Gatekeeper, running locally on moto")
        _say(f"template.yaml deployed into moto (region {REGION}); policy.yaml published to "
             f"s3://{deployment.policy_bucket}/policy.yaml as version {version}")
        _say("Each event goes through the template's EventBridge rules: a rule whose pattern "
             "matches invokes its function in-process with the template's environment.")
        demo = Demo(deployment, boto3.client("ecr", region_name=REGION),
                    boto3.client("sqs", region_name=REGION), queue_url)
        from gatekeeper_tools.local.slack import LocalSlack

        demo.slack = LocalSlack.start(REGION)
        digests = {}
        for scenario in SCENARIOS:
            digests[scenario.repository] = demo.run(scenario, set_scan_result, push_image)
        demo.forgery("team-b/api", digests["team-b/api"])
        demo.time_passes("team-b/api", digests["team-b/api"], deployment, s3)

        _say(RULE)
        _say("Events that are not for the gatekeeper")
        _say(RULE)
        for name in ("ecr-image-delete", "ecr-replication-action", "ecr-scan-resource-change"):
            demo.send(_event(name)["detail-type"] + f" ({name})", _event(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
