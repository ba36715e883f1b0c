"""SUN RGB-D in its two native layouts -> image records with GT 3D boxes.

1. The SUN RGB-D toolbox layout (one folder per frame; the release nests them, e.g.
   `kv1/NYUdata/NYU0001/`, `kv2/kinect2data/.../`, `xtion/...`, `realsense/...`):

       FRAME/image/*.jpg            colour image (the one the annotations are drawn on)
       FRAME/depth/*.png            raw depth, FRAME/depth_bfx/*.png the filled one: 16-bit,
                                    bit-rotated (mm = (raw >> 3) | (raw << 13)), millimetres
       FRAME/intrinsics.txt         K, 9 numbers row-major, in pixels of image/
       FRAME/extrinsics/*.txt       3x4 (or 3x3); the left 3x3 is Rtilt (camera -> upright)
       FRAME/annotation3Dfinal/index.json, or annotation3D/index.json (flattened copies:
                                    FRAME/annotation/annotation3Dfinal.json / annotation3D.json)
       FRAME/annotation2Dfinal/index.json  2D segmentation polygons (annotation/annotation2Dfinal.json)
       FRAME/annotation2D3D/index.json     2D rectangles of the 3D objects (annotation/annotation2D3D.json)
       FRAME/scene.txt              the scene type; fullres/ is not read (see below)

   `--annotations` is one frame folder or any folder above frame folders (walked for
   folders holding intrinsics.txt and image/; `--images` is not used: each frame holds its
   own). Image id: the frame folder's path relative
   to that folder ("kv1/NYUdata/NYU0001"), or its name when it is the frame itself.
   Option `sensor_depth`: `depth` (raw, the default: holes where the sensor had none) or
   `depth_bfx` (the toolbox's filled depth).

2. The votenet / mmdetection3d layout (`tools/create_data.py sunrgbd`, v1.x info files):

       sunrgbd_*_infos*.pkl         {"metainfo": {...}, "data_list": [info, ...]}; each info has
                                    images.CAM0 {img_path, height, width, depth2img (3x3)},
                                    lidar_points {lidar_path, num_pts_feats} and instances
                                    [{bbox_3d, bbox, bbox_label_3d}]
       NNNNNN.jpg, NNNNNN.bin       image and float32 point file (x, y, z, r, g, b, ...)

   `--annotations` is the .pkl (or a folder: every `*infos*.pkl` found while walking it is
   read). `--images` defaults to the .pkl's folder; an image missing there is looked up in
   its `sunrgbd_trainval/image/` and `image/` subfolders, a point file in `points/`.
   Image id: the info's `sample_idx`, else the image file's stem. The pickle is read with
   `lifting.sources.safe_pickle` (plain data only): a pickle naming any other callable is
   refused (SourceConfigError for the --annotations file itself, an image-level
   `info_unsafe_pickle` ErrorRecord for one found while walking a folder).

Conventions (each measured on the frames of ../shared/data/real3d/sunrgbd, see
tests/test_sources_sunrgbd.py):
- Toolbox upright frame: a = Rtilt @ p, p a point of the OpenCV camera frame (x right,
  y down, z forward). So the upright frame is OpenCV-like, levelled: X right, **Y down**
  (height axis -Y), Z forward. (The toolbox's MATLAB code writes the same as
  P Rtilt P^T [x, z, -y] with P = [[1,0,0],[0,0,1],[0,-1,0]], in x-right y-forward z-up
  axes.) Depth points fall inside the boxes under this reading (48255, 51458, 13631,
  4955, 1035, 2496, 1168 raw-depth points strictly inside img_0063's 7 objects; 61620 ...
  1310 within 3 cm) and far fewer under a = Rtilt^T p, +Y up, or no Rtilt.
  The floor of img_0063 is at Y = +1.08..1.11 (the objects standing on it end at Ymax = 1.077).
- A 3D object is `polygon[0]`: the quad (X[i], Z[i]) on the floor plane, extruded from
  Ymin (its **top**, the smaller Y) to Ymax (its **bottom**). Box x axis (w) along the first
  edge v0 -> v1, l along the perpendicular in the floor plane, h = Ymax - Ymin; w and l
  are the polygon's extents along those two directions (= the edge lengths for the
  rectangles the tool draws), the centre the middle of those extents. In the camera frame:
  centre = Rtilt^T (Xc, (Ymin + Ymax) / 2, Zc), x axis = Rtilt^T (ex, 0, ez), down =
  Rtilt^T (0, 1, 0). Objects named `class:label` keep the part before ':' as the class
  (the toolbox's rule) and the label as attribute `label_name`.
- gravity_cam = Rtilt^T (0, 1, 0) = Rtilt[1, :] (the dataset's gravity; img_0063: 11.6 deg
  from the camera's +y, the Kinect pitched down).
- 2D box of a toolbox object (attribute `bbox_source`): `polygon`, the tight box of its
  annotation2Dfinal segmentation polygon(s), given as the COCO polygon `segmentation`;
  else `rect`, its annotation2D3D rectangle; else `projection`, its projected 3D box.
  annotation2Dfinal does not say which 3D object a polygon belongs to (its own object list,
  names "shelf" where the 3D file says "bookshelf", one object for several instances), so
  the link is measured: polygons whose tight box lies at least half inside the object's
  rectangle (else its projected box) are candidates, grouped by annotation2Dfinal object;
  a group's union box must reach IoU >= 0.5 with that reference box, the best groups win
  greedily and no polygon serves two objects (`link_iou` records the IoU). Polygons of
  wall / floor / ceiling never link. All 2D boxes are clipped to the image (annotators click
  outside it: rectangles and polygons run a few tens of pixels past the borders).
- Not objects: null entries of the 3D file (objects deleted in the tool; their count is
  `extra["deleted_entries"]`). Counted as object errors: `wall` / `floor` / `ceiling` 3D
  objects (`ignored_category`, layout, as the toolbox skips them), an entry without a name
  or polygon (`ann_malformed`), a polygon of < 3 points, a zero-length first edge, zero
  area or Ymin == Ymax (`gt_box3d_degenerate`).
- mmdetection3d: `depth2img` = K @ M, M the rotation depth frame -> camera frame (the
  axis swap and Rtilt); K and M are recovered by an RQ decomposition with the signs fixed
  so that K has a positive diagonal and M is a proper rotation (000017: fx = fy = 529.5,
  c = (365, 265), M orthonormal to 2e-6). The depth frame is upright: x right, y forward,
  z up. `bbox_3d = [x, y, z, dx, dy, dz, yaw]` is the **gravity centre** (box centre) in
  that frame, dx along the box's x axis (cos yaw, sin yaw, 0) - yaw turns it
  counter-clockwise about z - dy along (-sin yaw, cos yaw, 0), dz the height. So
  [w, h, l] = [dx, dz, dy]; centre = M c, x axis = M (cos yaw, sin yaw, 0), down = M (0, 0, -1).
  Measured on 000017's bed: 19740 points inside and projected IoU 0.93 with its 2D box;
  a bottom-centre reading gives 8953 / 0.35, the clockwise yaw 12095 / 0.63, dx and dy
  swapped 6417 / 0.79. gravity_cam = M (0, 0, -1).
- The mmdetection3d depth source is the point file, projected into the image
  (`depth_encoding="points"`, `depth_params = {"columns": num_pts_feats, "to_cam": [[M, 0],
  [0, 1]]}`): sparse (votenet keeps 50,000 points of the depth image). 2D box: the info's
  `bbox` (x0, y0, x1, y1), clipped to the image, else the projected 3D box. Category: the
  metainfo's `categories` / `classes` when given, else mmdetection3d's SUN RGB-D classes by
  `bbox_label_3d` (a label outside them: `unknown_category_label`).

Not read: `fullres/` (its depth equals depth/ shifted by (40, 44) px while the two
intrinsics differ by (41, 45) px, so 2D annotations cannot be carried over exactly), the
annotation3Dlayout room box, and mmdetection3d v0.x info files (a list of dicts with
`calib`/`annos`: `info_unsupported_layout`).
"""
from __future__ import annotations

import json
import math
import os
import pickle
from typing import Iterator

import numpy as np

from lifting.boxes import Box3D, clip_box_2d, iou_2d, project_box
from lifting.records import ErrorRecord
from lifting.sources import SourceConfigError, is_utf8_text, safe_text
from lifting.sources.image_io import image_size
from lifting.sources.real3d import Frame, GTObject3D, Real3DSource, gt_box_dict
from lifting.sources.safe_pickle import UnsafePickleError, load_pickle

#: mmdetection3d's SUN RGB-D classes, in label order (SUNRGBDDataset.METAINFO).
MMDET3D_CLASSES = ("bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf",
                   "bathtub")
#: Layout classes: not objects (the toolbox's readframeSUNRGBD skips them).
LAYOUT_CLASSES = frozenset({"wall", "floor", "ceiling"})
#: Annotation files of a toolbox frame, in order of preference.
ANNOTATION_FILES = {
    "3d": ("annotation3Dfinal/index.json", "annotation3D/index.json", "annotation/annotation3Dfinal.json",
           "annotation/annotation3D.json"),
    "2d": ("annotation2Dfinal/index.json", "annotation/annotation2Dfinal.json"),
    "2d3d": ("annotation2D3D/index.json", "annotation/annotation2D3D.json"),
}
#: A polygon group links to a 3D object when its union box has at least this IoU with the
#: object's reference box (annotation2D3D rectangle, else projected 3D box).
MIN_LINK_IOU = 0.5
#: ... and each of its polygons lies at least this much (area of its tight box) inside it.
MIN_POLYGON_INSIDE = 0.5
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


# -- small readers ---------------------------------------------------------------------------

def read_numbers(path: str, count: int | tuple[int, ...]) -> np.ndarray:
    """The whitespace-separated numbers of a text file; ValueError unless there are `count`
    of them (one of `count` when a tuple) and all are finite."""
    with open(path, encoding="utf-8") as f:
        nums = [float(v) for v in f.read().split()]
    counts = (count,) if isinstance(count, int) else count
    if len(nums) not in counts:
        raise ValueError(f"{path}: {len(nums)} numbers, expected {' or '.join(map(str, counts))}")
    a = np.asarray(nums, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: non-finite number")
    return a


def read_rtilt(path: str) -> np.ndarray:
    """Rtilt (3, 3) of an extrinsics file (3x4 or 3x3, row-major); ValueError unless a rotation."""
    a = read_numbers(path, (9, 12))
    R = a.reshape(3, -1)[:, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise ValueError(f"{path}: the left 3x3 is not a rotation")
    return R


def split_class(name: str) -> tuple[str, str]:
    """("chair", "office chair") from "chair:office chair" (the toolbox's rule: the class
    ends at ':', a '_' or ' ' before it dropped); (name, "") without ':'."""
    i = name.find(":")
    if i < 0:
        return name.strip(), ""
    cls = name[:i - 1] if i > 0 and name[i - 1] in "_ " else name[:i]
    return cls.strip(), name[i + 1:].strip()


def _num_list(v) -> list[float] | None:
    if not isinstance(v, (list, tuple)):
        v = [v] if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else None
        if v is None:
            return None
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(x):
            return None
        out.append(float(x))
    return out


class _Degenerate(ValueError):
    pass


def upright_box(polygon: dict) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """(centre (3,), (w, h, l), x axis (3,)) in the Rtilt-aligned upright frame (X right,
    Y down, Z forward) of a SUN RGB-D 3D polygon {X, Z, Ymin, Ymax}.

    Raises ValueError (not numbers) or _Degenerate (< 3 points, zero first edge / area / height).
    """
    X, Z = _num_list(polygon.get("X")), _num_list(polygon.get("Z"))
    ymin, ymax = _num_list(polygon.get("Ymin")), _num_list(polygon.get("Ymax"))
    if X is None or Z is None or ymin is None or ymax is None or len(ymin) != 1 or len(ymax) != 1 or len(X) != len(Z):
        raise ValueError("polygon X, Z, Ymin, Ymax are not numbers")
    if len(X) < 3:
        raise _Degenerate(f"{len(X)} polygon points")
    pts = np.c_[X, Z]
    e = pts[1] - pts[0]
    n = float(np.linalg.norm(e))
    if n < 1e-6:
        raise _Degenerate("zero-length first edge")
    u = e / n
    v = np.array([-u[1], u[0]])
    a, b = pts @ u, pts @ v
    w, l_ = float(a.max() - a.min()), float(b.max() - b.min())
    lo, hi = min(ymin[0], ymax[0]), max(ymin[0], ymax[0])
    if w < 1e-6 or l_ < 1e-6 or hi - lo < 1e-6:
        raise _Degenerate(f"extent {w:.3g} x {l_:.3g} x {hi - lo:.3g} m")
    c2 = u * (a.max() + a.min()) / 2 + v * (b.max() + b.min()) / 2
    return np.array([c2[0], (lo + hi) / 2, c2[1]]), (w, hi - lo, l_), np.array([u[0], 0.0, u[1]])


def toolbox_gt_box(polygon: dict, Rtilt: np.ndarray) -> dict:
    """GT box (camera frame, project convention) of a SUN RGB-D 3D polygon; see upright_box."""
    c, dims, x_axis = upright_box(polygon)
    down = Rtilt.T @ np.array([0.0, 1.0, 0.0])
    return gt_box_dict(Rtilt.T @ c, dims, Rtilt.T @ x_axis, down)


def split_depth2img(P) -> tuple[np.ndarray, np.ndarray]:
    """(K, M) with P = K @ M: K upper triangular with a positive diagonal and K[2, 2] = 1,
    M a proper rotation (RQ decomposition). ValueError when P is not 3x3 finite, singular,
    or not K times a rotation."""
    from scipy.linalg import rq

    P = np.asarray(P, dtype=np.float64)
    if P.shape != (3, 3) or not np.all(np.isfinite(P)) or abs(np.linalg.det(P)) < 1e-12:
        raise ValueError("depth2img is not a finite invertible 3x3 matrix")
    K, M = rq(P)
    S = np.diag(np.where(np.diag(K) < 0, -1.0, 1.0))
    K, M = K @ S, S @ M
    if np.linalg.det(M) < 0:  # P = K M with det M = -1 has no proper-rotation form
        raise ValueError("depth2img = K @ M needs M to be a reflection")
    s = K[2, 2]
    K, M = K / s, M * s
    if np.abs(M @ M.T - np.eye(3)).max() > 1e-3:
        raise ValueError("depth2img is not K times a rotation (scale of M off)")
    if abs(K[0, 1]) < 1e-6 * abs(K[0, 0]):
        K[0, 1] = 0.0
    K[1, 0] = K[2, 0] = K[2, 1] = 0.0
    return K, M


def votenet_gt_box(bbox_3d, M: np.ndarray) -> dict:
    """GT box (camera frame) of an mmdetection3d SUN RGB-D `bbox_3d` [x, y, z, dx, dy, dz, yaw]
    (gravity centre, upright depth frame x right y forward z up, yaw counter-clockwise about z).
    ValueError unless 7 finite numbers."""
    b = _num_list(list(bbox_3d) if isinstance(bbox_3d, (list, tuple, np.ndarray)) else bbox_3d)
    if b is None or len(b) < 7:
        raise ValueError(f"bbox_3d {bbox_3d!r} is not 7 numbers")
    x, y, z, dx, dy, dz, yaw = b[:7]
    x_axis = M @ np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return gt_box_dict(M @ np.array([x, y, z]), (dx, dz, dy), x_axis, M @ np.array([0.0, 0.0, -1.0]))


def _unit(v: np.ndarray) -> list[float]:
    return (v / np.linalg.norm(v)).tolist()


def _tight(xs, ys) -> tuple[float, float, float, float]:
    return (min(xs), min(ys), max(xs), max(ys))


def _union(boxes) -> tuple[float, float, float, float]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _area(b) -> float:
    return 0.0 if b is None else max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inter(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def link_polygons(refs: dict, polygons: list[dict]) -> dict:
    """Link annotation2Dfinal polygons to 3D objects (see the module docstring).

    Args:
        refs: {object key: reference box (x0, y0, x1, y1), clipped to the image}.
        polygons: [{"group": annotation2Dfinal object index, "box": clipped tight box,
            "coords": [x0, y0, x1, y1, ...]}] (layout classes already left out).
    Returns:
        {object key: (union box, [polygon index, ...], IoU)} for the linked objects.
    """
    pairs = []
    for key, ref in refs.items():
        by_group: dict = {}
        for j, p in enumerate(polygons):
            if _inter(p["box"], ref) >= MIN_POLYGON_INSIDE * _area(p["box"]):
                by_group.setdefault(p["group"], []).append(j)
        for js in by_group.values():
            u = _union([polygons[j]["box"] for j in js])
            iou = iou_2d(u, ref)
            if iou >= MIN_LINK_IOU:
                pairs.append((iou, key, u, js))
    pairs.sort(key=lambda t: -t[0])
    out, taken = {}, set()
    for iou, key, u, js in pairs:
        if key in out or taken.intersection(js):
            continue
        out[key] = (u, js, iou)
        taken.update(js)
    return out


def _load_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _first_file(folder: str, exts: tuple[str, ...]) -> str | None:
    if not os.path.isdir(folder):
        return None
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(exts) and not n.startswith("."))
    return os.path.join(folder, names[0]) if names else None


def _frame_polygons(doc) -> list[dict]:
    """The polygons of an annotation file's first frame (list of dicts; [] when absent)."""
    frames = doc.get("frames") if isinstance(doc, dict) else None
    if not isinstance(frames, list) or not frames or not isinstance(frames[0], dict):
        return []
    polys = frames[0].get("polygon")
    return [p for p in polys if isinstance(p, dict)] if isinstance(polys, list) else []


def is_toolbox_frame(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "intrinsics.txt")) and os.path.isdir(os.path.join(path, "image"))


class SunRGBDSource(Real3DSource):
    """SUN RGB-D, toolbox frame folders or mmdetection3d info files (module docstring);
    option sensor_depth ("depth" | "depth_bfx", toolbox frames only)."""

    name = "sunrgbd"
    depth_kinds = ("depth", "depth_bfx")

    def __init__(self, annotations=None, images=None, **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        if not self.annotations or not os.path.exists(self.annotations):
            raise SourceConfigError(f"sunrgbd: --annotations not found: {self.annotations} (a frame folder, a "
                                    "folder of frame folders, or an mmdetection3d *infos*.pkl)")
        self.root = os.path.abspath(self.annotations)
        if os.path.isfile(self.root):
            if not self.root.endswith(".pkl"):
                raise SourceConfigError(f"sunrgbd: {self.root} is neither a folder nor an mmdetection3d .pkl info file")
            self.toolbox_frames, self.info_files = [], [self.root]
            if self.images is None:
                self.images = os.path.dirname(self.root)
        else:
            self.toolbox_frames, self.info_files = self._walk(self.root)
            if not self.toolbox_frames and not self.info_files:
                raise SourceConfigError(f"sunrgbd: no frame folder (intrinsics.txt + image/) and no *infos*.pkl "
                                        f"under {self.root}")

    @staticmethod
    def _walk(root: str) -> tuple[list[str], list[str]]:
        if is_toolbox_frame(root):
            return [root], []
        frames, infos = [], []
        for d, subdirs, files in os.walk(root):  # frame folders may be links; others are not followed
            subdirs.sort()
            found = [s for s in subdirs if is_toolbox_frame(os.path.join(d, s))]
            frames.extend(os.path.join(d, s) for s in found)
            subdirs[:] = [s for s in subdirs if s not in found]
            infos.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".pkl") and "infos" in f)
        return frames, infos

    def frames(self) -> Iterator[Frame | ErrorRecord]:
        for d in self.toolbox_frames:
            yield self._toolbox_frame(d)
        for p in self.info_files:
            yield from self._info_frames(p)

    # -- toolbox layout ------------------------------------------------------------------
    def _frame_id(self, d: str) -> str:
        rel = os.path.relpath(d, self.root)
        return os.path.basename(d) if rel == "." else rel.replace(os.sep, "/")

    def _toolbox_frame(self, d: str) -> Frame | ErrorRecord:
        fid = self._frame_id(d)
        img = _first_file(os.path.join(d, "image"), IMAGE_EXTS)
        if img is None:
            return self.error("image_missing", "image", image_id=fid, detail=os.path.join(d, "image"))
        try:
            K = read_numbers(os.path.join(d, "intrinsics.txt"), 9).reshape(3, 3)
        except (OSError, ValueError) as e:
            return self.error("intrinsics_invalid", "image", image_id=fid, detail=str(e))
        try:
            W, H = image_size(img)
        except Exception as e:  # noqa: BLE001 - any decoder failure is this image's
            return self.error(getattr(e, "reason", "image_unreadable"), "image", image_id=fid, detail=str(e))
        depth = _first_file(os.path.join(d, self.sensor_depth), (".png",))
        if depth is None:
            return self.error("depth_missing", "image", image_id=fid, detail=os.path.join(d, self.sensor_depth))
        docs = {}
        for kind, names in ANNOTATION_FILES.items():
            path = next((os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n))), None)
            if path is None:
                continue
            try:
                docs[kind] = _load_json(path)
            except (OSError, ValueError) as e:
                if kind == "3d":
                    return self.error("annotation_invalid", "image", image_id=fid, detail=f"{path}: {e}")
                docs[kind] = None  # a broken 2D file only loses the 2D boxes it would give
        extra = {"dataset": "sunrgbd", "layout": "toolbox", "depth_kind": self.sensor_depth}
        scene = os.path.join(d, "scene.txt")
        if os.path.isfile(scene):
            with open(scene, encoding="utf-8", errors="replace") as f:
                extra["scene"] = f.read().strip()[:100]
        fr = Frame(image_id=fid, image_path=img, width=W, height=H, K=K.tolist(), depth_path=depth,
                   depth_encoding="sunrgbd", depth_scale=1000.0, extra=extra)
        doc3 = docs.get("3d")
        if doc3 is None:
            return fr  # a frame without 3D annotation: no objects
        Rtilt, problem = self._rtilt(d, doc3)
        if problem:
            return self.error(problem[0], "image", image_id=fid, detail=problem[1])
        fr.gravity_cam = _unit(Rtilt.T @ np.array([0.0, 1.0, 0.0]))
        objs = doc3.get("objects") if isinstance(doc3, dict) else None
        if not isinstance(objs, list):
            return self.error("annotation_invalid", "image", image_id=fid, detail="annotation 3D: no objects list")
        extra["deleted_entries"] = sum(1 for o in objs if not o)
        live = [(i, o) for i, o in enumerate(objs) if o]
        for i, o in live:
            fr.objects.append(self._toolbox_object(fid, i, o, Rtilt))
        self._toolbox_2d(fr, live, docs.get("2d3d"), docs.get("2d"))
        return fr

    def _rtilt(self, d: str, doc3) -> tuple[np.ndarray | None, tuple[str, str] | None]:
        folder = os.path.join(d, "extrinsics")
        named = doc3.get("extrinsics") if isinstance(doc3, dict) else None
        path = None
        if isinstance(named, str) and named and os.path.basename(named) == named:
            path = os.path.join(folder, named) if os.path.isfile(os.path.join(folder, named)) else None
        if path is None and os.path.isdir(folder):  # the toolbox takes the last file
            names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
            path = os.path.join(folder, names[-1]) if names else None
        if path is None:
            return None, ("extrinsics_missing", folder)
        try:
            return read_rtilt(path), None
        except (OSError, ValueError) as e:
            return None, ("extrinsics_invalid", str(e))

    def _toolbox_object(self, fid: str, i: int, o, Rtilt: np.ndarray) -> GTObject3D:
        aid = f"{fid}-{i}"
        name = o.get("name") if isinstance(o, dict) else None
        polys = o.get("polygon") if isinstance(o, dict) else None
        if not isinstance(name, str) or not name.strip() or not isinstance(polys, list) or not polys \
                or not isinstance(polys[0], dict):
            return GTObject3D(ann_id=aid, category_raw=str(name) if isinstance(name, str) else "?", bbox_xyxy=None,
                              gt_box3d=None, ignore="ann_malformed", attributes={"detail": "no name or polygon"})
        cls, label = split_class(name)
        attrs = {"label_name": label} if label else {}
        if cls.lower() in LAYOUT_CLASSES:
            return GTObject3D(ann_id=aid, category_raw=cls, bbox_xyxy=None, gt_box3d=None, attributes=attrs,
                              ignore="ignored_category")
        try:
            box = toolbox_gt_box(polys[0], Rtilt)
        except _Degenerate as e:
            return GTObject3D(ann_id=aid, category_raw=cls, bbox_xyxy=None, gt_box3d=None,
                              attributes={**attrs, "detail": str(e)}, ignore="gt_box3d_degenerate")
        except ValueError as e:
            return GTObject3D(ann_id=aid, category_raw=cls, bbox_xyxy=None, gt_box3d=None,
                              attributes={**attrs, "detail": str(e)}, ignore="ann_malformed")
        return GTObject3D(ann_id=aid, category_raw=cls, bbox_xyxy=None, gt_box3d=box, attributes=attrs)

    @staticmethod
    def _rects(live: list, doc2d3d, size) -> dict:
        """{position in `live`: clipped annotation2D3D rectangle}. Its object list holds the
        3D file's non-null objects in order; the link is checked on the polygons' X values."""
        objs = doc2d3d.get("objects") if isinstance(doc2d3d, dict) else None
        if not isinstance(objs, list):
            return {}
        objs = [o for o in objs if o]

        def sig(o):
            try:
                return tuple(round(float(x), 4) for x in o["polygon"][0]["X"])
            except (KeyError, IndexError, TypeError, ValueError):
                return None

        by_sig = {}
        for k, o in enumerate(objs):
            by_sig.setdefault(sig(o), k)
        to_live = {}
        for pos, (_, o) in enumerate(live):
            s = sig(o)
            if pos < len(objs) and s is not None and sig(objs[pos]) == s:
                to_live[pos] = pos
            elif s is not None and s in by_sig:
                to_live[by_sig[s]] = pos
        rects: dict = {}
        for p in _frame_polygons(doc2d3d):
            xs, ys, k = _num_list(p.get("x")), _num_list(p.get("y")), p.get("object")
            if not xs or not ys or not isinstance(k, int) or k not in to_live:
                continue
            b = clip_box_2d(_tight(xs, ys), size)
            if b is None:
                continue
            pos = to_live[k]
            rects[pos] = b if pos not in rects else _union([rects[pos], b])
        return rects

    def _toolbox_2d(self, fr: Frame, live: list, doc2d3d, doc2d) -> None:
        size = (fr.width, fr.height)
        K = np.asarray(fr.K)
        rects = self._rects(live, doc2d3d, size)
        refs, proj = {}, {}
        for pos, o in enumerate(fr.objects):
            if o.ignore or o.gt_box3d is None:
                continue
            proj[pos] = project_box(Box3D.from_omni3d(o.gt_box3d), K, size)
            ref = rects.get(pos) or proj[pos]
            if ref is not None:
                refs[pos] = ref
        polygons = []
        names = doc2d.get("objects") if isinstance(doc2d, dict) else None
        for p in _frame_polygons(doc2d):
            xs, ys, g = _num_list(p.get("x")), _num_list(p.get("y")), p.get("object")
            if not xs or not ys or len(xs) != len(ys) or len(xs) < 3 or not isinstance(g, int):
                continue
            gname = names[g].get("name") if isinstance(names, list) and 0 <= g < len(names) \
                and isinstance(names[g], dict) else None
            if isinstance(gname, str) and split_class(gname)[0].lower() in LAYOUT_CLASSES:
                continue
            b = clip_box_2d(_tight(xs, ys), size)
            if b is not None:
                polygons.append({"group": g, "box": b, "coords": [v for xy in zip(xs, ys) for v in xy]})
        links = link_polygons(refs, polygons)
        for pos, o in enumerate(fr.objects):
            if o.ignore or o.gt_box3d is None:
                continue
            if pos in links:
                u, js, iou = links[pos]
                o.bbox_xyxy = list(u)
                o.segmentation = [polygons[j]["coords"] for j in js]
                o.attributes.update(bbox_source="polygon", link_iou=round(iou, 4))
            elif pos in rects:
                o.bbox_xyxy = list(rects[pos])
                o.attributes["bbox_source"] = "rect"
            elif proj.get(pos) is not None:
                o.bbox_xyxy = list(proj[pos])
                o.attributes["bbox_source"] = "projection"
            else:
                o.ignore = "bbox_out_of_image"  # the 3D box is behind the camera or outside the image

    # -- mmdetection3d layout ------------------------------------------------------------
    def _info_frames(self, path: str) -> Iterator[Frame | ErrorRecord]:
        stem = os.path.splitext(os.path.basename(path))[0]
        direct = path == self.root
        try:
            doc = load_pickle(path)
        except UnsafePickleError as e:
            if direct:
                raise SourceConfigError(f"sunrgbd: refusing {path}: {e}") from e
            yield self.error("info_unsafe_pickle", "image", image_id=stem, detail=f"{path}: {e}")
            return
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError) as e:
            if direct:
                raise SourceConfigError(f"sunrgbd: cannot read {path}: {type(e).__name__}: {e}") from e
            yield self.error("info_unreadable", "image", image_id=stem, detail=f"{path}: {e}")
            return
        if not isinstance(doc, dict) or not isinstance(doc.get("data_list"), list):
            msg = f"{path}: not an mmdetection3d v1.x info file (a dict with data_list)"
            if direct:
                raise SourceConfigError(f"sunrgbd: {msg}")
            yield self.error("info_unsupported_layout", "image", image_id=stem, detail=msg)
            return
        classes = self._classes(doc.get("metainfo"))
        base = os.path.dirname(path)
        images = self.images or base
        for n, info in enumerate(doc["data_list"]):
            yield self._info_frame(info, n, stem, base, images, classes)

    @staticmethod
    def _classes(meta) -> tuple[str, ...]:
        if isinstance(meta, dict):
            cats = meta.get("categories")
            if isinstance(cats, dict) and cats and all(isinstance(v, int) for v in cats.values()):
                names = {v: str(k) for k, v in cats.items()}
                if sorted(names) == list(range(len(names))):
                    return tuple(names[i] for i in range(len(names)))
            cls = meta.get("classes")
            if isinstance(cls, (list, tuple)) and cls and all(isinstance(c, str) for c in cls):
                return tuple(cls)
        return MMDET3D_CLASSES

    @staticmethod
    def _find(root: str, name, subdirs: tuple[str, ...], what: str) -> tuple[str | None, tuple | None]:
        """(path, None) of a file named in an info file, looked up under root and then its
        `subdirs`; (None, (reason, detail)) when the name is not a usable path or leads
        outside root (the policy of `Source.path_problem`)."""
        if not isinstance(name, str) or not name or "\x00" in name or not is_utf8_text(name) or "://" in name:
            return None, (f"{what}_path_invalid", f"file name {safe_text(str(name))!r} is not a local path")
        top = os.path.normpath(root)
        cands = [os.path.normpath(os.path.join(top, name))]
        cands += [os.path.normpath(os.path.join(top, s, name)) for s in subdirs]
        if os.path.commonpath([cands[0], top]) != top:
            return None, (f"{what}_path_outside_root", f"file name {name!r} resolves outside {top}")
        cands = [c for c in cands if os.path.commonpath([c, top]) == top]
        return next((c for c in cands if os.path.isfile(c)), cands[0]), None

    def _info_frame(self, info, n: int, stem: str, base: str, images: str, classes) -> Frame | ErrorRecord:
        if not isinstance(info, dict):
            return self.error("info_malformed", "image", image_id=f"{stem}-{n}", detail="data_list entry is not a dict")
        cams = info.get("images")
        cam = None
        if isinstance(cams, dict):
            cam = cams.get("CAM0") or next((v for v in cams.values() if isinstance(v, dict)), None)
        img_path = cam.get("img_path") if isinstance(cam, dict) else None
        sid = info.get("sample_idx")
        if isinstance(sid, (int, np.integer)) and not isinstance(sid, bool):
            fid = f"{int(sid):06d}"
        elif isinstance(img_path, str) and img_path:
            fid = os.path.splitext(os.path.basename(img_path))[0]
        else:
            fid = f"{stem}-{n}"
        if not isinstance(cam, dict):
            return self.error("info_malformed", "image", image_id=fid, detail="no images.CAM0")
        try:
            W, H = int(cam["width"]), int(cam["height"])
            if W <= 0 or H <= 0:
                raise ValueError(f"size {W}x{H}")
            K, M = split_depth2img(cam["depth2img"])
        except (KeyError, TypeError, ValueError) as e:
            return self.error("calib_invalid", "image", image_id=fid, detail=f"depth2img/width/height: {e}")
        img, bad = self._find(images, img_path, ("sunrgbd_trainval/image", "image"), "image")
        if bad:
            return self.error(bad[0], "image", image_id=fid, detail=bad[1])
        lp = info.get("lidar_points")
        lp = lp if isinstance(lp, dict) else {}
        cols = lp.get("num_pts_feats", 6)
        if isinstance(cols, np.integer):
            cols = int(cols)
        if lp.get("lidar_path") is None:
            return self.error("depth_missing", "image", image_id=fid, detail="no lidar_points.lidar_path")
        depth, bad = self._find(base, lp.get("lidar_path"), ("points",), "depth")
        if bad:
            return self.error(bad[0], "image", image_id=fid, detail=bad[1])
        to_cam = np.eye(4)
        to_cam[:3, :3] = M
        fr = Frame(image_id=fid, image_path=img, width=W, height=H, K=K.tolist(), depth_path=depth,
                   depth_encoding="points", depth_params={"columns": cols, "to_cam": to_cam.tolist()},
                   gravity_cam=_unit(M @ np.array([0.0, 0.0, -1.0])),
                   extra={"dataset": "sunrgbd", "layout": "mmdet3d", "depth_kind": "points",
                          "info_file": f"{stem}.pkl"})
        insts = info.get("instances")
        for j, inst in enumerate(insts if isinstance(insts, list) else []):
            fr.objects.append(self._info_object(f"{fid}-{j}", inst, K, M, (W, H), classes))
        return fr

    @staticmethod
    def _info_object(aid: str, inst, K, M, size, classes) -> GTObject3D:
        if not isinstance(inst, dict):
            return GTObject3D(ann_id=aid, category_raw="?", bbox_xyxy=None, gt_box3d=None, ignore="ann_malformed")
        label = inst.get("bbox_label_3d", inst.get("bbox_label"))
        if isinstance(label, np.integer):
            label = int(label)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(classes):
            return GTObject3D(ann_id=aid, category_raw=str(label), bbox_xyxy=None, gt_box3d=None,
                              ignore="unknown_category_label", attributes={"label": str(label)})
        cat = classes[label]
        try:
            box = votenet_gt_box(inst.get("bbox_3d"), M)
        except ValueError as e:
            return GTObject3D(ann_id=aid, category_raw=cat, bbox_xyxy=None, gt_box3d=None, ignore="ann_malformed",
                              attributes={"detail": str(e)})
        if any(v <= 0 for v in box["dimensions"]):
            return GTObject3D(ann_id=aid, category_raw=cat, bbox_xyxy=None, gt_box3d=None,
                              ignore="gt_box3d_degenerate", attributes={"detail": f"size {box['dimensions']}"})
        b = inst.get("bbox")
        b = _num_list(list(b)) if isinstance(b, (list, tuple, np.ndarray)) else None
        attrs = {"label": label}
        bbox = clip_box_2d(tuple(b[:4]), size) if b is not None and len(b) == 4 else None
        if bbox is not None:
            attrs["bbox_source"] = "bbox"
        else:
            bbox = project_box(Box3D.from_omni3d(box), K, size)
            attrs["bbox_source"] = "projection"
        if bbox is None:
            return GTObject3D(ann_id=aid, category_raw=cat, bbox_xyxy=None, gt_box3d=box, attributes=attrs,
                              ignore="bbox_out_of_image")
        return GTObject3D(ann_id=aid, category_raw=cat, bbox_xyxy=list(bbox), gt_box3d=box, attributes=attrs)
