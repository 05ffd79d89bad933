"""The one pass compiled (tuiaudit/policy_frontend.py built by Cython, issue 20).

``pip install`` builds the module from the same source; Python imports it in
place of the .py. Every other test of the one pass runs against whichever is
imported (the compiled one wherever it is built, CI included); here the
compiled module is compared with the source itself, loaded under another name,
on random batches: the same rows, copies, column tuples, errors and rule counts.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sysconfig
import uuid
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fuzz_support import FUZZ
from hypothesis import given
from hypothesis import strategies as st
from test_policy_frontend_pass import NOW, SITES, UUIDS, batches, counted_ids

from tuiaudit import policy_apply, policy_frontend
from tuiaudit.events import ValidationError
from tuiaudit.policy import POLICY

SOURCE = Path(policy_frontend.__file__).with_name("policy_frontend.py")
COMPILED = policy_frontend.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX"))

needs_compiled = pytest.mark.skipif(not COMPILED, reason="the one pass is not built")


def test_ci_has_the_compiled_one_pass() -> None:
    """Under CI=true the extension must be built: CI cannot silently lose it."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI requires the build (a plain checkout may lack a compiler)")
    assert COMPILED, f"tuiaudit.policy_frontend is {policy_frontend.__file__} (pip install -e .)"


def _source_module() -> ModuleType:
    """policy_frontend.py itself, as a module of its own (not in sys.modules)."""
    loader = importlib.machinery.SourceFileLoader("policy_frontend_source", str(SOURCE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def source() -> ModuleType:
    return _source_module()


def _run(module: Any, batch: list[Any], site: str, rid: uuid.UUID | None, rows: bool) -> Any:
    before = Counter(policy_apply.COUNTS)
    with counted_ids(module):
        try:
            made = module.prepare_and_apply_frontend_columns(
                batch,
                profile_id=UUIDS[1],
                ip_addr="10.1.2.3",
                now=NOW,
                request_id=rid,
                policy=POLICY,
                site=SITES[site],
                rows=rows,
            )
        except ValidationError as exc:
            return ("error", exc.errors, Counter(policy_apply.COUNTS) - before)
    got_rows, shared, columns = made
    # repr tells 1 from 1.0 from True and -0.0 from 0.0, and keeps key order.
    return (repr(got_rows), repr(shared), repr(columns), Counter(policy_apply.COUNTS) - before)


def test_the_source_loads_as_its_own_module(source: ModuleType) -> None:
    assert source.__file__ == str(SOURCE)
    assert source is not policy_frontend
    assert source.prepare_and_apply_frontend_columns is not (
        policy_frontend.prepare_and_apply_frontend_columns
    )


@needs_compiled
@FUZZ
@given(
    batch=batches(),
    site=st.sampled_from(["default", "default", *sorted(SITES)]),
    rid=st.sampled_from([None, uuid.UUID(UUIDS[2])]),
    rows=st.booleans(),
)
def test_the_compiled_pass_is_the_source(
    source: ModuleType, batch: list[Any], site: str, rid: uuid.UUID | None, rows: bool
) -> None:
    # Twice each: the second run meets the memos and plans the first one filled.
    for _ in range(2):
        assert _run(policy_frontend, batch, site, rid, rows) == _run(source, batch, site, rid, rows)
