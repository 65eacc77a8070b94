"""Flask commands for operators: thin wrappers over the services the views use."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime

import click
from flask import Flask
from flask.cli import AppGroup

from . import auth, exports
from .records import DonationFilters, PledgeFilters

SHELL_ACTOR = "shell"


def _prompt_password() -> str:
    return click.prompt(
        "Password (at least 12 characters)", hide_input=True, confirmation_prompt=True
    )


@contextmanager
def _account_errors() -> Iterator[None]:
    """An account problem (unknown email, short password...) as a plain message, exit 1."""
    try:
        yield
    except auth.AccountError as exc:
        raise click.ClickException(str(exc)) from exc


admin_group = AppGroup("admin", help="Create and manage the people who can sign in to /admin.")


@admin_group.command("create")
@click.argument("email")
def create_admin(email: str) -> None:
    """Create an admin account; asks for the password twice, without showing it."""
    password = _prompt_password()
    with _account_errors():
        admin = auth.create_admin(email, password)
    click.echo(f"Created an admin account for {admin.email}. They can sign in at /admin/login.")


@admin_group.command("set-password")
@click.argument("email")
def set_password(email: str) -> None:
    """Give an admin a new password; their open sessions end."""
    password = _prompt_password()
    with _account_errors():
        admin = auth.set_password(email, password)
    click.echo(f"New password set for {admin.email}; any open sessions were ended.")


@admin_group.command("disable")
@click.argument("email")
def disable_admin(email: str) -> None:
    """Stop an admin from signing in, and end their open sessions."""
    with _account_errors():
        admin = auth.set_active(email, False)
    click.echo(f"{admin.email} can no longer sign in.")


@admin_group.command("enable")
@click.argument("email")
def enable_admin(email: str) -> None:
    """Let a disabled admin sign in again."""
    with _account_errors():
        admin = auth.set_active(email, True)
    click.echo(f"{admin.email} can sign in again.")


@admin_group.command("list")
def list_admins() -> None:
    """List the admin accounts."""
    admins = auth.list_admins()
    if not admins:
        click.echo("No admin accounts yet. Create one with: flask admin create EMAIL")
        return
    for admin in admins:
        state = "active" if admin.active else "disabled"
        last = (
            admin.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if admin.last_login_at else "never"
        )
        click.echo(f"{admin.email}\t{state}\tlast sign-in: {last}")


export_group = AppGroup("export", help="Export pledges or donations as CSV.")


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _dates(since: datetime | None, until: datetime | None) -> dict[str, date | None]:
    """The date range, refused (as the admin list's form does) when it ends before it starts."""
    if since and until and until < since:
        raise click.BadParameter("the end date is before the start date.", param_hint="--until")
    return {"since": _day(since), "until": _day(until)}


def _write(export: exports.Export, output: str | None) -> None:
    """Write the export to a file, or to standard output: the same bytes as the web's."""
    try:
        actor = f"{SHELL_ACTOR} ({getpass.getuser()})"
    except OSError:  # no login name, e.g. in some containers
        actor = SHELL_ACTOR
    body = exports.stream_csv(export, actor=actor, via="shell")
    if output in (None, "-"):
        stream = sys.stdout.buffer
        for chunk in body:
            stream.write(chunk)
        stream.flush()
        return
    # Personal data: a new file is readable by its owner only (an existing one keeps its mode).
    try:
        fd = os.open(output, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}.") from None
    with os.fdopen(fd, "wb") as fh:
        for chunk in body:
            fh.write(chunk)
    click.echo(f"Wrote {export.name} to {output}.", err=True)


_since = click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), as YYYY-MM-DD."
)
_until = click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), included, as YYYY-MM-DD."
)
_output = click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write."
)


@export_group.command("pledges")
@_since
@_until
@_output
def export_pledges(since: datetime | None, until: datetime | None, output: str | None) -> None:
    """Export pledges as CSV, with the consent each was given under."""
    filters = PledgeFilters(**_dates(since, until))
    _write(exports.pledge_export(filters), output)


@export_group.command("donations")
@_since
@_until
@_output
def export_donations(since: datetime | None, until: datetime | None, output: str | None) -> None:
    """Export donations as CSV."""
    filters = DonationFilters(**_dates(since, until))
    _write(exports.donation_export(filters), output)


def init_app(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(admin_group)
    app.cli.add_command(export_group)
