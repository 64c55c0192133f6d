"""The import rules of the layout (see ``dim/__init__.py``), read from the source so a change that breaks one fails.

* ``dim.mi`` imports only itself, the standard library and torch;
* ``dim.core`` imports only ``dim.mi`` and itself from the toolkit (``dim`` only for ``__version__``);
* ``infogan`` and ``retrieval`` import only ``dim.mi``, ``dim.core`` and ``dim.__version__`` of ``dim``,
  and not each other.

Every ``import`` and ``from`` statement counts, at any depth (inside functions too), and so do
``importlib.import_module("...")`` / ``__import__("...")`` calls with a literal name.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Names a product may take from the ``dim`` distribution: the shared layers and the version string.
SHARED = ("dim.mi", "dim.core")
DIM_PRODUCT_MODULES = ("dim.train", "dim.objective", "dim.models", "dim.evaluate", "dim.config",
                       "dim.checkpoint", "dim.embed", "dim.cli", "dim.augment")


@dataclass(frozen=True)
class Imported:
    """One imported name: ``dim.core.images.image_to_uint8`` for ``from dim.core.images import image_to_uint8``."""

    file: str  # relative to the repository root
    line: int
    statement: str  # the source of the statement
    name: str  # the absolute dotted name it imports

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.statement}` imports {self.name}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of_source(source: str, module: str, is_package: bool, file: str) -> list[Imported]:
    """Every name imported by ``source`` (the module ``module``), relative imports made absolute."""
    tree = ast.parse(source, filename=file)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            continue
        statement = " ".join(" ".join(lines[node.lineno - 1 : node.end_lineno]).split())
        if isinstance(node, ast.Import):
            found += [Imported(file, node.lineno, statement, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin == "__future__":
                continue
            for alias in node.names:
                name = origin if alias.name == "*" else f"{origin}.{alias.name}"
                found.append(Imported(file, node.lineno, statement, name))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append(Imported(file, node.lineno, statement, node.args[0].value))
    return found


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def importable_modules(package: str) -> list[str]:
    """The package's modules, less ``__main__`` (importing it runs the command)."""
    return [module_name(path) for path in package_files(package) if path.name != "__main__.py"]


@functools.cache
def package_imports(package: str) -> list[Imported]:
    found = []
    for path in package_files(package):
        file = path.relative_to(ROOT).as_posix()
        found += imports_of_source(path.read_text(), module_name(path), path.name == "__init__.py", file)
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def toolkit_violation(item: Imported, own: str, also_allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> bool:
    """True when ``item`` takes from the toolkit (``dim``, ``infogan``, ``retrieval``) what ``own`` may not."""
    name = item.name
    if within(name, own) or within(name, *also_allowed) or name == "dim.__version__":
        return False
    return within(name, "dim", *forbidden)


def report(violations: list[Imported], rule: str) -> str:
    return f"{rule}; {len(violations)} offending import(s):\n" + "\n".join(f"  {v}" for v in violations)


# --- the checker itself: it must see imports where the rules need it to ------------------------------------------------

def test_the_checker_sees_nested_relative_and_dynamic_imports():
    source = (
        "import os\n"
        "from . import sibling\n"
        "from ..core import images\n"
        "def load():\n"
        "    from dim.models import Encoder\n"
        "    import infogan.models\n"
        "    class Inner:\n"
        "        def method(self):\n"
        "            return importlib.import_module('dim.train')\n"
        "try:\n"
        "    import retrieval\n"
        "except ImportError:\n"
        "    pass\n"
    )
    found = sorted(imports_of_source(source, "dim.mi.critics", False, "dim/mi/critics.py"), key=lambda i: i.line)
    assert [(i.line, i.name) for i in found] == [
        (1, "os"), (2, "dim.mi.sibling"), (3, "dim.core.images"), (5, "dim.models.Encoder"),
        (6, "infogan.models"), (9, "dim.train"), (11, "retrieval"),
    ]
    assert str(found[0]).startswith("dim/mi/critics.py:")
    # The relative import of a package's __init__ resolves against the package itself.
    assert imports_of_source("from .bounds import base\n", "dim.mi", True, "x")[0].name == "dim.mi.bounds.base"
    bad = [i for i in found if toolkit_violation(i, "infogan", SHARED, ("retrieval",))]
    assert [i.name for i in bad] == ["dim.models.Encoder", "dim.train", "retrieval"]
    assert not toolkit_violation(Imported("f", 1, "", "dim.__version__"), "infogan", SHARED, ("retrieval",))
    assert toolkit_violation(Imported("f", 1, "", "dim.load_encoder"), "retrieval", SHARED, ("infogan",))
    assert toolkit_violation(Imported("f", 1, "", "dim"), "retrieval", SHARED, ("infogan",))  # bare `import dim`


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("dim.mi", {"dim/mi/__init__.py", "dim/mi/bounds/base.py", "dim/mi/gather.py"}),
        ("dim.core", {"dim/core/features.py", "dim/core/probes.py", "dim/core/distributed.py"}),
        ("infogan", {"infogan/train.py", "infogan/evaluate.py", "infogan/checkpoint.py"}),
        ("retrieval", {"retrieval/models.py", "retrieval/index.py", "retrieval/grid.py"}),
    ],
)
def test_every_package_is_read(package, expected):
    """Guard against a rule passing because it read nothing."""
    files = {path.relative_to(ROOT).as_posix() for path in package_files(package)}
    assert expected <= files
    assert len(package_imports(package)) >= len(files)


# --- the rules ---------------------------------------------------------------------------------------------------------

def test_mi_imports_only_itself_torch_and_the_standard_library():
    violations = [
        item for item in package_imports("dim.mi")
        if not (within(item.name, "dim.mi", "torch") or item.name == "dim.__version__"
                or item.name.split(".")[0] in sys.stdlib_module_names)
    ]
    assert not violations, report(violations, "dim.mi may import only dim.mi, torch and the standard library")


def test_core_imports_no_product():
    violations = [item for item in package_imports("dim.core")
                  if toolkit_violation(item, "dim.core", ("dim.mi",), ("infogan", "retrieval"))]
    assert not violations, report(
        violations, "dim.core may import only dim.core, dim.mi and dim.__version__ from the toolkit")


def test_infogan_imports_only_the_shared_layers_of_dim():
    imports = package_imports("infogan")
    violations = [item for item in imports if toolkit_violation(item, "infogan", SHARED, ("retrieval",))]
    assert not violations, report(
        violations, "infogan may import only dim.mi, dim.core.* and dim.__version__ of dim, and never retrieval")
    assert not [item for item in imports if within(item.name, *DIM_PRODUCT_MODULES)]  # implied; named for the reader


def test_retrieval_imports_neither_infogan_nor_dims_own_modules():
    imports = package_imports("retrieval")
    violations = [item for item in imports if toolkit_violation(item, "retrieval", SHARED, ("infogan",))]
    assert not violations, report(
        violations, "retrieval may import only dim.mi, dim.core.* and dim.__version__ of dim, and never infogan")
    assert not [item for item in imports if within(item.name, *DIM_PRODUCT_MODULES)]


# --- what an import actually loads -------------------------------------------------------------------------------------

def loaded_after(statement: str) -> list[str]:
    """``sys.modules`` of a fresh interpreter after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_mi_loads_no_other_part_of_the_toolkit_and_no_torchvision():
    loaded = loaded_after("import dim.mi")
    assert "dim.mi" in loaded and "dim.mi.bounds.base" in loaded  # the import happened
    others = [name for name in loaded if within(name, "dim", "infogan", "retrieval", "torchvision")
              and name != "dim" and not within(name, "dim.mi")]
    assert not others, f"`import dim.mi` also loads {others}"


def test_importing_core_loads_no_product():
    modules = importable_modules("dim.core")
    loaded = loaded_after("\n".join(f"import {module}" for module in modules))
    assert set(modules) <= set(loaded)
    products = [name for name in loaded if within(name, "dim", "infogan", "retrieval")
                and name != "dim" and not within(name, *SHARED)]
    assert not products, f"importing dim.core's modules also loads {products}"


@pytest.mark.parametrize(("package", "forbidden"), [("infogan", "retrieval"), ("retrieval", "infogan")])
def test_importing_a_product_loads_neither_dims_own_modules_nor_the_other_product(package, forbidden):
    modules = importable_modules(package)
    loaded = loaded_after("\n".join(f"import {module}" for module in modules))
    assert set(modules) <= set(loaded)
    wrong = [name for name in loaded
             if within(name, forbidden) or (within(name, "dim") and name != "dim" and not within(name, *SHARED))]
    assert not wrong, f"importing {package}'s modules also loads {wrong}"
