"""`make reference`: the course's main job, end to end, in one command.

Stages:

1. generate the synthetic demonstrations of the profile's data mix (resumable) and
   validate them (`novapick.data.check`), and a few held-out episodes (another seed),
2. train the VLA built from a components module (the reference's, ``solutions``, or a
   student's: encoder + RSSM + flow head + grasp head; resumes) and the grasp-pose
   baseline,
3. evaluate the VLA, the baseline (its pose executed by the scripted motion) and the
   scripted expert (upper bound) on the known and the novel objects; the VLA also with
   world-model rehearsal (K = 4 imagined chunks) on the novel objects, and in clutter,
4. world-model prediction on the held-out episodes (imagined proprioception, gripper,
   grasp, reward and target position against copy-last and random-latent baselines;
   the next-latent cosine for continuity), failure analysis with example frames,
   inference benchmark of the quick model and of the full-spec architecture,
5. print the results tables, write `artifacts/results.json`, loss curves and videos.

    python -m novapick.pipeline --profile quick                        # CPU, about 20 minutes here
    python -m novapick.pipeline --spec-exact --out artifacts/spec      # the case study's model exactly
    python -m novapick.pipeline --components my_components            # a student's components
    python -m novapick.pipeline --episodes 2 --data-episodes 4 --train-steps 2 --data-root /tmp/d   # smoke
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from novapick.config import get_profile
from novapick.data.check import check_dataset
from novapick.data.dataset import make_dataloader
from novapick.data.generate import generate
from novapick.data.mix import DataMix
from novapick.data.normalize import NormStats
from novapick.data.scenes import SceneConfig, generate_scenes
from novapick.evaluate.baseline import run_baseline_episode, summarize_baseline, train_baseline
from novapick.evaluate.episodes import plan_episodes, run_episode
from novapick.evaluate.outcome import episode_moments, summarise_moments
from novapick.evaluate.workers import evaluate_checkpoint, run_plans_in_workers
from novapick.evaluate.world_model import (latent_rollouts, plot_imagination, world_model_cosine,
                                          world_model_prediction)
from novapick.metrics import summarize_episodes
from novapick.policy.model import build_model, load_components, load_policy_model
from novapick.policy.vla import DEFAULT_TEMPERATURE, VLAPolicy
from novapick.reporting import bordered, format_table, git_commit, headline_table
from novapick.sim import make_env
from novapick.sim.catalog import load_catalog
from novapick.sim.expert_eval import episode_options, evaluate_expert
from novapick.sim.rollout import run_expert_episode
from novapick.train.harness import train
from novapick.video import save_video


@dataclass
class PipelineConfig:
    profile: str = "quick"
    episodes: int = 100         # per split (2 per object)
    items: int = 5              # bins of 1..items items
    image_size: int = 64        # wrist camera resolution
    workers: int = 2
    seed: int = 0
    video_episodes: int = 3
    out: str = "artifacts"
    data_episodes: int = 600    # synthetic demonstrations (known split)
    shape_jitter: float = 0.3   # ... with every item's dimensions scaled by 1 +- this
    balance_modes: bool = True  # ... half of them jaw picks (3 seeds: 91 % / 81 % against 90 % / 79 %, docs/experiments.md)
    grounding_scenes: int = 6000  # first looks at other bins for the grounding loss (novapick.data.scenes)
    data_root: str = "data"
    train_steps: int = 4000     # VLA gradient steps (quick: 9-15 min on 2 CPU cores, by machine)
    baseline_steps: int = 300  # offline the ResNet-18 trains too (~80 s; 600 steps: 149 s, same success)
    rehearsal_k: int = 4        # candidate chunks imagined per replan in the rehearsal run
    rehearsal_margin: float = 0.1  # ... a candidate replaces the plain chunk only when its score is this much higher
    clutter_episodes: int = 50  # per split, in bins of 1..30 items
    heldout_episodes: int = 40  # never trained on: the world model's prediction is measured there
    outcome_episodes: int = 30  # novel episodes whose near-target moments rank imagined against real outcomes
    benchmark_runs: int = 30
    components: str = "solutions"   # the module whose components are trained and evaluated
    extensions: bool = True     # False: the case study's model and loss exactly (docs/contract.md)

    def __post_init__(self) -> None:
        if self.profile not in ("quick", "full"):
            raise ValueError(f"profile must be 'quick' or 'full', got {self.profile!r}")
        if self.grounding_scenes < 0:
            raise ValueError(f"grounding_scenes must be >= 0, got {self.grounding_scenes}")
        if self.episodes < 1 or not 1 <= self.items <= 30:
            raise ValueError(f"need episodes >= 1 and 1 <= items <= 30, got {self.episodes}, {self.items}")


PROFILES = {"quick": dict(episodes=100, items=5, image_size=64, data_episodes=600, train_steps=4000),
            "full": dict(episodes=200, items=10, image_size=224, data_episodes=20_000, train_steps=200_000,
                         grounding_scenes=0)}   # 20,000 demonstrations are 20,000 first looks already


def record_video(cfg: PipelineConfig, out: Path) -> Path:
    """A few expert episodes from the third-person camera, green border = success."""
    env = make_env(cfg.image_size)
    frames: list[np.ndarray] = []
    for i in range(cfg.video_episodes):
        split = "known" if i % 2 == 0 else "novel"
        seed, options = episode_options(split, i, cfg.seed + 1000, cfg.items, fixed_items=False)
        info, _, ep_frames = run_expert_episode(env, seed, options, record=False, video_every=2)
        frames += bordered(ep_frames, info["success"])
    env.close()
    return save_video(frames, out / "expert_rollouts.gif", fps=10)


def record_vla_video(cfg: PipelineConfig, policy, out: Path) -> Path:
    """The trained VLA on a few evaluation-style episodes (known and novel objects), third
    person | wrist view, green border = success."""
    env = make_env(policy.mcfg.image_size)
    frames: list[np.ndarray] = []
    for i in range(cfg.video_episodes):
        split = "known" if i % 2 == 0 else "novel"
        seed, options = episode_options(split, i, cfg.seed + 2000, cfg.items, fixed_items=False)
        video: list[np.ndarray] = []
        info = run_episode(policy, env, seed, options, video=video)
        frames += bordered(video, info["success"])
    env.close()
    return save_video(frames, out / "vla_rollouts.gif", fps=10)


def make_data(cfg: PipelineConfig) -> dict:
    """Stage 1: the synthetic training demonstrations (resumes if already there), validated."""
    mix = DataMix(synthetic_episodes=cfg.data_episodes, image_size=cfg.image_size, seed=cfg.seed,
                  shape_jitter=cfg.shape_jitter, balance_modes=cfg.balance_modes, root=cfg.data_root)
    root = Path(mix.directories()[0])
    info = generate(mix.generation_config(), root, workers=cfg.workers)
    check = check_dataset(root)
    if check["problems"]:
        raise SystemExit(f"generated data in {root} failed validation: {check['problems'][:5]}")
    scenes = {"scenes": 0}
    if cfg.grounding_scenes:
        scenes = generate_scenes(SceneConfig(cfg.grounding_scenes, "known", cfg.seed, cfg.image_size,
                                             shape_jitter=cfg.shape_jitter), root, workers=cfg.workers)
        print(f"grounding scenes: {scenes['scenes']} in {scenes['seconds']:.0f} s, "
              f"{scenes['bytes'] / 1e6:.0f} MB, target in view {scenes['in_view']:.1%}")
    # held-out episodes (another seed: other bins, poses and instructions), only for
    # measuring the world model's predictions on what it never trained on
    held_out = replace(mix, synthetic_episodes=cfg.heldout_episodes, seed=cfg.seed + 1000)
    held_out_root = Path(held_out.directories()[0])
    generate(held_out.generation_config(), held_out_root, workers=cfg.workers)
    return {"dir": str(root), "heldout_dir": str(held_out_root), "heldout_episodes": cfg.heldout_episodes,
            "episodes": info["episodes"], "frames": info["frames"],
            "expert_success": info["expert_success_rate"], "content_hash": info["content_hash"],
            "bytes": info["bytes_on_disk"], "grounding_scenes": scenes["scenes"],
            "grounding_scenes_s": scenes.get("seconds", 0.0)}


def _row(summary: dict) -> dict:
    keys = ("success_rate", "mean_cycle_time_s", "mean_jerk", "collision_rate", "damage_rate", "failure_counts")
    return {k: summary[k] for k in keys}


def evaluate_vla(cfg: PipelineConfig, ckpt: Path, rehearsal_k: int = 0, splits=("known", "novel"),
                 items: int | None = None) -> dict:
    """The VLA on each split, ``cfg.episodes`` episodes per split spread over its 50
    objects, in bins of 1..items items, over ``cfg.workers`` processes."""
    per_object = max(1, cfg.episodes // 50)
    out = {}
    for split in splits:
        names = [o.name for o in load_catalog().split(split)][: cfg.episodes]
        res = evaluate_checkpoint(ckpt, names, per_object, n_items=(1, items or cfg.items), seed=cfg.seed + 7,
                                  rehearsal_k=rehearsal_k, workers=cfg.workers, rehearsal_margin=cfg.rehearsal_margin)
        out[split] = {**_row(summarize_episodes(res["infos"])), "latency_ms_p50": res["latency_ms_p50"],
                      "success_interval_95": res["success_interval_95"],
                      "per_object_success": res["per_object_success"], "episodes": res["episodes"],
                      "_results": res}
    return out


def _baseline_share(state: dict, image_size: int, components: str, plans: list[dict]) -> list[dict]:
    """Worker process: the baseline (weights from ``state``) on a share of the plans."""
    torch.set_num_threads(1)
    model = importlib.import_module(components).GraspBaseline(pretrained=False)
    model.load_state_dict(state)
    model.eval()
    env = make_env(image_size)
    try:
        return [run_baseline_episode(model, env, plan) for plan in plans]
    finally:
        env.close()


def _outcome_share(checkpoint: str, seed: int, k: int, plans: list[dict]) -> list[dict]:
    """Worker process: the imagined-vs-real outcome moments of a share of the plans
    (novapick.evaluate.outcome's protocol)."""
    torch.set_num_threads(1)
    model, mcfg = load_policy_model(checkpoint)
    policy = VLAPolicy(model, mcfg, NormStats.load(Path(checkpoint).parent / "stats.json"), seed=seed)
    env = make_env(mcfg.image_size)
    try:
        return [{"object_name": plan["object"], "seed": plan["seed"],
                 "moments": episode_moments(policy, env, plan, k)} for plan in plans]
    finally:
        env.close()


def evaluate_baseline_parallel(cfg: PipelineConfig, model, split: str) -> dict:
    """The grasp baseline on the same planned episodes as the VLA, over cfg.workers processes."""
    names = [o.name for o in load_catalog().split(split)][: cfg.episodes]
    plans = plan_episodes(names, max(1, cfg.episodes // 50), (1, cfg.items), cfg.seed + 7)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    return summarize_baseline(run_plans_in_workers(_baseline_share, plans, cfg.workers, state, cfg.image_size,
                                                   cfg.components))


def optional_component(cfg: PipelineConfig, name: str):
    """A component the later notebooks add (GraspBaseline, analyze_failures,
    benchmark_inference); None, said out loud, when the module does not have it yet."""
    found = getattr(importlib.import_module(cfg.components), name, None)
    if found is None:
        print(f"{cfg.components} has no {name}: its stage is skipped (results.json says so)")
    return found


class Laps:
    """Wall-clock seconds per stage, printed as each ends."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.start = self.t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.t0
        self.t0 = now
        print(f"[{name}] {self.timings[name]:.0f} s")


def evaluate_all(cfg: PipelineConfig, ckpt: Path, baseline, laps: Laps) -> tuple[dict, dict]:
    """Stage 3: every system on both splits; the table rows and the VLA's raw results."""
    rows: dict[str, dict] = {}
    vla = evaluate_vla(cfg, ckpt)
    rows["vla/known"], rows["vla/novel"] = vla["known"], vla["novel"]
    laps.lap("vla_eval_s")
    rehearsal = evaluate_vla(cfg, ckpt, rehearsal_k=cfg.rehearsal_k)
    rows["vla+rehearsal/known"], rows["vla+rehearsal/novel"] = rehearsal["known"], rehearsal["novel"]
    laps.lap("rehearsal_eval_s")
    clutter = evaluate_vla(replace(cfg, episodes=cfg.clutter_episodes), ckpt, items=30)
    for split in ("known", "novel"):
        rows[f"vla-clutter-1-30/{split}"] = clutter[split]
    laps.lap("clutter_eval_s")
    if baseline is not None:
        for split in ("known", "novel"):
            rows[f"baseline/{split}"] = evaluate_baseline_parallel(cfg, baseline, split)
        laps.lap("baseline_eval_s")
    for split in ("known", "novel"):
        summary = evaluate_expert(split, cfg.episodes, cfg.items, cfg.seed, cfg.image_size, cfg.workers)
        summary.pop("infos")
        rows[f"expert/{split}"] = summary
    laps.lap("expert_eval_s")
    return rows, vla


def analyse(cfg: PipelineConfig, data: dict, ckpt: Path, vla: dict, out: Path, laps: Laps) -> dict:
    """Stage 4: world-model prediction, failure analysis, inference benchmark."""
    model, mcfg = load_policy_model(ckpt)
    # context steps observed, then 5 imagined (the rehearsal horizon)
    context = min(3, mcfg.context_steps)
    windows = make_dataloader(data["dir"], batch_size=16, seq_len=context + 5, image_size=mcfg.image_size,
                              shuffle=True, seed=cfg.seed + 1)
    stats = NormStats.load(ckpt.parent / "stats.json")
    held_out = make_dataloader(data["heldout_dir"], batch_size=16, seq_len=context + 5, image_size=mcfg.image_size,
                               shuffle=True, seed=cfg.seed + 2, stats=stats)
    found = {"world_model": {
        **world_model_prediction(model, windows, held_out, context=context, horizon=5, max_batches=10),
        **world_model_cosine(model, held_out, horizon=5, max_batches=10, context=context)}}
    found["imagination_plot"] = plot_imagination(latent_rollouts(model, next(iter(held_out)), context, 5),
                                                 out / "imagination.png", context)
    # failures are replayed in this process (same episode seeds) to save example frames
    policy = VLAPolicy(model, mcfg, stats, seed=cfg.seed + 7)
    if cfg.outcome_episodes:
        names = [o.name for o in load_catalog().split("novel")][: cfg.outcome_episodes]
        plans = plan_episodes(names, max(1, cfg.outcome_episodes // 50), (1, cfg.items), cfg.seed + 11)
        per_episode = run_plans_in_workers(_outcome_share, plans, cfg.workers, str(ckpt), cfg.seed + 7,
                                           max(2, cfg.rehearsal_k))
        found["world_model"].update(summarise_moments([m for e in per_episode for m in e["moments"]]))
    found["policy"] = policy
    analyze_failures = optional_component(cfg, "analyze_failures")
    if analyze_failures is not None:
        env = make_env(mcfg.image_size)
        found["failures"] = analyze_failures({**vla["novel"]["_results"], "policy": policy}, model, env,
                                             out_dir=out / "failures")
        env.close()
    laps.lap("analysis_s")
    benchmark_inference = optional_component(cfg, "benchmark_inference")
    if benchmark_inference is not None:
        found["bench_quick"] = benchmark_inference(model, torch.device("cpu"), 5, cfg.benchmark_runs, mcfg=mcfg)
        full = replace(get_profile("full").model, pretrained=False,   # latency does not depend on the weights
                       extensions=cfg.extensions)
        found["bench_full"] = benchmark_inference(build_model(full, load_components(cfg.components)),
                                                  torch.device("cpu"), 2, max(5, cfg.benchmark_runs // 3),
                                                  mcfg=full, flow_steps_curve=(1, 5, 10))
        laps.lap("benchmark_s")
    return found


def _clean(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def collect_results(cfg: PipelineConfig, commit: str, data: dict, rows: dict, train_summary: dict,
                    baseline_train: dict | None, found: dict, artifacts: dict, timings: dict) -> dict:
    """Stage 5: everything measured, in the layout of results.json."""
    skipped = "skipped: the components module has none"
    results = {
        "git_commit": commit, "profile": cfg.profile, "config": asdict(cfg),
        "components": cfg.components, "extensions": cfg.extensions,
        "seeds": {"pipeline": cfg.seed, "data": cfg.seed, "training": cfg.seed, "evaluation": cfg.seed + 7},
        "data": data,
        "vla": {"success_known": rows["vla/known"]["success_rate"], "success_novel": rows["vla/novel"]["success_rate"],
                "sample_temperature": DEFAULT_TEMPERATURE,
                "known": _clean(rows["vla/known"]), "novel": _clean(rows["vla/novel"]), "training": train_summary,
                "clutter_1_30": {"success_known": rows["vla-clutter-1-30/known"]["success_rate"],
                                 "success_novel": rows["vla-clutter-1-30/novel"]["success_rate"],
                                 "known": _clean(rows["vla-clutter-1-30/known"]),
                                 "novel": _clean(rows["vla-clutter-1-30/novel"])}},
        "rehearsal": {"success_known": rows["vla+rehearsal/known"]["success_rate"],
                      "success_novel": rows["vla+rehearsal/novel"]["success_rate"], "k": cfg.rehearsal_k,
                      "margin": cfg.rehearsal_margin,
                      "known": _clean(rows["vla+rehearsal/known"]), "novel": _clean(rows["vla+rehearsal/novel"])},
        "baseline": skipped if baseline_train is None else {
            "success_known": rows["baseline/known"]["success_rate"],
            "success_novel": rows["baseline/novel"]["success_rate"], "training": baseline_train,
            "known": rows["baseline/known"], "novel": rows["baseline/novel"]},
        "expert": {"success_known": rows["expert/known"]["success_rate"],
                   "success_novel": rows["expert/novel"]["success_rate"],
                   "known": rows["expert/known"], "novel": rows["expert/novel"]},
        "world_model": {"cosine": found["world_model"]["cosine_1_step"],
                        "cosine_note": "not informative: copying the previous latent scores as high",
                        **found["world_model"]},   # proprio_err_5, gripper_err_5, ... and their references
        "latency": skipped if "bench_quick" not in found else {
            "quick_p50_ms": found["bench_quick"]["latency"]["total"]["p50"],
            "full_p50_ms": found["bench_full"]["latency"]["total"]["p50"],
            "quick": found["bench_quick"], "full": found["bench_full"]},
        "failures_novel": found.get("failures", skipped),
        "timings": timings,
        "artifacts": artifacts,
    }
    return results


def run(cfg: PipelineConfig) -> dict:
    """All five stages; the results (also written to ``cfg.out``/results.json)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()   # the code this run starts with
    laps = Laps()
    data = make_data(cfg)
    laps.lap("data_s")
    train_summary = train([data["dir"]], out / "vla_quick", cfg.profile, steps=cfg.train_steps, seed=cfg.seed,
                          components=cfg.components, extensions=cfg.extensions)
    laps.lap("train_s")
    ckpt = out / "vla_quick" / "last.pt"
    baseline, baseline_train = None, None
    baseline_cls = optional_component(cfg, "GraspBaseline")
    if baseline_cls is not None:
        baseline, baseline_train = train_baseline([data["dir"]], baseline_cls, steps=cfg.baseline_steps,
                                                  seed=cfg.seed)
        laps.lap("baseline_train_s")
    rows, vla = evaluate_all(cfg, ckpt, baseline, laps)
    found = analyse(cfg, data, ckpt, vla, out, laps)
    artifacts = {"video": str(record_video(cfg, out)), "vla_video": str(record_vla_video(cfg, found["policy"], out)),
                 "loss_curves": str(out / "vla_quick" / "loss_curves.png"), "checkpoint": str(ckpt),
                 "imagination": str(found["imagination_plot"]),
                 "failure_frames": str(out / "failures")}
    laps.timings["total_s"] = time.perf_counter() - laps.start
    results = collect_results(cfg, commit, data, rows, train_summary, baseline_train, found, artifacts,
                              laps.timings)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\ndata: {data['episodes']} episodes / {data['frames']} frames in {data['dir']} "
          f"(expert success {data['expert_success']:.1%}, hash {data['content_hash'][:12]}...)")
    print("\n" + format_table({k: _row(v) for k, v in rows.items()}))
    print("\n" + headline_table(results))
    print(f"\nwrote {out / 'results.json'} and {artifacts['video']} in {laps.timings['total_s']:.0f} s")
    return results


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=list(PROFILES), default="quick")
    ap.add_argument("--episodes", type=int, help="per split (default: the profile's)")
    ap.add_argument("--items", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="artifacts")
    ap.add_argument("--data-episodes", type=int, help="synthetic demonstrations (default: the profile's)")
    ap.add_argument("--train-steps", type=int, help="VLA gradient steps (default: the profile's)")
    ap.add_argument("--baseline-steps", type=int)
    ap.add_argument("--benchmark-runs", type=int)
    ap.add_argument("--clutter-episodes", type=int, help="per split, in bins of 1..30 items (default: 50)")
    ap.add_argument("--heldout-episodes", type=int, help="held-out demonstrations for the world model's "
                    "prediction figures (default: 40)")
    ap.add_argument("--outcome-episodes", type=int, help="novel episodes for the imagined-vs-real outcome "
                    "ranking (default: 30; 0 = skip)")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--components", default="solutions",
                    help="module with the components to train (default: the hidden reference, solutions)")
    ap.add_argument("--spec-exact", action="store_true",
                    help="the case study's model and loss exactly, without the reference policy's extensions")
    ap.add_argument("--grounding-scenes", type=int, help="first looks at other bins for the grounding loss "
                    "(default: the profile's; 0 = none)")
    args = ap.parse_args(argv)
    settings = dict(PROFILES[args.profile])
    settings.update({k: v for k, v in (("episodes", args.episodes), ("items", args.items),
                                       ("data_episodes", args.data_episodes), ("train_steps", args.train_steps),
                                       ("baseline_steps", args.baseline_steps),
                                       ("benchmark_runs", args.benchmark_runs),
                                       ("clutter_episodes", args.clutter_episodes),
                                       ("heldout_episodes", args.heldout_episodes),
                                       ("outcome_episodes", args.outcome_episodes),
                                       ("grounding_scenes", args.grounding_scenes)) if v is not None})
    cfg = PipelineConfig(profile=args.profile, workers=args.workers, seed=args.seed, out=args.out,
                         data_root=args.data_root, components=args.components,
                         extensions=not args.spec_exact, **settings)
    return run(cfg)


if __name__ == "__main__":
    main()
