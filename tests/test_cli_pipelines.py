"""The lift/qa/run/demo/synth commands: help text, config precedence, one-line user errors."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli
from pipelines import options as opt

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cmd", ["lift", "qa", "run", "demo", "synth", "export"])
def test_help_explains_every_option(cmd):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
    opts = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert opts and all(a.help and len(a.help) > 10 for a in opts), [a.dest for a in opts if not a.help]
    text = sub.format_help()
    for a in opts:
        assert a.option_strings[-1] in text


def _lift_args(argv):
    p = argparse.ArgumentParser()
    opt.add_arguments(p, ["input", "models", "output", "runner"])
    return p.parse_known_args(argv)


def test_yaml_config_then_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: {source: coco, images: /data/img}\noutput: {samples_per_shard: 7, out: /o}\n"
                   "lift: {min_points: 12}\nbeam: {runner: DirectRunner, direct_num_workers: 3}\n")
    args, extra = _lift_args(["--config", str(cfg), "--samples-per-shard", "9", "--direct_num_workers=2"])
    s = opt.resolve(args, extra)
    assert s.input.source == "coco" and s.input.images == "/data/img"
    assert s.output.samples_per_shard == 9 and s.output.out == "/o"
    assert s.lift == {"min_points": 12}
    assert s.beam_args[-1] == "--direct_num_workers=2" and "--direct_num_workers=3" in s.beam_args
    from apache_beam.options.pipeline_options import DirectOptions
    assert opt.pipeline_options(s).view_as(DirectOptions).direct_num_workers == 2
    cfg.write_text("output: {sampels_per_shard: 3}\n")
    with pytest.raises(ValueError, match="unknown key 'sampels_per_shard'"):
        opt.resolve(*_lift_args(["--config", str(cfg)]))
    with pytest.raises(ValueError, match="unknown option --bogus"):
        opt.resolve(*_lift_args(["--bogus=1"]))


def test_local_runner_defaults_use_all_cores():
    from apache_beam.options.pipeline_options import DirectOptions

    s = opt.resolve(*_lift_args([]))
    d = opt.pipeline_options(s, n_items=10_000).view_as(DirectOptions)
    assert d.direct_num_workers >= 1 and d.direct_running_mode == (
        "multi_processing" if d.direct_num_workers > 1 else "in_memory")


@pytest.mark.parametrize("argv, needle", [
    (["lift", "--source", "coco", "--annotations", "/nope.json", "--images", "/nope", "--out", "/tmp/x"],
     "--annotations path not found"),
    (["lift", "--source", "coco", "--images", "/tmp", "--out", "/tmp/x", "--not-an-option", "3"],
     "unknown option --not-an-option"),
    (["qa", "--repository", "/nope/repo", "--out", "/tmp/x"], "repository folder not found"),
    (["lift", "--config", "/nope.yaml"], "config file not found"),
    (["run", "--source", "coco", "--annotations", "/nope.json", "--images", "/tmp", "--out", "/tmp/x"],
     "--annotations path not found"),
    (["synth", "--out", "/tmp/x", "--scenes", "0"], "--scenes must be >= 1"),
    # settings out of range are refused on the driver, before any output exists (issue 19)
    (["lift", "--source", "coco", "--annotations", "a.json", "--images", "/tmp", "--out", "/tmp/x", "--limit", "-1"],
     "--limit must be >= 1"),
    (["lift", "--source", "coco", "--annotations", "a.json", "--images", "/tmp", "--out", "/tmp/x", "--max-pixels", "-1"],
     "--max-pixels must be >= 1"),
    (["lift", "--source", "coco", "--annotations", "a.json", "--images", "/tmp", "--out", "/tmp/x",
      "--depth-input-size", "0"], "--depth-input-size must be >= 14"),
    (["lift", "--source", "coco", "--annotations", "a.json", "--images", "/tmp", "--out", "/tmp/x",
      "--direct_num_workers", "-1"], "--direct_num_workers must be >= 0"),
    (["lift", "--source", "coco", "--annotations", "a.json", "--images", "/tmp", "--out", "/tmp/x", "--device", "gpu"],
     "--device must be cpu, cuda"),
])
def test_user_mistakes_are_one_line_errors(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith(f"lift3d {argv[0]}: error:"), err


def test_console_entry_prints_no_traceback():
    r = subprocess.run([sys.executable, "-c", "import sys; from pipelines.cli import main; sys.exit(main())",
                        "lift", "--source", "omni3d", "--annotations", "/nope.json", "--images", "/nope",
                        "--out", "/tmp/x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "lift3d lift: error: --annotations path not found: /nope.json" in r.stderr


def test_device_cuda_without_a_gpu_is_one_line_before_any_output(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here: --device cuda is valid")
    out = tmp_path / "x"
    argv = ["lift", "--source", "coco", "--annotations", "a.json", "--images", str(tmp_path), "--out", str(out),
            "--depth-model", "depth-anything-v2", "--device", "cuda"]
    assert cli.main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "no CUDA GPU is visible" in err[0] and not out.exists(), err
