"""Notebook 01 as students get it: generated from its source, free of the answer,
Colab-ready, and runnable top to bottom (with the reference filled in) on a CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.build import colab_badge, instructor_notebook, stale
from autograder.config import course_settings

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "notebooks" / "01_augmentation.ipynb"
CASE_STUDY_SIGNATURE = ("def augment_observation(rgb: torch.Tensor, depth: torch.Tensor,\n"
                        "                         language: str) -> tuple[torch.Tensor, torch.Tensor, str]:")


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_committed_student_notebook_is_fresh(tmp_path):
    assert stale("01_augmentation", tmp_path) is None


def test_student_notebook_has_the_todo_but_not_the_answer():
    student, instructor = nbformat.read(STUDENT, as_version=4), instructor_notebook("01_augmentation")
    todo, answer = _cell(student, "augment_observation").source, _cell(instructor, "augment_observation").source
    assert CASE_STUDY_SIGNATURE in todo and CASE_STUDY_SIGNATURE in answer
    assert "Apply the SAME random crop (scale 0.8-1.0) to BOTH rgb and depth" in todo
    assert todo.rstrip().endswith("# YOUR CODE HERE\n    raise NotImplementedError")
    assert "### BEGIN SOLUTION" in answer and "resized_crop(depth" in answer
    text = json.dumps(student)
    for leak in ("resized_crop(depth", "swap_left_right", "BEGIN SOLUTION", "Rubric", "Model answer"):
        assert leak not in text, leak
    assert _cell(student, "thought_flip_actions").source == "YOUR ANSWER HERE"
    assert "Rubric (2 points)" in _cell(instructor, "thought_flip_actions").source


def test_colab_badge_points_at_this_notebook():
    first = nbformat.read(STUDENT, as_version=4).cells[0].source
    settings = course_settings()
    assert colab_badge("01_augmentation") in first
    assert f"github/{settings['repo_path']}/blob/{settings['branch']}/notebooks/01_augmentation.ipynb" in first


def _setup_code() -> str:
    nb = nbformat.read(STUDENT, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source)


@pytest.mark.slow
def test_setup_cell_installs_the_package_only_on_colab(tmp_path):
    """Fake google.colab and point the install at a wheel built from this checkout;
    pip installs into a temporary target, never into this virtualenv."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("novapick-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "novapick/checks/augmentation.py" in names
    assert not [n for n in names if n.startswith(("solutions/", "autograder/"))]  # answers never ship
    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake.parent / "__init__.py").write_text("")
    script = tmp_path / "setup_cell.py"
    script.write_text(_setup_code())
    target = tmp_path / "target"
    env = {**os.environ, "NOVAPICK_PACKAGE": str(wheel), "PIP_TARGET": str(target), "PIP_NO_DEPS": "1",
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    on_colab = subprocess.run([sys.executable, str(script)], env={**env, "PYTHONPATH": str(tmp_path / "fake")},
                              capture_output=True, text=True, timeout=300)
    assert on_colab.returncode == 0, on_colab.stderr[-2000:]
    assert "Colab: True" in on_colab.stdout and "on cpu" in on_colab.stdout
    assert (target / "novapick" / "checks" / "augmentation.py").exists()
    target2 = tmp_path / "target2"
    local = subprocess.run([sys.executable, str(script)], env={**env, "PIP_TARGET": str(target2)},
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0 and "Colab: False" in local.stdout and not target2.exists()


@pytest.mark.slow
def test_notebook_with_the_reference_runs_top_to_bottom(tmp_path):
    """A real Jupyter kernel (nbclient), the student notebook with the reference's cell,
    fresh data generated into tmp: under 3 minutes on this CPU, plots in the outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(STUDENT, as_version=4)
    _cell(nb, "augment_observation").source = _cell(instructor_notebook("01_augmentation"),
                                                     "augment_observation").source
    os.environ["NOVAPICK_DATA"] = str(tmp_path / "data")
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.pop("NOVAPICK_DATA", None)
    wall = time.perf_counter() - start
    print(f"notebook 01 ran in {wall:.1f} s")
    assert wall <= 180
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "All 6 visible checks passed" in text and "Augmentation tests passed." in text
    assert text.count("runs when your notebook is graded") == 6
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the data and the augmented grid
    assert not [o for o in outputs if o.output_type == "error"]
