"""Every Python block of README.md runs as written.

A block whose first line is `# needs network: <why>` or `# not run: <why>`
is compiled only (skipped with that reason); `# keras-hub recipe:` blocks
are run by tests/test_keras_hub.py. Each block runs alone, in a fresh
namespace, in a temporary working folder (blocks write files).
tests/test_docs.py runs the blocks of docs/*.md with the same helpers."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# ```python ... ``` fences at the start of a line (any indentation of the
# closing fence, blank lines inside the block).
BLOCK = re.compile(r"^[ \t]*```python[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"^#\s*(needs network|not run)\s*:?\s*(.*)$", re.I)
ELSEWHERE = {"# keras-hub recipe": "run by tests/test_keras_hub.py"}


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """`(line number, code)` of every python block of a Markdown file."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def readme_blocks() -> list[tuple[int, str]]:
    """`(line number, code)` of every python block of the README."""
    return python_blocks(README)


def _skip_reason(code: str) -> str | None:
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if (match := SKIP.match(first)) is not None:
        return f"{match.group(1)}: {match.group(2)}".strip()
    for prefix, reason in ELSEWHERE.items():
        if first.startswith(prefix):
            return reason
    return None


def run_block(code: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run one block as the README promises (skipped for its stated reason),
    in `tmp_path`; `where` ("README.md:12") names it in tracebacks."""
    reason = _skip_reason(code)
    if reason is not None:
        pytest.skip(reason)
    if "export_tflite" in code and keras.backend.backend() != "tensorflow":
        pytest.skip("TFLite export needs the TensorFlow backend")
    monkeypatch.chdir(tmp_path)
    name = re.sub(r"\W", "_", where)
    exec(compile(code, where, "exec"), {"__name__": name})


BLOCKS = readme_blocks()


def test_readme_has_blocks_and_every_one_compiles():
    assert len(BLOCKS) >= 5
    for line, code in BLOCKS:
        compile(code, f"README.md:{line}", "exec")


@pytest.mark.slow
@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line, code, tmp_path, monkeypatch):
    run_block(code, f"README.md:{line}", tmp_path, monkeypatch)
