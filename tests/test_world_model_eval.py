"""The world model's prediction figures (novapick.evaluate.world_model) on oracles.

Synthetic windows whose joint angles integrate the executed actions; the "camera"
shows the robot state in its first pixels. An RSSM that copies its state when it
imagines must score exactly the copy-last baseline; one that integrates the actions
as the world does must beat it; a random other window's state must do worse.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from novapick.evaluate.world_model import fit_readout, latent_rollouts, plot_imagination, world_model_prediction
from novapick.train.batch import GROUNDED_DIM

S, B, L = 8, 32, 8


def windows(seed: int, batches: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        actions = 0.5 * torch.randn(B, L, 16, 10, generator=gen)
        proprio = torch.zeros(B, L, 14)
        proprio[:, 0] = torch.randn(B, 14, generator=gen)
        for t in range(1, L):              # angles follow the previous step's action; velocities wander
            proprio[:, t, :7] = proprio[:, t - 1, :7] + actions[:, t - 1, 0, :7]
            proprio[:, t, 7:] = proprio[:, t - 1, 7:] + 0.1 * torch.randn(B, 7, generator=gen)
        gripper = torch.rand(B, L, 2, generator=gen)
        rgb = torch.zeros(B, L, 3, S, S)
        rgb[:, :, 0, 0, :] = proprio[..., :S]          # the state in the picture's first rows
        rgb[:, :, 0, 1, :6] = proprio[..., S:]
        rgb[:, :, 0, 1, 6:] = gripper
        out.append({"rgb": rgb, "depth": torch.zeros(B, L, 1, S, S), "language": torch.zeros(B, L, 77).long(),
                    "actions": actions, "proprioception": proprio, "gripper_state": gripper,
                    "rewards": proprio[..., 0], "grasp": (gripper[..., 0] > 0.5).float(),
                    "target_uv": torch.cat([proprio[..., 1:3], torch.ones(B, L, 1)], -1)})
    return out


class PixelEncoder(nn.Module):
    def forward(self, rgb, depth, language):
        return rgb[:, 0, :2].flatten(1)                   # (N, 16): the state shown in the picture


class OracleRSSM(nn.Module):
    """h = the observation; imagining either keeps h or adds the action to the angles."""

    def __init__(self, integrates: bool):
        super().__init__()
        self.integrates = integrates

    def initial_state(self, batch_size, device):
        return torch.zeros(batch_size, 16), torch.zeros(batch_size, 1, 1)

    def observe_step(self, obs_embed, action, h_prev, z_prev):
        return obs_embed, z_prev, {}

    def imagine_step(self, action, h_prev, z_prev):
        h = h_prev.clone()
        if self.integrates:
            h[:, :7] += action[:, :7]
        return h, z_prev

    def decode_observation(self, h, z):         # the grounded layout: proprio, gripper, held, depth
        held = (h[:, 14:15] > 0.5).float()
        return torch.cat([h, held, torch.zeros(len(h), GROUNDED_DIM - 17)], -1)

    def predict_reward(self, h, z):
        return h[:, 0]


def figures(integrates: bool) -> dict:
    model = {"encoder": PixelEncoder(), "rssm": OracleRSSM(integrates)}
    return world_model_prediction(model, windows(0), windows(1), context=3, horizon=5)


def test_an_rssm_that_copies_scores_exactly_the_copy_last_baseline():
    wm = figures(integrates=False)
    for k in range(1, 6):
        assert wm[f"proprio_err_{k}"] == pytest.approx(wm[f"proprio_err_{k}_copy_last"], rel=1e-2, abs=1e-3)
        assert wm[f"gripper_err_{k}"] == pytest.approx(wm[f"gripper_err_{k}_copy_last"], rel=1e-2, abs=1e-3)
        # the linear probe on the latent state agrees with the decoder here
        assert wm[f"proprio_probe_err_{k}"] == pytest.approx(wm[f"proprio_err_{k}_copy_last"], rel=5e-2, abs=1e-2)
    assert wm["windows"] == 3 * B


def test_an_rssm_that_integrates_the_actions_beats_copy_last_and_random_does_worse():
    wm = figures(integrates=True)
    for k in range(1, 6):
        assert wm[f"proprio_err_{k}"] < 0.8 * wm[f"proprio_err_{k}_copy_last"]     # the angles are exact now
        assert wm[f"proprio_err_{k}_random"] > wm[f"proprio_err_{k}_copy_last"]
        assert wm[f"proprio_probe_err_{k}"] < 0.8 * wm[f"proprio_err_{k}_copy_last"]
        assert wm[f"reward_err_{k}"] < 1e-6          # the reward head reads the exact angle
    # errors grow with the horizon for copy-last (the velocities wander further)
    assert wm["proprio_err_5_copy_last"] > wm["proprio_err_1_copy_last"]


def test_the_readout_is_a_ridge_regression_that_recovers_a_linear_map():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=gen)
    w = torch.randn(6, 2, generator=gen)
    predict = fit_readout(x, x @ w + 3.0, ridge=1e-6)
    torch.testing.assert_close(predict(x[:5]), x[:5] @ w + 3.0, atol=1e-3, rtol=1e-3)


def test_windows_too_short_for_context_and_horizon_are_refused():
    model = {"encoder": PixelEncoder(), "rssm": OracleRSSM(False)}
    with pytest.raises(ValueError, match="need >= context \\+ horizon"):
        world_model_prediction(model, windows(0, 1), windows(1, 1), context=4, horizon=5)


def test_an_rssm_without_a_decoder_is_measured_by_the_probe():
    class BareRSSM(nn.Module):                  # the required methods only (docs/contract.md)
        def __init__(self):
            super().__init__()
            self.inner = OracleRSSM(True)

        def initial_state(self, *args):
            return self.inner.initial_state(*args)

        def observe_step(self, *args):
            return self.inner.observe_step(*args)

        def imagine_step(self, *args):
            return self.inner.imagine_step(*args)

    model = {"encoder": PixelEncoder(), "rssm": BareRSSM()}
    wm = world_model_prediction(model, windows(0), windows(1), context=3, horizon=5)
    assert wm["proprio_err_5"] == wm["proprio_probe_err_5"] < 0.8 * wm["proprio_err_5_copy_last"]


def test_the_imagination_figure_draws_real_against_imagined(tmp_path):
    model = {"encoder": PixelEncoder(), "rssm": OracleRSSM(True)}
    rollouts = latent_rollouts(model, windows(0, 1)[0], context=3, horizon=5)
    assert rollouts["decoded_imagined"]["proprio"].shape == (B, 5, 14)
    # the integrating oracle imagines the joint angles exactly: what the figure shows
    torch.testing.assert_close(rollouts["decoded_imagined"]["proprio"][..., :7],
                               rollouts["targets"]["proprio"][:, 3:, :7])
    path = plot_imagination(rollouts, tmp_path / "imagination.png", context=3, windows=2)
    assert path.stat().st_size > 10_000
