"""Build: one source per notebook -> instructor (nbgrader source) and student notebooks.

``autograder/sources/<assignment>.py`` (jupytext percent format) is the only text a
notebook has. Its cells carry a ``role``: ``readonly`` (locked), ``solution`` (the
TODO), ``tests`` (a graded cell, with ``grade_id`` and ``points``) or ``answer`` (a
markdown answer graded by hand, its model answer and rubric inside BEGIN/END
SOLUTION). A line ``# <<solution module:function>>`` inside a solution cell is replaced
by that function's body from ``solutions/`` (with the module's helpers), wrapped in
BEGIN/END SOLUTION: the reference is never pasted twice.

The instructor notebook goes to ``<course>/source/<a>/<a>.ipynb``; nbgrader's
``generate_assignment`` turns it into ``<course>/release/<a>/<a>.ipynb``, which is
copied to ``notebooks/<a>.ipynb`` (committed; Colab opens it from the repository).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import shutil
import textwrap
from pathlib import Path

import jupytext
import nbformat

from autograder.config import COURSE_TOML, REPO, SOURCES, course_settings

SOLUTION_MARKER = re.compile(r"^(?P<indent>[ \t]*)# <<solution (?P<module>[\w.]+):(?P<name>\w+)>>[ \t]*$", re.M)
ROLES = ("readonly", "solution", "tests", "answer")


def assignments() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("[0-9][0-9]_*.py"))


def reference_code(module_name: str, function: str) -> str:
    """The module's helpers (everything but its docstring, __future__ import and
    ``function``) followed by ``function``'s body without its docstring, dedented."""
    module = importlib.import_module(module_name)
    lines = inspect.getsource(module).splitlines()
    tree = ast.parse("\n".join(lines))
    target = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    if target is None:
        raise ValueError(f"{module_name} has no top-level function {function!r}")
    helpers = []
    for node in tree.body:
        if node is target or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            continue
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) \
                and isinstance(node.value.value, str):
            continue  # the module docstring
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        helpers.append("\n".join(lines[start - 1:node.end_lineno]))
    body = target.body[1:] if ast.get_docstring(target) is not None else target.body
    body_text = textwrap.dedent("\n".join(lines[body[0].lineno - 1:target.end_lineno]))
    return f"# the reference: {module_name}\n" + "\n\n".join(helpers) + "\n\n" + body_text


def _expand_solutions(source: str) -> str:
    def replace(match: re.Match) -> str:
        indent = match.group("indent")
        code = reference_code(match.group("module"), match.group("name"))
        inner = textwrap.indent(code, indent, lambda line: bool(line.strip()))
        return f"{indent}### BEGIN SOLUTION\n{inner}\n{indent}### END SOLUTION"
    return SOLUTION_MARKER.sub(replace, source)


def _nbgrader_metadata(meta: dict, index: int) -> dict | None:
    role = meta.pop("role", None)
    grade_id = meta.pop("grade_id", None) or f"cell-{index:02d}"
    points = meta.pop("points", None)
    if role is None:
        return None
    if role not in ROLES:
        raise ValueError(f"cell {index}: role must be one of {ROLES}, got {role!r}")
    if role in ("tests", "answer") and points is None:
        raise ValueError(f"cell {index} ({grade_id}): a graded cell needs points")
    info = {"grade": role in ("tests", "answer"), "solution": role in ("solution", "answer"),
            "locked": role in ("readonly", "tests"), "grade_id": grade_id, "schema_version": 3}
    if info["grade"]:
        info["points"] = points
    return info


def instructor_notebook(assignment: str) -> nbformat.NotebookNode:
    """The nbgrader source notebook of ``assignment``, solutions filled in."""
    settings = course_settings()
    nb = jupytext.read(SOURCES / f"{assignment}.py")
    for index, cell in enumerate(nb.cells):
        text = cell.source.replace("{{STUDENT_PACKAGE}}", settings["package"])
        text = text.replace("{{COLAB_BADGE}}", colab_badge(assignment))
        cell.source = _expand_solutions(text)
        cell.id = f"{assignment[:2]}-{index:02d}"  # stable ids: the build is reproducible
        info = _nbgrader_metadata(cell.metadata, index)
        if info:
            cell.metadata["nbgrader"] = info
            cell.id = info["grade_id"].replace("_", "-")
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}, "colab": {"provenance": []}}
    nbformat.validate(nb)
    return nb


def colab_badge(assignment: str) -> str:
    settings = course_settings()
    url = f"https://colab.research.google.com/github/{settings['repo_path']}/blob/{settings['branch']}/" \
          f"notebooks/{assignment}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def build(assignment: str, course_root: Path, notebooks_dir: Path | None = None) -> Path:
    """Write the instructor notebook, run generate_assignment, copy the student notebook.
    Returns the student notebook's path."""
    from autograder.nbgrader_api import nbgrader_api

    source = course_root / "source" / assignment / f"{assignment}.ipynb"
    source.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(instructor_notebook(assignment), source)
    api = nbgrader_api(course_root)
    result = api.generate_assignment(assignment, force=True)
    if not result["success"]:
        raise RuntimeError(f"generate_assignment failed for {assignment}:\n{result['error']}\n{result['log']}")
    released = course_root / "release" / assignment / f"{assignment}.ipynb"
    out = (notebooks_dir or REPO / "notebooks") / f"{assignment}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    student = nbformat.read(released, as_version=4)
    nbformat.write(student, out)
    return out


def stale(assignment: str, tmp: Path) -> str | None:
    """None if notebooks/<assignment>.ipynb is what the build writes now, else why not."""
    committed = REPO / "notebooks" / f"{assignment}.ipynb"
    if not committed.exists():
        return f"{committed} is missing: run python -m autograder build"
    fresh = build(assignment, tmp / "course", tmp / "notebooks")
    if fresh.read_text() != committed.read_text():
        return f"{committed} is stale: its source or solutions/ changed; run python -m autograder build"
    return None


def copy_source_tree(course_root: Path, into: Path) -> None:
    """Share the built instructor notebooks with another course root (grading workers)."""
    shutil.copytree(course_root / "source", into / "source", dirs_exist_ok=True)


__all__ = ["build", "stale", "instructor_notebook", "assignments", "reference_code", "COURSE_TOML"]
