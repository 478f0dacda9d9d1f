"""The package's layers and the one direction of its imports.

Data flows one way through bptt: the engine's time loop → the cells that run on it → `trace` →
the diagnostics (functions of a Trace) → tasks → training → reports → sweeps (whose report draws
with the reports') → the commands → the command line. A module may import from its own layer or the layers below, never from one above,
and no modules import each other in a circle. The test reads every import statement of
`src/bptt` with `ast`, also those inside functions and under `TYPE_CHECKING`, so a lazy import
cannot hide a climb back up.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the entry that names it or the nearest package above it.
LAYERS: list[tuple[str, ...]] = [
    ("bptt._checks", "bptt._io", "bptt._records", "bptt._version"),
    ("bptt.engine",),
    ("bptt.cells", "bptt.convert"),
    ("bptt.trace", "bptt.watch"),
    ("bptt.diagnostics",),
    ("bptt.tasks",),
    ("bptt.training",),
    ("bptt.reports",),
    ("bptt.sweep", "bptt.reproduce"),
    (
        "bptt.theory",
        "bptt.bench",
        "bptt.bench_successors",
        "bptt.demo",
        "bptt.diagnose",
        "bptt.compile_check",
    ),
    ("bptt.cli",),
    ("bptt", "bptt.__main__"),
]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    found = [
        (len(name), i)
        for i, names in enumerate(LAYERS)
        for name in names
        if module == name or module.startswith(name + ".")
    ]
    if not found:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return max(found)[1]


def is_module(name: str, src: Path = SRC) -> bool:
    p = src.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def imports(path: Path, src: Path = SRC) -> set[str]:
    """Every bptt module that `path` imports, as absolute names.

    `from pkg import mod` counts as importing `mod`, not `pkg`'s `__init__` (which Python runs
    for any module inside it anyway); `from pkg import name` counts as importing `pkg`.
    """
    me = module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "bptt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "bptt":
                continue
            modules = {f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}", src)}
            out.update(modules if len(modules) == len(node.names) else {target, *modules})
    out.discard(me)
    return out


MODULES = sorted(SRC.joinpath("bptt").rglob("*.py"))


def test_every_module_is_read():
    names = {module_name(p) for p in MODULES}
    assert {"bptt.trace", "bptt.engine.sweep", "bptt.diagnostics.jacobian", "bptt.cells.base"} <= names
    assert "bptt.engine.sweep" in imports(SRC / "bptt" / "engine" / "function.py")


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_point_down(path):
    me = module_name(path)
    up = sorted(m for m in imports(path) if layer(m) > layer(me))
    assert not up, f"{me} (layer {layer(me)}) imports from layers above it: " + ", ".join(
        f"{m} (layer {layer(m)})" for m in up
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles a depth-first walk of `graph` meets (each as a closed path)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    found = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                found.append([*path[path.index(n) :], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_no_import_cycles():
    found = cycles({module_name(p): imports(p) for p in MODULES})
    assert not found, "import cycles: " + "; ".join(" → ".join(c) for c in found)


def test_a_lazy_climb_and_a_cycle_are_caught(tmp_path):
    """An import inside a function counts like any other, and a two-module circle is a cycle."""
    files = {
        "bptt/__init__.py": "",
        "bptt/engine/__init__.py": "",
        "bptt/engine/late.py": "def f():\n    from ..diagnostics import summary\n    return summary\n",
        "bptt/diagnostics/__init__.py": "",
        "bptt/diagnostics/summary.py": "from ..engine.late import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    late = imports(tmp_path / "bptt/engine/late.py", tmp_path)
    assert late == {"bptt.diagnostics.summary"}
    assert layer("bptt.diagnostics.summary") > layer("bptt.engine.late")
    graph = {module_name(p, tmp_path): imports(p, tmp_path) for p in sorted(tmp_path.rglob("*.py"))}
    assert cycles(graph) == [["bptt.diagnostics.summary", "bptt.engine.late", "bptt.diagnostics.summary"]]
