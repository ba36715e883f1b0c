"""Category size priors: typical metric extents of object categories and their plausible range.

The lifting core completes the hidden extent of an object (sensor and monocular depth see only
its front surface) from these priors, and rejects implausible sizes against them.

Convention:
    `dims`, `min` and `max` are (w, h, l) in metres of the object in its usual resting pose:
    h is the extent along gravity, w >= l the two horizontal extents (w the longer). A 3D box
    (lifting/boxes.py: w along the box x axis, l along its z axis) is compared after sorting its
    horizontal extents, see `sorted_dims`.

Data: the packaged table lifting/data/size_priors.json (COCO, Objects365 v2, SUN RGB-D / Omni3D and
the synthetic scene categories, with the official spellings as aliases) plus optional extra files
in the LLM priors format, which override or extend it.

Lookup (`SizePriors.get`), first hit wins: the normalised name or an alias -> a singular/plural
variant of its last word -> the head of an "X of Y" phrase -> "toy" for a name that starts with a
scale-changing modifier ("toy car", "miniature train") -> the longest known suffix, i.e. the head
noun ("office chair" -> "chair") -> the generic fallback (source "generic").

The name matching is hand-written: it is a few string rules over a closed vocabulary, and a full
inflection library would add a dependency for the plural rule alone.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

#: The packaged priors table.
DEFAULT_PATH = Path(__file__).parent / "data" / "size_priors.json"
SCHEMA_VERSION = 1
BUILTIN_SOURCE = "builtin"
GENERIC = "generic"

#: How a name was matched, from most to least specific.
MATCH_KINDS = ("exact", "alias", "inflection", "head_noun", GENERIC)

Triple = tuple[float, float, float]

#: Where the few depth returns of a solid object (a category whose entry gives no "surface":
#: a car, a cabinet) lie in its box: their near part is its near face less its rounded
#: corners, 0.85 of the half-depth in front of the centre (medians measured on KITTI and
#: nuScenes LiDAR: cars 0.86, trucks 0.90).
SOLID_SURFACE = 0.85

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "feet": "foot", "teeth": "tooth", "knives": "knife", "leaves": "leaf",
    "shelves": "shelf", "loaves": "loaf", "wolves": "wolf", "halves": "half", "oxen": "ox",
}
_IRREGULAR_SINGULARS = {v: k for k, v in _IRREGULAR_PLURALS.items()}
_NON_ALNUM = re.compile(r"[^a-z0-9 ]+")
#: Leading words that make an object much smaller than its head noun: resolved to "toy".
_SCALE_MODIFIERS = ("toy", "toys", "miniature")


def normalise_category(name: str) -> str:
    """Canonical form of a category name: lower case, '_' and '/' to spaces, single spaces, trimmed.

    >>> normalise_category("  Cell_Phone ")
    'cell phone'
    >>> normalise_category("Cabinet/shelf")
    'cabinet shelf'
    """
    s = str(name).replace("_", " ").replace("/", " ").lower()
    return " ".join(s.split())


def sorted_dims(dims_whl: Sequence[float]) -> Triple:
    """(w, h, l) metres of a box -> the prior convention (max(w, l), h, min(w, l)) in metres."""
    w, h, l = (float(x) for x in dims_whl)
    return (max(w, l), h, min(w, l))


@dataclass(frozen=True)
class Prior:
    """The size prior of one category.

    dims: (3,) typical (w, h, l) metres, h along gravity, w >= l horizontal.
    min, max: (3,) per-axis plausible range in metres, same order.
    source: "builtin" (packaged table), "llm:<model>" or "file:<name>" (extra files), "generic".
    matched_name: the table entry used (its normalised name), or "generic".
    match: how the query reached it, one of MATCH_KINDS.
    surface: how far in front of the box's centre an object's nearest visible surface lies,
        as a fraction of the box's half-depth along the view (table field "surface"), for
        objects that are not solid boxes: near 0 for a person, whose annotated box spans the
        swing of arms and legs while depth sees the torso at its middle; None for a solid
        object, whose visible surface is its box's near face (see SOLID_SURFACE).
    """

    dims: Triple
    min: Triple
    max: Triple
    source: str
    matched_name: str
    match: str = "exact"
    surface: float | None = None

    @property
    def is_generic(self) -> bool:
        """True when no table entry matched and the generic fallback was returned."""
        return self.match == GENERIC

    def check(self, dims_whl: Sequence[float], slack: float = 1.0) -> str | None:
        """Whether box extents are plausible for this category.

        dims_whl: (3,) box (w, h, l) in metres (lifting/boxes.py order; w and l are sorted here).
        slack: >= 1, multiplicative tolerance: passes if min / slack <= d <= max * slack per axis.
        Returns None when plausible, else a reason code: "size_invalid" (non-finite or <= 0),
        "size_below_prior" or "size_above_prior".
        """
        try:
            d = sorted_dims(dims_whl)
        except (TypeError, ValueError):
            return "size_invalid"
        if not all(math.isfinite(x) and x > 0 for x in d):
            return "size_invalid"
        if any(x < lo / slack for x, lo in zip(d, self.min)):
            return "size_below_prior"
        if any(x > hi * slack for x, hi in zip(d, self.max)):
            return "size_above_prior"
        return None


def _parse_triple(raw: object) -> Triple | None:
    """A list of 3 finite positive numbers (metres) as a tuple, or None."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 3:
        return None
    try:
        t = tuple(float(x) for x in raw)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(x) and x > 0 for x in t):
        return None
    return t  # type: ignore[return-value]


def parse_entry(raw: object) -> tuple[Triple, Triple, Triple] | str:
    """One table entry {"dims", "min", "max"} (metres) -> (dims, min, max) or a reason code.

    Horizontal extents are sorted into the w >= l convention (LLM outputs do not always follow it).
    Reason codes: "prior_malformed" (missing or non-numeric fields), "prior_nonpositive" (a value
    <= 0 or not finite),
    "prior_inconsistent_range" (not min <= dims <= max on every axis).
    """
    if not isinstance(raw, dict) or not all(k in raw for k in ("dims", "min", "max")):
        return "prior_malformed"
    out = []
    for k in ("dims", "min", "max"):
        v = raw[k]
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            return "prior_malformed"
        t = _parse_triple(v)
        if t is None:
            try:
                [float(x) for x in v]
            except (TypeError, ValueError):
                return "prior_malformed"
            return "prior_nonpositive"
        out.append(sorted_dims(t))
    dims, lo, hi = out
    if not all(a <= b <= c for a, b, c in zip(lo, dims, hi)):
        return "prior_inconsistent_range"
    return dims, lo, hi


def _singular_plural_variants(word: str) -> list[str]:
    """Candidate singular and plural forms of one lower-case word, most likely first."""
    out: list[str] = []
    if word in _IRREGULAR_PLURALS:
        out.append(_IRREGULAR_PLURALS[word])
    if word in _IRREGULAR_SINGULARS:
        out.append(_IRREGULAR_SINGULARS[word])
    if len(word) > 3:
        if word.endswith("ies"):
            out.append(word[:-3] + "y")
        if word.endswith("ves"):
            out += [word[:-3] + "f", word[:-3] + "fe"]
        if word.endswith("es"):
            out.append(word[:-2])
        if word.endswith("s") and not word.endswith(("ss", "us", "is")):
            out.append(word[:-1])
    if not word.endswith("s") or word.endswith(("ss", "us")):
        out += [word + "s", word + "es"]
        if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
            out.append(word[:-1] + "ies")
    seen: list[str] = []
    for w in out:
        if w and w != word and w not in seen:
            seen.append(w)
    return seen


def _phrase_variants(phrase: str) -> list[str]:
    """`phrase` with its last word replaced by each singular/plural variant."""
    head, _, last = phrase.rpartition(" ")
    prefix = head + " " if head else ""
    return [prefix + w for w in _singular_plural_variants(last)]


@dataclass
class _Entry:
    dims: Triple
    min: Triple
    max: Triple
    source: str
    surface: float | None = None


def parse_surface(raw: object) -> float | None | str:
    """An entry's optional "surface" fraction (None when absent or the entry is not a dict:
    `parse_entry` refuses that one), or the reason code "prior_malformed" when it is not a
    number in [0, 1]."""
    v = raw.get("surface") if isinstance(raw, dict) else None
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0
    return float(v) if ok else "prior_malformed"


class SizePriors:
    """Category name -> `Prior`, from the packaged table plus optional extra files.

    Use `SizePriors.load()`. Lookups are cached per instance; instances pickle (the cache is
    rebuilt), so they can be shipped to Beam workers.
    """

    def __init__(self, entries: dict[str, _Entry], index: dict[str, str], generic: _Entry,
                 skipped: dict[str, str] | None = None):
        """entries: normalised name -> values; index: normalised name or alias -> entry name."""
        self._entries = entries
        self._index = index
        self._generic = generic
        #: Entries of extra files that were dropped: "<file>:<name>" -> reason code.
        self.skipped: dict[str, str] = dict(skipped or {})
        self._cached_resolve = functools.lru_cache(maxsize=65536)(self._resolve)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, extra_files: Iterable[str | Path] = ()) -> "SizePriors":
        """Read the priors table (default: the packaged one) and apply `extra_files` in order.

        Extra files use the LLM priors format {"schema_version": 1, "categories": {name: {"dims",
        "min", "max", "source"?, "aliases"?}}} (metres, (w, h, l)). An extra entry whose name is a
        table entry replaces its values (aliases kept); one whose name is only an alias of an entry
        gets its own entry for that exact name; any other name is added; "generic" replaces the
        fallback. Malformed entries of extra files are skipped and listed in `skipped` with a reason.
        Raises FileNotFoundError / ValueError for unreadable files or a wrong top-level structure,
        and ValueError for any bad entry of the main table.
        """
        path = Path(path) if path is not None else DEFAULT_PATH
        doc = _read_doc(path)
        entries: dict[str, _Entry] = {}
        index: dict[str, str] = {}
        for raw_name, raw in doc["categories"].items():
            name = normalise_category(raw_name)
            parsed = parse_entry(raw)
            surface = parse_surface(raw)
            if isinstance(parsed, str) or isinstance(surface, str):
                raise ValueError(f"{path}: category {raw_name!r}: {parsed if isinstance(parsed, str) else surface}")
            if name in entries:
                raise ValueError(f"{path}: duplicate category {raw_name!r}")
            entries[name] = _Entry(*parsed, source=str(raw.get("source", BUILTIN_SOURCE)), surface=surface)
        # Names first, then aliases, so that an alias never hides an entry's own name.
        for name in entries:
            index[name] = name
        for raw_name, raw in doc["categories"].items():
            name = normalise_category(raw_name)
            for alias in raw.get("aliases", []) or []:
                key = normalise_category(alias)
                if key and index.setdefault(key, name) != name:
                    log.debug("%s: alias %r of %r already names %r", path, alias, name, index[key])
        if "generic" in doc:
            g = parse_entry(doc["generic"])
            if isinstance(g, str):
                raise ValueError(f"{path}: generic: {g}")
            generic = _Entry(*g, source=GENERIC)
        else:
            generic = _Entry((0.5, 0.5, 0.4), (0.005, 0.0002, 0.0002), (400.0, 150.0, 100.0), GENERIC)

        skipped: dict[str, str] = {}
        for extra in extra_files:
            extra = Path(extra)
            edoc = _read_doc(extra)
            file_source = str(edoc.get("source", f"file:{extra.name}"))
            for raw_name, raw in edoc["categories"].items():
                name = normalise_category(raw_name)
                parsed = parse_entry(raw)
                surface = parse_surface(raw)
                if not name:
                    parsed = "prior_malformed"
                if not isinstance(parsed, str) and isinstance(surface, str):
                    parsed = surface
                if isinstance(parsed, str):
                    skipped[f"{extra.name}:{raw_name}"] = parsed
                    log.warning("%s: skipping prior %r: %s", extra, raw_name, parsed)
                    continue
                source = str(raw.get("source", file_source))
                if name == GENERIC:
                    generic = _Entry(*parsed, source=GENERIC)
                    continue
                entries[name] = _Entry(*parsed, source=source, surface=surface)
                index[name] = name
                aliases = raw.get("aliases")
                for alias in aliases if isinstance(aliases, list) else []:
                    key = normalise_category(alias)
                    if key and key not in entries:
                        index[key] = name
        return cls(entries, index, generic, skipped)

    # -- lookup -------------------------------------------------------------------------
    def get(self, category: str) -> Prior:
        """The prior of `category` (any spelling); the generic fallback when nothing matches."""
        return self._cached_resolve(normalise_category(category))

    def __contains__(self, category: object) -> bool:
        """True when `category` matches an entry by name or alias (no inflection or head noun)."""
        return isinstance(category, str) and normalise_category(category) in self._index

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Normalised names of all entries, sorted."""
        return sorted(self._entries)

    def aliases(self) -> dict[str, str]:
        """Every normalised lookup key (names and aliases) -> the entry name it resolves to."""
        return dict(self._index)

    @property
    def generic(self) -> Prior:
        """The fallback prior for unknown categories."""
        g = self._generic
        return Prior(g.dims, g.min, g.max, GENERIC, GENERIC, GENERIC)

    def _prior(self, name: str, match: str) -> Prior:
        e = self._entries[name]
        return Prior(e.dims, e.min, e.max, e.source, name, match, e.surface)

    def _lookup_exact(self, key: str) -> Prior | None:
        name = self._index.get(key)
        if name is None:
            return None
        return self._prior(name, "exact" if name == key else "alias")

    def _lookup_inflected(self, key: str) -> str | None:
        for cand in _phrase_variants(key):
            if cand in self._index:
                return self._index[cand]
        return None

    def _resolve(self, key: str) -> Prior:
        """Normalised name -> Prior, in the order given in the module docstring."""
        if not key:
            return self.generic
        hit = self._lookup_exact(key)
        if hit is not None:
            return hit
        name = self._lookup_inflected(key)
        if name is not None:
            return self._prior(name, "inflection")
        loose = " ".join(_NON_ALNUM.sub(" ", key.replace("-", " ")).split())
        if loose and loose != key:
            hit = self._resolve(loose)
            if not hit.is_generic:
                match = "alias" if hit.match == "exact" else hit.match
                return dataclasses.replace(hit, match=match)
        if " of " in key:
            head = key.split(" of ", 1)[0].strip()
            if head:
                hit = self._resolve(head)
                if not hit.is_generic:
                    return dataclasses.replace(hit, match="head_noun")
        words = key.split()
        if len(words) > 1 and words[0] in _SCALE_MODIFIERS and "toy" in self._index:
            return self._prior(self._index["toy"], "head_noun")
        for i in range(1, len(words)):
            suffix = " ".join(words[i:])
            name = self._index.get(suffix) or self._lookup_inflected(suffix)
            if name is not None:
                return self._prior(name, "head_noun")
        return self.generic

    # -- pickling (Beam ships DoFn state to workers) --------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_cached_resolve", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cached_resolve = functools.lru_cache(maxsize=65536)(self._resolve)


def _read_doc(path: Path) -> dict:
    """A priors JSON document with schema_version 1 and a "categories" object; ValueError otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("categories"), dict):
        raise ValueError(f"{path}: expected an object with a 'categories' object")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return doc


@functools.lru_cache(maxsize=1)
def default_priors() -> SizePriors:
    """The packaged table, loaded once per process."""
    return SizePriors.load()
