"""Export one lifted scene (points, boxes, camera) for a common 3D viewer.

- `export_ply(out_dir, record, depth, rgb)`: always available; writes
      points.ply   the depth map back-projected to coloured camera-frame points (binary)
      boxes.ply    the boxes' 12 edges and the camera frustum as PLY vertices + edges
                   (MeshLab, CloudCompare, Blender, Open3D `read_line_set` open it)
      boxes.json   camera (K, size, gravity) and every box (centre, dimensions, R_cam,
                   8 corners), kept and rejected objects with their reason
  The PLY writer is a few lines here: the format is trivial, and the libraries that write
  it (open3d, plyfile, trimesh) are heavy or not installed.
- `export_rerun(path, record, depth, rgb)`: a Rerun recording (.rrd) when the optional
  `rerun-sdk` package is importable; otherwise returns the reason `rerun_not_installed`.

All geometry is in the camera frame (OpenCV: +x right, +y down, +z forward, metres).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lifting.boxes import EDGES
from lifting.camera import backproject
from lifting.evaluate import record_box
from lifting.viz.wireframe import category_color

log = logging.getLogger(__name__)

#: Frustum depth drawn in the exports when there is no depth map to size it, metres.
DEFAULT_FRUSTUM_M = 1.0


def scene_points(depth: np.ndarray | None, K: np.ndarray, rgb: np.ndarray | None = None,
                 max_points: int = 300_000) -> tuple[np.ndarray, np.ndarray]:
    """Coloured points of a depth map.

    Args:
        depth: (H, W) z-depth in metres (0 / non-finite = invalid) or None.
        K: (3, 3) intrinsics of the depth map.
        rgb: (H', W', 3) uint8 photo; resized to (H, W) by nearest pixel when sizes differ.
        max_points: the grid is subsampled with a stride so that at most this many remain.
    Returns:
        xyz (N, 3) float32 camera frame, metres; colors (N, 3) uint8.
    """
    if depth is None:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
    H, W = depth.shape
    stride = max(1, int(np.ceil(np.sqrt(H * W / max_points))))
    xyz = backproject(depth, K)[::stride, ::stride]
    valid = np.isfinite(depth[::stride, ::stride]) & (depth[::stride, ::stride] > 0)
    if rgb is not None:
        rgb = np.asarray(rgb)
        rows = (np.arange(H) * rgb.shape[0] // H)[::stride]
        cols = (np.arange(W) * rgb.shape[1] // W)[::stride]
        col = rgb[rows][:, cols][..., :3]
    else:
        col = np.full(xyz.shape, 180, np.uint8)
    return xyz[valid].astype(np.float32), col[valid].astype(np.uint8)


def frustum_lines(K: np.ndarray, image_size: tuple[int, int], depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera frustum: vertices (5, 3) (apex at the origin + 4 image corners at z = depth_m)
    and edges (8, 2) as index pairs."""
    w, h = image_size
    Ki = np.linalg.inv(np.asarray(K, dtype=np.float64))
    uv1 = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]])
    corners = (uv1 @ Ki.T) * depth_m
    verts = np.vstack([np.zeros(3), corners])
    edges = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]])
    return verts, edges


def scene_boxes(record: dict) -> list[dict]:
    """Boxes of a record as JSON-ready dicts (kept ones with corners; rejected ones with reason)."""
    out = []
    for o in record.get("objects") or []:
        box = record_box(o) if o.get("status", "kept") == "kept" else None
        d = {"object_id": o.get("object_id"), "category": o.get("category"), "status": "kept" if box else "rejected",
             "reason": None if box else (o.get("reason") or "no_box3d"), "bbox_xyxy": o.get("bbox_xyxy")}
        if box is not None:
            d.update(box.to_omni3d())
        out.append(d)
    return out


def _write_ply_points(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    n = len(xyz)
    head = ("ply\nformat binary_little_endian 1.0\n"
            f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    rec = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["r"], rec["g"], rec["b"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    with open(path, "wb") as f:
        f.write(head.encode("ascii"))
        f.write(rec.tobytes())


def _write_ply_lines(path: Path, verts: np.ndarray, vcol: np.ndarray, edges: np.ndarray, ecol: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
             "property float z", "property uchar red", "property uchar green", "property uchar blue",
             f"element edge {len(edges)}", "property int vertex1", "property int vertex2",
             "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    lines += [f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f} {c[0]} {c[1]} {c[2]}" for v, c in zip(verts, vcol)]
    lines += [f"{e[0]} {e[1]} {c[0]} {c[1]} {c[2]}" for e, c in zip(edges, ecol)]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def export_ply(out_dir: str | Path, record: dict, depth: np.ndarray | None = None, rgb: np.ndarray | None = None) -> dict:
    """Write points.ply (when a depth map is given), boxes.ply and boxes.json under out_dir.

    Args:
        record: image record with K, width, height, gravity_cam, objects.
        depth: (H, W) z-depth in metres of the stored image, or None.
        rgb: (H, W, 3) uint8 photo, or None.
    Returns:
        {'files': [written paths], 'points': N, 'boxes': kept boxes} or {'reason': code}
        (`no_intrinsics` when the record has no K).
    """
    if record.get("K") is None:
        return {"reason": "no_intrinsics"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    K = np.asarray(record["K"], dtype=np.float64)
    size = (int(record["width"]), int(record["height"]))
    files = []
    xyz, col = scene_points(depth, K, rgb)
    if len(xyz):
        _write_ply_points(out / "points.ply", xyz, col)
        files.append(str(out / "points.ply"))
    boxes = scene_boxes(record)
    kept = [b for b in boxes if b["status"] == "kept"]
    far = max([max(c[2] for c in b["bbox3D_cam"]) for b in kept] + [float(np.median(xyz[:, 2])) if len(xyz) else DEFAULT_FRUSTUM_M])
    fv, fe = frustum_lines(K, size, min(far, 0.25 * far + 1.0))
    verts, vcol, edges, ecol = [fv], [np.full((len(fv), 3), 60)], [fe], [np.full((len(fe), 3), 60)]
    n = len(fv)
    for b in kept:
        c = np.asarray(category_color(str(b["category"])))
        verts.append(np.asarray(b["bbox3D_cam"]))
        vcol.append(np.tile(c, (8, 1)))
        edges.append(EDGES + n)
        ecol.append(np.tile(c, (12, 1)))
        n += 8
    _write_ply_lines(out / "boxes.ply", np.vstack(verts), np.vstack(vcol).astype(int), np.vstack(edges), np.vstack(ecol).astype(int))
    files.append(str(out / "boxes.ply"))
    meta = {"frame": "camera (OpenCV: +x right, +y down, +z forward), metres",
            "camera": {"K": K.tolist(), "width": size[0], "height": size[1], "gravity_cam": record.get("gravity_cam")},
            "key": record.get("key"), "boxes": boxes}
    (out / "boxes.json").write_text(json.dumps(meta, indent=1))
    files.append(str(out / "boxes.json"))
    return {"files": files, "points": int(len(xyz)), "boxes": len(kept)}


def rerun_available() -> bool:
    """Whether the optional `rerun-sdk` package can be imported."""
    try:
        import rerun  # noqa: F401
    except ImportError:
        return False
    return True


def export_rerun(path: str | Path, record: dict, depth: np.ndarray | None = None, rgb: np.ndarray | None = None) -> dict:
    """Write a Rerun recording (.rrd) of the scene: pinhole camera + photo, points, boxes.

    Returns {'files': [path], 'points': N, 'boxes': kept boxes} or {'reason': code}
    (`rerun_not_installed`, `no_intrinsics`).
    """
    try:
        import rerun as rr
    except ImportError:
        return {"reason": "rerun_not_installed"}
    if record.get("K") is None:
        return {"reason": "no_intrinsics"}
    from scipy.spatial.transform import Rotation

    K = np.asarray(record["K"], dtype=np.float64)
    size = (int(record["width"]), int(record["height"]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream("lift3d", recording_id=str(record.get("key")))
    rec.save(str(path))
    rec.log("scene", rr.ViewCoordinates.RDF, static=True)  # camera frame: right, down, forward
    rec.log("scene/camera", rr.Pinhole(image_from_camera=K, resolution=list(size)), static=True)
    if rgb is not None:
        rec.log("scene/camera", rr.Image(np.asarray(rgb)[..., :3]), static=True)
    xyz, col = scene_points(depth, K, rgb)
    if len(xyz):
        rec.log("scene/points", rr.Points3D(xyz, colors=col), static=True)
    kept = [(o, record_box(o)) for o in record.get("objects") or [] if o.get("status", "kept") == "kept"]
    kept = [(o, b) for o, b in kept if b is not None]
    if kept:
        quats = Rotation.from_matrix(np.stack([b.R_cam for _, b in kept])).as_quat()  # x, y, z, w
        rec.log("scene/boxes", rr.Boxes3D(
            centers=np.stack([b.center_cam for _, b in kept]),
            half_sizes=np.stack([b.dimensions / 2.0 for _, b in kept]),
            quaternions=[rr.Quaternion(xyzw=q) for q in quats],
            colors=[category_color(str(o.get("category", "?"))) for o, _ in kept],
            labels=[str(o.get("category", "?")) for o, _ in kept]), static=True)
    rec.flush()
    rec.disconnect()
    return {"files": [str(path)], "points": int(len(xyz)), "boxes": len(kept)}


__all__ = ["export_ply", "export_rerun", "rerun_available", "scene_points", "scene_boxes", "frustum_lines"]
