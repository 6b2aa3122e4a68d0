"""How the pages write money, periods, rates and offer terms: tables of cases (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from portal import dashboard, formats, terms


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (196500, "USD", "1,965.00 USD"),
        (1965, "USD", "19.65 USD"),
        (-5, "USD", "-0.05 USD"),
        (1470, "JPY", "1,470 JPY"),
        (1234567, "KWD", "1,234.567 KWD"),
        ("19.65", "USD", "19.65 USD"),
        ("-1234567.50", "EUR", "-1,234,567.50 EUR"),
        (0, "USD", "0.00 USD"),
        (None, "USD", "—"),
    ],
)
def test_money_has_separators_and_its_currency(value, currency, shown):
    assert formats.money(value, currency) == shown


def test_money_is_never_a_bool():
    with pytest.raises(TypeError):
        formats.money(True, "USD")


@pytest.mark.parametrize(
    ("start", "end", "inclusive", "said"),
    [
        ("2026-12-01", "2027-01-01", False, "December 2026"),
        ("2026-12-01", "2026-12-31", True, "December 2026"),
        ("2026-12-01", "2026-12-08", False, "1\u20137 Dec 2026"),
        ("2026-11-28", "2026-12-04", True, "28 Nov \u2013 4 Dec 2026"),
        ("2026-12-28", "2027-01-03", True, "28 Dec 2026 \u2013 3 Jan 2027"),
        ("2026-12-07", "2026-12-07", True, "7 Dec 2026"),
    ],
)
def test_periods_as_people_say_them(start, end, inclusive, said):
    assert formats.period(start, end, inclusive) == said


@pytest.mark.parametrize(
    ("num", "den", "shown"), [(31, 1000, "3.1 %"), (1, 3, "33.3 %"), (0, 10, "0.0 %"), (5, 0, "—")]
)
def test_percent(num, den, shown):
    assert formats.percent(num, den) == shown


@pytest.mark.parametrize(
    ("minor", "count", "shown"),
    [(1000, 3, "3.33 USD"), (5, 2, "0.02 USD"), (15, 2, "0.08 USD"), (100, 0, "—")],  # half-even: 2.5 -> 2, 7.5 -> 8
)
def test_ratio_money_rounds_half_even_once(minor, count, shown):
    assert formats.ratio_money(minor, count, "USD") == shown


@pytest.mark.parametrize(
    ("now", "before", "shown"),
    [(112, 100, "▲ 12 %"), (97, 100, "▼ 3 %"), (5, 5, "="), (3, 0, "new"), (0, 4, "▼ 100 %")],
)
def test_change_against_the_previous_period(now, before, shown):
    assert formats.change(now, before) == shown


@pytest.mark.parametrize(
    ("plan", "hold", "caps", "said"),
    [
        (
            {"cps_percent": "8", "cpc": 5},
            14,
            {"clicks": {"daily": 200}},
            "8 % of each sale + 0.05 USD per click, paid after a 14-day hold, daily cap 200 clicks",
        ),
        (
            {"cpa": {"signup": 250, "lead": 100}},
            0,
            {},
            "1.00 USD per lead + 2.50 USD per signup, approved without a hold",
        ),
        ({"cps_percent": "7.50"}, 30, {}, "7.5 % of each sale, paid after a 30-day hold"),
        (
            {
                "cps_percent": "5",
                "tiers": [{"percent": "7", "min_sales": 100}, {"percent": "9", "min_amount": 5000000}],
            },
            7,
            {},
            "5 % of each sale + 7 % once you pass 100 sales in a month + 9 % once your sales reach 50,000.00 USD in a "
            "month, paid after a 7-day hold",
        ),
        ({"cpm": 150}, 0, {}, "1.50 USD per 1,000 views, approved without a hold"),
        (
            {"markup": True},
            3,
            {"per_partner": {"payout": {"lifetime": 100000}}},
            "your retail price minus the wholesale price on each unit sold, paid after a 3-day hold, "
            "your lifetime cap 1,000.00 USD",
        ),
        ({}, 1, {}, "no commission set yet, paid after a 1-day hold"),
    ],
)
def test_offer_terms_in_plain_language(plan, hold, caps, said):
    assert terms.describe(plan, "USD", hold, caps) == said


TODAY = dt.date(2026, 12, 7)


@pytest.mark.parametrize(
    ("preset", "since", "until", "days", "previous"),
    [
        ("today", None, None, ("2026-12-07", "2026-12-07"), ("2026-12-06", "2026-12-06")),
        ("7d", None, None, ("2026-12-01", "2026-12-07"), ("2026-11-24", "2026-11-30")),
        ("this_month", None, None, ("2026-12-01", "2026-12-07"), ("2026-11-24", "2026-11-30")),
        ("last_month", None, None, ("2026-11-01", "2026-11-30"), ("2026-10-02", "2026-10-31")),
        (
            "custom",
            dt.date(2026, 3, 1),
            dt.date(2026, 3, 31),
            ("2026-03-01", "2026-03-31"),
            ("2026-01-29", "2026-02-28"),
        ),
    ],
)
def test_dashboard_windows_and_their_previous_period(preset, since, until, days, previous):
    w = dashboard.window(preset, since, until, TODAY)
    assert (w.since.isoformat(), w.until.isoformat()) == days
    p = w.previous()
    assert (p.since.isoformat(), p.until.isoformat()) == previous
    assert p.days == w.days


@pytest.mark.parametrize(
    ("preset", "since", "until", "field"),
    [
        ("custom", None, None, "from"),
        ("custom", dt.date(2026, 3, 2), dt.date(2026, 3, 1), "from"),
        ("custom", dt.date(2024, 1, 1), dt.date(2026, 3, 1), "from"),
        ("yesterday", None, None, "range"),
    ],
)
def test_dashboard_windows_refused_name_their_field(preset, since, until, field):
    from portal.errors import ApiError

    with pytest.raises(ApiError) as refused:
        dashboard.window(preset, since, until, TODAY)
    assert refused.value.code == "invalid_field" and refused.value.detail.startswith(f"{field}: ")
