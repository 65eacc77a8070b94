"""Money as this site counts it: currencies, minor units, amounts typed by donors, and the
donation settings (presets, limits, the card-fee estimate), read once at start.

No Stripe calls here: payments.py talks to Stripe, ledger.py applies what Stripe reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

import pycountry
from flask import current_app

from .config import SettingsError


class StripeSettingsError(SettingsError):
    """The Stripe settings would make the site take money it should not, or none at all."""


# ISO 4217 currencies Stripe charges in whole units: 1000 JPY is unit_amount=1000.
# fmt: off
ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
})
# fmt: on
SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥"}
# Between a currency code and its number, as in "CHF 0.25": a no-break space, so a narrow
# screen never puts the code at the end of one line and its number at the start of the next.
CODE_SPACE = "\u00a0"

# Stripe counts these in thousandths (with a last digit of 0); this site counts in
# hundredths, so it would charge ten times too little.
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# Currencies with rules of their own at Stripe, which this site does not follow.
SPECIAL_RULES = {
    "ISK": "Stripe takes ISK in hundredths, but only whole krónur (amounts divisible by 100)",
    "HUF": "Stripe pays out HUF only in whole forints, though it charges in hundredths",
    "TWD": "Stripe pays out TWD only in whole dollars, though it charges in hundredths",
    "UGX": "Stripe has a rule of its own for how UGX amounts are written",
}


# ISO 4217 lists more than money donors pay with. It keeps the codes beginning with X for
# what is no country's money (gold, silver and other metals, units of account, XTS for
# testing, XXX for "no currency"), except these, which are:
X_CURRENCIES = frozenset({"XAF", "XCD", "XCG", "XOF", "XPF"})
# And it lists fund codes, units that banks and governments count in, each beside the
# money people pay with.
FUND_CODES = {
    "BOV": "BOB", "CHE": "CHF", "CHW": "CHF", "CLF": "CLP", "COU": "COP",
    "MXV": "MXN", "USN": "USD", "UYI": "UYU", "UYW": "UYU",
}  # fmt: skip


def _currency(code: str, name: str) -> str:
    """A configured currency this site charges correctly; StripeSettingsError otherwise."""
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise StripeSettingsError(
            f"{name}: {code!r} is not a three-letter currency code like EUR or GBP"
        )
    listed = pycountry.currencies.get(alpha_3=code)
    if listed is None:
        raise StripeSettingsError(
            f"{name}: {code} is not a currency code (ISO 4217); check the spelling, like GBP"
        )
    if code in FUND_CODES:
        raise StripeSettingsError(
            f"{name}: {code} ({listed.name}) is a fund code that banks count in, not money "
            f"donors pay with; use {FUND_CODES[code]}."
        )
    if code.startswith("X") and code not in X_CURRENCIES:
        raise StripeSettingsError(
            f"{name}: {code} ({listed.name}) is not money donors pay with; remove {code}."
        )
    if code in THREE_DECIMAL:
        raise StripeSettingsError(
            f"{name}: {code} has three decimal places at Stripe, and this site counts in "
            f"hundredths: every gift would be charged ten times too little. Remove {code}."
        )
    if code in SPECIAL_RULES:
        raise StripeSettingsError(
            f"{name}: {SPECIAL_RULES[code]}; this site does not follow that rule, "
            f"so it cannot take gifts in {code}. Remove {code}."
        )
    return code


# The smallest charge Stripe accepts, in major units, for the currencies it lists.
# A gift below it would only fail at Stripe, so the form asks for at least this much.
# fmt: off
STRIPE_MINIMUMS = {
    "USD": "0.50", "AED": "2.00", "AUD": "0.50", "BGN": "1.00", "BRL": "0.50",
    "CAD": "0.50", "CHF": "0.50", "CZK": "15.00", "DKK": "2.50", "EUR": "0.50",
    "GBP": "0.30", "HKD": "4.00", "INR": "0.50", "JPY": "50",
    "MXN": "10", "MYR": "2", "NOK": "3.00", "NZD": "0.50", "PLN": "2.00",
    "RON": "2.00", "SEK": "3.00", "SGD": "0.50", "THB": "10",
}
# fmt: on

# The largest amount Stripe takes in one payment: eight digits of minor units.
STRIPE_MAX_MINOR = 99_999_999


def exponent(currency: str) -> int:
    """How many minor-unit digits Stripe uses for this currency."""
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def to_minor(amount: Decimal, currency: str) -> int:
    """A major-unit amount as integer minor units; the caller has checked its precision."""
    return int(amount.scaleb(exponent(currency)).to_integral_value(rounding=ROUND_CEILING))


def to_major(minor: int, currency: str) -> Decimal:
    """Integer minor units back as a Decimal in major units: 2550 EUR is 25.50."""
    return Decimal(minor).scaleb(-exponent(currency))


def format_money(minor: int, currency: str) -> str:
    """Minor units as people read them: €25.00, £10.50, ¥1,000, CHF 30.00 (a no-break space
    after the code)."""
    digits = exponent(currency)
    return symbol(currency) + f"{to_major(minor, currency):,.{digits}f}"


def symbol(currency: str) -> str:
    """What an amount in this currency is written after: "€", or a code and a no-break space."""
    return SYMBOLS.get(currency.upper(), currency.upper() + CODE_SPACE)


def card_fee(amount: int, currency: str, percent: Decimal, fixed: Decimal) -> int:
    """What to add so that, after a fee of percent plus fixed, the charity receives amount.

    An estimate from the configured fee, rounded up to the next minor unit. The fixed part
    is counted as the rule beside the box shows it, in whole minor units: 0.25 is ¥1 in yen.
    """
    total = (Decimal(amount) + to_minor(fixed, currency)) / (1 - percent / 100)
    return int(total.to_integral_value(rounding=ROUND_CEILING)) - amount


@dataclass(frozen=True)
class DonationSettings:
    currencies: tuple[str, ...]
    default_currency: str
    presets: tuple[Decimal, ...]
    minimum: Decimal
    maximum: Decimal
    fee_percent: Decimal
    fee_fixed: Decimal

    def fee(self, amount: int, currency: str) -> int:
        return card_fee(amount, currency, self.fee_percent, self.fee_fixed)

    def minimum_for(self, currency: str) -> Decimal:
        """The configured minimum, raised to Stripe's own smallest charge in this currency."""
        floor = Decimal(STRIPE_MINIMUMS.get(currency.upper(), "0"))
        return max(self.minimum, floor)

    def presets_for(self, currency: str) -> tuple[Decimal, ...]:
        """The presets offered in this currency: one list serves every currency, and ¥10
        is below the smallest charge Stripe takes in yen, so it is not offered there."""
        smallest = self.minimum_for(currency)
        return tuple(preset for preset in self.presets if preset >= smallest)

    def preset_label(self, preset: Decimal) -> str:
        """A preset as its button shows it: 25 and 1,000 whole, 7.50 with its cents.

        A preset has no more places than every offered currency has (checked at start), so
        the label is the same in each of them; only the sign before it changes.
        """
        places = max(map(exponent, self.currencies)) if decimal_places(preset) else 0
        return f"{preset:,.{places}f}"


def _items(value: str | Iterable[Any]) -> list[str]:
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [part.strip() for part in parts if part.strip()]


def decimal_setting(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise StripeSettingsError(f"{name} must be a number, like 10 or 2.50") from exc
    if not number.is_finite():
        raise StripeSettingsError(f"{name} must be a number, like 10 or 2.50, not {value}")
    return number


def decimal_places(value: Decimal) -> int:
    """The places after the point that count: 7.50 has one, 12.345 three, 1E+3 none."""
    return len(format(value, "f").partition(".")[2].rstrip("0"))


def _check_places(name: str, value: Decimal, currencies: Iterable[str]) -> None:
    """Refuse an amount a currency cannot hold: 12.345 would be charged as 12.35."""
    for code in currencies:
        if decimal_places(value) > exponent(code):
            raise StripeSettingsError(
                f"{name}: {value} has more decimal places than {code} has ({exponent(code)}), "
                f"so it could not be charged in {code} as shown. Round it, or remove {code}."
            )


def donation_settings() -> DonationSettings:
    """The donation form's currencies, presets, limits and fee estimate (read at start)."""
    return current_app.extensions["donation_settings"]


def read_donation_settings(config: Any) -> DonationSettings:
    codes = [code.upper() for code in _items(config["DONATION_CURRENCIES"])]
    currencies = tuple(_currency(code, "DONATION_CURRENCIES") for code in codes)
    default = _currency(
        str(config["DONATION_DEFAULT_CURRENCY"]).strip().upper(), "DONATION_DEFAULT_CURRENCY"
    )
    if default not in currencies:
        currencies = (default, *currencies)
    settings = DonationSettings(
        currencies=currencies,
        default_currency=default,
        presets=tuple(
            decimal_setting(p, "DONATION_PRESETS") for p in _items(config["DONATION_PRESETS"])
        ),
        minimum=decimal_setting(config["DONATION_MIN"], "DONATION_MIN"),
        maximum=decimal_setting(config["DONATION_MAX"], "DONATION_MAX"),
        fee_percent=decimal_setting(config["DONATION_FEE_PERCENT"], "DONATION_FEE_PERCENT"),
        fee_fixed=decimal_setting(config["DONATION_FEE_FIXED"], "DONATION_FEE_FIXED"),
    )
    if not 0 <= settings.fee_percent < 100:
        raise StripeSettingsError(
            "DONATION_FEE_PERCENT must be at least 0 and below 100, like 1.5 (for 1.5%)"
        )
    if settings.fee_fixed < 0:
        raise StripeSettingsError("DONATION_FEE_FIXED must be 0 or more, like 0.25")
    if settings.minimum <= 0:
        raise StripeSettingsError("DONATION_MIN must be more than 0, like 1")
    if settings.maximum < settings.minimum:
        raise StripeSettingsError(
            f"DONATION_MAX ({settings.maximum}) must be at least DONATION_MIN ({settings.minimum})"
        )
    for preset in settings.presets:
        if not settings.minimum <= preset <= settings.maximum:
            raise StripeSettingsError(
                f"DONATION_PRESETS: {preset} is outside DONATION_MIN ({settings.minimum}) "
                f"to DONATION_MAX ({settings.maximum})"
            )
    _check_places("DONATION_MIN", settings.minimum, currencies)
    _check_places("DONATION_MAX", settings.maximum, currencies)
    for preset in settings.presets:
        _check_places("DONATION_PRESETS", preset, currencies)
    for code in currencies:
        largest = to_minor(settings.maximum, code)
        if largest + settings.fee(largest, code) > STRIPE_MAX_MINOR:
            raise StripeSettingsError(
                f"DONATION_MAX ({settings.maximum}) with the card fee is more than Stripe "
                f"takes in one payment in {code} ({format_money(STRIPE_MAX_MINOR, code)}). "
                "Lower it."
            )
    return settings


# --------------------------------------------------------------------------- the form's edge

_AMOUNT = re.compile(r"(\d+)(?:[.,](\d+))?")
# Digits in groups of three, as "1,000.50", "1.000,50" or "1,000,000" write them.
_GROUPED = re.compile(r"\d{1,3}(?:[.,]\d{3})+(?:[.,]\d*)?")
# An amount with a currency code before or after it: "EUR 30", "30 eur".
_WITH_CODE = re.compile(r"([A-Za-z]{3})?([\d.,]+)([A-Za-z]{3})?")
# No cents, as Dutch, German and Scandinavian price tags write it: "25,-" (or with an en dash).
_NO_CENTS = re.compile(r"(?<=\d)[.,][-\u2013](?=(?:[A-Za-z]{3})?$)")

# The signs a donor may type before or after an amount, and the currencies each can mean.
# fmt: off
SIGNS = {
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP", "GIP", "FKP", "SHP"}),
    "¥": frozenset({"JPY", "CNY"}),
    "$": frozenset({
        "USD", "AUD", "BBD", "BMD", "BND", "BSD", "BZD", "CAD", "FJD", "GYD", "HKD", "JMD",
        "KYD", "LRD", "MXN", "NAD", "NZD", "SBD", "SGD", "SRD", "TTD", "XCD",
    }),
}
# fmt: on


def parse_amount(text: str, currency: str) -> Decimal:
    """What a donor typed as a Decimal in major units; ValueError with a plain message.

    A currency sign or code that is not the chosen currency's is refused rather than
    ignored: "$25" with EUR chosen is not €25. A number however large, or below zero, is
    read as it is, for the form to say what the smallest and largest gifts are.
    """
    code = currency.upper()
    # Any space: a keyboard's, the no-break one this site writes after a code, the narrow
    # one French typing puts between thousands ("1\u202f000").
    cleaned = "".join(text.split())
    negative = cleaned[:1] in ("-", "\u2212")
    if negative:
        cleaned = cleaned[1:]
    for sign, meant in SIGNS.items():
        if sign in cleaned:
            if code not in meant:
                raise ValueError(
                    f"You typed {sign} but chose {code}. Choose the currency you meant, "
                    "or enter the amount without a sign."
                )
            cleaned = cleaned.strip(sign)
    cleaned = _NO_CENTS.sub("", cleaned)
    with_code = _WITH_CODE.fullmatch(cleaned)
    if with_code:
        for typed in (with_code.group(1), with_code.group(3)):
            if typed and typed.upper() != code:
                raise ValueError(
                    f"You typed {typed.upper()} but chose {code}. Choose the currency you "
                    "meant, or enter the amount without a currency."
                )
        cleaned = with_code.group(2)
    separator = "Enter the amount without a thousands separator, like 1000 or 30.50."
    match = _AMOUNT.fullmatch(cleaned)
    if not match:
        if _GROUPED.fullmatch(cleaned):
            raise ValueError(separator)
        raise ValueError("Enter an amount in numbers, like 30 or 30.50.")
    whole, fraction = match.group(1), match.group(2) or ""
    digits = exponent(code)
    # "1.000" and "30,555" are a thousand and thirty thousand as many write them; "0.001"
    # is no thousands, only too many places.
    if len(fraction) == 3 and Decimal(whole):
        raise ValueError(separator)
    if len(fraction) > digits:
        if digits == 0:
            raise ValueError(f"Enter a whole number: {code} has no smaller unit.")
        raise ValueError("Enter at most two decimal places, like 30.50.")
    amount = Decimal(f"{whole}.{fraction or '0'}")
    return -amount if negative else amount
