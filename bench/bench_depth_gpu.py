"""GPU throughput of the depth backends with full-size random-initialised architectures.

    .venv/bin/python bench/bench_depth_gpu.py                 # on a CUDA machine
    .venv/bin/python bench/bench_depth_gpu.py --cpu-smoke     # tiny configs on CPU, checks the script

For each backend (Depth Anything V2 ViT-L metric at 518 px short side, Depth Pro at
1536 px) and batch size 1..64, in bf16: end-to-end images/s of `predict` (GPU
pre-processing, network, crop + resize back, float16 depth to host) and network-only
images/s; model FLOPs per image counted with torch.utils.flop_counter.FlopCounterMode;
the GPU's measured bf16 matmul peak (a large torch.matmul loop); and the fraction of that
peak reached (FLOPs/image x images/s / peak). Speed does not depend on the weights, so
random weights are used. Writes bench/results/bench_depth_gpu.json (or
bench_depth_gpu_cpu_smoke.json with --cpu-smoke).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N3D_IMAGES = 2_780_000  # images in the N3D-VLM 3D repository


def matmul_peak_flops(device, dtype, n: int, iters: int) -> float:
    """Measured dense matmul throughput (FLOP/s) of an n x n @ n x n product repeated `iters` times."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2.0 * n ** 3 * iters / (time.perf_counter() - t)


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model, x) -> float:
    """FLOPs of one forward pass on batch x, per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(pixel_values=x)
    return fc.get_total_flops() / x.shape[0]


def time_call(fn, device, warmup: int, iters: int) -> float:
    """Seconds per call of fn() after warm-up."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / iters


def bench_backend(name, est, images, batch_sizes, device, peak, warmup, iters):
    import torch

    est.load()
    lb = est._plan(*images[0].shape[:2])
    x1 = est._canvas(images[0], lb)[None].to(est.torch_dtype)
    flops = count_flops(est.model, x1)
    rows = []
    for b in batch_sizes:
        row = {"batch": b, "canvas": list(lb.canvas)}
        try:
            batch = [images[i % len(images)] for i in range(b)]
            t_e2e = time_call(lambda: est.predict(batch, [None] * b), device, warmup, iters)
            x = x1.expand(b, -1, -1, -1).contiguous()

            def net():
                with torch.inference_mode():
                    est.model(pixel_values=x)

            t_net = time_call(net, device, warmup, iters)
            row.update(images_per_s=b / t_e2e, net_images_per_s=b / t_net,
                       fraction_of_peak=flops * b / t_e2e / peak, net_fraction_of_peak=flops * b / t_net / peak,
                       hours_for_n3d_repository=N3D_IMAGES / (b / t_e2e) / 3600.0)
        except torch.OutOfMemoryError:
            row["error"] = "out_of_memory"
            torch.cuda.empty_cache()
        rows.append(row)
        print(f"{name:18s} batch {b:3d}: " + (row.get("error") or
              f"{row['images_per_s']:8.2f} img/s end-to-end ({row['fraction_of_peak']:.1%} of peak), "
              f"{row['net_images_per_s']:8.2f} img/s network ({row['net_fraction_of_peak']:.1%})"), flush=True)
    return {"gflops_per_image": flops / 1e9, "canvas": list(lb.canvas), "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny configs on CPU for a few iterations")
    ap.add_argument("--backends", default="depth-anything-v2,depth-pro")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--image-size", default="480x640", help="HxW of the synthetic input images")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the networks")
    args = ap.parse_args(argv)

    import torch

    from lifting.models.depth import tiny_random_checkpoint
    from lifting.models.registry import get_depth_estimator

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("bench_depth_gpu: no CUDA device on this machine; run it on a GPU machine "
              "(or pass --cpu-smoke to check the script with tiny configs)")
        return 0
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    dtype = torch.float32 if args.cpu_smoke else torch.bfloat16
    batch_sizes = [1, 2] if args.cpu_smoke else [int(b) for b in args.batch_sizes.split(",")]
    warmup, iters = (1, 2) if args.cpu_smoke else (args.warmup, args.iters)
    H, W = (int(v) for v in args.image_size.lower().split("x"))
    if args.cpu_smoke:
        H, W = 48, 64
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(8)]
    peak = matmul_peak_flops(device, dtype, 1024 if args.cpu_smoke else 8192, 3 if args.cpu_smoke else 50)
    print(f"measured {dtype} matmul peak: {peak / 1e12:.3f} TFLOP/s on "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}")
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": str(dtype), "image_size": [H, W],
              "matmul_peak_tflops": peak / 1e12, "cpu_smoke": args.cpu_smoke, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends.split(","):
            path = tiny_random_checkpoint(name, Path(tmp) / name, full_size=not args.cpu_smoke)
            opts = {"weights": str(path), "device": device.type, "dtype": "fp32" if args.cpu_smoke else "bf16",
                    "max_batch_size": max(batch_sizes), "compile": args.compile}
            if name.startswith("depth-anything") and args.cpu_smoke:
                opts["input_size"] = 42
            est = get_depth_estimator(name, **opts)
            result["backends"][name] = bench_backend(name, est, images, batch_sizes, device, peak, warmup, iters)
            del est
            if device.type == "cuda":
                torch.cuda.empty_cache()
    out = ROOT / "bench" / "results" / ("bench_depth_gpu_cpu_smoke.json" if args.cpu_smoke else "bench_depth_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
