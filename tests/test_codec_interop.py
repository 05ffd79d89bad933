"""Interop with the reference codec (tests/refcodec: data.fressian + zstd-jni on the JVM).

Every value encoded by our codec must decode, in the reference, back to the
same value; and what the reference encodes (including its chunked strings and
hash-ordered maps) must decode here. One JVM call per direction for all cases.
Outside CI these tests skip with the reason when Java or the jars are missing;
with CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import random
import string
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID

import pytest
import reference_codec
from reference_codec import canonical

from tuiaudit.codec import (
    BigInt,
    Char,
    CljList,
    Keyword,
    Symbol,
    decode_blob,
    encode_blob,
    from_tagged_json,
    kw,
    to_tagged_json,
)

pytestmark = pytest.mark.interop
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_reference() -> None:
    reason = reference_codec.problem()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true: the reference codec must run here: {reason}")
        pytest.skip(reason)


ALPHABET = string.ascii_letters + string.digits + '-_ ./:é✓日😀\u00e9\U0001f680\x00\n"\\'


def random_text(rnd: random.Random, n: int = 12) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randrange(n)))


def random_name(rnd: random.Random) -> str:
    return "".join(rnd.choice(string.ascii_lowercase + "-") for _ in range(rnd.randrange(1, 10)))


def random_key(rnd: random.Random) -> Any:
    roll = rnd.random()
    if roll < 0.6:
        return kw(random_name(rnd))
    if roll < 0.7:
        return Keyword(random_name(rnd), random_name(rnd))
    if roll < 0.8:
        return random_text(rnd)
    if roll < 0.9:
        return rnd.randrange(-(2**40), 2**40)
    return UUID(int=rnd.getrandbits(128))


def random_scalar(rnd: random.Random) -> Any:
    return rnd.choice(
        [
            lambda: None,
            lambda: rnd.random() < 0.5,
            lambda: rnd.randrange(-(2**63), 2**63) >> rnd.randrange(64),
            lambda: rnd.uniform(-1e6, 1e6),
            lambda: rnd.choice([0.0, 1.0, -0.5, 1e300, 5e-324]),
            lambda: random_text(rnd, 40),
            lambda: UUID(int=rnd.getrandbits(128)),
            lambda: datetime(2000, 1, 1, tzinfo=UTC) + timedelta(milliseconds=rnd.getrandbits(40)),
            lambda: random_key(rnd),
            lambda: Symbol(random_name(rnd)),
            lambda: Char(rnd.choice("aé✓")),
            lambda: BigInt(rnd.getrandbits(100) - 2**99),
            lambda: Fraction(rnd.randrange(1, 1000), rnd.randrange(2, 1000)),
        ]
    )()


def random_value(rnd: random.Random, depth: int = 3) -> Any:
    if depth == 0 or rnd.random() < 0.3:
        return random_scalar(rnd)
    n = rnd.randrange(12)
    kind = rnd.randrange(5)
    if kind == 0:
        return [random_value(rnd, depth - 1) for _ in range(n)]
    if kind == 1:
        return {random_key(rnd): random_value(rnd, depth - 1) for _ in range(n)}
    if kind == 2:
        return frozenset(random_key(rnd) for _ in range(n))
    if kind == 3:
        return CljList(random_value(rnd, depth - 1) for _ in range(n))
    return {kw(random_name(rnd)): random_value(rnd, depth - 1) for _ in range(n)}


def telemetry_batch(n: int) -> list[dict[Keyword, Any]]:
    rnd = random.Random(7)
    day = datetime(2025, 11, 30, tzinfo=UTC)
    return [
        {
            kw("name"): rnd.choice(["navigate", "create-file", "login-with-password"]),
            kw("type"): "action",
            kw("source"): "telemetry:frontend",
            kw("tracked-at"): day - timedelta(days=rnd.randrange(7)),
            kw("profile-id"): UUID(int=rnd.getrandbits(128)),
            kw("id"): UUID(int=rnd.getrandbits(128)),
            kw("props"): {kw("file-id"): UUID(int=rnd.getrandbits(128)), kw("n"): i},
            kw("context"): {kw("version"): "2.4.3", kw("locale"): "en"},
        }
        for i in range(n)
    ]


VECTORS: list[dict[str, Any]] = json.loads(reference_codec.VECTORS.read_text())


def our_cases() -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for case in VECTORS:
        cases[f"vector {case['name']}"] = from_tagged_json(case["value"])
    rnd = random.Random(20251130)
    for i in range(120):
        cases[f"random {i}"] = random_value(rnd)
    cases["batch of 1000 events"] = telemetry_batch(1000)
    cases["string of 70000 chars (Java would chunk it)"] = "ab😀" * 23_334
    cases["bytes of 70000"] = bytes(range(256)) * 274
    cases["64 distinct keys (GET_PRIORITY_CACHE)"] = {kw(f"k{i}"): i for i in range(64)}
    cases["20 tags (STRUCT beyond the packed range)"] = [
        {kw("t"): [frozenset([i]), CljList([i]), Symbol("s"), Char("c"), BigInt(i)]}
        for i in range(20)
    ]
    cases["vector keys and set members"] = {(1, 2): frozenset({(3,), "x"}), "k": {UUID(int=1): 1}}
    return cases


def reference_cases() -> dict[str, Any]:
    rnd = random.Random(1130)
    cases = {f"random {i}": random_value(rnd) for i in range(80)}
    cases["string of 200000 chars"] = "xé✓😀" * 50_000
    cases["map of 40 keys"] = {kw(f"key-{i}"): [i, str(i)] for i in range(40)}
    cases["batch of 300 events"] = telemetry_batch(300)
    return cases


@pytest.fixture(scope="module")
def decoded_by_reference() -> dict[str, dict[str, Any]]:
    """Our blobs of every case, decoded by the reference in one JVM call."""
    require_reference()
    cases = our_cases()
    out = reference_codec.decode_cases(
        [{"name": name, "blob": encode_blob(value)} for name, value in cases.items()]
    )
    return {c["name"]: {**c, "value": cases[c["name"]]} for c in out}


@pytest.fixture(scope="module")
def encoded_by_reference() -> dict[str, dict[str, Any]]:
    """Values encoded by the reference in one JVM call, for us to decode."""
    require_reference()
    cases = reference_cases()
    out = reference_codec.encode_cases(
        [{"name": name, "value": to_tagged_json(value)} for name, value in cases.items()]
    )
    return {c["name"]: {**c, "expected": cases[c["name"]]} for c in out}


@pytest.fixture(scope="module")
def vectors_decoded_by_reference() -> dict[str, dict[str, Any]]:
    """The committed vectors' own blobs, decoded by the in-repository reference."""
    require_reference()
    out = reference_codec.decode_cases([{"name": c["name"], "blob": c["blob"]} for c in VECTORS])
    return {c["name"]: c for c in out}


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_reference_decodes_the_committed_vectors(
    case: dict[str, Any], vectors_decoded_by_reference: dict[str, Any]
) -> None:
    # The runner in tests/refcodec agrees with the codec that produced the vectors.
    decoded = vectors_decoded_by_reference[case["name"]]
    assert "error" not in decoded, f"reference could not decode {case['name']}: {decoded}"
    assert canonical(decoded["decoded"]) == canonical(case["value"])


@pytest.mark.parametrize("name", list(our_cases()))
def test_reference_decodes_our_blobs(name: str, decoded_by_reference: dict[str, Any]) -> None:
    case = decoded_by_reference[name]
    assert "error" not in case, f"reference could not decode {name}: {case.get('error')}"
    assert from_tagged_json(case["decoded"]) == case["value"]


@pytest.mark.parametrize("name", list(reference_cases()))
def test_we_decode_reference_blobs(name: str, encoded_by_reference: dict[str, Any]) -> None:
    case = encoded_by_reference[name]
    assert decode_blob(case["blob"]) == case["expected"]
