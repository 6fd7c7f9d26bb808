"""tests/checks/test_stubs.py — the extension's typing stub is the Python/C++ contract: it names
exactly what the module has, and exactly the private members the native code calls on Python
objects, which the Python classes implement."""

import ast
import pathlib
import re
import socket

from data_bridge.pyloop import PyLoop, _pyloop
from data_bridge.pyloop._datagram import DatagramTransport
from data_bridge.pyloop._transport import SocketTransport

ROOT = pathlib.Path(__file__).resolve().parents[2]
STUB = ROOT / "python/data_bridge/pyloop/_pyloop.pyi"
MODULE_STATE = ROOT / "bindings/bind_module_state.cpp"
CONTRACTS = {
    "_LoopCallbacks": PyLoop,
    "_TransportCallbacks": SocketTransport,
    "_DatagramTransportCallbacks": DatagramTransport,
}


def class_members(node):
    """Names a stub class declares: its methods and annotated attributes."""
    members = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            members.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.add(item.target.id)
    return members


def stub_names():
    """{'': module-level names, 'Class': its member names} from the stub."""
    tree = ast.parse(STUB.read_text())
    names = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in CONTRACTS:
            continue  # the contract the other way (below): not names of the module
        if isinstance(node, ast.ClassDef):
            names[""].add(node.name)
            names[node.name] = class_members(node)
        elif isinstance(node, ast.FunctionDef):
            names[""].add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[""].add(node.target.id)  # a module attribute (the _C_API capsule)
    return names


def runtime_names():
    names = {"": {n for n in vars(_pyloop) if not n.startswith("__") and n != "_state"}}
    for cls_name in ("Handle", "TimerHandle", "Loop", "StreamIO", "DatagramIO", "TLSSession", "NativeBuffer",
                     "NativeFuture"):
        cls = getattr(_pyloop, cls_name)
        own = {n for n in vars(cls) if not (n.startswith("__") and n.endswith("__"))}
        # Rich comparisons and hash are dunders the stub declares for TimerHandle only.
        if cls_name == "TimerHandle":
            own |= {"__lt__", "__le__", "__gt__", "__ge__", "__hash__"}
        names[cls_name] = own
    names["StreamIO"].add("__init__")  # its constructor's signature, declared in the stub
    names["DatagramIO"].add("__init__")
    names["TLSSession"].add("__init__")
    return names


def test_stub_matches_the_extension():
    assert stub_names() == runtime_names()


def contract_members():
    """{contract class: its member names} from the stub's *Callbacks protocols."""
    tree = ast.parse(STUB.read_text())
    return {
        node.name: class_members(node)
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name in CONTRACTS
    }


def names_the_bindings_call():
    """Names interned in module state that the native code looks up on Python objects it does
    not own: every private one, and PyLoop's slow_callback_duration."""
    interned = set(re.findall(r'interned\("([^"]+)"\)', MODULE_STATE.read_text()))
    assert interned, "no interned names found: has bind_module_state.cpp changed shape?"
    return {n for n in interned if n.startswith("_") or n == "slow_callback_duration"}


def test_contract_declares_every_private_name_the_bindings_call():
    declared = set().union(*contract_members().values())
    called = names_the_bindings_call()
    # `_io` is found by install_stream_methods() through the class, not an interned name.
    assert called == declared - {"_io"}


def test_python_classes_implement_the_contract():
    loop = PyLoop()
    try:
        a, b = socket.socketpair()
        try:
            import asyncio

            transport = SocketTransport(loop, a, asyncio.Protocol())
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            datagrams = DatagramTransport(loop, udp, asyncio.DatagramProtocol())
            instances = {
                "_LoopCallbacks": loop,
                "_TransportCallbacks": transport,
                "_DatagramTransportCallbacks": datagrams,
            }
            for contract, names in contract_members().items():
                missing = [n for n in sorted(names) if not hasattr(instances[contract], n)]
                assert missing == [], f"{CONTRACTS[contract].__name__} lacks {missing}"
            transport.abort()
            datagrams.abort()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            b.close()
    finally:
        loop.close()
