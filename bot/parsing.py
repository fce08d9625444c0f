"""The one parsing layer for what users type and what buttons carry: ids, amounts, pages, dates
and times.

Rules: ASCII digits only (`str.isdigit()` also accepts `²` and `١`, which `int()` refuses or
reads as another number); every number within the range of the column it ends up in (an
`Integer` id, a `BigInteger` amount), so no `OverflowError` or database range error can come
out of a handler; dates and times in a sane window around now. A parser returns None for
anything else, and the caller answers with the command's usage line.

`check_numbers` is the dispatcher's guard: a command or button whose arguments hold a number
token that no parser here would accept is refused with the command's usage line before any
handler runs, so handlers that still read `int(text)` after `isdigit()` are safe too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

#: Largest value of an `Integer` column (ids, page numbers, counts) on SQLite and PostgreSQL.
INT_MAX = 2**31 - 1
#: Largest value of a `BigInteger` column (Telegram user ids, amounts in fen).
BIGINT_MAX = 2**63 - 1
#: Largest price in Stars or fen an admin may type (Telegram's invoice limit is far lower).
MAX_AMOUNT = 10**9
#: Dates an admin may type: not before this far in the past, not after this far ahead.
PAST_WINDOW = timedelta(days=1)
FUTURE_WINDOW = timedelta(days=5 * 366)
LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")

_ASCII_NUMBER = re.compile(r"[0-9]{1,19}")
#: A token that looks like a number to `str.isdigit()` (or is one with a `#` in front).
_NUMBERISH = re.compile(r"^#?(\w+)$")

#: The usage line of each command that takes arguments (catalog keys).
USAGE = {
    "addcourse": "addcourse.usage",
    "refund": "refund.usage",
    "announce": "announce.usage",
    "reviews": "reviews.usage",
    "cancelsession": "live.cancel.usage",
    "replay": "live.replay.usage",
    "reschedule": "live.reschedule.usage",
    "schedule": "live.schedule.usage",
    "sessions": "live.sessions.usage",
    "answer": "answer.usage",
    "ask": "ask.usage",
    "faq": "faq.usage",
    "instructor": "instructor.usage",
    "search": "search.usage",
    "kpi": "kpi.usage",
    "coupon": "coupon.usage",
    "export": "export.usage",
    "editcourse": "editcourse.usage",
    "withdraw": "withdraw.usage",
    "category": "category.usage",
    "cover": "cover.usage",
    "rate": "rate.usage",
    "audit": "audit.usage",
    "payments": "payments.usage",
}


def parse_int(text: str, lo: int = 0, hi: int = INT_MAX) -> int | None:
    """`text` (ASCII digits, an optional `#` in front) as an int in [lo, hi], else None."""
    text = text.strip().removeprefix("#")
    if not _ASCII_NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def parse_id(text: str) -> int | None:
    """A row id (`12` or `#12`): 1 … INT_MAX."""
    return parse_int(text, 1, INT_MAX)


def parse_page(text: str) -> int | None:
    """A page number: 0 … 100000."""
    return parse_int(text, 0, 100_000)


def parse_amount(text: str, lo: int = 1, hi: int = MAX_AMOUNT) -> int | None:
    """A price in the smallest unit (Stars, fen): at least 1, at most MAX_AMOUNT."""
    return parse_int(text, lo, hi)


def parse_chat_id(text: str) -> int | None:
    """A platform user id (Telegram ids exceed 2**31): 1 … BIGINT_MAX."""
    return parse_int(text, 1, BIGINT_MAX)


def is_number(text: str) -> bool:
    """True for 1 to 19 ASCII digits (no sign, no `#`, no `²`)."""
    return bool(_ASCII_NUMBER.fullmatch(text))


def ascii_digits(text: str) -> str:
    """Only the ASCII digits of `text` (a code typed as `123 456` or `123-456`)."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def parse_ids(parts: list[str], hi: int = INT_MAX) -> list[int] | None:
    """Every part as a number in [0, hi], or None when any part is not one."""
    numbers = [parse_int(part, 0, hi) for part in parts]
    return None if any(n is None for n in numbers) else numbers


def payload_numbers(payload: str) -> list[int] | None:
    """The numbers after the prefix of a button payload (`rvw:3:1` → [3, 1]); None when a
    part is not an ASCII number within INT_MAX (a tampered or stale button)."""
    parts = payload.split(":")[1:]
    return parse_ids(parts) if parts else None


def payload_id(payload: str) -> int | None:
    """The id of a `prefix:<id>` button payload (1 … INT_MAX), else None."""
    numbers = payload_numbers(payload)
    return numbers[0] if numbers and len(numbers) == 1 and numbers[0] >= 1 else None


def split_id(text: str) -> tuple[int | None, str]:
    """(`12` or `#12` as an id, the rest) of `<id> <rest>`; the id is None when not one."""
    head, _, rest = text.strip().partition(" ")
    return parse_id(head), rest.strip()


def parse_limit(text: str, lo: int, hi: int) -> int | None:
    """A count such as `/audit 50`, clamped to [lo, hi]; None when not an ASCII number."""
    value = parse_int(text, 0, INT_MAX)
    return None if value is None else min(hi, max(lo, value))


#: Telegram's largest Stars invoice (python-telegram-bot's InvoiceLimit.MAX_STAR_COUNT).
MAX_STARS = 25_000
#: The largest price in yuan an admin may type.
MAX_YUAN = 1_000_000
_YUAN = re.compile(r"([0-9]{1,7})(?:\.([0-9]{1,2}))?")


def parse_stars(text: str) -> int | None:
    """A price in Stars: ASCII digits, 1 … MAX_STARS."""
    return parse_int(text, 1, MAX_STARS)


def parse_yuan(text: str, lo: int = 1) -> int | None:
    """A price in yuan (`199`, `199.9`, `¥199.90`, `199元`) as fen, at least `lo` fen and
    below MAX_YUAN yuan; None for anything else (`1e3`, `nan`, full-width digits)."""
    text = text.strip().removeprefix("¥").removesuffix("元").strip()
    match = _YUAN.fullmatch(text)
    if not match:
        return None
    fen = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    return fen if lo <= fen < MAX_YUAN * 100 else None


def parse_local_datetime(
    text: str,
    zone: ZoneInfo,
    now: datetime | None = None,
    past: timedelta = PAST_WINDOW,
    future: timedelta = FUTURE_WINDOW,
) -> datetime | None:
    """`YYYY-MM-DDTHH:MM` (or with a space) in `zone` as a UTC moment, when it lies within
    [now - past, now + future]; years like 0001 or 9999 are refused. DST: the earlier reading."""
    text = text.strip()
    if not text.isascii():
        return None
    if text.startswith("+"):  # "+10m", "+2h", "+30s": from now (handy in the demo)
        return _from_now(text[1:], now or datetime.now(UTC), future)
    for pattern in LOCAL_FORMATS:
        try:
            naive = datetime.strptime(text, pattern)
        except ValueError:
            continue
        try:
            moment = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        except (OverflowError, ValueError):
            return None
        now = now or datetime.now(UTC)
        return moment if now - past <= moment <= now + future else None
    return None


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_date(
    text: str,
    now: datetime | None = None,
    past: timedelta = PAST_WINDOW,
    future: timedelta = FUTURE_WINDOW,
) -> date | None:
    """`YYYY-MM-DD` (ASCII) as a date within [today - past, today + future], else None
    (`2026-02-30`, `9999-12-31`, `0001-01-01`)."""
    text = text.strip()
    if not _DATE.fullmatch(text):
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None
    today = (now or datetime.now(UTC)).date()
    return day if today - past <= day <= today + future else None


def _from_now(text: str, now: datetime, future: timedelta) -> datetime | None:
    from bot.settings import parse_offset

    try:
        delta = parse_offset(text)
    except ValueError:
        return None
    return now + delta if timedelta(0) < delta <= future else None


def _bad_number(token: str, hi: int) -> bool:
    """True when `token` looks like a number to `str.isdigit()` but is not an ASCII number
    within [0, hi]."""
    match = _NUMBERISH.match(token)
    if not match or not match.group(1).isdigit():
        return False
    return parse_int(match.group(1), 0, hi) is None


def bad_number_token(text: str, first: int | None = None, refs: bool = True) -> str | None:
    """The first of the (first `first`) space-separated tokens of `text` that looks like a
    number but is not one the parsers accept, else None. A plain number may be at most INT_MAX
    (an id); the part after `channel:` of a user ref (`telegram:123…`) at most BIGINT_MAX."""
    for token in text.split()[:first]:
        head, sep, tail = token.partition(":")
        if refs and sep and head.isalpha() and head.isascii():
            if _bad_number(tail, BIGINT_MAX):
                return token
        elif any(_bad_number(part, INT_MAX) for part in token.split(":")):
            return token
    return None


#: Commands whose arguments are free text (numbers in them are words, never parsed).
FREE_TEXT = frozenset({"search", "ask", "搜索", "提问"})


def usage_key(command: str) -> str | None:
    """The catalog key of a command's usage line, or None."""
    return USAGE.get(command.lower())


def check_numbers(kind: str, command: str, args: str, payload: str) -> str | None:
    """For the dispatcher: the catalog key to answer with when a command's arguments or a
    button's payload carry an unacceptable number (`error.generic` for a command without a
    usage line, `error.stale_button` for a tampered button), else None."""
    if kind == "command" and command not in FREE_TEXT and bad_number_token(args, first=2):
        return usage_key(command) or "error.generic"
    if kind == "button" and bad_number_token(payload, refs=False):
        return "error.stale_button"
    return None


#: The invoice payload a payment gets when the one it carried holds no number we accept.
INVALID_PAYLOAD = "invalid"


def safe_payment_facts(amount: int, invoice_payload: str) -> tuple[int, str]:
    """A payment's amount and payload made storable: an amount beyond BIGINT becomes 0 and a
    payload with an unacceptable number becomes INVALID_PAYLOAD, so the payment is still
    recorded under its charge id (and refunded as one we cannot attribute), never lost to an
    OverflowError."""
    if not isinstance(amount, int) or not -BIGINT_MAX <= amount <= BIGINT_MAX:
        amount = 0
    if not isinstance(invoice_payload, str) or bad_number_token(invoice_payload, refs=False):
        invoice_payload = INVALID_PAYLOAD
    return amount, invoice_payload[:128]
