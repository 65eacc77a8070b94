"""Entry point for `flask run` and `gunicorn app:app`."""

from microsite import create_app

app = create_app()
