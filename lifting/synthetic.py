"""Synthetic RGB-D scenes with exact ground truth, rendered by ray casting.

A scene is a room (floor, back and side walls, ceiling) with several objects standing on
the floor: cuboids, vertical cylinders, spheres and an L-shaped "chair" (seat block plus
backrest, a non-box shape). The camera stands at a random height with random pitch and
roll. Every pixel's ray is intersected analytically with every surface, so depth, instance
masks, intrinsics, gravity and the objects' metric 3D boxes are exact.

World frame (internal): the gravity frame of the scene, origin on the floor below the
camera, +y down (floor is y = 0, so objects have y < 0), +z forward (horizontal), +x right.
Everything returned is in the camera frame (OpenCV: +x right, +y down, +z forward, metres).

Boxes of rotationally symmetric objects (cylinders, spheres) face the camera: their yaw is
that of the horizontal viewing ray to their centre (any yaw bounds them equally; this
convention makes the GT unique and is what the lifting core reproduces).

Written by hand because no library renders analytic scenes with exact per-pixel depth,
instance ids and amodal boxes without a GPU/OpenGL context; numpy ray casting over 0.3 MP
takes a few tens of milliseconds.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lifting.boxes import Box3D, project_box, rot_y
from lifting.camera import K_from_fov

#: Catalogue: category -> (shape, (min dims), (max dims)); dims are (w, h, l) metres, for
#: cylinders/spheres w = l = diameter.
CATALOGUE: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "cabinet": ("cuboid", (0.5, 0.8, 0.4), (1.0, 1.8, 0.6)),
    "box": ("cuboid", (0.3, 0.25, 0.3), (0.6, 0.6, 0.6)),
    "sofa": ("cuboid", (1.5, 0.7, 0.8), (2.1, 0.9, 1.0)),
    "table": ("cuboid", (0.8, 0.7, 0.6), (1.5, 0.8, 1.0)),
    "trash can": ("cylinder", (0.3, 0.4, 0.3), (0.5, 0.7, 0.5)),
    "ball": ("sphere", (0.25, 0.25, 0.25), (0.6, 0.6, 0.6)),
    "chair": ("chair", (0.45, 0.8, 0.45), (0.6, 1.0, 0.6)),
}
CATEGORIES = list(CATALOGUE)


@dataclass
class SceneConfig:
    """What scenes look like. Angles in degrees, lengths in metres."""

    width: int = 640
    height: int = 480
    fov_x_deg: tuple[float, float] = (55.0, 70.0)
    camera_height: tuple[float, float] = (1.2, 1.7)
    pitch_down_deg: tuple[float, float] = (5.0, 25.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    n_objects: tuple[int, int] = (4, 7)
    distance: tuple[float, float] = (1.8, 5.5)  # object centre distance along the floor
    occlusion: bool = False  # also place objects partly in front of others
    room_depth: tuple[float, float] = (7.0, 9.0)
    room_half_width: tuple[float, float] = (3.5, 5.0)
    room_height: float = 2.9
    categories: tuple[str, ...] = tuple(CATEGORIES)


@dataclass
class NoiseConfig:
    """Sensor-like corruptions applied to the exact depth (all off by default)."""

    rel_sigma: float = 0.0  # relative Gaussian noise: z * (1 + N(0, rel_sigma))
    quant_coeff: float = 0.0  # disparity-like quantisation: step(z) = quant_coeff * z^2 (m)
    missing_fraction: float = 0.0  # fraction of pixels dropped (set to 0), in small blobs
    flying_pixels: bool = False  # blend depth across discontinuities on a 1-px band

    @classmethod
    def realistic(cls) -> "NoiseConfig":
        """The 'noisy' setting of the fidelity tests: 1% sigma, quantisation, holes, flying pixels."""
        return cls(rel_sigma=0.01, quant_coeff=0.0025, missing_fraction=0.05, flying_pixels=True)


@dataclass
class SceneObject:
    """One object of a scene with its exact ground truth (camera frame)."""

    instance_id: int  # value in Scene.instance_map
    category: str
    shape: str  # cuboid | cylinder | sphere | chair
    box: Box3D  # gravity-aligned GT box
    visible_pixels: int
    amodal_pixels: int  # pixels the object would cover alone (inside the image)
    truncation: float  # fraction of the projected GT box outside the image
    bbox_xyxy: tuple[float, float, float, float] | None  # visible-mask box, pixel edges

    @property
    def visibility(self) -> float:
        return self.visible_pixels / self.amodal_pixels if self.amodal_pixels else 0.0


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth in metres, exact
    depth_noisy: np.ndarray  # (H, W) float32, NoiseConfig applied (0 = missing)
    instance_map: np.ndarray  # (H, W) int32, 0 = room, k = SceneObject.instance_id
    K: np.ndarray  # (3, 3)
    gravity_cam: np.ndarray  # (3,) unit "down" in the camera frame
    camera_height: float  # metres above the floor
    objects: list[SceneObject] = field(default_factory=list)

    def mask(self, instance_id: int) -> np.ndarray:
        return self.instance_map == instance_id


# ----------------------------------------------------------------------------- geometry
def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_box(o, d, center, half, R) -> np.ndarray:
    """Ray parameters (N,) of the first hit of rays o + t d with an oriented box; inf = miss."""
    ol = (o - center) @ R  # box frame
    dl = d @ R
    inv = 1.0 / _safe(dl)
    t1 = (-half - ol) * inv
    t2 = (half - ol) * inv
    tmin = np.minimum(t1, t2).max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    hit = (tmax >= tmin) & (tmin > 1e-6)
    return np.where(hit, tmin, np.inf)


def _hit_cylinder(o, d, cx, cz, r, h) -> np.ndarray:
    """First hit with a vertical cylinder of radius r standing on the floor (y in [-h, 0])."""
    ox, oz = o[0] - cx, o[2] - cz
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2.0 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox * ox + oz * oz - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    t_side = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * _safe(a)), np.inf)
    y = o[1] + t_side * d[:, 1]
    t_side = np.where((t_side > 1e-6) & (y >= -h) & (y <= 0.0), t_side, np.inf)
    t_cap = (-h - o[1]) / _safe(d[:, 1])
    px = o[0] + t_cap * d[:, 0] - cx
    pz = o[2] + t_cap * d[:, 2] - cz
    t_cap = np.where((t_cap > 1e-6) & (px * px + pz * pz <= r * r), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


def _hit_sphere(o, d, center, r) -> np.ndarray:
    oc = o - center
    a = np.einsum("ij,ij->i", d, d)
    b = 2.0 * (d @ oc)
    c = oc @ oc - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * a), np.inf)
    return np.where(t > 1e-6, t, np.inf)


@dataclass
class _Placed:
    category: str
    shape: str
    center_w: np.ndarray  # GT box centre in the world frame
    dims: np.ndarray  # (w, h, l)
    yaw: float  # world yaw (for symmetric shapes: set later to face the camera)
    radius: float  # footprint radius for placement

    def hit(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        w, h, l = self.dims
        R = rot_y(self.yaw)
        if self.shape == "cuboid":
            return _hit_box(o, d, self.center_w, self.dims / 2, R)
        if self.shape == "cylinder":
            return _hit_cylinder(o, d, self.center_w[0], self.center_w[2], w / 2, h)
        if self.shape == "sphere":
            return _hit_sphere(o, d, self.center_w, w / 2)
        if self.shape == "chair":  # seat block (45% of height) + backrest slab at the box's -z side
            seat_h = 0.45 * h
            seat_c = self.center_w + R @ np.array([0.0, h / 2 - seat_h / 2, 0.0])
            t_seat = _hit_box(o, d, seat_c, np.array([w, seat_h, l]) / 2, R)
            th = 0.12 * l
            back_c = self.center_w + R @ np.array([0.0, -seat_h / 2, -l / 2 + th / 2])
            t_back = _hit_box(o, d, back_c, np.array([w, h - seat_h, th]) / 2, R)
            return np.minimum(t_seat, t_back)
        raise ValueError(self.shape)


# ----------------------------------------------------------------------------- scenes
def _u(rng, lo_hi):
    lo, hi = lo_hi
    return float(rng.uniform(lo, hi))


def _place_objects(rng: np.random.Generator, cfg: SceneConfig, half_fov: float) -> list[_Placed]:
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    placed: list[_Placed] = []
    tries = 0
    while len(placed) < n and tries < 400:
        tries += 1
        cat = cfg.categories[int(rng.integers(len(cfg.categories)))]
        shape, lo, hi = CATALOGUE[cat]
        dims = np.array([rng.uniform(a, b) for a, b in zip(lo, hi)])
        if shape in ("cylinder", "sphere"):
            dims[2] = dims[0]
            if shape == "sphere":
                dims[1] = dims[0]
        radius = 0.5 * math.hypot(dims[0], dims[2])
        occluder = cfg.occlusion and placed and rng.random() < 0.35
        if occluder:  # in front of an existing object, offset sideways so it hides part of it
            tgt = placed[int(rng.integers(len(placed)))]
            dist = math.hypot(tgt.center_w[0], tgt.center_w[2])
            z = tgt.center_w[2] - (tgt.radius + radius + rng.uniform(0.2, 0.6))
            x = tgt.center_w[0] + rng.choice([-1, 1]) * rng.uniform(0.3, 0.7) * (tgt.dims[0] + dims[0]) / 2
            if z < cfg.distance[0] * 0.7 or dist < 1e-3:
                continue
        else:
            z = rng.uniform(*cfg.distance)
            x = rng.uniform(-1, 1) * max(0.0, z * math.tan(half_fov) * 0.75 - radius)
        if any(math.hypot(x - p.center_w[0], z - p.center_w[2]) < radius + p.radius + 0.1 for p in placed):
            continue
        yaw = float(rng.uniform(-math.pi, math.pi))
        center = np.array([x, -dims[1] / 2, z])
        placed.append(_Placed(cat, shape, center, dims, yaw, radius))
    return placed


def _texture(rng_colors: np.ndarray, ids: np.ndarray, pts_w: np.ndarray, surf: np.ndarray) -> np.ndarray:
    """Colour (N, 3) float in [0, 1] of hit points from their surface id and world position."""
    n_obj = len(rng_colors) - 4
    col = np.empty((len(ids), 3))
    checker_big = (np.floor(pts_w[:, 0] / 0.5) + np.floor(pts_w[:, 2] / 0.5)) % 2
    checker_small = (np.floor(pts_w[:, 0] / 0.1) + np.floor(pts_w[:, 1] / 0.1) + np.floor(pts_w[:, 2] / 0.1)) % 2
    for s in range(4 + n_obj):
        m = surf == s
        if not m.any():
            continue
        base = rng_colors[s]
        if s == 0:  # floor
            col[m] = base * (0.75 + 0.25 * checker_big[m, None])
        elif s < 4:  # walls, ceiling
            stripes = 0.9 + 0.1 * (np.floor(pts_w[m, 0] * 4 + pts_w[m, 2] * 4) % 2)
            col[m] = base * stripes[:, None]
        else:
            col[m] = base * (0.7 + 0.3 * checker_small[m, None])
    return np.clip(col, 0, 1)


def generate_scene(seed: int, config: SceneConfig | None = None, noise: NoiseConfig | None = None) -> Scene:
    """Render one deterministic scene from `seed` (same seed and configs -> identical arrays)."""
    cfg = config or SceneConfig()
    noise = noise or NoiseConfig()
    rng = np.random.default_rng(seed)
    W, H = cfg.width, cfg.height
    fov = _u(rng, cfg.fov_x_deg)
    K = K_from_fov(W, H, fov)
    half_fov = math.radians(fov) / 2
    cam_h = _u(rng, cfg.camera_height)
    pitch = math.radians(_u(rng, cfg.pitch_down_deg))
    roll = math.radians(_u(rng, cfg.roll_deg))
    R_wc = _rot_x(-pitch) @ _rot_z(roll)  # camera -> world
    C = np.array([0.0, -cam_h, 0.0])
    gravity_cam = R_wc.T @ np.array([0.0, 1.0, 0.0])

    objs = _place_objects(rng, cfg, half_fov)
    for p in objs:  # symmetric shapes face the camera
        if p.shape in ("cylinder", "sphere"):
            p.yaw = math.atan2(p.center_w[0], p.center_w[2])

    # rays with z-component 1 in the camera frame: ray parameter t equals z-depth
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([(u.ravel() - K[0, 2]) / K[0, 0], (v.ravel() - K[1, 2]) / K[1, 1], np.ones(H * W)], axis=1)
    d_w = d_cam @ R_wc.T
    o = C

    zb = _u(rng, cfg.room_depth)
    xs = _u(rng, cfg.room_half_width)
    t_room = np.stack(
        [
            np.where(d_w[:, 1] > 0, (0.0 - o[1]) / _safe(d_w[:, 1]), np.inf),  # floor
            np.where(d_w[:, 2] > 0, (zb - o[2]) / _safe(d_w[:, 2]), np.inf),  # back wall
            np.where(d_w[:, 0] != 0, (np.sign(d_w[:, 0]) * xs - o[0]) / _safe(d_w[:, 0]), np.inf),  # sides
            np.where(d_w[:, 1] < 0, (-cfg.room_height - o[1]) / _safe(d_w[:, 1]), np.inf),  # ceiling
        ],
        axis=1,
    )
    t_room = np.where(t_room > 0, t_room, np.inf)
    t_objs = np.stack([p.hit(o, d_w) for p in objs], axis=1) if objs else np.zeros((H * W, 0))
    t_all = np.concatenate([t_room, t_objs], axis=1)
    surf = np.argmin(t_all, axis=1)
    depth = t_all[np.arange(H * W), surf].astype(np.float32)
    if not np.all(np.isfinite(depth)):
        raise RuntimeError("ray escaped the room")  # cannot happen: the room is closed in view
    inst = np.where(surf >= 4, surf - 3, 0).astype(np.int32)

    colors = np.concatenate(
        [np.array([[0.55, 0.45, 0.35], [0.85, 0.83, 0.78], [0.78, 0.8, 0.84], [0.95, 0.95, 0.95]]),
         rng.uniform(0.15, 0.95, size=(len(objs), 3))]
    )
    pts_w = o + d_w * depth[:, None]
    rgb = _texture(colors, inst, pts_w, surf)
    shade = np.clip(1.15 - 0.05 * depth, 0.6, 1.0)
    rgb = (rgb * shade[:, None] * 255).round().astype(np.uint8).reshape(H, W, 3)
    depth = depth.reshape(H, W)
    inst = inst.reshape(H, W)

    R_cw = R_wc.T
    objects = []
    for k, p in enumerate(objs):
        iid = k + 1
        center_cam = R_cw @ (p.center_w - C)
        box = Box3D(center_cam, p.dims, R_cw @ rot_y(p.yaw), p.yaw)
        amodal = int(np.isfinite(t_objs[:, k]).sum())
        m = inst == iid
        vis = int(m.sum())
        bbox = None
        if vis:
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        full = project_box(box, K, None)
        clipped = project_box(box, K, (W, H))
        area = lambda b: 0.0 if b is None else (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        trunc = 1.0 - area(clipped) / area(full) if area(full) > 0 else 1.0
        objects.append(SceneObject(iid, p.category, p.shape, box, vis, amodal, float(trunc), bbox))

    depth_noisy = apply_noise(depth, noise, rng)
    return Scene(rgb, depth, depth_noisy, inst, K, gravity_cam, cam_h, objects)


def apply_noise(depth: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """Sensor-like corruption of an exact (H, W) depth map in metres; 0 marks missing pixels."""
    z = depth.astype(np.float64).copy()
    if noise.flying_pixels:
        # pixels on a depth discontinuity take a value between the two sides
        pad = np.pad(z, 1, mode="edge")
        nb = np.stack([pad[1:-1, 2:], pad[1:-1, :-2], pad[2:, 1:-1], pad[:-2, 1:-1]])
        far = nb.max(axis=0)
        near = nb.min(axis=0)
        edge = (far - near) > 0.1 * z
        a = rng.uniform(0.0, 1.0, size=z.shape)
        z = np.where(edge, near + a * (far - near), z)
    if noise.rel_sigma > 0:
        z = z * (1.0 + rng.normal(0.0, noise.rel_sigma, size=z.shape))
    if noise.quant_coeff > 0:
        step = noise.quant_coeff * z * z
        z = np.round(z / step) * step
    if noise.missing_fraction > 0:
        # seeds dilated into small blobs (3x3) until about the requested fraction is gone
        seeds = rng.random(z.shape) < noise.missing_fraction / 9.0
        pad = np.pad(seeds, 1)
        blob = np.zeros_like(seeds)
        for dy in range(3):
            for dx in range(3):
                blob |= pad[dy:dy + z.shape[0], dx:dx + z.shape[1]]
        z[blob] = 0.0
    return z.astype(np.float32)


# ----------------------------------------------------------------------------- dataset files
def scene_annotations(scene: Scene, image_id: int, file_name: str, depth_file: str, ann_id_start: int,
                      include_gravity: bool = True, depth_scale: float = 1000.0) -> tuple[dict, list[dict]]:
    """Omni3D-style COCO image entry and annotation entries of a scene (DESIGN.md "Inputs")."""
    from pycocotools import mask as mask_utils

    H, W = scene.depth.shape
    image = {
        "id": image_id,
        "file_name": file_name,
        "width": W,
        "height": H,
        "K": scene.K.tolist(),
        "depth_file": depth_file,
        "depth_scale": depth_scale,
    }
    if include_gravity:
        image["gravity_cam"] = [float(x) for x in scene.gravity_cam]
    anns = []
    for k, ob in enumerate(scene.objects):
        if ob.visible_pixels == 0:
            continue
        rle = mask_utils.encode(np.asfortranarray(scene.mask(ob.instance_id).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = ob.bbox_xyxy
        omni = ob.box.to_omni3d()
        proj = project_box(ob.box, scene.K, (W, H))
        anns.append(
            {
                "id": ann_id_start + k,
                "image_id": image_id,
                "category_id": CATEGORIES.index(ob.category) + 1,
                "category_name": ob.category,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "bbox2D_proj": list(proj) if proj else None,
                "segmentation": rle,
                "area": float(ob.visible_pixels),
                "iscrowd": 0,
                "center_cam": omni["center_cam"],
                "dimensions": omni["dimensions"],
                "R_cam": omni["R_cam"],
                "bbox3D_cam": omni["bbox3D_cam"],
                "visibility": round(ob.visibility, 4),
                "truncation": round(ob.truncation, 4),
                "shape": ob.shape,
            }
        )
    return image, anns


def write_dataset(out_dir, n_scenes: int = 4, seed: int = 0, config: SceneConfig | None = None,
                  noise: NoiseConfig | None = None, include_gravity: bool = True) -> Path:
    """Write `n_scenes` scenes as an Omni3D-style RGB-D dataset; returns the annotations path.

    Layout: out_dir/annotations.json, out_dir/images/NNNNNN.jpg (colour, JPEG q95),
    out_dir/images/depth/NNNNNN.png (16-bit depth, millimetres: depth_scale 1000). Paths in
    the JSON are relative to out_dir/images. Scene i uses seed (seed * 100003 + i).
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images" / "depth").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    next_ann = 1
    for i in range(n_scenes):
        scene = generate_scene(seed * 100003 + i, config, noise)
        fn, dfn = f"{i:06d}.jpg", f"depth/{i:06d}.png"
        Image.fromarray(scene.rgb).save(out / "images" / fn, quality=95)
        mm = np.clip(np.round(scene.depth_noisy * 1000.0), 0, 65535).astype(np.uint16)
        Image.fromarray(mm).save(out / "images" / dfn)
        img, a = scene_annotations(scene, i + 1, fn, dfn, next_ann, include_gravity)
        next_ann += len(scene.objects)
        images.append(img)
        anns.extend(a)
    doc = {
        "info": {"description": "lift3d synthetic RGB-D scenes", "seed": seed,
                 "scene_config": asdict(config or SceneConfig()), "noise": asdict(noise or NoiseConfig())},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CATEGORIES)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(doc))
    return path
