"""Synthetic demonstrations: generation with the real simulator, resume, validation,
normalisation, frame and window loaders."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import novapick.data.generate as generate_module
import novapick.data.writer as writer
from novapick.data.check import check_dataset, main as check_main
from novapick.data.dataset import EpisodeStore, make_dataloader
from novapick.data.normalize import NormStats
from novapick.data.schema import DataFormatError

REPO = Path(__file__).resolve().parents[1]
TINY = {"episodes": 6, "image_size": 32, "shard_episodes": 2, "max_items": 3}  # 3 shards of 2 episodes


def _cfg(**kw) -> writer.GenerationConfig:
    return writer.GenerationConfig(**{**TINY, **kw})


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate_module.generate(_cfg(), out, workers=1, progress=False)


def _copy(dataset, tmp_path, name) -> Path:
    copy = tmp_path / name
    shutil.copytree(dataset[0], copy)
    return copy


def test_generated_dataset_is_complete_and_described(dataset):
    root, info = dataset
    assert info["episodes"] == 6 and info["frames"] > 6 * 20
    assert len(list((root / "data").glob("shard-*.parquet"))) == 3
    card = (root / "README.md").read_text()
    for expected in (info["content_hash"], "known", "expert success", "seed", "novapick-synthetic", "size on disk"):
        assert expected in card
    meta = json.loads((root / "meta" / "info.json").read_text())
    assert meta["generator_version"] and meta["config"]["seed"] == 0 and 0 < meta["expert_success_rate"] <= 1
    assert meta["features"]["rgb"]["shape"] == [3, 32, 32] and 0 <= meta["perturbed_episodes"] <= 6
    assert (root / "meta" / "stats.json").exists()
    import datasets
    hf = datasets.load_dataset("parquet", data_dir=str(root / "data"), split="train")
    assert hf.num_rows == info["frames"] and "instruction" in hf.column_names


def test_same_seed_same_hash_and_interrupted_runs_resume(dataset, tmp_path, monkeypatch):
    root, info = dataset
    original = generate_module.write_shard
    calls = {"n": 0}

    def crash_after_first(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt("simulated interruption")
        return original(*args, **kwargs)

    out = tmp_path / "again"
    monkeypatch.setattr(generate_module, "write_shard", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        generate_module.generate(_cfg(), out, workers=1, progress=False)
    first = out / "data" / "shard-00000.parquet"
    assert first.exists() and not (out / "data" / "shard-00001.parquet").exists()
    assert check_main([str(out)]) == 1  # an interrupted run (no meta/info.json) is not a finished dataset
    (out / "data" / "shard-00001.tmp4242").write_bytes(b"half a shard")  # a killed writer's leftover
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(generate_module, "write_shard", original)
    resumed = generate_module.generate(_cfg(), out, workers=1, progress=False)
    assert resumed["resumed_shards"] == 1 and first.stat().st_mtime_ns == stamp   # never rewritten
    assert not list((out / "data").glob("*.tmp*"))
    assert resumed["content_hash"] == info["content_hash"]


@pytest.mark.slow
def test_worker_count_does_not_change_the_content(dataset, tmp_path):
    info = generate_module.generate(_cfg(), tmp_path / "two_workers", workers=2, progress=False)
    assert info["content_hash"] == dataset[1]["content_hash"]


def test_cli_prints_the_hash_and_refuses_other_settings(dataset, capsys):
    root, info = dataset
    cli = _script("generate_synthetic")
    args = ["--episodes", "6", "--image-size", "32", "--shard-episodes", "2", "--items", "3", "--out", str(root)]
    assert cli.main(args)["resumed_shards"] == 3                          # nothing left to do
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"content_hash {info['content_hash']}"
    with pytest.raises(SystemExit, match="different settings"):
        cli.main(args[:-2] + ["--seed", "9", "--out", str(root)])
    with pytest.raises(SystemExit):
        cli.main(["--episodes", "0", "--out", str(root)])                 # validated before anything runs


def test_balanced_modes_alternate_suction_and_jaw_targets_and_cover_every_object():
    from novapick.data.mix import DataMix
    from novapick.sim.catalog import load_catalog

    catalog = load_catalog()
    plain = [writer.episode_plan(_cfg(episodes=100), i)["object_name"] for i in range(100)]
    balanced = [writer.episode_plan(_cfg(episodes=100, balance_modes=True), i)["object_name"] for i in range(100)]
    # off: every known object twice, as before the setting existed
    assert sorted(plain) == sorted(o.name for o in catalog.split("known") for _ in range(2))
    modes = [catalog.get(name).best_mode for name in balanced]
    assert modes[0::2] == ["suction"] * 50 and modes[1::2] == ["parallel_jaw"] * 50
    jaw = {o.name for o in catalog.split("known") if o.best_mode == "parallel_jaw"}
    assert set(balanced[1::2]) == jaw               # every jaw object, about 3 times each
    # the seeds and bin sizes do not depend on the setting: only the targets change
    assert ([writer.episode_plan(_cfg(), i)["seed"] for i in range(6)]
            == [writer.episode_plan(_cfg(balance_modes=True), i)["seed"] for i in range(6)])
    mix = DataMix(shape_jitter=0.3, balance_modes=True)
    assert mix.generation_config().balance_modes and mix.directories()[0].endswith("_jitter0.3_balanced")


def test_check_passes_and_prints_a_json_summary_last(dataset, capsys):
    root, info = dataset
    assert check_main([str(root)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: summary[k] for k in ("episodes", "frames", "content_hash", "problems")} == {
        "episodes": 6, "frames": info["frames"], "content_hash": info["content_hash"], "problems": []}
    assert 0 <= summary["depth_invalid_fraction"] < 1


def test_content_hash_ignores_compression_and_row_groups(dataset, tmp_path):
    copy = _copy(dataset, tmp_path, "recompressed")
    path = copy / "data" / "shard-00001.parquet"
    pq.write_table(pq.read_table(path), path, compression="snappy", row_group_size=7)
    assert writer.content_hash(copy) == dataset[1]["content_hash"]


def test_corrupt_shard_is_reported_by_name_and_episodes(dataset, tmp_path):
    copy = _copy(dataset, tmp_path, "corrupt")
    (copy / "data" / "shard-00001.parquet").write_bytes(b"not a parquet file")
    problems = check_dataset(copy)["problems"]
    assert any("shard-00001.parquet (episodes 2..3) is unreadable" in p for p in problems), problems
    assert check_main([str(copy)]) == 1
    with pytest.raises(DataFormatError, match=r"shard-00001.parquet \(episodes 2..3\)"):
        EpisodeStore(copy)


def test_missing_shard_is_reported(dataset, tmp_path):
    copy = _copy(dataset, tmp_path, "missing")
    (copy / "data" / "shard-00002.parquet").unlink()
    problems = check_dataset(copy)["problems"]
    assert any("shard-00002.parquet (episodes 4..5) is missing" in p for p in problems), problems


def _edit(path: Path, field: str, array: pa.Array) -> None:
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.column_names.index(field), field, array), path)


def test_nan_wrong_type_and_missing_fields_name_episode_and_field(dataset, tmp_path):
    copy = _copy(dataset, tmp_path, "nan")
    path = copy / "data" / "shard-00002.parquet"
    original = pq.read_table(path)
    actions = np.array(original.column("action").to_pylist(), np.float32)
    actions[3, 2] = np.nan
    _edit(path, "action", pa.array(list(actions), type=pa.list_(pa.float32(), 10)))
    problems = check_dataset(copy)["problems"]
    assert any("episode 4, field 'action': NaN/inf at frame 3" in p for p in problems), problems
    with pytest.raises(DataFormatError, match="episode 4, field 'action': NaN/inf at frame 3"):
        EpisodeStore(copy)
    proprio = original.column("proprio").to_pylist()
    _edit(path, "proprio", pa.array([p[:13] for p in proprio], type=pa.list_(pa.float32())))  # 13, variable size
    with pytest.raises(DataFormatError, match=r"episodes 4..5\), field 'proprio': expected fixed_size_list"):
        EpisodeStore(copy)
    pq.write_table(original.drop(["grasp"]), path)
    assert any("missing field(s) ['grasp']" in p for p in check_dataset(copy)["problems"])


def test_out_of_range_values_are_problems(dataset, tmp_path):
    copy = _copy(dataset, tmp_path, "ranges")
    path = copy / "data" / "shard-00000.parquet"
    table = pq.read_table(path)
    actions = np.array(table.column("action").to_pylist(), np.float32)
    actions[5, 7:] = [1, 1, -1]                                   # two gripper modes at once
    proprio = np.array(table.column("proprio").to_pylist(), np.float32)
    proprio[6, 3] = 1.0                                           # joint 4 above its 0 rad limit
    _edit(path, "action", pa.array(list(actions), type=pa.list_(pa.float32(), 10)))
    _edit(path, "proprio", pa.array(list(proprio), type=pa.list_(pa.float32(), 14)))
    problems = check_dataset(copy)["problems"]
    assert any("episode 0, field 'action': gripper-mode logits" in p and "frame 5" in p for p in problems)
    assert any("episode 0, field 'proprio': joint angle outside" in p and "frame 6" in p for p in problems)


def test_normalisation_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    proprio = rng.normal(size=(500, 14)).astype(np.float32)
    NormStats.from_arrays(proprio, rng.normal(size=(500, 10))).save(tmp_path / "stats.json")
    stats = NormStats.load(tmp_path / "stats.json")                 # through the json beside the data
    normalized = stats.normalize_proprio(proprio)
    assert normalized[:, :7].min() == pytest.approx(-1) and normalized[:, :7].max() == pytest.approx(1)
    np.testing.assert_allclose(stats.unnormalize_proprio(normalized), proprio, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="stats.json not found"):
        NormStats.load(tmp_path / "nope" / "stats.json")


def test_saved_statistics_come_from_the_training_split(dataset):
    root, _ = dataset
    stats = NormStats.load(root / "meta" / "stats.json")
    store = EpisodeStore(root)
    np.testing.assert_allclose(stats.joint_min, store.proprio[:, :7].min(0), atol=1e-6)
    proprio = next(iter(make_dataloader(root, batch_size=100_000, shuffle=False)))["proprioception"]
    assert proprio[:, :7].min() == pytest.approx(-1, abs=1e-5) and proprio[:, :7].max() == pytest.approx(1, abs=1e-5)


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
    assert torch.equal(batch["actions"][first], torch.from_numpy(store.action[first:first + 16]))  # no bleed-over
    assert torch.equal(batch["actions"][last - 1, 2], torch.from_numpy(store.action[last]))  # never the next episode


def test_loader_yields_the_case_study_tuple_and_windows(dataset):
    rgb, depth, language, actions, proprio, rewards = next(iter(make_dataloader(dataset[0], 8, as_tuple=True,
                                                                                 image_size=224)))
    assert rgb.shape == (8, 3, 224, 224) and depth.shape == (8, 1, 224, 224)
    assert language.shape == (8, 77) and language.dtype == torch.int64 and (language[:, 0] == 49406).all()
    assert actions.shape == (8, 16, 10) and proprio.shape == (8, 14) and rewards.shape == (8,)
    assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= depth.min() and depth.max() <= 1
    assert proprio[:, :7].abs().max() <= 1.0 + 1e-5
    full = next(iter(make_dataloader(dataset[0], 10_000, shuffle=False)))
    assert (full["depth"] == 0).sum() > 0                                        # invalid pixels stay 0, countable
    assert full["depth_valid"].all() and full["action_valid"].all() and full["proprio_valid"].all()
    assert set(full["grasp"].unique().tolist()) == {0.0, 1.0} and full["rewards"].max() >= 1.0
    windows = next(iter(make_dataloader(dataset[0], 4, seq_len=10)))
    assert windows["rgb"].shape == (4, 10, 3, 32, 32) and windows["actions"].shape == (4, 10, 16, 10)
    assert windows["rewards"].shape == (4, 10) and windows["language"].shape == (4, 77)
    assert (windows["frame_index"].diff(dim=1) == 1).all()                     # consecutive steps
    assert (windows["episode_index"] == windows["episode_index"][:, :1]).all()  # one episode each
    tup = next(iter(make_dataloader(dataset[0], 4, seq_len=10, as_tuple=True)))
    assert [t.shape[:2] for t in tup[:2]] == [(4, 10), (4, 10)] and tup[3].shape == (4, 10, 16, 10)


def test_loader_is_deterministic_given_the_seed(dataset):
    first = [b["episode_index"] for b in make_dataloader(dataset[0], 16, seed=3)]
    again = [b["episode_index"] for b in make_dataloader(dataset[0], 16, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_grounding_scenes_are_seeded_resumable_and_independent_of_the_workers(tmp_path, monkeypatch):
    from novapick.data import scenes as S

    monkeypatch.setattr(S, "CHUNK_SCENES", 3)            # 7 scenes = chunks of 3, 3, 1
    cfg = S.SceneConfig(scenes=7, image_size=32, max_items=3, shape_jitter=0.3)
    one = S.generate_scenes(cfg, tmp_path / "a", workers=1)
    two = S.generate_scenes(cfg, tmp_path / "b", workers=2)
    a, b = S.load_scenes(one["path"], 32), S.load_scenes(two["path"], 32)
    for key in S.FIELDS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["rgb"].shape == (7, 3, 32, 32) and a["rgb"].dtype == np.uint8 and a["depth"].shape == (7, 1, 32, 32)
    assert all(text.startswith(("pick", "grab", "get", "please")) for text in a["instruction"])
    seen = a["target_uv"][:, 2] > 0
    assert seen.mean() > 0.5 and (np.abs(a["target_uv"][seen, :2]) <= 1).all()
    assert S.generate_scenes(cfg, tmp_path / "a")["reused"]                         # same settings: kept
    other = S.generate_scenes(S.SceneConfig(scenes=7, image_size=32, max_items=3, seed=1), tmp_path / "a")
    assert not other["reused"] and not np.array_equal(S.load_scenes(other["path"])["rgb"], a["rgb"])


def test_a_missing_corrupt_or_wrong_size_scenes_file_is_a_clear_error(tmp_path):
    from novapick.data import scenes as S

    with pytest.raises(FileNotFoundError, match="python -m novapick.data.scenes"):
        S.load_scenes(tmp_path / "none.npz")
    np.savez(tmp_path / "partial.npz", rgb=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DataFormatError, match="needs rgb, depth, instruction, target_uv"):
        S.load_scenes(tmp_path / "partial.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataFormatError, match="not a grounding-scenes file"):
        S.load_scenes(tmp_path / "garbage.npz")
    np.savez(tmp_path / "ok.npz", rgb=np.zeros((2, 3, 8, 8), np.uint8), depth=np.zeros((2, 1, 8, 8), np.float16),
             instruction=np.array(["pick the box"] * 2), target_uv=np.zeros((2, 3), np.float32))
    with pytest.raises(DataFormatError, match="8 px scenes; the model needs 64 px"):
        S.load_scenes(tmp_path / "ok.npz", image_size=64)
    np.savez(tmp_path / "short.npz", rgb=np.zeros((2, 3, 8, 8), np.uint8), depth=np.zeros((1, 1, 8, 8)),
             instruction=np.array(["a", "b"]), target_uv=np.zeros((2, 3), np.float32))
    with pytest.raises(DataFormatError, match=r"depth has shape \(1, 1, 8, 8\), expected \(2, 1, 8, 8\)"):
        S.load_scenes(tmp_path / "short.npz")
