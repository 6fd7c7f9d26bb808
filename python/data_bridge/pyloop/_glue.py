"""data_bridge/pyloop/_glue.py — Python helpers the native loop calls on its slow paths.

Error reports, reprs and debug-mode stacks are rare and their exact text is asyncio's, so
they are written here against asyncio's own formatting helpers instead of in C++.
"""

from __future__ import annotations

import sys
from asyncio import format_helpers


def report_handle_exception(handle, exc: BaseException) -> None:
    """Send an exception raised by a callback to its loop's exception handler."""
    source = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {
        "message": f"Exception in callback {source}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def handle_repr(handle) -> str:
    """asyncio's Handle/TimerHandle repr: class, state, deadline, callback, origin."""
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    when = getattr(handle, "_when", None)
    if when is not None:
        info.insert(2 if handle._cancelled else 1, f"when={when}")
    if handle._callback is not None:
        info.append(format_helpers._format_callback_source(handle._callback, handle._args))
    if handle._source_traceback:
        filename, lineno = handle._source_traceback[-1][:2]
        info.append(f"created at {filename}:{lineno}")
    return "<{}>".format(" ".join(info))


def extract_stack():
    """The stack of whoever called into the native loop (debug mode's source_traceback)."""
    # Frame 0 is this function; frame 1 is the Python code that called call_soon & co.
    return format_helpers.extract_stack(sys._getframe(1))
