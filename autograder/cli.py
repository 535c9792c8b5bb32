"""``python -m autograder build | selftest | grade`` (the instructor's commands)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from autograder.config import COURSE_ROOT, REPO
from autograder.sandbox import Limits


def _assignments(names: list[str]) -> list[str]:
    from autograder.build import assignments

    known = assignments()
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown assignment(s) {unknown}; known: {known}")
    return names or known


def cmd_build(args: argparse.Namespace) -> int:
    from autograder.build import build, stale

    for assignment in _assignments(args.assignments):
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                problem = stale(assignment, Path(tmp))
            if problem:
                print(problem)
                return 1
            print(f"{assignment}: notebooks/{assignment}.ipynb is up to date")
        else:
            out = build(assignment, Path(args.course))
            print(f"{assignment}: {args.course}/source/{assignment}/{assignment}.ipynb (instructor), "
                  f"{out.relative_to(REPO) if out.is_relative_to(REPO) else out} (student)")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from autograder.selftest import selftest

    report = selftest(_assignments(args.assignments), workers=args.workers, unsafe=args.unsafe)
    if not args.json:
        for name, row in report["notebooks"].items():
            print(f"{name}: reference {row['reference']}/{row['max']}, stub {row['stub']}/{row['max']}")
            for who in ("reference", "stub"):
                for note in row.get(f"{who}_notes", []):
                    print(f"  {who}: {note}")
    from autograder.grading import _num

    print(json.dumps({"notebooks": {k: {"max": _num(v["max"]), "reference": _num(v["reference"]),
                                        "stub": _num(v["stub"])}
                                    for k, v in report["notebooks"].items()}, "ok": report["ok"]}))
    return 0 if report["ok"] else 1


def cmd_grade(args: argparse.Namespace) -> int:
    from autograder.grading import grade_all, grades_json
    from autograder.sandbox import SandboxUnavailable

    start = time.perf_counter()
    try:
        limits = Limits(cell_timeout_s=args.cell_timeout, wall_s=args.timeout,
                        memory_bytes=int(args.memory_gb * (1 << 30)),
                        threads=max(1, (os.cpu_count() or 1) // max(args.workers, 1)))
        results = grade_all(Path(args.submitted), Path(args.course), workers=args.workers, unsafe=args.unsafe,
                            limits=limits, progress=not args.json)
    except SandboxUnavailable as err:
        print(f"refusing to grade: {err}", file=sys.stderr)
        return 2
    if not args.json:
        for r in results:
            print(f"{r.student}/{r.assignment}: {r.score:g}/{r.max:g} (+{r.manual_max:g} by hand) in {r.wall_s:.1f} s")
            for note in r.notes:
                print(f"  - {note}")
        print(f"{len(results)} submissions in {time.perf_counter() - start:.1f} s; gradebook "
              f"{Path(args.course) / 'gradebook.db'}")
    print(grades_json(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="instructor + student notebooks from autograder/sources")
    b.add_argument("assignments", nargs="*")
    b.add_argument("--check", action="store_true", help="fail if a committed student notebook is stale")
    b.add_argument("--course", default=str(COURSE_ROOT), help="nbgrader course directory")
    b.set_defaults(run=cmd_build)
    s = sub.add_parser("selftest", help="reference must get full marks and the stub 0, through the real path")
    s.add_argument("assignments", nargs="*")
    s.add_argument("--json", action="store_true", help="print only the JSON line")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--unsafe", action="store_true", help="grade without the sandbox (never for students' work)")
    s.set_defaults(run=cmd_selftest)
    g = sub.add_parser("grade", help="grade SUBMITTED_DIR/<student>/<assignment>/<assignment>.ipynb")
    g.add_argument("submitted")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--json", action="store_true", help="no progress or summary; the JSON line only")
    g.add_argument("--unsafe", action="store_true", help="grade without the sandbox (never for students' work)")
    g.add_argument("--course", default=str(COURSE_ROOT), help="nbgrader course directory (gradebook.db there)")
    g.add_argument("--cell-timeout", type=int, default=Limits.cell_timeout_s, help="seconds per cell")
    g.add_argument("--timeout", type=float, default=Limits.wall_s, help="seconds per notebook (kills the sandbox)")
    g.add_argument("--memory-gb", type=float, default=Limits.memory_bytes / (1 << 30), help="resident memory of the kernel (memory cgroup where available)")
    g.set_defaults(run=cmd_grade)
    args = parser.parse_args(argv)
    return args.run(args)
