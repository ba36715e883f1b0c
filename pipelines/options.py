"""Settings of the lift and QA pipelines: grouped dataclasses, a YAML file, flags on top.

Precedence: dataclass defaults < `--config FILE.yaml` < command-line flags. The YAML file
has one mapping per group (`input`, `models`, `output`, `runner`, `qa`, `llm`), plus `lift`
(passed to `LiftConfig.from_dict`), `qa_config` (passed to `QAConfig`) and `beam`
(pipeline options, e.g. `{runner: DataflowRunner, project: p}`); flags not known to
lift3d are Beam pipeline options and pass through unchanged (`parse_known_args` →
`PipelineOptions`). Unknown keys and unknown flags are one-line user errors.

Every option is declared once, as a dataclass field with `metadata={'help': ...}`; the
argparse flags and their help text are generated from the fields.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SOURCES = ("coco", "objects365", "openimages", "omni3d", "rgbd", "images", "index", "kitti", "sunrgbd", "nuscenes")
SEGMENTERS = ("annotation", "sam", "sam-official", "none")


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class InputSettings:
    """Where the images and their 2D annotations come from."""

    source: str | None = _opt(None, "dataset format; 'index' reads Parquet partitions built by the sources "
                              "index builder (use it for large datasets)", choices=SOURCES)
    annotations: str | None = _opt(None, "annotation file (COCO/Objects365/Omni3D JSON); OpenImages: the box CSV "
                                   "(*bbox*.csv) or its folder, with the class descriptions CSV "
                                   "(*class-descriptions*.csv) next to it; kitti: the split folder (label_2/, "
                                   "calib/, velodyne/); sunrgbd: a frame folder of the toolbox layout, a folder of "
                                   "them, or an mmdetection3d info .pkl; nuscenes: an mmdetection3d info .pkl")
    images: str | None = _opt(None, "folder or URL of the image files (and depth PNGs for omni3d); kitti, sunrgbd, "
                              "nuscenes: defaults to the dataset's own image folder next to --annotations")
    sensor_depth: str | None = _opt(None, "which depth of a real 3D dataset: kitti velodyne (default) | disparity; "
                                    "sunrgbd depth (default, raw) | depth_bfx (filled); nuscenes lidar")
    index: str | None = _opt(None, "folder or URL of Parquet index partitions (with --source index)")
    limit: int | None = _opt(None, "lift only the first N images in key order (for trials)")
    plan_in_memory_mb: float = _opt(64.0, "COCO/Objects365/OpenImages/Omni3D annotations larger than this are "
                                    "first converted, streaming, into a Parquet index in OUT/_index and planned "
                                    "from it (workers read the records; the driver's memory stays flat); "
                                    "0 = always")
    max_pixels: int = _opt(12_000_000, "images larger than this are refused as 'image_too_large'")


@dataclass
class ModelSettings:
    """Which models estimate depth/intrinsics and masks."""

    depth_model: str = _opt("auto", "depth backend: 'sensor' (the dataset's depth), depth-anything-v2[-outdoor], "
                            "depth-pro, moge, or a local checkpoint folder (its config.json names the architecture); "
                            "'auto' = sensor when every input image has depth, else depth-anything-v2")
    depth_weights: str | None = _opt(None, "local weights of the depth model (folder or file); default: "
                                     "$LIFT3D_MODELS_DIR, then the Hugging Face cache (offline)")
    depth_input_size: int | None = _opt(None, "network input size in pixels (Depth Anything: short side, 518 as "
                                        "published; Depth Pro: square side); default: the backend's")
    segmenter: str = _opt("annotation", "masks of the objects: 'annotation' = the dataset's masks, depth-only box "
                          "segmentation for box-only objects; 'sam' = SAM for box-only objects (falls back to "
                          "depth-only box segmentation, once logged and flagged in stats.json, when SAM's package "
                          "or weights are missing); 'none' = ignore dataset masks, lift every object from its box",
                          choices=SEGMENTERS)
    segmenter_model: str | None = _opt(None, "SAM weights: base | large | huge (Hugging Face checkpoints) or a "
                                       "local checkpoint folder/file")
    device: str = _opt("cpu", "torch device for the models (cpu, cuda, cuda:1); no silent fallback")
    batch_size: int = _opt(4, "images per depth-model batch; batches hold images of the same network canvas")
    large_model: bool = _opt(False, "load ONE copy of each model per machine, shared by all worker processes "
                             "(Beam large_model), instead of one per worker process: for big models on one GPU")


@dataclass
class OutputSettings:
    """Where and how shards are written."""

    out: str | None = _opt(None, "output folder or URL (s3://, gs://, az://, hdfs://; lift3d[cloud]): the "
                           "repository goes to OUT/repository, QA to OUT/qa")
    samples_per_shard: int = _opt(1000, "images per unit of work = per shard (also the resume granularity)")
    shard_target_mb: float | None = _opt(None, "also cut a shard when its images reach this many MB "
                                         "(estimated from the input files)")
    write_depth: bool = _opt(False, "store the depth map used as KEY.depth.png (16-bit millimetres)")
    overwrite: bool = _opt(False, "discard a previous run in OUT made with a different configuration")


@dataclass
class RunnerSettings:
    """Execution: the local runner by default; `--runner dask` for a Dask cluster; other
    runners (DataflowRunner, FlinkRunner, SparkRunner, PortableRunner) take Beam's own options."""

    workers: int | None = _opt(None, "worker processes of the local runner (default: all cores); "
                               "same as --direct_num_workers. Also the processes that build the Parquet "
                               "index of a large input (default: 2, ~360 MB each)")
    dask_address: str | None = _opt(None, "with --runner dask: address of the dask.distributed scheduler "
                                    "(tcp://HOST:8786); default: a new local cluster on this machine")
    progress: bool = _opt(True, "show images done/total, images/s and ETA on stderr (local runner only)")


@dataclass
class QASettings:
    """QA generation from a repository."""

    repository: str | None = _opt(None, "3D repository folder to read (lift3d qa); lift3d run uses OUT/repository")
    qa_out: str | None = _opt(None, "QA output folder (default: OUT/qa)")
    rephrase: bool = _opt(False, "rephrase questions with an LLM (OpenAI-compatible endpoint)")
    benchmark: int | None = _opt(None, "also build a held-out QA benchmark of N questions (QA_OUT/benchmark.jsonl, "
                                 "graded by `lift3d score`) from the held-out images, whose QA is left out of the "
                                 "training shards")
    heldout_fraction: float | None = _opt(None, "fraction of images held out for the benchmark, chosen from the "
                                          "image key and the QA seed (default: 0.01 with --benchmark, else 0)")
    style: str | None = _opt(None, "wording of the QA text: 'lift3d' (default) or 'n3d', N3D-VLM's (its prompts, "
                             "bbox_i=Bbox(...) lines at its precision, <think> traces with centres in x left, y up, "
                             "z forward; what `lift3d export --format n3d-vlm` needs); same as qa_config's style",
                             choices=("lift3d", "n3d"))


@dataclass
class LLMSettings:
    """The OpenAI-compatible endpoint used by --rephrase."""

    llm_base_url: str | None = _opt(None, "base URL of the OpenAI-compatible server, e.g. http://localhost:8000/v1")
    llm_model: str | None = _opt(None, "model name served at --llm-base-url")


GROUPS: dict[str, type] = {
    "input": InputSettings, "models": ModelSettings, "output": OutputSettings,
    "runner": RunnerSettings, "qa": QASettings, "llm": LLMSettings,
}
#: Setting groups of `lift3d lift` and `lift3d qa` (here, not in the pipeline modules, so that
#: the command modules add their flags without importing apache_beam: `lift3d --help` stays
#: fast and free of Beam's import-time warnings).
LIFT_GROUPS = ["input", "models", "output", "runner"]
QA_GROUPS = ["qa", "llm", "runner"]
#: Free-form sections of the YAML file, handed to the library's own config classes.
FREE_SECTIONS = ("lift", "qa_config", "rephrase_config", "beam")


@dataclass
class Settings:
    """All settings of one command: the groups, the free sections and the Beam flags."""

    input: InputSettings = field(default_factory=InputSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    qa: QASettings = field(default_factory=QASettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    lift: dict = field(default_factory=dict)
    qa_config: dict = field(default_factory=dict)
    rephrase_config: dict = field(default_factory=dict)
    beam_args: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, groups: list[str]) -> None:
    """Add `--config` and the flags of the named setting groups to `parser`.

    Flags default to argparse.SUPPRESS so that a flag left out does not override the YAML
    file; the help text states the real default.
    """
    parser.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                        help="YAML file with settings grouped as input/models/output/runner/qa/llm/lift/"
                        "qa_config/beam; flags given on the command line win")
    for g in groups:
        cls = GROUPS[g]
        ag = parser.add_argument_group(g, cls.__doc__)
        for f in fields(cls):
            md = f.metadata
            default_txt = f" (default: {f.default})" if f.default is not None else ""
            if f.type in (bool, "bool"):
                ag.add_argument(_flag(f.name), dest=f"{g}.{f.name}", action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=md["help"] + default_txt)
                continue
            typ = {"int": int, "int | None": int, "float | None": float, "float": float}.get(str(f.type), str)
            ag.add_argument(_flag(f.name), dest=f"{g}.{f.name}", type=typ, default=argparse.SUPPRESS,
                            choices=md.get("choices"), metavar=f.name.upper() if not md.get("choices") else None,
                            help=md["help"] + default_txt)


def load_yaml(path: str | Path) -> dict:
    """The YAML config as a dict; ValueError with a one-line reason when unusable."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold a mapping of sections")
    return data


def _beam_args_from_yaml(section: Any) -> list[str]:
    if not isinstance(section, dict):
        raise ValueError("config section 'beam' must be a mapping of pipeline options")
    out = []
    for k, v in section.items():
        if isinstance(v, bool):
            if v:
                out.append(f"--{k}")
        elif isinstance(v, list):
            out += [f"--{k}={x}" for x in v]
        else:
            out.append(f"--{k}={v}")
    return out


def resolve(args: argparse.Namespace, extra: list[str]) -> Settings:
    """Merge defaults, the YAML file (`args.config`) and the flags into a Settings.

    extra: flags lift3d does not know; they must be Beam pipeline options (checked by
    `check_beam_args`). YAML `beam` options come first, so command-line ones win.
    Raises ValueError with a one-line message for unknown sections or keys.
    """
    s = Settings()
    cfg = load_yaml(args.config) if getattr(args, "config", None) else {}
    for section, value in cfg.items():
        if section in GROUPS:
            if not isinstance(value, dict):
                raise ValueError(f"config section {section!r} must be a mapping")
            obj = getattr(s, section)
            names = {f.name for f in fields(obj)}
            for k, v in value.items():
                k = k.replace("-", "_")
                if k not in names:
                    raise ValueError(f"unknown key {k!r} in config section {section!r} "
                                     f"(known: {', '.join(sorted(names))})")
                setattr(obj, k, v)
        elif section == "beam":
            s.beam_args = _beam_args_from_yaml(value)
        elif section in FREE_SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"config section {section!r} must be a mapping")
            setattr(s, section, dict(value))
        else:
            raise ValueError(f"unknown config section {section!r} (known: "
                             f"{', '.join(list(GROUPS) + list(FREE_SECTIONS))})")
    for dest, v in vars(args).items():
        if "." in dest:
            g, name = dest.split(".", 1)
            setattr(getattr(s, g), name, v)
    s.beam_args = s.beam_args + list(extra)
    check_beam_args(s.beam_args)
    if s.qa.style:  # the flag is the qa_config section's `style`, so it enters the run identity
        s.qa_config = {**s.qa_config, "style": s.qa.style}
    check_settings(s)
    runner_args(s)  # --runner dask / --dask-address mistakes fail here, before any work
    return s


#: (group, field, least value, flag) of the numeric settings; None values are "not set".
_RANGES = (("input", "limit", 1, "--limit"), ("input", "max_pixels", 1, "--max-pixels"),
           ("input", "plan_in_memory_mb", 0, "--plan-in-memory-mb"),
           ("models", "depth_input_size", 14, "--depth-input-size"), ("models", "batch_size", 1, "--batch-size"),
           ("output", "samples_per_shard", 1, "--samples-per-shard"),
           ("output", "shard_target_mb", 1e-9, "--shard-target-mb"), ("runner", "workers", 1, "--workers"))
_INTEGERS = {"limit", "max_pixels", "depth_input_size", "batch_size", "samples_per_shard", "workers"}


def check_settings(s: Settings) -> None:
    """ValueError (one line) for a setting out of its range or of the wrong type, on the
    driver before any output is created: a negative --limit used to lift fewer images
    silently, --direct_num_workers -1 ended in an IndexError inside Beam, a depth input size
    of 0 was accepted, and --device cuda without a GPU failed inside a worker."""
    for group, name, least, flag in _RANGES:
        v = getattr(getattr(s, group), name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (name in _INTEGERS and not isinstance(v, int)):
            raise ValueError(f"{flag} must be {'an integer' if name in _INTEGERS else 'a number'}, got {v!r}")
        if v < least:
            raise ValueError(f"{flag} must be >= {least:g}, got {v!r}")
    for i, a in enumerate(s.beam_args):
        name, eq, value = a.partition("=")
        if not eq and i + 1 < len(s.beam_args):
            value = s.beam_args[i + 1]
        if name == "--direct_num_workers" and value.lstrip("-").isdigit() and int(value) < 0:
            raise ValueError(f"--direct_num_workers must be >= 0 (0 = all cores), got {value}")
    dev = str(s.models.device or "cpu").lower()
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", dev):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or mps, got {s.models.device!r}")
    if dev.startswith("cuda") and s.models.depth_model != "sensor":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        k = int(dev.split(":")[1]) if ":" in dev else 0
        if k >= n:
            raise ValueError(f"--device {s.models.device}: {'no CUDA GPU is visible' if n == 0 else f'only {n} CUDA GPU(s)'} "
                             "on this machine (torch.cuda); use --device cpu")


def _all_option_classes():
    from apache_beam.options.pipeline_options import PipelineOptions

    seen, stack = [], [PipelineOptions]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.append(sub)
                stack.append(sub)
    return seen


def check_beam_args(beam_args: list[str]) -> None:
    """Raise ValueError naming the first flag that is neither lift3d's nor a Beam option."""
    if not beam_args:
        return
    p = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for cls in _all_option_classes():
        try:
            cls._add_argparse_args(p)
        except argparse.ArgumentError:
            continue
    try:
        _, rest = p.parse_known_args(beam_args)
    except SystemExit as e:  # argparse reports a bad value of a known Beam option this way
        raise ValueError(f"bad Beam pipeline option in: {' '.join(beam_args)}") from e
    flags = [a for a in rest if a.startswith("-")]
    if flags:
        raise ValueError(f"unknown option {flags[0].split('=')[0]} (not a lift3d option nor a Beam pipeline option)")


LOCAL_RUNNERS = {None, "DirectRunner", "direct", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


#: Below this many work items the local runner stays in one process: starting the
#: multi-process workers costs ~10-20 s per run on 2 cores, more than small runs take.
MULTIPROCESS_MIN_ITEMS = 200


def pipeline_options(s: Settings, n_items: int | None = None):
    """PipelineOptions for the run: the Beam flags, plus local-runner defaults.

    On the local runner, unless the user chose otherwise: `--direct_num_workers` = --workers
    or all cores and `--direct_running_mode multi_processing` (every stage split across
    that many worker processes) — or `in_memory` when one worker is asked for or the run
    has fewer than MULTIPROCESS_MIN_ITEMS items (n_items) and --workers was not given.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    args = runner_args(s)
    opts = PipelineOptions(args)
    if is_local(opts):
        names = {a.split("=")[0] for a in args}
        workers = s.runner.workers or os.cpu_count() or 1
        small = n_items is not None and n_items < MULTIPROCESS_MIN_ITEMS and not s.runner.workers
        if "--direct_num_workers" not in names:
            args.append(f"--direct_num_workers={1 if small and '--direct_running_mode' not in names else workers}")
        if "--direct_running_mode" not in names:
            args.append("--direct_running_mode=" + ("multi_processing" if workers > 1 and not small else "in_memory"))
        opts = PipelineOptions(args)
    opts.view_as(StandardOptions)
    return opts


#: Short names of runners Beam does not know by a short name (`--runner dask`).
RUNNER_ALIASES = {"dask": "apache_beam.runners.dask.dask_runner.DaskRunner",
                  "daskrunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


def runner_args(s: Settings) -> list[str]:
    """The Beam flags with `--runner dask` (any case, or DaskRunner) replaced by the Dask
    runner's module path and `--dask-address` given as Beam's `--dask_client_address`.
    ValueError (one line) when the Dask runner is asked for and dask.distributed is missing,
    or --dask-address is given without it."""
    args, dask = [], False
    it = iter(s.beam_args)
    for a in it:
        name, eq, value = a.partition("=")
        if name == "--runner":
            if not eq:
                value = next(it, "")
            target = RUNNER_ALIASES.get(value.lower())
            dask = dask or target is not None or value.endswith(".DaskRunner")
            args.append(f"--runner={target or value}")
        else:
            args.append(a)
    if s.runner.dask_address and not dask:
        raise ValueError("--dask-address needs --runner dask")
    if dask:
        try:
            import dask.distributed  # noqa: F401
        except ImportError as e:
            raise ValueError("--runner dask needs dask.distributed: pip install 'lift3d[dask]'") from e
        if s.runner.dask_address:
            args.append(f"--dask_client_address={s.runner.dask_address}")
    return args


def is_local(opts) -> bool:
    """True when the options select the local (direct) runner."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = opts.view_as(StandardOptions).runner
    return runner in LOCAL_RUNNERS or (isinstance(runner, str) and runner.lower() in ("direct", "directrunner"))


def identity_dict(s: Settings, groups: list[str]) -> dict:
    """The settings that change the output (for the run identity and the manifest config)."""
    d = {g: dataclasses.asdict(getattr(s, g)) for g in groups}
    for g in d.values():
        for k in ("out", "overwrite", "workers", "progress", "qa_out", "repository", "dask_address"):
            g.pop(k, None)
    return d


#: errno values of OSErrors that the user fixes (space, permissions, paths, limits), not bugs.
USER_ERRNOS = frozenset(getattr(errno, n) for n in (
    "ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR", "EISDIR", "EEXIST",
    "ENAMETOOLONG", "EMFILE", "ENFILE", "ELOOP", "EIO", "ENXIO", "ESTALE") if hasattr(errno, n))

#: "OSError: [Errno 28] No space left on device" as Beam writes a worker's exception into the
#: message of the RuntimeError it re-raises (in memory: the first line; multi-process: the
#: worker's traceback text).
_WRAPPED_OSERROR = re.compile(r"\b(?:OSError|IOError|[A-Za-z]*Error): \[Errno (\d+)\] ([^\n\[]*)")


#: lifting.storage.StoreError as a worker's traceback text.
_WRAPPED_STORE_ERROR = re.compile(r"\bStoreError: ([^\n]*)")


def os_error_line(exc: BaseException) -> str | None:
    """One line for an environment OSError (disk full, permission denied, read-only file
    system, ...) raised here or on a Beam worker, or None when `exc` is not one.

    Looks at `exc`, its __cause__/__context__ chain (Beam's in-memory runner chains the
    worker's OSError) and the text of a RuntimeError (the multi-process runner only passes
    the worker's traceback text). Only errno values in USER_ERRNOS count.
    """
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "StoreError":  # lifting.storage: already one line saying what to fix
            return str(e)
        if isinstance(e, OSError) and e.errno in USER_ERRNOS:
            return _os_error_text(e.errno, e.strerror or os.strerror(e.errno), e.filename)
        e = e.__cause__ or e.__context__
    if isinstance(exc, RuntimeError):
        m = _WRAPPED_STORE_ERROR.search(str(exc))
        if m:
            return m.group(1).strip()
        m = _WRAPPED_OSERROR.search(str(exc))
        if m and int(m.group(1)) in USER_ERRNOS:
            return _os_error_text(int(m.group(1)), m.group(2).strip(), None)
    return None


def _os_error_text(code: int, text: str, filename) -> str:
    name = errno.errorcode.get(code, str(code))
    where = f": {filename}" if filename else ""
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        hint = "free space and run the same command again: finished shards are kept and the run resumes"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the output folder writable (or choose another --out) and run the command again"
    else:
        hint = "fix the path or the system limit and run the command again"
    return f"{text}{where} ({name}); {hint}"


def repository_errors():
    """Context manager turning lifting.repository.RepositoryError (an unsafe or unreadable
    shard: `eval`, `viz`, `stats` read repositories) into one pipelines.cli.UserError line."""
    import contextlib

    @contextlib.contextmanager
    def _cm():
        from lifting.repository import RepositoryError
        from pipelines.cli import UserError

        try:
            yield
        except RepositoryError as e:
            raise UserError(f"cannot read the repository: {e}") from e

    return _cm()


def mirrored(path: str | None) -> str | None:
    """`path` itself, or for a URL (s3://, gs://, ...) its local mirror (lifting.storage.mirror:
    fetched once into the cache folder, refreshed when a file's size changed); a missing
    folder is left to the caller's own message, a store failure is one UserError line."""
    from lifting import storage
    from pipelines.cli import UserError

    if path is None or not storage.is_url(path):
        return path
    try:
        return storage.mirror(path)
    except FileNotFoundError:
        return path
    except storage.StoreError as e:
        raise UserError(str(e)) from e


def repository_paths(repository: str, qa: str | None = None):
    """The repository's (and QA shards') paths for `eval`, `viz` and `stats`, with logging to
    stderr set up; one-line UserError when no shard is found or the QA folder is missing.
    A repository or QA folder given as a URL is read from its local mirror (`mirrored`)."""
    import logging
    import sys

    from lifting.viz.reader import resolve
    from pipelines.cli import UserError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    repository, qa = mirrored(repository), mirrored(qa)
    paths = resolve(repository, qa)
    if paths is None:
        raise UserError(f"no repository shards (shard-*.tar) found in {repository} or {repository}/repository")
    if qa and not Path(qa).is_dir():
        raise UserError(f"QA folder not found: {qa}")
    return paths


def user_errors():
    """Context manager turning the pipelines' user-facing errors into pipelines.cli.UserError.

    Covers bad settings (ValueError from this module, PlanError, OutputConflict), source
    configuration errors (lifting.sources.SourceConfigError), missing files, and OSErrors of
    the environment (disk full, permission denied, read-only file system: see
    `os_error_line`), also when a Beam worker raised them and the runner re-raised them as
    RuntimeError("OSError: ..."). Other exceptions (bugs) keep their traceback.
    """
    import contextlib

    @contextlib.contextmanager
    def _cm():
        from pipelines.cli import UserError

        user_types: tuple = (ValueError, FileNotFoundError, NotADirectoryError)
        try:
            from lifting.sources import SourceConfigError

            user_types += (SourceConfigError,)
        except ImportError:
            pass
        try:
            yield
        except UserError:
            raise
        except user_types as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(msg) from e
        except (OSError, RuntimeError) as e:
            line = os_error_line(e)
            if line is None:
                raise
            raise UserError(line) from e

    return _cm()
