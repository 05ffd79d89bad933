"""The last scan's pre-filter is conservative (DESIGN §3.1, tuiaudit/pii_scan.py).

``scan`` skips the full scan (``_scan``) for a string in which ``_SUSPECT``
finds nothing and that holds fewer than 7 digits (a phone number's least).
That is only sound if no such string could ever be a hit: for every text,
no suspect mark and few digits imply no hit, in version fields or not; and
``scan`` always says what ``_scan`` says.
"""

from __future__ import annotations

from fuzz_support import FUZZ
from hypothesis import example, given
from hypothesis import strategies as st

from tuiaudit.pii_scan import _SUSPECT, _scan, scan

# Pieces the patterns look for, glued in any order: hits and near misses.
PIECES = st.sampled_from(
    [
        "eyJ",
        "eyJhbGci",
        ".",
        "@",
        ":",
        "::",
        "?",
        "#",
        "=",
        "&",
        "/",
        "//",
        "+",
        "-",
        "_",
        " ",
        "%",
        "1",
        "42",
        "555",
        "2671",
        "255",
        "0",
        "a",
        "ab",
        "AKIA",
        "Z9",
        "fe80",
        "deadbeef",
        "getUserProfile",
        "x9Qp",
        "https",
        "mailto",
        "é",
        "١٢٣",  # Arabic-Indic digits: \\d in Python's re
        "\u00a0",
        "²",
        "(",
        ")",
    ]
)
TEXTS = st.one_of(
    st.lists(PIECES, max_size=12).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet="eyJ.abcXYZ019-_+/=@: ", max_size=40),
)


@FUZZ
@given(text=TEXTS, version=st.booleans())
@example(text="eyJhbGci.eyJzdWIi", version=False)  # a cut JWT: 17 characters, no digit
@example(text="eyJabcde.abcde", version=True)
@example(text="2-1-2-5-5-5-1-2-3-4", version=False)  # a phone number, one digit at a time
@example(text="+4 4 2 0 7 9 4 6 0 9 5 8", version=True)
def test_a_text_the_prefilter_lets_pass_is_never_a_hit(text: str, version: bool) -> None:
    if _SUSPECT.search(text) is None and sum(c.isdigit() for c in text) < 7:
        assert _scan(text, version) is None
    assert scan(text, version=version) == _scan(text, version)
