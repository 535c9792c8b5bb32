"""DROID / Google Robot import from the LeRobot format (v2.x and v3.0), run offline on
fixtures written in exactly the hub's layouts."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from novapick.data.check import check_dataset
from novapick.data.dataset import EpisodeStore, make_dataloader
from novapick.data.lerobot import SOURCES, convert, files_needed, resample_plan
from novapick.data.lerobot_fixture import FPS, write_fixture
from novapick.data.schema import DataFormatError
from novapick.sim.robot import ARM_MAX_VELOCITY

REPO = Path(__file__).resolve().parents[1]
LENGTH = 12  # source frames per fixture episode


def _load_real():
    spec = importlib.util.spec_from_file_location("load_real", REPO / "data_scripts" / "load_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("source", ["droid", "fractal"])
@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_fixtures_load_through_the_same_dataloader(tmp_path, source, version):
    root = write_fixture(tmp_path / "lerobot", source, version, episodes=3, length=LENGTH, episodes_per_file=2)
    info = _load_real().main(["--source", source, "--from-dir", str(root), "--out", str(tmp_path / "ours"),
                              "--image-size", "32"])
    steps = round(LENGTH * 20 / FPS[source])                                      # resampled to 20 Hz
    assert info["episodes"] == 3 and info["frames"] == 3 * steps
    assert info["gripper_agreement"] == 1.0                                       # polarities consistent
    summary = check_dataset(tmp_path / "ours")
    assert summary["problems"] == [] and summary["depth_invalid_fraction"] == 1.0  # no depth at all

    batch = next(iter(make_dataloader(tmp_path / "ours", batch_size=5)))
    assert batch["rgb"].shape == (5, 3, 32, 32) and batch["depth"].shape == (5, 1, 32, 32)
    assert batch["actions"].shape == (5, 16, 10) and batch["language"].shape == (5, 77)
    assert batch["proprioception"].shape == (5, 14) and batch["rewards"].shape == (5,)
    assert not batch["depth_valid"].any() and batch["depth"].abs().sum() == 0     # no depth: masked
    rgb, depth, language, actions, proprio, rewards = next(iter(make_dataloader(tmp_path / "ours", 4, as_tuple=True)))
    assert rgb.shape == (4, 3, 32, 32) and actions.shape == (4, 16, 10)

    store = EpisodeStore(tmp_path / "ours")
    for e in range(3):                       # the right frames reach the right episode and step
        rgb = store.rgb[store.episode_index == e].astype(float)
        assert abs(rgb[:, 2].mean() - 80 * e) < 8                             # blue encodes the episode
        assert rgb[0, 1].mean() < 10 and abs(rgb[-1, 1].mean() - 20 * (LENGTH - 1)) < 10  # green the time
    half = store.frame_index >= steps // 2 + 20 / FPS[source]                # safely after the close
    before = store.frame_index < (LENGTH // 2 - 1) * 20 / FPS[source] - 1    # safely before the command
    modes = store.action[:, 7:].argmax(1)
    assert (modes[half] == 1).all() and (modes[before] == 2).all()          # parallel jaw after, release before
    assert (store.grasp[half] == 1).all() and (store.grasp[before] == 0).all()
    assert np.allclose(store.gripper_state[before, 1], 0.08) and np.allclose(store.gripper_state[half, 1], 0)
    assert "put the marker in the bowl" in set(store.instruction)
    if source == "droid":
        assert store.action_valid.all() and store.proprio_valid.all()
        joint_velocity = store.action[:, :7] * ARM_MAX_VELOCITY                # back to rad/s
        assert np.abs(joint_velocity).max() > 0.1 and np.abs(joint_velocity).max() <= 0.3 + 1e-4
        assert store.reward.sum() == pytest.approx(3.0)                          # the source's final rewards
    else:
        assert not store.action_valid.any() and not store.proprio_valid.any()
        assert (store.action[:, :7] == 0).all() and (store.proprio == 0).all()
        assert store.reward[store.frame_index == steps - 1] == pytest.approx(1.05)  # our shaping: held + success


def test_mapping_and_raw_actions_are_recorded(tmp_path):
    root = write_fixture(tmp_path / "lerobot", "fractal", "v3.0", episodes=2, length=LENGTH)
    info = convert(root, "fractal", tmp_path / "ours", image_size=32, progress=False)
    saved = json.loads((tmp_path / "ours" / "meta" / "info.json").read_text())
    assert saved["mapping"]["camera"] == "observation.images.image" and saved["mapping"]["joints"] is None
    assert saved["mapping"]["gripper_action"] == "action[gripper*]" and saved["source_fps"] == 3.0
    import pyarrow.parquet as pq
    raw = pq.read_table(tmp_path / "ours" / "data" / "shard-00000.parquet", columns=["action_raw"])
    assert len(raw.column("action_raw")[0].as_py()) == 7                  # the source's EE action, verbatim
    assert info["content_hash"] == saved["content_hash"]


def test_v3_download_plan_names_exactly_the_files_needed(tmp_path):
    root = write_fixture(tmp_path / "lerobot", "droid", "v3.0", episodes=3, length=LENGTH, episodes_per_file=2)
    needed = files_needed(root, "droid", max_episodes=2)
    assert needed == ["data/chunk-000/file-000.parquet",
                      "videos/observation.images.wrist_left/chunk-000/file-000.mp4"]   # one camera, one file
    partial = tmp_path / "partial"                                              # what download() would fetch
    shutil.copytree(root / "meta", partial / "meta")
    for rel in needed:
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, partial / rel)
    assert convert(partial, "droid", tmp_path / "ours", image_size=32, max_episodes=2, progress=False)["episodes"] == 2
    assert len(files_needed(root, "droid", max_episodes=3)) == 4


def test_v2_download_plan_is_per_episode(tmp_path):
    root = write_fixture(tmp_path / "lerobot", "fractal", "v2.0", episodes=3, length=LENGTH)
    assert files_needed(root, "fractal", max_episodes=1) == [
        "data/chunk-000/episode_000000.parquet", "videos/chunk-000/observation.images.image/episode_000000.mp4"]


def test_conversion_resumes_without_rewriting_shards(tmp_path):
    root = write_fixture(tmp_path / "lerobot", "droid", "v2.1", episodes=2, length=LENGTH)
    first = convert(root, "droid", tmp_path / "ours", image_size=32, progress=False)
    shard = tmp_path / "ours" / "data" / "shard-00000.parquet"
    stamp = shard.stat().st_mtime_ns
    again = convert(root, "droid", tmp_path / "ours", image_size=32, progress=False)
    assert shard.stat().st_mtime_ns == stamp and again["content_hash"] == first["content_hash"]


def test_resampling_to_20_hz():
    position, hold = resample_plan(15, 15.0)                  # 1 s at 15 Hz -> 20 steps of 50 ms
    assert len(hold) == 20 and hold[0] == 0 and hold[-1] == 14
    np.testing.assert_allclose(position[:4], [0, 0.75, 1.5, 2.25])
    assert (np.diff(hold) >= 0).all() and (np.diff(hold) <= 1).all()   # each source frame shown once or twice
    _, hold = resample_plan(3, 3.0)                           # 1 s at 3 Hz -> 20 steps, frames repeat
    assert len(hold) == 20 and np.bincount(hold).tolist() == [7, 7, 6]


def test_readable_errors(tmp_path):
    root = write_fixture(tmp_path / "lerobot", "droid", "v2.1", episodes=2, length=LENGTH)
    with pytest.raises(DataFormatError, match="no camera matching .*observation.images.wrist_left"):
        convert(root, "droid", tmp_path / "a", camera="observation.images.nope", progress=False)
    (root / "videos" / "chunk-000" / "observation.images.wrist_left" / "episode_000001.mp4").unlink()
    with pytest.raises(DataFormatError, match="episode_000001.mp4 is missing"):
        convert(root, "droid", tmp_path / "b", progress=False)
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(DataFormatError, match="codebase_version 'v1.6' is not supported"):
        convert(root, "droid", tmp_path / "c", progress=False)
    with pytest.raises(DataFormatError, match="not a LeRobot dataset root"):
        convert(tmp_path / "nowhere", "droid", tmp_path / "d", progress=False)


def test_offline_download_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="could not download lerobot/droid_100.*--from-dir"):
        _load_real().main(["--source", "droid", "--max-episodes", "1", "--out", str(tmp_path / "o"),
                           "--cache", str(tmp_path / "cache")])


def test_sources_name_their_public_releases():
    assert SOURCES["droid"].repo_id == "lerobot/droid_100"
    assert SOURCES["fractal"].repo_id == "IPEC-COMMUNITY/fractal20220817_data_lerobot"
    assert SOURCES["droid"].gripper_action_closed_high and not SOURCES["fractal"].gripper_action_closed_high


def test_the_curated_mix_is_one_config_and_loads_as_one_dataset(tmp_path):
    from novapick.data.mix import MIXES, DataMix, main as mix_main, prepare
    assert MIXES["quick"].directories() == ["data/synthetic_known_96px_s0_jitter0.3_balanced"]  # quick: synthetic only
    assert [Path(d).name for d in MIXES["full"].directories()] == [
        "synthetic_known_224px_s0_jitter0.3_balanced", "droid_224px", "fractal_224px"]
    assert mix_main(["--profile", "full", "--dry-run"]) == MIXES["full"].directories()
    roots = {s: str(write_fixture(tmp_path / s, s, "v3.0", episodes=2, length=LENGTH)) for s in ("droid", "fractal")}
    mix = DataMix(synthetic_episodes=2, droid_episodes=2, fractal_episodes=2, image_size=32, root=str(tmp_path / "d"))
    dirs = prepare(mix, real_roots=roots, progress=False)
    batch = next(iter(make_dataloader(dirs, batch_size=100_000, shuffle=False)))
    assert batch["episode_index"].unique().numel() == 6                           # 2 + 2 + 2, ids kept unique
    assert batch["depth_valid"].any() and not batch["depth_valid"].all()           # synthetic has depth, real not
    assert (~batch["action_valid"]).sum() == 2 * round(LENGTH * 20 / 3)           # fractal's frames only
