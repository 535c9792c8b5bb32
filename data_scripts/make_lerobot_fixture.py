"""Write small LeRobot-format datasets (the hub's exact on-disk layouts) for offline tests
and demos of ``load_real.py --from-dir``.

    python data_scripts/make_lerobot_fixture.py --source droid --version v3.0 --out /tmp/droid_v30
    python data_scripts/load_real.py --source droid --from-dir /tmp/droid_v30 --out /tmp/droid_ours

Feature names, frame rates and gripper conventions follow each source's public release;
see ``novapick/data/lerobot_fixture.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from novapick.data.lerobot_fixture import FPS, write_fixture  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=sorted(FPS), required=True)
    ap.add_argument("--version", choices=["v2.0", "v2.1", "v3.0"], default="v3.0")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--length", type=int, default=12, help="frames per episode at the source's rate")
    ap.add_argument("--episodes-per-file", type=int, default=2, help="v3.0 only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"{args.out} exists and is not empty")
    root = write_fixture(args.out, args.source, args.version, args.episodes, args.length,
                         episodes_per_file=args.episodes_per_file, seed=args.seed)
    print(root)
    return root


if __name__ == "__main__":
    main()
