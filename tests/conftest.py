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
