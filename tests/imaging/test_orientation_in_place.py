"""`to_canonical(in_place=True)`: the same volume as the copying path, in the input's memory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imaging.orientation import to_canonical


@pytest.mark.parametrize("signs", list(itertools.product((1.0, -1.0), repeat=3)))
@pytest.mark.parametrize("n_slices", [5, 6])
def test_flips_in_place_match_the_copy(signs, n_slices):
    voxels = np.random.default_rng(0).normal(size=(n_slices, 7, 9)).astype(np.float32)
    direction = np.diag(signs)
    expected = to_canonical(voxels.copy(), direction, (0, 0, 0), (1, 1, 1))
    given = voxels.copy()
    got = to_canonical(given, direction, (0, 0, 0), (1, 1, 1), in_place=True)
    np.testing.assert_array_equal(got[0], expected[0])
    assert got[1:] == expected[1:]
    assert np.shares_memory(got[0], given)  # no second volume-sized array


def test_a_permutation_still_copies():
    voxels = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    sagittal = np.array([[0.0, 0, 1], [1, 0, 0], [0, -1, 0]])
    expected = to_canonical(voxels.copy(), sagittal, (0, 0, 0), (1, 1, 1))[0]
    got = to_canonical(voxels, sagittal, (0, 0, 0), (1, 1, 1), in_place=True)[0]
    np.testing.assert_array_equal(got, expected)
