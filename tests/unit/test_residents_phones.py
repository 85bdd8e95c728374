"""Korean phone numbers as districts write them, normalised to checked E.164 (pure)."""

from __future__ import annotations

import pytest

from registry.phones import InvalidPhone, PhoneKind, normalise_phone, parse_phone

VALID = [
    ("010-1234-5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("010 1234 5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("01012345678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("+82 10 1234 5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("+82-10-1234-5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("+82 (0)10 1234 5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("+8201012345678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("82-10-1234-5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("0082 10 1234 5678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
    ("1012345678", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),  # Excel ate the 0
    ("011-234-5678", "+82112345678", PhoneKind.MOBILE, "011-234-5678"),
    ("019-1234-5678", "+821912345678", PhoneKind.MOBILE, "019-1234-5678"),
    ("02-123-4567", "+8221234567", PhoneKind.LANDLINE, "02-123-4567"),
    ("(02) 1234-5678", "+82212345678", PhoneKind.LANDLINE, "02-1234-5678"),
    ("02.734.1234", "+8227341234", PhoneKind.LANDLINE, "02-734-1234"),
    ("+82 2 734 1234", "+8227341234", PhoneKind.LANDLINE, "02-734-1234"),
    ("031-123-4567", "+82311234567", PhoneKind.LANDLINE, "031-123-4567"),
    ("064-1234-5678", "+826412345678", PhoneKind.LANDLINE, "064-1234-5678"),
    ("051 987 6543", "+82519876543", PhoneKind.LANDLINE, "051-987-6543"),
    ("070-1234-5678", "+827012345678", PhoneKind.LANDLINE, "070-1234-5678"),
    ("  010-1234-5678  ", "+821012345678", PhoneKind.MOBILE, "010-1234-5678"),
]
INVALID = [
    ("010-123-456", "length"),
    ("010-1234-56789", "length"),
    ("02-12-345", "length"),
    ("02-023-4567", "subscriber"),
    ("010-0123-4567", "subscriber"),
    ("039-123-4567", "prefix"),  # no such area code
    ("1588-1234", "prefix"),  # a company's representative number, not a home
    ("080-123-4567", "prefix"),
    ("+1 212 555 0100", "foreign"),
    ("+81 3 1234 5678", "foreign"),
    ("010-1234-567O", "characters"),
    ("전화 없음", "characters"),
    ("", "characters"),
]


@pytest.mark.parametrize(("text", "e164", "kind", "national"), VALID)
def test_korean_formats_become_checked_e164(
    text: str, e164: str, kind: PhoneKind, national: str
) -> None:
    phone = parse_phone(text)
    assert (phone.e164, phone.kind, phone.national) == (e164, kind, national)
    assert parse_phone(phone.e164) == phone == parse_phone(phone.national)


@pytest.mark.parametrize(("text", "code"), INVALID)
def test_invalid_numbers_are_refused_with_a_reason(text: str, code: str) -> None:
    with pytest.raises(InvalidPhone, match=code):
        parse_phone(text)


def test_the_column_asks_for_its_kind_of_line() -> None:
    assert normalise_phone("010-1234-5678", PhoneKind.MOBILE) == "+821012345678"
    assert normalise_phone("070-1234-5678", PhoneKind.LANDLINE) == "+827012345678"
    with pytest.raises(InvalidPhone, match="not_mobile"):
        normalise_phone("02-123-4567", PhoneKind.MOBILE)
    with pytest.raises(InvalidPhone, match="not_landline"):
        normalise_phone("010-1234-5678", PhoneKind.LANDLINE)
