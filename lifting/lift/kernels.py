"""Numeric numba kernels shared by the lifting core's compiled steps (fit, cloud, frustum).

Hand-written because the kernels that call them must give numpy's bits (sums in numpy's
pairwise order, np.median's and np.quantile's interpolation) and because numba's own
np.partition took over 10 s to compile.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def select(a, lo, hi, k):
    """Reorder a[lo:hi + 1] in place so that a[k] is its order statistic (Hoare's FIND):
    a[lo:k] <= a[k] <= a[k + 1:hi + 1]. Median-of-three pivots; repeated values split evenly."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(**_JIT)
def block_sum(a, lo, n):
    """Sum of a[lo:lo + n], n <= 128, as numpy's pairwise sum adds a block (8 accumulators)."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(**_JIT)
def pairwise_sum(a, lo, n):
    """Sum of a[lo:lo + n] in numpy's order, so that it equals numpy's `.sum()` to the last bit:
    blocks of <= 128 (`block_sum`), halved at multiples of 8 and added pairwise. The
    recursion runs on an explicit stack (numba's on-disk cache cannot hold recursive functions)."""
    if n <= 128:
        return block_sum(a, lo, n)
    # frames of the halving: start, length, left half summed yet, its sum
    f_lo, f_n = np.empty(64, np.int64), np.empty(64, np.int64)
    f_done, f_left = np.zeros(64, np.bool_), np.empty(64)
    f_lo[0], f_n[0], top = lo, n, 0
    while True:
        half = f_n[top] // 2
        half -= half % 8
        c_lo, c_n = (f_lo[top] + half, f_n[top] - half) if f_done[top] else (f_lo[top], half)
        if c_n > 128:
            top += 1
            f_lo[top], f_n[top], f_done[top] = c_lo, c_n, False
            continue
        v = block_sum(a, c_lo, c_n)
        while f_done[top]:  # a right half: complete its frame, and so on upwards
            v = f_left[top] + v
            top -= 1
            if top < 0:
                return v
        f_left[top], f_done[top] = v, True


@njit(**_JIT)
def median(a):
    """Median of (N,) `a` as np.median (mean of the two middle values for even N); reorders `a`."""
    n = a.size
    h = n // 2
    select(a, 0, n - 1, h)
    if n % 2:
        return a[h]
    hi = a[h]
    select(a, 0, h, h - 1)
    return (a[h - 1] + hi) / 2


@njit(**_JIT)
def quantile(a, q):
    """np.quantile(a, q) of (N,) finite float64 `a`, N >= 1, for 0 <= q <= 1 (the default
    'linear' method, to the last bit: numpy's virtual index (N - 1) q and its two-sided
    interpolation between the neighbouring order statistics); reorders `a`."""
    n = a.size
    vi = (n - 1) * q
    if vi >= n - 1:  # numpy takes the largest value
        select(a, 0, n - 1, n - 1)
        return a[n - 1]
    i = int(math.floor(vi))
    gamma = vi - i
    select(a, 0, n - 1, i)
    lo = a[i]
    hi = a[i + 1]
    for k in range(i + 2, n):  # the next order statistic: the smallest above position i
        if a[k] < hi:
            hi = a[k]
    diff = hi - lo
    if gamma >= 0.5:
        return hi - diff * (1 - gamma)
    return lo + diff * gamma


@njit(**_JIT)
def root(parent, c):
    """Union-find root of `c` (path halving)."""
    while parent[c] != c:
        parent[c] = parent[parent[c]]
        c = parent[c]
    return c
