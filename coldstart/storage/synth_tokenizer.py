"""A synthetic tokenizer for a synthetic checkpoint: a byte-level BPE trained offline on seeded pseudo-words
(no network on the GPU machines or in CI), its vocab stretched to the model's so every id decodes, saved with
a chat template. tokenizers and transformers are imported only when one is written."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coldstart.registry import Architecture

MAX_TOKENIZER_VOCAB = 8192
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0..3: bos=1, eos=2 as in Llama-2 and the tiny model
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def tokenizer_vocab_size(arch: Architecture) -> int:
    # The tokenizer may be smaller than the embedding: vLLM only needs ids < vocab_size, and training an
    # exact 152k-token BPE would take minutes for nothing that affects start-up.
    return min(arch.vocab_size, MAX_TOKENIZER_VOCAB)


def _synthetic_corpus(seed: int, num_sentences: int) -> Iterator[str]:
    """Seeded pseudo-words with a Zipf-like frequency: enough distinct frequent pairs for 8k BPE merges."""
    rng = random.Random(seed)
    # fmt: off
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
              "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "sk", "st", "str", "th", "tr"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "oo", "ou", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "nt", "rs", "st", "ck", "x"]
    # fmt: on
    words = []
    for _ in range(20000):
        word = "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(rng.randint(1, 4)))
        words.append(word.capitalize() if rng.random() < 0.1 else word)
    weights = [1.0 / (rank + 10) for rank in range(len(words))]
    punct = [".", ".", ".", "?", "!", ",", ";", ":"]
    for _ in range(num_sentences):
        sentence = " ".join(rng.choices(words, weights, k=rng.randint(4, 18)))
        if rng.random() < 0.2:
            sentence += f" {rng.randint(0, 99999)}"
        yield sentence + rng.choice(punct)


def _train_tokenizer(vocab_size: int, seed: int) -> Any:
    from tokenizers import Tokenizer

    # A fresh object each call: PreTrainedTokenizerFast changes the one it is given (padding, truncation).
    return Tokenizer.from_str(_trained_tokenizer_json(vocab_size, seed))


@functools.lru_cache(maxsize=8)
def _trained_tokenizer_json(vocab_size: int, seed: int) -> str:
    """Training is deterministic for a (size, seed), so one process trains each tokenizer once."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"a byte-level BPE needs at least {len(SPECIAL_TOKENS) + 256} tokens, got {vocab_size}")
    num_sentences = 4000
    while True:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_synthetic_corpus(seed, num_sentences), trainer=trainer)
        if tok.get_vocab_size() >= vocab_size:
            return tok.to_str()
        if num_sentences >= 256_000:
            raise RuntimeError(
                f"synthetic corpus of {num_sentences} sentences gave only {tok.get_vocab_size()} of "
                f"{vocab_size} BPE tokens"
            )
        num_sentences *= 4


def _extend_vocab(tok: Any, model_vocab: int) -> Any:
    """A copy of the trained BPE whose vocab also holds every id up to the model's vocab size.

    Random weights sample any id below ``vocab_size``; an id the tokenizer does not know detokenizes to
    nothing, and the first request then streams no text at all (seen on the GPU with qwen-3-0.6b: 152k
    ids, 8k tokenizer). The fillers go into the BPE vocab itself, not as added tokens: 140k added tokens
    made the tokenizer load in 6.5 s, which would pollute the start-up being measured. Merges never reach
    them, so encoding is unchanged; decoding is a table lookup ("x12345", ASCII, so byte-level decodes it).
    """
    from tokenizers import Tokenizer

    body = json.loads(tok.to_str())
    vocab = body["model"]["vocab"]
    used = [*vocab.values(), *(t["id"] for t in body.get("added_tokens", []))]
    for i in range(max(used) + 1, model_vocab):
        vocab[f"x{i}"] = i
    return Tokenizer.from_str(json.dumps(body))


def write_tokenizer(
    folder: Path, vocab_size: int, seed: int, model_max_length: int, model_vocab: int | None = None
) -> tuple[int, int, int]:
    """Save tokenizer files; returns (vocab size, bos id, eos id)."""
    from transformers import PreTrainedTokenizerFast

    tok = _train_tokenizer(vocab_size, seed)
    if model_vocab and model_vocab > tok.get_vocab_size():
        tok = _extend_vocab(tok, model_vocab)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
    )
    fast.save_pretrained(folder)
    # transformers 5 puts the template in chat_template.jinja; older readers (and some vLLM paths) only
    # look in tokenizer_config.json, so it goes in both.
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    bos, eos = fast.convert_tokens_to_ids(["<s>", "</s>"])
    return tok.get_vocab_size(), bos, eos
