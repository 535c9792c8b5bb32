"""Grading through the real path: nbgrader autograde, the bubblewrap sandbox, the judge.

One `python -m autograder grade` run over hostile submissions and correct ones: every
hostile one scores 0 on notebook 01's TODO with a note that says why, the correct ones
(one with Colab-stripped metadata, one with a graded cell deleted) score full marks in
the same run, and nothing outside the sandbox changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from test_autograder_augment import HAND_IMPL, TORCHVISION_IMPL

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "notebooks" / "01_augmentation.ipynb"
TODO_ITEMS = {"augment_contract", "augment_paired_geometry", "augment_crop", "augment_flip_language",
              "augment_depth_noise", "augment_colour_jitter"}
WRONG = "\n\ndef augment_observation(rgb, depth, language):\n    return None\n"


def hostile(paths: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """student -> (the TODO cell's code, a phrase the notes must contain)."""
    repo = str(REPO)
    return {
        "import_reference": (f"import sys\nsys.path.insert(0, {repo!r})\n"
                             "from solutions.augmentation import augment_observation\n", "No module named"),
        "exec_reference_file": ("import os\nfound = None\n"
                                "for root in ('/work', '/root', '/home', '/tmp', '/opt', '/srv', os.getcwd() + '/..'):\n"
                                "    for folder, dirs, files in os.walk(root):\n"
                                "        if folder.endswith('solutions') and 'augmentation.py' in files:\n"
                                "            found = os.path.join(folder, 'augmentation.py')\n"
                                "namespace = {}\n"
                                "exec(open(found).read(), namespace)\n"
                                "augment_observation = namespace['augment_observation']\n", "TypeError"),
        "caller_frames": ("import inspect\n\ndef augment_observation(rgb, depth, language):\n"
                          "    for info in inspect.stack()[1:]:\n"
                          "        for name, value in info.frame.f_locals.items():\n"
                          "            if name in ('expected', 'want', 'reference', 'target', 'answer'):\n"
                          "                return value\n"
                          "    return None\n", "expected a tuple"),
        "monkeypatch": ("import numpy.testing, torch\nimport novapick.checks.augmentation as checks\n"
                        "import novapick.checks.protocol as protocol\n"
                        "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                        "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                        "for name in list(checks.CHECKS):\n"
                        "    checks.CHECKS[name] = lambda *a, **k: checks.CheckResult('x', True, 'ok')\n"
                        "protocol.submit = lambda *a, **k: True\n" + WRONG, "never reached the judge"),
        "no_tracebacks": ("ip = get_ipython()\nip.showtraceback = lambda *a, **k: None\n"
                          "ip._showtraceback = lambda *a, **k: None\nimport sys\nsys.excepthook = lambda *a: None\n"
                          + WRONG, "expected a tuple"),
        "sys_exit": ("import sys\n\ndef augment_observation(rgb, depth, language):\n    sys.exit(0)\n\nsys.exit(0)\n",
                     "SystemExit"),
        "os_exit": ("import os\nos._exit(0)\n", "kernel died"),
        "infinite_loop": ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
                          "per-cell time limit"),
        "memory_bomb": ("blocks = []\nwhile True:\n    blocks.append(b'x' * (256 << 20))\n", "memory limit"),
        "print_100mb": ("print('x' * (100 << 20))\n" + WRONG, "output beyond"),
        "writes_outside": ("import os\nfor path in " + repr([str(p) for p in paths.values()]) + ":\n"
                           "    try:\n        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
                           "        open(path, 'w').write('pwned')\n    except OSError as err:\n"
                           "        print(path, err)\n" + WRONG, "expected a tuple"),
    }


def _with_todo(code: str) -> nbformat.NotebookNode:
    nb = nbformat.read(STUDENT, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "augment_observation")
    cell.source = code
    return nb


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade")
    submitted, course = tmp / "submitted", tmp / "course"
    home_canary = Path.home() / ".novapick_pwned"
    protected = {"reference": REPO / "solutions" / "augmentation.py", "checks": REPO / "novapick/checks/augmentation.py",
                 "home": home_canary, "tmp": Path("/tmp/novapick_pwned"),
                 "other": submitted / "alice" / "01_augmentation" / "01_augmentation.ipynb",
                 "gradebook": course / "gradebook.db"}
    subs = {name: _with_todo(code) for name, (code, _) in hostile(protected).items()}
    subs["alice"] = _with_todo(TORCHVISION_IMPL)
    stripped = _with_todo(HAND_IMPL)  # as Colab may save it: no nbgrader metadata, new cell ids
    for i, cell in enumerate(stripped.cells):
        cell.metadata, cell.id = {}, f"colab-{i}"
    subs["bob_colab"] = stripped
    deleted = _with_todo(HAND_IMPL)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "augment_crop"]
    subs["carol_deleted_cell"] = deleted
    for student, nb in subs.items():
        (submitted / student / "01_augmentation").mkdir(parents=True)
        nbformat.write(nb, submitted / student / "01_augmentation" / "01_augmentation.ipynb")
    before = {k: _digest(p) for k, p in protected.items()}
    cmd = [sys.executable, "-m", "autograder", "grade", str(submitted), "--workers", "2", "--json",
           "--course", str(course), "--cell-timeout", "20", "--timeout", "100"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    after = {k: _digest(p) for k, p in protected.items() if k != "gradebook"}
    return json.loads(done.stdout.strip().splitlines()[-1])["grades"], before, after, course


def test_correct_submissions_get_full_marks_in_the_same_run(graded):
    grades = graded[0]
    for student in ("alice", "bob_colab", "carol_deleted_cell"):
        result = grades[student]["01_augmentation"]
        assert result["score"] == result["max"] == 10 and result["manual_max"] == 2, (student, result)
    assert any("restored nbgrader metadata" in n for n in grades["bob_colab"]["01_augmentation"]["notes"])
    assert any("augment_crop" in n and "missing" in n for n in grades["carol_deleted_cell"]["01_augmentation"]["notes"])


@pytest.mark.parametrize("student", sorted(hostile({})))
def test_hostile_submission_scores_zero_with_a_clear_note(graded, student):
    result = graded[0][student]["01_augmentation"]
    assert result["score"] == 0 and set(result["items"]) == TODO_ITEMS, result
    phrase = hostile({})[student][1]
    assert any(phrase in note for note in result["notes"]), (phrase, result["notes"])


def test_writes_outside_the_sandbox_change_nothing(graded):
    _, before, after, _ = graded
    assert after == {k: v for k, v in before.items() if k != "gradebook"}
    assert not Path("/tmp/novapick_pwned").exists() and not (Path.home() / ".novapick_pwned").exists()


def test_gradebook_holds_the_judges_scores(graded):
    from nbgrader.api import Gradebook

    grades, _, _, course = graded
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in ("alice", "no_tracebacks", "monkeypatch"):
            submission = gb.find_submission("01_augmentation", student)
            assert submission.code_score == grades[student]["01_augmentation"]["score"]
            assert (course / "autograded" / student / "01_augmentation" / "01_augmentation.ipynb").exists()


def test_one_worker_keeps_the_autograded_notebooks_and_logs(tmp_path):
    """One worker grades in-process; its autograded notebooks still reach the course."""
    notebook = tmp_path / "submitted" / "dana" / "01_augmentation" / "01_augmentation.ipynb"
    notebook.parent.mkdir(parents=True)
    nbformat.write(nbformat.read(STUDENT, as_version=4), notebook)  # the untouched stub
    course = tmp_path / "course"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "submitted"), "--json",
                           "--workers", "1", "--course", str(course)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])["grades"]["dana"]["01_augmentation"]
    assert result["score"] == 0 and result["max"] == 10
    assert (course / "autograded" / "dana" / "01_augmentation" / "01_augmentation.ipynb").exists()
    assert "judge seed" in (course / "logs" / "dana.01_augmentation.log").read_text()


def test_grading_refuses_without_a_sandbox(tmp_path):
    (tmp_path / "s" / "x" / "01_augmentation").mkdir(parents=True)
    env = {**os.environ, "PATH": "/nonexistent"}
    code = ("import sys, autograder.sandbox as s\ns.bwrap_path = lambda: None\n"
            "from autograder.cli import main\nsys.exit(main(['grade', sys.argv[1], '--course', sys.argv[2]]))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s"), str(tmp_path / "c")], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "refusing to grade" in done.stderr and "--unsafe" in done.stderr


def test_restore_metadata_matches_stripped_cells_and_keeps_answers():
    from autograder.grading import restore_metadata

    release = nbformat.read(STUDENT, as_version=4)
    nb = _with_todo(HAND_IMPL)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "thought_flip_actions")
    answer.source = "Flipping breaks the action labels."
    for cell in nb.cells:
        cell.metadata = {}
    assert restore_metadata(nb, release) == ["restored nbgrader metadata of 13 cells (stripped by the editor?)"]
    ids = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata}
    assert ids["thought_flip_actions"] == "Flipping breaks the action labels."
    assert "_GREY" in ids["augment_observation"]
    del nb.cells[3]  # one cell fewer: matched by content instead of position
    for cell in nb.cells:
        cell.metadata = {}
    restore_metadata(nb, release)
    ids = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata}
    assert {"augment_observation", "augment_crop", "augment_contract"} <= ids
