"""The blob v4 test vectors (tests/data/blob-v4.json, produced by the reference codec:
see tests/data/README.md): our codec decodes each blob to its value and round-trips it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reference_codec import VECTORS, canonical

from tuiaudit.codec import decode_blob, encode_blob, from_tagged_json, to_tagged_json


def _load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())
    return cases


CASES = _load()


def test_vectors_are_present() -> None:
    assert len(CASES) >= 60, f"expected the 60 vectors of {VECTORS}"
    assert len({c["name"] for c in CASES}) == len(CASES), "vector names are test ids: unique"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_vector_decodes_to_its_value(case: dict[str, Any]) -> None:
    decoded = decode_blob(case["blob"])
    assert decoded == from_tagged_json(case["value"])
    assert canonical(to_tagged_json(decoded)) == canonical(case["value"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_vector_value_round_trips_through_our_codec(case: dict[str, Any]) -> None:
    value = from_tagged_json(case["value"])
    assert decode_blob(encode_blob(value)) == value
