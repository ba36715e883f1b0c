"""lifting.lift.kernels: the shared numba numerics give numpy's results exactly."""
import numpy as np
import pytest

from lifting.lift.kernels import pairwise_sum, select


@pytest.mark.parametrize("seed", [1, 8])
def test_pairwise_sum_is_numpys_to_the_last_bit(seed):
    rng = np.random.default_rng(seed)
    sizes = list(range(0, 300)) + [511, 512, 513, 1000, 3001, 8192, 20000]
    for n in sizes:
        x = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, size=n)
        assert pairwise_sum(x, 0, n) == x.sum()
        assert pairwise_sum(np.concatenate([[5.0], x]), 1, n) == x.sum()  # a sub-range


def test_select_places_the_order_statistic():
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, 10, 129, 1000]:
        for values in (rng.normal(size=n), rng.integers(0, 4, size=n).astype(np.float64)):  # ties too
            for k in {0, n // 2, n - 1}:
                a = values.copy()
                select(a, 0, n - 1, k)
                assert a[k] == np.sort(values)[k]
                assert np.all(a[:k] <= a[k]) and np.all(a[k + 1:] >= a[k])
                assert np.array_equal(np.sort(a), np.sort(values))
