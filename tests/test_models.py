"""Behaviour-pinning tests of the reference components (Sections 3.1-3.4)."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from novapick.backbones import PretrainedUnavailable, tokenize
from novapick.config import ModelConfig, get_profile
from novapick.train.augment import augment_training_windows, colour_jitter
from solutions.augmentation import augment_observation, swap_left_right
from solutions.baseline import GraspBaseline
from solutions.eda import Welford, compute_dataset_statistics
from solutions.encoder import ObservationEncoder, multihead_attention
from solutions.flow_head import FlowMatchingActionHead, sinusoidal_embedding
from solutions.rssm import RSSM, categorical_kl, kl_balanced_loss

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test touches the network


# ---- 3.1 augmentation -------------------------------------------------------------------
def test_swap_left_right_whole_words_only():
    assert swap_left_right("pick up the red bottle on the left") == "pick up the red bottle on the right"
    assert swap_left_right("Right of the leftover box, left") == "Left of the leftover box, right"


def test_augmentation_keeps_shapes_ranges_and_pairs_the_flip():
    rgb = torch.zeros(3, 224, 224)
    rgb[:, :, :112] = 1.0                                   # bright left half
    depth = torch.full((1, 224, 224), 0.5)
    depth[:, 100:124, 100:124] = 0.0                        # an invalid patch stays invalid
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        r, d, text = augment_observation(rgb, depth, "pick up the red bottle on the left")
        assert r.shape == (3, 224, 224) and d.shape == (1, 224, 224) and isinstance(text, str)
        assert 0.0 <= r.min() and r.max() <= 1.0 and 0.0 <= d.min() and d.max() <= 1.0
        assert (d == 0).any() and d[d > 0].std() > 0.005   # noise on valid pixels only
        mirrored = r[:, :, :112].mean() < r[:, :, 112:].mean()
        assert mirrored == text.endswith("right")           # words follow the pixels
        flipped += mirrored
    assert 2 <= flipped <= 10                               # p = 0.5
    torch.manual_seed(3)
    a = augment_observation(rgb, depth, "x")
    torch.manual_seed(3)
    b = augment_observation(rgb, depth, "x")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_augmentation_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"depth of shape \(1, 224, 224\)"):
        augment_observation(torch.rand(3, 224, 224), torch.rand(224, 224), "x")


def test_colour_jitter_matches_torchvision_for_one_image_and_takes_one_factor_per_image():
    import torchvision.transforms.functional as TF
    rgb = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(rgb, 1.15), 0.85), 1.1)
    got = colour_jitter(rgb, torch.tensor(1.15), torch.tensor(0.85), torch.tensor(1.1))
    assert torch.allclose(got, expected, atol=1e-6)
    batch = torch.stack([rgb, rgb])                         # (2, 3, H, W), factors (2,)
    out = colour_jitter(batch, torch.tensor([1.0, 1.15]), torch.tensor([1.0, 0.85]), torch.tensor([1.0, 1.1]))
    assert torch.allclose(out[0], rgb.clamp(0, 1)) and torch.allclose(out[1], expected, atol=1e-6)


def test_training_window_augmentation_is_per_window_and_keeps_invalid_depth():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(6, 4, 3, 16, 16, generator=g).mul(0.5).add(0.25)   # away from the clamps
    depth = torch.rand(6, 4, 1, 16, 16, generator=g).mul(0.5).add(0.1)
    depth[:, :, :, :4] = 0.0                                              # invalid rows
    r, d = augment_training_windows(rgb, depth, jitter=0.2, depth_noise=0.001,
                                    generator=torch.Generator().manual_seed(1))
    assert r.shape == rgb.shape and d.shape == depth.shape
    assert (d[:, :, :, :4] == 0).all() and (d[:, :, :, 4:] > 0).all()
    assert 0.0002 < (d - depth)[:, :, :, 4:].std() < 0.002               # noise on valid pixels only
    brightness = r.mean((2, 3, 4)) / rgb.mean((2, 3, 4))                  # (B, L)
    assert torch.allclose(brightness, brightness[:, :1], atol=0.03)      # one lighting per window ...
    assert brightness[:, 0].std() > 0.02                                  # ... different across windows
    assert not torch.equal(r, rgb)
    same = augment_training_windows(rgb, depth, 0.0, 0.0)
    assert torch.equal(same[0], rgb) and torch.equal(same[1], depth)     # strength 0: untouched
    with pytest.raises(ValueError, match=r"rgb windows \(B, L, 3, H, W\)"):
        augment_training_windows(rgb[0], depth[0], 0.2, 0.001)


# ---- 3.2 statistics ---------------------------------------------------------------------
def test_welford_equals_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 7))
    w = Welford(7)
    for chunk in np.array_split(x, 13):
        w.update(chunk)
    np.testing.assert_allclose(w.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(w.std, x.std(0), rtol=1e-10)


def test_dataset_statistics_counts_episodes_depth_and_anomalies():
    n = 40
    actions = torch.randn(n, 16, 10)
    actions[30:, :, :7] = 0.001                              # episode 3: the robot never moved
    depth = torch.rand(n, 1, 8, 8)
    depth[:, :, :4] = 0.0                                   # half the pixels invalid
    episodes = torch.arange(n) // 10
    data = TensorDataset(torch.rand(n, 3, 8, 8), depth, torch.zeros(n, 77), actions, torch.rand(n, 14), episodes)
    loader = DataLoader(data, batch_size=7, collate_fn=lambda b: (
        *[torch.stack([s[i] for s in b]) for i in range(5)], {"episode_index": torch.stack([s[5] for s in b])}))
    stats = compute_dataset_statistics(loader)
    first = actions[:, 0, :7].double().numpy()
    np.testing.assert_allclose(stats["action_mean"], first.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["action_std"], first.std(0), atol=1e-6)
    assert stats["episode_lengths"] == [10, 10, 10, 10]
    assert len(stats["depth_valid_fraction"]) == n
    assert np.allclose(stats["depth_valid_fraction"], 0.5, atol=0.1)
    assert stats["num_anomalous_episodes"] == 1


# ---- 3.3 baseline -----------------------------------------------------------------------
def test_grasp_baseline_shapes_and_frozen_backbone():
    model = GraspBaseline(pretrained=False, freeze_backbone=True).train()   # the case study's design
    assert model.frozen and not model.rgb_encoder.training                 # frozen BN statistics
    out = model(torch.rand(2, 3, 224, 224), torch.rand(2, 1, 224, 224))
    assert out.shape == (2, 7) and out.abs().max() <= 1.0
    out.sum().backward()
    assert all(p.grad is None for p in model.rgb_encoder.parameters())
    assert all(p.grad is not None for p in model.depth_encoder.parameters())
    with pytest.raises(ValueError, match=r"expected rgb \(B, 3, H, W\) and depth \(B, 1, H, W\)"):
        model(torch.rand(2, 3, 64, 64), torch.rand(2, 64, 64))


def test_grasp_baseline_trains_its_backbone_when_no_pretrained_weights_exist():
    """A frozen *random* ResNet-18 extracts nothing (0 % picks offline): without the
    download the backbone trains with the head; with ImageNet weights it stays frozen."""
    model = GraspBaseline(pretrained=False).train()
    assert not model.pretrained and not model.frozen and model.rgb_encoder.training
    model(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.rgb_encoder.parameters())


# ---- 3.4 encoder ------------------------------------------------------------------------
def test_quick_observation_encoder_shapes_and_attention():
    cfg = get_profile("quick").model
    enc = ObservationEncoder(256, config=cfg).eval()  # no attention dropout
    tokens = tokenize(["pick up the red bottle", "grab the small blue box on the left"])
    out = enc(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64), tokens)
    assert out.shape == (2, 256) and torch.isfinite(out).all()
    assert enc.last_attention.shape == (2, 64)                            # 8 x 8 patches at 64 px
    torch.testing.assert_close(enc.last_attention.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match=r"expected rgb \(B, 3, 64, 64\)"):
        enc(torch.rand(2, 3, 96, 96), torch.rand(2, 1, 96, 96), tokens)


def test_embedding_and_attention_depend_on_the_instruction():
    """Same image, another named item: the embedding and where [CLS] looks must change
    (with cross-attention alone, [CLS] never saw the language and both stayed the same)."""
    torch.manual_seed(0)
    enc = ObservationEncoder(128, config=get_profile("quick").model).eval()
    rgb, depth = torch.rand(1, 3, 64, 64).repeat(2, 1, 1, 1), torch.rand(1, 1, 64, 64).repeat(2, 1, 1, 1)
    out = enc(rgb, depth, tokenize(["pick up the red bottle", "grab the small blue box on the left"]))
    assert (out[0] - out[1]).abs().max() > 1e-3
    assert (enc.last_attention[0] - enc.last_attention[1]).abs().max() > 1e-4


def test_batch_first_attention_matches_torch_multihead_attention():
    """The encoder's own attention (faster on the CPU) computes what nn.MultiheadAttention
    computes with the same parameters: outputs, head-averaged weights and gradients."""
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    queries, keys = torch.randn(3, 2, 32, requires_grad=True), torch.randn(3, 7, 32, requires_grad=True)
    ours, our_weights = multihead_attention(attn, queries, keys)
    theirs, their_weights = attn(queries, keys, keys, need_weights=True)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(our_weights, their_weights)
    assert our_weights.shape == (3, 2, 7)
    grads = torch.autograd.grad(ours.square().sum() + our_weights.square().sum(), (queries, keys))
    expected = torch.autograd.grad(theirs.square().sum() + their_weights.square().sum(), (queries, keys))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)


def test_full_spec_encoder_uses_dinov2_and_clip_architectures():
    with pytest.warns(PretrainedUnavailable):
        enc = ObservationEncoder(256, config=ModelConfig(image_size=224, pretrained=True)).eval()
    assert sum(p.numel() for p in enc.visual.vit.parameters()) == pytest.approx(21.7e6, rel=0.02)
    # only CLIP's text tower is kept (the image tower would add ~88 M unused parameters)
    assert sum(p.numel() for p in enc.text.clip.parameters()) == pytest.approx(63.4e6, rel=0.02)
    tokens = tokenize(["pick up the red bottle"] * 2)
    with torch.no_grad():
        out = enc(torch.rand(2, 3, 224, 224), torch.rand(2, 1, 224, 224), tokens)
    assert out.shape == (2, 256) and enc.last_attention.shape == (2, 256)  # 16 x 16 patches
    assert len(enc.text._cache) == 1                                      # encoded once
    # DINOv2 sees RGB only: depth joins through the encoder's own learned patch projection
    assert enc.depth_proj is not None and enc.depth_proj.kernel_size == (14, 14)
    assert ObservationEncoder(128, config=get_profile("quick").model).depth_proj is None  # RGB-D CNN


# ---- 3.4 RSSM ---------------------------------------------------------------------------
def test_rssm_shapes_and_one_hot_states():
    rssm = RSSM()
    h, z = rssm.initial_state(3, torch.device("cpu"))
    assert h.shape == (3, 512) and z.shape == (3, 32, 32) and h.abs().sum() == 0 and z.abs().sum() == 0
    h, z, info = rssm.observe_step(torch.randn(3, 256), torch.randn(3, 10), h, z)
    assert h.shape == (3, 512) and z.shape == (3, 32, 32)
    assert info["prior_logits"].shape == info["posterior_logits"].shape == (3, 32, 32)
    torch.testing.assert_close(z.sum(-1), torch.ones(3, 32))          # one class per variable
    out = rssm.imagine_trajectory(h, z, torch.randn(3, 5, 10))
    assert out["h_states"].shape == (3, 5, 512) and out["z_states"].shape == (3, 5, 32, 32)
    assert out["rewards"].shape == (3, 5)


def test_rssm_gradients_pass_the_straight_through_sample():
    rssm = RSSM()
    obs = torch.randn(4, 256, requires_grad=True)
    h, z = rssm.initial_state(4, torch.device("cpu"))
    h, z, _ = rssm.observe_step(obs, torch.zeros(4, 10), h, z)
    rssm.predict_reward(h, z).sum().backward()
    assert obs.grad is not None and obs.grad.abs().sum() > 0


def test_rssm_eval_mode_is_deterministic():
    rssm = RSSM().eval()
    h, z = rssm.initial_state(2, torch.device("cpu"))
    a = rssm.imagine_trajectory(h, z, torch.ones(2, 5, 10))["z_states"]
    b = rssm.imagine_trajectory(h, z, torch.ones(2, 5, 10))["z_states"]
    assert torch.equal(a, b)


def test_kl_and_free_nats_arithmetic():
    logits = torch.randn(5, 32, 32)
    assert categorical_kl(logits, logits).abs().max() < 1e-5
    # equal distributions: both terms clip to the free nats
    assert kl_balanced_loss(logits, logits, free_nats=1.0).item() == pytest.approx(1.0)
    # two classes, one variable: KL([1, 0] || [0.5, 0.5]) = log 2 per variable
    p = torch.full((1, 32, 2), -1e9)
    p[..., 0] = 0.0
    q = torch.zeros(1, 32, 2)
    assert categorical_kl(p, q).item() == pytest.approx(32 * np.log(2), rel=1e-5)
    assert kl_balanced_loss(p, q, free_nats=1.0).item() == pytest.approx(32 * np.log(2), rel=1e-5)
    assert kl_balanced_loss(p, q, free_nats=100.0).item() == pytest.approx(100.0)


def test_kl_balance_splits_the_gradient():
    post = torch.randn(2, 32, 32, requires_grad=True)
    prior = torch.randn(2, 32, 32, requires_grad=True)
    kl_balanced_loss(post, prior, free_nats=0.0, balance=1.0).backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() > 0    # only the prior learns


# ---- 3.4 flow head ----------------------------------------------------------------------
def test_flow_head_shapes_and_time_embedding():
    head = FlowMatchingActionHead()
    v = head(torch.randn(4, 16, 10), torch.rand(4), torch.randn(4, 1792))
    assert v.shape == (4, 16, 10)
    emb = sinusoidal_embedding(torch.tensor([0.0, 0.5, 1.0]))
    assert emb.shape == (3, 128) and emb[0, 64:].eq(1.0).all()          # cos(0) = 1
    with pytest.raises(ValueError, match=r"expected condition \(4, 1792\)"):
        head(torch.randn(4, 16, 10), torch.rand(4), torch.randn(4, 100))


def test_euler_sampling_with_a_perfect_velocity_field_recovers_the_target_clipped_to_the_limits():
    target = torch.rand(3, 16, 10) * 1.6 - 0.8

    class Perfect(FlowMatchingActionHead):
        def forward(self, noisy_actions, timestep, condition):   # the exact field to `target`
            return (target - noisy_actions) / (1 - timestep)[:, None, None]

    torch.manual_seed(0)
    torch.testing.assert_close(Perfect().sample(torch.zeros(3, 1792), num_steps=10), target, atol=1e-5, rtol=0)
    # Section 3.4: the sampled chunk is clipped to [-1, 1] (an untrained head overshoots)
    outside = target * 3

    class Overshoots(FlowMatchingActionHead):
        def forward(self, noisy_actions, timestep, condition):
            return (outside - noisy_actions) / (1 - timestep)[:, None, None]

    sampled = Overshoots().sample(torch.zeros(3, 1792))
    assert sampled.abs().max() == 1.0
    assert FlowMatchingActionHead().sample(torch.zeros(3, 1792)).abs().max() <= 1.0


def test_the_flow_head_outputs_the_velocity_and_validates_the_timestep():
    head = FlowMatchingActionHead(cond_dim=8).eval()
    a_t, cond = torch.randn(2, 16, 10), torch.randn(2, 8)
    # the MLP's output is the velocity itself (no clean-chunk reparametrisation)
    x = torch.cat([a_t.flatten(1), sinusoidal_embedding(torch.full((2,), 0.3)), cond], -1)
    torch.testing.assert_close(head(a_t, torch.full((2,), 0.3), cond), head.net(x).view(2, 16, 10))
    torch.testing.assert_close(head(a_t, torch.tensor(0.3), cond), head(a_t, torch.full((2,), 0.3), cond))
    with pytest.raises(ValueError, match="timestep"):
        head(a_t, torch.rand(3), cond)


def test_the_case_study_flow_loss_decreases_on_a_fixed_batch():
    from solutions.training import flow_matching_loss

    torch.manual_seed(0)
    head = FlowMatchingActionHead()
    cond, actions = torch.randn(16, 1792), torch.rand(16, 16, 10) * 2 - 1
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        torch.manual_seed(1)  # a fixed batch: the same noise and times every step
        loss = flow_matching_loss(head, actions, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
