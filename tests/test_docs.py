"""The documentation site (docs/, mkdocs.yml): every Python block of
docs/**/*.md runs as written (the README's rules, tests/test_readme.py), the
site builds with `mkdocs build --strict`, and every relative link of the
README points at a file (and heading) that exists."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import README, ROOT, python_blocks, run_block

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCKS = [(page.relative_to(ROOT).as_posix(), line, code) for page in PAGES for line, code in python_blocks(page)]
# Markdown links and images: [text](target) / ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
DOC_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
# Blocks run only with `-m heavy` (a line of the block -> the CI tests that run its code path):
HEAVY_BLOCKS = {
    # heavy: same claim as test_qat_export_litert.py::test_litert_runs_the_twin_within_one_output_step
    # [float32, int8] and ::test_export_command_writes_a_qat_keras_file_as_its_int8_twin in CI; 100 s
    'export_tflite(twin, "twin_int8.tflite", io_dtype="int8")': "two QAT LiteRT exports of a Small twin",
    # heavy: same claim as test_detector_export.py::test_onnx_raw_and_end_to_end_match_keras,
    # ::test_tflite_raw_matches_keras_and_decodes_like_predict and ::test_openvino_raw_matches_keras in CI; 50 s
    'export_model(detector, "ssdlite.tflite", "tflite")': "four SSDLite exports",
}


def _block_param(where: str, line: int, code: str):
    heavy = [key for key in HEAVY_BLOCKS if key in code]
    return pytest.param(where, line, code, id=f"{where}:{line}", marks=[pytest.mark.heavy] if heavy else [])


def test_docs_have_pages_and_every_block_compiles():
    assert (DOCS / "index.md").is_file() and len(PAGES) >= 9
    assert len(BLOCKS) >= 10
    for where, line, code in BLOCKS:
        compile(code, f"{where}:{line}", "exec")
    for key in HEAVY_BLOCKS:  # each names exactly one block (a stale key would silently mark nothing)
        assert sum(key in code for _, _, code in BLOCKS) == 1, key


@pytest.mark.slow
@pytest.mark.parametrize(("where", "line", "code"), [_block_param(*block) for block in BLOCKS])
def test_docs_block_runs(where, line, code, tmp_path, monkeypatch):
    run_block(code, f"{where}:{line}", tmp_path, monkeypatch)


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs (Python-Markdown's toc) and GitHub give a page's
    headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    anchors = set()
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = re.sub(r"[^\w\s-]", "", title.replace("`", "")).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def broken_links(markdown: Path) -> list[str]:
    """Relative link targets of `markdown` that name no existing file, or a
    heading the Markdown file they point at does not have."""
    broken = []
    for target in LINK.findall(markdown.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
            continue  # https:, mailto:, ...
        path, _, anchor = target.partition("#")
        file = (markdown.parent / path).resolve() if path else markdown
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(file, markdown.parent)}")
    return broken


def test_heading_anchors_and_broken_links_are_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Speed and the roofline limit\n\n## Image preprocessing: `preprocessor.json`\n\n"
                    "[a](page.md#speed-and-the-roofline-limit) [b](#image-preprocessing-preprocessorjson) "
                    "[c](missing.md) [d](#nowhere) ![e](https://example.com/x.png)\n")
    assert heading_anchors(page) == {"speed-and-the-roofline-limit", "image-preprocessing-preprocessorjson"}
    assert broken_links(page) == ["missing.md: no such file", "#nowhere: no heading #nowhere in page.md"]


def test_readme_links_point_at_files_that_exist():
    targets = LINK.findall(README.read_text())
    assert any(t.startswith("docs/") for t in targets), "the README links into docs/"
    assert broken_links(README) == []


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    missing = [name for name in DOC_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
               or importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the doc tools are not installed ({', '.join(missing)}): "
                    'pip install mkdocs mkdocs-material "mkdocstrings[python]" (in the dev extra)')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "backbone" / "index.html").is_file()
