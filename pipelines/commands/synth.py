"""`lift3d synth`: write synthetic RGB-D scenes with exact 3D ground truth."""
from __future__ import annotations

HELP = "generate synthetic RGB-D scenes (Omni3D-style JSON + images + 16-bit depth) with exact 3D GT"
DESCRIPTION = (
    "Render N indoor scenes by ray casting and write OUT/annotations.json (COCO/Omni3D style: K, "
    "depth_file, gravity, GT 3D boxes), OUT/images/NNNNNN.jpg and OUT/images/depth/NNNNNN.png "
    "(millimetres). Lift them with `lift3d lift --source omni3d --annotations OUT/annotations.json "
    "--images OUT/images --depth-model sensor`.")


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder for annotations.json and images/ (created)")
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes to render")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scenes)")
    parser.add_argument("--noise", choices=["none", "realistic"], default="none",
                        help="sensor-like depth noise (holes, quantisation, edge artefacts) or exact depth")


def synth(out: str, scenes: int, seed: int = 0, noise: str = "none"):
    """Write the dataset; returns the annotations path. ValueError for bad arguments."""
    from pathlib import Path

    from lifting.synthetic import NoiseConfig, write_dataset

    if scenes < 1:
        raise ValueError("--scenes must be >= 1")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out is a file, not a folder: {out}")
    nz = NoiseConfig.realistic() if noise == "realistic" else None
    return write_dataset(out, n_scenes=scenes, seed=seed, noise=nz)


def run(args, extra) -> int:
    from pipelines import options as opt

    with opt.user_errors():
        ann = synth(args.out, args.scenes, args.seed, args.noise)
    print(f"wrote {args.scenes} scenes: annotations {ann}, images {ann.parent / 'images'}")
    return 0
