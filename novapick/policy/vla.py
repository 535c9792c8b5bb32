"""The closed-loop VLA policy around any components' model dict (docs/contract.md).

The policy follows lerobot's shape: ``select_action`` keeps a queue of actions and
refills it from ``predict_action_chunk`` when empty: it generates a 16-step chunk and
executes the first 4 before replanning (0.2 s of open loop, Section 3.6's hint), while
the RSSM observes every step.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from novapick.backbones import tokenize
from novapick.config import ModelConfig
from novapick.data.normalize import NormStats
from novapick.data.schema import DEPTH_MAX_M
from novapick.policy.flow import euler_sample
from novapick.policy.model import condition, encode
from novapick.train.batch import GROUNDED_LAYOUT

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

    With the extensions (``mcfg.extensions``) chunks are integrated from a chosen noise
    and un-standardised; ``temperature`` scales that noise: at 0 every replan starts from
    a_0 = 0, the chunk the head considers most typical for this state, with no sampling
    jitter between replans; at 1 it samples from the learned distribution, as in
    training. Without the extensions the case study's ``flow_head.sample`` is called.

    ``rehearsal_k`` > 1 turns on world-model rehearsal: sample K candidate chunks,
    imagine 5 steps of each with the RSSM prior, score them by predicted reward plus
    grasp confidence, and execute the best. Candidate 0 is the plain policy's chunk (at
    ``temperature``), the others at ``candidate_temperature`` (1: the learned
    distribution; lower keeps them closer to the plain chunk). A candidate replaces the
    plain chunk only when its score beats the plain chunk's by more than
    ``rehearsal_margin`` (0: the best score wins, as in the case study).
    """

    def __init__(self, model: dict, mcfg: ModelConfig, stats: NormStats, device: str | torch.device = "cpu",
                 execute_steps: int = EXECUTE_STEPS, flow_steps: int = 10, rehearsal_k: int = 0, seed: int = 0,
                 temperature: float = DEFAULT_TEMPERATURE, candidate_temperature: float = 1.0,
                 rehearsal_margin: float = 0.0):
        for name, value in (("temperature", temperature), ("candidate_temperature", candidate_temperature)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not rehearsal_margin >= 0:
            raise ValueError(f"rehearsal_margin must be >= 0, got {rehearsal_margin}")
        if rehearsal_k > 1 and not all(hasattr(model["rssm"], m) for m in ("predict_reward", "decode_observation")):
            raise ValueError("rehearsal needs RSSM.predict_reward and RSSM.decode_observation (docs/contract.md)")
        self.model, self.mcfg, self.stats = model, mcfg, stats
        self.temperature, self.candidate_temperature = temperature, candidate_temperature
        self.rehearsal_margin = rehearsal_margin
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

    def snapshot(self) -> dict:
        """The policy's memory now (window, action queue, last action, RSSM state, random
        stream). With the env's snapshot it lets several futures start from one moment."""
        return {"history": list(self.history), "queue": list(self.queue), "prev_action": self.prev_action,
                "h": self.h, "z": self.z, "generator": self.generator.get_state(),
                "latencies": len(self.latencies)}

    def restore(self, snap: dict) -> None:
        """Return to the memory of :meth:`snapshot`."""
        self.history = deque(snap["history"], maxlen=self.mcfg.context_steps)
        self.queue, self.prev_action = list(snap["queue"]), snap["prev_action"]
        self.h, self.z = snap["h"], snap["z"]
        self.generator.set_state(snap["generator"])
        del self.latencies[snap["latencies"]:]

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
    def sample_chunks(self, cond: torch.Tensor, k: int) -> torch.Tensor:
        """k candidate chunks (k, 16, 10) in the action space; candidate 0 at ``temperature``."""
        head = self.model["flow_head"]
        if "action_scaler" not in self.model:         # the case study's head: its own sample()
            return head.sample(cond.expand(k, -1), self.flow_steps)
        noise = torch.randn((k, head.action_chunk_size, head.action_dim), generator=self.generator)
        noise[0] *= self.temperature    # candidate 0: the plain policy's chunk
        noise[1:] *= self.candidate_temperature
        chunks = euler_sample(head, cond.expand(k, -1), self.flow_steps, noise=noise.to(self.device))
        return self.model["action_scaler"].unnormalize(chunks)

    @torch.no_grad()
    def predict_action_chunk(self, cond: torch.Tensor) -> np.ndarray:
        """A (16, 10) chunk for the current state (best of K imagined candidates if rehearsing)."""
        k = max(1, self.rehearsal_k)
        chunks = self.sample_chunks(cond, k)
        if k == 1:
            return chunks[0].cpu().numpy()
        scores = self.rehearsal_scores(chunks)
        scores[1:] -= self.rehearsal_margin    # the plain chunk keeps its place unless clearly beaten
        return chunks[int(scores.argmax())].cpu().numpy()

    @torch.no_grad()
    def rehearsal_scores(self, chunks: torch.Tensor) -> torch.Tensor:
        """Imagine REHEARSAL_HORIZON steps of each candidate (K, 16, 10): predicted reward
        summed plus the grasp confidence, the world model's decoded "held" at its highest
        over the imagined steps. (K,)

        Why the decoder's held flag and not the grasp head: the grasp head reads an
        observation embedding, which imagined states do not have; the world model's own
        read-out of a grasp does (docs/experiments.md: it ranks executed chunks better)."""
        k = chunks.shape[0]
        rssm = self.model["rssm"]
        dream = rssm.imagine_trajectory(self.h.expand(k, -1), self.z.expand(k, -1, -1), chunks[:, :REHEARSAL_HORIZON])
        held = rssm.decode_observation(dream["h_states"], dream["z_states"])[..., GROUNDED_LAYOUT["held"]]
        return dream["rewards"].sum(1) + held.squeeze(-1).clamp(0, 1).amax(1)

    def select_action(self, obs: dict) -> np.ndarray:
        """The next action (10,): replans every ``execute_steps`` steps."""
        start = time.perf_counter()
        self.observe(obs)
        if not self.queue:
            self.queue = list(self.predict_action_chunk(self.current_condition())[: self.execute_steps])
        action = self.queue.pop(0)
        if not np.all(np.isfinite(action)):
            raise FloatingPointError(f"the policy produced a non-finite action {action}: check the flow head")
        self.prev_action = torch.as_tensor(action, device=self.device)[None].float()
        self.latencies.append(time.perf_counter() - start)
        return np.clip(action, [-1] * 7 + [-np.inf] * 3, [1] * 7 + [np.inf] * 3)
