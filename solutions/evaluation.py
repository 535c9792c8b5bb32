"""Notebook 06 — closed-loop evaluation in the simulated cell (Section 3.6).

The policy (:class:`novapick.policy.vla.VLAPolicy`) encodes every observation, updates
the RSSM, and every 4 steps samples a 16-step chunk from the flow head; the episode API
(:mod:`novapick.evaluate.episodes`) runs it in the cell. What is written here: the loop
over objects and episodes, the Section 2 metrics and the summary table.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm import tqdm

from novapick.config import ModelConfig
from novapick.data.normalize import NormStats
from novapick.evaluate.episodes import plan_episodes, plan_options, run_episode
from novapick.policy.vla import VLAPolicy


def aggregate_metrics(infos: list[dict]) -> dict:
    """The five Section 2 metrics of a list of episode infos: success rate, mean cycle
    time (of the successful picks, seconds), mean smoothness (joint jerk, rad/s^3),
    collision rate, and success per object."""
    per_object: dict[str, list[bool]] = defaultdict(list)
    for info in infos:
        per_object[info["object_name"]].append(bool(info["success"]))
    cycle_times = [i["cycle_time_s"] for i in infos if i["success"] and i["cycle_time_s"] is not None]
    return {
        "pick_success_rate": float(np.mean([bool(i["success"]) for i in infos])),
        "mean_cycle_time": float(np.mean(cycle_times)) if cycle_times else None,
        "mean_smoothness": float(np.mean([i["mean_jerk"] for i in infos])),
        "collision_rate": float(np.mean([bool(i["collided"]) for i in infos])),
        "per_object_success": {name: float(np.mean(ok)) for name, ok in per_object.items()},
    }


def print_summary_table(metrics: dict, episodes: int) -> None:
    """The metrics as a two-column table, then the five objects picked least often."""
    cycle = metrics["mean_cycle_time"]
    rows = [("episodes", f"{episodes}"), ("pick success", f"{metrics['pick_success_rate']:.1%}"),
            ("mean cycle time", f"{cycle:.2f} s" if cycle is not None else "n/a (no success)"),
            ("mean smoothness", f"{metrics['mean_smoothness']:.1f} rad/s^3"),
            ("collision rate", f"{metrics['collision_rate']:.1%}")]
    print("\n".join(f"{name:<18}{value:>18}" for name, value in rows))
    hardest = sorted(metrics["per_object_success"].items(), key=lambda kv: kv[1])[:5]
    print("hardest objects: " + ", ".join(f"{name} {rate:.0%}" for name, rate in hardest))


def evaluate_model(model: dict, eval_env, object_set: list,
                   num_episodes: int = 100, *, mcfg: ModelConfig | None = None,
                   stats: NormStats | None = None, n_items: int | tuple[int, int] = (1, 5), seed: int = 0,
                   rehearsal_k: int = 0, progress: bool = True) -> dict:
    """Evaluate the model in the cell: ``num_episodes`` per object of ``object_set``.

    Returns pick_success_rate, mean_cycle_time, mean_smoothness, collision_rate and
    per_object_success (Section 2), plus 'infos' (one per episode, for error analysis)
    and 'policy' (to replay failures). ``mcfg`` and ``stats`` (the training data's
    normalisation) configure the policy; each episode's bin size and scene come from
    ``seed``, so two models evaluated with the same seed see the same episodes.
    """
    if mcfg is None or stats is None:
        raise ValueError("evaluate_model needs mcfg= (the ModelConfig) and stats= (NormStats of the training data)")
    for module in model.values():
        module.eval()
    policy = VLAPolicy(model, mcfg, stats, rehearsal_k=rehearsal_k, seed=seed)
    infos = []
    for plan in tqdm(plan_episodes(object_set, num_episodes, n_items, seed), desc="evaluate", disable=not progress):
        options = plan_options(eval_env, plan)
        info = run_episode(policy, eval_env, plan["seed"], options)     # until done or 200 steps
        infos.append({**info, "object_name": plan["object"], "seed": plan["seed"], "options": options})
    metrics = aggregate_metrics(infos)
    print_summary_table(metrics, len(infos))
    return {**metrics, "episodes": len(infos), "infos": infos, "policy": policy}
