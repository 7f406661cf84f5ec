"""The bytes behind each token id, for OpenAI-style logprobs.

OpenAI's `logprobs.content[i].bytes` are the UTF-8 bytes of token i, and clients (our teacher
client among them) locate a character of the text by summing token byte lengths. Byte-level BPE
tokens (ours, SmolLM2, Qwen2) are byte strings written with a printable stand-in alphabet; undoing
that alphabet gives each token's exact bytes, so joining the bytes of the generated tokens gives
the text exactly, even where a multi-byte character is split across tokens. Other tokenizers fall
back to decoding each token alone.
"""
from __future__ import annotations

import json


def _byte_level_alphabet() -> dict[str, int]:
    """Stand-in character -> byte. Printable Latin-1 bytes stand for themselves; the others
    (controls, space, a few more) take the code points from 256 upwards, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    alphabet = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            alphabet[chr(256 + shifted)] = b
            shifted += 1
    return alphabet


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders") or []]
    return "ByteLevel" in kinds


def token_bytes_table(tokenizer, vocab_size: int) -> list[bytes]:
    """`table[id]` = the bytes token `id` stands for (b"" for ids the tokenizer doesn't know,
    e.g. rows a model pads its embedding with). Added and special tokens are their own text."""
    size = max(vocab_size, len(tokenizer))
    table = [b""] * size
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
    if _is_byte_level(tokenizer):
        alphabet = _byte_level_alphabet()
        for piece, i in tokenizer.get_vocab().items():
            if i not in added and i < size:
                table[i] = bytes(alphabet[c] for c in piece if c in alphabet)
    else:
        for i in range(len(tokenizer)):
            if i not in added:
                table[i] = tokenizer.decode([i]).encode("utf-8")
    for i, content in added.items():
        if i < size:
            table[i] = content.encode("utf-8")
    return table
