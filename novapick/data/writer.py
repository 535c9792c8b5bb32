"""Writing synthetic demonstrations as resumable parquet shards plus a dataset card."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from novapick.data.schema import FRAME_FIELDS, GENERATOR_VERSION, SCHEMA, DataFormatError, episode_to_table

SHARD_EPISODES = 10  # episodes per shard: the unit of work, of resuming and of hashing


def validate_bin_settings(split: str, image_size: int, max_items: int, shape_jitter: float) -> None:
    """The settings every generated bin shares (demonstrations and grounding scenes)."""
    if split not in ("known", "novel"):
        raise ValueError(f"split must be 'known' or 'novel', got {split!r}")
    if not 16 <= image_size <= 640:
        raise ValueError(f"image_size must be in [16, 640], got {image_size}")
    if not 1 <= max_items <= 30:
        raise ValueError(f"max_items must be in [1, 30], got {max_items}")
    if not 0.0 <= shape_jitter <= 0.5:
        raise ValueError(f"shape_jitter must be in [0, 0.5], got {shape_jitter}")


@dataclass
class GenerationConfig:
    """Everything that determines the dataset's content (stored in meta/info.json)."""

    episodes: int = 300
    split: str = "known"
    seed: int = 0
    image_size: int = 96
    max_items: int = 5          # bins of 1..max_items items
    perturb_fraction: float = 0.5
    shard_episodes: int = SHARD_EPISODES
    shape_jitter: float = 0.0   # every item's dimensions scaled by 1 +- this (see catalog.jittered_spec)
    balance_modes: bool = False  # alternate suction and jaw targets (see episode_plan)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        validate_bin_settings(self.split, self.image_size, self.max_items, self.shape_jitter)
        if not 0.0 <= self.perturb_fraction <= 1.0:
            raise ValueError(f"perturb_fraction must be in [0, 1], got {self.perturb_fraction}")
        if self.shard_episodes < 1:
            raise ValueError(f"shard_episodes must be >= 1, got {self.shard_episodes}")

    @property
    def num_shards(self) -> int:
        return (self.episodes + self.shard_episodes - 1) // self.shard_episodes

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_episodes, min((shard + 1) * self.shard_episodes, self.episodes))


def episode_plan(cfg: GenerationConfig, index: int) -> dict:
    """Seed, target, bin size and perturbation of episode ``index``: a pure function of
    (cfg, index), so the dataset does not depend on the number of workers or on resuming.

    Targets go round the split's objects in catalog order. With ``cfg.balance_modes``
    even episodes go round the suction objects and odd ones round the jaw objects
    (catalog ``best_mode``): the known split has 33 of one and 17 of the other, so
    without it a policy meets a jaw pick in a third of its demonstrations and defaults
    to suction on shapes it has never seen."""
    from novapick.sim.catalog import load_catalog

    objects, turn = load_catalog().split(cfg.split), index
    if cfg.balance_modes:
        mode = ("suction", "parallel_jaw")[index % 2]
        objects, turn = [o for o in objects if o.best_mode == mode], index // 2
    rng = np.random.default_rng([cfg.seed, index, 1234])
    return {"seed": int(rng.integers(1 << 31)), "object_name": objects[turn % len(objects)].name,
            "n_items": int(rng.integers(1, cfg.max_items + 1)),
            "perturb": bool(rng.random() < cfg.perturb_fraction)}


def shard_path(out: Path, shard: int) -> Path:
    return out / "data" / f"shard-{shard:05d}.parquet"


def remove_stale_tmp(out: Path) -> int:
    """Delete half-written shards (``shard-XXXXX.tmp<pid>``) left by an interrupted run."""
    stale = list((Path(out) / "data").glob("shard-*.tmp*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_shard(cfg: GenerationConfig, out: Path, shard: int, env=None) -> dict:
    """Generate and atomically write one shard (skipped if it already exists: a finished
    shard is never rewritten). Returns a summary of its episodes."""
    from novapick.sim import make_env
    from novapick.sim.rollout import record_expert_episode

    path = shard_path(out, shard)
    if path.exists():
        return {"shard": shard, "skipped": True}
    own_env = env is None
    env = env or make_env(cfg.image_size)
    tables, outcomes = [], []
    for index in cfg.shard_range(shard):
        plan = episode_plan(cfg, index)
        ep = record_expert_episode(env, plan["seed"], plan["object_name"], cfg.split, plan["n_items"],
                                   perturb=plan["perturb"], shape_jitter=cfg.shape_jitter)
        tables.append(episode_to_table(ep, index))
        outcomes.append(bool(ep.meta["success"]))
    if own_env:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(pa.concat_tables(tables), tmp, compression="zstd", row_group_size=4096)
    os.replace(tmp, path)  # atomic: a shard is either complete or absent
    return {"shard": shard, "skipped": False, "episodes": len(outcomes), "successes": sum(outcomes)}


def load_generation_config(path: Path) -> GenerationConfig:
    """The GenerationConfig stored in meta/generation.json (its generator version aside)."""
    settings = json.loads(Path(path).read_text())
    settings.pop("generator_version", None)
    return GenerationConfig(**settings)


def expected_episodes(path: Path) -> str:
    """'episodes a..b' that shard ``path`` holds according to meta/generation.json, or ''."""
    config = Path(path).parent.parent / "meta" / "generation.json"
    try:
        cfg = load_generation_config(config)
        shard = cfg.shard_range(int(Path(path).name.split("-")[1].split(".")[0]))
        return f"episodes {shard.start}..{shard.stop - 1}" if len(shard) else ""
    except (OSError, ValueError, TypeError, IndexError):  # no (readable) generation config: real data
        return ""


def read_shard(path: Path) -> pa.Table:
    """Read one shard and check its schema. A corrupt file, a missing field or a field of
    the wrong type raises DataFormatError naming the shard, its episodes and the field."""
    try:
        table = pq.read_table(path)
    except Exception as error:  # noqa: BLE001 - any parquet failure means a corrupt shard
        holds = expected_episodes(path)
        raise DataFormatError(f"shard {path.name}{f' ({holds})' if holds else ''} is unreadable "
                              f"({type(error).__name__}: {error}); delete it and re-run the command that wrote "
                              "it (the generator regenerates exactly the missing shards)") from error
    eps = (sorted(set(table.column("episode_index").to_pylist())) if "episode_index" in table.column_names
           else expected_episodes(path) or "?")
    missing = [f for f in FRAME_FIELDS if f not in table.column_names]
    if missing:
        raise DataFormatError(f"shard {path.name} (episodes {_span(eps)}): missing field(s) {missing}")
    for name, (dtype, _, _) in FRAME_FIELDS.items():
        got = table.schema.field(name).type
        if not _same_type(got, dtype):
            raise DataFormatError(f"shard {path.name} (episodes {_span(eps)}), field {name!r}: expected {dtype}, "
                                  f"got {got}")
    return table


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    """Type equality that ignores list-item names and nullability (writers differ there)."""
    if pa.types.is_fixed_size_list(want):
        return (pa.types.is_fixed_size_list(got) and got.list_size == want.list_size
                and got.value_type == want.value_type)
    return got == want


def _span(eps) -> str:
    return f"{eps[0]}..{eps[-1]}" if isinstance(eps, list) and eps else str(eps)


def _canonical(column: pa.ChunkedArray):
    """Byte strings that identify a column's values (not its buffers: validity bitmaps,
    chunking, padding and compression differ between writers and readers)."""
    arr = column.combine_chunks()
    if arr.null_count:
        raise DataFormatError("missing values")
    if pa.types.is_binary(arr.type) or pa.types.is_string(arr.type):
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset: arr.offset + len(arr) + 1]
        yield np.diff(offsets).astype("<i8").tobytes()
        if len(arr):
            yield memoryview(arr.buffers()[2])[offsets[0]:offsets[-1]]
    elif pa.types.is_fixed_size_list(arr.type):
        yield np.ascontiguousarray(arr.flatten().to_numpy(zero_copy_only=False).astype("<f4")).tobytes()
    else:
        values = arr.to_numpy(zero_copy_only=False)
        yield np.ascontiguousarray(values.astype(np.uint8) if values.dtype == bool else values).tobytes()


def content_hash(out: Path) -> str:
    """sha256 over the values of every schema field, shard by shard in episode order:
    independent of which worker wrote which shard, of parquet compression and metadata,
    and of the pyarrow version."""
    digest = hashlib.sha256()
    for path in sorted((Path(out) / "data").glob("shard-*.parquet")):
        table = read_shard(path)
        for name in FRAME_FIELDS:
            digest.update(f"{path.name}/{name}/{table.num_rows}".encode())
            try:
                for chunk in _canonical(table.column(name)):
                    digest.update(chunk)
            except DataFormatError as error:
                raise DataFormatError(f"shard {path.name}, field {name!r}: missing values") from error
    return digest.hexdigest()


def write_metadata(cfg: GenerationConfig, out: Path, summaries: list[dict], wall_s: float) -> dict:
    """meta/info.json and the README.md dataset card, from the finished shards."""
    episodes = frames = successes = perturbed = 0
    failures: dict[str, int] = {}
    for path in sorted((out / "data").glob("shard-*.parquet")):
        table = read_shard(path).select(["episode_index", "success", "failure", "done", "perturbed"])
        last = table.filter(table.column("done"))
        episodes += last.num_rows
        frames += table.num_rows
        successes += sum(last.column("success").to_pylist())
        perturbed += sum(last.column("perturbed").to_pylist())
        for f in last.column("failure").to_pylist():
            if f:
                failures[f] = failures.get(f, 0) + 1
    info = {
        "generator_version": GENERATOR_VERSION, "config": asdict(cfg), "episodes": episodes, "frames": frames,
        "expert_success_rate": successes / max(episodes, 1), "failures": failures, "perturbed_episodes": perturbed,
        "features": {k: {"dtype": str(v[0]), "shape": [s if isinstance(s, int) else cfg.image_size for s in v[1]],
                         "description": v[2]} for k, v in FRAME_FIELDS.items()},
        "content_hash": content_hash(out), "generation_wall_s": round(wall_s, 1),
        "bytes_on_disk": sum(p.stat().st_size for p in (out / "data").glob("*.parquet")),
        "created": time.strftime("%Y-%m-%d"),
    }
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    write_stats(out)
    (out / "README.md").write_text(dataset_card(info))
    return info


def write_stats(out: Path) -> None:
    """meta/stats.json: joint-angle ranges and action moments of this (training) split."""
    from novapick.data.normalize import NormStats
    from novapick.data.schema import vector_column

    proprio, action = [], []
    for path in sorted((out / "data").glob("shard-*.parquet")):
        table = read_shard(path).select(["proprio", "action", "episode_index"])
        proprio.append(vector_column(table, "proprio", 14))
        action.append(vector_column(table, "action", 10))
    NormStats.from_arrays(np.concatenate(proprio), np.concatenate(action)).save(out / "meta" / "stats.json")


def dataset_card(info: dict) -> str:
    cfg = info["config"]
    rows = "\n".join(f"| `{k}` | {v['dtype']} | {v['shape']} | {v['description']} |" for k, v in info["features"].items())
    return f"""---
configs:
- config_name: default
  data_files: data/shard-*.parquet
license: mit
task_categories: [robotics]
tags: [novapick, pick-and-place, synthetic, pybullet]
---
# NovaPick synthetic demonstrations ({cfg['split']} objects)

Scripted-expert pick-and-place episodes from the NovaPick PyBullet cell (Franka Panda,
hybrid suction / parallel-jaw gripper, wrist RGB-D camera), generated by
`data_scripts/generate_synthetic.py` ({info['generator_version']}).

| | |
|---|---|
| episodes / frames | {info['episodes']} / {info['frames']} |
| object split | {cfg['split']} (50 objects; {'even episodes go round the suction objects, odd ones round the jaw objects' if cfg.get('balance_modes') else 'episode *i* targets object *i* mod 50'}) |
| bins | 1-{cfg['max_items']} items |
| image size | {cfg['image_size']} x {cfg['image_size']} |
| seed | {cfg['seed']} |
| perturbed episodes | {info['perturbed_episodes']} (each with probability {cfg['perturb_fraction']:.0%}: smooth noise on the executed approach, clean expert labels) |
| item sizes | {"catalog sizes" if not cfg.get('shape_jitter') else f"every item's dimensions scaled by 1 +- {cfg['shape_jitter']} (labels recomputed)"} |
| expert success | {info['expert_success_rate']:.1%} (failures: {info['failures'] or 'none'}) |
| size on disk | {info['bytes_on_disk'] / 1e6:.1f} MB ({info['config']['shard_episodes']} episodes per shard) |
| content hash (sha256) | `{info['content_hash']}` |

Reproduce: `python data_scripts/generate_synthetic.py --episodes {cfg['episodes']} --split {cfg['split']}
--seed {cfg['seed']} --image-size {cfg['image_size']} --items {cfg['max_items']}
--perturb-fraction {cfg['perturb_fraction']} --shard-episodes {cfg['shard_episodes']}
--shape-jitter {cfg.get('shape_jitter', 0.0)}{' --balance-modes' if cfg.get('balance_modes') else ''} --out DIR`
(any `--workers`): the same content hash.

One row per 20 Hz control step. Observation *t* is the one before action *t*. RGB is
raw uint8 (3, H, W) bytes; depth is uint16 millimetres (1, H, W) with 0 = invalid
(transparent surfaces, too close); normalisation statistics of this split are in
`meta/stats.json`.

| field | type | shape | meaning |
|---|---|---|---|
{rows}

Load: `datasets.load_dataset("parquet", data_dir="<this dir>/data")`, or for training
`novapick.data.dataset.make_dataloader("<this dir>")`.
"""
