"""Validate a NovaPick dataset directory and print a JSON summary last.

    python -m novapick.data.check DIR

Checks every shard: readable, every schema field present with its type, image byte
sizes, value ranges (joint angles within the Panda's limits, joint velocities and mode
logits of the actions, gripper state, grasp flags), no NaN/inf, non-empty instructions,
and episode continuity (frame_index 0..T-1 in order, done only on the last frame, every
episode 0..N-1 present exactly once, no shard of the generation missing). Problems name
the shard or episode and the field; nothing is skipped silently. Exit code 1 on problems.

The summary: ``episodes``, ``frames``, ``content_hash``, ``problems`` and
``depth_invalid_fraction`` (share of depth pixels that are 0 = invalid).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from novapick.data.schema import ACTION_DIM, PROPRIO_DIM, DataFormatError, decode_images, vector_column
from novapick.data.writer import content_hash, load_generation_config, read_shard, shard_path
from novapick.sim.robot import ARM_JOINT_LOWER, ARM_JOINT_UPPER, MAX_FINGER_OPENING

ANGLE_TOLERANCE = 0.05          # rad beyond a joint limit before it is a problem
APERTURE_MAX_M = 2 * MAX_FINGER_OPENING + 1e-3


def image_size_of(root: Path) -> int:
    info = Path(root) / "meta" / "info.json"
    if not info.exists():
        raise DataFormatError(f"{info} is missing: {root} is not a finished NovaPick dataset "
                              "(run data_scripts/generate_synthetic.py or load_real.py to (re)create it)")
    return int(json.loads(info.read_text())["config"]["image_size"])


def _first(problems: list[str], bad: np.ndarray, episodes: np.ndarray, frames: np.ndarray, field: str,
           what: str) -> None:
    """Report the first offending row of a boolean mask (one line per field and shard)."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        problems.append(f"episode {int(episodes[row])}, field {field!r}: {what} at frame {int(frames[row])} "
                        f"({int(bad.sum())} frame(s) in this shard)")


def check_values(table, problems: list[str]) -> None:
    """Ranges and NaN/inf of the vector and scalar fields of one shard."""
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    vectors = {}
    for field, dim in (("action", ACTION_DIM), ("proprio", PROPRIO_DIM), ("gripper_state", 2)):
        vectors[field] = values = vector_column(table, field, dim)
        _first(problems, ~np.isfinite(values).all(1), episodes, frames, field, "NaN/inf")
    action, proprio, gripper = (np.nan_to_num(vectors[k]) for k in ("action", "proprio", "gripper_state"))
    _first(problems, np.abs(action[:, :7]).max(1) > 1.0 + 1e-6, episodes, frames, "action",
           "joint velocity outside [-1, 1]")
    logits = action[:, 7:]
    _first(problems, ~(np.isin(logits, (-1.0, 1.0)).all(1) & ((logits == 1.0).sum(1) == 1)), episodes, frames,
           "action", "gripper-mode logits are not one +1 and two -1")
    outside = (proprio[:, :7] < ARM_JOINT_LOWER - ANGLE_TOLERANCE) | (proprio[:, :7] > ARM_JOINT_UPPER + ANGLE_TOLERANCE)
    _first(problems, outside.any(1), episodes, frames, "proprio", "joint angle outside the Panda's limits")
    _first(problems, (gripper[:, 0] < 0) | (gripper[:, 0] > 1), episodes, frames, "gripper_state",
           "suction pressure outside [0, 1]")
    _first(problems, (gripper[:, 1] < 0) | (gripper[:, 1] > APERTURE_MAX_M), episodes, frames, "gripper_state",
           f"jaw aperture outside [0, {APERTURE_MAX_M:.3f}] m")
    for field in ("reward", "grasp"):
        values = table.column(field).to_numpy(zero_copy_only=False)
        _first(problems, ~np.isfinite(values), episodes, frames, field, "NaN/inf")
    grasp = table.column("grasp").to_numpy(zero_copy_only=False)
    _first(problems, ~np.isin(grasp, (0.0, 1.0)), episodes, frames, "grasp", "value other than 0 or 1")
    target_uv = vector_column(table, "target_uv", 3)
    _first(problems, ~np.isfinite(target_uv).all(1) | (np.abs(np.nan_to_num(target_uv[:, :2])).max(1) > 1.0)
           | ~np.isin(target_uv[:, 2], (0.0, 1.0)), episodes, frames, "target_uv",
           "NaN/inf, image coordinate outside [-1, 1] or in-view flag other than 0/1")
    empty = np.array([not (s or "").strip() for s in table.column("instruction").to_pylist()])
    _first(problems, empty, episodes, frames, "instruction", "empty instruction")


def check_table(table, size: int, problems: list[str]) -> tuple[dict[int, int], int]:
    """Append problems found in one shard; return ({episode: frames}, invalid depth pixels)."""
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    try:
        _, depth = decode_images(table, size, size)  # rgb is uint8 by construction: its size is what can break
    except DataFormatError as error:
        problems.append(str(error))
        return {}, 0
    try:
        check_values(table, problems)
    except DataFormatError as error:  # a missing value in a vector field
        problems.append(str(error))
    far = (depth > 10_000).reshape(len(depth), -1).any(1)  # > 10 m: not a wrist camera reading
    _first(problems, far, episodes, frames, "depth", "value above 10 m")
    lengths: dict[int, int] = {}
    done = table.column("done").to_numpy(zero_copy_only=False)
    for ep in np.unique(episodes):
        rows = np.flatnonzero(episodes == ep)
        T = len(rows)
        if not np.array_equal(frames[rows], np.arange(T)):
            problems.append(f"episode {int(ep)}, field 'frame_index': not 0..{T - 1} in order")
        if not done[rows[-1]] or done[rows[:-1]].any():
            problems.append(f"episode {int(ep)}, field 'done': must be True exactly on the last frame")
        lengths[int(ep)] = T
    return lengths, int((depth == 0).sum())


def _missing_shards(root: Path) -> list[str]:
    """Shards a generation run (meta/generation.json) should have written but did not."""
    config = root / "meta" / "generation.json"
    if not config.exists():
        return []
    cfg = load_generation_config(config)
    missing = []
    for shard in range(cfg.num_shards):
        if not shard_path(root, shard).exists():
            eps = cfg.shard_range(shard)
            missing.append(f"{shard_path(root, shard).name} (episodes {eps.start}..{eps.stop - 1}) is missing: "
                           "the generation was interrupted; re-run the same command to finish it")
    return missing


def check_dataset(root: str | Path) -> dict:
    """Validate ``root``; returns {episodes, frames, content_hash, problems, depth_invalid_fraction}."""
    root = Path(root)
    size = image_size_of(root)
    shards = sorted((root / "data").glob("shard-*.parquet"))
    if not shards:
        raise DataFormatError(f"no shards under {root / 'data'}")
    problems: list[str] = _missing_shards(root)
    lengths: dict[int, int] = {}
    invalid_pixels = 0
    for path in shards:
        try:
            table = read_shard(path)
        except DataFormatError as error:
            problems.append(str(error))
            continue
        shard_lengths, invalid = check_table(table, size, problems)
        invalid_pixels += invalid
        for ep, T in shard_lengths.items():
            if ep in lengths:
                problems.append(f"episode {ep}, field 'episode_index': appears in more than one shard")
            lengths[ep] = T
    if lengths:
        missing = sorted(set(range(max(lengths) + 1)) - set(lengths))
        if missing:
            problems.append(f"episodes {missing[:10]} are missing (field 'episode_index')")
    try:
        digest = content_hash(root)
    except DataFormatError:  # already listed as a problem above
        digest = None
    frames = sum(lengths.values())
    return {"episodes": len(lengths), "frames": frames, "content_hash": digest, "problems": problems,
            "depth_invalid_fraction": round(invalid_pixels / max(frames * size * size, 1), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    args = ap.parse_args(argv)
    try:
        summary = check_dataset(args.root)
    except DataFormatError as error:
        summary = {"episodes": 0, "frames": 0, "content_hash": None, "problems": [str(error)]}
    for problem in summary["problems"]:
        print("problem:", problem, file=sys.stderr)
    print(json.dumps(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
