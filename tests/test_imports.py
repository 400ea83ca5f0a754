"""Import structure of the package, read from the source with `ast` (nothing is imported).

Every ``import`` / ``from ... import`` counts, at module level and inside functions (a lazy import
that closes a loop is still a cycle): an edge from the importing module to the imported one. An import
that runs when its module is loaded (not inside a function) also runs the ``__init__`` of the packages
above the imported module, so it has an edge to each of those too (except the ones the importing
module is itself inside: they are already being imported when it runs); those are the chains that
fail with a partially initialised module.

Checked:

(a) no import cycle among the modules of ``gamma_ray_dist`` and ``actors``;
(b) the science packages never import, directly or through other modules of the project, ``ray``,
    ``actors`` or the distributed code;
(c) ``actors`` (the generic Ray layer) imports no science module of ``gamma_ray_dist``;

plus the runtime view of (b) and of the optional plotting dependency: importing the science
packages imports neither ray nor matplotlib.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gamma_ray_dist", "actors")

# Subpackages / modules of gamma_ray_dist that hold the science (no Ray). Names that do not exist
# (yet) are skipped, so the list can name packages that are being written.
SCIENCE = ("data", "irf", "maps", "makers", "reduction", "datasets", "modeling", "estimators", "simulate",
           "visualization", "stats", "errors")
# The distributed code: what science must not import.
DISTRIBUTED = ("gamma_ray_dist.distributed", "gamma_ray_dist.driver", "gamma_ray_dist.reducer_links", "actors")
FORBIDDEN_EXTERNAL = ("ray",)

# Cycles known today, each owned by work in progress elsewhere; an entry must match a cycle exactly
# and is reported as stale once that cycle is gone.
ALLOWED_CYCLES: tuple[frozenset[str], ...] = ()  # none: keep it that way
# (importing actors module, imported gamma_ray_dist module) pairs allowed for (c): none today.
ALLOWED_ACTORS_IMPORTS: frozenset[tuple[str, str]] = frozenset()


# ---- the graph -----------------------------------------------------------------------------------
@dataclass
class ImportGraph:
    """Modules of some packages under ``root`` and the imports between them.

    ``edges[m]`` maps each project module that ``m`` imports to the line of the first such import;
    ``external[m]`` holds the top-level names of the other packages ``m`` imports.
    """

    modules: dict[str, Path]
    edges: dict[str, dict[str, int]] = field(default_factory=dict)
    external: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_source(cls, root: Path, packages: tuple[str, ...]) -> "ImportGraph":
        """Parse every ``.py`` file of ``packages`` (directories under ``root``)."""
        modules: dict[str, Path] = {}
        for package in packages:
            for path in sorted((Path(root) / package).rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
        graph = cls(modules)
        for name, path in modules.items():
            graph.edges[name], graph.external[name] = {}, set()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node, at_load in _imports(tree):
                for target in graph._targets(name, node):
                    graph._add(name, target, node.lineno, at_load)
        return graph

    def _targets(self, name: str, node: ast.AST) -> list[str]:
        """Dotted names an import statement loads (module, or module.attribute for ``from``)."""
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if not isinstance(node, ast.ImportFrom):
            return []
        if node.level:
            base = name.split(".")
            if not self.modules[name].name == "__init__.py":
                base = base[:-1]  # a module's relative imports start from its package
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        # ``from pkg import sub`` loads the submodule pkg.sub when there is one
        return [f"{module}.{alias.name}" if f"{module}.{alias.name}" in self.modules else module
                for alias in node.names]

    def _add(self, name: str, target: str, line: int, at_load: bool) -> None:
        if target.split(".")[0] not in {m.split(".")[0] for m in self.modules}:
            self.external[name].add(target.split(".")[0])
            return
        while target and target not in self.modules:  # pkg.mod.attribute -> pkg.mod
            target = target.rpartition(".")[0]
        parts = target.split(".")
        # the target; at load time also every package above it that the importer is not inside
        for i in range(1 if at_load else len(parts), len(parts) + 1):
            module = ".".join(parts[:i])
            if module != name and not name.startswith(module + ".") and module in self.modules:
                self.edges[name].setdefault(module, line)

    def cycles(self) -> list[set[str]]:
        """Strongly connected components of more than one module (Tarjan, iterative)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        out: list[set[str]] = []
        for start in self.modules:
            if start in index:
                continue
            work = [(start, iter(sorted(self.edges[start])))]
            index[start] = low[start] = len(index)
            stack.append(start)
            on_stack.add(start)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is not None:
                    if child not in index:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(sorted(self.edges[child]))))
                    elif child in on_stack:
                        low[node] = min(low[node], index[child])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(component)
        return out

    def path(self, start: str, goal) -> list[str] | None:
        """Shortest import chain from ``start`` to a module for which ``goal(module)`` is true."""
        previous = {start: None}
        queue = [start]
        for node in queue:
            if goal(node):
                chain = []
                while node is not None:
                    chain.append(node)
                    node = previous[node]
                return chain[::-1]
            for child in sorted(self.edges[node]):
                if child not in previous:
                    previous[child] = node
                    queue.append(child)
        return None

    def describe(self, chain: list[str]) -> str:
        """``a (line 3) -> b (line 10) -> c``: each import with its line in the importing module."""
        steps = [f"{a} (line {self.edges[a][b]})" for a, b in zip(chain, chain[1:])]
        return " -> ".join(steps + [chain[-1]])


def _imports(tree: ast.AST, at_load: bool = True):
    """(import node, whether it runs when the module is loaded) for every import in ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, at_load
        inside = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _imports(node, at_load and not inside)


def _under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def science_modules(graph: ImportGraph) -> list[str]:
    prefixes = [f"gamma_ray_dist.{name}" for name in SCIENCE]
    return sorted(m for m in graph.modules if _under(m, prefixes))


def cycle_report(graph: ImportGraph, component: set[str]) -> str:
    """One loop through the component, with the import lines, for the failure message."""
    start = min(component)
    first = min(m for m in graph.edges[start] if m in component)
    back = graph.path(first, lambda m: m == start)
    return graph.describe([start] + back)


def unexpected_cycles(graph: ImportGraph) -> list[str]:
    return [cycle_report(graph, c) for c in graph.cycles() if frozenset(c) not in ALLOWED_CYCLES]


def distributed_imports(graph: ImportGraph) -> list[str]:
    """Chains from a science module to ray, actors or the distributed code."""
    def bad(module: str) -> bool:
        return _under(module, DISTRIBUTED) or bool(graph.external[module] & set(FORBIDDEN_EXTERNAL))

    problems = []
    for module in science_modules(graph):
        chain = graph.path(module, bad)
        if chain is not None:
            end = chain[-1]
            what = end if _under(end, DISTRIBUTED) else f"{end} imports {sorted(graph.external[end] & set(FORBIDDEN_EXTERNAL))}"
            problems.append(f"{graph.describe(chain)}  [{what}]")
    return problems


def actors_science_imports(graph: ImportGraph) -> list[str]:
    """Chains from an actors module to a science module, except the allowed direct imports."""
    science = set(science_modules(graph))
    problems = []
    for module in sorted(m for m in graph.modules if _under(m, ("actors",))):
        allowed = {target for source, target in ALLOWED_ACTORS_IMPORTS if source == module}
        for target in sorted(graph.edges[module]):
            if target in allowed or _under(target, ("actors",)):
                continue
            chain = graph.path(target, lambda m: m in science)
            if chain is not None:
                problems.append(graph.describe([module] + chain))
    return problems


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return ImportGraph.from_source(ROOT, PACKAGES)


# ---- the project ---------------------------------------------------------------------------------
def test_no_import_cycles(graph):
    problems = unexpected_cycles(graph)
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_allowed_cycles_still_exist(graph):
    """An allowed cycle that is gone (or changed) must leave ALLOWED_CYCLES."""
    found = {frozenset(c) for c in graph.cycles()}
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    assert not stale, f"remove from ALLOWED_CYCLES (no longer a cycle as listed): {stale}"


def test_science_does_not_import_distributed_code(graph):
    assert science_modules(graph), "no science module found: is ROOT right?"
    problems = distributed_imports(graph)
    assert not problems, "science modules importing distributed code:\n" + "\n".join(problems)


def test_actors_import_no_science(graph):
    problems = actors_science_imports(graph)
    assert not problems, "actors importing science modules:\n" + "\n".join(problems)
    stale = [pair for pair in ALLOWED_ACTORS_IMPORTS if pair[1] not in graph.edges.get(pair[0], {})]
    assert not stale, f"remove from ALLOWED_ACTORS_IMPORTS (import gone): {stale}"


def test_importing_science_loads_neither_ray_nor_matplotlib():
    """Runtime check in a fresh interpreter: plotting and Ray stay optional for the science code."""
    names = sorted({m.split(".")[1] for m in science_modules(ImportGraph.from_source(ROOT, PACKAGES))})
    code = ("import sys\n"
            + "".join(f"import gamma_ray_dist.{name}\n" for name in names)
            + "print(sorted(m for m in ('ray', 'actors', 'matplotlib') if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {names} loaded {out.stdout.strip()}"


# ---- the checker itself, on synthetic packages -----------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_function_level_cycle(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a  # lazy, still a loop\n    return a\n",
        "pkg/c.py": "from . import a\n",
    })
    graph = ImportGraph.from_source(tmp_path, ("pkg",))
    assert graph.cycles() == [{"pkg.a", "pkg.b"}]
    assert cycle_report(graph, {"pkg.a", "pkg.b"}) == "pkg.a (line 1) -> pkg.b (line 2) -> pkg.a"


def test_checker_counts_package_init_imports(tmp_path):
    """``other -> pkg.low`` runs pkg/__init__, which imports other: a cycle through the package."""
    _write(tmp_path, {
        "pkg/__init__.py": "from .high import thing\n",
        "pkg/high.py": "import other\n",
        "pkg/low.py": "x = 1\n",
        "other/__init__.py": "from pkg.low import x\n",
    })
    graph = ImportGraph.from_source(tmp_path, ("pkg", "other"))
    assert graph.cycles() == [{"pkg", "pkg.high", "other"}]
    # inside a function the import runs once everything is loaded: only the module's own edge
    _write(tmp_path, {"other/__init__.py": "def f():\n    from pkg.low import x\n"})
    assert ImportGraph.from_source(tmp_path, ("pkg", "other")).cycles() == []


def test_checker_finds_science_importing_ray(tmp_path):
    _write(tmp_path, {
        "gamma_ray_dist/__init__.py": "",
        "gamma_ray_dist/maps/__init__.py": "from .core import x\n",
        "gamma_ray_dist/maps/core.py": "from ..helpers import y\nx = y\n",
        "gamma_ray_dist/helpers.py": "def y():\n    import ray\n",
        "actors/__init__.py": "from gamma_ray_dist.helpers import y\n",
    })
    graph = ImportGraph.from_source(tmp_path, PACKAGES)
    problems = distributed_imports(graph)
    assert any(p.startswith("gamma_ray_dist.maps.core (line 1) -> gamma_ray_dist.helpers") for p in problems)
    assert actors_science_imports(graph) == []  # helpers is not science
    _write(tmp_path, {"actors/__init__.py": "from gamma_ray_dist.maps import x\n"})
    graph = ImportGraph.from_source(tmp_path, PACKAGES)
    assert actors_science_imports(graph) == ["actors (line 1) -> gamma_ray_dist.maps"]
