"""``gatekeeper evaluate``: judge saved scan findings offline, with the code the Lambda runs.

Reads the output of ``aws ecr describe-image-scan-findings`` (basic or enhanced; one page or
several) or ``aws inspector2 list-findings``, or the JSON report of Trivy or Grype
(``--input-format``, else recognised by its shape) to gate an image in CI before it is pushed.
The verdict prints as text, JSON or SARIF 2.1.0 (``--format``). The repository, whose rules
apply, is ``--repository`` if given, else the one the findings name (``repositoryName``, the
Inspector finding's ``awsEcrContainerImage.repositoryName``, or the image a Trivy or Grype
report names); with neither, nothing is judged.
``--account`` is the account the image lives in, for the policy's ``accounts:`` limits;
without it, no override or exception limited to accounts applies.

Exit codes: 0 approved, 1 quarantined, 3 approved with warnings (or a verdict under a
monitor-mode policy that would quarantine), 2 usage or input error (a located message on
stderr), which includes incomplete input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import FindingsError
from gatekeeper.domain.kev import KevError, parse_catalog
from gatekeeper.domain.policy import BUILTIN_POLICY, Policy
from gatekeeper.domain.scan_input import AUTO, INPUT_FORMATS, ScanInput, read_scan
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.render import sarif
from gatekeeper.render.report import explain, verdict_document
from gatekeeper_tools.cli.deployment import EXIT_INPUT, EXIT_OK
from gatekeeper_tools.cli.policy import add_account_option, read_policy

EXIT_QUARANTINED = 1
EXIT_WARNINGS = 3


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="judge saved scan findings offline, with the same code the Lambda runs",
        description="Evaluate the output of 'aws ecr describe-image-scan-findings' (basic or "
                    "enhanced; one page or several concatenated) or 'aws inspector2 "
                    "list-findings', or a Trivy ('trivy image --format json') or Grype "
                    "('grype -o json') report, against a policy. Exit 0 approved, 1 quarantined, "
                    "3 approved with warnings, 2 usage or input error, which includes "
                    "incomplete input: a page that says more follow (nextToken/NextToken), "
                    "findings that disagree with the severity counts of the same output, a "
                    "severity AWS does not define, no scan status.")
    parser.add_argument("findings_file", nargs="?", metavar="FINDINGS",
                        help="the findings file, or - for stdin (or --findings)")
    parser.add_argument("--findings", help="a file, or - for stdin")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default=AUTO,
                        help="aws: ECR or Inspector output; trivy: 'trivy image --format "
                             "json'; grype: 'grype -o json'; auto (default): by its shape")
    parser.add_argument("--policy", help="default: ./policy.yaml, else the built-in policy")
    parser.add_argument("--repository",
                        help="whose rules apply (default: the repository named in the "
                             "findings; needed when they name none)")
    add_account_option(parser)
    parser.add_argument("--tag", help="the tag to show in the report")
    parser.add_argument("--digest", help="pick one image from list-findings output")
    parser.add_argument("--format", choices=["text", "json", "sarif"], default="text",
                        help="sarif: SARIF 2.1.0 for code-scanning UIs (exit code as for text)")
    parser.add_argument("--kev", metavar="FILE",
                        help="CISA's KEV catalog (its JSON feed), for a policy with "
                             "block_if_known_exploited; without it that rule quarantines")
    parser.set_defaults(func=evaluate)


def exit_code(verdict: Verdict) -> int:
    if verdict.outcome is Outcome.APPROVED:
        return EXIT_OK
    if verdict.outcome is Outcome.QUARANTINED and not verdict.monitor:
        return EXIT_QUARANTINED
    return EXIT_WARNINGS


def evaluate(args: argparse.Namespace) -> int:
    if (args.findings is None) == (args.findings_file is None):
        print("gatekeeper evaluate: name the findings once: a FINDINGS file argument or "
              "--findings", file=sys.stderr)
        return EXIT_INPUT
    args.findings = args.findings or args.findings_file
    policy, policy_source = _policy(args.policy)
    if getattr(args, "kev", None):
        try:
            catalog = parse_catalog(Path(args.kev).read_bytes(), source=args.kev)
        except KevError as err:
            print(f"gatekeeper: {err}", file=sys.stderr)
            return EXIT_INPUT
        policy = dataclasses.replace(policy, known_exploited=catalog)
    try:
        text = sys.stdin.read() if args.findings == "-" else Path(args.findings).read_text(
            encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FindingsError(f"{args.findings} is not UTF-8 text: {err.reason}") from None
    scan = read_scan(text, digest=args.digest, input_format=args.input_format)
    repository = args.repository or scan.repository
    _refuse_incomplete(scan, repository)
    if not repository:
        raise FindingsError("the findings do not name the repository; pass --repository")
    tags = [args.tag] if args.tag else scan.tags
    verdict = evaluation.judge_scan(policy, repository, scan.status, scan.description,
                                    scan.findings, digest=scan.digest, account=args.account)
    if verdict is None:
        raise FindingsError(f"the scan is {scan.status}, not finished: nothing to judge yet")
    code = exit_code(verdict)
    if args.format == "json":
        document = verdict_document(verdict, repository=repository, digest=scan.digest,
                                    tags=tags, policy_source=policy_source)
        document["exit_code"] = code
        document["account"] = args.account
        print(json.dumps(document, indent=2))
    elif args.format == "sarif":
        print(json.dumps(sarif.log(verdict, repository=repository, digest=scan.digest,
                                   tags=tags, policy_source=policy_source,
                                   exit_code=code), indent=2))
    else:
        print(_text(verdict, repository, scan.digest, tags, policy_source, args.account))
    return code


def _policy(path: str | None) -> tuple[Policy, str]:
    if path is None and Path("policy.yaml").exists():
        path = "policy.yaml"
    if path is None:
        return BUILTIN_POLICY, "built-in strict policy (no policy.yaml here)"
    return read_policy(path)[1], path


def _refuse_incomplete(scan: ScanInput, repository: str | None) -> None:
    """Never judge part of an image's findings: a page that says more follow, counts that
    disagree with the findings, a severity AWS does not define, no scan status (exit 2)."""
    if scan.next_token is not None:
        image = (f"--repository-name {repository or 'REPOSITORY'} --image-id "
                 f"imageDigest={scan.digest or 'DIGEST'}")
        raise FindingsError(
            f"the findings are incomplete: the input says more pages follow (next token "
            f"{scan.next_token[:40]!r}{'…' if len(scan.next_token) > 40 else ''}). Save "
            f"every page: 'aws ecr describe-image-scan-findings {image}' without --max-items "
            "pages through them all (for list-findings: 'aws inspector2 list-findings' "
            "without --max-items)")
    if scan.problems:
        raise FindingsError("the findings are incomplete or unreadable, nothing is judged: "
                            + "; ".join(scan.problems))


def _text(verdict: Verdict, repository: str, digest: str | None, tags: list[str],
          policy_source: str, account: str | None = None) -> str:
    name = f"{repository}:{tags[0]}" if tags else repository
    counts = ", ".join(f"{k} {v}" for k, v in verdict.counts.items()) or "none"
    head = [
        f"{verdict.outcome}  {name}" + (f"  ({digest})" if digest else ""),
        f"policy:   {policy_source} (version {verdict.policy_version}, rule "
        f"{verdict.matched_rule}, mode {verdict.mode})",
        *([f"account:  {account}"] if account else []),
        f"scan:     {verdict.scan_status}",
        f"findings: {sum(verdict.counts.values())} ({counts}); counted "
        f"{len(verdict.counted)}, ignored {len(verdict.ignored)}",
        "",
    ]
    return "\n".join(head + explain(verdict))
