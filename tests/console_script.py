"""The installed `mobilenetv3` console script, run as a user runs it: a fresh
process, the TensorFlow backend. Imports nothing heavy (the script's start-up
is what the tests time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("mobilenetv3")


def run_script(*argv: object, cwd: Path, expect: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """`mobilenetv3 ARGV` in a fresh process; with `expect` (default 0), its
    exit status must be that, and a Traceback fails the test."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([str(SCRIPT), *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd, env=env)
    if expect is not None:
        assert result.returncode == expect, (f"mobilenetv3 {' '.join(map(str, argv))} exited {result.returncode}:\n"
                                             f"{result.stdout}\n{result.stderr}")
        assert "Traceback" not in result.stderr, result.stderr
    return result
