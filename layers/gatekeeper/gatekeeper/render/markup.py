"""Chat markup shared by the Slack message and the AWS Chatbot notification: making untrusted
text inert, and the icon of each verdict."""

from __future__ import annotations

import unicodedata
from typing import Any

ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
ICONS = {"QUARANTINED": ":no_entry:", "APPROVED": ":white_check_mark:",
         "APPROVED_WITH_WARNINGS": ":warning:"}


def plain(value: Any) -> str:
    """Untrusted text on one line: control characters (newlines, tabs...) become spaces."""
    text = "" if value is None else str(value)
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def escape(value: Any) -> str:
    """``value`` as literal text in Slack-style markup: ``&``, ``<``, ``>`` escaped (no
    mention, no hidden link), on one line."""
    return "".join(ESCAPES.get(c, c) for c in plain(value))
