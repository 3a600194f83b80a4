"""The errors the client raises.

Both derive from :class:`ClientError`, so one ``except ClientError`` handles every failure
of a call; ``str(error)`` is a one-line description.
"""

from typing import Any


class ClientError(Exception):
    """The base of the errors this package raises."""


class ApiError(ClientError):
    """The API answered with an error (any status outside 2xx, after the retries the call allows).

    ``status`` is the HTTP status; ``code`` the API's ``error`` field (``not_found``,
    ``invalid``, ``limit_exceeded``... see docs/api.md); ``message`` its human-readable
    ``message``; ``details`` the per-field problems of a 422 (``[{"field", "message"}]``);
    ``retry_after_s`` the ``Retry-After`` the answer carried, if any. An answer that is not
    the API's JSON error shape (a proxy's HTML page, say) gets the code ``http_error`` and
    the start of its body as the message.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.retry_after_s = retry_after_s


class ApiConnectionError(ClientError):
    """The API could not be reached, or the connection failed before a whole answer arrived.

    Raised once the call's retries are spent (or at once when retrying would not be safe);
    the underlying ``httpx`` exception is its ``__cause__``.
    """
