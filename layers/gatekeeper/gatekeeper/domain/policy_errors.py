"""A policy that cannot be used: each problem located (its path in the document, its line),
all of them in one error. Apart from :mod:`gatekeeper.domain.policy` so that what a policy
loads beside it (VEX documents) reports in the same terms without importing the policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyIssue:
    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class PolicyError(ValueError):
    def __init__(self, issues: Iterable[PolicyIssue], source: str = "policy.yaml") -> None:
        self.issues = tuple(issues)
        self.source = source
        lines = "\n".join("  " + issue.render(source) for issue in self.issues)
        super().__init__(f"invalid policy ({len(self.issues)} problem(s)):\n{lines}")
