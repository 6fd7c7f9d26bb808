"""data_bridge/pyloop/_tasks.py — the task factory: set_task_factory, get_task_factory and
create_task() while a factory is set.

create_task() is native; with a factory in effect (the native `_task_factory` slot is not
None) it calls _create_task_with_factory instead.
"""

from __future__ import annotations

import warnings


class TaskMethods:
    """Mixin of PyLoop: the task factory."""

    def set_task_factory(self, factory) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self):
        return self._task_factory

    def _create_task_with_factory(self, coro, name, context):
        """create_task() when set_task_factory() is in effect (the native path calls this)."""
        factory = self._task_factory
        if context is None:
            task = factory(self, coro)
        else:
            task = factory(self, coro, context=context)
        if name is not None:
            try:
                set_name = task.set_name
            except AttributeError:
                warnings.warn(
                    "Task.set_name() was added in Python 3.8, the method support "
                    "will be mandatory for third-party task implementations since 3.13.",
                    DeprecationWarning,
                    stacklevel=3,
                )
            else:
                set_name(name)
        return task
