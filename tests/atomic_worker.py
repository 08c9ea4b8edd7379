"""A child process for tests/test_atomic.py: writes or fetches in a loop.

It loads `mobilenetv3.core.utils` and `mobilenetv3.weights.download` without the
package's `__init__` (no Keras), so it starts in a fraction of a second and
can be killed at any point of a write.

Usage: python atomic_worker.py write-dir|write-file PATH COUNT
       python atomic_worker.py fetch URL MD5 CACHE
       python atomic_worker.py keras preset|saved_model|tflite PATH  (the real package, forever)
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mobilenetv3"
FILES = 8
FILE_BYTES = 64 * 1024


def _load_light() -> None:
    for name, folder in (("mobilenetv3", PACKAGE), ("mobilenetv3.weights", PACKAGE / "weights")):
        module = types.ModuleType(name)
        module.__path__ = [str(folder)]
        sys.modules[name] = module


def write_dir(path: str, token: str) -> None:
    from mobilenetv3.core.utils import atomic_path

    with atomic_path(path, directory=True) as staging:
        staging.mkdir()
        for index in range(FILES):
            (staging / f"part{index}.bin").write_bytes(token.encode().ljust(FILE_BYTES, b"x"))


def write_file(path: str, token: str) -> None:
    from mobilenetv3.core.utils import atomic_path

    with atomic_path(path) as staging:
        with open(staging, "wb") as out:
            for _ in range(FILES):
                out.write(token.encode().ljust(FILE_BYTES, b"x"))


def main() -> None:
    mode = sys.argv[1]
    if mode == "keras":
        keras_writer(sys.argv[2], sys.argv[3])
        return
    _load_light()
    if mode == "fetch":
        from mobilenetv3.weights import download

        os.environ["MOBILENETV3_CACHE"] = sys.argv[4]
        download.fetch(sys.argv[2], md5=sys.argv[3])
        return
    write = write_dir if mode == "write-dir" else write_file
    for count in range(int(sys.argv[3])):
        write(sys.argv[2], f"{os.getpid()}-{count}")



def keras_writer(kind: str, path: str) -> None:
    """Save a preset / export forever with the real package (slow start)."""
    import mobilenetv3
    from mobilenetv3 import presets

    model = mobilenetv3.MobileNetV3Backbone(**presets.get("mobilenet_v3_small").config, input_shape=(32, 32, 3))
    print("ready", flush=True)
    while True:
        if kind == "preset":
            model.save_to_preset(path)
        elif kind == "saved_model":
            from mobilenetv3.export import export_saved_model

            export_saved_model(model, path)
        else:
            from mobilenetv3.export import export_tflite

            export_tflite(model, path)


if __name__ == "__main__":
    main()
