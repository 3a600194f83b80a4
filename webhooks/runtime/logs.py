"""Logging of every process (api, worker, scheduler, ``up``): structlog, text or JSON, never a secret.

:func:`configure` is called once at process start. Our own structured lines (structlog) and
every stdlib ``logging`` record (uvicorn, RQ, our ``logging.getLogger`` users) go through the
same :class:`structlog.stdlib.ProcessorFormatter` on one stderr handler, so ``json`` yields one
JSON object per line for everything: ``timestamp`` (ISO 8601 UTC), ``level``, ``logger``,
``message`` and the line's fields. ``text`` is structlog's aligned console format without colours.

Lines about a delivery come from :func:`delivery_log`, which binds ``tenant_id``, ``event_id``,
``delivery_id`` and ``endpoint_id``. Before rendering, :func:`redact` replaces the value of any
field whose name looks like a credential (``secret``, ``token``, ``authorization``, ``api_key``,
``password``, ``cookie``) and any ``whsec_``/``whsk_``/``whk_``/``wh_``-prefixed secret or
``Bearer``/``Basic`` credential inside any text, the message and tracebacks included.
"""

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, Protocol

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

FORMATS = ("text", "json")
REDACTED = "[redacted]"
DELIVERY_LOGGER = "webhooks.delivery"

_SECRET_KEY = re.compile(r"secret|token|authorization|api_?key|password|passwd|cookie", re.IGNORECASE)
_SECRET_TEXT = re.compile(r"\b(whsec|whsk|whpk|whk|wh)_[A-Za-z0-9+/=_-]{8,}")
_CREDENTIAL = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Loggers that would print request URLs (whose query may hold a receiver's token) at INFO.
_QUIET = ("httpx", "httpcore", "aiohttp.access")


class DeliveryIds(Protocol):
    """What :func:`delivery_log` needs of a delivery (e.g.
    :class:`webhooks.queueing.queue.LeasedDelivery`)."""

    @property
    def id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def endpoint_id(self) -> str: ...


def delivery_log(d: DeliveryIds, logger: str = DELIVERY_LOGGER) -> FilteringBoundLogger:
    """A logger whose every line carries the delivery's four ids."""
    log: FilteringBoundLogger = structlog.get_logger(logger).bind(
        tenant_id=d.tenant_id, event_id=d.event_id, delivery_id=d.id, endpoint_id=d.endpoint_id
    )
    return log


def get_logger(name: str) -> FilteringBoundLogger:
    log: FilteringBoundLogger = structlog.get_logger(name)
    return log


def scrub_text(text: str) -> str:
    """``text`` with ``wh*_`` secrets and HTTP credentials replaced by ``[redacted]``."""
    if "_" in text:
        text = _SECRET_TEXT.sub(lambda m: m.group(1) + "_" + REDACTED, text)
    if " " in text:
        text = _CREDENTIAL.sub(lambda m: m.group(1) + " " + REDACTED, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: no secret leaves it (see the module docstring)."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | dict | list | tuple):
            event_dict[key] = _scrub(value)
    return event_dict


_FIRST = ("timestamp", "level", "logger", "message")


def _json_dumps(obj: MutableMapping[str, Any], **_: Any) -> str:
    """One line of JSON, the standard fields first."""
    ordered = {k: obj.pop(k) for k in _FIRST if k in obj}
    ordered.update(obj)
    return orjson.dumps(ordered, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """A crash's traceback as one JSON line, like every other line."""
    logging.getLogger("webhooks").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        logging.getLogger("webhooks").critical(
            "uncaught exception in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def configure(format: str = "text", level: str = "INFO") -> None:
    """Route structlog and stdlib logging to stderr in ``format`` (``text`` or ``json``) at ``level``.

    Replaces the root logger's handlers (calling it again reconfigures); raises ValueError for
    an unknown format (settings validate it first, naming the variable).
    """
    if format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {format!r}")
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Processor]
    if format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(serializer=_json_dumps),
        ]
    else:
        renderer = [
            structlog.processors.format_exc_info,
            redact,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level_no, logging.WARNING))
    logging.captureWarnings(True)  # warnings too, in the same format
    if format == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        cache_logger_on_first_use=False,
    )
