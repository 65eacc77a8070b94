"""Flask commands for operators: thin wrappers over the services the views use."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Attach the command groups to the app."""
