"""Box-only objects from their frustum points: one method for dense and sparse depth.

Real depth is dense and clean (structured light), dense and smooth but biased (stereo,
monocular models) or sparse (LiDAR: a few % of the pixels). Pixel neighbourhoods are empty
in sparse depth, so box-only segmentation works on the *points* seen through each 2D box,
reasoning over all boxes of the image together:

1. frustum points: the valid pixels inside the 2D box (a stride subsample of at most
   `frustum_max_points` for dense depth), back-projected; points within the floor / road
   plane's inlier band are dropped (the floor fills the bottom of every box);
2. clusters: connected components of the points in (u, v, log z) space -- angles from the
   camera and relative depth, so one radius serves every distance and density: a depth
   jump of more than `frustum_depth_rel` (relative) or a gap of more than a few point
   spacings (angular) separates two clusters;
3. choice: each large cluster is scored by how it fills the 2D box (an object touches all
   sides of its tight box), its share of the frustum points, and how well its depth agrees
   with the depth the category's height prior predicts from the 2D box height; the nearest
   cluster among those scoring close to the best is the object (the background fills boxes
   too, but lies behind); clusters at the same depth (an object split by an occluder) join;
4. occlusion order: objects are re-segmented from near to far (at about the same depth, the
   one whose box its cluster fills best first), each losing the points that
   a nearer object already claimed (inside the overlap of the two boxes and within the
   nearer object's depth range); a box side covered by a nearer object's box, or at the
   image border, is *hidden* (the fit may complete the object towards it).

The radius graph is built on the points, not on pixel neighbourhoods (which are empty in
sparse depth), by numba kernels (`_name`, compiled on first use and cached on disk): cell
searches with cKDTree's distances, a union-find for the components, and the clusters'
order statistics -- scipy's cKDTree and sparse graph and numpy's quantiles cost more in
call overhead than in arithmetic on these few hundred points. They give the neighbours,
labels and bits of scipy's cKDTree and connected_components and of np.quantile / np.median,
the references in tests/test_lift_frustum_kernels.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from lifting.lift.config import LiftConfig
from lifting.lift.kernels import median, quantile, root
from lifting.lift.pixels import box_slices

_JIT = dict(cache=True, nogil=True)


@dataclass
class FrustumSeg:
    """The chosen cluster of one box-only object."""

    xyz: np.ndarray  # (N, 3) camera-frame points, metres
    uv: np.ndarray  # (N, 2) int pixel (column, row) of each point
    z_lo: float  # depth range of the cluster (5th / 95th percentile), metres
    z_hi: float
    z_med: float
    hidden: tuple[bool, bool, bool] = (False, False, False)  # (bottom, left, right) unobserved
    step: int = 1  # pixel stride of the frustum subsample the points come from
    fill: float = 1.0  # how the cluster fills the 2D box (extent fraction, width x height)


def _frustum(b, depth, valid, K, floor, cfg: LiftConfig, sparse: bool):
    """(xyz (N, 3), uv (N, 2) int, stride) of the valid pixels in 2D box b, floor points removed."""
    sl = box_slices(b, depth.shape)
    if sl is None:
        return np.zeros((0, 3)), np.zeros((0, 2), np.int64), 1
    v_all, u_all = np.nonzero(valid[sl])
    n = len(v_all)
    step = 1
    if n > cfg.frustum_max_points:
        step = max(1, int(math.ceil(math.sqrt(n / cfg.frustum_max_points)))) if not sparse else 1
        if step > 1:
            keep = (v_all % step == 0) & (u_all % step == 0)
            v_all, u_all = v_all[keep], u_all[keep]
        if len(v_all) > cfg.frustum_max_points:  # deterministic thinning to the budget
            idx = np.linspace(0, len(v_all) - 1, cfg.frustum_max_points).astype(np.int64)
            v_all, u_all = v_all[idx], u_all[idx]
    v = v_all + sl[0].start
    u = u_all + sl[1].start
    if sparse:
        z = depth[v, u].astype(np.float64)
    else:
        # dense depth: each point's depth is the mean over its 3x3 candidate neighbours. The
        # candidates exclude both pixels of every depth jump (lifting.lift.pixels edges), so
        # no window mixes an object with what lies behind it; the noise drops ~3x.
        z = _window_mean(depth, valid, v, u)
    x = (u - K[0, 2]) * z / K[0, 0]  # lifting.camera: the centre of pixel (0, 0) is (0, 0)
    y = (v - K[1, 2]) * z / K[1, 1]
    xyz = np.stack([x, y, z], axis=1)
    uv = np.stack([u, v], axis=1)
    if floor is not None:
        keep = off_floor(floor, xyz, cfg, sparse)
        xyz, uv = xyz[keep], uv[keep]
    return xyz, uv, step


def off_floor(floor, xyz: np.ndarray, cfg: LiftConfig, sparse: bool) -> np.ndarray:
    """(N,) bool: camera-frame points (N, 3) that are not floor / road: more than
    `frustum_floor_m` + `frustum_floor_rel` * z above the ground. For sparse depth (LiDAR),
    every return from `returns_ground_beyond_m` on is kept: there the ground model is off by
    0.2-0.3 m (measured inside real KITTI and nuScenes GT boxes), a car's sill height, so a far
    car's or person's own lowest returns (often its only ones) look like road, and the road
    inside a far object's small 2D box lies at about the object's distance anyway."""
    z = xyz[:, 2]
    keep = floor.height_above(xyz) > cfg.frustum_floor_m + cfg.frustum_floor_rel * z
    if sparse and cfg.returns_ground_beyond_m is not None:
        keep |= z >= cfg.returns_ground_beyond_m
    return keep


@njit(**_JIT)
def _window_mean(depth, valid, v, u):  # numba: nine numpy passes cost ~0.3 ms a dense frustum
    """(N,) float64 mean depth of the valid pixels in the 3x3 window around each pixel
    (v, u) (N,), the window clipped to the (H, W) image; 0 where none is valid. Summed in
    float64 in the order of the window's rows, then columns."""
    H, W = depth.shape
    z = np.empty(v.shape[0])
    for k in range(v.shape[0]):
        acc = 0.0
        cnt = 0.0
        for dv in range(-1, 2):
            vv = min(max(v[k] + dv, 0), H - 1)
            for du in range(-1, 2):
                uu = min(max(u[k] + du, 0), W - 1)
                if valid[vv, uu]:
                    acc += np.float64(depth[vv, uu])
                    cnt += 1.0
        z[k] = acc / max(cnt, 1.0)
    return z


def _components(xyz: np.ndarray, uv: np.ndarray, K: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(N,) component label of each frustum point (radius graph in (u, v, log z) space)."""
    n = len(xyz)
    if n == 1:
        return np.zeros(1, np.int64)
    a = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    # the typical spacing of neighbouring points (pixels for dense depth, scan lines and
    # azimuth steps for LiDAR), from the nearest neighbours of a sample
    spacing = float(_sample_spacing(a, max(1, n // 300), min(4, n)))
    r = max(cfg.frustum_radius_spacings * spacing, 1.5 / K[0, 0])
    scale = r / cfg.frustum_depth_rel  # a relative depth jump of frustum_depth_rel is one radius
    q = np.column_stack([a, np.log(xyz[:, 2]) * scale])
    return _radius_labels(q, r)


# The neighbour searches below replace scipy's cKDTree (whose build and queries cost ~0.5 ms
# per frustum in overhead) by square cells over the first two coordinates. Squared
# distances are summed as cKDTree sums them, ((d0^2 + d1^2) + d2^2), so the neighbours and
# the distances are cKDTree's.


@njit(**_JIT)
def _grid(x, y, cell):
    """Points (x, y) (N,) binned into square cells of edge at least `cell` (wider when that
    would make more than about 12 N cells), counted from the points' minimum: (order (N,)
    of the points by cell, start (n_keys + 1,) of each cell's run in `order`, each point's
    column and row (N,), the key stride of a column, the edge used). A cell's key is
    (column + 1) * stride + row + 1 for columns and rows -1 .. max + 1, so that a run of
    rows of one column is one run of `order`."""
    n = x.shape[0]
    x0, y0 = x.min(), y.min()
    w, h = x.max() - x0, y.max() - y0
    cell = max(cell, math.sqrt(w * h / (4.0 * n)), max(w, h) / (4.0 * n))
    if not cell > 0.0:
        cell = 1.0  # every point at one place
    col = np.empty(n, np.int64)
    row = np.empty(n, np.int64)
    for i in range(n):
        col[i] = int(math.floor((x[i] - x0) / cell))
        row[i] = int(math.floor((y[i] - y0) / cell))
    stride = row.max() + 3
    start = np.zeros((col.max() + 3) * stride + 1, np.int64)
    for i in range(n):
        start[(col[i] + 1) * stride + row[i] + 2] += 1
    for t in range(1, start.shape[0]):
        start[t] += start[t - 1]
    fill = start.copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        key = (col[i] + 1) * stride + row[i] + 1
        order[fill[key]] = i
        fill[key] += 1
    return order, start, col, row, stride, cell


@njit(**_JIT)
def _sample_spacing(a, step, k):
    """np.median, over the sample a[::step] of the (N, 2) points `a`, of the distance to the
    k-th nearest of the N points (the point itself included: cKDTree(a).query(a[::step], k)'s
    last column). Ring search over cells of about two points each; a point whose ring grows
    past 16 cells searches all points."""
    n = a.shape[0]
    x, y = a[:, 0].copy(), a[:, 1].copy()
    w, h = x.max() - x.min(), y.max() - y.min()
    order, start, col, row, stride, cell = _grid(x, y, math.sqrt(w * h * 2.0 / n))
    cmax, rmax = col.max(), row.max()
    m = (n + step - 1) // step
    dist = np.empty(m)
    best = np.empty(k)
    for si in range(m):
        s = si * step
        cs, rs = col[s], row[s]
        best[:] = np.inf
        ring = 0
        while True:
            if ring > 16:  # a lone point far from the others: all of them
                best[:] = np.inf
                for j in range(n):
                    _keep_smallest(best, _sq2(x[s], y[s], x[j], y[j]))
                break
            for c in range(max(cs - ring, 0), min(cs + ring, cmax) + 1):
                base = (c + 1) * stride + 1
                if c == cs - ring or c == cs + ring:  # a side of the ring: its rows in one run
                    _nearest_in(best, x, y, s, order, start[base + max(rs - ring, 0)],
                                start[base + min(rs + ring, rmax) + 1])
                else:  # inside: the ring's top and bottom cells
                    if rs - ring >= 0:
                        _nearest_in(best, x, y, s, order, start[base + rs - ring], start[base + rs - ring + 1])
                    if rs + ring <= rmax:
                        _nearest_in(best, x, y, s, order, start[base + rs + ring], start[base + rs + ring + 1])
            # points in cells beyond this ring lie at least ring * cell away
            reach = (ring - 1e-6) * cell
            if ring > 0 and best[k - 1] < reach * reach:
                break
            if ring >= cmax and ring >= rmax:  # every cell seen
                break
            ring += 1
        dist[si] = math.sqrt(best[k - 1])
    return median(dist)


@njit(**_JIT)
def _nearest_in(best, x, y, s, order, t0, t1):
    """`_keep_smallest` of point s's squared distances to the points order[t0:t1]."""
    for t in range(t0, t1):
        j = order[t]
        _keep_smallest(best, _sq2(x[s], y[s], x[j], y[j]))


@njit(**_JIT)
def _sq2(x0, y0, x1, y1):
    """Squared distance of two 2-D points, summed as cKDTree sums it."""
    d0 = x0 - x1
    d1 = y0 - y1
    return d0 * d0 + d1 * d1


@njit(**_JIT)
def _keep_smallest(best, d):
    """Insert d into the ascending (k,) `best` when it is smaller than its last value."""
    k = best.shape[0]
    if d >= best[k - 1]:
        return
    i = k - 1
    while i > 0 and best[i - 1] > d:
        best[i] = best[i - 1]
        i -= 1
    best[i] = d


@njit(**_JIT)
def _radius_labels(q, r):
    """(N,) component labels (`_root_labels`) of the graph joining the (N, 3) points `q`
    within distance r of each other: the pairs cKDTree(q).query_pairs(r) finds, squared
    distances ((d0^2 + d1^2) + d2^2) <= r * r."""
    n = q.shape[0]
    r2 = r * r
    # cells a little wider than r: a pair's columns (rows) differ by at most one whatever
    # the rounding of the binning
    order, start, col, row, stride, _ = _grid(q[:, 0].copy(), q[:, 1].copy(), r * (1.0 + 1e-7))
    parent = np.arange(n)
    for i in range(n):
        for dc in range(-1, 2):
            base = (col[i] + dc + 1) * stride + row[i] + 1  # the middle row of three
            for t in range(start[base - 1], start[base + 2]):
                j = order[t]
                if j <= i:
                    continue
                d0 = q[i, 0] - q[j, 0]
                d1 = q[i, 1] - q[j, 1]
                d2 = q[i, 2] - q[j, 2]
                if d0 * d0 + d1 * d1 + d2 * d2 <= r2:
                    a, b = root(parent, i), root(parent, j)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return _root_labels(parent)


@njit(**_JIT)
def _root_labels(parent):
    """(N,) labels 0, 1, ... of the trees of a union-find forest whose roots are their trees'
    smallest members, numbered in the order of those roots: as scipy's
    connected_components(directed=False) numbers components, by each one's first point."""
    n = parent.shape[0]
    lab = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        r = root(parent, i)
        if r == i:
            lab[i] = m
            m += 1
        else:
            lab[i] = lab[r]
    return lab


@njit(**_JIT)
def _cluster_stats(order, bounds, clusters, u, v, z):  # numba: np.quantile costs ~60 us a call in overhead
    """(C, 5) for each cluster c of `clusters` (C,): np.quantile of its points' u and v at
    (0.02, 0.98) and np.median of their z, (u_lo, u_hi, v_lo, v_hi, z_med). The points of
    cluster c are order[bounds[c]:bounds[c + 1]]; u, v, z (N,) float64."""
    out = np.empty((clusters.shape[0], 5))
    for k in range(clusters.shape[0]):
        c = clusters[k]
        lo, m = bounds[c], bounds[c + 1] - bounds[c]
        buf = np.empty(m)
        for col, x in ((0, u), (2, v)):
            for j in range(m):
                buf[j] = x[order[lo + j]]
            out[k, col] = quantile(buf, 0.02)
            out[k, col + 1] = quantile(buf, 0.98)
        for j in range(m):
            buf[j] = z[order[lo + j]]
        out[k, 4] = median(buf)
    return out


@njit(**_JIT)
def _seg_stats(u, v, z):  # numba: np.percentile and np.quantile cost ~60 us a call in overhead
    """(z 5th, 50th, 95th percentile, u at 2 and 98 %, v at 2 and 98 %) of a cluster's
    points (np.percentile / np.quantile); u, v, z (N,) float64, N >= 1."""
    out = np.empty(7)
    buf = z.copy()
    out[0], out[1], out[2] = quantile(buf, 0.05), quantile(buf, 0.5), quantile(buf, 0.95)
    buf = u.copy()
    out[3], out[4] = quantile(buf, 0.02), quantile(buf, 0.98)
    buf = v.copy()
    out[5], out[6] = quantile(buf, 0.02), quantile(buf, 0.98)
    return out


def _choose(xyz, uv, b, K, cfg: LiftConfig, prior: tuple | None, image_size) -> np.ndarray | None:
    """Boolean selection of the object's points among the frustum points, or None.

    `prior`: (typical height m, log spread of heights, footprint diagonal m) of the
    category, or None for a generic one."""
    prior_h, prior_spread, diag = prior if prior is not None else (None, None, None)
    n = len(xyz)
    if n < cfg.frustum_min_points:
        return None
    lab = _components(xyz, uv, K, cfg)
    nlab = int(lab.max()) + 1
    counts = np.bincount(lab, minlength=nlab)
    big = counts >= max(cfg.frustum_min_points, cfg.boxseg_min_component_frac * n)
    if not big.any():
        big = counts == counts.max()
    x0, y0, x1, y1 = (float(v) for v in b)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    W, H = image_size
    # the depth the category's height predicts from the box height, when the box's top and
    # bottom are both inside the image (a cut box says nothing about the object's height)
    z_pred = None
    if prior_h is not None and y0 > 1 and y1 < H - 1:
        z_pred = K[1, 1] * prior_h / bh
    z = xyz[:, 2]
    score = np.zeros(nlab)
    med = np.full(nlab, np.inf)
    order = np.argsort(lab, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    clusters = np.flatnonzero(big)
    stats = _cluster_stats(order, bounds, clusters, uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64),
                           np.ascontiguousarray(z, dtype=np.float64))
    for c, (qu0, qu1, qv0, qv1, z_med) in zip(clusters, stats):
        fu = (qu1 - qu0 + 1) / bw
        fv = (qv1 - qv0 + 1) / bh
        fill = min(fu, 1.0) * min(fv, 1.0)
        share = counts[c] / n
        med[c] = float(z_med)
        w = 1.0
        if z_pred is not None:
            dev = math.log(med[c] / z_pred) / prior_spread
            w = math.exp(-0.5 * dev * dev)
        score[c] = fill * (0.5 + share) * (0.25 + w)
    if not np.any(score > 0):
        return None
    good = score >= cfg.boxseg_near_score_frac * score.max()
    pick = int(np.argmin(np.where(good, med, np.inf)))
    zm = med[pick]
    keep = big & (np.abs(np.log(np.where(np.isfinite(med), med, 1e9) / zm)) <= cfg.component_merge_rel)
    keep[pick] = True
    sel = keep[lab]
    if diag is not None and sel.sum() >= 2 * cfg.frustum_min_points:
        # smooth depth (stereo, monocular) joins an object to what lies behind it through
        # smeared pixels: keep the points within the category's footprint diagonal of the
        # cluster's depth mode (+ the depth's own noise)
        zs = z[sel]
        lz = np.log(zs)
        bins = np.arange(lz.min(), lz.max() + 0.015, 0.015)
        if len(bins) > 3:
            hist, edges = np.histogram(lz, bins=bins)
            hist = np.convolve(hist, np.ones(3), mode="same")
            z_mode = float(np.exp(edges[int(np.argmax(hist))] + 0.0075))
            half = 0.6 * diag + cfg.frustum_depth_rel * z_mode
            sel &= np.abs(z - z_mode) <= half
    return sel


def segment_frustums(boxes_xyxy: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: np.ndarray, floor,
                     cfg: LiftConfig, sparse: bool, prior_heights: list, image_size) -> list[FrustumSeg | None]:
    """Points of box-only objects of one image, all boxes together (module docstring).

    Args:
        boxes_xyxy: (N, 4) 2D boxes, pixel edges; depth: (H, W) metres; valid: (H, W) bool.
        K: (3, 3); floor: lifting.lift.gravity.Floor or None; sparse: the depth is sparse.
        prior_heights: N triples (typical height m, log spread, footprint diagonal m) of the
            categories' size priors, or None (generic category).
        image_size: (W, H).
    Returns:
        N FrustumSeg or None (no object cluster in that box).
    """
    n = len(boxes_xyxy)
    fr = [_frustum(b, depth, valid, K, floor, cfg, sparse) for b in boxes_xyxy]

    def choose(i, drop=None):
        xyz, uv, step = fr[i]
        if drop is not None:
            xyz, uv = xyz[~drop], uv[~drop]
        ph = prior_heights[i]
        sel = _choose(xyz, uv, boxes_xyxy[i], K, cfg, ph, image_size)
        if sel is None or sel.sum() < cfg.frustum_min_points:
            return None
        p, q = xyz[sel], uv[sel]
        lo, md, hi, qu0, qu1, qv0, qv1 = _seg_stats(q[:, 0].astype(np.float64), q[:, 1].astype(np.float64),
                                                    np.ascontiguousarray(p[:, 2], dtype=np.float64))
        b = boxes_xyxy[i]
        fill = min((qu1 - qu0 + 1) / max(b[2] - b[0], 1.0), 1.0) * min((qv1 - qv0 + 1) / max(b[3] - b[1], 1.0), 1.0)
        return FrustumSeg(p, q, float(lo), float(hi), float(md), step=step, fill=float(fill))

    first = [choose(i) for i in range(n)]
    # near to far; at about the same depth, the object whose box the cluster fills best owns
    # it first (a table before the chair pushed under it, whose box also holds the table top)
    order = sorted(range(n), key=lambda i: first[i].z_med * math.exp(-0.5 * first[i].fill)
                   if first[i] is not None else np.inf)
    out: list[FrustumSeg | None] = [None] * n
    done: list[int] = []
    for i in order:
        xyz, uv, _ = fr[i]
        drop = np.zeros(len(xyz), dtype=bool)
        for j in done:
            bj, sj = boxes_xyxy[j], out[j]
            inside = (uv[:, 0] >= bj[0]) & (uv[:, 0] < bj[2]) & (uv[:, 1] >= bj[1]) & (uv[:, 1] < bj[3])
            near = (xyz[:, 2] >= sj.z_lo * (1 - cfg.component_merge_rel)) & \
                   (xyz[:, 2] <= sj.z_hi * (1 + cfg.component_merge_rel))
            drop |= inside & near
        seg = choose(i, drop) if drop.any() else first[i]  # nothing claimed: the first choice stands
        if seg is None:
            continue
        out[i] = seg
        done.append(i)
    # hidden sides once every object's depth is known (the ownership order above is not
    # strictly near to far)
    depths = [sg.z_med if sg is not None else None for sg in out]
    for i in done:
        out[i].hidden = hidden_sides(i, boxes_xyxy, depths, image_size)
    return out


def hidden_sides(i: int, boxes, depths, image_size) -> tuple[bool, bool, bool]:
    """(bottom, left, right) sides of 2D box i cut by the image border or covered by the box
    of a nearer object (one overlapping that side over at least a third of its length).

    Args:
        boxes: (N, 4) 2D boxes (pixel edges); depths: N object depths (metres, None = unknown);
        image_size: (W, H).
    """
    W, H = image_size
    x0, y0, x1, y1 = (float(v) for v in boxes[i])
    bottom, left, right = y1 >= H - 1, x0 <= 1, x1 >= W - 1
    zi = depths[i]
    for j in range(len(boxes)):
        if j == i or depths[j] is None or zi is None or depths[j] >= zi:
            continue
        a0, b0, a1, b1 = (float(v) for v in boxes[j])
        vo = max(0.0, min(y1, b1) - max(y0, b0)) / max(y1 - y0, 1.0)
        ho = max(0.0, min(x1, a1) - max(x0, a0)) / max(x1 - x0, 1.0)
        if vo >= 1 / 3:
            left |= a0 <= x0 < a1
            right |= a0 < x1 <= a1
        if ho >= 1 / 3:
            bottom |= b0 < y1 <= b1
    return bottom, left, right

