"""data_bridge/pyloop/_errors.py — exception handling: get/set_exception_handler,
default_exception_handler and call_exception_handler.

Every error asyncio reports through the loop ends here: callback exceptions (reported by
_glue.report_handle_exception), transports, asynchronous generators, unretrieved futures.
"""

from __future__ import annotations

import logging
import traceback

# asyncio's logger: handlers and filters users set on it see PyLoop's messages too.
logger = logging.getLogger("asyncio")


class ErrorHandlingMethods:
    """Mixin of PyLoop: the exception handler and asyncio's default one."""

    def _init_errors(self) -> None:
        self._exception_handler = None  # set_exception_handler()'s handler, else None

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context) -> None:
        """Log the context's message and details on the 'asyncio' logger."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else False
        current = self._current_handle
        if "source_traceback" not in context and current is not None and current._source_traceback:
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                value = "Object created at (most recent call last):\n" + "".join(
                    traceback.format_list(value)
                ).rstrip()
            elif key == "handle_traceback":
                value = "Handle created at (most recent call last):\n" + "".join(
                    traceback.format_list(value)
                ).rstrip()
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context) -> None:
        """Pass context to the handler set by set_exception_handler(), else log it. Errors
        in the handler are logged; SystemExit and KeyboardInterrupt propagate."""
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an "
                    "unexpected error in custom exception handler",
                    exc_info=True,
                )
