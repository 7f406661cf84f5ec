"""Schema-guided decoding: explainer outputs that always parse as an Assessment.

A small student learns the words of an Assessment long before its grammar, and loops (`"evidence":
"met", "evidence": "met", ...`) instead of closing the JSON. Served explanations are decoded under
the schema (as structured-output APIs do), so the model only fills in what is really its to say:

  literal  the serialisation's fixed text (keys, quotes, brackets): forced
  enum     importance, verdict, fit level: the model's greedy pick among the allowed values
  string   requirement, evidence, explanation: free greedy text without quote, backslash or control
           characters, until the model's top token would close the quote or the field's token cap
  array    after each requirement: another one or the closing bracket, the model's pick

The skeleton is cut from `json.dumps(Assessment.to_dict())`, the serialisation the students were
trained on, so a schema change can't leave it stale. Enum values and array choices are tokenized
together with the literal that follows them, so the forced tokens are mostly the tokenizer's own.
Rows decode as one batch (one jitted cache step per token, `generate.extend`); the host walks each
row's skeleton. The raw, unguided output stays what the evaluation's structure validity measures.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax import generate
from lantern_jax.data.schema import FIT_LEVELS, IMPORTANCE, VERDICTS, Assessment, Requirement


@dataclasses.dataclass(frozen=True)
class FieldCaps:
    """Token caps of the free-text fields (a looping student would otherwise fill the budget)."""
    requirement: int = 32
    evidence: int = 40
    explanation: int = 96


@dataclasses.dataclass(frozen=True)
class Choice:
    options: tuple[tuple[int, ...], ...]  # token sequences; none is a prefix of another


@dataclasses.dataclass(frozen=True)
class Text:
    cap: int


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The Assessment serialisation cut at its fields: `open` .. requirement `before_importance`
    importance+`before_verdict` verdict+`before_evidence` evidence (`next_item` | `close_items`)
    fit_level+`before_explanation` explanation `close`."""
    open: str
    before_importance: str
    before_verdict: str
    before_evidence: str
    next_item: str
    close_items: str
    before_explanation: str
    close: str


@functools.cache
def skeleton() -> Skeleton:
    holes = ("requirement", "importance", "verdict", "evidence")
    item = Requirement(*(f"@{h}@" for h in holes))
    text = json.dumps(Assessment((item, item), "@fit_level@", "@explanation@").to_dict(), ensure_ascii=False)
    parts = re.split(r"@(\w+)@", text)
    if parts[1::2] != [*holes, *holes, "fit_level", "explanation"] or parts[2:7:2] != parts[10:15:2]:
        raise RuntimeError(f"guided: unexpected Assessment serialisation {text!r}")
    lit = parts[0::2]
    return Skeleton(open=lit[0], before_importance=lit[1], before_verdict=lit[2], before_evidence=lit[3],
                    next_item=lit[4], close_items=lit[8], before_explanation=lit[9], close=lit[10])


class Vocabulary:
    """The tokenizer's view the decoder needs: encodings, and which tokens may sit inside a JSON
    string (`safe`) or would end one (`closes`: holds a quote, or is special)."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer = tokenizer
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids)
        self.safe = np.zeros(vocab_size, bool)
        self.closes = np.ones(vocab_size, bool)  # ids past the tokenizer's end: never text
        for i, t in enumerate(texts[:vocab_size]):
            bad = i in special or not t or any(c in '"\\' or ord(c) < 0x20 for c in t)
            self.safe[i] = not bad
            self.closes[i] = i in special or '"' in t

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def choice(self, texts: Sequence[str]) -> Choice:
        options = tuple(self.encode(t) for t in texts)
        for a in options:
            for b in options:
                if a != b and b[:len(a)] == a:
                    raise ValueError(f"guided: option {a} is a prefix of {b}: ambiguous")
        return Choice(options)

    @functools.cached_property
    def segments(self) -> dict[str, Choice]:
        """The skeleton's choices in this tokenizer, encoded once (every row walks the same ones)."""
        sk = skeleton()
        return {"opening": self.choice([sk.open]), "field": self.choice([sk.before_importance]),
                "importance": self.choice([v + sk.before_verdict for v in IMPORTANCE]),
                "verdict": self.choice([v + sk.before_evidence for v in VERDICTS]),
                "more": self.choice([sk.next_item, sk.close_items]), "last": self.choice([sk.close_items]),
                "fit": self.choice([v + sk.before_explanation for v in FIT_LEVELS]),
                "close": self.choice([sk.close])}


def program(vocab: Vocabulary, max_new_tokens: int, caps: FieldCaps) -> Iterator:
    """One row's walk through the skeleton: yields Choice / Text segments and receives, for a
    Choice, the index of the option taken. The number of requirements is bounded so that the
    worst case (every field at its cap) fits `max_new_tokens`."""
    seg = vocab.segments
    opening, field, importance, verdict = seg["opening"], seg["field"], seg["importance"], seg["verdict"]
    more, last, fit, close = seg["more"], seg["last"], seg["fit"], seg["close"]

    longest = lambda c: max(map(len, c.options))  # noqa: E731
    item = (caps.requirement + longest(field) + longest(importance) + longest(verdict) + caps.evidence
            + longest(more))
    tail = longest(fit) + caps.explanation + longest(close)
    max_items = (max_new_tokens - longest(opening) - tail) // item
    if max_items < 1:
        raise ValueError(f"guided: max_new_tokens={max_new_tokens} can't hold one requirement at the field caps "
                         f"{caps} (needs {longest(opening) + item + tail})")
    yield opening
    for n in range(1, max_items + 1):
        yield Text(caps.requirement)
        yield field
        yield importance
        yield verdict
        yield Text(caps.evidence)
        if (yield (more if n < max_items else last)) != 0 or n == max_items:
            break
    yield fit
    yield Text(caps.explanation)
    yield close


def budget_problem(tokenizer, vocab_size: int, max_new_tokens: int, caps: FieldCaps = FieldCaps()) -> str | None:
    """Why `max_new_tokens` can't hold a guided Assessment at these caps, or None."""
    try:
        next(program(_vocabulary(tokenizer, vocab_size), max_new_tokens, caps))
    except ValueError as e:
        return str(e)
    return None


class Row:
    """One sequence's state: its program, the segment in progress and the tokens taken."""

    def __init__(self, vocab: Vocabulary, walk: Iterator):
        self.vocab, self.walk, self.tokens = vocab, walk, []
        self.segment, self.done = next(walk), False
        self._start()

    def _start(self):
        self.prefix, self.written = (), 0

    def _advance(self, taken: int | None = None):
        try:
            self.segment = self.walk.send(taken) if taken is not None else next(self.walk)
        except StopIteration:
            self.done = True
        self._start()

    def next_token(self, logits: np.ndarray) -> int | None:
        """The token this row feeds next (None when its Assessment is complete)."""
        while not self.done:
            seg = self.segment
            if isinstance(seg, Text):
                top = int(np.argmax(logits))
                if self.written >= seg.cap or (self.written and self.vocab.closes[top]):
                    self._advance()  # the field ends; the next literal opens with its quote
                    continue
                tok = top if self.vocab.safe[top] else int(np.argmax(np.where(self.vocab.safe, logits, -np.inf)))
                self.written += 1
                self.tokens.append(tok)
                return tok
            live = [o for o in seg.options if o[:len(self.prefix)] == self.prefix]
            allowed = sorted({o[len(self.prefix)] for o in live})
            tok = allowed[int(np.argmax(logits[allowed]))]
            self.prefix += (tok,)
            self.tokens.append(tok)
            if self.prefix in seg.options:  # an option complete (none is a prefix of another)
                self._advance(seg.options.index(self.prefix))
            return tok
        return None


def guided_assessments(model, tokenizer, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                       caps: FieldCaps = FieldCaps()) -> list[str]:
    """Assessment JSON for each prompt (token ids), decoded greedily under the schema: each text
    parses with `teacher.parse.parse_assessment`."""
    return [tokenizer.decode(ids, clean_up_tokenization_spaces=False)
            for ids in guided_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, caps=caps)]


def guided_ids(model, tokenizer, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
               caps: FieldCaps = FieldCaps(), pad_id: int | None = None,
               batch_buckets: Sequence[int] = generate.BATCH_BUCKETS,
               length_buckets: Sequence[int] = generate.LENGTH_BUCKETS) -> list[list[int]]:
    """The generated token ids of `guided_assessments` (no stop token), in the given buckets."""
    if not prompts:
        return []
    pad = tokenizer.pad_token_id if pad_id is None else pad_id
    vocab = _vocabulary(tokenizer, model.cfg.vocab_size)
    rows = [Row(vocab, program(vocab, max_new_tokens, caps)) for _ in prompts]  # checks the budget
    ids, mask = generate.left_pad(prompts, pad, batch_buckets, length_buckets)
    graphdef, state = nnx.split(model)
    logits, cache, cache_mask, pos = generate.prefill(graphdef, state, jnp.asarray(ids), jnp.asarray(mask),
                                                      max_new_tokens=max_new_tokens)
    for _ in range(max_new_tokens):
        host = np.asarray(logits, np.float32)
        feed = [row.next_token(host[r]) for r, row in enumerate(rows)]
        if all(t is None for t in feed):
            break
        tok = np.full(ids.shape[0], pad, np.int32)
        tok[:len(feed)] = [pad if t is None else t for t in feed]
        logits, cache = generate.extend(graphdef, state, jnp.asarray(tok), cache_mask, cache, pos)
        pos = pos + 1
    return [row.tokens for row in rows]


@functools.lru_cache(maxsize=8)
def _vocabulary(tokenizer, vocab_size: int) -> Vocabulary:
    """Decodes every token once per tokenizer (keyed by identity), not per call."""
    return Vocabulary(tokenizer, vocab_size)
