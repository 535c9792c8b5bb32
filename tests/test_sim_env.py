"""The Gymnasium API of the cell: spaces, shapes, chunks, determinism and bad actions."""
import gymnasium as gym
import numpy as np
import pytest

from novapick.sim import ENV_ID
from novapick.sim.camera import intrinsics, vertical_fov_deg
from novapick.sim.expert import ScriptedExpert

RELEASE = np.array([0, 0, 0, 0, 0, 0, 0, -1, -1, 1], np.float32)


def test_reset_returns_observation_matching_the_spec(env):
    obs, info = env.reset(seed=0, options={"split": "known", "n_items": 5})
    assert obs["rgb"].shape == (3, 64, 64) and obs["rgb"].dtype == np.float32
    assert 0.0 <= obs["rgb"].min() and obs["rgb"].max() <= 1.0
    assert obs["depth"].shape == (1, 64, 64) and obs["depth"].dtype == np.float32
    valid = obs["depth"][obs["depth"] > 0]
    assert valid.size > 0.5 * obs["depth"].size and 0.05 < valid.min() and valid.max() < 1.0  # metres
    assert obs["proprio"].shape == (14,) and obs["gripper_state"].shape == (2,)
    assert isinstance(obs["instruction"], str) and info["target_name"].split("_")[-2] in obs["instruction"]
    assert len(obs["instruction"].split()) <= 64
    assert env.observation_space["rgb"].contains(obs["rgb"])
    assert info["n_items"] == 5


def test_registered_with_gymnasium():
    e = gym.make(ENV_ID, image_size=32)
    obs, _ = e.reset(seed=1)
    obs, reward, terminated, truncated, info = e.step(RELEASE)
    assert obs["rgb"].shape == (3, 32, 32) and not terminated and not truncated
    e.close()


def test_full_resolution_camera_has_d435_intrinsics():
    k = intrinsics(480, 640)
    assert k[0, 0] == pytest.approx(615.0) and k[0, 2] == 320 and k[1, 2] == 240
    assert vertical_fov_deg(480, 640) == pytest.approx(vertical_fov_deg(96, 96)) == pytest.approx(42.6, abs=0.1)


def test_chunk_executes_every_step_and_renders_once(env):
    env.reset(seed=3)
    _, _, _, _, info = env.step(np.tile(RELEASE, (4, 1)))
    assert info["steps"] == 4
    _, _, _, _, info = env.step(RELEASE)
    assert info["steps"] == 5


def test_object_option_and_split(env):
    name = env.catalog.split("novel")[7].name
    _, info = env.reset(seed=0, options={"object": name, "split": "novel", "n_items": 3})
    assert info["target_name"] == name
    with pytest.raises(KeyError, match="unknown object"):
        env.reset(seed=0, options={"object": "no_such_thing"})
    with pytest.raises(ValueError, match="n_items"):
        env.reset(seed=0, options={"n_items": 31})


def test_shape_jitter_resizes_the_scene_and_zero_changes_nothing(env):
    name = env.catalog.split("known")[3].name
    base = {"object": name, "split": "known", "n_items": 4}
    plain, _ = env.reset(seed=2, options=base)
    plain_specs = [it.spec for it in env.items]
    zero, _ = env.reset(seed=2, options={**base, "shape_jitter": 0.0})
    np.testing.assert_array_equal(plain["rgb"], zero["rgb"])
    assert [it.spec for it in env.items] == plain_specs
    env.reset(seed=2, options={**base, "shape_jitter": 0.3})
    resized = [it.spec for it in env.items]
    assert env.target.spec.name == name and env.target.spec.dims != plain_specs[-1].dims
    assert [s.name for s in resized] == [s.name for s in plain_specs]  # same items, other sizes
    env.reset(seed=2, options={**base, "shape_jitter": 0.3})
    assert [it.spec for it in env.items] == resized                    # seeded


@pytest.mark.parametrize("bad, message", [
    (np.zeros(7), r"expected action of shape \(10,\) or \(T, 10\)"),
    (np.zeros((2, 3, 10)), r"expected action of shape"),
    (np.r_[np.full(7, np.nan), 0, 0, 1], "NaN/inf"),
    (np.r_[np.zeros(6), np.inf, 0, 0, 1], "NaN/inf"),
    (np.r_[np.zeros(6), 1.5, 0, 0, 1], r"normalised to \[-1, 1\]"),
])
def test_bad_actions_raise_clear_errors(env, bad, message):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(bad)


def _expert_trace(env, seed, steps=25):
    obs, _ = env.reset(seed=seed, options={"n_items": 4})
    expert = ScriptedExpert(env)
    frames, actions = [obs["rgb"]], []
    for _ in range(steps):
        a = expert.act(obs)
        obs, _, term, trunc, info = env.step(a)
        frames.append(obs["rgb"])
        actions.append(a)
        if term or trunc:
            break
    return np.stack(frames), np.stack(actions), obs["depth"], info


def test_same_seed_gives_identical_episode(env):
    f1, a1, d1, i1 = _expert_trace(env, seed=11)
    f2, a2, d2, i2 = _expert_trace(env, seed=11)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(d1, d2)
    assert i1 == i2
    f3, *_ = _expert_trace(env, seed=12, steps=2)
    assert not np.array_equal(f1[:3], f3)


def test_fresh_environment_reproduces_the_episode(env):
    from novapick.sim import make_env
    f1, a1, _, _ = _expert_trace(env, seed=5, steps=10)
    other = make_env(64)
    f2, a2, _, _ = _expert_trace(other, seed=5, steps=10)
    other.close()
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(a1, a2)


def test_transparent_items_are_invisible_to_depth():
    from novapick.sim import make_env
    e = make_env(64, depth_noise=False)
    clear = next(o for o in e.catalog.split("known") if o.material == "transparent")
    opaque = next(o for o in e.catalog.split("known") if o.material == "rigid" and o.category == "bottle")
    counts = []
    for obj in (clear, opaque):
        obs, _ = e.reset(seed=2, options={"object": obj.name, "n_items": 1})
        counts.append(int((obs["depth"] == 0).sum()))
    e.close()
    assert counts[0] > counts[1] + 20  # the clear bottle leaves a hole in the depth map


def test_a_full_bin_of_30_items_keeps_the_target_reachable(env):
    from novapick.sim.world import target_in_reach
    obs, info = env.reset(seed=7, options={"n_items": 30, "split": "novel"})
    assert info["n_items"] == 30 and len(env.items) == 30
    assert target_in_reach(env.client, env.target)
    assert env.privileged_state()["target_aabb"][0][2] < 0.25  # in the bin, not on the gripper


def test_instruction_uses_left_right_when_the_category_repeats(env):
    import pybullet as p
    seen = 0
    for seed in range(40):
        obs, info = env.reset(seed=seed, options={"n_items": 3})
        same = [it for it in env.items[:-1] if it.spec.category == env.target.spec.category]
        text = obs["instruction"]
        assert env.target.spec.category in text
        if not same:
            assert " left" not in text and " right" not in text
            continue
        seen += 1
        y = lambda it: p.getBasePositionAndOrientation(it.body, physicsClientId=env.client)[0][1]  # noqa: E731
        expected = "left" if y(env.target) > np.mean([y(it) for it in same]) else "right"
        assert text.endswith(f"on the {expected}"), text
    assert seen >= 5


def test_target_image_position_matches_the_rendered_target(env):
    """The recorded grounding label (where the target is in the wrist image) agrees with
    the renderer's own segmentation of the target, to within a few pixels."""
    from novapick.sim import robot as R
    from novapick.sim.camera import _render, wrist_view

    u = env.unwrapped
    checked = 0
    for seed in range(6):
        env.reset(seed=seed, options={"n_items": 3})
        _, _, seg = _render(u.client, wrist_view(*R.hand_pose(u.client, u.robot)), 64, 64, u.lighting, True)
        rows, cols = np.nonzero((seg & ((1 << 24) - 1)) == u.target.body)
        uv = u.target_in_wrist_image()
        if uv[2] == 1 and len(rows):
            centroid = np.array([(cols.mean() + 0.5) / 32 - 1, (rows.mean() + 0.5) / 32 - 1])
            assert np.abs(uv[:2] - centroid).max() < 0.1, (seed, uv, centroid)
            checked += 1
    assert checked >= 4


def test_snapshot_restore_replays_the_same_future_through_a_grasp(env):
    """Outcome checks execute several chunks from one moment: after restore() the same
    actions must give the same future, including a grasp the first future made."""
    obs, _ = env.reset(seed=3, options={"n_items": 3})
    expert = ScriptedExpert(env)
    for _ in range(20):                       # on the way down, nothing held yet
        obs, *_ = env.step(expert.act(obs))
    snap = env.snapshot()
    first, actions = [], []
    for _ in range(120):
        actions.append(expert.act(obs))
        obs, _, term, trunc, info = env.step(actions[-1])
        first.append((obs["proprio"], obs["depth"]))
        if term or trunc:
            break
    assert env.stats.target_was_held, "the expert's future should reach a grasp"
    env.restore(snap)
    assert not env.stats.target_was_held and env.gripper.state.held_body is None
    for a, (proprio, depth) in zip(actions, first):
        obs, *_ = env.step(a)
        np.testing.assert_allclose(obs["proprio"], proprio, atol=1e-6)
        np.testing.assert_array_equal(obs["depth"], depth)
    assert env.stats.target_was_held
    env.drop_snapshot(snap)
    with pytest.raises(RuntimeError, match="gripper empty"):
        env.snapshot()                        # holding now
    env.reset(seed=4, options={"n_items": 2})
    with pytest.raises(RuntimeError, match="another episode"):
        env.restore(snap)
