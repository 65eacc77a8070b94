"""One unbound instance of each extension; create_app binds them."""

from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from .models import db
from .security import rate_limit_key

migrate = Migrate()
csrf = CSRFProtect()
# Every limit on a route is checked, not only up to the first one spent: the 429 page tells
# the wait for the longest of those spent, so that trying again then gets in.
# While a shared store (Redis) cannot be reached, each worker counts in its own memory, as
# with memory://, and the log says so: the limits still hold and the forms still work.
limiter = Limiter(
    key_func=rate_limit_key, fail_on_first_breach=False, in_memory_fallback_enabled=True
)

__all__ = ["csrf", "db", "limiter", "migrate"]
