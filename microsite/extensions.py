"""One unbound instance of each extension; create_app binds them."""

from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from .models import db
from .security import rate_limit_key

migrate = Migrate()
csrf = CSRFProtect()
limiter = Limiter(key_func=rate_limit_key)

__all__ = ["csrf", "db", "limiter", "migrate"]
