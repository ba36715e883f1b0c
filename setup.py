"""lift3d: lift 2D-annotated images into metric 3D boxes and 3D-grounded QA shards."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# torch is listed without a version: an installed torch (CPU or CUDA) is kept as it is.
# scripts/setup.sh installs torch==2.13.0 first when none is present.
INSTALL_REQUIRES = [
    "numpy>=1.26",
    "scipy>=1.11",
    # compiled per-object kernels of the lifting core (pixels, cloud, fit): numpy call
    # overhead, not arithmetic, dominated the ~1k-pixel objects
    "numba>=0.60",
    "pillow>=10.0",
    "torch",
    "transformers>=4.49,<5",
    "safetensors>=0.4",
    "apache-beam>=2.60",
    "open3d-cpu>=0.18; sys_platform == 'linux' and platform_machine == 'x86_64'",
    "open3d>=0.18; sys_platform != 'linux' or platform_machine != 'x86_64'",
    "pycocotools>=2.0.7",
    "pyarrow>=14",
    "webdataset>=0.2.90",
    "jinja2>=3.1",
    "pyyaml>=6",
    "jsonschema>=4.20",
    "ijson>=3.2",  # streaming JSON: multi-GB annotation files are never loaded whole
    "fastjsonschema>=2.19",  # record validation at the writer (15x faster than jsonschema)
    "matplotlib>=3.8",
    # one file-system layer for every input and output (lifting/storage.py): local paths,
    # and s3:// gs:// az:// hdfs:// through the protocol's package (extra [cloud])
    "fsspec>=2023.1",
]

EXTRAS = {
    "llm": ["openai>=1.40", "aiohttp>=3.9"],
    # The official segment-anything package imports torchvision at import time.
    "sam-official": ["segment-anything>=1.0"],
    # MoGe-2 (official code) needs torchvision too.
    "moge": ["dlr-moge"],
    "rerun": ["rerun-sdk>=0.18"],
    # trainers' own loaders, used by the export tests (Hugging Face datasets, wids streaming)
    # and orjson, which `lift3d export` uses when present (its JSON decoding is ~4x json's)
    "trainers": ["datasets>=3", "wids>=0.1", "orjson>=3.9"],
    # object stores for --images/--annotations/--index/--out URLs (fsspec implementations)
    "cloud": ["s3fs>=2023.1", "gcsfs>=2023.1", "adlfs>=2023.1"],
    # `--runner dask`: Beam's DaskRunner on a dask.distributed cluster
    "dask": ["dask[distributed]>=2023.1"],
    # the tests run S3 against moto's stand-alone server on 127.0.0.1, the whole pipeline on a
    # local dask.distributed cluster, and the export through the trainers' loaders
    "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-benchmark>=4", "openai>=1.40", "aiohttp>=3.9",
            "s3fs>=2023.1", "moto[s3,server]>=5", "dask[distributed]>=2023.1",
            "datasets>=3", "wids>=0.1", "orjson>=3.9"],
}

setup(
    name="lift3d",
    version="0.1.0",
    description="Open data engine lifting 2D-annotated images into metric 3D boxes and spatial QA",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lifting", "lifting.*", "pipelines", "pipelines.*"]),
    # qa_templates/ and schemas/ live at the repository root (DESIGN.md); they are shipped
    # inside the installed package as data so that lifting.resources finds them anywhere.
    package_data={"lifting": ["data/*"]},
    data_files=[
        ("share/lift3d/qa_templates", sorted(str(p.relative_to(HERE)) for p in (HERE / "qa_templates").glob("*") if p.is_file())),
        # text styles are overlay folders of qa_templates/ (n3d/: N3D-VLM's wording)
        *((f"share/lift3d/qa_templates/{d.name}", sorted(str(p.relative_to(HERE)) for p in d.glob("*.j2")))
          for d in sorted((HERE / "qa_templates").iterdir()) if d.is_dir()),
        ("share/lift3d/schemas", sorted(str(p.relative_to(HERE)) for p in (HERE / "schemas").glob("*.json"))),
    ],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["lift3d=pipelines.cli:entry"]},
)
