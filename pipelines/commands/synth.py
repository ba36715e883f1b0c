"""`lift3d synth`: write synthetic RGB-D scenes with exact 3D ground truth."""
from __future__ import annotations

HELP = "generate synthetic RGB-D scenes (Omni3D-style JSON + images + 16-bit depth) with exact 3D GT"
DESCRIPTION = (
    "Render N scenes by ray casting and write OUT/annotations.json (COCO/Omni3D style: K, "
    "depth_file, depth_scale, gravity, GT 3D boxes, 2D boxes), OUT/images/NNNNNN.jpg and "
    "OUT/images/depth/NNNNNN.png (16-bit depth, 0 = no depth: millimetres, or 1/256 m for street_far "
    "whose far walls stand beyond 65 m). --scene basic: the regression rooms of primitive shapes; "
    "indoor: SUN RGB-D-like rooms with composite furniture against walls, clutter and occlusion "
    "(640x480); outdoor: KITTI-like streets with cars, pedestrians, cyclists, cones, barriers (1242x375, "
    "to 45 m); street_far: nuScenes-like streets seen by a front camera (1600x900, to 80 m, cross "
    "streets, crowds, barrier rows, queued cars). The 2D boxes are modal (the visible pixels', like "
    "KITTI and SUN RGB-D) except for street_far, amodal (the projected 3D box, like nuScenes); --boxes "
    "overrides. --noise picks the depth written: exact, generic noise, or a sensor model (kinect, lidar "
    "with 64 beams, lidar32 with 32, stereo, mono). Lift them with `lift3d lift --source omni3d "
    "--annotations OUT/annotations.json --images OUT/images --depth-model sensor`.")

SCENES = ("basic", "indoor", "outdoor", "street_far")
NOISES = ("none", "realistic", "kinect", "lidar", "lidar32", "stereo", "mono")
BOXES = ("modal", "amodal")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder for annotations.json and images/ (created)")
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes to render")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scenes)")
    parser.add_argument("--scene", choices=SCENES, default="basic",
                        help="scene kind: basic (primitive shapes in a room, the regression set), indoor "
                             "(realistic rooms with composite furniture), outdoor (KITTI-like streets) or "
                             "street_far (nuScenes-like streets out to 80 m)")
    parser.add_argument("--noise", choices=NOISES, default="none",
                        help="depth written: none (exact), realistic (generic noise, holes, quantisation, edge "
                             "artefacts) or a sensor model: kinect (structured light: shadows, range limit), "
                             "lidar (sparse 64-beam scan lines, KITTI's HDL-64E), lidar32 (sparser: 32 beams "
                             "1.33 deg apart, nuScenes' HDL-32E), stereo (dense, fattened edges), mono (dense, "
                             "scale-biased and smoothly distorted like a monocular network)")
    parser.add_argument("--boxes", choices=BOXES, default=None,
                        help="2D boxes written: modal (the visible pixels' box) or amodal (the GT 3D box "
                             "projected and clipped to the image); default: amodal for street_far, like "
                             "nuScenes, modal for the others")
    parser.add_argument("--no-gravity", action="store_true",
                        help="leave gravity out of the annotations, so that the lifter estimates it (as for KITTI "
                             "and nuScenes, which give none)")


def synth(out: str, scenes: int, seed: int = 0, noise: str = "none", scene: str = "basic", gravity: bool = True,
          boxes: str | None = None):
    """Write the dataset; returns the annotations path. `boxes` None: the scene preset's 2D
    boxes. ValueError for bad arguments."""
    import dataclasses
    from pathlib import Path

    from lifting.synthetic import NoiseConfig, SceneConfig, write_dataset

    if scenes < 1:
        raise ValueError("--scenes must be >= 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out is a file, not a folder: {out}")
    cfg = None if scene == "basic" else SceneConfig.named(scene)
    if boxes is not None and boxes != (cfg or SceneConfig()).boxes_2d:
        cfg = dataclasses.replace(cfg or SceneConfig(), boxes_2d=boxes)
    nz = None if noise == "none" else NoiseConfig.named(noise)
    return write_dataset(out, n_scenes=scenes, seed=seed, config=cfg, noise=nz, include_gravity=gravity)


def run(args, extra) -> int:
    from pipelines import options as opt

    with opt.user_errors():
        ann = synth(args.out, args.scenes, args.seed, args.noise, args.scene, gravity=not args.no_gravity,
                    boxes=args.boxes)
    print(f"wrote {args.scenes} {args.scene} scenes: annotations {ann}, images {ann.parent / 'images'}")
    return 0
