"""Every error hermes-cron raises on purpose.

    HermesCronError
     ├── InvalidInput (ValueError)        bad input from a user: 400 / one CLI line
     │    └── InvalidSchedule             a schedule or time zone that cannot fire
     ├── NotFound (LookupError)           unknown job or run: 404
     ├── Conflict                         refused by state or policy: 409
     ├── Forbidden                        the user lacks a permission the change needs: 403
     └── StoreError                       the store is unusable (bad schema version, ...)

Each carries a short ``code`` and, for input errors, the ``field`` at fault, so
the REST layer, the CLI and the magics all render the same message.
"""

from __future__ import annotations


class HermesCronError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class InvalidInput(HermesCronError, ValueError):
    code = "invalid"


class InvalidSchedule(InvalidInput):
    code = "invalid_schedule"


class NotFound(HermesCronError, LookupError):
    code = "not_found"


class Conflict(HermesCronError):
    code = "conflict"


class StoreError(HermesCronError):
    code = "store_error"


class Forbidden(HermesCronError):
    """The user lacks the permission a change needs (403)."""

    code = "forbidden"
