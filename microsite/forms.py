"""Flask-WTF forms: validation only, no writes."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from functools import cache
from typing import Any

import pycountry
from email_validator import EmailNotValidError, validate_email
from flask import current_app, request
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.datastructures import CombinedMultiDict
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from .auth import MAX_PASSWORD_LENGTH
from .models import PRAYER_RHYTHM_LABELS, Frequency
from .money import donation_settings, format_money, parse_amount, to_minor
from .pledges import email_key
from .text import looks_like_an_address, multi_line, one_line, stored_email

CONSENT_TEXT = (
    "I agree that RENATE may keep my name, email address and this pledge, which shows my "
    "faith, to count my prayer and to write to me about it. I can ask for my data to be "
    "deleted at any time."
)
# Stored with every pledge as the record of what was agreed to. It lives beside the text,
# not in a setting, so the two cannot drift apart: a test pins the text to this version,
# and changing the words without a new version fails it.
CONSENT_VERSION = "2026-11-pledge-v1"


# ISO 3166 names written back to front ("Congo, The Democratic Republic of the") that
# pycountry gives no common name for, as people say them.
COUNTRY_NAME_OVERRIDES = {
    "CD": "Democratic Republic of the Congo",
    "FM": "Micronesia",
    "PS": "Palestine",
    "VA": "Holy See (Vatican City)",
    "VG": "British Virgin Islands",
    "VI": "United States Virgin Islands",
}


def alphabetical_key(name: str) -> str:
    """A name as people look it up: "Åland" under A and "Côte d'Ivoire" beside "Costa Rica"."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@cache
def country_choices() -> list[tuple[str, str]]:
    """ISO 3166 countries by their everyday names, sorted for people, not for codes."""
    names = [
        (
            c.alpha_2,
            COUNTRY_NAME_OVERRIDES.get(c.alpha_2) or getattr(c, "common_name", None) or c.name,
        )
        for c in pycountry.countries
    ]
    return sorted(names, key=lambda pair: alphabetical_key(pair[1]))


@cache
def country_names() -> dict[str, str]:
    return dict(country_choices())


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """(value, label) pairs as the option objects WTForms expects."""
    return [SelectChoice(value, label) for value, label in pairs]


def strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class SiteForm(FlaskForm):
    """The base of every form here: every text field cleaned and trimmed before it is
    validated (a password is taken exactly as typed), and read from the form's fields only.

    Flask-WTF mixes uploaded files in with the fields; no form here takes a file, and a
    field sent as one would reach the cleaners as a file, or tick a box.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            data = super().wrap_formdata(form, formdata)
            return request.form if isinstance(data, CombinedMultiDict) else data

        def bind_field(self, form: Any, unbound_field: Any, options: dict[str, Any]) -> Any:
            cleaner = {TextAreaField: multi_line, PasswordField: None}.get(
                unbound_field.field_class, one_line
            )
            if cleaner is not None and issubclass(unbound_field.field_class, StringField):
                filters = unbound_field.kwargs.get("filters", ())
                options = {**options, "filters": [cleaner, strip, *filters]}
            return super().bind_field(form, unbound_field, options)


# What a tick box sent by a script may say to mean "not ticked", in any capitals.
NOT_TICKED = frozenset({"", "false", "0", "off", "no", "n"})


class TickBox(BooleanField):
    """A tick box that a script's "0", "off" or "False" leaves unticked, as a browser's
    unticked box (which sends nothing) does: only a value meant as yes ticks it."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        self.data = bool(valuelist) and str(valuelist[0]).strip().lower() not in NOT_TICKED


# Letters by Unicode's count that show as nothing at all: the Hangul fillers.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


class HasLetters:
    """At least one letter or digit, in any script: not only spaces or punctuation."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, form: FlaskForm, field: StringField) -> None:
        if field.data and not any(
            unicodedata.category(ch)[0] in "LN" and ch not in BLANK_LETTERS for ch in field.data
        ):
            raise ValidationError(self.message)


class NotAnAddress:
    """A name, not an email or web address typed in the name's box: such a name would be
    shown, as typed, to every visitor when its owner asks to be named."""

    def __call__(self, form: FlaskForm, field: StringField) -> None:
        if field.data and looks_like_an_address(field.data):
            raise ValidationError(
                "This looks like an email or web address. Enter your name here; "
                "your email address goes in its own box."
            )


class RealEmail:
    """An email address that is well-formed by RFC 5322/6531; no DNS look-up."""

    message = "Enter an email address like name@example.org."

    def __call__(self, form: FlaskForm, field: EmailField) -> None:
        if not field.data or field.errors:  # one message at a time: "too long" says enough
            return
        try:
            result = validate_email(field.data, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValidationError(self.message) from exc
        if len(result.local_part.encode()) > 64:
            # RFC 5321's limit: no mail server delivers to a longer name before the @.
            raise ValidationError("The part before the @ is too long to be an email address.")
        field.data = result.normalized


class PledgeForm(SiteForm):
    name = StringField(
        "Your name",
        validators=[
            DataRequired("Tell us your name, so we know who is praying."),
            Length(max=100, message="Your name can be at most 100 characters."),
            HasLetters("Tell us your name in letters, so we know who is praying."),
            NotAnAddress(),
        ],
        # dir=auto: a name typed in Arabic or Hebrew reads right to left as it is typed.
        render_kw={"autocomplete": "name", "maxlength": 100, "dir": "auto"},
    )
    email = EmailField(
        "Email address",
        validators=[
            DataRequired("Enter your email address."),
            Length(max=254, message="That email address is too long."),
            RealEmail(),
        ],
        render_kw={"autocomplete": "email", "maxlength": 254},
    )
    country = SelectField(
        "Country (optional)",
        choices=[],
        validate_choice=False,
        render_kw={"autocomplete": "country"},
    )
    rhythm = RadioField(
        "How will you pray?",
        choices=choices([(key.value, label) for key, label in PRAYER_RHYTHM_LABELS.items()]),
        validators=[InputRequired("Choose how you will pray.")],
        # A value not on the list can only come from an altered page; say the same.
        invalid_choice_message="Choose how you will pray.",
    )
    intention = TextAreaField(
        "A prayer intention (optional)",
        validators=[Length(max=500, message="Your intention can be at most 500 characters.")],
        render_kw={"maxlength": 500, "rows": 3, "dir": "auto"},
    )
    # Only a yes names them in public, or is agreement.
    show_publicly = TickBox("Show me among those praying")
    consent = TickBox(
        CONSENT_TEXT,
        validators=[DataRequired("We can only keep your pledge with your agreement.")],
    )
    # A field people never see; bots fill it in.
    website = StringField("Leave this empty", render_kw={"autocomplete": "off", "tabindex": -1})

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = choices([("", "Prefer not to say"), *country_choices()])

    def validate_country(self, field: SelectField) -> None:
        if field.data and field.data not in country_names():
            raise ValidationError("Choose a country from the list, or leave it blank.")


# --------------------------------------------------------------------------- admin


class LoginForm(SiteForm):
    email = StringField(
        "Email address",
        validators=[DataRequired("Enter your email address."), Length(max=254)],
        render_kw={"autocomplete": "username", "maxlength": 254, "spellcheck": "false"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class ActionForm(SiteForm):
    """A form that carries only its CSRF token, for buttons such as Sign out."""


class DayField(DateField):
    """A date as a date input sends it; anything else gets a message saying how to write it."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        # A date box cannot show text that is not a date, so the message repeats it.
        if len([value for value in valuelist if value]) > 1:
            raise ValueError("Give one date here, not several.")
        try:
            super().process_formdata(valuelist)
        except ValueError:
            given = str(valuelist[0])[:40] if valuelist else ""
            raise ValueError(
                f"“{given}” is not a date: enter one as YYYY-MM-DD, like 2026-03-01."
            ) from None


class _ListFilterForm(SiteForm):
    """Filters read from the query string: no CSRF, they change nothing."""

    class Meta:
        csrf = False

    q = StringField(
        "Name or email",
        validators=[Length(max=254)],
        render_kw={"type": "search", "spellcheck": "false"},
    )
    since = DayField("From", validators=[Optional()])
    until = DayField("To", validators=[Optional()])

    def validate_until(self, field: DateField) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")


def _any(label: str, pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return choices([("", label), *pairs])


class PledgeFilterForm(_ListFilterForm):
    country = SelectField("Country", choices=[], default="", validate_choice=False)
    rhythm = SelectField(
        "How they pray",
        default="",
        choices=_any("Any", [(k.value, label) for k, label in PRAYER_RHYTHM_LABELS.items()]),
    )
    public = SelectField(
        "Shown publicly",
        default="",
        choices=_any("Either", [("yes", "Yes, opted in"), ("no", "No")]),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = _any("Any", [("none", "Not given"), *country_choices()])

    def validate_country(self, field: SelectField) -> None:
        if field.data and field.data != "none" and field.data not in country_names():
            raise ValidationError("Choose a country from the list.")


class DonationFilterForm(_ListFilterForm):
    status = SelectField("Status", choices=[], default="")
    frequency = SelectField(
        "Frequency",
        default="",
        choices=_any("Any", [("one_time", "One-time"), ("monthly", "Monthly")]),
    )
    currency = SelectField("Currency", choices=[], default="")
    mode = SelectField(
        "Live or test",
        default="",
        choices=_any("Both", [("live", "Live only"), ("test", "Test only")]),
    )

    def __init__(self, *args: object, statuses: list[str], currencies: list[str], **kwargs: object):
        super().__init__(*args, **kwargs)
        self.status.choices = _any("Any", [(s, s.replace("_", " ").capitalize()) for s in statuses])
        self.currency.choices = _any("Any", [(c, c) for c in currencies])


class PersonSearchForm(SiteForm):
    email = StringField(
        "Email address",
        validators=[DataRequired("Enter the email address to look for."), Length(max=254)],
        render_kw={"type": "search", "spellcheck": "false", "autocomplete": "off"},
    )


class PersonDownloadForm(SiteForm):
    email = HiddenField(validators=[DataRequired(), Length(max=254)])
    format = SelectField(
        "Format", choices=choices([("json", "JSON"), ("csv", "CSV (spreadsheet)")])
    )


class EraseForm(SiteForm):
    email = HiddenField(validators=[DataRequired(), Length(max=254)])
    confirm = StringField(
        "Type the email address again to confirm",
        validators=[DataRequired("Type the email address to confirm the erasure.")],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )

    def validate_confirm(self, field: StringField) -> None:
        # Compared as the address is stored and found: what the page shows ("bücher.example")
        # and the form the person's mail program wrote ("xn--bcher-kva.example") are one.
        typed, held = (
            email_key(stored_email(value or "")) for value in (field.data, self.email.data)
        )
        if typed != held:
            raise ValidationError("That is not the same email address. Nothing was erased.")


# --------------------------------------------------------------------------- donations

OTHER_AMOUNT = "other"

DEDICATION_CHOICES = [
    ("", "No dedication"),
    ("honour", "In honour of"),
    ("memory", "In memory of"),
]


def amount_value(amount: Decimal) -> str:
    """A preset as the form sends it: 25, not 25.00."""
    return format(amount.normalize(), "f")


class DonationForm(SiteForm):
    frequency = RadioField(
        "How often?",
        choices=choices([(f.value, f.label) for f in Frequency]),
        validators=[InputRequired("Choose a one-time or a monthly gift.")],
    )
    currency = SelectField("Currency", choices=[], validate_choice=False)
    amount = RadioField("Amount", choices=[], validate_choice=False)
    other_amount = StringField(
        "Other amount",
        render_kw={"inputmode": "decimal", "autocomplete": "transaction-amount", "maxlength": 14},
    )
    cover_fee = TickBox("Add the card fee, so RENATE receives my whole gift")
    dedication_kind = SelectField(
        "Dedicate this gift (optional)",
        choices=choices(DEDICATION_CHOICES),
        validate_choice=False,
    )
    dedication_name = StringField(
        "Their name",
        validators=[Length(max=100, message="The name can be at most 100 characters.")],
        # dir=auto, as on the pledge form: a name in Arabic or Hebrew reads right to left.
        render_kw={"maxlength": 100, "dir": "auto"},
    )
    anonymous = TickBox("Give anonymously")
    donor_name = StringField(
        "Your name (optional)",
        validators=[Length(max=100, message="Your name can be at most 100 characters.")],
        render_kw={"autocomplete": "name", "maxlength": 100, "dir": "auto"},
    )
    donor_email = EmailField(
        "Email address (optional)",
        validators=[Length(max=254, message="That email address is too long."), RealEmail()],
        render_kw={"autocomplete": "email", "maxlength": 254},
    )
    message = TextAreaField(
        "A message to RENATE (optional)",
        validators=[Length(max=500, message="Your message can be at most 500 characters.")],
        render_kw={"maxlength": 500, "rows": 3, "dir": "auto"},
    )
    # A field people never see; bots fill it in.
    homepage = StringField("Leave this empty", render_kw={"autocomplete": "off", "tabindex": -1})

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.settings = donation_settings()
        self.currency.choices = choices([(code, code) for code in self.settings.currencies])
        presets = [(amount_value(p), self.settings.preset_label(p)) for p in self.settings.presets]
        self.amount.choices = choices([*presets, (OTHER_AMOUNT, "Other amount")])
        # Defaults fill a form shown fresh, or refilled from a stored gift (formdata=None),
        # even in answer to a POST; never a form the donor sent, whose blanks are theirs.
        if kwargs.get("formdata", ...) is None or not self.is_submitted():
            self.frequency.data = self.frequency.data or Frequency.ONE_TIME.value
            self.currency.data = self.currency.data or self.settings.default_currency
            offered = [amount_value(p) for p in self.settings.presets_for(self.chosen_currency)]
            default = offered[1] if len(offered) > 1 else OTHER_AMOUNT
            self.amount.data = self.amount.data or default

    @property
    def chosen_currency(self) -> str:
        code = (self.currency.data or "").upper()
        return code if code in self.settings.currencies else self.settings.default_currency

    def validate_currency(self, field: SelectField) -> None:
        if (field.data or "").upper() not in self.settings.currencies:
            raise ValidationError("Choose a currency from the list.")

    @property
    def uses_other_amount(self) -> bool:
        """An amount typed in wins over a preset left selected (a browser without script)."""
        return self.amount.data == OTHER_AMOUNT or bool(self.other_amount.data)

    def validate_amount(self, field: RadioField) -> None:
        if self.other_amount.data:
            return
        if not field.data:
            raise ValidationError("Choose an amount, or enter your own.")
        if field.data not in {choice.value for choice in field.choices or []}:
            raise ValidationError("Choose one of the amounts, or enter your own.")
        presets = {amount_value(p): p for p in self.settings.presets}
        if field.data in presets:
            self._check_minimum(presets[field.data], self.chosen_currency)

    def _check_minimum(self, value: Decimal, currency: str) -> None:
        smallest = self.settings.minimum_for(currency)
        if value < smallest:
            shown = format_money(to_minor(smallest, currency), currency)
            raise ValidationError(f"The smallest gift we can take online in {currency} is {shown}.")

    def validate_other_amount(self, field: StringField) -> None:
        if not self.uses_other_amount:
            return
        if not field.data:
            raise ValidationError("Enter the amount you would like to give, like 30 or 30.50.")
        try:
            value = parse_amount(field.data, self.chosen_currency)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        currency = self.chosen_currency
        self._check_minimum(value, currency)
        if value > self.settings.maximum:
            largest = format_money(to_minor(self.settings.maximum, currency), currency)
            contact = current_app.config["CONTACT_EMAIL"]
            # Markup, for the address to be a link beside the field; format() escapes what
            # it is given, and nothing in it comes from the donor.
            message = Markup("Online gifts can be up to {}. For a larger gift, please write to ")
            message = message.format(largest)  # before the address, which may hold braces
            if contact:
                message += Markup('RENATE at <a href="mailto:{0}">{0}</a>.').format(contact)
            else:
                message += "RENATE."
            raise ValidationError(message)

    def validate_dedication_kind(self, field: SelectField) -> None:
        if field.data and field.data not in dict(DEDICATION_CHOICES):
            raise ValidationError("Choose in honour of or in memory of, or no dedication.")
        if not field.data and self.dedication_name.data:
            # A name typed with "No dedication" left chosen would be silently dropped.
            raise ValidationError(
                "You gave a name for a dedication: choose in honour of or in memory of."
            )

    def validate_dedication_name(self, field: StringField) -> None:
        if self.dedication_kind.data and not field.data:
            raise ValidationError("Tell us whose name the dedication should carry.")

    def gift_in_minor_units(self) -> int:
        """The chosen gift in the currency's minor units; call after validation."""
        if self.uses_other_amount:
            value = parse_amount(self.other_amount.data or "", self.chosen_currency)
        else:
            # Only a configured preset: the posted text itself may be anything, "1e999999".
            presets = {amount_value(p): p for p in self.settings.presets}
            if self.amount.data not in presets:
                raise ValueError("not one of the preset amounts")
            value = presets[self.amount.data]
        return to_minor(value, self.chosen_currency)

    def fee_in_minor_units(self) -> int:
        """What the donor chose to add for the card fee, if anything."""
        if not self.cover_fee.data:
            return 0
        return self.settings.fee(self.gift_in_minor_units(), self.chosen_currency)
