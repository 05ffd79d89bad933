"""Fuzz the Retry-After parser: any header text gives None or 0 ≤ seconds ≤ 1 h, never raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from fuzz_support import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from tuiaudit.daemon.retry import RETRY_AFTER_CAP_S, parse_retry_after

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

http_dates = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
).map(lambda d: format_datetime(d, usegmt=True))
near_dates = st.integers(-(10**6), 10**6).map(
    lambda s: format_datetime(NOW + timedelta(seconds=s), usegmt=True)
)
headers = st.one_of(
    st.text(max_size=60),
    st.integers(-(10**30), 10**30).map(str),
    st.from_regex(r"\s*[0-9]{1,40}\s*", fullmatch=True),
    http_dates,
    near_dates,
    near_dates.map(lambda d: d.replace("GMT", "+0530")),
    near_dates.map(lambda d: d[:-4]),  # no zone
    st.text(alphabet="0123456789 ,:-+GMTMonTueWedJanFebDec", max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@FUZZ
@given(headers)
def test_any_header_is_none_or_bounded_seconds(value: str) -> None:
    out = parse_retry_after(value, now=NOW)
    assert out is None or 0.0 <= out <= RETRY_AFTER_CAP_S


@FUZZ
@given(st.integers(0, 10**12))
def test_delta_seconds_are_exact_up_to_the_cap(n: int) -> None:
    assert parse_retry_after(str(n), now=NOW) == min(float(n), RETRY_AFTER_CAP_S)


@FUZZ
@given(st.integers(-(10**6), 10**6))
def test_http_dates_are_a_wait_from_now(seconds: int) -> None:
    header = format_datetime(NOW + timedelta(seconds=seconds), usegmt=True)
    assert parse_retry_after(header, now=NOW) == min(max(float(seconds), 0.0), RETRY_AFTER_CAP_S)


def test_found_by_the_fuzz() -> None:
    assert parse_retry_after("²", now=NOW) is None  # a digit to str.isdigit(), not to int()
    assert parse_retry_after("9" * 5000, now=NOW) == RETRY_AFTER_CAP_S  # past int()'s limit
    assert parse_retry_after("0" * 5000 + "7", now=NOW) == 7.0
