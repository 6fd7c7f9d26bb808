"""data_bridge/pyloop/_asyncgens.py — asynchronous generators: the firstiter and finalizer
hooks and shutdown_asyncgens.

run_forever installs the two hooks (sys.set_asyncgen_hooks) while the loop runs, so the loop
knows every generator iterated in it and can close the ones left at shutdown.
"""

from __future__ import annotations

import warnings
import weakref
from asyncio import tasks


class AsyncgenMethods:
    """Mixin of PyLoop: asynchronous generator bookkeeping."""

    def _init_asyncgens(self) -> None:
        self._asyncgens = weakref.WeakSet()  # generators first iterated in this loop
        self._asyncgens_shutdown_called = False  # shutdown_asyncgens() has started

    def _asyncgen_firstiter_hook(self, agen) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning,
                source=self,
            )
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        """Close every asynchronous generator this loop still iterates."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[agen.aclose() for agen in closing], return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of "
                        f"asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )
