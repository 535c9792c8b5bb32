"""Results as people read them: tables, the code version, bordered video frames."""
from __future__ import annotations

import subprocess

import numpy as np

from novapick.video import caption


def git_commit() -> str:
    """HEAD's hash, with "+dirty" when tracked files have uncommitted changes (then the
    results do not come from that commit's code alone)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        return head + ("+dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def format_table(rows: dict[str, dict]) -> str:
    """Markdown table of the Section 2 metrics, one row per evaluated system/split."""
    head = ("| system | split | success | cycle time (s) | mean jerk (rad/s^3) | collision | damage | failures |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows.items():
        system, split = name.split("/")
        fails = ", ".join(f"{k} {v}" for k, v in r["failure_counts"].items() if v) or "-"
        cycle = f"{r['mean_cycle_time_s']:.2f}" if r["mean_cycle_time_s"] is not None else "-"
        lines.append(f"| {system} | {split} | {r['success_rate']:.1%} | {cycle} | {r['mean_jerk']:.1f} "
                     f"| {r['collision_rate']:.1%} | {r['damage_rate']:.1%} | {fails} |")
    return "\n".join(lines)


def bordered(frames: list[np.ndarray], success: bool, hold: int = 5) -> list[np.ndarray]:
    """An episode's frames with a green (success) or red border; the last one held ``hold`` frames."""
    border = (40, 200, 60) if success else (220, 40, 40)
    return [caption(f, border) for f in frames + [frames[-1]] * hold]


def headline_table(r: dict) -> str:
    """The case study's README results table: baseline vs ours (and the expert)."""
    def pct(x):
        return f"{x:.1%}"
    cyc = lambda d: f"{d['mean_cycle_time_s']:.2f} s" if d.get("mean_cycle_time_s") else "-"  # noqa: E731
    return "\n".join([
        "| metric | grasp baseline | VLA (ours) | VLA + rehearsal | scripted expert |",
        "|---|---|---|---|---|",
        f"| pick success, known | {pct(r['baseline']['success_known'])} | {pct(r['vla']['success_known'])} | "
        f"{pct(r['rehearsal']['success_known'])} | "
        f"{pct(r['expert']['success_known'])} |",
        f"| pick success, novel | {pct(r['baseline']['success_novel'])} | {pct(r['vla']['success_novel'])} | "
        f"{pct(r['rehearsal']['success_novel'])} | {pct(r['expert']['success_novel'])} |",
        f"| cycle time (novel) | {cyc(r['baseline']['novel'])} | {cyc(r['vla']['novel'])} | "
        f"{cyc(r['rehearsal']['novel'])} | {cyc(r['expert']['novel'])} |",
        f"| latency p50 per chunk | - | {r['latency']['quick_p50_ms']:.1f} ms (quick) / "
        f"{r['latency']['full_p50_ms']:.0f} ms (full spec) | - | - |",
        f"| damage rate (novel) | {pct(r['baseline']['novel']['damage_rate'])} | {pct(r['vla']['novel']['damage_rate'])} "
        f"| {pct(r['rehearsal']['novel']['damage_rate'])} | {pct(r['expert']['novel']['damage_rate'])} |",
        f"| world model next-latent cosine (not informative: copy-previous scores "
        f"{r['world_model']['cosine_copy_previous']:.3f}) | - | {r['world_model']['cosine']:.3f} | - | - |",
        "",
        world_model_lines(r["world_model"]),
        "",
        f"grasp baseline backbone: {baseline_backbone(r['baseline']['training'])}",
    ])


def world_model_lines(wm: dict) -> str:
    """Imagination against "nothing changes", 5 steps ahead on held-out episodes."""
    rows = ["| imagined 5 steps ahead (held-out) | normalised error | copy last | random latent |",
            "|---|---|---|---|"]
    for name in ("proprio", "gripper", "grasp", "reward", "target_uv"):
        key = f"{name}_err_5"
        if key in wm:
            rows.append(f"| {name} | {wm[key]:.3f} | {wm[key + '_copy_last']:.3f} | {wm[key + '_random']:.3f} |")
    if "outcome_auc" in wm:
        rows += ["", f"imagined score vs real outcome (K candidates executed from one saved moment, "
                     f"{wm['outcome_moments']} moments near the target, {wm['outcome_mixed_moments']} with mixed "
                     f"outcomes): AUC {wm['outcome_auc']:.3f} same moment, {wm['outcome_auc_pooled']:.3f} pooled; "
                     f"top-scored chunk held {wm['outcome_best_held']:.1%} vs plain chunk "
                     f"{wm['outcome_plain_held']:.1%} at mixed moments"]
    return "\n".join(rows)


def baseline_backbone(training: dict) -> str:
    """How the baseline's ResNet-18 was used, in words (it decides what its figures mean)."""
    if training.get("pretrained_backbone"):
        return "ResNet-18, ImageNet weights, frozen (the case study's design)"
    if training.get("frozen_backbone"):
        return "ResNet-18, random weights, frozen (no pretrained weights here: expect ~0 %)"
    return "ResNet-18 trained from random weights with the head (no pretrained weights here)"
