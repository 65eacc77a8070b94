"""The operator's shell commands: admin accounts and exports."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from microsite import auth
from microsite.forms import CONSENT_VERSION
from microsite.models import AdminUser, AuditLog, Pledge, db, utcnow
from tests.admin_fixtures import ADMIN_EMAIL, ADMIN_PASSWORD, sign_in

PASSWORD = "a long enough password"
ROOT = Path(__file__).resolve().parent.parent


def admins(app: Flask) -> list[AdminUser]:
    with app.app_context():
        return list(db.session.scalars(select(AdminUser)))


def test_create_asks_twice_and_hides_the_password(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["admin", "create", "Sister.Anna@Example.org"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Created an admin account for sister.anna@example.org" in result.output
    assert PASSWORD not in result.output
    assert result.output.count("Password") == 1
    assert "Repeat for confirmation" in result.output
    [admin] = admins(app)
    assert admin.email == "sister.anna@example.org"
    assert admin.password_hash.startswith("$argon2id$")
    assert PASSWORD not in admin.password_hash
    assert sign_in(app.test_client(), "sister.anna@example.org", PASSWORD).status_code == 303


def test_create_refuses_a_short_password(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["admin", "create", "a@example.org"], input="short\nshort\n")
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert admins(app) == []


def test_create_refuses_a_password_too_long_to_sign_in_with(
    app: Flask, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    long = "l" * 1025
    result = runner.invoke(args=["admin", "create", "a@example.org"], input=f"{long}\n{long}\n")
    assert result.exit_code == 1
    assert "at most 1024 characters" in result.output
    assert admins(app) == []
    # The longest it takes still signs in.
    longest = "l" * 1024
    runner.invoke(args=["admin", "create", "a@example.org"], input=f"{longest}\n{longest}\n")
    assert sign_in(client, email="a@example.org", password=longest).status_code == 303


def test_create_refuses_mismatched_passwords(app: Flask, runner: FlaskCliRunner) -> None:
    result = runner.invoke(
        args=["admin", "create", "a@example.org"], input=f"{PASSWORD}\nsomething else!!\n"
    )
    assert result.exit_code != 0
    assert admins(app) == []


@pytest.mark.parametrize("email", ["not-an-email", "a@b"])
def test_create_refuses_a_bad_email(app: Flask, runner: FlaskCliRunner, email: str) -> None:
    result = runner.invoke(args=["admin", "create", email], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1
    assert "Enter an email address like" in result.output
    assert "Password" not in result.output  # told before typing a password twice for nothing


def test_create_refuses_an_address_too_long_to_store_once_its_capitals_are_folded(
    app: Flask, runner: FlaskCliRunner
) -> None:
    # 219 characters as typed; 283 folded, since each "ΐ" folds to three.
    email = "ΐ" * 32 + "@" + ".".join(["a" * 60] * 3) + ".org"
    result = runner.invoke(args=["admin", "create", email], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1, result.output
    assert "too long for an account: at most 254 characters" in result.output
    assert "Traceback" not in result.output and "Password" not in result.output
    assert admins(app) == []


def test_create_refuses_a_duplicate(runner: FlaskCliRunner, admin_account) -> None:
    result = runner.invoke(
        args=["admin", "create", ADMIN_EMAIL.upper()], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Password" not in result.output


def test_create_takes_an_address_with_spaces_around_as_sign_in_does(
    app: Flask, runner: FlaskCliRunner, client
) -> None:
    result = runner.invoke(
        args=["admin", "create", " Sister.Anna@Example.org "], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert sign_in(client, "sister.anna@example.org", PASSWORD).status_code == 303


def test_password_is_not_an_argument(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["admin", "create", "a@example.org", PASSWORD])
    assert result.exit_code == 2


def test_list_disable_enable(app: Flask, runner: FlaskCliRunner, admin_account) -> None:
    listed = runner.invoke(args=["admin", "list"])
    assert f"{ADMIN_EMAIL}\tactive\tlast sign-in: never" in listed.output

    client = app.test_client()
    assert sign_in(client).status_code == 303
    result = runner.invoke(args=["admin", "disable", ADMIN_EMAIL])
    assert result.exit_code == 0
    assert client.get("/admin/").status_code == 302  # the open session ended too
    assert sign_in(app.test_client()).status_code == 401
    assert "disabled" in runner.invoke(args=["admin", "list"]).output

    assert runner.invoke(args=["admin", "enable", ADMIN_EMAIL]).exit_code == 0
    assert sign_in(app.test_client()).status_code == 303


def test_set_password(app: Flask, runner: FlaskCliRunner, admin_account) -> None:
    client = app.test_client()
    sign_in(client)
    new = "another long password"
    result = runner.invoke(args=["admin", "set-password", ADMIN_EMAIL], input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert client.get("/admin/").status_code == 302
    assert sign_in(app.test_client(), password=ADMIN_PASSWORD).status_code == 401
    assert sign_in(app.test_client(), password=new).status_code == 303


@pytest.mark.parametrize(
    ("created", "used"),
    [
        ("anna@xn--mnchen-3ya.de", "anna@xn--mnchen-3ya.de"),
        ("anna@münchen.de", "ANNA@xn--MNCHEN-3ya.de"),
    ],
)
def test_an_account_with_an_international_domain_answers_to_either_spelling(
    app: Flask, runner: FlaskCliRunner, created: str, used: str
) -> None:
    password, new = "correct horse battery", "another long password"
    assert (
        runner.invoke(
            args=["admin", "create", created], input=f"{password}\n{password}\n"
        ).exit_code
        == 0
    )
    result = runner.invoke(args=["admin", "set-password", used], input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert sign_in(app.test_client(), email=used, password=new).status_code == 303


def test_commands_about_an_unknown_admin_say_so(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["admin", "disable", "ghost@example.org"])
    assert result.exit_code == 1
    assert "There is no admin account for ghost@example.org" in result.output
    result = runner.invoke(
        args=["admin", "set-password", "ghost@example.org"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 1
    assert "There is no admin account for ghost@example.org" in result.output
    assert "Password" not in result.output
    assert "No admin accounts yet" in runner.invoke(args=["admin", "list"]).output


@pytest.mark.parametrize("command", ["create", "set-password", "disable", "enable"])
def test_an_address_typed_in_a_terminal_that_is_not_utf8_is_refused_with_a_message(
    runner: FlaskCliRunner, admin_account, command: str
) -> None:
    # "josé@" from a terminal set to Latin-1: the é arrives as a byte that is not UTF-8.
    result = runner.invoke(
        args=["admin", command, "jos\udce9@example.org"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert "not UTF-8" in result.output
    assert "Password" not in result.output


def test_hashes_are_argon2id(app: Flask) -> None:
    with app.app_context():
        admin = auth.create_admin("b@example.org", PASSWORD)
        assert admin.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("kind", "args", "query"),
    [
        ("pledges", [], ""),
        ("pledges", ["--since", "2026-01-02", "--until", "2026-01-03"],
         "since=2026-01-02&until=2026-01-03"),
        ("donations", ["--since", "2026-01-02"], "since=2026-01-02"),
    ],
)  # fmt: skip
def test_shell_export_writes_the_same_bytes_as_the_web(
    app: Flask,
    runner: FlaskCliRunner,
    admin_client,
    add_pledge: Callable[..., None],
    add_donation: Callable[..., str],
    tmp_path: Path,
    kind: str,
    args: list[str],
    query: str,
) -> None:
    for day in range(1, 5):
        add_pledge(f"Zoë {day}", f"z{day}@example.org", created=f"2026-01-0{day}T12:00:00",
                   country="FR", intention="=1+1")  # fmt: skip
        add_donation(created=f"2026-01-0{day}T12:00:00", donor_name=f"Ана {day}")
    web = admin_client.get(f"/admin/{kind}.csv?{query}").get_data()
    output = tmp_path / "out.csv"
    result = runner.invoke(args=["export", kind, *args, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == web
    to_stdout = runner.invoke(args=["export", kind, *args])
    assert to_stdout.exit_code == 0, to_stdout.output
    assert to_stdout.stdout_bytes == web

    with app.app_context():
        exports = list(
            db.session.scalars(select(AuditLog).where(AuditLog.action == f"export_{kind}"))
        )
    web_entry, file_entry, stdout_entry = exports
    assert web_entry.actor == ADMIN_EMAIL
    assert file_entry.actor.startswith("shell")
    assert json.loads(file_entry.details)["via"] == "shell"
    assert json.loads(file_entry.details)["filters"] == json.loads(web_entry.details)["filters"]
    assert web_entry.row_count == file_entry.row_count == stdout_entry.row_count


def test_export_refuses_a_bad_date(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["export", "pledges", "--since", "01/02/2026"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output or "%Y-%m-%d" in result.output


def test_export_into_a_folder_that_does_not_exist_says_so(runner: FlaskCliRunner, tmp_path) -> None:
    output = tmp_path / "no-such-folder" / "pledges.csv"
    result = runner.invoke(args=["export", "pledges", "--output", str(output)])
    assert result.exit_code == 1
    assert f"Error: cannot write {output}: No such file or directory." in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _exports_audited(app: Flask) -> list[tuple[int, dict]]:
    with app.app_context():
        entries = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_pledges"))
        return [(entry.row_count, json.loads(entry.details)) for entry in entries]


def test_an_export_onto_a_full_disk_says_so_and_is_audited_as_stopped(
    app: Flask, runner: FlaskCliRunner, add_pledge
) -> None:
    add_pledge("Zoë Brontë", "zoe@example.org")
    result = runner.invoke(args=["export", "pledges", "--output", "/dev/full"])
    assert result.exit_code == 1
    assert (
        "Error: the export stopped: cannot write to /dev/full: No space left on device."
        in result.output
    )
    assert not isinstance(result.exception, OSError)
    [(rows, details)] = _exports_audited(app)
    assert (rows, details["complete"], details["via"]) == (0, "no", "shell")


def test_an_export_into_a_pipe_closed_early_is_audited_as_stopped(
    app: Flask, database_uri: str, tmp_path: Path
) -> None:
    # A real pipe, as in "flask export pledges | head": the reader leaves after a few bytes.
    with app.app_context():
        db.session.add_all(
            Pledge(name=f"Zoë {n}", email=f"z{n}@example.org", email_key=f"z{n}@example.org",
                   rhythm="daily", consent_version=CONSENT_VERSION, consented_at=utcnow())
            for n in range(5000)
        )  # fmt: skip
        db.session.commit()
    script = (
        "import sys; from flask.cli import ScriptInfo; from microsite import create_app; "
        "from tests.conftest import base_config; "
        "app = create_app(base_config(sys.argv[1], sys.argv[2])); "
        "app.cli.main(['export', 'pledges'], prog_name='flask', "
        "obj=ScriptInfo(create_app=lambda: app))"
    )
    args = [sys.executable, "-c", script, database_uri, str(tmp_path / "instance")]
    with subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_no_settings()
    ) as shell:
        assert shell.stdout is not None and shell.stderr is not None
        try:
            assert shell.stdout.read(100).startswith("\ufeffPledged at (UTC),".encode())
        finally:
            shell.stdout.close()
        errors = shell.stderr.read().decode()
        assert shell.wait(timeout=60) == 1
    assert "Error: the export stopped: cannot write to standard output: Broken pipe." in errors
    assert "Traceback" not in errors and "Exception ignored" not in errors
    [(rows, details)] = _exports_audited(app)
    assert details["complete"] == "no"
    assert 0 < rows < 5000


def _no_settings() -> dict[str, str]:
    """This environment without the site's own settings: the child takes the test's."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}


def test_export_refuses_dates_that_end_before_they_start(
    runner: FlaskCliRunner, add_pledge, tmp_path
) -> None:
    add_pledge("Zoë Brontë", "zoe@example.org", created="2026-11-10T08:00:00")
    output = tmp_path / "pledges.csv"
    args = ["--since", "2026-11-30", "--until", "2026-11-01", "--output", str(output)]
    result = runner.invoke(args=["export", "pledges", *args])
    assert result.exit_code == 2
    assert "end date is before the start date" in result.output
    assert not output.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--until", "9999-12-31"],
        ["--since", "0001-01-01"],
        ["--since", "0001-01-01", "--until", "9999-12-31"],
    ],
)
@pytest.mark.parametrize("kind", ["pledges", "donations"])
def test_shell_export_with_dates_at_either_end_of_the_calendar(
    runner: FlaskCliRunner, add_pledge, add_donation, kind: str, args: list[str]
) -> None:
    add_pledge("Zoë Brontë", "zoe@example.org", created="2026-01-10T08:00:00")
    add_donation(created="2026-01-10T08:00:00", donor_name="Ана Петрова")
    result = runner.invoke(args=["export", kind, *args])
    assert result.exit_code == 0, result.output
    text = result.stdout_bytes.decode("utf-8-sig")
    assert ("Zoë Brontë" if kind == "pledges" else "Ана Петрова") in text


def test_shell_export_file_is_readable_by_its_owner_only(
    runner: FlaskCliRunner, add_pledge, tmp_path: Path
) -> None:
    add_pledge("Zoë Brontë", "zoe@example.org")
    output = tmp_path / "pledges.csv"
    result = runner.invoke(args=["export", "pledges", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert "Zoë Brontë" in output.read_bytes().decode("utf-8-sig")
    # Written again over a longer file, nothing of the old one is left at the end.
    output.write_bytes(b"x" * 100_000)
    result = runner.invoke(args=["export", "pledges", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes().endswith(b"\r\n")
    assert b"xxx" not in output.read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["admin", "create", "a@example.org"],
        ["admin", "list"],
        ["admin", "set-password", "a@example.org"],
        ["admin", "disable", "a@example.org"],
        ["admin", "enable", "a@example.org"],
        ["export", "pledges"],
        ["export", "donations"],
    ],
)
def test_a_command_before_flask_db_upgrade_says_to_run_it(tmp_path: Path, args: list[str]) -> None:
    # A fresh server where `flask db upgrade` has not run yet: one line saying what to do,
    # not a database traceback, and no password asked for first.
    from microsite import create_app
    from tests.conftest import base_config

    app = create_app(base_config(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path))
    result = app.test_cli_runner().invoke(args=args, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1
    assert result.output.endswith(
        "Error: the database has no tables for this site yet: run flask db upgrade first.\n"
    )
    assert "Password" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["admin", "list"], ["export", "pledges"], ["db", "upgrade"], ["db", "current"]]
)
def test_a_command_on_a_database_that_cannot_be_reached_says_why_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    from microsite import create_app
    from tests.conftest import base_config

    # Nothing listens on port 1; the password must not be repeated back.
    url = "postgresql+psycopg://renate:s3cret@127.0.0.1:1/renate"
    result = create_app(base_config(url, tmp_path)).test_cli_runner().invoke(args=args)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("Error: cannot reach the database: connection failed:")
    assert "Connection refused" in line
    assert "s3cret" not in line and "Traceback" not in result.output


def test_check_is_silent_when_nothing_needs_a_look(runner: FlaskCliRunner) -> None:
    # Silent, so that a daily cron job mails nobody on an ordinary day.
    result = runner.invoke(args=["check"])
    assert (result.exit_code, result.output) == (0, "")


def test_check_tells_of_a_missing_contact_address(make_app) -> None:
    result = make_app(CONTACT_EMAIL="").test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 1
    assert result.output.startswith("- No contact address is set: pledgers are told they can")
    assert "Set CONTACT_EMAIL." in result.output


def test_flask_db_upgrade_from_the_shell_still_makes_the_schema(tmp_path: Path) -> None:
    from microsite import create_app
    from microsite.models import schema_state
    from tests.conftest import base_config

    app = create_app(base_config(f"sqlite:///{tmp_path / 'new.db'}", tmp_path))
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert schema_state() == "current"


def test_a_command_on_a_database_a_release_behind_says_to_upgrade(
    app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from microsite import cli

    def behind(*args, **kwargs):
        raise OperationalError("SELECT ...", {}, Exception("no such column: admin_user.x"))

    monkeypatch.setattr(cli.auth, "list_admins", behind)
    monkeypatch.setattr(cli, "schema_state", lambda: "behind")
    result = runner.invoke(args=["admin", "list"])
    assert result.exit_code == 1
    assert result.output.endswith(
        "Error: the database is behind this release's schema: run flask db upgrade first.\n"
    )


@pytest.mark.parametrize("group", ["admin", "export"])
def test_each_command_s_summary_in_the_help_is_whole(runner: FlaskCliRunner, group: str) -> None:
    result = runner.invoke(args=[group, "--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands, commands
