"""The house: layers import only downwards and no module imports itself round a circle.

  converters/   readers, formats, writers             imports nothing else of ours
  eval/         metrics from files and arrays          converters
  scripts/      engines, inference, benchmarks, CLIs   anything below; no cycles among them
Front doors (a file with `if __name__ == "__main__"` whose path the README fixes, e.g. eval/confusion.py) are the
top layer wherever they sit: they may import anything, and nothing imports them.
Every import counts, also one inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("converters", "eval", "scripts")
ALLOWED = {"converters": {"converters"}, "eval": {"converters", "eval"}, "scripts": {"converters", "eval", "scripts"}}
FRONT_DOORS = {"eval.confusion", "eval.detection"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_imports(path: Path) -> set[str]:
    """Modules of ours that `path` imports (absolute and relative, at any depth of the file)."""
    tree, me, out = ast.parse(path.read_text()), module_name(path), set()
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in PACKAGES)
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges = {}
    for mod, path in files.items():
        targets = set()
        for name in our_imports(path):
            # `from scripts import ultra` names a module; `from scripts.ultra import x` names one too
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != mod and not (name in PACKAGES and files[name].name == "__init__.py"
                                             and files[name].stat().st_size < 200):
                targets.add(name)
        edges[mod] = targets
    return edges


def test_no_upward_imports():
    bad = [f"{m} -> {t}" for m, ts in graph().items() if m not in FRONT_DOORS
           for t in ts if t.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert bad == []


def test_nothing_imports_a_front_door():
    assert [f"{m} -> {t}" for m, ts in graph().items() for t in ts if t in FRONT_DOORS] == []


def test_no_cycles():
    g, cycles, state = graph(), [], {}

    def visit(node, stack):
        state[node] = "open"
        for t in sorted(g.get(node, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[node] = "done"
    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_walker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks can fail: a made-up house with converters -> scripts and a <-> b."""
    import sys
    me = sys.modules[__name__]
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "converters" / "low.py").write_text("def f():\n    from scripts import a\n")
    (tmp_path / "scripts" / "a.py").write_text("from scripts.b import x\n")
    (tmp_path / "scripts" / "b.py").write_text("from . import a\nx = 1\n")
    monkeypatch.setattr(me, "ROOT", tmp_path)
    g = graph()
    assert g["converters.low"] == {"scripts.a"} and g["scripts.a"] == {"scripts.b"} and g["scripts.b"] == {"scripts.a"}
    for check in (test_no_upward_imports, test_no_cycles):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} passed on a bad house")
