"""``gatekeeper verify IMAGE``: the deploy gate.

Exit 0 only for an approved, settled verdict whose marker is on the image now (one line on
stdout); 1 otherwise, with one line on stderr saying why; 2 when the check itself could not
run (usage, configuration, AWS error).
"""

from __future__ import annotations

import argparse
import sys

from gatekeeper.domain.verdict import Outcome
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    IMAGE_HELP,
    Deployment,
    ImageNotFound,
    deployment_options,
    describe_image,
    from_arguments,
    operator_command,
    parse_reference,
)

APPROVED_STATES = frozenset({str(Outcome.APPROVED), str(Outcome.APPROVED_WITH_WARNINGS)})


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify", parents=[deployment_options()],
        help="deploy gate: is this image approved, now?",
        description="For deploy pipelines. Exit 0 only when the recorded verdict is APPROVED "
                    "or APPROVED_WITH_WARNINGS, settled, the image not gone, and the image "
                    "carries its approved marker now (one line on stdout). Otherwise exit 1 "
                    "with one line on stderr saying why; 2 when the check itself could not "
                    "run (usage, configuration, AWS error).")
    parser.add_argument("image", help=IMAGE_HELP)
    parser.add_argument("--api", metavar="URL",
                        help="ask the stack's verdict API (its VerdictApiUrl output) instead "
                             "of reading the table and ECR; SigV4-signed with the default "
                             "credentials")
    parser.set_defaults(func=operator_command("verify", _run))


def _run(args: argparse.Namespace) -> int:
    if args.api:
        from gatekeeper_tools.cli.verdict_api_client import verify_with_api

        return verify_with_api(from_arguments(args).session, args.api, args.image)
    return verify(from_arguments(args), args.image)


def verify(deployment: Deployment, reference: str) -> int:
    """0 only for an approved, settled verdict whose marker is on the image now."""
    ref = parse_reference(reference)
    store = deployment.store()
    try:
        digest, tags = describe_image(deployment.ecr(), ref)
    except ImageNotFound as missing:
        return _refuse(str(missing))
    image = f"{ref.repository}@{digest}"
    record = store.get(ref.repository, digest)
    if record is None:
        return _refuse(f"no verdict: the gatekeeper has no record of {image}")
    if not record.judged:
        return _refuse(f"pending: {image} has no verdict yet (waiting for its scan)")
    if record.gone:
        return _refuse(f"image gone: {image} was recorded as deleted")
    if record.state not in APPROVED_STATES:
        first = record.reasons[0] if record.reasons else "no reason recorded"
        return _refuse(f"{record.state.lower()}: {image}: {first}")
    if not record.settled:
        return _refuse(f"not settled: the {record.state} verdict of {image} is still being "
                       "applied; retry shortly")
    expected = deployment.markers.tag_for(Outcome.APPROVED, digest)
    if expected not in tags:
        hint = ""
        if record.marker and record.marker != expected:
            hint = (f"; the verdict names {record.marker}: are the marker templates the "
                    "stack's? (--stack, or GATEKEEPER_APPROVED_TAG)")
        return _refuse(f"marker missing: {image} is {record.state} but does not carry "
                       f"{expected}{hint}")
    warnings = ", with warnings" if record.state == Outcome.APPROVED_WITH_WARNINGS else ""
    print(f"approved: {image} (policy version {record.policy_version or '-'}{warnings})")
    return EXIT_OK


def _refuse(why: str) -> int:
    print("not approved: " + " ".join(why.split()), file=sys.stderr)  # one line, always
    return EXIT_FAILED

