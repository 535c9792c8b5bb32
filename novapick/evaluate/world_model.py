"""World-model prediction accuracy (Section 2's metric), through the RSSM's public API."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from novapick.policy.model import encode
from novapick.policy.vla import REHEARSAL_HORIZON
from novapick.train.batch import GROUNDED_LAYOUT, unpack_batch


def encode_windows(model: dict, batch, min_steps: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """A batch of windows -> (the unpacked batch, observation embeddings (B, L, D), the
    action executed at each frame (B, L, 10)); windows must have >= ``min_steps`` steps."""
    x = unpack_batch(batch, torch.device("cpu"))
    B, L = x["rgb"].shape[:2]
    if L < min_steps:
        raise ValueError(f"windows of {L} steps; need >= context + horizon = {min_steps}")
    state = torch.cat([x["proprioception"], x["gripper_state"]], -1)
    obs = encode(model, x["rgb"].flatten(0, 1), x["depth"].flatten(0, 1),
                 x["language"].repeat_interleave(L, 0), state.flatten(0, 1)).view(B, L, -1)
    return x, obs, x["actions"][:, :, 0]


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
        x, obs, acts = encode_windows(model, batch, context + horizon)
        B, L = obs.shape[:2]
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


# ------------------------------------------------ grounded prediction (issue: a world model that predicts)

# What the imagined states are asked about: name -> (batch key, columns). Everything a
# pick depends on and the simulator really recorded; none of it is a learned embedding
# a collapsed model could match trivially.
GROUNDED = {"proprio": ("proprioception", slice(None)),      # 7 joint angles + 7 velocities (normalised)
            "gripper": ("gripper_state", slice(None)),       # suction pressure, jaw aperture
            "grasp": ("grasp", None),                        # 1 while the target is held
            "reward": ("rewards", None),
            "target_uv": ("target_uv", slice(0, 2))}         # where the target is in the wrist image


def grounded_targets(batch: dict) -> dict[str, torch.Tensor]:
    """The grounded quantities of a batch of windows: name -> (B, L, d) float."""
    out = {}
    for name, (key, cols) in GROUNDED.items():
        value = batch[key].float()
        out[name] = value[..., None] if cols is None else value[..., cols]
    return out


# What the world model itself decodes: name -> its columns of RSSM.decode_observation
# (novapick.train.batch.GROUNDED_LAYOUT); reward comes from RSSM.predict_reward
DECODED = {"proprio": GROUNDED_LAYOUT["proprio"], "gripper": GROUNDED_LAYOUT["gripper"],
           "grasp": GROUNDED_LAYOUT["held"]}


def _features(h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The latent state as one vector: [h (N, det), z (N, stoch * classes)]."""
    return torch.cat([h, z.flatten(1)], -1)


def _decoded(rssm, h: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the world model says about a state: name -> (N, d), from its own decoder and
    reward head."""
    out = {}
    if hasattr(rssm, "decode_observation"):     # optional read-outs (docs/contract.md): else the probe
        grounded = rssm.decode_observation(h, z)
        out = {name: grounded[:, cols] for name, cols in DECODED.items()}
    if hasattr(rssm, "predict_reward"):
        out["reward"] = rssm.predict_reward(h, z)[:, None]
    return out


@torch.no_grad()
def latent_rollouts(model: dict, batch, context: int, horizon: int) -> dict:
    """One batch of windows (L >= context + horizon): observe every step (posterior
    states, for fitting the read-outs) and, from the state after ``context`` observed
    steps, imagine ``horizon`` steps under the executed actions (the prior only).

    Returns {'posterior': (B, L, F), 'imagined': (B, horizon, F), 'decoded_posterior' /
    'decoded_imagined': what the world model decodes from them (name -> (B, L or
    horizon, d)), 'targets': name -> (B, L, d), 'in_view': (B, L)}; imagined step k
    (0-based) is frame ``context + k``."""
    rssm = model["rssm"]
    x, obs, acts = encode_windows(model, batch, context + horizon)
    B, L = obs.shape[:2]
    h, z = rssm.initial_state(B, obs.device)
    prev, posterior, decoded_posterior, start = torch.zeros(B, acts.shape[-1]), [], [], None
    for t in range(L):
        h, z, _ = rssm.observe_step(obs[:, t], prev, h, z)
        posterior.append(_features(h, z))
        decoded_posterior.append(_decoded(rssm, h, z))
        if t == context - 1:
            start = (h, z)
        prev = acts[:, t]
    h, z = start
    imagined, decoded_imagined = [], []
    for k in range(horizon):                        # frame context + k follows the action at context + k - 1
        h, z = rssm.imagine_step(acts[:, context - 1 + k], h, z)
        imagined.append(_features(h, z))
        decoded_imagined.append(_decoded(rssm, h, z))
    stack = lambda steps: {n: torch.stack([s[n] for s in steps], 1) for n in steps[0]}  # noqa: E731
    return {"posterior": torch.stack(posterior, 1), "imagined": torch.stack(imagined, 1),
            "decoded_posterior": stack(decoded_posterior), "decoded_imagined": stack(decoded_imagined),
            "targets": grounded_targets(x), "in_view": x["target_uv"][..., 2] > 0.5}


def fit_readout(features: torch.Tensor, targets: torch.Tensor, ridge: float = 1.0):
    """A ridge-regression read-out from latent states (N, F) to a quantity (N, d),
    fitted in closed form on standardised features; returns predict(features) -> (N, d).

    Why a probe: it asks what the latent state *contains*, for any RSSM that implements
    the contract, without trusting a decoder the model trained itself."""
    mean, std = features.mean(0), features.std(0).clamp(min=1e-4)
    x = torch.cat([(features - mean) / std, torch.ones(len(features), 1)], 1).double()
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    eye[-1, -1] = 0.0                               # the bias is not shrunk
    w = torch.linalg.solve(x.T @ x + ridge * eye, x.T @ targets.double())

    def predict(f: torch.Tensor) -> torch.Tensor:
        return (torch.cat([(f - mean) / std, torch.ones(len(f), 1)], 1).double() @ w).float()
    return predict


def _normalised_error(prediction: torch.Tensor, truth: torch.Tensor, variance: torch.Tensor) -> float:
    """Mean over dimensions of MSE / variance (0: perfect; 1: as good as the mean)."""
    return float(((prediction - truth).pow(2).mean(0) / variance).mean())


@torch.no_grad()
def world_model_prediction(model: dict, fit_loader, test_loader, context: int = 3,
                           horizon: int = REHEARSAL_HORIZON, max_batches: int = 10) -> dict:
    """How well imagination predicts what really happened, on ``test_loader``'s windows
    (held-out episodes).

    For each quantity of :data:`GROUNDED` and each horizon k = 1..``horizon``, the
    normalised error (MSE / variance of the quantity on the test windows) of what the
    k-step imagined state says, beside two references: copying the last observed value
    (``*_copy_last``: "nothing changes") and the same read-out of the posterior state
    of a random other window at the same step (``*_random``). A world model that
    predicts beats copy-last where things change.

    Two read-outs: the world model's own (``<name>_err_<k>``: its decoder for
    proprioception, gripper and grasp, its reward head for reward; :data:`DECODED`), and
    a linear probe fitted on ``fit_loader``'s posterior states (``<name>_probe_err_<k>``,
    for every quantity; the only read-out of ``target_uv``, which counts only frames
    where the target is in view), which asks what the imagined state contains without
    trusting the model's decoder. Keys: '<name>_err_<k>', '<name>_err_<k>_copy_last',
    '<name>_err_<k>_random', '<name>_probe_err_<k>[_random]', and 'windows'."""
    fit = [latent_rollouts(model, b, context, horizon) for b, _ in zip(fit_loader, range(max_batches))]
    test = [latent_rollouts(model, b, context, horizon) for b, _ in zip(test_loader, range(max_batches))]
    cat = lambda runs, key: torch.cat([r[key] for r in runs] if key else runs)  # noqa: E731
    fit_features = cat(fit, "posterior").flatten(0, 1)
    imagined, posterior = cat(test, "imagined"), cat(test, "posterior")
    in_view = cat(test, "in_view")
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.randperm(len(posterior), generator=generator)
    out: dict[str, float] = {"windows": len(posterior)}
    decoded = {n: cat([r["decoded_imagined"][n] for r in test], None) for n in test[0]["decoded_imagined"]}
    decoded_posterior = {n: cat([r["decoded_posterior"][n] for r in test], None) for n in decoded}
    for name in GROUNDED:
        fit_target = torch.cat([r["targets"][name] for r in fit]).flatten(0, 1)
        fit_mask = torch.ones(len(fit_target), dtype=torch.bool)
        if name == "target_uv":
            fit_mask = torch.cat([r["in_view"] for r in fit]).flatten()
        readout = fit_readout(fit_features[fit_mask], fit_target[fit_mask])
        truth_all = torch.cat([r["targets"][name] for r in test])                     # (N, L, d)
        for k in range(1, horizon + 1):
            t = context + k - 1
            keep = torch.ones(len(truth_all), dtype=torch.bool)
            if name == "target_uv":                 # seen at the last observed step and at t
                keep = in_view[:, t] & in_view[:, context - 1]
            if keep.sum() < 2:
                continue
            truth = truth_all[keep, t]
            variance = truth.var(0).clamp(min=1e-6)
            probe = _normalised_error(readout(imagined[keep, k - 1]), truth, variance)
            out[f"{name}_probe_err_{k}"] = probe
            out[f"{name}_probe_err_{k}_random"] = _normalised_error(readout(posterior[shuffled][keep, t]),
                                                                    truth, variance)
            out[f"{name}_err_{k}_copy_last"] = _normalised_error(truth_all[keep, context - 1], truth, variance)
            if name in decoded:                     # the world model's own decoder says it
                out[f"{name}_err_{k}"] = _normalised_error(decoded[name][keep, k - 1], truth, variance)
                out[f"{name}_err_{k}_random"] = _normalised_error(decoded_posterior[name][shuffled][keep, t],
                                                                  truth, variance)
            else:                                   # nothing decodes it: the probe is the figure
                out[f"{name}_err_{k}"] = probe
                out[f"{name}_err_{k}_random"] = out[f"{name}_probe_err_{k}_random"]
    return out


# What plot_imagination draws: (title, quantity of GROUNDED, column)
IMAGINATION_PANELS = (("joint 1 angle (normalised)", "proprio", 0), ("joint 2 angle (normalised)", "proprio", 1),
                      ("suction pressure", "gripper", 0), ("jaw aperture (m)", "gripper", 1),
                      ("target held", "grasp", 0), ("reward", "reward", 0))


def plot_imagination(rollouts: dict, path: Path, context: int, windows: int = 3) -> Path:
    """Imagined against real, the figure to look at before any number: for the first
    ``windows`` windows of one :func:`latent_rollouts` batch, each panel of
    :data:`IMAGINATION_PANELS` draws what the simulator recorded (black), what the model
    decodes from its posterior when it observes every frame (blue, dashed: the
    reconstruction) and what it decodes from the states it imagines after ``context``
    observed steps (orange, from the last observed state on). A model that predicts
    keeps the orange line on the black one; "nothing changes" would be a flat orange
    line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in IMAGINATION_PANELS if p[1] in rollouts["decoded_imagined"]]
    n = min(windows, len(rollouts["posterior"]))
    fig, axes = plt.subplots(n, len(panels), figsize=(3 * len(panels), 2.4 * n), squeeze=False)
    L, horizon = rollouts["posterior"].shape[1], rollouts["imagined"].shape[1]
    frames = np.arange(L)
    for row in range(n):
        for ax, (title, name, col) in zip(axes[row], panels):
            real = rollouts["targets"][name][row, :, col].cpu().numpy()
            observed = rollouts["decoded_posterior"][name][row, :, col].cpu().numpy()
            imagined = rollouts["decoded_imagined"][name][row, :, col].cpu().numpy()
            ax.plot(frames, real, "k-", lw=2, label="real")
            ax.plot(frames, observed, "b--", lw=1, label="decoded (observing)")
            ax.plot(frames[context - 1:context + horizon], np.r_[observed[context - 1], imagined], "o-",
                    color="tab:orange", ms=3, label="decoded (imagined)")
            ax.axvline(context - 0.5, color="grey", lw=0.5)
            ax.set_title(title if row == 0 else "", fontsize=9)
            ax.set_xlabel("frame" if row == n - 1 else "")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{context} observed frames, then {horizon} imagined under the executed actions", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
