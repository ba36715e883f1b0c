"""Does a rephrased text say the same facts as its template? One reason code when not.

Checked on each text field (question, reasoning) separately, template vs rewrite:

- `fidelity_bbox_changed`: the multiset of ``Bbox(...)`` (parsed by
  `lifting.bbox_text.find_bboxes`, so spacing may differ, numbers and class may not).
- `fidelity_number_changed` / `fidelity_unit_changed`: the multiset of numbers outside
  boxes, each with its unit, compared by value in a base unit (1.5 m == 150 cm == 1.50
  metres; 1.5 m != 1.52 m; a number added or dropped is a change; a unit may be spelled
  out on a number that the template left bare only in a dimension the template uses, never
  dropped). Number words two..twenty count as numbers ("one" does not: mostly a pronoun).
- `fidelity_object_missing`: every object reference of the template (referring
  expressions the QA engine used, and Bbox classes) still present, word by word (any order,
  plural-tolerant), so "the left chair" may become "the chair on the left".
- `fidelity_object_added`: a category of the sample's vocabulary that the template field
  does not name appears in the rewrite.
- `fidelity_relation_changed`: for each pair of opposite spatial relations (left/right,
  above/below, in front/behind, closer/farther, bigger/smaller, taller/shorter,
  wider/narrower, longer/shorter), which side(s) the text uses must not change.
- `fidelity_negation_changed`: parity of negations (not, no, never, n't, ...).
- `fidelity_answer_changed`: the final yes/no of the reasoning, the answer's words where
  the template reasoning states them, and the answer the model echoes back, if it does.
- `fidelity_length_out_of_range`: rewrite implausibly longer or shorter than the template.

All checks are conservative: a paraphrase that flips the sentence around ("A is closer
than B" -> "B is farther than A") is rejected too; the template text is kept then.
Hand-written: no library checks fact preservation of templated spatial text.
"""
from __future__ import annotations

import collections
import functools
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from lifting.bbox_text import _BBOX_RE, find_bboxes

# -- numbers with units --------------------------------------------------------------------
_UNITS: dict[str, tuple[str, float]] = {}
for _names, _dim, _f in [
    (("m", "meter", "meters", "metre", "metres"), "length", 1.0),
    (("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "length", 0.01),
    (("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "length", 0.001),
    (("km", "kilometer", "kilometers", "kilometre", "kilometres"), "length", 1000.0),
    (("ft", "foot", "feet"), "length", 0.3048),
    (("inch", "inches"), "length", 0.0254),
    (("°", "deg", "degree", "degrees"), "angle", 1.0),
    (("rad", "radian", "radians"), "angle", 180.0 / math.pi),
    (("%", "percent"), "percent", 1.0),
    (("times", "x", "×"), "times", 1.0),
]:
    for _n in _names:
        _UNITS[_n] = (_dim, _f)

# A number, then optionally spaces and the word (or symbol) right after it; whether that word
# is a unit is decided by a dict lookup (faster than a regex alternation of every unit).
_NUM_RE = re.compile(r"(?<![\w.])(?P<num>-?\d+(?:\.\d+)?)(?P<sp>[ \t]*)(?P<word>[A-Za-z_]+|°|%|×)?")
_NUMBER_WORDS = {w: float(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split()) if w != "_"}


_TUPLE_UNIT_RE = re.compile(r"\(\s*(-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?)+)\s*\)[ \t]*([A-Za-z]+)")


def _spread_tuple_units(text: str) -> str:
    """"(0.1, 0.2, 1.8) m" -> "(0.1 m, 0.2 m, 1.8 m)", so both spellings compare equal."""
    def repl(m: re.Match) -> str:
        unit = m.group(2)
        if unit.lower() not in _UNITS:
            return m.group(0)
        return "(" + ", ".join(f"{n.strip()} {unit}" for n in m.group(1).split(",")) + ")"
    return _TUPLE_UNIT_RE.sub(repl, text)


def strip_bboxes(text: str) -> str:
    """`text` with every ``Bbox(...)`` replaced by a space."""
    return _BBOX_RE.sub(" ", text) if "Bbox(" in text else text


class Quantity(NamedTuple):
    """A number of a text: dim "" (no unit), "length" (value in metres), "angle" (degrees),
    "percent" or "times"; written: the number as printed, before unit conversion."""

    dim: str
    value: float
    written: float


def quantities(text: str) -> collections.Counter:
    """Counter of `Quantity` for the numbers of `text` outside boxes (see module docstring)."""
    plain = strip_bboxes(text)
    return _quantities(plain, _WORD_RE.findall(plain.lower()))


def _quantities(plain: str, toks: list[str]) -> collections.Counter:
    """quantities() of a Bbox-free text whose lower-case tokens are `toks`."""
    t = _spread_tuple_units(plain) if "(" in plain else plain
    out: collections.Counter = collections.Counter()
    for m in _NUM_RE.finditer(t):
        word, unit = m.group("word"), None
        if word is not None:
            key = word.lower()
            if key in _UNITS and not (key == "x" and m.group("sp")):  # "0.5 x 0.4" is a product sign
                unit = key
            elif not m.group("sp"):
                continue  # "3D", "2nd", "v2_": letters glued to the digits, not a quantity
        v = float(m.group("num"))
        if unit:
            dim, f = _UNITS[unit]
            out[Quantity(dim, round(v * f, 9), v)] += 1
        else:
            out[Quantity("", v, v)] += 1
    for w in toks:
        if w in _NUMBER_WORDS:
            out[Quantity("", _NUMBER_WORDS[w], _NUMBER_WORDS[w])] += 1
    return out


def compare_quantities(qt: collections.Counter, qr: collections.Counter) -> str | None:
    """None when the rewrite's numbers `qr` say the same as the template's `qt`, else
    `fidelity_number_changed` or `fidelity_unit_changed`.

    Same value in the same dimension matches (1.5 m == 150 cm). A number that is unitless
    in the template may gain a unit in the rewrite when the template uses that dimension
    elsewhere ("(0.6, 1.2) and (0.4, 2.0) m" -> "(0.6 m, 1.2 m) and ..."); a unit may not
    be dropped or changed.
    """
    t, r = qt.copy(), qr.copy()
    for q in list(t):
        k = (q.dim, q.value)
        for q2 in list(r):
            if (q2.dim, q2.value) == k and t[q] and r[q2]:
                n = min(t[q], r[q2])
                t[q] -= n
                r[q2] -= n
    t, r = +t, +r
    dims_t = {q.dim for q in qt if q.dim}
    for q in list(t):
        if q.dim:
            continue
        for q2 in list(r):
            if q2.dim in dims_t and q2.written == q.written and t[q] and r[q2]:
                n = min(t[q], r[q2])
                t[q] -= n
                r[q2] -= n
    t, r = +t, +r
    if not t and not r:
        return None
    written_t = collections.Counter(q.written for q in t.elements())
    written_r = collections.Counter(q.written for q in r.elements())
    return "fidelity_unit_changed" if written_t == written_r else "fidelity_number_changed"


# -- words -----------------------------------------------------------------------------
_WORD_RE = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an the of on in at to with and or is are was were be that this these those which who one ones from by "
    "its it their there here as for than then so do does".split())


def words(text: str) -> list[str]:
    """Lower-case alphanumeric tokens of `text` (Bbox contents excluded)."""
    return _WORD_RE.findall(strip_bboxes(text).lower())


def _variants(w: str) -> frozenset[str]:
    """A word and its singular candidates ("boxes" -> boxes, boxe, box)."""
    v = {w}
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        v.add(w[:-1])
        if w.endswith("es"):
            v.add(w[:-2])
    return frozenset(v)


def content_words(text: str) -> list[str]:
    """Tokens of `text` minus stopwords and numbers."""
    return [w for w in words(text) if w not in STOPWORDS and not w.isdigit()]


@functools.lru_cache(maxsize=65536)
def _ref_variants(ref: str) -> tuple[frozenset[str], ...]:
    return tuple(_variants(w) for w in content_words(ref))


def mentions(ref: str, word_set: frozenset[str] | set[str]) -> bool:
    """True when every content word of `ref` (plural-tolerant) is in `word_set`
    (a `TextFacts.word_set`)."""
    rv = _ref_variants(ref)
    return bool(rv) and all(not v.isdisjoint(word_set) for v in rv)


# -- relations, negation, polarity ---------------------------------------------------------
_RELATION_PAIRS = [
    ("left", {"left", "leftmost", "lefthand"}, "right", {"right", "rightmost", "righthand"}),
    ("above", {"above", "over", "atop", "higher", "highest", "top"},
     "below", {"below", "under", "beneath", "underneath", "lower", "lowest", "bottom"}),
    ("front", {"front", "ahead"}, "behind", {"behind", "back", "rear"}),
    ("closer", {"closer", "closest", "nearer", "nearest"},
     "farther", {"farther", "farthest", "further", "furthest"}),
    ("bigger", {"bigger", "biggest", "larger", "largest"}, "smaller", {"smaller", "smallest", "tinier"}),
    ("taller", {"taller", "tallest"}, "shorter_h", {"shorter", "shortest"}),
    ("wider", {"wider", "widest", "broader"}, "narrower", {"narrower", "narrowest", "thinner"}),
    ("longer", {"longer", "longest"}, "shorter_l", {"shorter", "shortest"}),
]
_NEGATIONS = frozenset("not no never neither nor none nothing nobody cannot".split())
_NEG_CONTRACTION = re.compile(r"\b\w+n[’']t\b", re.I)


def relation_signature(text: str) -> tuple:
    """For each opposite-relation pair: (uses side A, uses side B)."""
    return analyse(text).relations


def negation_parity(text: str) -> int:
    """0/1: parity of negation words and n't contractions in `text` (outside boxes)."""
    return analyse(text).negation


def final_polarity(text: str) -> str | None:
    """The last standalone "yes"/"no" of `text` (lower case), or None."""
    return analyse(text).polarity


def answer_polarity(answer_text: str, answer_value) -> str | None:
    """"yes"/"no" of a yes/no answer (bool value or text starting with yes/no), else None."""
    if isinstance(answer_value, bool):
        return "yes" if answer_value else "no"
    m = re.match(r"\s*(yes|no)\b", answer_text or "", re.I)
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class TextFacts:
    """The facts of one text that the checks compare (read-only; shared through a cache).

    bboxes: Counter of parsed BboxText; quantities: see `quantities`; word_set: tokens and
    their singular candidates; relations, negation, polarity: see the functions above.
    """

    bboxes: collections.Counter
    quantities: collections.Counter
    word_set: frozenset
    relations: tuple
    negation: int
    polarity: str | None


@functools.lru_cache(maxsize=65536)
def analyse(text: str) -> TextFacts:
    """TextFacts of `text`, computed once per distinct text (templates repeat a lot)."""
    plain = strip_bboxes(text)
    toks = _WORD_RE.findall(plain.lower())
    ws: set[str] = set()
    for w in set(toks):
        ws |= _variants(w)
    tokset = set(toks)
    rel = tuple((not a.isdisjoint(tokset), not b.isdisjoint(tokset)) for _, a, _, b in _RELATION_PAIRS)
    neg = (sum(1 for w in toks if w in _NEGATIONS) + (len(_NEG_CONTRACTION.findall(plain)) if "'" in plain or "’" in plain else 0)) % 2
    yn = [w for w in toks if w == "yes" or w == "no"]
    boxes = collections.Counter(find_bboxes(text)) if "Bbox(" in text else collections.Counter()
    return TextFacts(boxes, _quantities(plain, toks), frozenset(ws), rel, neg, yn[-1].lower() if yn else None)


# -- the check ----------------------------------------------------------------------------
@dataclass
class FieldContext:
    """What a field's check needs besides the two texts.

    refs: referring expressions / category names of the question's objects.
    vocabulary: category names of every object of the sample (to spot added objects).
    answer_text, answer_value: the template's final answer; check_answer: this field is
    the one that states it (the reasoning).
    """

    refs: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()
    answer_text: str = ""
    answer_value: object = None
    check_answer: bool = False
    max_length_ratio: float = 3.0


def check_field(template: str, rewrite: str, ctx: FieldContext) -> str | None:
    """Reason code when `rewrite` does not keep the facts of `template`, else None."""
    if not isinstance(rewrite, str) or not rewrite.strip():
        return "malformed_response"
    ft, fr = analyse(template), analyse(rewrite)
    if ft.bboxes != fr.bboxes:
        return "fidelity_bbox_changed"
    if ft.quantities != fr.quantities:
        reason = compare_quantities(ft.quantities, fr.quantities)
        if reason is not None:
            return reason
    wt, wr = ft.word_set, fr.word_set
    for ref in list(ctx.refs) + [b.category for b in ft.bboxes]:
        if mentions(ref, wt) and not mentions(ref, wr):
            return "fidelity_object_missing"
    for name in ctx.vocabulary:
        if mentions(name, wr) and not mentions(name, wt):
            return "fidelity_object_added"
    if ft.relations != fr.relations:
        return "fidelity_relation_changed"
    if ft.negation != fr.negation:
        return "fidelity_negation_changed"
    if ctx.check_answer:
        if ft.polarity is not None and fr.polarity != ft.polarity:
            return "fidelity_answer_changed"
        if ctx.answer_text and mentions(ctx.answer_text, wt) and not mentions(ctx.answer_text, wr):
            return "fidelity_answer_changed"
    lt, lr = len(template), len(rewrite)
    if lr > ctx.max_length_ratio * lt + 40 or lr < lt / ctx.max_length_ratio - 40:
        return "fidelity_length_out_of_range"
    return None


def check_echoed_answer(answer_text: str, answer_value, echoed) -> str | None:
    """`fidelity_answer_changed` when the model's echoed answer differs in meaning, else None."""
    if echoed is None:
        return None
    if not isinstance(echoed, (str, int, float, bool)):
        return "fidelity_answer_changed"
    e = str(echoed).lower() if isinstance(echoed, bool) else str(echoed)
    if _norm(e) == _norm(answer_text):
        return None
    fe, fa = analyse(e), analyse(answer_text)
    if compare_quantities(fa.quantities, fe.quantities) is not None or fe.bboxes != fa.bboxes:
        return "fidelity_answer_changed"
    pol = answer_polarity(answer_text, answer_value)
    if pol is not None and answer_polarity(e, None) != pol:
        return "fidelity_answer_changed"
    units = {u for u in _UNITS if u.isalpha()}
    needed = [w for w in content_words(answer_text) if w not in units and w not in ("yes", "no")]
    if needed and not all(not _variants(w).isdisjoint(fe.word_set) for w in needed):
        return "fidelity_answer_changed"
    return None


def _norm(s: str) -> str:
    return " ".join(w for w in _WORD_RE.findall(s.lower()) if w not in ("a", "an", "the"))
