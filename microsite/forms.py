"""Flask-WTF forms: validation only, no writes."""

from __future__ import annotations

from functools import cache

import pycountry
from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from .models import PRAYER_RHYTHM_LABELS

CONSENT_TEXT = (
    "I agree that RENATE may keep my name, email address and this pledge, which shows my "
    "faith, to count my prayer and to write to me about it. I can ask for my data to be "
    "deleted at any time."
)


@cache
def country_choices() -> list[tuple[str, str]]:
    """ISO 3166 countries by their everyday names, sorted for people, not for codes."""
    names = [(c.alpha_2, getattr(c, "common_name", None) or c.name) for c in pycountry.countries]
    return sorted(names, key=lambda pair: pair[1].casefold())


@cache
def country_names() -> dict[str, str]:
    return dict(country_choices())


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """(value, label) pairs as the option objects WTForms expects."""
    return [SelectChoice(value, label) for value, label in pairs]


def strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class RealEmail:
    """An email address that is well-formed by RFC 5322/6531; no DNS look-up."""

    message = "Enter an email address like name@example.org."

    def __call__(self, form: FlaskForm, field: EmailField) -> None:
        if not field.data:
            return
        try:
            result = validate_email(field.data, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValidationError(self.message) from exc
        field.data = result.normalized


class PledgeForm(FlaskForm):
    name = StringField(
        "Your name",
        filters=[strip],
        validators=[
            DataRequired("Tell us your name, so we know who is praying."),
            Length(max=100, message="Your name can be at most 100 characters."),
        ],
        render_kw={"autocomplete": "name", "maxlength": 100},
    )
    email = EmailField(
        "Email address",
        filters=[strip],
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
    )
    intention = TextAreaField(
        "A prayer intention (optional)",
        filters=[strip],
        validators=[Length(max=500, message="Your intention can be at most 500 characters.")],
        render_kw={"maxlength": 500, "rows": 3},
    )
    show_publicly = BooleanField("Show my first name and country among those praying")
    consent = BooleanField(
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
