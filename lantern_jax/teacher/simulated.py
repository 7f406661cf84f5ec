"""The simulated expert: the embedded default's black-box teacher, with realistic error modes.

It reads the latent truth of a D_base pair (as a strong LLM would infer it from the text) and
writes what a good LLM would: per-requirement verdicts with evidence quoted verbatim from the
rendered profile, a fit level, and a varied, natural explanation. Its fit-level probabilities are
calibrated by construction: the teacher observes the true ordinal level through Gaussian noise and
reports the Bayes posterior, so P(true level | reported p) = p on data drawn like D_base.

Content errors (wrong verdicts, fabricated evidence, dropped or duplicated requirements,
label/explanation disagreement, rambling or terse explanations, malformed JSON, truncation,
refusal) are planted at configurable rates, deterministically by seed, and reported in
`Answer.planted` so tests can measure the quality gates. The HTTP face is `teacher/server.py`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from typing import Any, Sequence

from lantern_jax.data import prompts
from lantern_jax.data.schema import EXPLANATION_OPENING, FIT_LEVELS, VERDICTS, Pair

CONTENT_ERRORS = ("wrong_verdict", "fabricated_evidence", "dropped_requirement", "duplicate_requirement",
                  "disagreement", "rambling", "terse")
FORMAT_ERRORS = ("refusal", "malformed_json", "truncation")


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    seed: int = 0
    noise: float = 0.45  # s.d. of the teacher's view of the ordinal fit level; lower = more accurate
    error_rates: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> rate, see *_ERRORS

    def __post_init__(self):
        unknown = sorted(set(self.error_rates) - set(CONTENT_ERRORS + FORMAT_ERRORS))
        if unknown:
            raise ValueError(f"unknown error mode(s) {unknown}; known: {', '.join(CONTENT_ERRORS + FORMAT_ERRORS)}")


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str | None  # None for a structured-output refusal
    refusal: str | None
    finish_reason: str  # "stop" | "length"
    fit_level: str | None  # the level written in the text (None for sub-tasks without one)
    fit_probs: dict[str, float] | None
    planted: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TruthItem:
    text: str
    importance: str
    verdict: str
    hints: tuple[str, ...]  # strings that may support it in the profile (alternative labels, names)


def truth_items(pair: Pair) -> list[TruthItem]:
    """Requirements with their latent verdicts, from the `truth` layout documented in data/synth/."""
    job_truth, pair_truth = pair.job.truth or {}, pair.truth or {}
    verdicts, evidence = pair_truth.get("verdicts", {}), pair_truth.get("evidence", {})
    surfaces = pair_truth.get("surfaces", {})
    items = []
    for r in job_truth.get("requirements", []):
        rid = r["id"]
        hints = [evidence.get(rid), surfaces.get(rid), r.get("skill"), r.get("cert"), r.get("field"),
                 *r.get("alt_labels", ())]
        verdict = verdicts.get(rid, "unknown")
        items.append(TruthItem(text=r["text"], importance=r.get("importance", "required"),
                               verdict=verdict if verdict in VERDICTS else "unknown",
                               hints=tuple(str(h) for h in hints if h)))
    return items


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9+#]+", text.lower()) if len(w) > 2 and w not in _STOP}


_STOP = {"and", "the", "with", "for", "experience", "years", "year", "familiarity", "knowledge", "ability",
         "strong", "related", "field", "degree", "active", "proficiency", "working", "skills", "plus"}


def profile_segments(pair: Pair) -> list[str]:
    """Verbatim pieces of the rendered profile a teacher can quote."""
    m = pair.member
    segs = [m.headline, *re.split(r"(?<=[.!?])\s+", m.summary)]
    for e in m.experience:
        segs.append(f"{e.title} at {e.company} ({e.start} to {e.end or 'present'})")
        segs += re.split(r"(?<=[.!?])\s+", e.description)
    segs += [f"{e.degree} in {e.field}" for e in m.education]
    segs += list(m.skills)
    rendered = prompts.render_member(m)
    return [s.strip() for s in segs if s.strip() and s.strip() in rendered]


def find_quote(pair: Pair, item: TruthItem) -> str | None:
    """A verbatim profile span supporting `item`: a hint found in the profile, else the best overlap."""
    segments = profile_segments(pair)
    for hint in item.hints:
        for seg in segments:
            at = seg.lower().find(hint.lower())
            if at >= 0:
                return seg[at:at + len(hint)] if len(hint) >= 12 or len(seg) > 80 else seg
    want = _words(item.text + " " + " ".join(item.hints))
    best = max(segments, key=lambda s: len(want & _words(s)), default=None)
    if best is not None and want & _words(best):
        return best
    if re.search(r"\byears?\b", item.text) and pair.member.experience:
        e = pair.member.experience[0]
        return f"{e.title} at {e.company} ({e.start} to {e.end or 'present'})"
    return None


# Common posting phrasings reduced to the thing asked for, so sentences read naturally.
_SHORTEN = (
    (re.compile(r"^(\d+\+?) years of (?:professional |relevant )?experience as (an? .+?)"
                r"(?: or in a closely related role)?$", re.I), r"\1 years as \2"),
    (re.compile(r"^(?:hands-on |working |solid,? practical |practical |proven |strong )?(?:experience|knowledge|"
                r"understanding|familiarity|proficiency) (?:with|of|in|applying) (.+?)(?: in a professional setting|"
                r" and related best practices| and its day-to-day use| to real-world problems)?$", re.I), r"\1"),
    (re.compile(r"^(?:proven |demonstrated )?(?:ability|confidence) to (.+?)(?: independently and reliably|"
                r" in a busy environment| with minimal supervision| to a consistently high standard)?$", re.I),
     r"the ability to \1"),
    (re.compile(r"^(?:active |current |valid )?(.+?)(?: credential| \(or willingness to obtain it\))?$", re.I), r"\1"),
)


def _fill(template: str, **values: str) -> str:
    """A template filled in, without a doubled full stop after a quoted sentence."""
    return template.format(**values).replace('."."', '."').replace('.".', '."')


def _short(requirement: str) -> str:
    """The requirement as a noun phrase inside a sentence ("Experience with SQL" -> "SQL")."""
    text = requirement.strip().rstrip(".")
    for pattern, replacement in _SHORTEN:
        m = pattern.match(text)
        if m:
            text = m.expand(replacement)
            break
    first = text.split(" ", 1)[0].lower()
    return text[:1].lower() + text[1:] if first in _COMMON_OPENERS else text


_COMMON_OPENERS = {"active", "strong", "excellent", "solid", "proven", "good", "valid", "current", "fluent",
                   "demonstrated", "bachelor's", "master's", "associate", "doctoral", "high", "a", "an", "at",
                   "ability", "understanding", "working", "hands-on", "advanced", "basic", "relevant",
                   "professional", "experience", "proficiency", "knowledge", "confidence", "familiarity"}


# Several phrasings per verdict; {q} is a verbatim quote, {r} the requirement.
EVIDENCE = {
    "met": ['The profile lists "{q}".', 'Profile: "{q}".', 'Shown by "{q}" in the profile.',
            '"{q}" covers this.'],
    "partially_met": ['Related but not a full match: "{q}".', 'Partly shown by "{q}".',
                      'The profile has "{q}", which is close but weaker.'],
    "not_met": ["No mention of {r} in the profile.", "Nothing in the profile shows {r}.",
                "The profile does not show {r}."],
    "unknown": ["The profile does not say enough about {r}.", "Not enough information to judge {r}."],
}
SENTENCES = {
    "met": ['You bring {r}: your profile mentions "{q}".', 'Your "{q}" covers the need for {r}.',
            'The role asks for {r}, and "{q}" shows you have it.',
            'You cover {r}, a {i} item, with "{q}".'],
    "partially_met": ['You partly meet {r}; "{q}" is related but not quite the same.',
                      'For {r}, "{q}" gets you part of the way.',
                      '"{q}" is close to {r}, though the posting asks for more.'],
    "not_met": ["Your profile doesn't show {r}, which the role lists as {i}.",
                "I couldn't find {r} in your profile.", "A gap is {r}, a {i} item for this role.",
                "The posting asks for {r}, which your profile doesn't mention."],
    "unknown": ["Your profile doesn't say enough to judge {r}.", "It's unclear whether you have {r}."],
}
BRIDGES = ["Let me show the reasons:", "Here is why.", "Here's how your profile lines up.",
           "Here is what stood out.", "Let me walk you through it."]
CLOSINGS = {
    "high": ["Overall, you look like a strong match for this role.",
             "Overall, this is an excellent match for what they ask."],
    "medium": ["Overall, it's a partial match: closing these gaps would make you a stronger candidate.",
               "Overall, a reasonable match with a few gaps to work on."],
    "low": ["Overall, this looks like a weak match for now.",
            "Overall, it's a poor match for the core requirements today."],
}
REFUSALS = ["I'm sorry, but I can't help with assessing this candidate.",
            "I can't provide an evaluation of this person.",
            "As an AI, I am not able to make hiring judgments about individuals."]
RAMBLE = ["It is also worth noting that every employer weighs things differently.",
          "Many candidates find that small details in a profile make a difference.",
          "Recruiters often read profiles quickly, so clarity helps.",
          "There are many ways to present the same experience.",
          "Keep in mind that requirements are sometimes flexible in practice."]


class SimulatedExpert:
    """Deterministic expert over a fixed set of pairs; `answer` serves each prompt kind."""

    def __init__(self, pairs: Sequence[Pair], config: ExpertConfig = ExpertConfig()):
        self.config = config
        counts = {lvl: 1.0 for lvl in FIT_LEVELS}  # add-one prior for unseen levels
        for p in pairs:
            lvl = (p.truth or {}).get("fit_level")
            if lvl in counts:
                counts[lvl] += 1
        total = sum(counts.values())
        self.prior = {lvl: c / total for lvl, c in counts.items()}

    # -- probabilities -------------------------------------------------------------------
    def fit_probs(self, pair: Pair) -> dict[str, float]:
        """Posterior over levels given the teacher's noisy view of the true level."""
        truth = (pair.truth or {}).get("fit_level", "medium")
        rng = random.Random(f"{self.config.seed}:fit:{pair.pair_id}")
        sigma = max(self.config.noise, 1e-3)
        seen = FIT_LEVELS.index(truth) + rng.gauss(0.0, sigma)
        like = {lvl: self.prior[lvl] * math.exp(-0.5 * ((seen - i) / sigma) ** 2)
                for i, lvl in enumerate(FIT_LEVELS)}
        z = sum(like.values()) or 1.0
        return {lvl: v / z for lvl, v in like.items()}

    # -- pieces ----------------------------------------------------------------------------
    def _evaluate(self, pair: Pair, item: TruthItem, rng: random.Random) -> dict:
        verdict, quote = item.verdict, None
        if verdict in ("met", "partially_met"):
            quote = find_quote(pair, item)
            if quote is None:  # nothing quotable: an honest teacher can't claim it
                verdict = "unknown"
        return {"requirement": item.text, "importance": item.importance, "verdict": verdict,
                "evidence": _fill(rng.choice(EVIDENCE[verdict]), q=quote or "", r=_short(item.text))}

    def _explanation(self, fit: str, reqs: Sequence[dict], rng: random.Random) -> str:
        parts = [EXPLANATION_OPENING.format(fit_level=fit), rng.choice(BRIDGES)]
        ordered = sorted(reqs, key=lambda r: (r["importance"] != "required",))
        by_verdict = {v: [r for r in ordered if r["verdict"] == v] for v in VERDICTS}
        limits = {"met": 3, "partially_met": 2, "not_met": 3, "unknown": 1}
        for verdict in ("met", "partially_met", "not_met", "unknown"):
            for r in by_verdict[verdict][:limits[verdict]]:
                quote = re.search(r'"([^"]+)"', r["evidence"])
                parts.append(_fill(rng.choice(SENTENCES[verdict]), r=_short(r["requirement"]), i=r["importance"],
                                   q=quote.group(1) if quote else ""))
        if len(parts) < 4 or rng.random() < 0.6:
            parts.append(rng.choice(CLOSINGS[fit]))
        return " ".join(parts)

    # -- planted errors ----------------------------------------------------------------------
    def _draw(self, rng: random.Random, names: Sequence[str]) -> list[str]:
        return [n for n in names if rng.random() < self.config.error_rates.get(n, 0.0)]

    def _plant_in_requirements(self, pair, reqs: list[dict], errors: list[str], rng) -> list[str]:
        planted = []
        if "wrong_verdict" in errors and reqs:
            r = rng.choice(reqs)
            r["verdict"] = rng.choice([v for v in VERDICTS if v != r["verdict"]])
            quote = _fabricated_quote(pair, r["requirement"], rng)
            r["evidence"] = _fill(rng.choice(EVIDENCE[r["verdict"]]), q=quote, r=_short(r["requirement"]))
            planted.append("wrong_verdict")
        if "dropped_requirement" in errors and len(reqs) > 1:
            reqs.pop(rng.randrange(len(reqs)))
            planted.append("dropped_requirement")
        quotable = [r for r in reqs if r.get("verdict") in ("met", "partially_met")]
        if "fabricated_evidence" in errors and quotable:
            r = rng.choice(quotable)
            r["evidence"] = _fill(rng.choice(EVIDENCE[r["verdict"]]),
                                  q=_fabricated_quote(pair, r["requirement"], rng), r="")
            planted.append("fabricated_evidence")
        if "duplicate_requirement" in errors and reqs:
            at = rng.randrange(len(reqs))
            reqs.insert(at + 1, dict(reqs[at]))
            planted.append("duplicate_requirement")
        return planted

    def _plant_in_explanation(self, fit: str, text: str, errors: list[str], rng) -> tuple[str, list[str]]:
        planted = []
        if "rambling" in errors:
            filler = [rng.choice(RAMBLE) for _ in range(40)]
            text = f"{text} {' '.join(filler)}"
            planted.append("rambling")
        elif "terse" in errors:
            text = f"{EXPLANATION_OPENING.format(fit_level=fit)} {rng.choice(['Mostly.', 'See above.', ''])}".strip()
            planted.append("terse")
        if "disagreement" in errors:
            other = rng.choice([lvl for lvl in FIT_LEVELS if lvl != fit])
            if rng.random() < 0.5:
                text = text.replace(EXPLANATION_OPENING.format(fit_level=fit),
                                    EXPLANATION_OPENING.format(fit_level=other), 1)
            else:
                text = f"{text} {rng.choice(CLOSINGS[other])}"
            planted.append("disagreement")
        return text, planted

    def _finish(self, obj: dict, errors: list[str], planted: list[str], rng, structured: bool,
                fit: str | None, probs) -> Answer:
        if "refusal" in errors:
            text = rng.choice(REFUSALS)
            planted = planted + ["refusal"]
            return Answer(None if structured else text, text if structured else None, "stop", None, None,
                          tuple(planted))
        text = json.dumps(obj, ensure_ascii=False, indent=rng.choice([None, 2]))
        finish = "stop"
        if "truncation" in errors:
            text = text[:rng.randrange(len(text) // 3, len(text) - 2)]
            finish = "length"
            planted.append("truncation")
        elif "malformed_json" in errors and not structured:  # structured output can't be malformed
            text = _corrupt(text, rng)
            planted.append("malformed_json")
        if rng.random() < 0.15 and not structured and finish == "stop":
            text = f"```json\n{text}\n```"  # prompt-only models often fence their JSON
        return Answer(text, None, finish, fit, probs, tuple(planted))

    # -- the prompt kinds --------------------------------------------------------------------
    def answer(self, pair: Pair, step: str = "single", items: Sequence[dict] | None = None,
               structured: bool = False) -> Answer:
        """Output for one prompt. `items` are the requirements read from a chain prompt."""
        rng = random.Random(f"{self.config.seed}:{step}:{pair.pair_id}")
        errors = self._draw(rng, CONTENT_ERRORS + FORMAT_ERRORS)
        format_errors = [e for e in errors if e in FORMAT_ERRORS][:1]
        truth = truth_items(pair)
        if step == "extract":
            reqs = [{"requirement": t.text, "importance": t.importance} for t in truth]
            planted = self._plant_in_requirements(pair, reqs, [e for e in errors if e == "dropped_requirement"], rng)
            return self._finish({"requirements": reqs}, format_errors, planted, rng, structured, None, None)
        if step == "evaluate":
            reqs = [self._evaluate(pair, _match(item, truth), rng) for item in items or ()]
            planted = self._plant_in_requirements(pair, reqs, errors, rng)
            return self._finish({"requirements": reqs}, format_errors, planted, rng, structured, None, None)
        probs = self.fit_probs(pair)
        fit = max(probs, key=probs.get)
        if step == "explain":
            reqs = [dict(r) for r in items or ()]
            text, planted = self._plant_in_explanation(fit, self._explanation(fit, reqs, rng), errors, rng)
            return self._finish({"fit_level": fit, "explanation": text}, format_errors, planted, rng,
                                structured, fit, probs)
        reqs = [self._evaluate(pair, t, rng) for t in truth]
        explanation = self._explanation(fit, reqs, rng)
        planted = self._plant_in_requirements(pair, reqs, errors, rng)
        explanation, more = self._plant_in_explanation(fit, explanation, errors, rng)
        obj = {"requirements": reqs, "fit_level": fit, "explanation": explanation}
        return self._finish(obj, format_errors, planted + more, rng, structured, fit, probs)


def _match(item: dict, truth: Sequence[TruthItem]) -> TruthItem:
    """The truth requirement a chain prompt's item refers to; unknown when none matches."""
    text = str(item.get("requirement", ""))
    for t in truth:
        if t.text.strip().lower() == text.strip().lower():
            return TruthItem(text, item.get("importance", t.importance), t.verdict, t.hints)
    want = _words(text)
    best = max(truth, key=lambda t: len(want & _words(t.text)), default=None)
    if best is not None and want and len(want & _words(best.text)) / len(want) >= 0.6:
        return TruthItem(text, item.get("importance", best.importance), best.verdict, best.hints)
    return TruthItem(text, item.get("importance", "required"), "unknown", ())


def _fabricated_quote(pair: Pair, requirement: str, rng: random.Random) -> str:
    """A plausible quote that is not in the profile (what a hallucinating teacher writes)."""
    rendered = prompts.render_member(pair.member).lower()
    core = _short(requirement)
    for _ in range(10):
        quote = rng.choice([f"{rng.randint(4, 12)} years of hands-on {core}",
                            f"Led a team delivering {core} at scale",
                            f"Certified expert in {core}", f"Award for excellence in {core}"])
        if quote.lower() not in rendered:
            return quote
    return f"Recognised authority on {core} (ref {rng.randrange(10**6)})"


def _corrupt(text: str, rng: random.Random) -> str:
    """JSON damaged the ways LLM outputs are: a dropped quote, a trailing comma, single quotes."""
    kind = rng.randrange(4)
    if kind == 0:
        at = text.find('"', len(text) // 2)
        return text[:at] + text[at + 1:] if at > 0 else text[:-1]
    if kind == 1:
        return text.rstrip()[:-1].rstrip() + ",\n}"  # trailing comma
    if kind == 2:
        return text.replace('"', "'")
    return text.replace('", "', '" "', 1).replace('",\n', '"\n', 1)  # missing comma between members


def token_logprobs(text: str, fit_level: str | None, fit_probs: dict[str, float] | None, top_k: int | None,
                   seed: str, max_tokens: int | None = None) -> tuple[list[dict], int, bool]:
    """OpenAI-style `logprobs.content` for `text` under the Qwen tokenizer.

    Ordinary tokens get a confident chosen logprob and plausible alternatives; the fit-level value
    token carries the calibrated level distribution. Returns (content, n_tokens, truncated);
    `top_k=None` (no logprobs wanted) skips the entries.
    """
    enc = prompts.qwen_encoding()
    ids = enc.encode(text)
    truncated = max_tokens is not None and len(ids) > max_tokens
    ids = ids[:max_tokens] if truncated else ids
    if top_k is None:  # logprobs not requested: only the token count (and any cut) matters
        return ([{"token": enc._tokenizer.decode_single_token_bytes(i).decode("utf-8", "replace")} for i in ids]
                if truncated else []), len(ids), truncated
    fit_at = _fit_value_offset(text) if fit_level else None
    rng = random.Random(seed)
    pool = _alternative_pool()
    content, offset = [], 0
    for tid in ids:
        raw = enc._tokenizer.decode_single_token_bytes(tid)
        token = raw.decode("utf-8", errors="replace")
        start, offset = offset, offset + len(raw)
        if fit_at is not None and start <= fit_at < offset and fit_probs:
            entry = _fit_entry(token, fit_level, fit_probs, top_k, rng, pool)
        else:
            entry = _plain_entry(token, raw, rng, pool, top_k)
        content.append(entry)
    return content, len(ids), truncated


def _fit_value_offset(text: str) -> int | None:
    m = re.search(r'"fit_level"\s*:\s*"', text)
    return len(text[:m.end()].encode("utf-8")) if m else None


def _fit_entry(token: str, fit_level: str, probs: dict[str, float], top_k: int, rng: random.Random,
               pool: Sequence[tuple[str, list[int]]]) -> dict:
    spare = 1e-4  # a sliver of mass for non-level tokens, as real models leave
    alts = [(token.replace(fit_level, lvl) if fit_level in token else lvl, (1 - spare) * p)
            for lvl, p in probs.items()]
    alts.sort(key=lambda a: -a[1])
    chosen = {"token": token, "logprob": math.log(max((1 - spare) * probs[fit_level], 1e-300)),
              "bytes": list(token.encode("utf-8"))}
    top = [{"token": t, "logprob": math.log(max(p, 1e-300)), "bytes": list(t.encode("utf-8"))} for t, p in alts]
    rest, start = spare, rng.randrange(len(pool) - top_k)
    for alt, alt_bytes in pool[start:start + top_k]:
        if len(top) >= top_k:
            break
        rest *= 0.5
        top.append({"token": alt, "logprob": math.log(rest), "bytes": alt_bytes})
    return {**chosen, "top_logprobs": top[:top_k]}


def _plain_entry(token: str, raw: bytes, rng: random.Random, pool: Sequence[tuple[str, list[int]]],
                 top_k: int) -> dict:
    p = 1.0 - rng.random() ** 3 * 0.5  # mostly confident, sometimes not
    entry = {"token": token, "logprob": math.log(p), "bytes": list(raw)}
    if top_k <= 0:
        entry["top_logprobs"] = []
        return entry
    start = rng.randrange(len(pool) - top_k - 1)
    top, rest = [dict(entry)], 1.0 - p
    for alt, alt_bytes in pool[start:start + top_k + 1]:  # one spare in case the window holds `token`
        rest *= 0.45
        if alt != token and len(top) < top_k:
            top.append({"token": alt, "logprob": math.log(max(rest, 1e-30)), "bytes": alt_bytes})
    entry["top_logprobs"] = top
    return entry


_POOL: list[tuple[str, list[int]]] = []


def _alternative_pool() -> list[tuple[str, list[int]]]:
    """Common tokens (low BPE ranks), shuffled once, to serve as plausible alternatives."""
    if not _POOL:
        enc = prompts.qwen_encoding()
        for tid in range(300, 6000, 7):
            raw = enc._tokenizer.decode_single_token_bytes(tid)
            tok = raw.decode("utf-8", errors="ignore")
            if tok.strip() and tok.encode("utf-8") == raw:
                _POOL.append((tok, list(raw)))
        random.Random(0).shuffle(_POOL)
    return _POOL


def parse_error_rates(spec: str | dict[str, Any] | None) -> dict[str, float]:
    """'malformed_json=0.05,refusal=0.01' or a dict -> {name: rate}, names checked."""
    if not spec:
        return {}
    items = spec.items() if isinstance(spec, dict) else (kv.split("=", 1) for kv in spec.split(",") if kv)
    rates = {k.strip(): float(v) for k, v in items}
    ExpertConfig(error_rates=rates)  # validates names
    return rates
