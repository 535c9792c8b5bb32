"""`python -m autograder selftest --json`: the instructor version of every notebook earns
full marks and the untouched student version 0, through nbgrader, the sandbox and the
judge (what `make test` relies on)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_selftest_reference_full_marks_stub_zero():
    done = subprocess.run([sys.executable, "-m", "autograder", "selftest", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"notebooks": {"01_augmentation": {"max": 10, "reference": 10, "stub": 0}}, "ok": True}
