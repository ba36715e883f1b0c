"""Question wording: Jinja2 macros in qa_templates/<family>.j2, compiled once per process.

Only files named after a QA family are read (qa_templates/ also holds other prompts).
Each family file defines, for each of its variants V:
    q_V_<n>(q)   one phrasing of the question (several n per variant; template_id
                 "<family>.<V>.<n>")
    r_V(q)       the reasoning trace (optional; falls back to r_default)
    a_V(q)       the answer text
where `q` is a dict of the values the engine computed. The environment uses
StrictUndefined, so a missing value is an error, never an empty string. Adding a phrasing
is adding one q_V_<n> macro to the family's file.

A style is an overlay folder (`qa_templates/<style>/`, e.g. `n3d/`, N3D-VLM's wording): its
family files redefine macros by name over the base file's. Overlay question macros of a
variant replace all the base phrasings of that variant; r_/a_ macros replace one by one;
whatever the overlay leaves out comes from the base. Answers of an overlay keep their line
breaks (N3D-VLM writes one box per line).
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

import jinja2

from lifting.qa.config import DEFAULT_FAMILIES
from lifting.resources import resource_dir


class Q(dict):
    """Template values: a dict whose keys also read as attributes, so `q.a` in a template
    resolves on the first lookup (Jinja tries attributes before items). A missing key is an
    AttributeError, which StrictUndefined turns into an error."""

    __slots__ = ()

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def _capfirst(s) -> str:
    s = str(s)
    return s[:1].upper() + s[1:]


class _QAContext(jinja2.runtime.Context):
    """Template context whose `call` runs a one-argument macro's compiled function directly
    (nested macros such as `tail(q)`; ~5 calls per image); anything else takes Jinja's path."""

    def call(__self, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        if type(__obj) is jinja2.runtime.Macro and not __self.eval_ctx.autoescape:
            kwargs.pop("_block_vars", None)
            kwargs.pop("_loop_vars", None)
            if (not kwargs and len(args) == len(__obj.arguments) and not __obj.catch_kwargs
                    and not __obj.catch_varargs and not __obj.caller):
                return __obj._func(*args)
        return super().call(__obj, *args, **kwargs)


class _QAEnvironment(jinja2.Environment):
    """Environment whose attribute lookup reads a `Q` as the dict it is first.

    Templates read `q.<name>` ~180 times per image; Jinja's default tries getattr first,
    which for a dict key means a failed attribute lookup plus `Q.__getattr__`. Reading the
    key directly is several times cheaper and resolves to the same value; anything else
    (and a missing key) takes Jinja's own path, so StrictUndefined still raises."""

    def getattr(self, obj, attribute):
        if type(obj) is Q:
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


_QAEnvironment.context_class = _QAContext


def _direct(macro):
    """The compiled function of a one-argument Jinja macro (q) -> str, skipping Macro.__call__'s
    generic argument binding (~30% of a small macro's cost); the Macro itself otherwise."""
    func = getattr(macro, "_func", None)
    if (func is None or len(getattr(macro, "arguments", ())) != 1 or macro.catch_kwargs or macro.catch_varargs
            or macro.caller or getattr(macro, "_environment", None) is None or macro._environment.is_async
            or macro._environment.autoescape):
        return macro
    return func


def make_environment(directory: Path) -> jinja2.Environment:
    """The Jinja2 environment of the QA templates (StrictUndefined, no autoescape)."""
    env = _QAEnvironment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["capfirst"] = _capfirst
    return env


def _family_macros(env: jinja2.Environment, path: Path, family: str, tid_prefix: str):
    """(questions {variant: [(n, template_id, fn)]}, reasoning {variant: fn}, answers {variant: fn})
    of one family file."""
    module = env.get_template(path.name).module
    qs, rs, ans = {}, {}, {}
    for name in dir(module):
        macro = getattr(module, name)
        if not isinstance(macro, jinja2.runtime.Macro):
            continue
        if name.startswith("q_"):
            variant, _, n = name[2:].rpartition("_")
            if not n.isdigit() or not variant:
                raise ValueError(f"{path.name}: question macro {name!r} must be named q_<variant>_<n>")
            qs.setdefault(variant, []).append((int(n), f"{tid_prefix}{family}.{variant}.{n}", _direct(macro)))
        elif name.startswith("r_"):
            rs[name[2:]] = _direct(macro)
        elif name.startswith("a_"):
            ans[name[2:]] = _direct(macro)
    return qs, rs, ans


class TemplateBank:
    """All QA templates of a folder: family -> variant -> phrasings, reasoning, answer.

    style: None for the folder's own files, or the name of an overlay sub-folder (see the
    module docstring); template ids of overlay phrasings read `<style>:<family>.<variant>.<n>`.
    """

    def __init__(self, directory: Path | None = None, style: str | None = None):
        self.directory = Path(directory) if directory is not None else resource_dir("qa_templates")
        self.style = style
        self.env = make_environment(self.directory)
        overlay_dir = self.directory / style if style else None
        if overlay_dir is not None and not overlay_dir.is_dir():
            raise ValueError(f"QA style {style!r}: no template folder {overlay_dir}")
        overlay_env = make_environment(overlay_dir) if overlay_dir is not None else None
        self.questions: dict[str, dict[str, list[tuple[str, object]]]] = {}
        self.reasoning: dict[str, dict[str, object]] = {}
        self.answers: dict[str, dict[str, object]] = {}
        for family in DEFAULT_FAMILIES:  # other .j2 files there (rephraser, priors) are not ours
            path = self.directory / f"{family}.j2"
            if not path.is_file():
                continue
            qs, rs, ans = _family_macros(self.env, path, family, "")
            if overlay_env is not None and (overlay_dir / path.name).is_file():
                oqs, ors, oans = _family_macros(overlay_env, overlay_dir / path.name, family, f"{style}:")
                qs.update(oqs)
                rs.update(ors)
                ans.update(oans)
            self.questions[family] = {v: [(tid, m) for _, tid, m in sorted(lst)] for v, lst in qs.items()}
            self.reasoning[family] = rs
            self.answers[family] = ans
        self._clean_answer = _clean_block if style else _clean

    def variants(self, family: str) -> list[str]:
        return sorted(self.questions.get(family, {}))

    def question(self, family: str, variant: str, q: dict, rng: random.Random) -> tuple[str, str]:
        """(template_id, question text) with a phrasing drawn by `rng`."""
        tid, macro = rng.choice(self.questions[family][variant])
        return tid, _clean(macro(q))

    def render_reasoning(self, family: str, variant: str, q: dict) -> str:
        rs = self.reasoning[family]
        macro = rs.get(variant) or rs["default"]
        return _clean_block(macro(q))

    def render_answer(self, family: str, variant: str, q: dict) -> str:
        ans = self.answers[family]
        macro = ans.get(variant) or ans["default"]
        return self._clean_answer(macro(q))


def _clean(s: str) -> str:
    return " ".join(str(s).split())


def _clean_block(s: str) -> str:
    out = []
    for line in str(s).splitlines():
        parts = line.split()
        if parts:  # whitespace-only lines are dropped
            out.append(" ".join(parts))
    return "\n".join(out)


@functools.lru_cache(maxsize=8)
def get_bank(directory: str | None = None, style: str | None = None) -> TemplateBank:
    """The process-wide template bank (compiled once per process, folder and style; style
    None or "lift3d" is the folder's own files)."""
    return TemplateBank(Path(directory) if directory else None, None if style in (None, "lift3d") else style)
