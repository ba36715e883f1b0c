"""`lift3d priors`: typical metric sizes of object categories from an LLM, as a priors file.

Prints one JSON summary on stdout (logs go to stderr). Exit code 0 when every category got
a valid prior, 1 when some did not (the file still holds the valid ones), 2 for a user error.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = "ask an LLM for the typical metric size of each category and write a size-priors file"
DESCRIPTION = (
    "For each category of --categories (text: one per line; JSON: a list of names or COCO-style "
    "{\"categories\": [{\"name\": ...}]}), ask the OpenAI-compatible endpoint for typical (w, h, l) in metres "
    "with a min/max range, validate (positive, 0.01-50 m, min <= typical <= max), and write --out in the format "
    "lifting/priors.py reads as an extra priors file. Answers are cached (--llm-cache, default next to --out), "
    "so a re-run asks only for categories that failed or are new. The API key is read from the environment "
    "variable named by --llm-api-key-env and is never logged or written.")

log = logging.getLogger("lift3d.priors")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from lifting.llm.config import LLMConfig, add_llm_arguments

    p.add_argument("--categories", required=True, help="category list (.txt one per line, or .json)")
    p.add_argument("--out", required=True, help="priors JSON file to write")
    p.add_argument("--merge", action="store_true",
                   help="keep the categories already in --out that this run does not (re)write")
    p.add_argument("--stats", help="also write the summary JSON (requests, retries, cache, tokens) to this file")
    add_llm_arguments(p, LLMConfig(temperature=0.0, concurrency=32, max_tokens=256))


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.cli import UserError
    from lifting.llm.config import LLMConfig, config_from_args
    from lifting.llm.size_priors import build_priors, read_categories, write_priors

    if not args.llm_model:
        raise UserError("--llm-model is required")
    cats_path = Path(args.categories)
    if not cats_path.is_file():
        raise UserError(f"--categories: no such file: {cats_path}")
    try:
        categories = read_categories(cats_path)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--categories: cannot read {cats_path}: {e}") from None
    if not categories:
        raise UserError(f"--categories: no category names in {cats_path}")
    out = Path(args.out)
    cache = args.llm_cache or str(out.with_name(out.name + ".llm_cache.sqlite"))
    try:
        config = config_from_args(args, LLMConfig, cache_path=cache)
    except ValueError as e:
        raise UserError(str(e)) from None

    existing: dict = {}
    if args.merge and out.is_file():
        try:
            doc = json.loads(out.read_text())
            existing = dict(doc.get("categories") or {})
        except (ValueError, AttributeError) as e:
            raise UserError(f"--merge: cannot read {out}: {e}") from None

    res = build_priors(categories, config)
    doc = res.document()
    if existing:
        doc["categories"] = dict(sorted({**existing, **doc["categories"]}.items()))
    write_priors(doc, out)
    summary = {"out": str(out), "cache": cache, **res.stats, "rejected_categories": res.rejected}
    text = json.dumps(summary, sort_keys=False)
    if args.stats:
        Path(args.stats).write_text(text + "\n")
    print(text)
    for name, reason in sorted(res.rejected.items()):
        log.warning("no prior for %r: %s", name, reason)
    return 0 if not res.rejected else 1
