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
import os
import re
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
    assert toolkit_violation(Imported("f", 1, "", "dim.load_features"), "retrieval", SHARED, ("infogan",))
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


# --- shipped text speaks of the product, never of the machines it is built on ------------------------------------------
#
# What ships: the packages (code, docstrings, help texts, static web files), the docs, the examples, the benchmarks
# (scripts and RESULTS.md) and the top-level files below. A user has none of the build machines' paths, sessions,
# issue numbers or borrowed devices: a data root is `--data-dir DATA` or `$DIM_DATA_DIR`. tests/ does not ship and is
# not scanned (so the planted strings below do not flag this file).

SHIPPED_ROOTS = ("dim", "infogan", "retrieval", "docs", "examples", "benchmarks",
                 "README.md", "CHANGELOG.md", "pyproject.toml", "mkdocs.yml")
TEXT_SUFFIXES = (".py", ".md", ".html", ".js", ".css", ".toml", ".yml", ".yaml", ".txt", ".cfg")
UNSHIPPED_DIRS = (".venv", "venv", "build", "dist", "site", "node_modules", "__pycache__", ".git")

# Case-insensitive; each names a fact of the build machines, not of the product.
MACHINE_FACTS = tuple(re.compile(pattern, re.IGNORECASE) for pattern in (
    r"shared[\"']?\s*/\s*[\"']?datasets",  # the build machines' data folder, as a path or as Path(...) / "..." parts
    r"\.\./shared\b",
    r"/work/",
    r"/tmp/team\b",
    r"\.git/info/exclude",
    r"\b64 MiB\b",  # what one call to the lent machine carries
    r"\blent\b",
    r"\bdevice calls?\b",
    r"\bdevice machine\b",
    r"\bgive_back\b",
    r"\bsessions? #?\d+",
    r"\b(?:issue|PR|pull request)s? #?\d+\b",
    # A bare issue reference: `(#13)`, `see #13.`; not a CSS colour (`color: #222;`, `'#333'`) nor an anchor (`#3-usage`).
    r"(?<![\w/&'\"#:])(?<!:\s)#\d{1,4}(?=[\s).,:]|$)",
    r"\bbackground notes\b",
))


def shipped_text_files(root: Path = ROOT) -> list[Path]:
    """The text files that ship under ``root``; linked folders are not followed (``docs/benchmarks`` is ``benchmarks``)."""
    found = []
    for name in SHIPPED_ROOTS:
        top = root / name
        candidates = [top] if top.is_file() else []
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in UNSHIPPED_DIRS and not d.endswith(".egg-info")]
            candidates += [Path(folder) / file for file in files]
        found += [path for path in candidates if path.suffix in TEXT_SUFFIXES]
    return sorted(found)


def machine_facts_in(path: Path, root: Path = ROOT) -> list[str]:
    """Each line of ``path`` that names a fact of the build machines, as ``file:line: text``; a binary file has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    if "\0" in text:
        return []
    file = path.relative_to(root).as_posix()
    return [f"{file}:{number}: {line.strip()}" for number, line in enumerate(text.splitlines(), 1)
            if any(pattern.search(line) for pattern in MACHINE_FACTS)]


@functools.cache
def scanned_files() -> tuple[str, ...]:
    return tuple(path.relative_to(ROOT).as_posix() for path in shipped_text_files())


def test_the_machine_fact_checker_flags_planted_strings_and_passes_clean_text(tmp_path):
    planted = [
        "python benchmarks/dim_cifar10.py --data-dir ../shared/datasets",
        'DEFAULT_DATA_DIR = Path(__file__).parents[2] / "shared" / "datasets"',
        "measured on one lent NVIDIA H200 in two device calls",
        "A call carries at most 64 MiB; .data/ is ignored through .git/info/exclude.",
        "Seed 0 is from Session 3.",
        "fixed in issue #13 (see #16).",
        "as the background notes say, under /work/shared",
    ]
    clean = [
        "python benchmarks/dim_cifar10.py --data-dir DATA   # or $DIM_DATA_DIR",
        "body { color: #222; background: #f6f6f4; border: 1px solid #546e7a; }",
        "see [presets](#presets) and [step 3](#3-usage); el.style.color = '#333';",
        "x = 1  # 2 workers; the shared MI module; a resumed run's earlier sessions",
        "measured on one H200 (the GPU it ran on); time counts this session only",
    ]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("\n".join(["# Title", *planted]) + "\n")
    (tmp_path / "dim" / "static").mkdir(parents=True)
    (tmp_path / "dim" / "clean.py").write_text("\n".join(clean) + "\n")
    (tmp_path / "dim" / "static" / "app.css").write_text(clean[1] + "\n")
    (tmp_path / "dim" / "static" / "picture.png").write_bytes(b"\x89PNG\0../shared/datasets")  # not a text suffix
    (tmp_path / "dim" / "blob.txt").write_bytes(b"\0\xff../shared/datasets")  # binary: skipped
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "x.py").write_text(planted[0])  # not under a shipped root
    (tmp_path / "dim" / "build").mkdir()
    (tmp_path / "dim" / "build" / "x.py").write_text(planted[0])  # a build folder
    (tmp_path / "README.md").write_text("Data: `--data-dir DATA`.\n")

    files = shipped_text_files(tmp_path)
    assert [path.relative_to(tmp_path).as_posix() for path in files] == [
        "README.md", "dim/blob.txt", "dim/clean.py", "dim/static/app.css", "docs/notes.md"]
    hits = [hit for path in files for hit in machine_facts_in(path, tmp_path)]
    assert hits == [f"docs/notes.md:{number}: {text}" for number, text in enumerate(planted, 2)]


@pytest.mark.parametrize(
    ("root", "expected", "at_least"),
    [
        ("dim", {"dim/cli.py", "dim/config.py", "dim/mi/bounds/base.py"}, 20),
        ("infogan", {"infogan/cli.py", "infogan/__init__.py", "infogan/train.py"}, 8),
        ("retrieval", {"retrieval/cli.py", "retrieval/static/app.css", "retrieval/static/app.js",
                       "retrieval/static/index.html"}, 8),
        ("docs", {"docs/gpu.md", "docs/guide/dim.md", "docs/reference/mi.md"}, 10),
        ("examples", {"examples/infogan_mnist.py", "examples/dim_quickstart.py"}, 2),
        ("benchmarks", {"benchmarks/RESULTS.md", "benchmarks/gpu_check.py", "benchmarks/dim_cifar10.py"}, 10),
        ("README.md", {"README.md"}, 1),
        ("CHANGELOG.md", {"CHANGELOG.md"}, 1),
        ("pyproject.toml", {"pyproject.toml"}, 1),
        ("mkdocs.yml", {"mkdocs.yml"}, 1),
    ],
)
def test_every_shipped_root_is_scanned(root, expected, at_least):
    """Guard against the rule passing because it read nothing."""
    under = {file for file in scanned_files() if file == root or file.startswith(root + "/")}
    assert expected <= under
    assert len(under) >= at_least


def test_shipped_text_names_no_fact_of_the_build_machines():
    hits = [hit for file in scanned_files() for hit in machine_facts_in(ROOT / file)]
    assert not hits, (f"{len(hits)} shipped line(s) speak of the machines the project is built on (a user's data "
                      "root is `--data-dir DATA` or `$DIM_DATA_DIR`):\n" + "\n".join(f"  {hit}" for hit in hits))


# --- one product contract: the same modules and public names in dim and infogan ----------------------------------------

PRODUCTS = ("dim", "infogan")
# module -> the public names every product defines there (docs/index.md, "Where things go").
CONTRACT = {
    "config": ("TrainConfig", "PRESETS", "RESUMABLE"),
    "models": ("build_model",),
    "train": ("Trainer", "train"),
    "checkpoint": ("KINDS", "load_run", "load_features"),
    "evaluate": ("evaluate",),
    "cli": ("main",),
}
TRAINER_METHODS = ("run", "close", "save_checkpoint", "load_state_dict")


@pytest.mark.parametrize("product", PRODUCTS)
def test_both_products_have_the_same_modules_and_public_names(product):
    import importlib
    import inspect

    for module_name, names in CONTRACT.items():
        module = importlib.import_module(f"{product}.{module_name}")
        missing = [name for name in names if not hasattr(module, name)]
        assert not missing, f"{product}.{module_name} lacks {missing}"
    config_class = importlib.import_module(f"{product}.config").TrainConfig
    assert "__post_init__" not in vars(config_class), f"{product}'s TrainConfig checks in resolved(), not on creation"
    assert callable(config_class.resolved)
    trainer = importlib.import_module(f"{product}.train").Trainer
    assert [name for name in TRAINER_METHODS if not callable(getattr(trainer, name, None))] == []
    assert list(inspect.signature(trainer).parameters) == ["config", "resume", "progress"]
    kinds = importlib.import_module(f"{product}.checkpoint").KINDS
    assert isinstance(kinds, tuple) and kinds and all(isinstance(kind, str) for kind in kinds)
    evaluate = importlib.import_module(f"{product}.evaluate").evaluate
    assert list(inspect.signature(evaluate).parameters)[:3] == ["run", "data_dir", "split"]


def string_constants(package: str) -> list[tuple[str, int, str, ast.AST]]:
    """``(file, line, value, parent node)`` of every string literal in the package's code (docstrings excluded)."""
    found = []
    for path in package_files(package):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                if (isinstance(child, ast.Constant) and isinstance(child.value, str)
                        and id(child) not in docstrings):
                    found.append((path.relative_to(ROOT).as_posix(), child.lineno, child.value, parent))
    return found


def test_checkpoint_kinds_are_defined_once_and_never_compared_as_literals():
    from dim.checkpoint import KINDS as DIM_KINDS
    from infogan.checkpoint import KINDS as INFOGAN_KINDS

    kinds = set(DIM_KINDS) | set(INFOGAN_KINDS)
    compared = [f"{file}:{line}: {value!r}" for package in ("dim", "infogan", "retrieval")
                for file, line, value, parent in string_constants(package)
                if value in kinds and isinstance(parent, ast.Compare)]
    assert not compared, "compare against KINDS (or the run's objective), not a literal:\n" + "\n".join(compared)


def test_the_negatives_vocabulary_and_the_knn_protocol_are_defined_once():
    from dim.mi import NEGATIVES as MI_NEGATIVES
    from dim.objective import NEGATIVES

    assert tuple(NEGATIVES) == tuple(MI_NEGATIVES)
    vocabularies = [f"{file}:{line}" for package in ("dim", "infogan", "retrieval")
                    for file, line, value, parent in string_constants(package)
                    if value in MI_NEGATIVES and isinstance(parent, (ast.Tuple, ast.List, ast.Set, ast.Dict))
                    and sum(isinstance(e, ast.Constant) and e.value in MI_NEGATIVES
                            for e in getattr(parent, "elts", getattr(parent, "keys", []))) >= 2]
    assert vocabularies == [] or all(place.startswith("dim/mi/") for place in vocabularies), (
        f"the negatives are listed again outside dim.mi.NEGATIVES: {vocabularies}")
    literal_defaults = []
    for package in ("dim", "infogan", "retrieval"):
        for path in package_files(package):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    arguments = node.args.args[len(node.args.args) - len(node.args.defaults):] + node.args.kwonlyargs
                    defaults = node.args.defaults + node.args.kw_defaults
                    literal_defaults += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {argument.arg}={default.value}"
                        for argument, default in zip(arguments, defaults)
                        if isinstance(default, ast.Constant) and default.value in (200, 0.1)
                        and argument.arg in ("k", "temperature", "knn_k", "knn_temperature")
                    ]
    assert not literal_defaults, f"use dim.core.probes.KNN_K / KNN_TEMPERATURE: {literal_defaults}"


def test_shared_cli_pieces_live_once_in_the_core():
    shared = {"user_errors", "_user_errors", "preset_hint", "config_defaults", "run_argument", "device_option",
              "data_dir_option", "threads_option"}
    copies = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
              for package in ("dim", "infogan", "retrieval") for path in package_files(package)
              if path.relative_to(ROOT).as_posix() != "dim/core/cli.py"
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.FunctionDef) and node.name in shared]
    assert not copies, f"defined again outside dim/core/cli.py: {copies}"


def test_every_command_names_a_trained_run_RUN():
    import click

    from dim.cli import main as dim_main
    from infogan.cli import main as infogan_main
    from retrieval.cli import main as search_main

    runs, others = [], []
    for prefix, group in (("dim", dim_main), ("infogan", infogan_main), ("dim-search", search_main)):
        for name, command in group.commands.items():
            for parameter in command.params:
                if isinstance(parameter, click.Option) and parameter.metavar == "RUN":  # an optional trained run
                    (runs if parameter.opts == ["--model"] and parameter.name == "run" else others).append(
                        f"{prefix} {name} {'/'.join(parameter.opts)}")
                if not isinstance(parameter, click.Argument):
                    continue
                if parameter.name in ("run", "checkpoint", "run_dir", "model"):
                    (runs if parameter.metavar == "RUN" and parameter.name == "run" else others).append(
                        f"{prefix} {name} {parameter.name}")
    assert not others, f"a trained run is the argument `run` or the option --model, shown as RUN: {others}"
    assert {"dim eval run", "dim embed run", "infogan eval run", "infogan sample run",
            "dim-search build --model"} <= set(runs)
