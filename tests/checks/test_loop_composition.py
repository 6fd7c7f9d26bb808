"""tests/checks/test_loop_composition.py — PyLoop's bases: the native loop first, one mixin per
concept, asyncio.AbstractEventLoop last, and stubs only where nothing implements a method."""

import asyncio

import data_bridge.pyloop as pyloop
from data_bridge.pyloop import _not_implemented
from data_bridge.pyloop._pyloop import Loop as NativeLoop

PyLoop = pyloop.PyLoop
MIXINS = PyLoop.__bases__[1:-1]


def own_names(cls):
    return {name for name in vars(cls) if not (name.startswith("__") and name.endswith("__"))}


def test_native_loop_first_and_abstract_loop_last():
    assert PyLoop.__bases__[0] is NativeLoop
    assert PyLoop.__bases__[-1] is asyncio.AbstractEventLoop
    assert PyLoop.__mro__[-2:] == (asyncio.AbstractEventLoop, object)


def test_no_name_is_defined_by_two_bases():
    """So the order of the mixins cannot matter, and none hides a native method."""
    seen = {}
    for cls in (NativeLoop, *MIXINS):
        for name in own_names(cls):
            assert name not in seen, f"{name} is defined by {seen[name]} and {cls.__name__}"
            seen[name] = cls.__name__


def test_stubs_stand_only_where_no_class_defines_the_method():
    for name in pyloop.NOT_YET_IMPLEMENTED:
        defined_by = [
            cls
            for cls in PyLoop.__mro__[1:]
            if cls is not asyncio.AbstractEventLoop and name in vars(cls)
        ]
        assert (name in vars(PyLoop)) == (not defined_by), name


def test_install_stubs_leaves_a_mixins_method_alone():
    class Mixin:
        async def subprocess_exec(self, *args, **kwargs):
            return "implemented"

    class Loop(Mixin, asyncio.AbstractEventLoop):
        pass

    _not_implemented.install_stubs(Loop)
    assert Loop.subprocess_exec is Mixin.subprocess_exec
    assert set(pyloop.NOT_YET_IMPLEMENTED) - {"subprocess_exec"} <= set(vars(Loop))
