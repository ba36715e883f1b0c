"""Category names normalised for downstream text, with the dataset's own name kept.

Datasets name classes for their own tools: COCO writes "dining table", Objects365
"Sneakers", "Cabinet/shelf" or the misspelt "Moniter/TV", OpenImages a MID ("/m/01g317")
with a display name ("Person") in a separate CSV. Prompts, QA text and Bbox strings want
one plain English noun phrase per class, so every source passes its names through
`normalize_category`; `Object2D.category_raw` keeps the original (the MID for OpenImages).

Rules, in order: NFKC unicode, "_" -> space, first of "/"-separated alternatives
("Cabinet/shelf" -> "cabinet"), a trailing parenthesised qualifier dropped
("Ball (Object)" -> "ball"), whitespace collapsed, lower case, then a small table of
known dataset typos and awkward names (`FIXES`). Plurals are kept ("sneakers"): they
are how the datasets name things like shoes and glasses, and singularising is lossy.
"""
from __future__ import annotations

import re
import unicodedata

#: Dataset typos and awkward names, applied after the generic rules (keys are lower case).
FIXES: dict[str, str] = {
    # Objects365
    "moniter": "monitor",
    "trash bin can": "trash can",
    "other shoes": "shoes",
    "street lights": "street light",
    "wild bird": "bird",
    "hotair ballon": "hot air balloon",
    "tong": "tongs",
    "formula 1": "race car",
    "extention cord": "extension cord",
    # OpenImages display names are already plain English
}

_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_SPACE = re.compile(r"\s+")


def normalize_category(name: str) -> str:
    """Plain lower-case English name of a dataset class (see module docstring); "" stays ""."""
    s = unicodedata.normalize("NFKC", str(name)).replace("_", " ").replace("\n", " ")
    # control, format (zero-width), surrogate and private-use characters are invisible in a
    # question: a name made only of them normalises to "" (refused as category_name_invalid)
    s = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in s)
    if "/" in s and not s.startswith("/m/"):
        first = s.split("/")[0].strip()
        s = first or s
    s = _PAREN.sub("", s) or s
    s = _SPACE.sub(" ", s).strip().lower()
    return FIXES.get(s, s)


class CategoryMap:
    """Dataset category id -> (normalised name, raw name), built from a small category list.

    Categories are tiny (COCO 80, Objects365 365, OpenImages ~600, LVIS 1203), so this
    lives in memory. Ids may be ints (COCO) or strings (OpenImages MIDs).
    """

    def __init__(self, raw_names: dict):
        self.raw: dict = dict(raw_names)
        self.names: dict = {k: normalize_category(v) for k, v in self.raw.items()}

    def __contains__(self, cid) -> bool:
        return cid in self.raw

    def __len__(self) -> int:
        return len(self.raw)

    def lookup(self, cid) -> tuple[str, str] | None:
        """(normalised, raw) name of category id `cid`, or None when unknown."""
        raw = self.raw.get(cid)
        if raw is None:
            return None
        return self.names[cid], raw
