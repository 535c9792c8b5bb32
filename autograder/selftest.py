"""Selftest: every notebook's instructor version earns full marks and its untouched
student version earns 0, graded through the real path (nbgrader, sandbox, judge)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat

from autograder.build import instructor_notebook
from autograder.config import REPO
from autograder.grading import grade_all


def selftest(assignments: list[str], workers: int = 1, unsafe: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="ag-selftest-") as tmp:
        submitted = Path(tmp) / "submitted"
        for assignment in assignments:
            for who in ("reference", "stub"):
                (submitted / who / assignment).mkdir(parents=True)
            nbformat.write(instructor_notebook(assignment), submitted / "reference" / assignment / f"{assignment}.ipynb")
            student = REPO / "notebooks" / f"{assignment}.ipynb"
            if not student.exists():
                raise SystemExit(f"{student} is missing: run python -m autograder build")
            shutil.copy(student, submitted / "stub" / assignment / f"{assignment}.ipynb")
        results = grade_all(submitted, Path(tmp) / "course", workers=workers, unsafe=unsafe, progress=False)
    by = {(r.student, r.assignment): r for r in results}
    report, ok = {}, True
    for assignment in assignments:
        ref, stub = by[("reference", assignment)], by[("stub", assignment)]
        row = {"max": ref.max, "reference": ref.score, "stub": stub.score, "reference_notes": ref.notes,
               "stub_notes": stub.notes, "reference_wall_s": ref.wall_s, "stub_wall_s": stub.wall_s}
        ok &= ref.max > 0 and ref.score == ref.max and stub.score == 0
        report[assignment] = row
    return {"notebooks": report, "ok": bool(ok)}
