"""Demonstration data: generation, resume, validation, normalisation, loaders, LeRobot import."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import novapick.data.writer as writer
from novapick.data.check import check_dataset, main as check_main
from novapick.data.dataset import EpisodeStore, make_dataloader
from novapick.data.lerobot import write_fixture
from novapick.data.normalize import NormStats
from novapick.data.schema import DataFormatError

REPO = Path(__file__).resolve().parents[1]


def _generate(out, **kw):
    import novapick.data.generate as module
    cfg = writer.GenerationConfig(**{"episodes": 6, "image_size": 32, "shard_episodes": 2, "max_items": 3, **kw})
    return module.generate(cfg, Path(out), workers=1, progress=False), module


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    info, _ = _generate(out)
    return out, info


def test_generated_dataset_is_complete_and_described(dataset):
    root, info = dataset
    assert info["episodes"] == 6 and info["frames"] > 6 * 20
    assert len(list((root / "data").glob("shard-*.parquet"))) == 3
    card = (root / "README.md").read_text()
    assert info["content_hash"] in card and "known" in card and "expert success" in card
    meta = json.loads((root / "meta" / "info.json").read_text())
    assert meta["generator_version"] and meta["config"]["seed"] == 0 and 0 < meta["expert_success_rate"] <= 1
    assert (root / "meta" / "stats.json").exists()
    import datasets
    hf = datasets.load_dataset("parquet", data_dir=str(root / "data"), split="train")
    assert hf.num_rows == info["frames"] and "instruction" in hf.column_names


def test_same_seed_same_hash_and_interrupted_runs_resume(dataset, tmp_path, monkeypatch):
    root, info = dataset
    original = writer.write_shard
    calls = {"n": 0}

    def crash_after_first(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt("simulated interruption")
        return original(*args, **kwargs)

    out = tmp_path / "again"
    _, module = _generate(tmp_path / "warmup", episodes=2)
    monkeypatch.setattr(module, "write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        module.generate(writer.GenerationConfig(episodes=6, image_size=32, shard_episodes=2, max_items=3), out,
                        workers=1, progress=False)
    first = out / "data" / "shard-00000.parquet"
    assert first.exists() and not (out / "data" / "shard-00001.parquet").exists()
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(module, "write_shard", original)
    resumed = module.generate(writer.GenerationConfig(episodes=6, image_size=32, shard_episodes=2, max_items=3), out,
                              workers=1, progress=False)
    assert resumed["resumed_shards"] == 1 and first.stat().st_mtime_ns == stamp   # never rewritten
    assert resumed["content_hash"] == info["content_hash"]


def test_other_settings_in_the_same_directory_are_refused(dataset):
    root, _ = dataset
    _, module = _generate(root)  # same settings: a no-op resume
    with pytest.raises(SystemExit, match="different settings"):
        module.generate(writer.GenerationConfig(episodes=6, image_size=32, shard_episodes=2, seed=9), root,
                        workers=1, progress=False)


def test_check_passes_and_prints_a_json_summary_last(dataset, capsys):
    root, info = dataset
    assert check_main([str(root)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"episodes": 6, "frames": info["frames"], "content_hash": info["content_hash"], "problems": []}


def test_corrupt_shard_is_reported_by_name(dataset, tmp_path):
    copy = tmp_path / "corrupt"
    shutil.copytree(dataset[0], copy)
    (copy / "data" / "shard-00001.parquet").write_bytes(b"not a parquet file")
    summary = check_dataset(copy)
    assert any("shard-00001.parquet is unreadable" in p for p in summary["problems"])
    with pytest.raises(DataFormatError, match="shard-00001.parquet"):
        EpisodeStore(copy)


def test_nan_and_missing_fields_name_episode_and_field(dataset, tmp_path):
    copy = tmp_path / "nan"
    shutil.copytree(dataset[0], copy)
    path = copy / "data" / "shard-00002.parquet"
    table = pq.read_table(path)
    actions = np.array(table.column("action").to_pylist(), np.float32)
    actions[3, 2] = np.nan
    i = table.column_names.index("action")
    table = table.set_column(i, "action", pa.array(list(actions), type=pa.list_(pa.float32(), 10)))
    pq.write_table(table, path)
    problems = check_dataset(copy)["problems"]
    assert any("episode 4, field 'action': NaN/inf at frame 3" in p for p in problems)
    pq.write_table(table.drop(["grasp"]), path)
    assert any("missing field(s) ['grasp']" in p for p in check_dataset(copy)["problems"])


def test_normalisation_round_trip():
    rng = np.random.default_rng(0)
    proprio = rng.normal(size=(500, 14)).astype(np.float32)
    stats = NormStats.from_arrays(proprio, rng.normal(size=(500, 10)))
    normalized = stats.normalize_proprio(proprio)
    assert normalized[:, :7].min() == pytest.approx(-1) and normalized[:, :7].max() == pytest.approx(1)
    np.testing.assert_allclose(stats.unnormalize_proprio(normalized), proprio, atol=1e-5)


def test_chunks_are_padded_at_episode_ends(dataset):
    loader = make_dataloader(dataset[0], batch_size=10_000, shuffle=False)
    batch = next(iter(loader))
    store = loader.dataset.base.store
    last = int(store.episode_start[0] + store.episode_length[0] - 1)
    assert batch["pad_mask"][last].tolist() == [False] + [True] * 15
    assert torch.equal(batch["actions"][last], batch["actions"][last, :1].expand(16, 10))  # last action repeated
    third_last = last - 2
    assert batch["pad_mask"][third_last].sum() == 13
    assert torch.equal(batch["actions"][third_last, :3], torch.from_numpy(store.action[third_last:last + 1]))
    first = int(store.episode_start[0])
    assert not batch["pad_mask"][first].any()


def test_loader_yields_the_case_study_tuple_and_windows(dataset):
    rgb, depth, language, actions, proprio, rewards = next(iter(make_dataloader(dataset[0], 8, as_tuple=True,
                                                                                 image_size=224)))
    assert rgb.shape == (8, 3, 224, 224) and depth.shape == (8, 1, 224, 224)
    assert language.shape == (8, 77) and language.dtype == torch.int64 and (language[:, 0] == 49406).all()
    assert actions.shape == (8, 16, 10) and proprio.shape == (8, 14) and rewards.shape == (8,)
    assert 0 <= depth.min() and depth.max() <= 1 and (depth == 0).sum() > 0      # invalid stays 0
    assert proprio[:, :7].abs().max() <= 1.0 + 1e-5
    windows = next(iter(make_dataloader(dataset[0], 4, seq_len=10)))
    assert windows["rgb"].shape == (4, 10, 3, 32, 32) and windows["actions"].shape == (4, 10, 16, 10)
    assert (windows["frame_index"].diff(dim=1) == 1).all()                     # consecutive steps
    assert (windows["episode_index"] == windows["episode_index"][:, :1]).all()  # one episode each


@pytest.mark.parametrize("source", ["droid", "fractal"])
@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_lerobot_fixtures_load_through_the_same_dataloader(tmp_path, source, version):
    import importlib.util
    spec = importlib.util.spec_from_file_location("load_real", REPO / "data_scripts" / "load_real.py")
    load_real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_real)
    root = write_fixture(tmp_path / "lerobot", source, version, episodes=2, length=12)
    info = load_real.main(["--source", source, "--from-dir", str(root), "--out", str(tmp_path / "ours"),
                           "--image-size", "32"])
    fps = 15 if source == "droid" else 3
    assert info["episodes"] == 2 and info["frames"] == 2 * round(12 * 20 / fps)   # resampled to 20 Hz
    batch = next(iter(make_dataloader(tmp_path / "ours", batch_size=5)))
    assert batch["rgb"].shape == (5, 3, 32, 32) and batch["actions"].shape == (5, 16, 10)
    assert not batch["depth_valid"].any() and batch["depth"].abs().sum() == 0   # no depth: masked
    modes = batch["actions"][..., 7:].argmax(-1)
    assert set(modes.unique().tolist()) <= {1, 2}                               # jaw or release, never suction
    if source == "droid":
        assert batch["proprioception"][:, 7:].abs().sum() > 0                    # velocities from joint positions
