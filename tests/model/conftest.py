"""Shared fixtures for the model tests: one tiny pipeline per session, small synthetic CTs.

Tiny matrices are dominated by thread hand-off on a busy CI machine, so these tests run
torch on one thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def synthetic_hu(seed: int, shape_zyx=(40, 48, 48)) -> np.ndarray:
    """A noisy box of soft tissue in air: enough structure for the body box and windows."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(-900.0, 50.0, shape_zyx).astype(np.float32)
    z, y, x = shape_zyx
    hu[z // 8 : -z // 8, y // 6 : -y // 6, x // 6 : -x // 6] = rng.normal(40.0, 80.0, (z - 2 * (z // 8), y - 2 * (y // 6), x - 2 * (x // 6)))
    return hu


@pytest.fixture(scope="session")
def tiny_pipe():
    import model

    return model.build("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_cts(tiny_pipe):
    """Two different prepared CTs."""
    return [tiny_pipe.prepare(synthetic_hu(s), (2.5, 1.0, 1.0)) for s in (1, 2)]
