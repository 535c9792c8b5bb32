"""The scripted expert as a demonstrator, its CLI and the reference pipeline (smoke runs
of the real entry points with tiny budgets)."""
import json

import numpy as np
import pytest

from novapick.sim import robot as R
from novapick.sim.expert_eval import evaluate_expert, main as expert_eval_main
from novapick.sim.rollout import record_expert_episode


def test_recorded_episode_has_the_demonstration_format(env):
    ep = record_expert_episode(env, seed=3, object_name=None, split="known", n_items=3)
    T = len(ep)
    assert ep.meta["success"] and 20 < T < 120
    assert ep.rgb.shape == (T, 3, 64, 64) and ep.rgb.dtype == np.uint8
    assert ep.depth.shape == (T, 1, 64, 64) and ep.depth.dtype == np.float32
    assert ep.proprio.shape == (T, 14) and ep.gripper_state.shape == (T, 2)
    assert ep.action.shape == (T, R.ACTION_DIM) and np.abs(ep.action[:, :7]).max() <= 1.0
    assert set(np.unique(ep.action[:, 7:])) <= {-1.0, 1.0}
    assert (ep.action[:, 7:] == 1).sum(1).tolist() == [1] * T     # exactly one mode chosen
    assert ep.grasp[-1] == 1.0 and ep.grasp[0] == 0.0 and ep.reward[-1] >= 1.0
    np.testing.assert_allclose(ep.proprio[0, :7], R.HOME_JOINTS, atol=1e-3)
    assert ep.gripper_state[-1, 0] == 1.0 or ep.gripper_state[-1, 1] < 0.08  # sealed or pinched


def test_suction_picks_end_with_a_slow_creep_until_the_cup_seals(env):
    from novapick.sim.expert import CREEP_SPEED, FOLLOW_THROUGH_STEPS, ScriptedExpert

    obs, _ = env.reset(seed=4, options={"object": "medium_clear_jar_01", "split": "novel", "n_items": 1})
    expert = ScriptedExpert(env, seed=4)
    assert expert.plan.mode == "suction"
    heights, pressures = [], []
    for _ in range(120):
        action = expert.act(obs)
        if expert.phase == "creep":
            heights.append(expert._tcp()[0][2])
            pressures.append(obs["gripper_state"][0])
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["success"] and len(heights) >= 3
    drops = -np.diff(heights)
    # a guarded move at constant speed until the seal (not a move that speeds up and then
    # slows to a stop at the planned height, which the policy cannot see on a clear item)
    np.testing.assert_allclose(drops, CREEP_SPEED * R.CONTROL_DT, rtol=0.2)
    # it creeps while the cup has not sealed yet, and then only for the follow-through
    assert sum(p == 1.0 for p in pressures) == FOLLOW_THROUGH_STEPS and pressures[0] < 1.0


@pytest.mark.parametrize("name, split, mode", [("medium_clear_jar_01", "novel", "suction"),
                                               ("small_brown_toy_04", "novel", "parallel_jaw")])
def test_the_arm_holds_still_after_the_seal_or_pinch_before_lifting(env, name, split, mode):
    """The policy executes 4 predicted steps at a time: a lift right after the seal would
    let a chunk predicted *before* an expected seal end in a lift (the arm bobs up above a
    clear item instead of creeping on). So the demonstrations hold still first."""
    from novapick.sim.expert import FOLLOW_THROUGH_STEPS, SETTLE_STEPS, ScriptedExpert
    from novapick.policy.vla import EXECUTE_STEPS

    obs, _ = env.reset(seed=4, options={"object": name, "split": split, "n_items": 1})
    expert = ScriptedExpert(env, seed=4)
    assert expert.plan.mode == mode
    heights, held = [], []
    for _ in range(150):
        action = expert.act(obs)
        heights.append(expert._tcp()[0][2])
        held.append(env.unwrapped.gripper.state.held_body is not None)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["success"]
    first = held.index(True)
    if mode == "suction":   # the creep's follow-through comes first (see the next test)
        first += FOLLOW_THROUGH_STEPS
    still = np.abs(np.array(heights[first:first + SETTLE_STEPS + 1]) - heights[first])
    assert SETTLE_STEPS >= EXECUTE_STEPS and still.max() < 0.002, still   # no lift while settling
    assert heights[first + SETTLE_STEPS + 4] > heights[first] + 0.003  # then it lifts


def test_the_creep_follows_through_the_seal_so_chunks_before_it_keep_creeping(env):
    """A chunk predicted before the seal must not stop short of it: every step the creep
    takes unsealed is followed by >= EXECUTE_STEPS - 1 more steps down (the follow-through
    once the gauge says sealed), so the 4 executed steps of such a chunk go on down."""
    from novapick.sim.expert import CREEP_SPEED, FOLLOW_THROUGH_STEPS, ScriptedExpert
    from novapick.policy.vla import EXECUTE_STEPS

    obs, _ = env.reset(seed=4, options={"object": "medium_clear_jar_01", "split": "novel", "n_items": 1})
    expert = ScriptedExpert(env, seed=4)
    heights, phases, sealed = [], [], []
    for _ in range(150):
        action = expert.act(obs)
        heights.append(expert._tcp()[0][2])
        phases.append(expert.phase)
        sealed.append(obs["gripper_state"][0] == 1.0)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert info["success"] and FOLLOW_THROUGH_STEPS >= EXECUTE_STEPS - 1
    first = sealed.index(True)
    drops = -np.diff(heights[first - 1:first + FOLLOW_THROUGH_STEPS + 1])
    np.testing.assert_allclose(drops, CREEP_SPEED * R.CONTROL_DT, rtol=0.25)   # on down once sealed ...
    assert phases[first + FOLLOW_THROUGH_STEPS] == "grasp"                    # ... then the settle


def test_perturbed_episode_differs_but_keeps_clean_labels(env):
    clean = record_expert_episode(env, seed=8, object_name=None, split="known", n_items=2)
    noisy = record_expert_episode(env, seed=8, object_name=None, split="known", n_items=2, perturb=True)
    assert noisy.meta["perturbed"] and noisy.meta["success"]
    n = min(len(clean), len(noisy))
    assert not np.allclose(clean.proprio[:n], noisy.proprio[:n])
    assert np.isfinite(noisy.action).all() and np.abs(noisy.action[:, :7]).max() <= 0.95 + 1e-6


def test_expert_picks_known_and_novel_objects():
    for split in ("known", "novel"):
        summary = evaluate_expert(split, episodes=8, items=5, seed=123, image_size=32, progress=False)
        assert summary["success_rate"] >= 7 / 8, (split, summary["failure_counts"])
        assert summary["mean_cycle_time_s"] < 4.0
        assert summary["steps_per_s"] > 0


def test_results_do_not_depend_on_the_worker_count():
    one = evaluate_expert("novel", episodes=4, items=3, seed=5, image_size=32, workers=1, progress=False)
    two = evaluate_expert("novel", episodes=4, items=3, seed=5, image_size=32, workers=2, progress=False)
    key = lambda s: [(i["target_name"], i["success"], i["steps"], i["mean_jerk"]) for i in s["infos"]]  # noqa: E731
    assert key(one) == key(two)


def test_expert_eval_cli_prints_a_json_summary_last(capsys):
    expert_eval_main(["--split", "known", "--episodes", "3", "--items", "2", "--image-size", "32", "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in ("success_rate", "mean_cycle_time_s", "mean_jerk", "collision_rate", "damage_rate",
                "failure_counts", "steps_per_s", "episodes"):
        assert key in summary
    assert summary["episodes"] == 3


@pytest.mark.slow
def test_reference_pipeline_smoke_run(tmp_path):
    from novapick.pipeline import main as pipeline_main
    results = pipeline_main(["--episodes", "2", "--items", "2", "--workers", "1", "--out", str(tmp_path),
                             "--data-episodes", "4", "--data-root", str(tmp_path / "data"), "--train-steps", "2",
                             "--baseline-steps", "5", "--benchmark-runs", "3", "--grounding-scenes", "8",
                             "--clutter-episodes", "2", "--heldout-episodes", "4",
                             "--outcome-episodes", "2"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["profile"] == "quick" and saved["git_commit"]
    assert saved["components"] == "solutions" and saved["extensions"] is True
    # the expert on these fixed seeds picks every item; an untrained VLA (2 steps) none
    assert saved["expert"]["success_known"] == saved["expert"]["success_novel"] == 1.0
    assert saved["vla"]["success_known"] == saved["vla"]["success_novel"] == 0.0
    assert saved["rehearsal"]["success_novel"] == saved["rehearsal"]["success_known"] == 0.0
    assert saved["rehearsal"]["k"] == 4 and saved["rehearsal"]["known"]["episodes"] == 2
    assert saved["rehearsal"]["margin"] == 0.1
    assert saved["vla"]["novel"]["episodes"] == 2 and saved["baseline"]["novel"]["episodes"] == 2
    assert saved["vla"]["clutter_1_30"]["known"]["episodes"] == 2 and saved["config"]["clutter_episodes"] == 2
    # every failed novel episode is in exactly one failure category
    failures = saved["failures_novel"]
    assert sum(c["count"] for c in failures.values()) == 2 and all(c["mitigation"] for c in failures.values())
    for profile in ("quick", "full"):
        lat = saved["latency"][profile]["latency"]["total"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert saved["latency"]["full_p50_ms"] > saved["latency"]["quick_p50_ms"]    # DINOv2 + CLIP at 224 px
    wm = saved["world_model"]
    assert all(-1.0 <= wm[k] <= 1.0 for k in ("cosine_1_step", "cosine_5_step", "cosine_copy_previous",
                                               "cosine_random_pair"))
    # normalised errors of the grounded read-outs on held-out windows, with both references
    for name in ("proprio", "gripper", "grasp", "reward"):
        for k in range(1, 6):
            # (an untrained decoder's error can be any size: finite is what a 2-step run can promise)
            assert 0.0 <= wm[f"{name}_err_{k}_copy_last"] and 0.0 <= wm[f"{name}_err_{k}"] < float("inf")
    assert wm["proprio_err_5_copy_last"] > wm["proprio_err_1_copy_last"]   # the robot moves
    assert saved["data"]["heldout_episodes"] == 4 and wm["windows"] > 0
    assert wm["outcome_moments"] >= wm["outcome_mixed_moments"] >= 0 and "outcome_auc" in wm
    assert saved["timings"]["train_s"] > 0 and (tmp_path / "vla_quick" / "loss_curves.png").exists()
    assert (tmp_path / "expert_rollouts.gif").stat().st_size > 10_000
    assert (tmp_path / "imagination.png").stat().st_size > 10_000 and saved["artifacts"]["imagination"]
    assert results["timings"]["total_s"] > 0
    assert saved["data"]["episodes"] == 4 and len(saved["data"]["content_hash"]) == 64
    assert saved["data"]["grounding_scenes"] == 8 and saved["vla"]["training"]["grounding_scenes"] == 8


def test_hand_relative_pose_is_the_bin_pose_at_home_and_zero_at_the_grasp(env):
    """The pose head's target: the planned grasp seen from the hand. At the home pose
    (hand yaw 0) the turn still to go is the planned yaw; when the expert's jaw closes,
    the hand is at the planned grasp, so offset and turn are ~0. Unknown poses stay 0."""
    from novapick.sim.catalog import resting_extents
    from novapick.sim.expert import ScriptedExpert, grasp_pose_vector, hand_relative_pose, pose_seen_from

    env.reset(seed=1440724583, options={"object": "large_white_pouch_05", "split": "known", "n_items": 4})
    expert, spec = ScriptedExpert(env), env.unwrapped.target.spec
    pose = grasp_pose_vector(expert.plan, resting_extents(spec.geometry, spec.dims)[1])
    assert expert.plan.mode == "parallel_jaw" and abs(pose[5]) > 0.3   # a wrist turn of > 54 degrees
    home = hand_relative_pose(pose[None], R.HOME_JOINTS[None])[0]
    assert abs(home[5] - pose[5]) < 1e-3 and home[2] < -1.0            # the grasp is > 20 cm below
    np.testing.assert_array_equal(home[[3, 4, 6]], pose[[3, 4, 6]])
    while expert.phase != "grasp":
        env.step(expert.act())
    q, _ = R.arm_state(env.unwrapped.client, env.unwrapped.robot)
    at_grasp = hand_relative_pose(pose[None], q[None])[0]
    assert np.abs(at_grasp[:3]).max() < 0.05                           # < 1 cm (units of 20 cm)
    assert abs(at_grasp[5]) < 2 / 180                                  # < 2 degrees to turn
    assert not hand_relative_pose(np.zeros((2, 7)), np.zeros((2, 7))).any()
    # the simulator's own hand pose gives the same answer as forward kinematics
    tcp, quaternion = R.grasp_target_pose(env.unwrapped.client, env.unwrapped.robot)
    np.testing.assert_allclose(pose_seen_from(pose[None], tcp[None], np.array([R.tool_yaw(quaternion)])),
                               at_grasp[None], atol=1e-4)


def test_the_oracle_policy_gives_the_true_pose_in_the_chosen_columns_only(env):
    """benchmarks/bench_oracle_perception.py: the diagnosis "how much is perception"."""
    import importlib.util
    from pathlib import Path

    import torch

    from novapick.config import get_profile
    from novapick.policy.model import build_model, load_components

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_oracle_perception.py"
    spec = importlib.util.spec_from_file_location("bench_oracle_perception", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mcfg = get_profile("quick").model
    model = build_model(mcfg, load_components("solutions"))
    env.reset(seed=1440724583, options={"object": "large_white_pouch_05", "split": "known", "n_items": 4})
    assert bench.OraclePolicy(model, mcfg, None, env=env, columns=bench.PARTS["none"]).pose_override() is None
    policy = bench.OraclePolicy(model, mcfg, None, env=env, columns=bench.PARTS["hand_xy"])
    policy.reset(0)
    given = policy.pose_override()
    assert given.shape == (1, 10)
    assert not given[:, 6:8].isnan().any() and given[:, :6].isnan().all() and given[:, 8:].isnan().all()
    every = bench.OraclePolicy(model, mcfg, None, env=env, columns=bench.PARTS["all"]).pose_override()
    torch.testing.assert_close(every[:, 6:8], given[:, 6:8])
