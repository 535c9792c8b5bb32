import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test touches the network (hub calls fail fast)

from novapick.sim import make_env


@pytest.fixture(scope="module")
def env():
    """One PyBullet client per test module (creating one takes ~0.3 s)."""
    e = make_env(64)
    yield e
    e.close()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Four synthetic demonstrations at 64 px (bins of 1-2 items), made once per session:
    the training, evaluation and contract tests all train on them."""
    from novapick.data.generate import generate
    from novapick.data.writer import GenerationConfig
    out = tmp_path_factory.mktemp("train_data")
    generate(GenerationConfig(episodes=4, image_size=64, max_items=2), out, workers=1, progress=False)
    return out
