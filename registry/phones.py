"""Korean telephone numbers as districts write them, checked and normalised to E.164 (pure).

Accepted: `010-1234-5678`, `010 1234 5678`, `01012345678`, `(02) 123-4567`, `02.123.4567`,
`+82 10-1234-5678`, `+82 (0)10 1234 5678`, `82-10-...`, and a number whose leading 0 a
spreadsheet dropped (`1012345678`, Excel having read `01012345678` as a number). Only Korean
numbers: residents are enrolled by Korean districts. The plan below is one row per prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class PhoneKind(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"  # an area-code number or an internet phone (070)


@dataclass(frozen=True, slots=True)
class PhonePrefix:
    """A national prefix (with its leading 0) and how many digits may follow it."""

    prefix: str
    kind: PhoneKind
    rest_lengths: tuple[int, ...]


_AREA_CODES = ("031", "032", "033", "041", "042", "043", "044",
               "051", "052", "053", "054", "055", "061", "062", "063", "064")  # fmt: skip
NUMBERING_PLAN: tuple[PhonePrefix, ...] = (
    PhonePrefix("010", PhoneKind.MOBILE, (8,)),
    *(PhonePrefix(p, PhoneKind.MOBILE, (7, 8)) for p in ("011", "016", "017", "018", "019")),
    PhonePrefix("070", PhoneKind.LANDLINE, (8,)),
    PhonePrefix("02", PhoneKind.LANDLINE, (7, 8)),
    *(PhonePrefix(p, PhoneKind.LANDLINE, (7, 8)) for p in _AREA_CODES),
)

_BY_PREFIX = {plan.prefix: plan for plan in NUMBERING_PLAN}  # prefixes are 2 or 3 digits
_SEPARATORS = re.compile(r"[\s\-.()/]")


class InvalidPhone(ValueError):
    """Not a Korean telephone number; `code` names why (the import translates it)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Phone:
    """A checked number: E.164 (`+821012345678`) and what kind of line it is."""

    e164: str
    kind: PhoneKind

    @property
    def national(self) -> str:
        """The number as Koreans write it: 010-1234-5678, 02-123-4567."""
        digits = "0" + self.e164.removeprefix("+82")
        plan = _BY_PREFIX.get(digits[:3]) or _BY_PREFIX[digits[:2]]
        rest = digits[len(plan.prefix) :]
        return f"{plan.prefix}-{rest[:-4]}-{rest[-4:]}"


def _national_digits(text: str) -> str:
    """The national significant number with its leading 0 (may still be invalid)."""
    compact = _SEPARATORS.sub("", text.replace("(0)", ""))
    if compact.startswith("+"):
        if not compact.startswith("+82"):
            raise InvalidPhone("foreign")
        compact = "0" + compact[3:].removeprefix("0")
    elif compact.startswith("0082"):
        compact = "0" + compact[4:].removeprefix("0")
    elif compact.startswith("82") and len(compact) >= 11:
        compact = "0" + compact[2:].removeprefix("0")
    elif compact.isdigit() and not compact.startswith("0") and len(compact) in (8, 9, 10):
        compact = "0" + compact  # a spreadsheet dropped the leading zero
    if not (compact.isascii() and compact.isdigit()):  # isdigit() alone admits ² and ٣
        raise InvalidPhone("characters")
    return compact


def parse_phone(text: str) -> Phone:
    """The checked E.164 number for `text`, or InvalidPhone with the reason's code."""
    digits = _national_digits(text.strip())
    plan = _BY_PREFIX.get(digits[:3]) or _BY_PREFIX.get(digits[:2])
    if plan is None:
        raise InvalidPhone("prefix")
    rest = digits[len(plan.prefix) :]
    if len(rest) not in plan.rest_lengths:
        raise InvalidPhone("length")
    if rest[0] == "0":
        raise InvalidPhone("subscriber")
    return Phone("+82" + digits[1:], plan.kind)


def normalise_phone(text: str, kind: PhoneKind | None = None) -> str:
    """E.164 for `text`; with `kind`, InvalidPhone('kind') when the line is of the other kind."""
    phone = parse_phone(text)
    if kind is not None and phone.kind is not kind:
        raise InvalidPhone("not_mobile" if kind is PhoneKind.MOBILE else "not_landline")
    return phone.e164
