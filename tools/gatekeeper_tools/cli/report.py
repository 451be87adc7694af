"""``gatekeeper report``: the whole fleet in one self-contained HTML file, and a summary.

Reads every current verdict and the verdict changes since ``--since`` from the verdict table
(one paginated Scan) and the published policy (its exceptions), writes the page
(:mod:`gatekeeper.render.fleet_report`: inline CSS, SVG and script, nothing fetched; it opens
from a mail attachment or an S3 link) and prints what it shows in numbers. Exit 0 written,
2 usage or AWS error.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gatekeeper.adapters.policy_source import S3PolicySource
from gatekeeper.render.fleet_report import html_report, text_summary
from gatekeeper.service.fleet import fleet
from gatekeeper_tools.cli.deployment import (
    EXIT_OK,
    Deployment,
    OperatorError,
    deployment_options,
    from_arguments,
    operator_command,
)

_SINCE = re.compile(r"^(\d{1,4})([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report", parents=[deployment_options()],
        help="write the fleet report: one self-contained HTML file",
        description="Write one self-contained HTML file (inline CSS, charts and script; "
                    "nothing fetched) showing every recorded verdict: images by verdict per "
                    "repository, the quarantined ones with their blocking findings and "
                    "whether they run, the findings blocking the most images, verdict changes "
                    "per day, and the policy's exceptions (used, unused, expiring) on a "
                    "calendar; and print a summary. Exit 0 written, 2 usage or AWS error.")
    parser.add_argument("--output", "-o", default="report.html", metavar="FILE",
                        help="where to write the page (default: report.html)")
    parser.add_argument("--since", default="30d",
                        help="verdict changes from: 48h, 30d, 12w or a date (YYYY-MM-DD); "
                             "default 30d")
    parser.set_defaults(func=operator_command(
        "report", lambda args: report(from_arguments(args), args.output, args.since)))


def parse_since(text: str, now: datetime) -> datetime:
    """``30d`` (hours, days, weeks before ``now``) or a date; OperatorError otherwise."""
    match = _SINCE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        since = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OperatorError(f"--since {text!r}: expected 48h, 30d, 12w or a date "
                            "(YYYY-MM-DD)") from None
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    if since > now:
        raise OperatorError(f"--since {text!r} is in the future")
    return since


def report(deployment: Deployment, output: str, since_text: str = "30d",
           now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    since = parse_since(since_text, now)
    deployment.require("table", "policy_bucket")
    policy = S3PolicySource(deployment.session.client("s3"), str(deployment.policy_bucket),
                            deployment.policy_key).get()
    summary = fleet(deployment.store(), policy, now=now, since=since,
                    account=_caller_account(deployment),
                    region=deployment.session.region_name)
    try:
        Path(output).write_text(html_report(summary), encoding="utf-8")
    except OSError as err:
        raise OperatorError(f"cannot write {output}: {err.strerror or err}") from None
    print(text_summary(summary))
    print(f"written: {output}\n  one self-contained HTML file: open it in a browser, attach "
          "it to a mail or put it in S3")
    return EXIT_OK


def _caller_account(deployment: Deployment) -> str | None:
    """The account the verdicts are in (for console links); None when it cannot be asked."""
    try:
        return str(deployment.session.client("sts").get_caller_identity()["Account"])
    except (ClientError, BotoCoreError, KeyError):
        return None
