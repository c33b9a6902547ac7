"""The services' log lines: JSON (one object a line) or text, personal data masked in both.

``configure_logging`` puts structlog's ``ProcessorFormatter`` on the root logger's handler, so the
``logging`` calls of the services and of the libraries come out alike: with ``json`` (the
default, ``ZEROERRAND_LOG_FORMAT``) as ``{"timestamp": ..., "level": ..., "logger": ...,
"event": ...}``, plus ``project_code`` and ``item_code`` while a consumer handles a message about
them (bound with :func:`bind_subject` in ``services.common.consuming`` and the router), and
``exception`` with the traceback. In every line, whatever its format, a mobile or fixed-line phone
number is masked as ``services.notifier.channels.mask_phone`` does (``139****0000``), an e-mail
address as ``mask_email`` does (``w***@example.cn``), and a URL's password as ``***``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.contextvars import bound_contextvars
from structlog.typing import EventDict, Processor

from services.common.settings import mask_urls_in
from services.notifier.channels import mask_email, mask_phone

# a Chinese mobile number (optionally +86), or a fixed line with its area code (0471-1234567); not a
# run of digits inside a longer word or number (an id, a hash, a credit code)
_PHONE = re.compile(r"(?<![0-9A-Za-z])(?:(?:\+|00)86[ -]?)?(?:1[3-9]\d{9}|0\d{2,3}-\d{7,8})(?![0-9A-Za-z])")
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def mask_personal(text: str) -> str:
    """``text`` with every phone number, e-mail address and URL password masked."""
    text = mask_urls_in(text)
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    return _PHONE.sub(lambda m: mask_phone(re.sub(r"^(?:\+|00)86[ -]?", "", m.group())), text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal(value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def mask_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The structlog processor that masks every string of a log line (last before rendering)."""
    return {key: _masked(value) for key, value in event_dict.items()}


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's copy of its message with terminal colours
    return event_dict


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def render_text(_: Any, __: str, event_dict: EventDict) -> str:
    """``TIMESTAMP LEVEL logger: event key=value ...`` and the traceback on the lines below: the
    services' text lines as they were before JSON (the fault tests read them)."""
    fields = dict(event_dict)
    head = (f"{fields.pop('timestamp', '')} {str(fields.pop('level', '')).upper()} {fields.pop('logger', '')}: "
            f"{fields.pop('event', '')}")
    exception = fields.pop("exception", None)
    # in one order whatever the order they were bound in: the project, the item, then the rest by name
    first = [key for key in ("project_code", "item_code") if key in fields]
    extra = " ".join(f"{key}={fields[key]}" for key in [*first, *sorted(set(fields) - set(first))])
    return head + (f" [{extra}]" if extra else "") + (f"\n{exception}" if exception else "")


def formatter(log_format: Literal["json", "text"]) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of the root handler for ``log_format``."""
    renderer: Processor = (structlog.processors.JSONRenderer(ensure_ascii=False) if log_format == "json"
                           else render_text)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder()],
        # after the pre-chain: uvicorn's colour copy arrives as a record's extra, added by ExtraAdder
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_color_message,
                    structlog.processors.format_exc_info, mask_event, renderer],
    )


def configure_logging(log_format: Literal["json", "text"] = "json", level: int = logging.INFO,
                      stream: Any = None) -> logging.Handler:
    """Sends every log record (``logging`` and structlog alike) through one handler on ``stream``
    (stderr) in ``log_format``; returns the handler. Replaces the root logger's handlers."""
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def subject_of(message: Any) -> dict[str, str]:
    """The ``project_code`` and ``item_code`` a message is about, those it names."""
    found: MutableMapping[str, str] = {}
    item = getattr(message, "item", None)  # item.routed carries the routed item
    project = getattr(message, "project", None)  # service.started, agreement.signed: the project itself
    for source in (message, item):
        for key in ("project_code", "item_code"):
            value = getattr(source, key, None) if source is not None else None
            if isinstance(value, str) and key not in found:
                found[key] = value
    code = getattr(project, "code", None)
    if "project_code" not in found and isinstance(code, str):
        found["project_code"] = code
    return dict(found)


@contextmanager
def bind_subject(message: Any) -> Iterator[None]:
    """Within it, every log line carries the message's project and item codes."""
    with bound_contextvars(**subject_of(message)):
        yield
