"""Where do a VLA checkpoint's picks go wrong? A per-episode grasp diagnosis.

For each evaluation episode (the pipeline's plans: one per object of ``--split``, bins of
1-5 items, seed 7) the policy runs as in evaluation while the scripted expert's plan for
the same bin says where the grasp *should* be. Per episode it prints the outcome, the
lowest point the grasp target reached relative to that planned grasp (horizontal
distance ``dxy`` and height above it ``dz``), the gripper mode the policy commanded
there against the expert's mode, and how many steps each mode was commanded:

    python benchmarks/diagnose_grasps.py --checkpoint artifacts/vla_quick/last.pt --split novel --objects 50

Reading it: ``dxy`` of 10+ cm is a grounding error (the wrong item); small ``dxy`` with
``dz`` of 1-4 cm on a suction pick is a hover above the surface; a mode that differs from
the expert's is a wrong mode choice. The last line is a JSON summary with these counts.

``--trace NAME[,NAME]`` also prints, for those objects, every step within 8 cm above the
planned grasp (height, horizontal offset, vertical speed of the grasp target, commanded
mode, suction gauge, actions left in the policy's queue) and, at a safety stop, which
robot links pressed on which bodies: how the 4-executed-steps bobbing above clear items
and the early descent collisions were found.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pybullet as p
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # solutions/ is not an installed package

from novapick.data.normalize import NormStats  # noqa: E402
from novapick.sim import make_env, robot as R  # noqa: E402
from novapick.sim.catalog import load_catalog  # noqa: E402
from novapick.sim.expert import ScriptedExpert  # noqa: E402
from novapick.evaluate.episodes import plan_episodes  # noqa: E402
from novapick.policy.model import load_policy_model  # noqa: E402
from novapick.policy.vla import MAX_STEPS, VLAPolicy  # noqa: E402

GROUNDING_ERROR_M = 0.10   # lowest point this far from the planned grasp: it went for another item
TRACE_BELOW_M = 0.08       # --trace prints the steps with the grasp target this close above the plan


def contact_report(env) -> list[tuple[str, str, float]]:
    """(robot link, touched body, normal force N) for every robot contact above 5 N."""
    u = env.unwrapped
    names = {body: spec.name for body, spec in u.specs.items()}    # the bin's items; others: floor, bin walls
    names[u.target.body] = f"target {names.get(u.target.body, '')}"
    links = {j: p.getJointInfo(u.robot, j, physicsClientId=u.client)[12].decode()
             for j in range(p.getNumJoints(u.robot, physicsClientId=u.client))}
    return [(links.get(c[3], str(c[3])), names.get(c[2], f"body {c[2]}"), round(c[9], 1))
            for c in p.getContactPoints(bodyA=u.robot, physicsClientId=u.client) if c[9] > 5.0]


def diagnose_episode(env, policy: VLAPolicy, plan: dict, split: str, trace: bool = False) -> dict:
    """Run one episode; return its outcome and the closest approach to the planned grasp
    (``trace``: print the steps near the item, see the module docstring)."""
    obs, info = env.reset(seed=plan["seed"], options={"object": plan["object"], "split": split,
                                                      "n_items": plan["n_items"]})
    policy.reset(plan["seed"])
    expert_plan = ScriptedExpert(env).plan          # where the expert would grasp this bin
    lowest = {"dz": np.inf}
    modes: Counter = Counter()
    previous_z = None
    for step in range(MAX_STEPS):
        action = policy.select_action(obs)
        mode = R.GRIPPER_MODES[int(np.argmax(action[R.NUM_ARM_JOINTS:]))]
        modes[mode] += 1
        offset = R.grasp_target_pose(env.unwrapped.client, env.unwrapped.robot)[0] - expert_plan.point
        if offset[2] < lowest["dz"]:
            lowest = {"dz": float(offset[2]), "dxy": float(np.hypot(*offset[:2])), "mode": mode, "step": step}
        if trace and offset[2] < TRACE_BELOW_M:
            vz = 0.0 if previous_z is None else (offset[2] - previous_z) / R.CONTROL_DT
            print(f"  step {step:3d} dz={offset[2] * 100:5.2f} cm dxy={np.hypot(*offset[:2]) * 100:4.1f} cm "
                  f"vz={vz * 100:6.1f} cm/s mode={mode[:4]} gauge={obs['gripper_state'][0]:.2f} "
                  f"queued={len(policy.queue)}")
        previous_z = offset[2]
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    if trace and info.get("safety_stop"):
        print(f"  safety stop ({info['safety_stop']}): {contact_report(env)}")
    return {"object": plan["object"], "n_items": plan["n_items"], "outcome": info["failure"] or "success",
            "expert_mode": expert_plan.mode, **lowest, "steps": step + 1, "modes": dict(modes)}


def summarise(rows: list[dict]) -> dict:
    failed = [r for r in rows if r["outcome"] != "success"]
    return {"episodes": len(rows), "success_rate": 1 - len(failed) / max(len(rows), 1),
            "failures": dict(Counter(r["outcome"] for r in failed)),
            "failed_far_from_target": sum(r["dxy"] > GROUNDING_ERROR_M for r in failed),
            "failed_with_wrong_mode": sum(r["mode"] in ("suction", "parallel_jaw") and r["mode"] != r["expert_mode"]
                                          for r in failed),
            "failed_hovering_1_to_5_cm_above": sum(r["dxy"] <= GROUNDING_ERROR_M and 0.01 <= r["dz"] <= 0.05
                                                   for r in failed)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--split", choices=("known", "novel"), default="novel")
    ap.add_argument("--objects", type=int, default=50, help="first N objects of the split, one episode each")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trace", default="", help="comma-separated object names to trace step by step")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if not Path(args.checkpoint).exists():
        raise SystemExit(f"checkpoint not found: {args.checkpoint} (train one with python -m novapick.train)")
    model, mcfg = load_policy_model(args.checkpoint)
    stats = NormStats.load(Path(args.checkpoint).parent / "stats.json")
    policy = VLAPolicy(model, mcfg, stats, seed=args.seed)
    env = make_env(mcfg.image_size)
    names = [o.name for o in load_catalog().split(args.split)][:args.objects]
    traced = set(filter(None, args.trace.split(",")))
    if traced - set(names):
        raise SystemExit(f"--trace: not among the first {args.objects} {args.split} objects: "
                         f"{sorted(traced - set(names))}")
    rows = []
    for plan in plan_episodes(names, 1, (1, 5), args.seed):
        r = diagnose_episode(env, policy, plan, args.split, trace=plan["object"] in traced)
        rows.append(r)
        print(f"{r['object'][:24]:24s} n={r['n_items']} {r['outcome']:12s} expert={r['expert_mode'][:4]} "
              f"lowest: dxy={r['dxy'] * 100:4.1f} cm dz={r['dz'] * 100:5.1f} cm mode={r['mode'][:4]} "
              f"step={r['step']:3d}/{r['steps']} modes={r['modes']}", flush=True)
    env.close()
    summary = summarise(rows)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
