"""tests/checks/test_stubs.py — the extension's typing stub names exactly what the module has."""

import ast
import pathlib

from data_bridge.pyloop import _pyloop

STUB = pathlib.Path(__file__).resolve().parents[2] / "python/data_bridge/pyloop/_pyloop.pyi"


def stub_names():
    """{'': module-level names, 'Class': its member names} from the stub."""
    tree = ast.parse(STUB.read_text())
    names = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[""].add(node.name)
            members = names.setdefault(node.name, set())
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
        elif isinstance(node, ast.FunctionDef):
            names[""].add(node.name)
    return names


def runtime_names():
    names = {"": {n for n in vars(_pyloop) if not n.startswith("__") and n != "_state"}}
    for cls_name in ("Handle", "TimerHandle", "Loop", "StreamIO"):
        cls = getattr(_pyloop, cls_name)
        own = {n for n in vars(cls) if not (n.startswith("__") and n.endswith("__"))}
        # Rich comparisons and hash are dunders the stub declares for TimerHandle only.
        if cls_name == "TimerHandle":
            own |= {"__lt__", "__le__", "__gt__", "__ge__", "__hash__"}
        names[cls_name] = own
    names["StreamIO"].add("__init__")  # its constructor's signature, declared in the stub
    return names


def test_stub_matches_the_extension():
    assert stub_names() == runtime_names()
