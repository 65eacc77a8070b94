"""Entry point for `flask run` and `gunicorn app:app`."""

import sys

from microsite import create_app
from microsite.config import SettingsError

try:
    app = create_app()
except SettingsError as problem:
    # A setting to change, not a bug: say what, without a traceback in front of it.
    print(f"The site cannot start: {problem}", file=sys.stderr)
    # 3 is what gunicorn's master reads as "the worker cannot boot": it stops
    # instead of starting the same failing worker again and again.
    raise SystemExit(3) from None
