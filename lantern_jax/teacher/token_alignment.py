"""Cross-tokenizer alignment of one sequence: an API teacher's per-token top-k (strings in its own
tokenizer) onto the student's target tokens and vocabulary, with the mass that finds no student token
kept as tail.
student's target tokens and vocabulary, with the mass that finds no student token kept as tail.

The student's target is its own tokenization of the teacher's text. Teacher tokens and student
tokens both tile the text's bytes, so every position is located by byte offset.

**Mapping rule.** Take a student token spanning bytes [c, d) that starts where teacher token j
starts. Each teacher candidate at j is a continuation X of the text prefix with probability p:
  - the teacher's chosen token, if it reaches d, is the student's target token itself;
  - if it stops short of d, its mass is carried into teacher position j+1 (chain rule), whose
    candidates become X = text[c:a_{j+1}] + candidate with probability p_chosen·p, and so on until
    the chosen path reaches d;
  - any other candidate maps to the student token whose bytes equal X, else to the first token of
    the student's own tokenization of X (which starts X). Candidates tokenised without what would
    follow them is the one approximation: an X the student would merge further counts for its
    shorter token. A candidate whose bytes are unknown (a partial UTF-8 string without `bytes`)
    or that the student cannot spell maps nowhere.
Mass mapping to the same student id is summed (in log space, so one contribution stays bit-exact);
the k most probable ids are kept. What is left, `tail = 1 - Σ exp(topk_logprobs)`, is exactly the
mass that mapped nowhere + the teacher's own mass beyond its top-k (1 - Σ candidates at every
position walked) + mapped mass cut by k; `AlignedSequence` keeps the three parts per position.

**Boundary policy.** A student token that starts inside a teacher token has no teacher
distribution: conditioning the teacher on a partial token needs the mass of every teacher token
sharing that prefix, which the top-k does not give. Such positions get `kd_mask = 0` and a
hard-label row (the target id at logprob 0, i.e. probability 1), so a loss that ignores the mask
degrades to cross-entropy there. The appended end-of-turn token is handled the same way.

Rows are padded to k with distinct ids the student almost never predicts (special tokens, then the
last BPE merges) at logprob -inf (probability 0): a repeated id would count the student's mass
twice in the sparse losses. D_t has no kd_mask field, so `write_dataset` drops it; it stays
recoverable as rows with one entry at logprob 0.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

from lantern_jax.data.schema import FIT_LEVELS
from lantern_jax.data.token_bytes import token_bytes_table
from lantern_jax.teacher.logprobs import fit_level_probs


PAD_LOGPROB = -math.inf
_REPLACEMENT = "\ufffd"  # what a partial UTF-8 token decodes to
# The bytes one U+FFFD stands for: a lead byte with the continuation bytes cut off, or a stray one.
_PARTIAL = rb"(?:[\xc0-\xff][\x80-\xbf]{0,2}|[\x80-\xbf])"


class AlignmentError(ValueError):
    """A record or tokenizer alignment can't use; str() is one line naming the record."""


class StudentVocab:
    """What alignment needs from the student's tokenizer: a `transformers` fast tokenizer, or a
    tiktoken encoding (e.g. `prompts.qwen_encoding()`, the Qwen ranks the simulated teacher uses)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._first: dict[bytes, int | None] = {}
        self._bytes: dict[int, bytes] = {}
        tiktoken = next((t for t in (tokenizer, getattr(tokenizer, "_tokenizer", None))
                         if hasattr(t, "decode_single_token_bytes")), None)
        if tiktoken is not None:
            self._init_tiktoken(tiktoken)
        elif hasattr(tokenizer, "backend_tokenizer"):
            self._init_hf(tokenizer)
        else:
            raise AlignmentError(f"student tokenizer {type(tokenizer).__name__}: expected a transformers fast "
                                 "tokenizer or a tiktoken encoding")

    def _init_tiktoken(self, enc) -> None:
        self.size = enc.n_vocab
        self.encode = lambda text: enc.encode(text, allowed_special="all")  # no NFC: bytes must survive
        self._token_bytes = enc.decode_single_token_bytes
        self._specials = sorted(enc.encode_single_token(s) for s in enc.special_tokens_set)

        def exact(x: bytes) -> int | None:
            try:
                return enc.encode_single_token(x)
            except KeyError:
                return None

        self.exact = exact
        end = b"<|im_end|>" if "<|im_end|>" in enc.special_tokens_set else None
        self.eos_id = exact(end) if end else getattr(enc, "eot_token", None)

    def _init_hf(self, tok) -> None:
        backend = tok.backend_tokenizer
        table = token_bytes_table(tok, len(tok))
        spell = table.__getitem__
        names = {i for i in tok.get_vocab().values()}
        by_bytes = {}
        for i in sorted(names):  # the lowest id wins where two pieces spell the same bytes
            by_bytes.setdefault(spell(i), i)
        self.size = len(tok)
        self.encode = lambda text: backend.encode(text, add_special_tokens=False).ids
        self._token_bytes = spell
        self.exact = by_bytes.get
        self.eos_id = tok.eos_token_id
        special = [i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", False)]
        self._specials = sorted(set(tok.all_special_ids) | set(special))

    def token_bytes(self, token_id: int) -> bytes:
        if token_id not in self._bytes:
            self._bytes[token_id] = self._token_bytes(token_id)
        return self._bytes[token_id]

    def first_token(self, x: bytes) -> int | None:
        """The student token a continuation starting with `x` begins with (module docstring)."""
        if x not in self._first:
            self._first[x] = self._lookup(x)
        return self._first[x]

    def _lookup(self, x: bytes) -> int | None:
        exact = self.exact(x)
        if exact is not None:
            return exact
        try:
            ids = self.encode(x.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        return ids[0] if ids and x.startswith(self.token_bytes(ids[0])) else None

    def pad_ids(self, used: set[int], n: int) -> list[int]:
        """`n` distinct ids outside `used`: specials first, then the rarest (last-merged) tokens."""
        out = []
        for i in itertools.chain(self._specials, range(self.size - 1, -1, -1)):
            if len(out) == n:
                break
            if i not in used:
                out.append(i)
                used.add(i)
        return out


@dataclasses.dataclass
class AlignedSequence:
    """The student's target tokens and, per token, the teacher's top-k over the student vocabulary."""
    text: str
    token_ids: np.ndarray  # [T] int32: the student's tokenization of `text` (+ end of turn)
    topk_ids: np.ndarray  # [T, k] int32, student vocabulary
    topk_logprobs: np.ndarray  # [T, k] float64; pads at -inf
    kd_mask: np.ndarray  # [T] bool: a teacher distribution exists here (token boundary)
    eos_appended: bool  # token_ids ends with the student's end-of-turn (a hard-label row)
    unmapped: np.ndarray  # [T] teacher candidate mass with no student token
    teacher_missing: np.ndarray  # [T] teacher mass beyond its own top-k along the walk
    truncated: np.ndarray  # [T] mapped mass cut by k
    prefix_mapped: np.ndarray  # [T] mass of candidates mapped to a student token shorter than them
                               # (kept in the distribution; a measure of how much rests on the prefix rule)

    @property
    def tail(self) -> np.ndarray:
        """[T] 1 - Σ aligned probabilities (0 on hard-label rows)."""
        return 1.0 - np.exp(self.topk_logprobs).sum(-1)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    data: bytes | None  # None: bytes unknown
    logprob: float
    chosen: bool


@dataclasses.dataclass(frozen=True)
class _TeacherToken:
    start: int
    end: int
    candidates: tuple[_Candidate, ...]


def _candidate_bytes(entry: Mapping[str, Any]) -> bytes | None:
    raw = entry.get("bytes")
    if isinstance(raw, list):
        return bytes(raw)
    token = entry["token"]
    return None if _REPLACEMENT in token else token.encode("utf-8")


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        raise AlignmentError(f"{where}: expected an object with a string 'token'")
    lp = entry.get("logprob")
    if isinstance(lp, bool) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-6:
        raise AlignmentError(f"{where}: 'logprob' must be a number <= 0, got {lp!r}")
    raw = entry.get("bytes")
    if raw is not None and not (isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw)):
        raise AlignmentError(f"{where}: 'bytes' must be a list of byte values")


def _spans(content: Sequence[Mapping[str, Any]], data: bytes, where: str) -> list[tuple[int, int]]:
    """Byte span of every teacher token in `data`. Tokens with unknown bytes (partial UTF-8 read as
    U+FFFD) are placed by matching the text around them."""
    spans, pos, i = [], 0, 0
    while i < len(content):
        known = _candidate_bytes(content[i])
        if known is not None:
            if not data.startswith(known, pos):
                raise AlignmentError(f"{where}: teacher token {i} {content[i]['token']!r} does not match "
                                     f"the text at byte {pos}")
            spans.append((pos, pos + len(known)))
            pos, i = pos + len(known), i + 1
            continue
        j = i
        while j < len(content) and _candidate_bytes(content[j]) is None:
            j += 1
        groups = b"".join(b"(" + _PARTIAL.join(re.escape(part.encode("utf-8"))
                                                          for part in content[m]["token"].split(_REPLACEMENT)) + b")"
                          for m in range(i, j))
        after = _candidate_bytes(content[j]) if j < len(content) else None
        match = re.compile(groups + (b"(?=" + re.escape(after) + b")" if after else b"\\Z"), re.S).match(data, pos)
        if match is None:
            raise AlignmentError(f"{where}: teacher tokens {i}-{j - 1} do not match the text at byte {pos}")
        spans.extend(match.span(g) for g in range(1, j - i + 1))
        pos, i = match.end(), j
    if pos != len(data):
        raise AlignmentError(f"{where}: teacher tokens spell {pos} of the text's {len(data)} bytes")
    return spans


def _teacher_tokens(content: Sequence[Mapping[str, Any]], data: bytes, where: str) -> list[_TeacherToken]:
    if not isinstance(content, list) or not content:
        raise AlignmentError(f"{where}: no token logprobs (label with logprobs on)")
    for i, entry in enumerate(content):
        _check_entry(entry, f"{where}: logprobs[{i}]")
        alts = entry.get("top_logprobs") or []
        if not isinstance(alts, list):
            raise AlignmentError(f"{where}: logprobs[{i}].top_logprobs must be a list")
        for n, alt in enumerate(alts):
            _check_entry(alt, f"{where}: logprobs[{i}].top_logprobs[{n}]")
    out = []
    for entry, (start, end) in zip(content, _spans(content, data, where)):
        chosen_bytes = data[start:end]
        candidates, found = [], False
        for alt in entry.get("top_logprobs") or []:
            is_chosen = (not found and alt["token"] == entry["token"]
                         and abs(float(alt["logprob"]) - float(entry["logprob"])) <= 1e-6)
            found |= is_chosen
            candidates.append(_Candidate(chosen_bytes if is_chosen else _candidate_bytes(alt),
                                         float(alt["logprob"]), is_chosen))
        if not found:  # sampled from outside the top-k: still a known piece of the distribution
            candidates.append(_Candidate(chosen_bytes, float(entry["logprob"]), True))
        out.append(_TeacherToken(start, end, tuple(candidates)))
    return out


def _logsumexp(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def _walk(teacher: list[_TeacherToken], j: int, start: int, end: int, target: int, data: bytes,
          vocab: StudentVocab) -> tuple[dict[int, float], float, float, float]:
    """For the student token [start, end) starting at teacher token j: (student id -> logprob,
    unmapped mass, teacher-missing mass, mass of candidates longer than the token they map to)."""
    mass: dict[int, list[float]] = {}
    unmapped = missing = shorter = 0.0
    path = 0.0  # log-probability of the chosen teacher tokens walked so far
    while True:
        token, carry = teacher[j], None
        prefix = data[start:token.start]
        missing += math.exp(path) * (1.0 - sum(math.exp(c.logprob) for c in token.candidates))
        for c in token.candidates:
            if c.chosen and token.end < end:
                carry = c.logprob
                continue
            lp = path + c.logprob
            student = target if c.chosen else (vocab.first_token(prefix + c.data) if c.data is not None else None)
            if student is None:
                unmapped += math.exp(lp)
                continue
            mass.setdefault(student, []).append(lp)
            if len(vocab.token_bytes(student)) < len(prefix) + len(c.data):
                shorter += math.exp(lp)
        if carry is None:
            return {i: _logsumexp(v) for i, v in mass.items()}, unmapped, missing, shorter
        path, j = path + carry, j + 1


def align_to_student(teacher_tokens: Sequence[Mapping[str, Any]], student_tokenizer, *, k: int,
                     text: str | None = None, append_eos: bool = False, where: str = "record") -> AlignedSequence:
    """**API** The teacher's `logprobs.content` (OpenAI-style entries) mapped onto the student's
    tokenization of `text` (default: the tokens' concatenation); see the module docstring."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    vocab = student_tokenizer if isinstance(student_tokenizer, StudentVocab) else StudentVocab(student_tokenizer)
    if text is None:
        text = "".join(str(e.get("token", "")) if isinstance(e, Mapping) else "" for e in teacher_tokens or [])
    data = text.encode("utf-8")
    teacher = _teacher_tokens(teacher_tokens, data, where)
    starts = {t.start: j for j, t in enumerate(teacher)}
    ids = list(vocab.encode(text))
    if b"".join(vocab.token_bytes(i) for i in ids) != data:
        raise AlignmentError(f"{where}: the student tokenizer does not reproduce the text byte for byte "
                             "(alignment needs a byte-level BPE)")
    eos = append_eos and vocab.eos_id is not None
    T = len(ids) + eos
    out = AlignedSequence(text, np.asarray(ids + [vocab.eos_id] * eos, np.int32), np.zeros((T, k), np.int32),
                          np.full((T, k), PAD_LOGPROB), np.zeros(T, bool), eos, *(np.zeros(T) for _ in range(4)))
    pos = 0
    for i, sid in enumerate(out.token_ids.tolist()):
        start = pos
        pos += len(vocab.token_bytes(sid)) if i < len(ids) else 0
        j = starts.get(start) if i < len(ids) else None
        if j is None:  # inside a teacher token, or the appended end of turn: hard label
            row = {sid: 0.0}
        else:
            row, out.unmapped[i], out.teacher_missing[i], out.prefix_mapped[i] = _walk(
                teacher, j, start, pos, sid, data, vocab)
            out.kd_mask[i] = True
        ranked = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))
        out.truncated[i] = sum(math.exp(lp) for _, lp in ranked[k:])
        kept = ranked[:k]
        pads = vocab.pad_ids({t for t, _ in kept}, k - len(kept))
        out.topk_ids[i] = [t for t, _ in kept] + pads
        out.topk_logprobs[i, :len(kept)] = [lp for _, lp in kept]
    return out


@dataclasses.dataclass(frozen=True)
class LabelAlignment:
    probs: np.ndarray  # [3] float32 in FIT_LEVELS order (low, medium, high)
    unmatched: float  # teacher mass at the fit-level token on no level word (incl. beyond its top-k)
    source: str  # "teacher" (label-word probabilities) | "hard" (parsed fit_level) | "none" (uniform)


def align_label_probs(record: Mapping[str, Any]) -> LabelAlignment:
    """**API** Fit-level soft label from a teacher record: the label-word probabilities `label.py`
    stored (read over all top_logprobs the API returned), else read from the record's token
    logprobs, else the parsed fit level as a one-hot, else uniform. The unmatched mass is what the
    soft label renormalises away (1 for the fallbacks)."""
    probs = record.get("fit_probs") or fit_level_probs(record.get("logprobs"), record.get("raw_text") or "")
    if probs:
        mass = float(probs.get("mass", 1.0))
        return LabelAlignment(np.asarray([probs[lvl] for lvl in FIT_LEVELS], np.float32), 1.0 - mass, "teacher")
    level = (record.get("assessment") or {}).get("fit_level")
    if level in FIT_LEVELS:
        return LabelAlignment(np.eye(len(FIT_LEVELS), dtype=np.float32)[FIT_LEVELS.index(level)], 1.0, "hard")
    return LabelAlignment(np.full(len(FIT_LEVELS), 1 / len(FIT_LEVELS), np.float32), 1.0, "none")
