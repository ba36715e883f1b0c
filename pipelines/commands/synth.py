"""`lift3d synth`: write synthetic RGB-D scenes with exact 3D ground truth."""
from __future__ import annotations

HELP = "generate synthetic RGB-D scenes (Omni3D-style JSON + images + 16-bit depth) with exact 3D GT"
DESCRIPTION = (
    "Render N scenes by ray casting and write OUT/annotations.json (COCO/Omni3D style: K, "
    "depth_file, gravity, GT 3D boxes, modal 2D boxes), OUT/images/NNNNNN.jpg and "
    "OUT/images/depth/NNNNNN.png (millimetres, 0 = no depth). --scene basic: the regression rooms of "
    "primitive shapes; indoor: SUN RGB-D-like rooms with composite furniture against walls, clutter and "
    "occlusion (640x480); outdoor: KITTI-like streets with cars, pedestrians, cyclists (1242x375). "
    "--noise picks the depth written: exact, generic noise, or a sensor model (kinect, lidar, stereo, "
    "mono). Lift them with `lift3d lift --source omni3d --annotations OUT/annotations.json "
    "--images OUT/images --depth-model sensor`.")

SCENES = ("basic", "indoor", "outdoor")
NOISES = ("none", "realistic", "kinect", "lidar", "stereo", "mono")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder for annotations.json and images/ (created)")
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes to render")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scenes)")
    parser.add_argument("--scene", choices=SCENES, default="basic",
                        help="scene kind: basic (primitive shapes in a room, the regression set), indoor "
                             "(realistic rooms with composite furniture) or outdoor (KITTI-like streets)")
    parser.add_argument("--noise", choices=NOISES, default="none",
                        help="depth written: none (exact), realistic (generic noise, holes, quantisation, edge "
                             "artefacts) or a sensor model: kinect (structured light: shadows, range limit), "
                             "lidar (sparse 64-beam scan lines), stereo (dense, fattened edges), mono (dense, "
                             "scale-biased and smoothly distorted like a monocular network)")
    parser.add_argument("--no-gravity", action="store_true",
                        help="leave gravity out of the annotations, so that the lifter estimates it (as for KITTI "
                             "and nuScenes, which give none)")


def synth(out: str, scenes: int, seed: int = 0, noise: str = "none", scene: str = "basic", gravity: bool = True):
    """Write the dataset; returns the annotations path. ValueError for bad arguments."""
    from pathlib import Path

    from lifting.synthetic import NoiseConfig, SceneConfig, write_dataset

    if scenes < 1:
        raise ValueError("--scenes must be >= 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out is a file, not a folder: {out}")
    cfg = None if scene == "basic" else SceneConfig.named(scene)
    nz = None if noise == "none" else NoiseConfig.named(noise)
    return write_dataset(out, n_scenes=scenes, seed=seed, config=cfg, noise=nz, include_gravity=gravity)


def run(args, extra) -> int:
    from pipelines import options as opt

    with opt.user_errors():
        ann = synth(args.out, args.scenes, args.seed, args.noise, args.scene, gravity=not args.no_gravity)
    print(f"wrote {args.scenes} {args.scene} scenes: annotations {ann}, images {ann.parent / 'images'}")
    return 0
