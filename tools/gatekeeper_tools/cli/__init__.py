"""The ``gatekeeper`` command for people and pipelines.

Exit codes: 0 success or approved, 1 quarantined, 3 approved with warnings (or a verdict
under a monitor-mode policy that would quarantine), 2 usage or input error (a located message
on stderr). The operator commands (status, verify, reevaluate, replay-dlq) document theirs.

One module per command (``policy``, ``evaluate``, ``status``, ``verify``, ``reevaluate``,
``replay``, ``key``, ``webhook``, ``report``), each adding its subcommand with
``register(subparsers)``; what the operator commands share (where the deployment is, image
references, exit codes) is in ``deployment``, and which account and Region ``status``,
``verify`` and ``reevaluate`` look at (an organization's hub) in ``scope``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from gatekeeper import __version__
from gatekeeper.domain.findings import FindingsError
from gatekeeper.domain.policy import PolicyError
from gatekeeper_tools.cli import (
    evaluate,
    key,
    policy,
    reevaluate,
    replay,
    report,
    status,
    verify,
    webhook,
)
from gatekeeper_tools.cli.deployment import EXIT_INPUT

COMMANDS = (policy, evaluate, status, verify, key, reevaluate, replay, webhook, report)


class Parser(argparse.ArgumentParser):
    """Reports an unrecognised argument with the usage of the (sub)command it was given to.

    argparse hands what a subcommand's parser does not recognise up to the top-level parser,
    which would then show the top-level usage; here each parser refuses its own.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None,
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gatekeeper", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)  # of class Parser too
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, *,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> int:
    """``sleep`` and ``clock`` pace ``reevaluate`` (injectable: tests never really sleep)."""
    args = build_parser().parse_args(argv)
    args.sleep, args.clock = sleep, clock
    try:
        return int(args.func(args))
    except PolicyError as err:
        print(err, file=sys.stderr)
    except FindingsError as err:
        print(f"gatekeeper: {getattr(args, 'findings', 'findings')}: {err}", file=sys.stderr)
    except OSError as err:
        print(f"gatekeeper: {_file_error(err)}", file=sys.stderr)
    return EXIT_INPUT


def _file_error(err: OSError) -> str:
    """A file that cannot be read, said plainly (never an errno)."""
    if err.filename is None:
        return str(err)
    if isinstance(err, FileNotFoundError):
        return f"no such file: {err.filename}"
    if isinstance(err, IsADirectoryError):
        return f"not a file: {err.filename}"
    return f"{err.filename}: {err.strerror or err}"

