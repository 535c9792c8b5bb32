"""Tests of novapick's own model parts: backbones, the extension heads and losses, the
flow extensions and model assembly (the harness's side of docs/contract.md)."""
import os

import numpy as np
import pytest
import torch

from novapick.backbones import SmallTextEncoder, tokenize
from novapick.config import ModelConfig, get_profile
from novapick.policy.flow import CleanChunkParametrization, euler_sample, extended_flow_loss
from novapick.policy.heads import GraspPointHead, GraspPoseHead, attention_centre, grasp_pose_features, grounding_loss
from novapick.policy.model import build_model, encode, extend_observation, load_components, teacher_pose
from novapick.train.extras import CLIP_SPECIAL_TOKENS, drop_words
from solutions.flow_head import FlowMatchingActionHead

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test touches the network
REFERENCE = load_components("solutions")


def test_build_model_gives_the_case_study_dict_or_the_extended_one_with_the_profile_sizes():
    cfg = get_profile("quick").model
    model = build_model(cfg, REFERENCE)
    assert list(model)[:5] == ["encoder", "proprio", "rssm", "flow_head", "grasp_head"]
    assert model["rssm"].det_dim == cfg.det_dim and model["flow_head"].head.cond_dim == cfg.cond_dim
    exact = build_model(ModelConfig(**{**vars(cfg), "extensions": False}), REFERENCE)
    assert set(exact) == {"encoder", "rssm", "flow_head", "grasp_head"}
    assert isinstance(exact["flow_head"], FlowMatchingActionHead)      # the student's head, unwrapped
    with pytest.raises(ImportError, match="lacks"):
        load_components("novapick.layers")


def test_a_missing_config_keyword_or_encoder_readout_is_named():
    class NoConfig(torch.nn.Module):
        def __init__(self, obs_embed_dim=256):
            super().__init__()

    from dataclasses import replace
    with pytest.raises(TypeError, match="config="):
        build_model(get_profile("quick").model, replace(REFERENCE, encoder=NoConfig))
    model = build_model(get_profile("quick").model, REFERENCE)
    with pytest.raises(AttributeError, match="language_attention"):     # no forward pass yet
        extend_observation(model, torch.zeros(1, 128), torch.zeros(1, 16))


def test_text_encoder_copies_repeated_instructions_with_a_deterministic_backward():
    """A training batch repeats each instruction once per window step; the encoder runs
    each distinct one once and copies it. With ``out[index]`` the backward (IndexBackward)
    added the copies' gradients in a thread-timing-dependent order on the CPU, and the
    same seed gave different training runs on a busy machine (300-step runs diverged at
    step 27). index_select's backward adds them in index order."""
    torch.manual_seed(0)
    encoder = SmallTextEncoder()
    tokens = tokenize(["pick up the red box", "grab the blue bottle"]).repeat(6, 1)   # 12 rows, 2 distinct
    out = encoder(tokens)
    torch.testing.assert_close(out, encoder(tokens[:2]).repeat(6, 1))
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert "IndexSelectBackward0" in names and "IndexBackward0" not in names


@pytest.mark.slow
def test_clean_chunk_velocity_is_consistent_and_a_perfect_denoiser_samples_the_target():
    target = torch.rand(3, 16, 10) * 4 - 2      # standardised actions are not bounded by 1

    class PerfectDenoiser(FlowMatchingActionHead):
        def forward(self, noisy_actions, timestep, condition):   # read as the clean chunk by the wrapper
            return target

    head = CleanChunkParametrization(PerfectDenoiser())
    a_t, t = torch.randn(3, 16, 10), torch.tensor([0.0, 0.5, 0.9])
    # the derived velocity points from a_t to the predicted chunk in the remaining time
    torch.testing.assert_close(head(a_t, t, torch.zeros(3, 1792)), (target - a_t) / (1 - t)[:, None, None])
    actions = head.sample(torch.zeros(3, 1792), num_steps=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(actions, target, atol=1e-5, rtol=0)   # not clipped: standardised units
    with pytest.raises(ValueError, match="noise of shape"):
        euler_sample(head, torch.zeros(3, 1792), noise=torch.zeros(2, 16, 10))


def test_x_weighting_turns_the_velocity_loss_into_the_clean_chunk_error():
    head = CleanChunkParametrization(FlowMatchingActionHead(cond_dim=8)).eval()   # no dropout
    actions, cond = torch.randn(5, 16, 10), torch.randn(5, 8)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731  same noise and t in both computations
    loss = extended_flow_loss(head, actions, cond, generator=gen(), weighting="x")
    g = gen()
    noise, t = torch.randn(actions.shape, generator=g), torch.rand(5, generator=g)
    a_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
    clean_error = (head.predict_clean(a_t, t, cond) - actions).pow(2).mean()
    torch.testing.assert_close(loss, clean_error, rtol=1e-5, atol=1e-6)      # all t < 0.95 here
    assert t.max() < 0.95
    # uniform weighting is the case study's velocity MSE
    uniform = extended_flow_loss(head, actions, cond, generator=gen(), weighting="uniform")
    torch.testing.assert_close(uniform, (head(a_t, t, cond) - (actions - noise)).pow(2).mean())
    with pytest.raises(ValueError, match="weighting"):
        extended_flow_loss(head, actions, cond, weighting="snr")


def test_padded_steps_carry_no_flow_target_and_the_loss_decreases():
    torch.manual_seed(0)
    head = CleanChunkParametrization(FlowMatchingActionHead())
    cond, actions = torch.randn(16, 1792), torch.rand(16, 16, 10) * 2 - 1
    pad = torch.zeros(16, 16, dtype=torch.bool)
    pad[:, 12:] = True
    head.eval()
    masked = extended_flow_loss(head, actions, cond, pad, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    noise, t = torch.randn(actions.shape, generator=g), torch.rand(16, generator=g)
    a_t = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
    error = (head(a_t, t, cond) - (actions - noise)).pow(2).mean(-1) * (1 - t).clamp(min=0.05).pow(2)[:, None]
    torch.testing.assert_close(masked, error[:, :12].mean())     # steps past the episode end: no target
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):  # a fixed batch: the same noise and times every step
        loss = extended_flow_loss(head, actions, cond, pad, generator=torch.Generator().manual_seed(1), samples=2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])


def test_grounding_loss_prefers_looking_at_the_named_item():
    grid = 8
    target_uv = torch.tensor([[0.3, -0.4, 1.0], [0.0, 0.0, 0.0]])  # second frame: target not in view

    def soft_map(u: float, v: float) -> torch.Tensor:  # attention concentrated around (u, v)
        centres = (torch.arange(grid) + 0.5) / grid * 2 - 1
        logits = -((centres[None, :] - u) ** 2 + (centres[:, None] - v) ** 2) / 0.05
        return torch.softmax(logits.flatten(), 0)

    uniform = torch.full((grid * grid,), 1.0 / grid ** 2)
    maps = [soft_map(0.3, -0.4), uniform, soft_map(-0.7, 0.6)]          # on the item, anywhere, elsewhere
    losses = [float(grounding_loss(torch.stack([m, uniform]), target_uv, grid)) for m in maps]
    assert losses[0] < losses[1] < losses[2]
    # the Gaussian label itself is the minimiser: nudging it anywhere costs
    exact = torch.tensor([0.3, -0.4, 1.0])[None]
    attention = torch.full((1, grid * grid), 1.0 / grid ** 2, requires_grad=True)
    optimiser = torch.optim.Adam([attention], lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        grounding_loss(torch.softmax(attention * 10, -1), exact, grid).backward()
        optimiser.step()
    best = int(torch.softmax(attention * 10, -1).argmax())
    assert divmod(best, grid) == (2, 5)        # row 2 (v = -0.4), column 5 (u = 0.3)
    # frames without the target in view contribute nothing
    assert float(grounding_loss(uniform[None], target_uv[1:], grid)) == 0.0


def test_attention_centre_reads_the_attended_image_position():
    grid = 8
    one_patch = torch.zeros(1, grid * grid)
    one_patch[0, 2 * grid + 5] = 1.0                          # row 2, column 5
    u, v, peak = attention_centre(one_patch, grid)[0].tolist()
    assert (u, v, peak) == pytest.approx((0.375, -0.375, 1.0))  # patch centres: (k + 0.5) / 8 * 2 - 1
    uniform = torch.full((1, grid * grid), 1.0 / grid ** 2)
    u, v, peak = attention_centre(uniform, grid)[0].tolist()
    assert (u, v, peak) == pytest.approx((0.0, 0.0, 1.0 / 64), abs=1e-6)


def test_word_dropout_keeps_special_tokens_and_replaces_about_p_of_the_words():
    tokens = tokenize(["pick up the small red bottle on the left"] * 400)
    assert torch.equal(drop_words(tokens, 0.0), tokens)
    dropped = drop_words(tokens, 0.25, torch.Generator().manual_seed(0))
    special = torch.isin(tokens, torch.tensor(CLIP_SPECIAL_TOKENS))
    assert torch.equal(dropped[special], tokens[special])          # padding, start, end untouched
    changed = (dropped != tokens)[~special].float().mean()
    assert 0.2 < changed < 0.3


def test_the_hand_relative_pose_comes_from_the_pixels_and_the_bin_frame_one_sees_the_arm():
    """The hand-relative head must not see the joint angles (the shortcut "the grasp is
    where the expert's arm is heading"); the bin-frame head and the embedding do."""
    torch.manual_seed(0)
    model = build_model(get_profile("quick").model, REFERENCE)
    for m in model.values():
        m.eval()
    rgb, depth = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    tokens = tokenize(["pick up the red pouch"] * 2)
    obs_a, pose_a = extend_observation(model, model["encoder"](rgb, depth, tokens), torch.zeros(2, 16))
    obs_b, pose_b = extend_observation(model, model["encoder"](rgb, depth, tokens), torch.randn(2, 16))
    torch.testing.assert_close(pose_a["hand"], pose_b["hand"])
    torch.testing.assert_close(pose_a["point"], pose_b["point"])
    assert not torch.allclose(pose_a["bin"], pose_b["bin"]) and not torch.allclose(obs_a, obs_b)
    assert pose_a["hand"].shape == pose_a["bin"].shape == (2, 8) and pose_a["point"].shape == (2, 2)


def test_the_grasp_point_head_reads_the_attended_patch():
    torch.manual_seed(0)
    head = GraspPointHead(16, dropout=0.0).eval()
    tokens = torch.randn(3, 64, 16)
    focused = torch.zeros(3, 64)
    focused[:, 10] = 1.0
    spread = torch.full((3, 64), 1 / 64)
    out = head(tokens, focused)
    assert out.shape == (3, 2)
    # one-hot attention: the proposal of patch 10 alone, whatever the other patches hold
    other = tokens.clone()
    other[:, :10] = torch.randn(3, 10, 16)
    torch.testing.assert_close(head(other, focused), out)
    assert not torch.allclose(head(other, spread), head(tokens, spread))


def test_teacher_pose_gives_the_true_pose_in_a_fraction_p_of_the_known_frames():
    torch.manual_seed(0)
    model = build_model(get_profile("quick").model, REFERENCE)
    for m in model.values():
        m.eval()
    pose = torch.rand(4000, 7) * 2 - 1
    pose[:1000] = 0                                                      # unknown (real data)
    given = ~teacher_pose(model, pose, pose, 0.5, 0.0)[:, 0].isnan()
    assert not given[:1000].any() and 0.45 < given[1000:].float().mean() < 0.55
    assert teacher_pose(model, pose, pose, 0.0, 0.0).isnan().all()
    exact = teacher_pose(model, pose[1000:1002], pose[1000:1002], 1.0, 0.0)
    assert exact.shape == (2, 10) and not exact.isnan().any()
    # NaN rows leave the estimate in place; given rows change what the controller reads
    rgb, depth = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    tokens, state = tokenize(["pick up the red pouch"] * 2), torch.zeros(2, 16)
    plain = encode(model, rgb, depth, tokens, state)
    torch.testing.assert_close(encode(model, rgb, depth, tokens, state, true_pose=torch.full((2, 10), float("nan"))),
                               plain)
    assert not torch.allclose(encode(model, rgb, depth, tokens, state, true_pose=exact), plain)


def test_pose_features_treat_a_half_turn_as_the_same_grasp_and_unknown_poses_are_skipped():
    pose = torch.tensor([[0.1, -0.2, -0.6, 0.0, 0.0, 0.49, 0.3]])
    half_turn = pose.clone()
    half_turn[0, 5] -= 1.0                                              # yaw - pi: the same jaw grasp
    torch.testing.assert_close(grasp_pose_features(pose), grasp_pose_features(half_turn))
    assert grasp_pose_features(pose).shape == (1, 8)
    head = GraspPoseHead(16, dropout=0.0)
    head.set_stats(np.random.default_rng(0).uniform(-1, 1, (50, 7)))
    embed = torch.randn(2, 16)
    known_only = head.loss(embed[:1], pose)
    with_unknown = head.loss(embed, torch.cat([pose, torch.zeros(1, 7)]))  # real data: pose all zeros
    torch.testing.assert_close(known_only, with_unknown)
    assert float(head.loss(embed[1:], torch.zeros(1, 7)).detach()) == 0.0


def test_the_quick_backbones_give_patch_tokens_that_see_depth_and_a_512_d_instruction():
    from novapick.backbones import SmallPatchEncoder, build_patch_encoder, build_text_encoder

    cfg = get_profile("quick").model
    visual, text = build_patch_encoder(cfg), build_text_encoder(cfg)
    assert isinstance(visual, SmallPatchEncoder) and visual.sees_depth and visual.patch_size == 8
    rgb, depth = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    tokens = visual(rgb, depth)
    assert tokens.shape == (2, (64 // 8) ** 2, cfg.token_dim) == (2, 64, visual.width)
    assert not torch.allclose(visual(rgb, depth * 0.5), tokens)          # depth is an input channel
    assert text(tokenize(["pick up the red pouch"])).shape == (1, 512) and not text.pretrained
