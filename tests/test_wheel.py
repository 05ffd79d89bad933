"""The wheel and sdist as users get them: built from a copy of the sources.

Only ``tuiaudit`` (and its dist-info) is put on sys.path by the wheel: the
top-level folders daemon/ and storage/ install as tuiaudit.daemon and
tuiaudit.storage (pyproject's package-dir). Every package folder, the
migrations, the stylesheet and the license are inside it, and the installed
wheel imports in a fresh interpreter that cannot see the source tree.

The wheel is platform-specific: it carries the compiled Fressian reader
(tuiaudit/codec/_fressian_reader.pyx, built by Cython; DESIGN §5.3), and the
installed package decodes with it. The sdist carries its .pyx and .pyi.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the package name it installs as.
PACKAGE_ROOTS = {"tuiaudit": "tuiaudit", "daemon": "tuiaudit/daemon", "storage": "tuiaudit/storage"}
SOURCES = ("pyproject.toml", "README.md", "LICENSE", *PACKAGE_ROOTS)
# *.so, *.c: a build in the checkout must not stand in for the wheel's own.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.so", "*.c")
COMPILED = "tuiaudit/codec/_fressian_reader"
BULK = "tuiaudit/storage/_sqlite_bulk"  # the SQLite writer's bulk insert (storage/_sqlite_bulk.pyx)
ONE_PASS = "tuiaudit/policy_frontend"  # the ingest one pass, compiled from its .py

BUILD = """
import pathlib, sys
from setuptools import build_meta
out = pathlib.Path(sys.argv[1])
names = [build_meta.build_wheel(str(out)), build_meta.build_sdist(str(out))]
(out / "built.txt").write_text(" ".join(names))  # the backend logs to stdout
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built by the PEP 517 backend from a copy of the sources, offline."""
    work = tmp_path_factory.mktemp("wheel")
    src, out = work / "src", work / "dist"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(path, src / name)
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"the build failed:\n{proc.stderr[-3000:]}"
    wheel_name, sdist_name = (out / "built.txt").read_text().split()
    return out / wheel_name, out / sdist_name


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_only_top_level_name_is_tuiaudit(built: tuple[Path, Path]) -> None:
    wheel, _ = built
    tops = {name.split("/")[0] for name in wheel_names(wheel)}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert tops - dist_info == {"tuiaudit"}


def test_every_package_folder_is_in_the_wheel(built: tuple[Path, Path]) -> None:
    names = set(wheel_names(built[0]))
    expected = []
    for folder, package in PACKAGE_ROOTS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.relative_to(ROOT / folder).as_posix()
            expected.append(f"{package}/{rel}")
    assert len(expected) >= 9
    missing = [e for e in expected if e not in names]
    assert not missing, f"package folders missing from the wheel (pyproject packages?): {missing}"
    # ...with all their modules
    modules = [
        f"{package}/{py.relative_to(ROOT / folder).as_posix()}"
        for folder, package in PACKAGE_ROOTS.items()
        for py in (ROOT / folder).rglob("*.py")
        if (py.parent / "__init__.py").exists()
    ]
    assert [m for m in modules if m not in names] == []


def test_data_files_and_license_are_in_the_wheel(built: tuple[Path, Path]) -> None:
    names = set(wheel_names(built[0]))
    sql = sorted((ROOT / "storage" / "migrations").rglob("*.sql"))
    assert len(sql) >= 2
    for path in sql:
        assert f"tuiaudit/storage/{path.relative_to(ROOT / 'storage').as_posix()}" in names
    assert "tuiaudit/py.typed" in names
    assert "tuiaudit/tui/dashboard.tcss" in names
    licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert len(licenses) == 1
    with zipfile.ZipFile(built[0]) as zf:
        assert zf.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = zf.read(licenses[0].replace("licenses/LICENSE", "METADATA")).decode()
    assert "License-Expression: MPL-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert "Mozilla Public License Version 2.0" in (ROOT / "LICENSE").read_text()


def test_the_sdist_carries_the_license(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[1]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"LICENSE", "pyproject.toml", "daemon/__init__.py", "storage/__init__.py"} <= names
    assert {f"{COMPILED}.pyx", f"{COMPILED}.pyi"} <= names  # the sdist builds the reader
    assert {"storage/_sqlite_bulk.pyx", "storage/_sqlite_bulk.pyi"} <= names  # and the insert
    assert not [n for n in names if n.endswith((".so", ".c"))]


def test_the_wheel_is_a_platform_wheel_with_the_compiled_reader(built: tuple[Path, Path]) -> None:
    wheel = built[0]
    assert not wheel.name.endswith("-none-any.whl"), wheel.name
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    names = set(wheel_names(wheel))
    assert f"{COMPILED}{suffix}" in names
    assert f"{COMPILED}.pyi" in names  # its types, for mypy users of the package
    assert {f"{BULK}{suffix}", f"{BULK}.pyi"} <= names
    assert {f"{ONE_PASS}{suffix}", f"{ONE_PASS}.py"} <= names  # the source stands in unbuilt


def test_the_installed_wheel_imports_without_the_sources(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    install = subprocess.run(
        [*pip, "--target", str(target), str(built[0])],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    installed = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"tuiaudit"}  # bin/: the console script
    # -S: no site, so no .pth file and no editable-install hook; the dependencies
    # come from this venv's site-packages as a plain path, tuiaudit from the target.
    probe = (
        "import importlib.util\n"
        "import tuiaudit, tuiaudit.daemon.service, tuiaudit.storage, tuiaudit.cli\n"
        "from tuiaudit.storage.migrate import load_migrations\n"
        "from tuiaudit.codec import _fressian_reader, decode_blob, encode_blob, kw, reader\n"
        "assert decode_blob(encode_blob([{kw('a'): 1}])) == [{kw('a'): 1}]\n"
        "print(reader.implementation(), _fressian_reader.__file__)\n"
        "from tuiaudit.storage import sqlite_writer\n"
        "print(sqlite_writer.bulk_module.__file__)\n"
        "from tuiaudit import policy_frontend\n"
        "print(policy_frontend.__file__)\n"
        "for m in (tuiaudit, tuiaudit.daemon, tuiaudit.storage): print(m.__file__)\n"
        "print(len(load_migrations('sqlite')), len(load_migrations('postgresql')))\n"
        "print(importlib.util.find_spec('daemon'), importlib.util.find_spec('storage'))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTHON") and k != "TUIAUDIT_PURE_PYTHON"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    proc = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    used, bulk, one_pass, *files, counts, specs = proc.stdout.splitlines()
    implementation, compiled = used.split(" ", 1)
    assert implementation == "compiled"  # the wheel's own build decodes
    assert Path(compiled).relative_to(target).as_posix() == (
        COMPILED + sysconfig.get_config_var("EXT_SUFFIX")
    )
    assert Path(bulk).relative_to(target).as_posix() == BULK + sysconfig.get_config_var(
        "EXT_SUFFIX"
    )
    assert Path(one_pass).relative_to(target).as_posix() == (
        ONE_PASS + sysconfig.get_config_var("EXT_SUFFIX")
    )
    assert [Path(f).relative_to(target).as_posix() for f in files] == [
        "tuiaudit/__init__.py",
        "tuiaudit/daemon/__init__.py",
        "tuiaudit/storage/__init__.py",
    ]
    migrations = ROOT / "storage" / "migrations"
    sources = [len(list((migrations / b).glob("*.sql"))) for b in ("sqlite", "postgres")]
    assert counts == f"{sources[0]} {sources[1]}"  # read through importlib.resources
    assert specs == "None None"  # no top-level daemon or storage
