"""The plug-in contract (docs/contract.md), proven by an implementation that is not the
reference: tests/independent_components.py trains, rolls out and benchmarks through the
harness, with and without the reference policy's extensions."""
import ast
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from novapick.data.normalize import NormStats
from novapick.evaluate.workers import evaluate_checkpoint
from novapick.policy.model import load_components, load_policy_model
from novapick.policy.vla import VLAPolicy
from novapick.sim import make_env
from novapick.train.harness import train

HERE = Path(__file__).resolve().parent
MODULE = "independent_components"


def test_the_independent_components_use_nothing_from_solutions():
    tree = ast.parse((HERE / f"{MODULE}.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.split(".")[0] == "solutions" for m in imported), imported
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import {MODULE}; import novapick.train.harness\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'solutions']")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300).returncode == 0


def test_independent_components_train_roll_out_and_benchmark_with_the_extensions(data_dir, tmp_path):
    from solutions.benchmark import benchmark_inference   # the reference answer, run on someone else's model

    summary = train([str(data_dir)], tmp_path, "quick", steps=4, batch_size=2, seq_len=4, log_every=2,
                    components=MODULE)
    assert summary["components"] == MODULE and summary["extensions"] and summary["steps"] == 4
    final = summary["final"]
    assert math.isfinite(final["total_loss"]) and final["pose_loss"] >= 0 and final["ground_loss"] > 0
    model, mcfg = load_policy_model(tmp_path / "last.pt")        # rebuilt from the checkpoint's module name
    assert type(model["encoder"]).__module__ == MODULE and "action_scaler" in model
    components = load_components(MODULE)
    env = make_env(64, max_steps=15)
    names = [o.name for o in env.catalog.split("novel")[:1]]
    result = components.evaluate_model(model, env, names, 1, mcfg=mcfg, stats=NormStats.load(tmp_path / "stats.json"))
    env.close()
    assert result["pick_success_rate"] == 0.0 and result["infos"][0]["steps"] == 15
    # the parallel evaluator loads the same components in a spawned worker
    parallel = evaluate_checkpoint(tmp_path / "last.pt", names, 1, workers=1, max_steps=15)
    assert parallel["episodes"] == 1 and parallel["infos"][0]["steps"] == 15
    bench = benchmark_inference(model, torch.device("cpu"), 1, 3, mcfg=mcfg, flow_steps_curve=(1,))
    assert bench["total_ms"] > 0 and bench["params"]["encoder"] > 0


def test_independent_components_train_the_case_study_model_without_extensions(data_dir, tmp_path):
    summary = train([str(data_dir)], tmp_path, "quick", steps=3, batch_size=2, seq_len=4, log_every=1,
                    components=MODULE, extensions=False)
    assert not summary["extensions"] and summary["grounding_scenes"] == 0
    history = torch.load(tmp_path / "last.pt", weights_only=False)["history"]
    assert len(history) == 3 and all("pose_loss" not in h for h in history)
    model, mcfg = load_policy_model(tmp_path / "last.pt")
    assert set(model) == {"encoder", "rssm", "flow_head", "grasp_head"}
    policy = VLAPolicy(model, mcfg, NormStats.load(tmp_path / "stats.json"))
    chunk = policy.predict_action_chunk(torch.randn(1, mcfg.cond_dim))
    assert chunk.shape == (16, 10) and np.abs(chunk).max() <= 1.0      # the head's own clipped sample()


def test_a_train_one_epoch_that_skips_batches_is_named(data_dir, tmp_path):
    components = load_components(MODULE)

    def one_batch_only(model, dataloader, *args, **kwargs):
        return components.train_one_epoch(model, [next(iter(dataloader))], *args, **kwargs)

    with pytest.raises(RuntimeError, match="used 1 of the 2 batches"):
        train([str(data_dir)], tmp_path, "quick", steps=2, batch_size=2, seq_len=4, log_every=2,
              components=replace(components, train_one_epoch=one_batch_only))
