"""Reading an upstream's Retry-After and retry-after-ms."""

from __future__ import annotations

from email.utils import format_datetime, parsedate_to_datetime

import pytest

from interlock.providers.retry_after import (
    parse_retry_after,
    parse_retry_after_ms,
    retry_after_from_headers,
)

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
DATE_TS = parsedate_to_datetime(DATE).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("120", 120.0), (" 3 ", 3.0), ("1.5", 1.5), ("0", 0.0), (None, None), ("", None)],
        *[("-1", None), ("nan", None), ("inf", None), ("soon", None), ("Wed, 99 Foo", None)],
    ],
)
def test_parse_retry_after_delta_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=DATE_TS) == expected


def test_parse_retry_after_http_date() -> None:
    assert parse_retry_after(DATE, now=DATE_TS - 30) == pytest.approx(30.0)
    assert parse_retry_after(DATE, now=DATE_TS + 30) == 0.0
    naive = format_datetime(parsedate_to_datetime(DATE).replace(tzinfo=None))  # "-0000"
    assert parse_retry_after(naive, now=DATE_TS - 5) == pytest.approx(5.0)


def test_parse_retry_after_ms() -> None:
    assert parse_retry_after_ms("1500") == 1.5
    assert parse_retry_after_ms("-5") is None
    assert parse_retry_after_ms("x") is None
    assert parse_retry_after_ms(None) is None


def test_retry_after_from_headers_prefers_milliseconds_and_ignores_case() -> None:
    assert retry_after_from_headers({"Retry-After": "2", "retry-after-ms": "250"}, now=0) == 0.25
    assert retry_after_from_headers({"Retry-After": "2"}, now=0) == 2.0
    assert retry_after_from_headers({"Retry-After-Ms": "junk", "retry-after": "7"}, now=0) == 7.0
    assert retry_after_from_headers({}, now=0) is None
