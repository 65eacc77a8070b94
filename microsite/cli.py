"""Flask commands for operators: thin wrappers over the services the views use."""

from __future__ import annotations

import getpass
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from copy import copy
from datetime import date, datetime
from functools import wraps
from typing import Any, BinaryIO

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import OperationalError

from . import auth, exports, records
from .models import db, schema_state
from .money import format_money
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


SCHEMA_ADVICE = {
    "missing": "the database has no tables for this site yet: run flask db upgrade first.",
    "behind": "the database is behind this release's schema: run flask db upgrade first.",
}


@contextmanager
def _unreachable_told() -> Iterator[None]:
    """A database that cannot even be asked its version (the server is down, the address or
    its password is wrong...) is told in one line, the driver's reason, without the URL."""
    try:
        yield
    except OperationalError as unreachable:
        db.session.rollback()
        reason = " ".join(str(unreachable.orig).split())
        raise click.ClickException(f"cannot reach the database: {reason}") from None


def _needs_schema(command: Callable[..., None]) -> Callable[..., None]:
    """Before the command does anything (asks for a password, writes a CSV header), a
    database that cannot be reached is told as its driver's reason, and one not yet upgraded
    (a new server, a new release) as the one command that fixes it: one line, not a
    traceback. A database error once the command is under way is left as it is."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        _require_schema()
        command(*args, **kwargs)

    return run


def _require_schema() -> None:
    with _unreachable_told():
        state = schema_state()
    if state in SCHEMA_ADVICE:
        raise click.ClickException(SCHEMA_ADVICE[state])


def _typed_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The address as typed, refused when the terminal sent bytes that are not UTF-8 (an
    accented letter from one set to Latin-1, say): no account's address holds them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise click.BadParameter(
            "it holds characters that are not UTF-8. Set the terminal to UTF-8 "
            "(a locale such as C.UTF-8) and type it again."
        ) from None
    return value


_email = click.argument("email", callback=_typed_address)

admin_group = AppGroup("admin", help="Create and manage the people who can sign in to /admin.")


@admin_group.command("create", short_help="Create an admin account; asks for its password.")
@_email
@_needs_schema
def create_admin(email: str) -> None:
    """Create an admin account; asks for the password twice, without showing it."""
    with _account_errors():
        auth.new_admin_address(email)  # before the password is asked for, not after
    password = _prompt_password()
    with _account_errors():
        admin = auth.create_admin(email, password)
    click.echo(f"Created an admin account for {admin.email}. They can sign in at /admin/login.")


@admin_group.command("set-password")
@_email
@_needs_schema
def set_password(email: str) -> None:
    """Give an admin a new password; their open sessions end."""
    with _account_errors():
        auth.existing_admin(email)  # before the password is asked for, not after
    password = _prompt_password()
    with _account_errors():
        admin = auth.set_password(email, password)
    click.echo(f"New password set for {admin.email}; any open sessions were ended.")


@admin_group.command("disable")
@_email
@_needs_schema
def disable_admin(email: str) -> None:
    """Stop an admin from signing in, and end their open sessions."""
    with _account_errors():
        admin = auth.set_active(email, False)
    click.echo(f"{admin.email} can no longer sign in.")


@admin_group.command("enable")
@_email
@_needs_schema
def enable_admin(email: str) -> None:
    """Let a disabled admin sign in again."""
    with _account_errors():
        admin = auth.set_active(email, True)
    click.echo(f"{admin.email} can sign in again.")


@admin_group.command("list")
@_needs_schema
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
        _copy(body, sys.stdout.buffer, "to standard output")
        return
    # Personal data: a new file is readable by its owner only (an existing one keeps its mode).
    try:
        fd = os.open(output, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as error:
        body.close()  # never started: nothing was exported, and nothing is audited
        raise click.ClickException(f"cannot write {output}: {error.strerror}.") from None
    fh = os.fdopen(fd, "wb")
    try:
        _copy(body, fh, f"to {output}")
    finally:
        # Every chunk was flushed as written; a failed one was reported already.
        with suppress(OSError):
            fh.close()
    click.echo(f"Wrote {export.name} to {output}.", err=True)


def _copy(body: Iterator[bytes], stream: BinaryIO, where: str) -> None:
    """Write each chunk out before asking for the next. An export that the disk, the pipe
    or Ctrl-C stops ends there, and the audit log records it as stopped before the end."""
    with closing(body):
        try:
            for chunk in body:
                stream.write(chunk)
                stream.flush()
        except OSError as error:
            if stream is sys.stdout.buffer:
                # The reader went away (| head): nothing more can reach it, at exit either.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            reason = error.strerror or type(error).__name__
            message = f"the export stopped: cannot write {where}: {reason}."
            raise click.ClickException(message) from None


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
@_needs_schema
def export_pledges(since: datetime | None, until: datetime | None, output: str | None) -> None:
    """Export pledges as CSV, with the consent each was given under."""
    filters = PledgeFilters(**_dates(since, until))
    _write(exports.pledge_export(filters), output)


@export_group.command("donations")
@_since
@_until
@_output
@_needs_schema
def export_donations(since: datetime | None, until: datetime | None, output: str | None) -> None:
    """Export donations as CSV."""
    filters = DonationFilters(**_dates(since, until))
    _write(exports.donation_export(filters), output)


@click.command("check")
@with_appcontext
@_needs_schema
def check() -> None:
    """Say what needs a person's look; silent when all is well.

    The overview's "Needs a look" box, for a daily cron job: cron mails what a job prints,
    so staff hear of a refused Stripe key or money left out of the totals without signing
    in. Exits with status 1 when something needs a look, 0 when nothing does.
    """
    look = records.needs_a_look()
    said = []
    if look["no_contact"]:
        said.append(
            "No contact address is set: pledgers are told they can ask to see, change or "
            "withdraw their pledge, with nowhere to write. Set CONTACT_EMAIL."
        )
    if refused := look["refused"]:
        said.append(
            f"Stripe refused {_count(refused, 'checkout')} in the last 7 days: donors are told "
            f"giving online is not working. Check STRIPE_SECRET_KEY. The latest: "
            f"{look['latest_refusal']}"
        )
    if waiting := look["waiting"]:
        waits = "waits for the gift it belongs" if waiting == 1 else "wait for the gift they belong"
        said.append(
            f"{_count(waiting, 'Stripe event')} (refunds, monthly payments or ends of monthly "
            f"gifts) {waits} to, the oldest since {look['oldest']:%Y-%m-%d}; not applied until "
            "it is known."
        )
    for kind, reference, live, minor, code in look["other_currency"]:
        said.append(
            f"{kind.capitalize()} of {format_money(minor, code)} on gift {reference}"
            f"{'' if live else ' (test)'} is in a currency other than the gift's, so left out "
            "of its totals: check it in the Stripe Dashboard."
        )
    if said:
        click.echo("\n".join(f"- {line}" for line in said))
        click.echo("The admin overview (/admin/) shows the same.")
        sys.exit(1)


@click.command("backup")
@click.argument("destination", type=click.Path(dir_okay=False))
@with_appcontext
def backup(destination: str) -> None:
    """Copy the SQLite database to a new file.

    Safe while the site runs: SQLite's online backup copies one consistent moment, however
    busy the site is. The copy is a single file (no -wal beside it) that sqlite3 or this site
    (DATABASE_URL=sqlite:///...) opens as it is.
    """
    if db.engine.dialect.name != "sqlite":
        raise click.ClickException(
            f"the database is {db.engine.dialect.name}, not a SQLite file: back it up with "
            "its own tools (pg_dump for PostgreSQL)."
        )
    _require_schema()
    if os.path.lexists(destination):
        raise click.ClickException(f"{destination} exists already: name a new file.")
    # Written beside the destination under another name and renamed once whole, so that a
    # full disk or Ctrl-C never leaves a file that looks like a backup and is not one.
    partial = f"{destination}.partial"
    try:
        # Personal data: readable by its owner only, as the exports are.
        os.close(os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600))
        with db.engine.connect() as connection, closing(sqlite3.connect(partial)) as copy_:
            connection.connection.driver_connection.backup(copy_)
            copy_.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            pledges, donations = copy_.execute(
                "SELECT (SELECT count(*) FROM pledge), (SELECT count(*) FROM donation)"
            ).fetchone()
        os.replace(partial, destination)
    except (OSError, sqlite3.Error) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise click.ClickException(f"cannot write {destination}: {reason}.") from None
    finally:
        with suppress(OSError):
            os.remove(partial)  # gone already once renamed
    counts = f"{_count(pledges, 'pledge')}, {_count(donations, 'donation')}"
    click.echo(f"Copied the database to {destination}: {counts}.", err=True)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


# Flask-Migrate's commands that open the database before they do anything.
CONNECTING_MIGRATE_COMMANDS = ("upgrade", "downgrade", "current", "stamp", "check", "migrate")


def _reached_first(command: click.Command) -> click.Command:
    """A copy of a Flask-Migrate command that first opens one connection, so that a
    database it cannot reach is told as the site's own commands tell it, not as a traceback.
    An error once the migration is under way is left as it is: it is the developer's."""
    callback = command.callback
    assert callback is not None

    @wraps(callback)
    @with_appcontext
    def run(*args: Any, **kwargs: Any) -> Any:
        with _unreachable_told(), db.engine.connect():
            pass
        return callback(*args, **kwargs)

    checked = copy(command)
    checked.callback = run
    return checked


def _checked_migrate_group(app: Flask) -> None:
    group = app.cli.commands.get("db")
    if not isinstance(group, click.Group):
        return
    checked = copy(group)  # Flask-Migrate's own group is shared by every app: left as it is.
    checked.commands = {
        name: _reached_first(command) if name in CONNECTING_MIGRATE_COMMANDS else command
        for name, command in group.commands.items()
    }
    app.cli.add_command(checked, "db")


def init_app(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(admin_group)
    app.cli.add_command(export_group)
    app.cli.add_command(backup)
    app.cli.add_command(check)
    _checked_migrate_group(app)
