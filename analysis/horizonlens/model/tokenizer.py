"""Training a byte-level BPE tokenizer locally (no hub) for the sample checkpoint and test models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from horizonlens.model.render import SPECIAL_TOKENS


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, out_dir: Path | str | None = None) -> Any:
    """A byte-level BPE tokenizer with the Horizon Lens template markers as special tokens.

    Returns a `PreTrainedTokenizerFast`; saved to `out_dir` when given, so that
    `AutoTokenizer.from_pretrained(out_dir)` loads it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", *SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>")
    fast.add_special_tokens({"additional_special_tokens": [t for t in SPECIAL_TOKENS if t != "<|end|>"]})
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast
