"""An exported web page (`mobilenetv3 export --format web`) in headless
Chromium: served on 127.0.0.1, driven by puppeteer-core (`tests/web/`,
pinned by its package-lock.json, installed once with `npm ci` into
`<cache>/web-test`; it downloads no browser, it drives the system
`chromium`). For the tests and for timing the page:

```python
# not run: needs chromium and npm
from web_page import run_page

out = run_page("web", ["cat.bmp"], runs=50, threads=1)
out["backend"], out["timings"], out["benchmark_ms"]
```
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mobilenetv3.core.utils import atomic_path
from mobilenetv3.weights.download import cache_dir

DRIVER_DIR = Path(__file__).with_name("web")


def chromium() -> str | None:
    """The system Chromium (`$CHROMIUM`, else `chromium` on the PATH)."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why the page cannot be driven here (for `pytest.skip`), or None."""
    if chromium() is None:
        return "no chromium on the PATH (Debian: apt-get install -y chromium; or set $CHROMIUM)"
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"no {tool} on the PATH (Node.js and npm drive the browser and install onnxruntime-web)"
    return None


def driver() -> Path:
    """The driver folder (`drive.mjs` beside puppeteer-core), installed
    with `npm ci` on first use."""
    folder = cache_dir() / "web-test"
    lock = (DRIVER_DIR / "package-lock.json").read_bytes()
    if not ((folder / "package-lock.json").is_file() and (folder / "package-lock.json").read_bytes() == lock
            and (folder / "node_modules" / "puppeteer-core").is_dir()):
        with atomic_path(folder, directory=True) as staging:
            staging.mkdir()
            for name in ("package.json", "package-lock.json"):
                shutil.copy(DRIVER_DIR / name, staging / name)
            env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}
            subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=staging, env=env, check=True, capture_output=True, timeout=600)
    shutil.copyfile(DRIVER_DIR / "drive.mjs", folder / "drive.mjs")
    return folder


class _Images(http.server.SimpleHTTPRequestHandler):
    """Static files of the folder, plus `images` served as `/<name>`."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def __init__(self, *args: Any, images: dict[str, Path], **kwargs: Any) -> None:
        self.images = images
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].lstrip("/")
        return str(self.images[name]) if name in self.images else super().translate_path(path)

    def log_message(self, *args: Any) -> None:
        pass


def _shipped_handler(folder: Path) -> type:
    """The exported folder's own `serve.py` handler (COOP/COEP headers)."""
    spec = importlib.util.spec_from_file_location("exported_serve", folder / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.IsolatedHandler


@contextlib.contextmanager
def serve(folder: str | os.PathLike, images: dict[str, Path] | None = None, isolated: bool = False) -> Iterator[str]:
    """Serve `folder` (plus `images`, served as `/<name>`) on an ephemeral
    port of 127.0.0.1 from a thread; yields the base URL. `isolated`: with
    the headers of the folder's own `serve.py` (cross-origin isolation)."""
    base = type("Handler", (_Images, _shipped_handler(Path(folder))), {}) if isolated else _Images
    handler = functools.partial(base, directory=str(folder), images=images or {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def run_page(folder: str | os.PathLike, images: Sequence[str | os.PathLike], *, runs: int = 0,
             threads: int | None = None, isolated: bool = False, screenshot: str | os.PathLike | None = None,
             timeout: float = 180) -> dict[str, Any]:
    """Load the page in headless Chromium, predict each image through it,
    then (with `runs`) time `runs` more inferences of the last one.

    Returns the driver's JSON: `backend` (onnxruntime-web version, threads,
    crossOriginIsolated, load_ms), `results` (the page's result per image),
    `timings` (per image: preprocess_ms, inference_ms, postprocess_ms),
    `benchmark_ms` (with `runs`), `dom` (the results panel's text) and
    `console` (the page's console lines). `threads` > 1 needs `isolated`
    (served with the COOP/COEP headers of the folder's `serve.py`)."""
    served = {f"image{i}{Path(p).suffix}": Path(p) for i, p in enumerate(images)}
    with serve(folder, served, isolated) as base:
        query = f"?threads={threads}" if threads else ""
        job = {"chromium": chromium(), "url": f"{base}index.html{query}", "images": [base + n for n in served],
               "runs": runs, "screenshot": str(screenshot) if screenshot else None}
        result = subprocess.run(["node", str(driver() / "drive.mjs"), json.dumps(job)], capture_output=True,
                                text=True, timeout=timeout)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"the browser driver failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    out = json.loads(result.stdout)
    if "error" in out:
        raise RuntimeError(f"the page failed: {out['error']}\nconsole:\n" + "\n".join(out["console"]))
    return out


def time_page(folder: str | os.PathLike, image: str | os.PathLike, runs: int = 50, threads: int | None = None,
              isolated: bool | None = None) -> dict[str, Any]:
    """Time the page's inference in headless Chromium: one image predicted
    (its first-run timings), then `runs` more inferences of it. `threads`
    > 1 serves the folder cross-origin isolated (as `serve.py` does).

    Returns `{"backend", "first": the first image's timings,
    "median_ms", "min_ms", "runs_ms"}`."""
    import statistics

    isolated = bool(threads and threads > 1) if isolated is None else isolated
    out = run_page(folder, [image], runs=runs, threads=threads, isolated=isolated)
    times = out["benchmark_ms"]
    return {"backend": out["backend"], "first": out["timings"][0], "median_ms": statistics.median(times),
            "min_ms": min(times), "runs_ms": times}
