"""The shared test vectors (shared/vectors/blob-v4.json): produced by the reference codec."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reference_codec import VECTORS

from tuiaudit.codec import decode_blob, encode_blob, from_tagged_json, to_tagged_json


def _load() -> list[dict[str, Any]]:
    if not VECTORS.exists():
        return []
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())
    return cases


CASES = _load()


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


def test_vectors_are_present() -> None:
    assert len(CASES) >= 60, f"expected the shared vectors at {VECTORS}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_vector_decodes_to_its_value(case: dict[str, Any]) -> None:
    decoded = decode_blob(case["blob"])
    assert decoded == from_tagged_json(case["value"])
    assert canonical(to_tagged_json(decoded)) == canonical(case["value"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_vector_value_round_trips_through_our_codec(case: dict[str, Any]) -> None:
    value = from_tagged_json(case["value"])
    assert decode_blob(encode_blob(value)) == value
