"""Training loop, checkpoint/resume, DDP and closed-loop evaluation (tiny budgets)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from novapick.config import TrainConfig, get_profile
from novapick.data.dataset import make_dataloader
from novapick.policy.model import build_model, load_components, load_policy_model, parameters
from novapick.train.checkpoint import save_checkpoint, warmup_cosine
from novapick.train.extras import TrainingExtras, load_scene_tensors, scene_grounding_loss
from novapick.train.batch import unpack_batch
from novapick.train.harness import train
from solutions.training import train_one_epoch

REFERENCE = load_components("solutions")

REPO = Path(__file__).resolve().parents[1]


def test_warmup_then_cosine_schedule():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = warmup_cosine(opt, TrainConfig(lr=3e-4, min_lr=1e-5, warmup_steps=10, total_steps=110))
    lrs = []
    for _ in range(111):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(1.5e-4) and lrs[10] == pytest.approx(3e-4)
    assert lrs[60] == pytest.approx((3e-4 + 1e-5) / 2, rel=1e-3) and lrs[110] == pytest.approx(1e-5)


def test_training_augmentation_settings_are_validated():
    assert get_profile("quick").train.colour_jitter > 0 and get_profile("quick").train.depth_noise_m > 0
    with pytest.raises(ValueError, match="colour_jitter"):
        TrainConfig(colour_jitter=1.5)
    with pytest.raises(ValueError, match="depth_noise_m"):
        TrainConfig(depth_noise_m=-0.01)
    with pytest.raises(ValueError, match="pose_teacher_p"):
        TrainConfig(pose_teacher_p=1.5)


def test_train_one_epoch_decreases_the_loss_on_a_fixed_batch(data_dir):
    torch.manual_seed(0)
    prof = get_profile("quick")
    model = build_model(prof.model, REFERENCE)
    extras = TrainingExtras(model, prof.train)
    batch = extras.prepare(next(iter(make_dataloader(data_dir, batch_size=4, seq_len=6, as_tuple=False))), "cpu")
    opt = torch.optim.AdamW(parameters(model), lr=1e-3, weight_decay=1e-4)
    sched = warmup_cosine(opt, TrainConfig(warmup_steps=1, total_steps=1000))
    torch.manual_seed(1)
    first = train_one_epoch(model, [batch] * 3, opt, sched, torch.device("cpu"), 0, extras)
    for epoch in range(1, 6):
        last = train_one_epoch(model, [batch] * 3, opt, sched, torch.device("cpu"), epoch, extras)
    for key in ("flow_loss", "wm_loss", "kl_loss", "total_loss", "pose_loss", "ground_loss"):
        assert np.isfinite(last[key])
    assert last["total_loss"] < 0.8 * first["total_loss"]


def test_the_case_study_loop_trains_the_spec_exact_model_on_tuples(data_dir):
    """extras=None: the case study's model (encoder, RSSM, flow head, grasp head and
    nothing else) and loss, on the case study's tuple batches."""
    torch.manual_seed(0)
    prof = get_profile("quick")
    prof.model.extensions = False
    model = build_model(prof.model, REFERENCE)
    assert set(model) == {"encoder", "rssm", "flow_head", "grasp_head"}
    tup = next(iter(make_dataloader(data_dir, batch_size=4, seq_len=4, as_tuple=True)))
    opt = torch.optim.AdamW(parameters(model), lr=1e-3)
    sched = warmup_cosine(opt, TrainConfig(warmup_steps=1, total_steps=1000))
    first = train_one_epoch(model, [tup] * 3, opt, sched, torch.device("cpu"), 0)
    for epoch in range(1, 6):
        last = train_one_epoch(model, [tup] * 3, opt, sched, torch.device("cpu"), epoch)
    assert last["steps"] == 3 and "pose_loss" not in last
    assert last["total_loss"] < 0.8 * first["total_loss"]
    # the composite loss is the case study's: flow + 0.5 wm + 0.1 grasp, nothing else
    assert last["total_loss"] == pytest.approx(last["flow_loss"] + 0.5 * last["wm_loss"] + 0.1 * last["grasp_loss"],
                                               rel=1e-5)


def test_train_checkpoints_resumes_and_plots(data_dir, tmp_path):
    summary = train([str(data_dir)], tmp_path, "quick", steps=4, batch_size=2, seq_len=4)
    assert summary["steps"] == 4 and (tmp_path / "loss_curves.png").stat().st_size > 5000
    resumed = train([str(data_dir)], tmp_path, "quick", steps=6, batch_size=2, seq_len=4)
    assert resumed["steps"] == 6
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["step"] == 6 and [h["step"] for h in ckpt["history"]][-1] == 6
    model, mcfg = load_policy_model(tmp_path / "last.pt")
    assert set(model) >= {"encoder", "rssm", "flow_head"} and mcfg.image_size == 64


def test_the_same_seed_gives_the_same_training_curve_and_weights(data_dir, tmp_path):
    """Determinism: a seed fixes the initial weights, the window order, the augmentation,
    word dropout, teacher forcing and the flow-matching noise."""
    def run(seed: int, out: Path) -> tuple[list, dict]:
        train([str(data_dir)], out, "quick", steps=5, batch_size=2, seq_len=4, seed=seed, log_every=1)
        ckpt = torch.load(out / "last.pt", weights_only=False)
        return [h["total_loss"] for h in ckpt["history"]], ckpt["model"]["flow_head"]
    first_curve, first_weights = run(3, tmp_path / "a")
    second_curve, second_weights = run(3, tmp_path / "b")
    other_curve, _ = run(4, tmp_path / "c")
    assert len(first_curve) == 5 and first_curve == second_curve and first_curve != other_curve
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name


def test_a_stopped_and_resumed_run_ends_with_the_same_weights(data_dir, tmp_path, monkeypatch):
    """Exact resume: a run killed right after its step-3 checkpoint (mid-epoch) and then
    resumed, going on across the next epoch, gives the same curve, weights and EMA as a
    run that never stopped: the same remaining batches and the same random streams."""
    import novapick.train.harness as harness

    windows = train([str(data_dir)], tmp_path / "probe", "quick", steps=1, batch_size=2, seq_len=4)["windows"]
    batch = windows // 5                                   # 5 batches per epoch: 8 steps cross into epoch 2
    kwargs = dict(profile="quick", steps=8, batch_size=batch, seq_len=4, seed=5, log_every=1, checkpoint_every=3)
    train([str(data_dir)], tmp_path / "straight", **kwargs)

    class Killed(Exception):
        pass

    def save_then_die(*args, **kw):
        save_checkpoint(*args, **kw)
        raise Killed

    monkeypatch.setattr(harness, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train([str(data_dir)], tmp_path / "stopped", **kwargs)
    monkeypatch.undo()
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=False)["step"] == 3
    train([str(data_dir)], tmp_path / "stopped", **kwargs)

    straight, resumed = (torch.load(tmp_path / d / "last.pt", weights_only=False) for d in ("straight", "stopped"))
    assert resumed["step"] == straight["step"] == 8 and straight["position"]["epoch"] == 1
    assert [h["total_loss"] for h in resumed["history"]] == [h["total_loss"] for h in straight["history"]]
    for part in ("model", "ema"):
        for name, weights in straight[part].items():
            for key, tensor in weights.items():
                assert torch.equal(tensor, resumed[part][name][key]), (part, name, key)


@pytest.mark.slow
def test_ddp_with_two_processes_completes(data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "novapick.train", "--data", str(data_dir), "--steps", "3", "--batch-size", "2",
           "--seq-len", "4", "--device", "cpu", "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 3
    # the gradients were averaged: both ranks took the same steps from the same weights,
    # so rank 0's checkpoint equals what either rank holds; and training moved the weights
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["step"] == 3 and len(ckpt["position"]["random_state"]) == 2


def test_closed_loop_evaluation_runs_and_reports_metrics(data_dir, tmp_path):
    from novapick.data.normalize import NormStats
    from novapick.sim import make_env
    from solutions.evaluation import evaluate_model

    train([str(data_dir)], tmp_path, "quick", steps=2, batch_size=2, seq_len=4)
    model, mcfg = load_policy_model(tmp_path / "last.pt")
    env = make_env(64, max_steps=12)
    names = [o.name for o in env.catalog.split("novel")[:2]]
    result = evaluate_model(model, env, names, num_episodes=1, mcfg=mcfg,
                            stats=NormStats.load(tmp_path / "stats.json"), progress=False, rehearsal_k=3)
    from novapick.evaluate.summary import summarize_evaluation

    harness_view = summarize_evaluation(result["infos"])
    for key in ("pick_success_rate", "mean_cycle_time", "mean_smoothness", "collision_rate", "per_object_success"):
        assert result[key] == harness_view[key], key      # the answer's aggregation is the harness's
    assert set(result["per_object_success"]) == set(names) and result["episodes"] == 2
    # in 12 steps an untrained policy cannot reach an item: both episodes end as misses
    assert result["pick_success_rate"] == 0.0 and result["mean_cycle_time"] is None
    assert [(i["failure"], i["steps"]) for i in result["infos"]] == [("miss", 12)] * 2
    assert harness_view["latency_ms_p50"] > 0
    env.close()


def test_temperature_zero_gives_the_same_chunk_for_any_seed(data_dir, tmp_path):
    from novapick.data.normalize import NormStats
    from novapick.policy.vla import VLAPolicy

    train([str(data_dir)], tmp_path, "quick", steps=2, batch_size=2, seq_len=4)
    model, mcfg = load_policy_model(tmp_path / "last.pt")
    stats = NormStats.load(tmp_path / "stats.json")
    cond = torch.randn(1, mcfg.cond_dim)
    chunk = lambda **kw: VLAPolicy(model, mcfg, stats, **kw).predict_action_chunk(cond)  # noqa: E731
    np.testing.assert_allclose(chunk(seed=1, temperature=0.0), chunk(seed=2, temperature=0.0))
    assert not np.allclose(chunk(seed=1, temperature=1.0), chunk(seed=2, temperature=1.0))
    with pytest.raises(ValueError, match="temperature"):
        VLAPolicy(model, mcfg, stats, temperature=2.0)


def test_parallel_evaluation_gives_the_same_episodes_as_one_process(data_dir, tmp_path):
    from novapick.evaluate.episodes import plan_episodes
    from novapick.evaluate.workers import evaluate_checkpoint

    train([str(data_dir)], tmp_path, "quick", steps=2, batch_size=2, seq_len=4)
    from novapick.sim.catalog import load_catalog
    names = [o.name for o in load_catalog().split("known")[:3]]
    plans = plan_episodes(names, 2, (1, 3), seed=5)
    assert plans == plan_episodes(names, 2, (1, 3), seed=5) and plans[:2] == plan_episodes(names[:1], 2, (1, 3), 5)
    one = evaluate_checkpoint(tmp_path / "last.pt", names, 2, n_items=(1, 3), seed=5, workers=1, max_steps=10)
    two = evaluate_checkpoint(tmp_path / "last.pt", names, 2, n_items=(1, 3), seed=5, workers=2, max_steps=10)
    assert one["episodes"] == two["episodes"] == 6
    key = lambda r: [(i["object_name"], i["seed"], i["success"], i["failure"], i["steps"]) for i in r["infos"]]  # noqa: E731
    assert key(one) == key(two)


def test_benchmark_reports_every_stage_and_the_flow_steps_curve():
    from solutions.benchmark import benchmark_inference
    prof = get_profile("quick")
    result = benchmark_inference(build_model(prof.model, REFERENCE), torch.device("cpu"), 2, 5, mcfg=prof.model,
                                 flow_steps_curve=(1, 10))
    for key in ("preprocess_ms", "encode_ms", "rssm_ms", "flow_ms", "total_ms", "throughput_hz"):
        assert result[key] > 0
    assert isinstance(result["meets_latency_target"], bool)
    for stage in ("preprocess", "encode", "rssm", "flow", "total"):
        lat = result["latency"][stage]
        assert set(lat) == {"mean", "std", "p50", "p95", "p99"}
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] and lat["std"] >= 0
    # the end-to-end step contains every stage, and more flow steps cost more
    assert result["total_ms"] > result["encode_ms"] and result["total_ms"] > result["flow_ms"]
    assert result["throughput_hz"] == pytest.approx(1000 / result["total_ms"])
    assert result["params"]["rssm"] > 1e5 and result["gflops_per_chunk"] > 0
    curve = result["flow_steps_curve"]
    assert [c["flow_steps"] for c in curve] == [1, 10] and curve[1]["flow_ms_p50"] > curve[0]["flow_ms_p50"]
    assert set(result["gpu_estimates_ms"]) == {"T4 (Colab)", "L4", "A100"}


def test_failure_analysis_counts_correlates_and_saves_frames(data_dir, tmp_path):
    from novapick.data.normalize import NormStats
    from novapick.sim import make_env
    from solutions.error_analysis import analyze_failures, correlated_properties
    from solutions.evaluation import evaluate_model

    train([str(data_dir)], tmp_path / "ckpt", "quick", steps=2, batch_size=2, seq_len=4)
    model, mcfg = load_policy_model(tmp_path / "ckpt" / "last.pt")
    env = make_env(64, max_steps=8)
    names = [o.name for o in env.catalog.split("known")[:3]]
    results = evaluate_model(model, env, names, 1, mcfg=mcfg, stats=NormStats.load(tmp_path / "ckpt" / "stats.json"),
                             progress=False)
    report = analyze_failures(results, model, env, out_dir=tmp_path / "failures", examples=1)
    assert set(report) == {"grasp_slip", "miss", "wrong_object", "collision", "timeout"}
    failed = sum(not i["success"] for i in results["infos"])
    assert sum(r["count"] for r in report.values()) == failed == 3          # 8 steps: nothing gets picked
    assert report["miss"]["count"] == 3 and report["miss"]["fraction"] == 1.0   # ... nor touched
    for category, r in report.items():
        assert r["mitigation"] and (r["count"] == 0 or len(r["example_frames"]) == 3)
        assert all(Path(p).exists() for p in r["example_frames"])
    episodes = [{"object_name": n} for n in names * 4]                      # 4 episodes per object
    failures = [{"object_name": names[0]}] * 3 + [{"object_name": names[1]}]
    props = correlated_properties(failures, episodes)
    first = env.catalog.get(names[0])
    assert f"category={first.category} (75% of these failures vs 33% of episodes, 2.2x)" in props
    env.close()


def test_grasp_baseline_trains_on_expert_poses_and_runs_in_the_cell(data_dir):
    from novapick.sim import make_env
    from novapick.evaluate.baseline import evaluate_baseline, train_baseline
    from solutions.baseline import GraspBaseline

    model, info = train_baseline([str(data_dir)], GraspBaseline, steps=40, batch_size=8, pretrained=False,
                                 progress=False)
    assert info["samples"] >= 3 and info["final_mse"] < info["first_mse"]
    assert not info["pretrained_backbone"] and not info["frozen_backbone"]   # offline: the ResNet trains too
    env = make_env(64, max_steps=60)
    names = [o.name for o in env.catalog.split("novel")[:2]]
    summary = evaluate_baseline(model, env, names, progress=False)
    assert summary["episodes"] == 2 and set(summary["per_object_success"]) == set(names)
    env.close()


def test_expert_pose_vectors_replay_to_a_successful_pick():
    from novapick.sim import make_env
    from novapick.sim.expert import PoseExpert
    from novapick.sim.rollout import run_expert_episode

    env = make_env(64)
    info, _, _ = run_expert_episode(env, 3, {"n_items": 2}, record=False)
    assert info["success"] and info["grasp_pose"].shape == (7,) and np.abs(info["grasp_pose"]).max() <= 1
    obs, _ = env.reset(seed=3, options={"n_items": 2})
    expert, done = PoseExpert(env, info["grasp_pose"]), False
    while not done:
        obs, _, terminated, truncated, replay = env.step(expert.act(obs))
        done = terminated or truncated
    assert replay["success"]
    env.close()


def test_grounding_scenes_are_used_when_stored_with_the_data_and_train_the_attention(data_dir, tmp_path, capsys):
    """The scenes stored with the demonstrations add a grounding loss on other bins' first
    looks; without them training says so instead of silently going on."""
    import shutil

    from novapick.data.scenes import SceneConfig, generate_scenes
    plain = train([str(data_dir)], tmp_path / "plain", "quick", steps=1, batch_size=2, seq_len=4)
    assert plain["grounding_scenes"] == 0 and "no grounding scenes at" in capsys.readouterr().out
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    info = generate_scenes(SceneConfig(scenes=6, image_size=64, max_items=2), data)
    summary = train([str(data)], tmp_path / "run", "quick", steps=2, batch_size=2, seq_len=4, log_every=1)
    assert summary["grounding_scenes"] == 6 and "grounding scenes: 6 from" in capsys.readouterr().out
    history = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["history"]
    assert all(h["scene_ground_loss"] > 0 for h in history)
    # the term alone moves the language attention onto the named items
    torch.manual_seed(0)
    prof = get_profile("quick")
    tcfg = TrainConfig(scene_batch=6, colour_jitter=0.0, depth_noise_m=0.0)
    model = build_model(prof.model, REFERENCE)
    scenes = load_scene_tensors(info["path"], 64, torch.device("cpu"))
    optimizer = torch.optim.Adam(model["encoder"].parameters(), lr=1e-3)
    losses = []
    for _ in range(50):
        loss = scene_grounding_loss(model, scenes, tcfg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_grounded_observation_layout_and_normalised_squared_error():
    from novapick.train.batch import (DEPTH_SCALE, GROUNDED_DIM, GROUNDED_LAYOUT, grounded_observation,
                                      normalised_squared_error)
    B, L, S = 3, 4, 16
    depth = torch.zeros(B, L, 1, S, S)
    depth[..., :S // 2, :] = 0.5                                # the top half of the image is near
    batch = {"proprioception": torch.randn(B, L, 14), "gripper_state": torch.rand(B, L, 2),
             "grasp": torch.ones(B, L), "depth": depth}
    g = grounded_observation(batch)
    assert g.shape == (B, L, GROUNDED_DIM) == (B, L, 81)
    torch.testing.assert_close(g[..., GROUNDED_LAYOUT["proprio"]], batch["proprioception"])
    torch.testing.assert_close(g[..., GROUNDED_LAYOUT["gripper"]], batch["gripper_state"])
    assert (g[..., GROUNDED_LAYOUT["held"]] == 1).all()
    grid = g[0, 0, GROUNDED_LAYOUT["depth"]].view(8, 8)
    assert (grid[:4] == DEPTH_SCALE * 0.5).all() and (grid[4:] == 0).all()
    # scale-free: predicting each dimension's mean scores ~1 per dimension whatever its units
    target = torch.randn(1000, 3) * torch.tensor([0.1, 1.0, 100.0])
    assert normalised_squared_error(target.mean(0).expand_as(target), target).item() == pytest.approx(3.0, abs=0.01)
    assert normalised_squared_error(target, target).item() == 0.0


def test_the_imagination_loss_trains_the_prior_to_decode_the_future(data_dir):
    """The extension's open-loop term: on real windows it falls as the RSSM trains on it."""
    from novapick.train.extras import imagination_loss
    torch.manual_seed(0)
    prof = get_profile("quick")
    rssm = build_model(prof.model, REFERENCE)["rssm"]
    batch = unpack_batch(next(iter(make_dataloader(data_dir, batch_size=8, seq_len=4, image_size=64))), "cpu")
    obs = torch.randn(8, 4, prof.model.obs_embed_dim)
    optimizer = torch.optim.Adam(rssm.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        h, z = rssm.initial_state(8, torch.device("cpu"))
        prev, hs, zs = torch.zeros(8, 10), [], []
        for t in range(4):
            h, z, _ = rssm.observe_step(obs[:, t], prev, h, z)
            hs.append(h)
            zs.append(z)
            prev = batch["actions"][:, t, 0]
        loss = imagination_loss(rssm, torch.stack(hs, 1), torch.stack(zs, 1), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
