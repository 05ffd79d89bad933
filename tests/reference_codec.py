"""Calling the reference blob codec (shared/reference/blobref: data.fressian +
zstd-jni on the JVM) from tests and benchmarks.

One JVM start costs about 2 s, so callers batch their cases into one call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("TUIAUDIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
BLOBREF = SHARED / "reference" / "blobref"
VECTORS = SHARED / "vectors" / "blob-v4.json"
# The jars blobref needs (its class path also names optional spec jars).
JARS = ("clojure.jar", "data.fressian.jar", "fressian.jar", "zstd-jni.jar", "data.json.jar")
INSTALL_HINT = (
    "apt-get install -y default-jre-headless clojure libdata-fressian-clojure "
    "libfressian-java libzstd-jni-java libdata-json-clojure"
)


def problem() -> str | None:
    """Why the reference codec cannot run here, or None when it can."""
    if not BLOBREF.exists():
        return f"reference codec not found at {BLOBREF} (set TUIAUDIT_SHARED)"
    if shutil.which("java") is None:
        return f"java is not installed (install: {INSTALL_HINT})"
    missing = [j for j in JARS if not (Path("/usr/share/java") / j).exists()]
    if missing:
        return f"reference codec jars missing: {', '.join(missing)} (install: {INSTALL_HINT})"
    return None


def run(command: str, stdin: str, timeout: float = 600) -> str:
    """Run ``blobref COMMAND`` with ``stdin``; its stdout, or RuntimeError with stderr."""
    proc = subprocess.run(
        ["sh", str(BLOBREF), command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"blobref {command} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def decode_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"name", "blob"}]`` -> the same with ``"decoded"`` (tagged JSON) or ``"error"``."""
    result: list[dict[str, Any]] = json.loads(run("decode-cases", json.dumps(cases)))
    return result


def encode_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"name", "value"}]`` (tagged JSON) -> the same with ``"blob"``."""
    result: list[dict[str, Any]] = json.loads(run("encode-cases", json.dumps(cases)))
    return result
