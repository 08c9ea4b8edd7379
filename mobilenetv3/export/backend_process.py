"""An export done by a child Python process on another Keras backend (a
Keras process cannot switch backends): the model goes to the child as a
`.keras` file in a scratch folder, with any arrays beside it, and the child
(`python -m MODULE MODEL.keras OUT OPTIONS_JSON`) writes `OUT`. Used by the
ExecuTorch export (PyTorch backend) and the LiteRT export of a QAT twin
(TensorFlow backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mobilenetv3.core.utils import scratch_dir


def export_in_backend(module: str, backend: str, model: Any, out: Path, options: dict, what: str,
                      arrays: dict[str, np.ndarray] | None = None) -> None:
    """Run `python -m module MODEL.keras out OPTIONS_JSON` with
    `KERAS_BACKEND=backend`, `model` saved as MODEL.keras and each of
    `arrays` as `<name>` beside it; raise naming `what` if it fails.

    Example:

    ```python
    # not run: needs a model and a module with a `load_child_arguments` entry point
    export_in_backend("mobilenetv3.export.executorch_export", "torch", model, Path("m.pte"), {}, "The export")
    ```
    """
    with scratch_dir("backend-export") as folder:
        model_path = folder / "model.keras"
        model.save(model_path)
        for name, array in (arrays or {}).items():
            np.save(folder / name, array)
        env = {**os.environ, "KERAS_BACKEND": backend}
        command = [sys.executable, "-m", module, str(model_path), str(out), json.dumps(options)]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0 or not Path(out).is_file():
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            raise RuntimeError(f"{what} (a child process on the {backend} backend) failed: "
                               f"{lines[-1] if lines else f'exit status {result.returncode}'}")


def load_child_arguments(argv: list[str], backend: str) -> tuple[Any, Path, dict, Path]:
    """In the child: `(model, out, options, folder)` from its arguments
    (the folder holds the arrays the parent saved).

    Example:

    ```python
    # not run: in a child process started by export_in_backend
    model, out, options, folder = load_child_arguments(sys.argv[1:], "torch")
    ```
    """
    import keras

    from mobilenetv3.presets import loader

    model_path, out, options = argv
    if keras.config.backend() != backend:
        raise SystemExit(f"run with KERAS_BACKEND={backend}")
    for kind in loader.MODEL_CLASSES:  # registers the package's Keras classes for loading
        loader.model_class(kind)
    import mobilenetv3.quantization  # noqa: F401  (registers the QAT layers)

    model = keras.saving.load_model(model_path, compile=False)
    return model, Path(out), json.loads(options), Path(model_path).parent
