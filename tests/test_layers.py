"""The layer rule, read from the source: `octotrace` (the SDK) <- `tracer` <- `reports` <- `dashboard`,
with `demo` and `config` on top (an arrow: may be imported by).

Three checks over every .py file of our packages, migrations included (tests/ is not subject):
- a module imports only its own layer or lower; `examples` import only the SDK (and its fakes,
  `octotrace_testing`, which the server never imports), and only `demo`
  imports them; nothing imports `config` or `demo` (settings name apps by string); the SDK imports
  none of ours;
- no first-party import inside a function: a cycle is broken by moving the shared piece down, not
  hidden by a late import (optional third-party packages, e.g. `pynvml` or `openai`, may be late);
- no private name across modules: `from x import _name`, or `module._name` on an imported module.
  A package's private submodules (`octotrace._spans`) are private to that package.

The checker is plain `ast` so that the rule needs no tool, and `test_the_checker_*` prove it can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Top-level package -> its folder under the repository root. A package that does not exist (yet) is skipped.
PACKAGES = {
    "octotrace": "sdk/octotrace",
    # The SDK's fakes (a mock NIM, a fake pynvml): a development-only distribution (sdk/testing/).
    "octotrace_testing": "sdk/testing/octotrace_testing",
    "tracer": "tracer",
    "reports": "reports",
    "dashboard": "dashboard",
    "demo": "demo",
    "config": "config",
    "examples": "examples",
}
# What each package may import (itself included).
ALLOWED = {
    "octotrace": {"octotrace"},
    # Only the demo and the examples may run on the fakes: the server never ships them.
    "octotrace_testing": {"octotrace", "octotrace_testing"},
    "tracer": {"octotrace", "tracer"},
    "reports": {"octotrace", "tracer", "reports"},
    "dashboard": {"octotrace", "tracer", "reports", "dashboard"},
    # The demo runs the example crew: the only package besides the examples that may import them.
    "demo": {"octotrace", "octotrace_testing", "tracer", "reports", "dashboard", "demo", "examples"},
    "config": {"octotrace", "tracer", "reports", "dashboard", "config"},
    "examples": {"octotrace", "octotrace_testing", "examples"},
}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class SourceFile:
    path: Path  # relative to the root, for messages
    module: str  # dotted name, e.g. "tracer.gpu.attribution"
    is_package: bool  # an __init__.py


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources(root: Path) -> Iterator[SourceFile]:
    for package, folder in PACKAGES.items():
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            yield SourceFile(path.relative_to(root), ".".join([package, *parts]), is_package)


def _resolve(source: SourceFile, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    parts = source.module.split(".")
    # From a package's __init__, `.` is the package itself; from a module, its parent.
    keep = len(parts) - node.level + (1 if source.is_package else 0)
    base = parts[:keep]
    return ".".join([*base, node.module] if node.module else base)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, FUNCTIONS):
            return True
    return False


def layer_violations(root: Path) -> list[str]:
    """Every violation under `root`, as "path:line: what", sorted."""
    sources = list(_sources(root))
    modules = {source.module for source in sources}
    problems: list[str] = []
    for source in sources:
        tree = ast.parse((root / source.path).read_text(encoding="utf-8"), filename=str(source.path))
        parents = _parents(tree)
        own = source.module.split(".")[0]
        bound: dict[str, str] = {}  # local name -> first-party module it is bound to

        def report(node: ast.AST, what: str, source: SourceFile = source) -> None:
            problems.append(f"{source.path}:{node.lineno}: {what}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(alias.name, alias) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(source, node)
                targets = [(base, None)]
            elif (target := _dynamic_import(node)) is not None:
                targets = [(target, None)]
            else:
                continue
            for target, alias in targets:
                top, *rest = target.split(".")
                if top not in PACKAGES:
                    continue  # the standard library or a third-party package
                if top not in ALLOWED[own]:
                    report(node, f"{own} may not import {target} (layer rule)")
                if _in_function(node, parents):
                    report(node, f"import of {target} inside a function")
                if top != own and any(_private(part) for part in rest):
                    report(node, f"private module {target} used outside its package")
                if alias is not None:  # `import a.b` binds a; `import a.b as c` binds c to a.b
                    bound[alias.asname or top] = target if alias.asname else top
            if isinstance(node, ast.ImportFrom) and base.split(".")[0] in PACKAGES:
                for alias in node.names:
                    name = f"{base}.{alias.name}"
                    if name in modules:  # a submodule
                        bound[alias.asname or alias.name] = name
                        if _private(alias.name) and base.split(".")[0] != own:
                            report(node, f"private module {name} used outside its package")
                    elif _private(alias.name):
                        report(node, f"private name {alias.name} imported from {base}")

        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            module = _module_of(node.value, bound, modules)
            if module is not None and module != source.module:
                report(node, f"private name {module}.{node.attr} used")
    return sorted(set(problems))


def _dynamic_import(node: ast.AST) -> str | None:
    """The module named by `importlib.import_module("x")` or `__import__("x")`, a literal only."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def _module_of(node: ast.expr, bound: dict[str, str], modules: set[str]) -> str | None:
    """The first-party module an expression like `a.b` denotes, or None when it is not one."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        parent = _module_of(node.value, bound, modules)
        if parent is not None and f"{parent}.{node.attr}" in modules:
            return f"{parent}.{node.attr}"
    return None


# -- the rule on this repository --------------------------------------------------------------------


def test_the_code_follows_the_layer_rule() -> None:
    problems = layer_violations(ROOT)
    assert not problems, "layer rule violations:\n" + "\n".join(problems)


def test_it_checks_the_packages_that_exist() -> None:
    # A checker that finds no files passes vacuously: make sure it reads the real tree.
    found = {source.module.split(".")[0] for source in _sources(ROOT)}
    assert {"octotrace", "tracer", "dashboard", "config", "examples"} <= found


# -- the checker on trees made to fail ---------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


CLEAN = {
    "sdk/octotrace/__init__.py": "from octotrace._spans import workflow\n",
    "sdk/octotrace/_spans.py": "import json\n\ndef workflow():\n    import openai  # optional, third party\n",
    "sdk/octotrace/gpu.py": "from octotrace import _spans\n\nX = _spans.workflow\n",
    "tracer/__init__.py": "",
    "tracer/rollup.py": "def lock_key(trace_id):\n    return trace_id\n\n_KEYS = {}\n",
    "tracer/ingest.py": "from __future__ import annotations\n\nfrom tracer import rollup\nfrom . import rollup as r\n"
    "from octotrace import workflow\n\nKEY = rollup.lock_key\nOTHER = r.lock_key\nMETA = rollup.Span._meta\n",
    "tracer/migrations/__init__.py": "",
    "tracer/migrations/0001_initial.py": "from django.db import migrations\n",
    "dashboard/__init__.py": "",
    "dashboard/views.py": "import tracer.ingest\nfrom tracer.ingest import KEY\n",
    "config/settings.py": "INSTALLED_APPS = ['tracer', 'dashboard', 'demo']\n",
    "config/urls.py": "from dashboard import views\n",
    "examples/__init__.py": "",
    "examples/crew/main.py": "import octotrace\n",
    "demo/__init__.py": "",
    "demo/run.py": "from examples.crew import main\nfrom tracer import ingest\n",
}


def test_the_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    # No reports/ package: an absent package is skipped.
    assert layer_violations(_tree(tmp_path, CLEAN)) == []


def test_the_checker_reports_an_upward_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        CLEAN
        | {
            "tracer/views.py": "from dashboard.views import KEY\n",
            "reports/__init__.py": "",
            "reports/alerts.py": "import dashboard\n",
            "sdk/octotrace/server.py": "from tracer import rollup\n",
            "examples/crew/tools.py": "from tracer.ingest import KEY\n",
            "dashboard/boot.py": "from config.settings import INSTALLED_APPS\n",
            "demo/boot.py": "import config.settings\n",
            "tracer/seed.py": "import importlib\n\nfrom demo import data\n\n"
            "APP = importlib.import_module('demo.apps')\n",
            "tracer/migrations/0002_data.py": "from ..rollup import lock_key\nfrom ...dashboard import views\n",
        },
    )
    assert layer_violations(root) == [
        "dashboard/boot.py:1: dashboard may not import config.settings (layer rule)",
        "demo/boot.py:1: demo may not import config.settings (layer rule)",
        "examples/crew/tools.py:1: examples may not import tracer.ingest (layer rule)",
        "reports/alerts.py:1: reports may not import dashboard (layer rule)",
        "sdk/octotrace/server.py:1: octotrace may not import tracer (layer rule)",
        "tracer/migrations/0002_data.py:2: tracer may not import dashboard (layer rule)",
        "tracer/seed.py:3: tracer may not import demo (layer rule)",
        "tracer/seed.py:5: tracer may not import demo.apps (layer rule)",
        "tracer/views.py:1: tracer may not import dashboard.views (layer rule)",
    ]


def test_the_checker_reports_an_import_inside_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        CLEAN
        | {
            "tracer/pricing.py": "def reprice():\n    from tracer.ingest import KEY\n    return KEY\n",
            "sdk/octotrace/cli.py": "class Cli:\n    async def run(self):\n        from . import gpu\n",
            "dashboard/tasks.py": "import importlib\n\ncheck = lambda: __import__('json')\n\ndef late():\n"
            "    import tracer.rollup\n    return importlib.import_module('tracer.ingest')\n",
        },
    )
    assert layer_violations(root) == [
        "dashboard/tasks.py:6: import of tracer.rollup inside a function",
        "dashboard/tasks.py:7: import of tracer.ingest inside a function",
        "sdk/octotrace/cli.py:3: import of octotrace inside a function",
        "tracer/pricing.py:2: import of tracer.ingest inside a function",
    ]


def test_the_checker_reports_a_private_name_across_modules(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        CLEAN
        | {
            "tracer/gpu.py": "from tracer import ingest, rollup\nfrom tracer.rollup import _KEYS\n\n"
            "def f():\n    return ingest.KEY, rollup._KEYS\n",
            "dashboard/views.py": "import tracer.rollup\nimport tracer.rollup as tr\n\n"
            "A = tracer.rollup._KEYS\nB = tr._KEYS\nC = tracer.rollup.__name__\n",
            "tracer/prices.py": "from octotrace import _spans\nimport octotrace._spans\n"
            "from octotrace._spans import workflow\n",
        },
    )
    assert layer_violations(root) == [
        "dashboard/views.py:4: private name tracer.rollup._KEYS used",
        "dashboard/views.py:5: private name tracer.rollup._KEYS used",
        "tracer/gpu.py:2: private name _KEYS imported from tracer.rollup",
        "tracer/gpu.py:5: private name tracer.rollup._KEYS used",
        "tracer/prices.py:1: private module octotrace._spans used outside its package",
        "tracer/prices.py:2: private module octotrace._spans used outside its package",
        "tracer/prices.py:3: private module octotrace._spans used outside its package",
    ]
