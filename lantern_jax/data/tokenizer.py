"""A small byte-level BPE tokenizer trained on the domain corpus, for CPU-size models.

Tiny decoders trained from scratch on a laptop can't afford a 49k-152k vocabulary; a few thousand
merges learned from D_base's own text cover postings, profiles and Assessment JSON well. The
tokenizer speaks ChatML (`<|im_start|>`, `<|im_end|>`) with the same chat template as SmolLM2 /
Qwen2, so prompts and loss masks are built identically for every decoder.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, extra_tokens: Iterable[str] = ()):
    """Byte-level BPE (digits split individually) -> `transformers.PreTrainedTokenizerFast`;
    `extra_tokens` (e.g. `data.pointers.TOKENS`) are each one token on top of `vocab_size`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False)
    fast.add_tokens(list(extra_tokens))
    return fast


def load_or_train(path: str | os.PathLike, texts: Iterable[str], vocab_size: int = 4096):
    """The tokenizer saved at `path`, training and saving it first if it isn't there."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    path = os.fspath(path)
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        train_tokenizer(texts, vocab_size).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)
