"""Numbers as they are said, for transcripts that never hold digits: cardinals, years, days of the month."""

from __future__ import annotations

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
).split()


def number_to_words(n: int) -> str:
    """Cardinal number in words, 0 <= n < 1,000,000 ("four hundred twelve")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    rest = n % 1000
    return number_to_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_to_words(rest))


def year_words(year: int) -> str:
    """A year as it is read: 1864 "eighteen sixty four", 1905 "nineteen oh five", 1900 "nineteen hundred",
    2004 "two thousand and four", 2012 "twenty twelve"."""
    if not 1000 <= year <= 2099:
        raise ValueError(f"year out of range: {year}")
    if 2000 <= year <= 2009:
        return "two thousand" + ("" if year == 2000 else " and " + ONES[year % 10])
    hi, lo = divmod(year, 100)
    if lo == 0:
        return number_to_words(hi) + " hundred"
    return number_to_words(hi) + " " + ("oh " + ONES[lo] if lo < 10 else number_to_words(lo))


def ordinal_words(n: int) -> str:
    """A day of the month: 1 "first", 22 "twenty second", 30 "thirtieth"."""
    if not 1 <= n <= 31:
        raise ValueError(f"day of the month out of range: {n}")
    if n <= 20:
        return _ORDINALS[n - 1]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return TENS[tens][:-1] + "ieth"
    return f"{TENS[tens]} {_ORDINALS[ones - 1]}"
