"""``make demo``: the whole gatekeeper loop on an embedded AWS (moto), no account, no Docker.

It deploys template.yaml into moto, publishes policy.yaml, pushes a few images with the
project's sample findings, and sends EventBridge events shaped like the real ones through the
rules of the template (their own patterns decide which handler runs). For every image it
prints which rule ran which function, the verdict and why, the tags before and after, and the
SNS notice's subject and attributes; ``--full`` adds each notice's e-mail text and the Slack
message as the channel shows it. Then the deploy-time gates are asked to run the quarantined
team-b/api (:mod:`gatekeeper_tools.local.deploy_gates`): an ECS deployment's lifecycle hook
and a Kubernetes admission review refuse it, allow it while a policy exception approves it,
and refuse it again when the exception expires. It ends with a summary of the five images
and what to try next. Every line fits in 100 characters, except the e-mail texts of
``--full``, shown as sent.

The sandbox (:mod:`gatekeeper_tools.local.sandbox`) runs the same scenarios silently
(``Demo(..., out=None)``) in a moto server that stays up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path.cwd()
REGION = "us-east-1"
ACCOUNT = "123456789012"
WIDTH = 100  # no line of the demo is longer (the --full e-mail texts excepted)


@dataclass(frozen=True)
class Scenario:
    title: str
    repository: str
    tag: str
    findings: str  # samples/findings/<name>.json
    scan_event: str  # events/<name>.json
    mutability: str = "MUTABLE"

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


SCENARIOS = [
    Scenario("A clean image", "team-a/web", "v1.4.2", "basic-clean", "ecr-image-scan-complete"),
    Scenario("A CRITICAL and two HIGH findings, IMMUTABLE repository", "team-b/api", "2.0.0",
             "basic-critical", "ecr-image-scan-complete", "IMMUTABLE"),
    Scenario("HIGH findings under the sandbox/* override", "sandbox/tools", "nightly",
             "basic-high-only", "ecr-image-scan-complete"),
    Scenario("A scan that FAILED (on_scan_failure: quarantine)", "team-c/legacy", "1.0",
             "scan-failed", "ecr-image-scan-failed"),
    Scenario("Enhanced scanning (Amazon Inspector): an exploitable CRITICAL", "team-a/worker",
             "3.1.0", "enhanced-critical-in-use", "inspector2-scan"),
]

RULE = "=" * 78
SUMMARY_TITLE = "Summary: the five images now"
GATED = "team-b/api"  # the image the deploy-time gates are asked about
REASON_LIMIT = 160  # characters of a gate's reason shown (--full: all of it)
# What a handler's result shows: the image is named by the section it is printed in.
_NOT_SHOWN = ("repository", "digest", "notified")


def _event(name: str, **detail: Any) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / f"{name}.json").read_text())
    event["detail"].update({k.replace("_", "-"): v for k, v in detail.items()})
    return event


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def brief(result: Any, drop: Sequence[str] = _NOT_SHOWN) -> str:
    """A handler's result as JSON, without the keys the reader already knows."""
    if isinstance(result, dict):
        result = {key: value for key, value in result.items() if key not in drop}
    return json.dumps(result, default=str)


def wrap(text: str, indent: int, hanging: int = 0) -> str:
    """``text`` indented, folded at WIDTH; continuation lines ``hanging`` further in."""
    return textwrap.fill(text, WIDTH, initial_indent=" " * indent,
                         subsequent_indent=" " * (indent + hanging), break_on_hyphens=False)


@dataclass(frozen=True)
class Standing:
    """An image's recorded verdict at the end: one row of the summary."""

    image: str
    verdict: str
    reasons: tuple[str, ...]

    def why(self, width: int) -> str:
        """The first reason, shortened at a word to ``width`` characters."""
        if not self.reasons:
            return "(no reason recorded)"
        more = f" (+{len(self.reasons) - 1} more)" if len(self.reasons) > 1 else ""
        return textwrap.shorten(self.reasons[0], width - len(more), placeholder=" …") + more


def summary_table(rows: Sequence[Standing], indent: int = 2) -> list[str]:
    """The rows as aligned columns (image, verdict, why), one line each, within WIDTH."""
    image_width = max(len("image"), *(len(r.image) for r in rows))
    verdict_width = max(len("verdict"), *(len(r.verdict) for r in rows))
    why_width = WIDTH - indent - image_width - verdict_width - 4
    lines = [("image", "verdict", "why")] + [
        (r.image, r.verdict, r.why(why_width)) for r in rows]
    return [f"{' ' * indent}{a:<{image_width}}  {b:<{verdict_width}}  {c}".rstrip()
            for a, b, c in lines]


class Demo:
    """Runs the scenarios through a LocalDeployment and tells what happened on ``out``
    (None: silently)."""

    slack: Any = None  # a LocalSlack: the first quarantine is also sent to Slack
    gates: Any = None  # a LocalGates: the deploy-time gates, asked about GATED

    def __init__(self, deployment: Any, ecr: Any, sqs: Any, queue_url: str, *,
                 out: TextIO | None = sys.stdout, full: bool = False) -> None:
        import boto3

        from gatekeeper.adapters.store import VerdictStore

        self.deployment = deployment
        self.ecr = ecr
        self.sqs = sqs
        self.queue_url = queue_url
        self.out = out
        self.full = full
        self.store = VerdictStore(boto3.client("dynamodb", region_name=deployment.region),
                                  deployment.table_name)
        self.judged: dict[str, tuple[Scenario, str]] = {}  # repository -> (scenario, digest)
        self.gated: list[tuple[str, Any]] = []  # (when, the gates' Answers)

    def say(self, text: str = "", indent: int = 0) -> None:
        if self.out is not None:
            print(textwrap.indent(text, " " * indent) if text else "", file=self.out)

    def heading(self, title: str) -> None:
        self.say(RULE)
        self.say(title)
        self.say(RULE)

    def send(self, label: str, event: dict[str, Any]) -> list[Any]:
        deliveries = self.deployment.deliver(event)
        if not deliveries:
            self.say(wrap(f"{label}: no rule of the template matches; not delivered", 2, 4))
        for delivery in deliveries:
            self.say(f"{label}: rule {delivery.rule_id} -> {delivery.function_id}", 2)
            self.result(delivery)
        return deliveries

    def result(self, delivery: Any, drop: Sequence[str] = _NOT_SHOWN) -> None:
        outcome = (f"raised {type(delivery.error).__name__}: {delivery.error}"
                   if delivery.error else brief(delivery.result, drop))
        self.say(wrap(f"-> {outcome}", 6, 3))

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
        """The SNS notices delivered since the last call: subject and attributes (and, with
        --full, the e-mail text)."""
        messages = self.messages()
        if not messages:
            self.say("SNS message: none (verdict unchanged)", 2)
        for note in messages:
            attrs = {k: v["Value"] for k, v in note.get("MessageAttributes", {}).items()}
            self.say(wrap(f"SNS message: {note['Subject']}", 2, 4))
            self.say(wrap("attributes: " + ", ".join(f"{k}={v}" for k, v in
                                                     sorted(attrs.items())), 4, 12))
            if self.full:
                self.say("e-mail text:", 4)
                self.say(json.loads(note["Message"])["text"], 6)
        return messages

    def show_slack(self, notes: list[dict[str, Any]]) -> None:
        """Once: SlackNotifierFunction run on these notifications (with --full, the message
        as the channel shows it)."""
        if self.slack is None or not notes:
            return
        from gatekeeper_tools.local.slack import render_text

        slack, self.slack = self.slack, None
        result, received = slack.deliver(notes)
        outcome = repr(result) if isinstance(result, Exception) else json.dumps(result)
        self.say(f"Slack: SlackNotifierFunction -> {outcome}, to a webhook on 127.0.0.1", 2)
        if not self.full:
            self.say("(make demo DEMO_ARGS=--full shows the message as the channel does)", 4)
        if self.full:
            for message in received:
                self.say("\n".join(f"| {line}" for line in render_text(message).splitlines()),
                         4)
        slack.stop()

    def why(self, repository: str, digest: str) -> None:
        record = self.store.get(repository, digest)
        reasons = record.reasons if record else ()
        for number, reason in enumerate(reasons or ("(no reason recorded)",)):
            label = "why:" if number == 0 else ""
            self.say(wrap(f"{label:<13}{reason}", 2, 15))

    def run(self, scenario: Scenario, scanned: Callable[..., None],
            push: Callable[..., str]) -> str:
        self.heading(f"{scenario.title}: {scenario.image} ({scenario.mutability})")
        self.ecr.create_repository(repositoryName=scenario.repository,
                                   imageTagMutability=scenario.mutability)
        digest = push(self.ecr, scenario.repository, scenario.tag)
        self.judged[scenario.repository] = (scenario, digest)
        before = self.tags(scenario.repository, digest)
        self.send("ECR Image Action (PUSH)",
                  _event("ecr-image-push", repository_name=scenario.repository,
                         image_digest=digest, image_tag=scenario.tag))
        scanned(scenario.repository, digest,
                json.loads((ROOT / "samples" / "findings" / f"{scenario.findings}.json")
                           .read_text()), ACCOUNT, self.deployment.region)
        repository_field = scenario.repository
        if scenario.scan_event.startswith("inspector2"):
            repository_field = (f"arn:aws:ecr:{self.deployment.region}:{ACCOUNT}:repository/"
                                f"{scenario.repository}")
        recorded = _event(scenario.scan_event)
        deliveries = self.send(
            f"{recorded['detail-type']} ({recorded['detail']['scan-status']})",
            _event(scenario.scan_event, repository_name=repository_field, image_digest=digest,
                   image_tags=[scenario.tag]))
        after = self.tags(scenario.repository, digest)
        result = next((d.result for d in deliveries if d.result), {}) or {}
        self.say(f"verdict:     {result.get('verdict', '(none)')}", 2)
        self.why(scenario.repository, digest)
        self.say(wrap(f"tags before: {', '.join(before)}", 2, 13))
        self.say(wrap(f"tags after:  {', '.join(after)}", 2, 13))
        notes = self.show_messages()
        if result.get("verdict") == "QUARANTINED":
            self.show_slack(notes)
        marker = result.get("marker")
        if marker:
            self.say("The marker write comes back as a PUSH event; the gatekeeper knows its own:",
                     2)
            self.send("ECR Image Action (PUSH of the marker)",
                      _event("ecr-image-push", repository_name=scenario.repository,
                             image_digest=digest, image_tag=marker))
        self.say()
        return digest

    def forgery(self, repository: str, digest: str) -> None:
        self.heading("Someone pushes the approval marker onto the quarantined "
                     f"{repository} themselves")
        forged = f"approved-{digest[7:19]}"
        manifest = self.ecr.batch_get_image(repositoryName=repository,
                                            imageIds=[{"imageDigest": digest}])["images"][0]
        self.ecr.put_image(repositoryName=repository, imageTag=forged,
                           imageManifest=manifest["imageManifest"])
        self.say(f"tags after the forged push: {', '.join(self.tags(repository, digest))}", 2)
        self.send("ECR Image Action (PUSH of a forged marker)",
                  _event("ecr-image-push", repository_name=repository, image_digest=digest,
                         image_tag=forged))
        self.say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.show_messages()
        self.say()

    def ask_gates(self, when: str) -> None:
        """The ECS hook and the admission webhook asked to run GATED: what each answered (a
        reason shortened unless --full), and the notice a refused ECS deployment sends."""
        if self.gates is None:
            return
        from gatekeeper_tools.local.deploy_gates import CLUSTER, NAMESPACE, SERVICE

        scenario, _ = self.judged[GATED]
        answers = self.gates.ask(scenario.image)
        self.gated.append((when, answers))
        self.say(wrap(f"ECS: service {CLUSTER}/{SERVICE} deploys {scenario.image}; its "
                      f"PRE_SCALE_UP lifecycle hook -> {answers.ecs_status}", 2, 4))
        if answers.ecs_status != "SUCCEEDED":
            self.say(wrap(f"why: {self.shown(answers.ecs_reason)}", 4, 5))
        outcome = "allowed" if answers.admitted else "denied"
        self.say(wrap(f"Kubernetes: Deployment {NAMESPACE}/{SERVICE} running {scenario.image}: "
                      f"admission webhook -> {outcome}", 2, 4))
        if not answers.admitted:
            self.say(wrap(f"message: {self.shown(answers.admission_message)}", 4, 9))
        if answers.ecs_status != "SUCCEEDED":
            self.show_messages()

    def shown(self, reason: str) -> str:
        """A gate's reason: the image named without its registry, and shortened at a word
        unless --full."""
        if self.gates is not None:
            reason = reason.replace(f"{self.gates.registry}/", "")
        if self.full:
            return reason
        return textwrap.shorten(reason, REASON_LIMIT, placeholder=" …")

    def deploy_gates(self) -> None:
        scenario, _ = self.judged[GATED]
        self.heading(f"Deploy-time gates: ECS and Kubernetes are asked to run {scenario.image}")
        self.say("Both ask the verdict gate: the image's signed verdict, checked with the "
                 "stack's KMS key.", 2)
        self.ask_gates("quarantined")
        self.say()

    def gates_summary(self) -> None:
        """The gates' answers over the run, as a small table."""
        if not self.gated:
            return
        scenario, _ = self.judged[GATED]
        self.heading(f"Deploy-time gates: what they answered for {scenario.image}")
        rows = [("when", "ECS hook", "Kubernetes admission")] + [
            (when, answers.ecs_status, "allowed" if answers.admitted else "denied")
            for when, answers in self.gated]
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        for when, ecs, admission in rows:
            self.say(f"{when:<{widths[0]}}  {ecs:<{widths[1]}}  {admission}", 2)
        self.say()

    def time_passes(self, repository: str, digest: str, deployment: Any, s3: Any) -> None:
        from datetime import UTC, datetime, timedelta

        from gatekeeper import runtime

        self.heading(f"A new policy version grants {repository} exceptions for three days")
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
        self.say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.why(repository, digest)
        self.show_messages()
        self.say()
        if self.gates is not None and repository == GATED:
            self.heading(f"The deploy-time gates, asked again about {repository} while "
                         "the exceptions last")
            self.ask_gates("exceptions granted")
            self.say()
        self.heading("Four days later: the hourly sweep finds the expired exceptions")
        later = datetime.now(UTC) + timedelta(days=4)
        runtime.now = lambda: later  # the demo's clock jumps ahead
        for delivery in deployment.tick():
            self.say(f"Scheduled Event: rule {delivery.rule_id} -> {delivery.function_id}", 2)
            self.result(delivery)
        self.drain(deployment)
        self.say(f"tags after:  {', '.join(self.tags(repository, digest))}", 2)
        self.why(repository, digest)
        self.show_messages()
        self.say("verdict history (newest first):", 2)
        for entry in self.store.history(repository, digest):
            self.say(f"{entry.decided_at[:19]}  {entry.state:<23} by {entry.trigger:<11} "
                     f"policy {_clip(entry.policy_version or '(none)', 9)}", 4)
        if self.gates is not None and repository == GATED:
            self.say("The deploy-time gates, asked again:", 2)
            self.ask_gates("exceptions expired")
        self.say()

    def drain(self, deployment: Any) -> None:
        for delivery in deployment.drain():
            results = (delivery.result or {}).get("results", [])
            self.say(f"ReevaluationQueue -> {delivery.function_id}: {len(results)} image(s)", 2)
            for result in results:
                self.say(wrap(f"-> {result.get('repository')}: {brief(result)}", 6, 3))

    def standings(self) -> list[Standing]:
        """Every image the scenarios judged, with its verdict as recorded now."""
        rows = []
        for scenario, digest in self.judged.values():
            record = self.store.get(scenario.repository, digest)
            rows.append(Standing(scenario.image, record.state if record else "(none)",
                                 record.reasons if record else ()))
        return rows

    def summary(self) -> None:
        self.heading(SUMMARY_TITLE)
        for line in summary_table(self.standings()):
            self.say(line)
        self.say()
        self.say("What to try next:")
        for line in TRY_NEXT:
            self.say(line, 2)


TRY_NEXT = [
    "make demo DEMO_ARGS=--full   the same run, with each notice's e-mail text and the Slack",
    "                             message as the channel shows it",
    "make sandbox                 the same stack and images in a local moto server that stays",
    "                             up; it prints the flags for the operator commands, e.g.",
    "    .venv/bin/gatekeeper status team-b/api:2.0.0 --endpoint-url http://127.0.0.1:<port> \\",
    "        --stack ecr-scan-gatekeeper --region us-east-1",
    "edit policy.yaml (say, CRITICAL: 1 under default.max_findings) and run make demo again:",
    "    team-a/worker's one CRITICAL then passes; team-b/api's two HIGH still do not",
]


def use_local_environment() -> None:
    """Credentials and settings for an emulated AWS: never the caller's own account."""
    for name, value in {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
                        "POWERTOOLS_METRICS_DISABLED": "true"}.items():
        os.environ[name] = value
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)


def publish_policy(deployment: Any, s3: Any) -> str:
    """policy.yaml to the stack's policy bucket; its S3 version id."""
    body = (ROOT / "policy.yaml").read_bytes()
    return str(s3.put_object(Bucket=deployment.policy_bucket, Key="policy.yaml",
                             Body=body)["VersionId"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make demo", description="The gatekeeper's whole loop on an embedded AWS (moto).")
    parser.add_argument("--full", action="store_true",
                        help="also print each notice's e-mail text and the Slack message")
    parser.add_argument("--report", metavar="FILE",
                        help="at the end, write the fleet report of the demo's images to FILE "
                             "(what `gatekeeper report` writes)")
    return parser.parse_args(argv)


def write_report(path: str) -> None:
    """``gatekeeper report --output PATH`` on the demo's stack (in moto, by its name)."""
    from gatekeeper_tools.cli.deployment import resolve
    from gatekeeper_tools.cli.report import report
    from gatekeeper_tools.local.stack import STACK_NAME

    print()
    report(resolve(region=REGION, endpoint_url=None, stack=STACK_NAME), path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_local_environment()
    if not (ROOT / "template.yaml").exists():
        print("run the demo from the repository root (where template.yaml is)", file=sys.stderr)
        return 2

    import boto3
    from moto import mock_aws

    from gatekeeper_tools.local.deploy_gates import LocalGates
    from gatekeeper_tools.local.ecr import push_image, set_scan_result
    from gatekeeper_tools.local.slack import LocalSlack
    from gatekeeper_tools.local.stack import LocalDeployment

    with mock_aws():
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"), region=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        version = publish_policy(deployment, s3)
        queue_url = deployment.subscribe_queue()
        demo = Demo(deployment, boto3.client("ecr", region_name=REGION),
                    boto3.client("sqs", region_name=REGION), queue_url, full=args.full)
        demo.heading("ECR Scan Gatekeeper, running locally on moto")
        demo.say(f"template.yaml deployed into moto (region {REGION}); policy.yaml published to")
        demo.say(f"s3://{deployment.policy_bucket}/policy.yaml", 2)
        demo.say(f"as version {version}", 2)
        demo.say("Each event goes through the template's EventBridge rules: a rule whose "
                 "pattern matches")
        demo.say("invokes its function in-process, with the template's environment.")
        demo.say()
        demo.slack = LocalSlack.start(REGION)
        for scenario in SCENARIOS:
            demo.run(scenario, set_scan_result, push_image)
        _, digest = demo.judged["team-b/api"]
        demo.forgery("team-b/api", digest)
        demo.gates = LocalGates(deployment, ROOT / "events")
        demo.deploy_gates()
        demo.time_passes("team-b/api", digest, deployment, s3)

        demo.heading("Events that are not for the gatekeeper")
        for name in ("ecr-image-delete", "ecr-replication-action", "ecr-scan-resource-change"):
            demo.send(_event(name)["detail-type"] + f" ({name})", _event(name))
        demo.say()
        demo.gates_summary()
        demo.summary()
        if args.report:
            write_report(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
