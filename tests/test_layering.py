"""The package's layers run one way (scripts -> engine -> pruning -> models -> utils) and no modules import each other
in a circle: read from the source's import statements, so a new upward import or circle fails here, not in review."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from utils.paths import REPO_ROOT

LAYERS = {"engine": 1, "pruning": 2, "models": 3, "utils": 4}  # the scripts at the top are layer 0


def _modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Every module of the layered packages and every top-level script, by dotted name."""
    files = list(root.glob("*.py")) + [f for pkg in LAYERS for f in (root / pkg).rglob("*.py")]
    out = {}
    for f in files:
        name = ".".join(f.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def _imports(tree: ast.AST, mods: dict[str, Path]) -> list[tuple[str, ast.stmt]]:
    """(imported project module, statement) for every import in ``tree``; ``from pkg import sub`` names ``pkg.sub``
    when that is a module, and ``if TYPE_CHECKING:`` imports count as well."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                     for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name:
                out.append((name, node))
    return out


def _layer(module: str) -> int:
    return LAYERS.get(module.split(".")[0], 0)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, f in mods.items():
        for target, _ in _imports(ast.parse(f.read_text()), mods):
            if target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on_stack.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                on_stack.add(w)
                work.append((w, iter(sorted(graph.get(w, ())))))
            elif w in on_stack:
                low[v] = min(low[v], index[w])
    return out


def test_no_module_imports_from_a_higher_layer() -> None:
    graph = _graph()
    upward = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if _layer(t) < _layer(m))
    assert not upward, "imports from a higher layer (scripts -> engine -> pruning -> models -> utils):\n" + \
        "\n".join(upward)


def test_no_import_circles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_circles_and_upward_imports(tmp_path: Path) -> None:
    """The checks above are only as good as the graph: a hand-made circle and an upward import are found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    (tmp_path / "utils").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "utils" / "x.py").write_text("from models.y import Z\n")
    (tmp_path / "models" / "y.py").write_text("def f():\n    from utils import x\n")
    mods = _modules(tmp_path)
    found = {m: [t for t, _ in _imports(ast.parse(f.read_text()), mods)] for m, f in mods.items()}
    assert found == {"utils.x": ["models.y"], "models.y": ["utils.x"]}
    assert _layer("utils.x") > _layer("models.y")


def test_options_classes_live_in_their_verbs_package() -> None:
    """Each script's options class sits in its verb's package under engine/ (benchmarks keep theirs beside them)."""
    homes = {"TrainOptions": "engine/train/", "ValOptions": "engine/val/", "DetectOptions": "engine/detect/",
             "ExportOptions": "engine/export/", "PruneOptions": "engine/prune/", "SlimOptions": "engine/slim/",
             "SlimmingOptions": "engine/study/"}
    found = {}
    for name, f in _modules().items():
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Options"):
                found[node.name] = str(f.relative_to(REPO_ROOT))
    for cls, home in homes.items():
        assert found.get(cls, "").startswith(home), f"{cls} is in {found.get(cls)}, not in {home}"


# Project modules that import an optional heavy dependency at their top: imported where they are used, like it.
LAZY = {"engine.export.int8"}  # onnxruntime.quantization


def test_project_imports_sit_at_the_top_of_modules() -> None:
    """Inside a function, only the modules that wrap an optional heavy dependency are imported: every other project
    import is at the top, where a reader sees what a module depends on."""
    mods = _modules()
    inner = []
    for name, f in mods.items():
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner += [f"{name}:{node.lineno} imports {target}" for target, node in _imports(fn, mods)
                          if target not in LAZY]
    assert not inner, "project imports inside functions:\n" + "\n".join(sorted(set(inner)))
