"""Calling the reference blob codec (tests/refcodec: data.fressian + zstd-jni on
the JVM, run by Debian's clojure) from tests and benchmarks.

Everything it needs is in this repository except Java and the Debian jars
(scripts/setup.sh installs them). One JVM start costs about 2 s, so callers
batch their cases into one call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BLOBREF = HERE / "refcodec" / "blobref"
BLOBREF_CLJ = HERE / "refcodec" / "blobref.clj"
VECTORS = HERE / "data" / "blob-v4.json"
JAR_DIR = Path(os.environ.get("TUIAUDIT_JAVA_JARS", "/usr/share/java"))
# The jars the launcher puts on the class path (clojure.jar comes with `clojure`).
JARS = ("clojure.jar", "data.fressian.jar", "fressian.jar", "zstd-jni.jar", "data.json.jar")
DEBS = "clojure libdata-fressian-clojure libfressian-java libzstd-jni-java libdata-json-clojure"
INSTALL_HINT = f"apt-get install -y default-jre-headless {DEBS} (or run scripts/setup.sh as root)"


def canonical(tagged: Any) -> Any:
    """Tagged JSON with unordered parts ($set members, $map pairs) in a fixed order."""
    if isinstance(tagged, list):
        return [canonical(v) for v in tagged]
    if isinstance(tagged, dict):
        if set(tagged) == {"$set"}:
            return {"$set": sorted((canonical(v) for v in tagged["$set"]), key=json.dumps)}
        if set(tagged) == {"$map"}:
            pairs = [[canonical(k), canonical(v)] for k, v in tagged["$map"]]
            return {"$map": sorted(pairs, key=json.dumps)}
        return {k: canonical(v) for k, v in tagged.items()}
    return tagged


def problem() -> str | None:
    """Why the reference codec cannot run here, naming the missing thing; None when it can."""
    if shutil.which("java") is None:
        return f"reference codec: java is not installed (install: {INSTALL_HINT})"
    if shutil.which("clojure") is None:
        return f"reference codec: the clojure command is not installed (install: {INSTALL_HINT})"
    missing = [j for j in JARS if not (JAR_DIR / j).exists()]
    if missing:
        return f"reference codec: jars missing in {JAR_DIR}: {', '.join(missing)} ({INSTALL_HINT})"
    return None


def class_path() -> str:
    """The class path the launcher uses, for callers that start the JVM themselves."""
    return ":".join(str(JAR_DIR / j) for j in JARS)


def run(command: str, stdin: str, timeout: float = 600) -> str:
    """Run ``blobref COMMAND`` with ``stdin``; its stdout, or RuntimeError with stderr."""
    proc = subprocess.run(
        ["sh", str(BLOBREF), command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "TUIAUDIT_JAVA_JARS": str(JAR_DIR)},
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
