"""Where the repository-level resource folders (qa_templates/, schemas/) are found.

In a checkout or editable install they sit next to the package (DESIGN.md layout); a
regular install ships them under `<prefix>/share/lift3d/` (setup.py data_files).
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path


def resource_dir(name: str) -> Path:
    """Path of `qa_templates` or `schemas`; raises FileNotFoundError naming where it looked."""
    candidates = [Path(__file__).resolve().parents[1] / name, Path(sys.prefix) / "share" / "lift3d" / name]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"resource folder {name!r} not found in: " + ", ".join(map(str, candidates)))


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """The JSON Schema `schemas/{name}.schema.json` (e.g. name='image_record')."""
    return json.loads((resource_dir("schemas") / f"{name}.schema.json").read_text())


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(record: dict, name: str) -> None:
    """Raise jsonschema.ValidationError when `record` does not match schema `name`."""
    _validator(name).validate(record)


def validation_error(record: dict, name: str) -> str | None:
    """The first validation error of `record` against schema `name` as one line, or None."""
    err = next(iter(_validator(name).iter_errors(record)), None)
    if err is None:
        return None
    path = "/".join(str(p) for p in err.absolute_path)
    return f"{path or '<root>'}: {err.message}"[:300]
