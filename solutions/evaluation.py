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
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from novapick.backbones import tokenize
from novapick.config import ModelConfig
from novapick.data.normalize import NormStats
from novapick.data.schema import DEPTH_MAX_M
from novapick.metrics import summarize_episodes
from solutions.training import condition, encode

EXECUTE_STEPS = 4        # execute 4 of every 16 predicted steps, then replan (3.6 hint)
MAX_STEPS = 200          # Section 3.6
REHEARSAL_HORIZON = 5    # Section 2: imagine 5 steps ahead


class VLAPolicy:
    """Closed-loop VLA: encoder -> RSSM (observe every step) -> flow head (every 4 steps).

    ``rehearsal_k`` > 1 turns on world-model rehearsal: sample K candidate chunks,
    imagine 5 steps of each with the RSSM prior, score them by predicted reward plus
    grasp confidence, and execute the best.
    """

    def __init__(self, model: dict, mcfg: ModelConfig, stats: NormStats, device: str | torch.device = "cpu",
                 execute_steps: int = EXECUTE_STEPS, flow_steps: int = 10, rehearsal_k: int = 0, seed: int = 0):
        self.model, self.mcfg, self.stats = model, mcfg, stats
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
        self.queue: list[np.ndarray] = []
        self.latencies: list[float] = []

    @torch.no_grad()
    def observe(self, obs: dict) -> torch.Tensor:
        """Encode one observation and advance the RSSM posterior; returns the conditioning (1, 1792)."""
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
        obs_embed = encode(self.model, rgb, depth, self._tokens[text], state)
        self.h, self.z, _ = self.model["rssm"].observe_step(obs_embed, self.prev_action, self.h, self.z)
        return condition(self.h, self.z, obs_embed)

    @torch.no_grad()
    def predict_action_chunk(self, cond: torch.Tensor) -> np.ndarray:
        """A (16, 10) chunk for the current state (best of K imagined candidates if rehearsing)."""
        head, scaler = self.model["flow_head"], self.model["action_scaler"]
        k = max(1, self.rehearsal_k)
        noise = torch.randn((k, head.action_chunk_size, head.action_dim), generator=self.generator)
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
        obs_embed = torch.zeros(k, self.mcfg.obs_embed_dim, device=chunks.device)  # not observed: imagined
        end = condition(dream["h_states"][:, -1], dream["z_states"][:, -1], obs_embed)
        return dream["rewards"].sum(1) + torch.sigmoid(self.model["grasp_head"](end))

    def select_action(self, obs: dict) -> np.ndarray:
        """The next action (10,): replans every ``execute_steps`` steps."""
        start = time.perf_counter()
        cond = self.observe(obs)
        if not self.queue:
            self.queue = list(self.predict_action_chunk(cond)[: self.execute_steps])
        action = self.queue.pop(0)
        self.prev_action = torch.as_tensor(action, device=self.device)[None].float()
        self.latencies.append(time.perf_counter() - start)
        return np.clip(action, [-1] * 7 + [-np.inf] * 3, [1] * 7 + [np.inf] * 3)


def run_episode(policy: VLAPolicy, env, seed: int, options: dict, max_steps: int = MAX_STEPS,
                frames: list | None = None) -> dict:
    """One closed-loop episode; returns the final info plus the actions' smoothness."""
    obs, info = env.reset(seed=seed, options=options)
    policy.reset(seed)
    actions = []
    for _ in range(max_steps):
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


def evaluate_model(model: dict, eval_env, object_set: list,
                   num_episodes: int = 100, *, mcfg: ModelConfig | None = None,
                   stats: NormStats | None = None, n_items: int | tuple[int, int] = (1, 5), seed: int = 0,
                   rehearsal_k: int = 0, progress: bool = True) -> dict:
    """Evaluate the model in the cell: ``num_episodes`` per object of ``object_set``.

    Returns pick_success_rate, mean_cycle_time, mean_smoothness (rad/s^3, the simulator's
    joint jerk), collision_rate, per_object_success, plus damage rate, failure counts,
    action jerk, latency and the per-episode infos (for error analysis).
    """
    if mcfg is None or stats is None:
        raise ValueError("evaluate_model needs mcfg= (the ModelConfig) and stats= (NormStats of the training data)")
    policy = VLAPolicy(model, mcfg, stats, rehearsal_k=rehearsal_k, seed=seed)
    rng = np.random.default_rng(seed)
    infos, per_object = [], defaultdict(list)
    total = len(object_set) * num_episodes
    bar = tqdm(total=total, desc="evaluate", disable=not progress)
    for i, name in enumerate(object_set):
        for j in range(num_episodes):
            k = int(rng.integers(n_items[0], n_items[1] + 1)) if isinstance(n_items, tuple) else int(n_items)
            ep_seed = int(rng.integers(1 << 31))
            options = {"object": name, "split": eval_env.unwrapped.catalog.get(name).split, "n_items": k}
            info = run_episode(policy, eval_env, ep_seed, options)
            info.update(object_name=name, seed=ep_seed, options=options, rehearsal_k=rehearsal_k)
            infos.append(info)
            per_object[name].append(bool(info["success"]))
            bar.update(1)
    bar.close()
    summary = summarize_episodes(infos)
    successes = [i for i in infos if i["success"]]
    result = {
        "pick_success_rate": summary["success_rate"],
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
        "policy": policy,
    }
    print(f"success {result['pick_success_rate']:.1%} over {len(infos)} episodes | cycle "
          f"{result['mean_cycle_time'] or float('nan'):.2f} s | jerk {result['mean_smoothness']:.1f} rad/s^3 | "
          f"collisions {result['collision_rate']:.1%} | failures {summary['failure_counts']}")
    return result


def main(argv: list[str] | None = None) -> dict:
    from pathlib import Path

    from novapick.sim import make_env
    from novapick.sim.catalog import load_catalog
    from solutions.training import load_policy_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--stats", help="meta/stats.json of the training data (default: from the checkpoint's dir)")
    ap.add_argument("--split", choices=["known", "novel"], default="known")
    ap.add_argument("--episodes-per-object", type=int, default=2)
    ap.add_argument("--items", type=int, default=5)
    ap.add_argument("--rehearsal-k", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    model, mcfg = load_policy_model(args.checkpoint)
    stats = NormStats.load(args.stats or Path(args.checkpoint).parent / "stats.json")
    env = make_env(mcfg.image_size)
    objects = [o.name for o in load_catalog().split(args.split)]
    result = evaluate_model(model, env, objects, args.episodes_per_object, mcfg=mcfg, stats=stats,
                            n_items=(1, args.items), seed=args.seed, rehearsal_k=args.rehearsal_k)
    result.pop("infos"), result.pop("policy")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()


@torch.no_grad()
def world_model_cosine(model: dict, dataloader, horizon: int = REHEARSAL_HORIZON, max_batches: int = 20,
                       context: int = 2) -> dict:
    """World-model prediction accuracy (Section 2 metric): cosine similarity between the
    imagined next latent (prior class probabilities after the real action) and the
    encoded actual one (posterior probabilities), one step ahead and ``horizon`` steps
    ahead in pure imagination. Windows must have >= context + horizon steps."""
    from solutions.training import _unpack

    rssm = model["rssm"]
    one, many = [], []
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
        h, z = posts[context - 1][0], posts[context - 1][1]
        for k in range(horizon):  # imagine with the real actions, never observing
            t = context + k
            h = rssm._transition(acts[:, t - 1], h, z)
            probs = F.softmax(rssm._logits(rssm.prior(h)), -1)
            z = F.one_hot(probs.argmax(-1), rssm.stoch_classes).float()
            if k == horizon - 1:
                many.append(F.cosine_similarity(probs.flatten(1), posts[t][2], dim=-1))
    return {"cosine_1_step": float(torch.cat(one).mean()), f"cosine_{horizon}_step": float(torch.cat(many).mean())}
