"""World-model prediction accuracy (Section 2's metric), through the RSSM's public API."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from novapick.policy.model import encode
from novapick.policy.vla import REHEARSAL_HORIZON
from novapick.train.batch import unpack_batch


@torch.no_grad()
def world_model_cosine(model: dict, dataloader, horizon: int = REHEARSAL_HORIZON, max_batches: int = 20,
                       context: int = 2) -> dict:
    """Cosine similarity between the predicted next latent (the prior's class
    probabilities after the real action) and the encoded actual one (the posterior's
    probabilities), one step ahead and ``horizon`` steps ahead in pure imagination
    (windows need >= context + horizon steps). The model should be in eval mode.

    Two reference points make the number interpretable: ``cosine_copy_previous`` (predict
    that nothing changes: the posterior at t against t + 1) and ``cosine_random_pair``
    (posteriors of unrelated frames). A collapsed model scores ~1.0 on all three, so the
    metric means something only where it beats the references.
    """
    rssm = model["rssm"]
    one, many, copy_prev, random_pair = [], [], [], []
    for b, batch in enumerate(dataloader):
        if b >= max_batches:
            break
        x = unpack_batch(batch, torch.device("cpu"))
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
        for k in range(horizon - 1):  # imagine with the real actions, never observing
            h, z = rssm.imagine_step(acts[:, context + k - 1], h, z)
        # the last imagined step's prior (observe_step computes it before it looks at the observation)
        t = context + horizon - 1
        _, _, info = rssm.observe_step(obs[:, t], acts[:, t - 1], h, z)
        many.append(F.cosine_similarity(F.softmax(info["prior_logits"], -1).flatten(1), posts[t][2], dim=-1))
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return {"cosine_1_step": mean(one), f"cosine_{horizon}_step": mean(many),
            "cosine_copy_previous": mean(copy_prev), "cosine_random_pair": mean(random_pair)}
