"""The Section 2 metrics of a list of episode infos, as the pipeline reports them."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from novapick.metrics import success_interval, summarize_episodes


def summarize_evaluation(infos: list[dict]) -> dict:
    """pick_success_rate, its 95 % interval, mean_cycle_time (successes), mean_smoothness
    (the simulator's joint jerk, rad/s^3), collision and damage rates, failure counts,
    action jerk, median latency, per_object_success, and the infos themselves."""
    if not infos:
        raise ValueError("no episodes to summarise")
    summary = summarize_episodes(infos)
    successes = [i for i in infos if i["success"]]
    per_object: dict[str, list[bool]] = defaultdict(list)
    for info in infos:
        per_object[info["object_name"]].append(bool(info["success"]))
    low, high = success_interval(len(successes), len(infos))
    return {
        "pick_success_rate": summary["success_rate"],
        "success_interval_95": [low, high],
        "mean_cycle_time": float(np.mean([i["cycle_time_s"] for i in successes])) if successes else None,
        "mean_smoothness": summary["mean_jerk"],
        "collision_rate": summary["collision_rate"],
        "damage_rate": summary["damage_rate"],
        "failure_counts": summary["failure_counts"],
        "mean_action_jerk": float(np.mean([i["action_jerk"] for i in infos])),
        "latency_ms_p50": float(np.median([i["latency_ms_p50"] for i in infos])),
        "per_object_success": {k: float(np.mean(v)) for k, v in per_object.items()},
        "episodes": len(infos),
        "infos": infos,
    }


def format_evaluation(result: dict) -> str:
    """One line: success with its interval, cycle time, jerk, collisions, failures."""
    low, high = result["success_interval_95"]
    cycle = result["mean_cycle_time"]
    return (f"success {result['pick_success_rate']:.1%} (95% CI {low:.0%}-{high:.0%}) over {result['episodes']} "
            f"episodes | cycle {cycle if cycle is not None else float('nan'):.2f} s | jerk "
            f"{result['mean_smoothness']:.1f} rad/s^3 | collisions {result['collision_rate']:.1%} | "
            f"failures {result['failure_counts']}")
