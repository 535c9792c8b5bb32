"""The student package stands alone: no `novapick` module imports the hidden answers."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_importing_every_novapick_module_never_imports_solutions():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "novapick").rglob("*.py")
                     if p.name != "__main__.py")
    modules = [m.removesuffix(".__init__") for m in modules]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "leaked = sorted(m for m in sys.modules if m == 'solutions' or m.startswith('solutions.'))\n"
            "print(len(sys.modules)); assert not leaked, leaked\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"a novapick module imported solutions or failed to import:\n{result.stderr[-3000:]}"
    assert len(modules) > 30  # the whole package was walked


@pytest.mark.slow
def test_the_wheel_installs_outside_the_repository_and_runs_the_harness(tmp_path):
    """What students get: the wheel holds novapick only (no solutions, tests or expected
    values), and from an install outside the repository it trains and rolls out the
    independent components of tests/test_contract.py."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("novapick-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"novapick", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    assert not [n for n in names if "solution" in n or "test" in n.split("/")[-1] or "expected" in n]
    sources = [zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".py")]
    assert not [s for s in sources if "import solutions" in s or "from solutions" in s]
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    shutil.copy(ROOT / "tests" / "independent_components.py", tmp_path / "my_components.py")
    script = f"""
import sys, numpy as np
import novapick
assert novapick.__file__.startswith({str(site)!r}), novapick.__file__
from novapick.data.generate import generate
from novapick.data.writer import GenerationConfig
from novapick.train.harness import train
from novapick.policy.model import load_policy_model
from novapick.evaluate.workers import evaluate_checkpoint
generate(GenerationConfig(episodes=3, image_size=64, max_items=2), "data", workers=1, progress=False)
summary = train(["data"], "run", "quick", steps=2, batch_size=2, seq_len=4, components="my_components")
model, mcfg = load_policy_model("run/last.pt")
result = evaluate_checkpoint("run/last.pt", ["medium_green_box_01"], 1, max_steps=10)
assert summary["steps"] == 2 and result["episodes"] == 1
assert not [m for m in sys.modules if m.split(".")[0] == "solutions"]
print("OK", novapick.__file__)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{tmp_path}"
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert ran.returncode == 0 and "OK" in ran.stdout, (ran.stdout[-2000:], ran.stderr[-3000:])
