"""Notebook 06 — closed-loop evaluation in the simulated cell (Section 3.6).

The policy follows lerobot's shape: ``select_action`` keeps a queue of actions and
refills it from ``predict_action_chunk`` when empty — it generates a 16-step chunk and
executes the first 4 before replanning (0.2 s of open loop), while the RSSM observes
every step.

    python -m solutions.evaluation --checkpoint artifacts/vla/last.pt --split novel --episodes-per-object 2
"""
from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from novapick.backbones import tokenize
from novapick.config import ModelConfig
from novapick.data.normalize import NormStats
from novapick.data.schema import DEPTH_MAX_M
from novapick.metrics import success_interval, summarize_episodes
from solutions.training import condition, encode

EXECUTE_STEPS = 4        # execute 4 of every 16 predicted steps, then replan (3.6 hint)
MAX_STEPS = 200          # Section 3.6
REHEARSAL_HORIZON = 5    # Section 2: imagine 5 steps ahead
DEFAULT_TEMPERATURE = 0.0  # flow sampling noise scale at inference (see VLAPolicy)


class VLAPolicy:
    """Closed-loop VLA: encoder (every step) -> RSSM -> flow head (every 4 steps).

    The RSSM was trained on windows of ``mcfg.context_steps`` steps that start from its
    initial state, so at a replan it runs over the same kind of window: the last
    ``context_steps`` observations and the actions executed between them. A state carried
    over a whole episode would drift outside anything seen in training.

    ``temperature`` scales the flow head's starting noise. At 0 every replan
    integrates from a_0 = 0: the chunk the head considers most typical for this state,
    with no sampling jitter between replans (measured: 74 % known / 42 % novel against
    64 % / 36 % at temperature 1, same checkpoint, 50 + 50 episodes). At 1 it samples
    from the learned distribution, as in training.

    ``rehearsal_k`` > 1 turns on world-model rehearsal: sample K candidate chunks,
    imagine 5 steps of each with the RSSM prior, score them by predicted reward plus
    grasp confidence, and execute the best. Candidate 0 is the plain policy's chunk (at
    ``temperature``), the others are drawn at temperature 1 so they differ: rehearsal can
    only change the action by preferring one of them.
    """

    def __init__(self, model: dict, mcfg: ModelConfig, stats: NormStats, device: str | torch.device = "cpu",
                 execute_steps: int = EXECUTE_STEPS, flow_steps: int = 10, rehearsal_k: int = 0, seed: int = 0,
                 temperature: float = DEFAULT_TEMPERATURE):
        if not 0.0 <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [0, 1], got {temperature}")
        self.model, self.mcfg, self.stats = model, mcfg, stats
        self.temperature = temperature
        self.device = torch.device(device)
        self.execute_steps, self.flow_steps, self.rehearsal_k = execute_steps, flow_steps, rehearsal_k
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._tokens: dict[str, torch.Tensor] = {}
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:  # same episode seed -> same sampled chunks: failures can be replayed
            self.generator.manual_seed(seed)
        self.h, self.z = self.model["rssm"].initial_state(1, self.device)
        self.prev_action = torch.zeros(1, self.mcfg.action_dim, device=self.device)
        self.history: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=self.mcfg.context_steps)
        self.queue: list[np.ndarray] = []
        self.latencies: list[float] = []

    @torch.no_grad()
    def encode_observation(self, obs: dict) -> torch.Tensor:
        """One environment observation -> observation embedding (1, obs_embed_dim)."""
        S = self.mcfg.image_size
        rgb = torch.as_tensor(obs["rgb"], device=self.device)[None]
        depth = (torch.as_tensor(obs["depth"], device=self.device)[None] / DEPTH_MAX_M).clamp(0, 1)
        if rgb.shape[-1] != S:
            rgb = F.interpolate(rgb, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
            depth = F.interpolate(depth, size=(S, S), mode="nearest")
        text = obs["instruction"]
        if text not in self._tokens:
            self._tokens[text] = tokenize(text).to(self.device)
        proprio = torch.as_tensor(self.stats.normalize_proprio(np.asarray(obs["proprio"])), device=self.device)
        state = torch.cat([proprio, torch.as_tensor(obs["gripper_state"], device=self.device)])[None]
        return encode(self.model, rgb, depth, self._tokens[text], state, true_pose=self.pose_override())

    def pose_override(self) -> torch.Tensor | None:
        """The true pose input (1, 10) to use instead of perception's estimate, NaN where
        the estimate stays; None for the real policy. Diagnostic subclasses override it
        (benchmarks/bench_oracle_perception.py)."""
        return None

    def observe(self, obs: dict) -> None:
        """Remember this step's embedding and the action that led to it."""
        self.history.append((self.encode_observation(obs), self.prev_action))

    @torch.no_grad()
    def current_condition(self) -> torch.Tensor:
        """Run the RSSM posterior over the remembered window; the flow-head conditioning (1, cond_dim)."""
        rssm = self.model["rssm"]
        h, z = rssm.initial_state(1, self.device)
        for i, (obs_embed, action) in enumerate(self.history):
            # a training window's first step saw no previous action: same here
            h, z, _ = rssm.observe_step(obs_embed, action if i else torch.zeros_like(action), h, z)
        self.h, self.z = h, z
        return condition(h, z, self.history[-1][0])

    @torch.no_grad()
    def predict_action_chunk(self, cond: torch.Tensor) -> np.ndarray:
        """A (16, 10) chunk for the current state (best of K imagined candidates if rehearsing)."""
        head, scaler = self.model["flow_head"], self.model["action_scaler"]
        k = max(1, self.rehearsal_k)
        noise = torch.randn((k, head.action_chunk_size, head.action_dim), generator=self.generator)
        noise[0] *= self.temperature    # candidate 0: the plain policy's chunk
        chunks = scaler.unnormalize(head.sample(cond.expand(k, -1), self.flow_steps, noise=noise.to(self.device)))
        if k == 1:
            return chunks[0].cpu().numpy()
        return chunks[int(self.rehearsal_scores(chunks).argmax())].cpu().numpy()

    @torch.no_grad()
    def rehearsal_scores(self, chunks: torch.Tensor) -> torch.Tensor:
        """Imagine REHEARSAL_HORIZON steps of each candidate (K, 16, 10): predicted reward
        summed plus the grasp head's confidence at the imagined end state. (K,)"""
        k = chunks.shape[0]
        dream = self.model["rssm"].imagine_trajectory(self.h.expand(k, -1), self.z.expand(k, -1, -1),
                                                      chunks[:, :REHEARSAL_HORIZON])
        h, z = dream["h_states"][:, -1], dream["z_states"][:, -1]
        # not observed: the observation embedding the world model expects in that state
        end = condition(h, z, self.model["rssm"].decode_observation(h, z))
        return dream["rewards"].sum(1) + torch.sigmoid(self.model["grasp_head"](end))

    def select_action(self, obs: dict) -> np.ndarray:
        """The next action (10,): replans every ``execute_steps`` steps."""
        start = time.perf_counter()
        self.observe(obs)
        if not self.queue:
            self.queue = list(self.predict_action_chunk(self.current_condition())[: self.execute_steps])
        action = self.queue.pop(0)
        self.prev_action = torch.as_tensor(action, device=self.device)[None].float()
        self.latencies.append(time.perf_counter() - start)
        return np.clip(action, [-1] * 7 + [-np.inf] * 3, [1] * 7 + [np.inf] * 3)


def run_episode(policy: VLAPolicy, env, seed: int, options: dict, max_steps: int = MAX_STEPS,
                frames: list | None = None, video: list | None = None, video_every: int = 2) -> dict:
    """One closed-loop episode; returns the final info plus the actions' smoothness.
    ``frames`` collects the wrist images; ``video`` third-person | wrist frames every
    ``video_every`` steps (for rollout videos)."""
    from novapick.video import side_by_side

    obs, info = env.reset(seed=seed, options=options)
    policy.reset(seed)
    actions = []
    for step in range(max_steps):
        if video is not None and step % video_every == 0:
            video.append(side_by_side(env.unwrapped.render_scene(), obs["rgb"]))
        action = policy.select_action(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        if frames is not None:
            frames.append(obs["rgb"])
        if terminated or truncated:
            break
    acts = np.array(actions)[:, :7]
    # Section 3.6 hint: jerk as the third difference of the (velocity) actions
    info["action_jerk"] = float(np.abs(np.diff(acts, n=3, axis=0)).mean()) if len(acts) > 3 else 0.0
    info["latency_ms_p50"] = float(np.median(policy.latencies) * 1000)
    return info


def plan_episodes(object_set: list, num_episodes: int, n_items: int | tuple[int, int] = (1, 5),
                  seed: int = 0) -> list[dict]:
    """The evaluation episodes: for each object, ``num_episodes`` (seed, bin size) pairs.

    Each plan depends only on (seed, object name, repeat), so splitting the objects across
    worker processes gives exactly the episodes a single process would run."""
    plans = []
    for name in object_set:
        for j in range(num_episodes):
            rng = np.random.default_rng([seed, zlib.crc32(str(name).encode()), j])
            k = int(rng.integers(n_items[0], n_items[1] + 1)) if isinstance(n_items, tuple) else int(n_items)
            plans.append({"object": name, "n_items": k, "seed": int(rng.integers(1 << 31))})
    return plans


def run_planned_episodes(policy: VLAPolicy, env, plans: list[dict], progress: bool = True,
                         max_steps: int = MAX_STEPS) -> list[dict]:
    """Run the planned episodes with ``policy``; the final info of each, with its plan."""
    catalog = env.unwrapped.catalog
    infos = []
    for plan in tqdm(plans, desc="evaluate", disable=not progress):
        options = {"object": plan["object"], "split": catalog.get(plan["object"]).split, "n_items": plan["n_items"]}
        info = run_episode(policy, env, plan["seed"], options, max_steps)
        info.update(object_name=plan["object"], seed=plan["seed"], options=options, rehearsal_k=policy.rehearsal_k)
        infos.append(info)
    return infos


def summarize_evaluation(infos: list[dict]) -> dict:
    """The Section 2 metrics of a list of episode infos (see :func:`evaluate_model`)."""
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


def print_evaluation(result: dict) -> None:
    low, high = result["success_interval_95"]
    print(f"success {result['pick_success_rate']:.1%} (95% CI {low:.0%}-{high:.0%}) over {result['episodes']} "
          f"episodes | cycle {result['mean_cycle_time'] or float('nan'):.2f} s | jerk "
          f"{result['mean_smoothness']:.1f} rad/s^3 | collisions {result['collision_rate']:.1%} | "
          f"failures {result['failure_counts']}")


def evaluate_model(model: dict, eval_env, object_set: list,
                   num_episodes: int = 100, *, mcfg: ModelConfig | None = None,
                   stats: NormStats | None = None, n_items: int | tuple[int, int] = (1, 5), seed: int = 0,
                   rehearsal_k: int = 0, progress: bool = True) -> dict:
    """Evaluate the model in the cell: ``num_episodes`` per object of ``object_set``.

    Returns pick_success_rate, mean_cycle_time, mean_smoothness (rad/s^3, the simulator's
    joint jerk), collision_rate, per_object_success, plus damage rate, failure counts,
    action jerk, latency, a 95 % interval and the per-episode infos (for error analysis).
    """
    if mcfg is None or stats is None:
        raise ValueError("evaluate_model needs mcfg= (the ModelConfig) and stats= (NormStats of the training data)")
    policy = VLAPolicy(model, mcfg, stats, rehearsal_k=rehearsal_k, seed=seed)
    plans = plan_episodes(object_set, num_episodes, n_items, seed)
    result = summarize_evaluation(run_planned_episodes(policy, eval_env, plans, progress))
    result["policy"] = policy
    print_evaluation(result)
    return result


def _evaluate_share(checkpoint: str, stats_path: str, rehearsal_k: int, seed: int, max_steps: int,
                    temperature: float, plans: list[dict]) -> list[dict]:
    """Worker process: load the policy and its own simulator, run a share of the plans."""
    from novapick.sim import make_env
    from solutions.training import load_policy_model

    torch.set_num_threads(1)  # one core per worker
    model, mcfg = load_policy_model(checkpoint)
    env = make_env(mcfg.image_size)
    policy = VLAPolicy(model, mcfg, NormStats.load(stats_path), rehearsal_k=rehearsal_k, seed=seed,
                       temperature=temperature)
    try:
        return run_planned_episodes(policy, env, plans, progress=False, max_steps=max_steps)
    finally:
        env.close()


def run_plans_in_workers(run_share, plans: list[dict], workers: int, *args) -> list[dict]:
    """Run ``run_share(*args, share)`` on ``workers`` spawned processes, each getting every
    ``workers``-th plan, and return the infos in plan order (so the result does not
    depend on the number of workers). Infos must carry 'object_name' and 'seed'."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    shares = [share for share in (plans[i::workers] for i in range(workers)) if share]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_share, *args, share) for share in shares]
        done = [f.result() for f in tqdm(futures, desc=f"{len(plans)} episodes on {workers} workers")]
    by_plan = {(i["object_name"], i["seed"]): i for share in done for i in share}
    return [by_plan[(p["object"], p["seed"])] for p in plans]


def evaluate_checkpoint(checkpoint: str | Path, object_set: list, num_episodes: int = 1, *,
                        n_items: int | tuple[int, int] = (1, 5), seed: int = 0, rehearsal_k: int = 0,
                        workers: int = 1, stats_path: str | Path | None = None, max_steps: int = MAX_STEPS,
                        temperature: float = DEFAULT_TEMPERATURE) -> dict:
    """:func:`evaluate_model` for a saved checkpoint, over ``workers`` processes (same
    episodes and results for any number of workers)."""
    checkpoint = str(checkpoint)
    stats_path = str(stats_path or Path(checkpoint).parent / "stats.json")
    plans = plan_episodes(object_set, num_episodes, n_items, seed)
    infos = run_plans_in_workers(_evaluate_share, plans, workers, checkpoint, stats_path, rehearsal_k, seed,
                                 max_steps, temperature)
    result = summarize_evaluation(infos)
    print_evaluation(result)
    return result


def main(argv: list[str] | None = None) -> dict:
    from novapick.sim.catalog import load_catalog

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--stats", help="meta/stats.json of the training data (default: from the checkpoint's dir)")
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--episodes-per-object", type=int, default=2)
    ap.add_argument("--items", type=int, default=5, help="bins of 1..ITEMS items")
    ap.add_argument("--rehearsal-k", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                    help="flow sampling noise scale: 0 = most typical chunk, 1 = sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    objects = [o.name for o in load_catalog().split(args.split)]
    result = evaluate_checkpoint(args.checkpoint, objects, args.episodes_per_object, n_items=(1, args.items),
                                 seed=args.seed, rehearsal_k=args.rehearsal_k, workers=args.workers,
                                 stats_path=args.stats, temperature=args.temperature)
    result.pop("infos")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()


@torch.no_grad()
def world_model_cosine(model: dict, dataloader, horizon: int = REHEARSAL_HORIZON, max_batches: int = 20,
                       context: int = 2) -> dict:
    """World-model prediction accuracy (Section 2 metric): cosine similarity between the
    predicted next latent (the prior's class probabilities after the real action) and the
    encoded actual one (the posterior's probabilities), one step ahead and ``horizon``
    steps ahead in pure imagination (windows need >= context + horizon steps).

    Two reference points make the number interpretable: ``cosine_copy_previous`` (predict
    that nothing changes: the posterior at t against t + 1) and ``cosine_random_pair``
    (posteriors of unrelated frames). A collapsed model scores ~1.0 on all three, so the
    metric means something only where it beats the references.
    """
    from solutions.training import _unpack

    rssm = model["rssm"]
    one, many, copy_prev, random_pair = [], [], [], []
    for b, batch in enumerate(dataloader):
        if b >= max_batches:
            break
        x = _unpack(batch, torch.device("cpu"))
        B, L = x["rgb"].shape[:2]
        if L < context + horizon:
            raise ValueError(f"windows of {L} steps; need >= {context + horizon}")
        state = torch.cat([x["proprioception"], x["gripper_state"]], -1)
        obs = encode(model, x["rgb"].flatten(0, 1), x["depth"].flatten(0, 1),
                     x["language"].repeat_interleave(L, 0), state.flatten(0, 1)).view(B, L, -1)
        acts = x["actions"][:, :, 0]
        h, z = rssm.initial_state(B, obs.device)
        prev = torch.zeros(B, acts.shape[-1])
        posts = []
        for t in range(L):
            h, z, info = rssm.observe_step(obs[:, t], prev, h, z)
            posts.append((h, z, F.softmax(info["posterior_logits"], -1).flatten(1),
                          F.softmax(info["prior_logits"], -1).flatten(1)))
            prev = acts[:, t]
        for t in range(1, L):
            one.append(F.cosine_similarity(posts[t][3], posts[t][2], dim=-1))
            copy_prev.append(F.cosine_similarity(posts[t - 1][2], posts[t][2], dim=-1))
            random_pair.append(F.cosine_similarity(posts[t][2].roll(1, 0), posts[t][2], dim=-1))
        h, z = posts[context - 1][0], posts[context - 1][1]
        for k in range(horizon):  # imagine with the real actions, never observing
            t = context + k
            h = rssm._transition(acts[:, t - 1], h, z)
            probs = F.softmax(rssm._logits(rssm.prior(h)), -1)
            z = F.one_hot(probs.argmax(-1), rssm.stoch_classes).float()
            if k == horizon - 1:
                many.append(F.cosine_similarity(probs.flatten(1), posts[t][2], dim=-1))
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return {"cosine_1_step": mean(one), f"cosine_{horizon}_step": mean(many),
            "cosine_copy_previous": mean(copy_prev), "cosine_random_pair": mean(random_pair)}
