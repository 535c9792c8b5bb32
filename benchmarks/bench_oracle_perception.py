"""How much of a VLA checkpoint's gap is perception? Evaluate it with parts of its
explicit grasp-pose input replaced by the truth.

The policy reads perception's estimates of the grasp (see ``novapick.policy.model.extend_observation``):
from the bin-frame head x, y, z, roll, pitch and width, from the hand-relative heads the
offset (dx, dy) to the grasp and the wrist turn still to go (yaw). Here, at every step,
the chosen parts come instead from the scripted expert's plan for the same bin, seen from
the hand's current pose. The episodes are the pipeline's (``make reference``: 2 per object,
bins of 1-5 items, seed 7), so the row ``none`` reproduces its VLA figures:

    python benchmarks/bench_oracle_perception.py --checkpoint artifacts/vla_quick/last.pt --parts none all hand_xy

Reading it: if ``all`` is far above ``none``, better perception is worth more than a
better controller; the part whose truth closes most of that gap is the one to improve.
About 2 minutes per part and split on 2 workers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # solutions/ is not an installed package

from novapick.data.normalize import NormStats  # noqa: E402
from novapick.sim import make_env, robot as R  # noqa: E402
from novapick.sim.catalog import load_catalog, resting_extents  # noqa: E402
from novapick.sim.expert import ScriptedExpert, grasp_pose_vector, pose_seen_from  # noqa: E402
from novapick.evaluate.episodes import plan_episodes, run_planned_episodes  # noqa: E402
from novapick.evaluate.summary import summarize_evaluation  # noqa: E402
from novapick.evaluate.workers import run_plans_in_workers  # noqa: E402
from novapick.policy.model import load_policy_model, teacher_pose  # noqa: E402
from novapick.policy.vla import DEFAULT_TEMPERATURE, VLAPolicy  # noqa: E402

# columns of the controller's explicit pose input (novapick.policy.model.teacher_pose)
PARTS = {"none": [], "all": list(range(10)), "bin": list(range(6)), "hand_xy": [6, 7], "yaw": [8, 9]}


class OraclePolicy(VLAPolicy):
    """The VLA policy, with the true grasp pose in the columns ``columns`` of its pose input."""

    def __init__(self, *args, env=None, columns: list[int] = (), **kwargs):
        self.env, self.columns = env, list(columns)
        super().__init__(*args, **kwargs)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.planned_pose = None   # read from the expert at the first step (the bin is set up by then)

    def pose_override(self) -> torch.Tensor | None:
        if not self.columns:
            return None
        world = self.env.unwrapped
        if self.planned_pose is None:
            spec = world.target.spec
            width = resting_extents(spec.geometry, spec.dims)[1]
            self.planned_pose = grasp_pose_vector(ScriptedExpert(self.env).plan, width)[None]
        tcp, quaternion = R.grasp_target_pose(world.client, world.robot)
        seen_from_hand = pose_seen_from(self.planned_pose, tcp[None], np.array([R.tool_yaw(quaternion)]))
        true = teacher_pose(self.model, torch.as_tensor(self.planned_pose), torch.as_tensor(seen_from_hand),
                            p=1.0, noise=0.0)
        keep_estimate = torch.ones(true.shape[1], dtype=torch.bool)
        keep_estimate[self.columns] = False
        return true.masked_fill(keep_estimate, float("nan"))


def _oracle_share(checkpoint: str, columns: list[int], seed: int, plans: list[dict]) -> list[dict]:
    """Worker process: the oracle policy and its own simulator on a share of the plans."""
    torch.set_num_threads(1)
    model, mcfg = load_policy_model(checkpoint)
    stats = NormStats.load(Path(checkpoint).parent / "stats.json")
    env = make_env(mcfg.image_size)
    policy = OraclePolicy(model, mcfg, stats, env=env, columns=columns, seed=seed, temperature=DEFAULT_TEMPERATURE)
    try:
        return run_planned_episodes(policy, env, plans, progress=False)
    finally:
        env.close()


def evaluate_with_oracle(checkpoint: str, part: str, split: str, episodes_per_object: int = 2, seed: int = 7,
                         workers: int = 2) -> dict:
    """Success rate and failure counts of ``checkpoint`` with the true ``part`` of the pose."""
    names = [o.name for o in load_catalog().split(split)]
    plans = plan_episodes(names, episodes_per_object, (1, 5), seed)
    infos = run_plans_in_workers(_oracle_share, plans, workers, checkpoint, PARTS[part], seed)
    result = summarize_evaluation(infos)
    return {"part": part, "split": split, "success_rate": result["pick_success_rate"],
            "episodes": result["episodes"], "failures": result["failure_counts"]}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=["none", "all", "hand_xy"])
    ap.add_argument("--splits", nargs="+", choices=("known", "novel"), default=["known", "novel"])
    ap.add_argument("--episodes-per-object", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    if not Path(args.checkpoint).exists():
        raise SystemExit(f"checkpoint not found: {args.checkpoint} (train one with python -m novapick.train)")
    rows = []
    for part in args.parts:
        for split in args.splits:
            row = evaluate_with_oracle(args.checkpoint, part, split, args.episodes_per_object,
                                       workers=args.workers)
            print(f"true {part:8s} {split:6s} success {row['success_rate']:6.1%} failures {row['failures']}",
                  flush=True)
            rows.append(row)
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
