"""Validate a NovaPick dataset directory and print a JSON summary last.

    python -m novapick.data.check DIR

Checks every shard: readable, schema complete, image byte sizes, value ranges, no
NaN/inf, and episode continuity (frame_index 0..T-1 in order, done only on the last
frame, every episode 0..N-1 present exactly once). Problems are listed with the
episode and field they concern; nothing is skipped silently. Exit code 1 on problems.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from novapick.data.schema import ACTION_DIM, PROPRIO_DIM, DataFormatError, decode_images, vector_column
from novapick.data.writer import content_hash, read_shard


def image_size_of(root: Path) -> int:
    info = root / "meta" / "info.json"
    if not info.exists():
        raise DataFormatError(f"{info} is missing: {root} is not a finished NovaPick dataset "
                              "(run data_scripts/generate_synthetic.py to (re)create it)")
    return int(json.loads(info.read_text())["config"]["image_size"])


def check_table(table, size: int, problems: list[str]) -> dict[int, int]:
    """Append problems found in one shard; return {episode: frames}."""
    episodes = table.column("episode_index").to_numpy()
    frames = table.column("frame_index").to_numpy()
    try:
        rgb, depth = decode_images(table, size, size)
    except DataFormatError as error:
        problems.append(str(error))
        return {}
    for field, dim, bound in (("action", ACTION_DIM, None), ("proprio", PROPRIO_DIM, None), ("gripper_state", 2, None)):
        try:
            values = vector_column(table, field, dim)
        except DataFormatError as error:
            problems.append(str(error))
            continue
        bad = ~np.isfinite(values).all(1)
        if bad.any():
            problems.append(f"episode {int(episodes[bad][0])}, field {field!r}: NaN/inf at frame {int(frames[bad][0])}")
        if field == "action":
            over = np.abs(values[:, :7]).max(1) > 1.0 + 1e-6
            if over.any():
                problems.append(f"episode {int(episodes[over][0])}, field 'action': joint velocity outside [-1, 1] "
                                f"at frame {int(frames[over][0])}")
    for field in ("reward", "grasp"):
        values = table.column(field).to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append(f"episode {int(episodes[bad][0])}, field {field!r}: NaN/inf at frame {int(frames[bad][0])}")
    del rgb  # uint8 by construction; its size was checked by decode_images
    if (depth > 10_000).any():  # > 10 m: not a wrist camera reading
        row = int(np.flatnonzero((depth > 10_000).reshape(len(depth), -1).any(1))[0])
        problems.append(f"episode {int(episodes[row])}, field 'depth': value above 10 m at frame {int(frames[row])}")
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
    return lengths


def check_dataset(root: str | Path) -> dict:
    """Validate ``root``; returns {episodes, frames, content_hash, problems}."""
    root = Path(root)
    size = image_size_of(root)
    shards = sorted((root / "data").glob("shard-*.parquet"))
    if not shards:
        raise DataFormatError(f"no shards under {root / 'data'}")
    problems: list[str] = []
    lengths: dict[int, int] = {}
    for path in shards:
        try:
            table = read_shard(path)
        except DataFormatError as error:
            problems.append(str(error))
            continue
        for ep, T in check_table(table, size, problems).items():
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
    return {"episodes": len(lengths), "frames": sum(lengths.values()), "content_hash": digest, "problems": problems}


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
