"""`export --format web`: a folder that runs a classifier, detector or
segmenter in the browser, offline, on onnxruntime-web (WebAssembly).

The folder holds the model (`model.onnx`, fp32, NHWC 0..255 input; a
detector ends in its box decoding and NMS), `model.json` (the task, the
input size and the preset's `ImagePolicy`), `labels.txt`, `index.html` and
its script `app.mjs`, `preprocess.mjs` (the Python predictor's resize and
crop, pixel for pixel: Pillow's filters, not the canvas'), `serve.py` (a
static server with the cross-origin isolation headers threads need) and
`ort/`, the runtime files copied from the npm package `onnxruntime-web`
pinned by the `package-lock.json` shipped in `mobilenetv3/export/web/`.

Where the runtime comes from, first found wins (`find_web_runtime`):
`runtime_dir` (`--web-runtime DIR`), `$MOBILENETV3_WEB_RUNTIME`, the cache
(`<cache>/web/node_modules/onnxruntime-web`, `<cache>` being
`$MOBILENETV3_CACHE` or `~/.cache/mobilenetv3`), else `npm ci` from the
shipped lockfile into that cache when `npm` is on the PATH (npm checks the
package against the lockfile's sha512). Whatever the source, the copied
files must have the SHA-256 recorded in `web/runtime-files.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenetv3.core.normalization import ImagePolicy, scale_and_offset
from mobilenetv3.core.utils import atomic_path
from mobilenetv3.weights.download import cache_dir

WEB_DIR = Path(__file__).with_name("web")  # the page, its scripts, package.json and package-lock.json
PAGE_FILES = ("index.html", "app.mjs", "preprocess.mjs", "serve.py")
RUNTIME_ENV = "MOBILENETV3_WEB_RUNTIME"
KINDS = ("classifier", "detector", "segmenter")
# Detections drawn on the page: those scoring at least this (all are in `window.results`).
DISPLAY_THRESHOLD = 0.3


def runtime_manifest() -> dict[str, Any]:
    """The pinned runtime: `{"package", "version", "files": {path in the
    package: sha256}}` (`web/runtime-files.json`)."""
    return json.loads((WEB_DIR / "runtime-files.json").read_text())


def runtime_cache() -> Path:
    """The folder `npm ci` installs the runtime into: `<cache>/web`."""
    return cache_dir() / "web"


def find_web_runtime(runtime_dir: str | os.PathLike | None = None, *, install: bool = True,
                     log: Callable[[str], None] = print) -> Path:
    """The installed `onnxruntime-web` package folder to copy the runtime
    from: `runtime_dir`, else `$MOBILENETV3_WEB_RUNTIME`, else the cache,
    else (with `install`) `npm ci` of the shipped lockfile into the cache.

    A given folder may be the package itself or a folder holding
    `node_modules/onnxruntime-web`; it must hold the pinned version.

    Raises:
        OSError: no runtime found and none could be installed (the message
            says how to provide one), or a given folder is not the pinned
            `onnxruntime-web`.

    Example:

    ```python
    # not run: may run npm
    find_web_runtime()  # PosixPath('/root/.cache/mobilenetv3/web/node_modules/onnxruntime-web')
    ```
    """
    manifest = runtime_manifest()
    wanted = f"{manifest['package']} {manifest['version']}"
    given, source = (runtime_dir, "--web-runtime") if runtime_dir is not None else (os.environ.get(RUNTIME_ENV),
                                                                                    f"${RUNTIME_ENV}")
    if given:
        return _check_package(Path(given), source, manifest)
    cached = runtime_cache() / "node_modules" / manifest["package"]
    if _version_of(cached) == manifest["version"]:
        return cached
    npm = shutil.which("npm")
    if not install or npm is None:
        raise OSError(
            f"The web export needs {wanted} (npm) and found none: not in {str(cached)!r}"
            f"{'' if npm else ', and npm is not on the PATH to install it'}. Install Node.js and npm, or run "
            f"`npm ci` in a copy of {str(WEB_DIR)!r} and pass its node_modules/{manifest['package']} "
            f"folder as --web-runtime DIR (or ${RUNTIME_ENV})."
        )
    log(f"installing {wanted} with npm ci into {runtime_cache()} (once; npm checks it against the lockfile)...")
    _npm_ci(npm, runtime_cache())
    if _version_of(cached) != manifest["version"]:
        raise OSError(f"npm ci into {str(runtime_cache())!r} did not install {wanted}.")
    return cached


def _check_package(folder: Path, source: str, manifest: dict[str, Any]) -> Path:
    for candidate in (folder, folder / "node_modules" / manifest["package"]):
        if _version_of(candidate) is not None:
            version = _version_of(candidate)
            if version != manifest["version"]:
                raise OSError(f"{source} {str(folder)!r} holds {manifest['package']} {version}; this exporter "
                              f"needs {manifest['version']} (npm ci in {str(WEB_DIR)!r} installs it).")
            return candidate
    raise OSError(f"{source} {str(folder)!r} is not an installed {manifest['package']} package (no package.json "
                  f"naming it, there or in node_modules/{manifest['package']}).")


def _version_of(folder: Path) -> str | None:
    try:
        package = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return package.get("version") if package.get("name") == "onnxruntime-web" else None


def _npm_ci(npm: str, target: Path) -> None:
    """`npm ci` of the shipped lockfile into `target`, atomically (a killed
    install leaves no half package in the cache)."""
    with atomic_path(target, directory=True) as staging:
        staging.mkdir()
        for name in ("package.json", "package-lock.json"):
            shutil.copy(WEB_DIR / name, staging / name)
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            result = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise OSError("npm ci of onnxruntime-web took over 10 minutes; nothing was installed.") from None
        if result.returncode != 0:
            raise OSError(f"npm ci of onnxruntime-web failed (exit {result.returncode}); nothing was installed:\n"
                          f"{(result.stderr or result.stdout).strip()[-2000:]}")


def copy_runtime(package: Path, destination: Path) -> list[str]:
    """Copy the pinned runtime files from `package` into `destination`,
    checking each one's SHA-256 against `runtime-files.json`; the names
    copied."""
    manifest = runtime_manifest()
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for relative, sha256 in manifest["files"].items():
        source = package / relative
        if not source.is_file():
            raise OSError(f"{str(package)!r} lacks {relative}: not a complete {manifest['package']} "
                          f"{manifest['version']}.")
        target = destination / source.name
        shutil.copyfile(source, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != sha256:
            raise OSError(f"{str(source)!r} has SHA-256 {digest}, not the {sha256} of {manifest['package']} "
                          f"{manifest['version']}: a changed or corrupted copy. Remove it (or the cache folder "
                          f"{str(runtime_cache())!r}) and export again.")
        copied.append(source.name)
    (destination / "NOTICE.txt").write_text(
        f"{manifest['package']} {manifest['version']} (https://github.com/microsoft/onnxruntime), "
        f"MIT License, Copyright (c) Microsoft Corporation.\n")
    return copied


def web_policy(model: Any, input_size: int | None) -> ImagePolicy:
    """How the page prepares images: the model's preset policy at the
    exported input size; squashed (no crop) for detectors and segmenters,
    as `mobilenetv3.serving.predictor.input_policy` does."""
    policy = ImagePolicy.of_model(model)
    if input_size is None:
        if model.kind == "detector":
            input_size = int(model.image_size[0])
        else:
            height, width = tuple(model.input_shape[1:3])
            input_size = int(height) if height is not None and height == width else policy.image_size
    policy = policy.resized_to(int(input_size))
    if model.kind != "classifier":
        policy = ImagePolicy(policy.mode, policy.image_size, "squash", None, policy.interpolation)
    return policy


def label_names(model: Any) -> list[str]:
    """A name per class (the labels of `mobilenetv3.serving.batch_predict.label_names`)."""
    from mobilenetv3.core import decode

    num_classes, names = int(model.num_classes), getattr(model, "class_names", None)
    if names is not None and len(names) == num_classes:
        return [str(name).replace("\n", " ") for name in names]
    if num_classes in (decode.NUM_CLASSES, decode.NUM_CLASSES + 1):
        imagenet = [name for _, name in decode.imagenet_classes()]
        return ["background", *imagenet] if num_classes == decode.NUM_CLASSES + 1 else imagenet
    return [f"class {i}" for i in range(num_classes)]


def export_web(model: Any, path: str | os.PathLike, *, input_size: int | None = None,
               runtime_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    """Write the browser folder of a classifier, detector or segmenter (see
    the module docstring), atomically.

    Args:
        model: a `MobileNetV3ImageClassifier`, `MobileNetV3ObjectDetector`
            or `MobileNetV3ImageSegmenter`.
        path: the folder to write.
        input_size: the square input size (default: the model's, else its
            preset's image size).
        runtime_dir: the installed `onnxruntime-web` to copy (see
            `find_web_runtime`).
        log: where the npm install notice goes.

    Example:

    ```python
    # not run: may run npm
    export_web(classifier, "web")  # then: cd web && python serve.py
    ```
    """
    kind = getattr(model, "kind", "backbone")
    if kind not in KINDS:
        raise ValueError(f"The web export takes a model of kind {list(KINDS)}; got a {kind} "
                         f"({type(model).__name__}).")
    package = find_web_runtime(runtime_dir, log=log)
    policy = web_policy(model, input_size)
    with atomic_path(path, directory=True) as staging:
        staging.mkdir()
        _write_model(model, staging / "model.onnx", policy.image_size)
        copy_runtime(package, staging / "ort")
        for name in PAGE_FILES:
            shutil.copyfile(WEB_DIR / name, staging / name)
        (staging / "labels.txt").write_text("".join(f"{name}\n" for name in label_names(model)))
        (staging / "model.json").write_text(json.dumps(_page_config(model, policy), indent=2))
        (staging / "README.txt").write_text(_readme(kind))
    return Path(path)


def _write_model(model: Any, path: Path, size: int) -> None:
    from mobilenetv3.export.detector_export import export_onnx_detector, is_detector
    from mobilenetv3.export.onnx_export import export_onnx

    if is_detector(model):
        export_onnx_detector(model, path, postprocess=True, input_size=size)
        path.with_name(path.name + ".anchors.npy").unlink()  # the graph holds them; the page needs no file
    else:
        export_onnx(model, path, input_size=size)


def _page_config(model: Any, policy: ImagePolicy) -> dict[str, Any]:
    rescale = None
    if not model.backbone.include_rescaling:  # the page scales pixels as the model expects
        scale, offset = scale_and_offset(policy.mode)
        rescale = {"scale": scale if isinstance(scale, list) else [scale] * 3,
                   "offset": offset if isinstance(offset, list) else [offset] * 3}
    manifest = runtime_manifest()
    return {
        "title": f"MobileNetV3 {model.kind}, {int(model.num_classes)} classes",
        "kind": model.kind,
        "model": "model.onnx",
        "input": "images",
        "policy": policy.to_dict(),
        "rescale": rescale,
        "softmax": model.kind == "classifier" and getattr(model, "activation", None) != "softmax",
        "display_threshold": DISPLAY_THRESHOLD,
        "runtime": f"{manifest['package']} {manifest['version']}",
    }


def _readme(kind: str) -> str:
    return (
        f"A MobileNetV3 {kind} in the browser (onnxruntime-web, WebAssembly; works offline).\n\n"
        "Serve this folder and open the page:\n\n"
        "    python serve.py            # http://127.0.0.1:8000, cross-origin isolated: threads\n"
        "    python -m http.server      # or any static server: one thread\n\n"
        "Opening index.html as a file:// URL does not work: browsers load neither\n"
        "module scripts nor WebAssembly from files. A server must send .mjs as\n"
        "text/javascript and .wasm as application/wasm (Python's does).\n\n"
        "For scripts: window.mobilenetv3.predict(urlOrBlob), window.results,\n"
        "window.timings, window.backend, window.mobilenetv3.benchmark(n).\n"
    )
