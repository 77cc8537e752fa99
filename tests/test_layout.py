"""The package's layout rules, checked on the source with `ast` (nothing is imported).

* Two wings: the core (`labkit/` outside `labkit/course/`) never imports the course (`labkit.course`).
* `labkit.sampling` does not depend on `labkit.distributed` (both read `labkit.world`).
* `labkit.distributed` does not import a specific loss (a loss says what it needs: `runs_the_model`).
* No module imports another module's private (underscore) name: what is shared is promoted and public.
* No function in the core is longer than 80 lines (signature and code; docstrings do not count).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "labkit"
COURSE = PACKAGE / "course"
LONGEST_CORE_FUNCTION = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def core_modules() -> list[Path]:
    return [path for path in all_modules() if COURSE not in path.parents]


def imports_in(source: str, package: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import in `source`, function-level ones included;
    relative imports are resolved against `package` (the package the module lives in)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([module] if module else []))
            names = [alias.name for alias in node.names]
            found.append((node.lineno, module, names))
            # `from labkit import course` imports a module too
            found += [(node.lineno, f"{module}.{name}", []) for name in names]
    return found


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(), package)


def course_imports(imports) -> list[tuple[int, str]]:
    return [(line, module) for line, module, _ in imports
            if module == "labkit.course" or module.startswith("labkit.course.")]


def test_the_layout_has_two_wings():
    assert COURSE.is_dir() and (COURSE / "__init__.py").is_file()
    assert (COURSE / "exercises").is_dir()
    assert len(core_modules()) > 10 and len(all_modules()) > len(core_modules())


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: module_name(path))
def test_core_never_imports_the_course(path):
    offending = course_imports(imports_of(path))
    assert not offending, f"{module_name(path)} imports the course wing at {offending}: the core must not."


@pytest.mark.parametrize("source", [
    "from labkit.course.toy import gradient_step",
    "from labkit import course",
    "import labkit.course.exercises",
    "def f():\n    from .course import recipes",
])
def test_the_rule_finds_every_kind_of_course_import(source):
    assert course_imports(imports_in(source, "labkit")), source


def test_the_rule_lets_core_imports_pass():
    assert not course_imports(imports_in("from labkit import data\nfrom labkit.losses import BatchHardTripletLoss", "labkit"))


def test_sampling_does_not_depend_on_distributed():
    modules = {module for _, module, _ in imports_of(PACKAGE / "sampling.py")}
    assert not any(module.startswith("labkit.distributed") for module in modules), modules


def test_distributed_imports_no_specific_loss():
    modules = {module for _, module, _ in imports_of(PACKAGE / "distributed.py")}
    assert not any(module.startswith("labkit.losses") for module in modules), modules


@pytest.mark.parametrize("path", all_modules(), ids=lambda path: module_name(path))
def test_no_private_names_across_modules(path):
    private = [(line, module, name) for line, module, names in imports_of(path)
               if module.startswith("labkit") for name in names if name.startswith("_")]
    assert not private, f"{module_name(path)} imports private names {private}: make them public or keep them local."


def function_lengths(path: Path):
    """(name, first line, length) of every function; the length counts the signature and the code, not the
    docstring (a long docstring is welcome)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                length -= first.end_lineno - first.lineno + 1
            yield node.name, node.lineno, length


@pytest.mark.parametrize("path", core_modules(), ids=lambda path: module_name(path))
def test_no_core_function_is_too_long(path):
    too_long = [(name, line, length) for name, line, length in function_lengths(path)
                if length > LONGEST_CORE_FUNCTION]
    assert not too_long, (f"{module_name(path)}: functions over {LONGEST_CORE_FUNCTION} lines "
                          f"(name, first line, length): {too_long}; split them into named pieces.")
