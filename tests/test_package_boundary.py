"""The student package stands alone: no `novapick` module imports the hidden answers."""
import subprocess
import sys
from pathlib import Path

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
