"""tests/checks/test_loop_composition.py — PyLoop's bases: the native loop first, one mixin per
concept, asyncio.AbstractEventLoop last, and none of its abstract methods left unimplemented."""

import asyncio

import data_bridge.pyloop as pyloop
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


def test_every_method_of_the_abstract_loop_is_implemented():
    """No public method of PyLoop is asyncio.AbstractEventLoop's, which raises
    NotImplementedError: every one comes from the native base or a mixin."""
    for name in (n for n in vars(asyncio.AbstractEventLoop) if not n.startswith("_")):
        assert getattr(PyLoop, name) is not getattr(asyncio.AbstractEventLoop, name), name
