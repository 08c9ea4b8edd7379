"""MkDocs hook: nested lists written with two-space indentation (as GitHub
renders them) read as nested in Python-Markdown, which needs four."""

from __future__ import annotations

import re

_INDENT = re.compile(r"^( +)(?=\S)")


def on_page_markdown(markdown: str, **_: object) -> str:
    """Double the leading spaces of every line outside fenced code."""
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            line = _INDENT.sub(lambda m: m.group(1) * 2, line)
        lines.append(line)
    return "\n".join(lines)
