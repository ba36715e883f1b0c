"""lifting.lift.kernels: the shared numba numerics give numpy's results exactly."""
import numpy as np
import pytest

from lifting.lift.kernels import median, pairwise_sum, quantile, select


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


def test_median_is_numpys():
    rng = np.random.default_rng(5)
    for n in list(range(1, 40)) + [128, 129, 1000, 1001]:
        for values in (rng.normal(size=n), rng.integers(0, 4, size=n).astype(np.float64)):
            assert median(values.copy()) == np.median(values)


QS = [0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 1.0, 1 / 3, 0.999999]


@pytest.mark.parametrize("seed", [2, 9])
def test_quantile_is_numpys_to_the_last_bit(seed):
    rng = np.random.default_rng(seed)
    for n in list(range(1, 120)) + [255, 256, 1000, 1499, 4001]:
        qs = QS + list(rng.uniform(0, 1, size=5))
        for values in (rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3, size=n),  # spread magnitudes
                       rng.integers(0, 5, size=n).astype(np.float64),  # ties
                       rng.integers(0, 1600, size=n)):  # pixel columns: numpy interpolates ints alike
            ref = np.quantile(values, qs)
            got = [quantile(values.astype(np.float64), q) for q in qs]
            assert np.array_equal(got, ref)
            assert quantile(values.astype(np.float64), 0.05) == np.percentile(values, 5)
            assert quantile(values.astype(np.float64), 0.95) == np.percentile(values, 95)
