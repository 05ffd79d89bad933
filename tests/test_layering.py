"""Each layer loads only what sits below it, checked in a fresh interpreter.

The layers: storage (bottom) <- the core (tuiaudit/*.py, tuiaudit/codec) <-
the daemon <- the app (cli, commands, demo, clidocs); the dashboard (tuiaudit.tui)
sits beside the daemon and never loads it. pyproject's import-linter contracts
check the import statements (``scripts/lint-imports``); this test checks what
importing every module of a layer really puts in ``sys.modules``, third-party
packages included, as Harlequin's test keeps Textual out of its non-UI code.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import tuiaudit

APP = {"__main__", "cli", "clidocs", "commands", "demo"}
SIBLINGS = {"daemon", "storage", "tui"}


def _core() -> list[str]:
    """Every module of the core: the rest of the package's own folder."""
    names = [m.name for m in pkgutil.iter_modules(tuiaudit.__path__)]
    return sorted(f"tuiaudit.{n}" for n in names if n not in APP | SIBLINGS)


# layer -> (packages whose every module it imports, prefixes it must not load)
LAYERS: dict[str, tuple[list[str], list[str]]] = {
    "storage": (
        ["tuiaudit.storage"],
        [*_core(), *(f"tuiaudit.{n}" for n in APP | {"daemon", "tui"}), "textual", "aiohttp"],
    ),
    "core": (
        _core(),
        [*(f"tuiaudit.{n}" for n in APP | {"daemon", "tui"}), "textual", "aiohttp"],
    ),
    "daemon": (
        ["tuiaudit.daemon"],
        [*(f"tuiaudit.{n}" for n in APP | {"tui"}), "textual"],
    ),
    "tui": (
        ["tuiaudit.tui"],
        [*(f"tuiaudit.{n}" for n in APP | {"daemon"}), "aiohttp"],
    ),
}

# Runs in the child: import every module of the named packages (recursively),
# then print what is loaded.
_CHILD = """
import importlib, json, pkgutil, sys
for name in json.loads(sys.argv[1]):
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(packages: list[str]) -> set[str]:
    """``sys.modules`` of a fresh interpreter after importing every module of ``packages``."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(packages)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"importing {packages} failed:\n{out.stderr}"
    return set(json.loads(out.stdout))


def _hits(loaded: set[str], prefixes: list[str]) -> list[str]:
    return sorted(m for m in loaded for p in prefixes if m == p or m.startswith(p + "."))


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_loads_nothing_above_it(layer: str) -> None:
    packages, forbidden = LAYERS[layer]
    loaded = loaded_by(packages)
    assert set(packages) <= loaded  # the layer itself did load
    assert _hits(loaded, forbidden) == [], f"{layer} loads modules of a higher layer"


def test_the_check_sees_third_party_loads() -> None:
    # The control: the dashboard does load Textual, and the core the storage below it.
    assert _hits(loaded_by(["tuiaudit.tui"]), ["textual"])
    assert _hits(loaded_by(["tuiaudit.policy"]), ["tuiaudit.storage"])


def test_the_core_is_every_module_outside_the_named_layers() -> None:
    core = _core()
    assert {"tuiaudit.events", "tuiaudit.codec", "tuiaudit.control", "tuiaudit.liveness"} <= set(
        core
    )
    assert not set(core) & {f"tuiaudit.{n}" for n in APP | SIBLINGS}
