"""The local model's tokenizer: byte-level BPE trained here, so any string is encodable.

Byte-level BPE starts from all 256 bytes, so an unseen column name or a non-ASCII value falls
back to smaller pieces instead of an unknown token. The literal placeholders are special
tokens: never split, never merged with their neighbours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.engine.tasks.hooks import PLACEHOLDERS

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK, *PLACEHOLDERS)
FILE_NAME = "tokenizer.json"
#: Pre-tokens: identifier-like runs (``order.total_usd``, ``eu-west-1``, a word with its leading
#: space), runs of other symbols (``":[{"``), whitespace. Merges never cross them, so a frequent
#: column name can become a single token.
_WORDS = r" ?[A-Za-z0-9_.\-]+| ?[^A-Za-z0-9_.\-\s]+|\s+"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer of at most ``vocab_size`` tokens trained on ``texts``."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_WORDS), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    """Write the tokenizer to ``directory``."""
    tokenizer.save(str(Path(directory) / FILE_NAME))


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer saved in ``directory``."""
    return Tokenizer.from_file(str(Path(directory) / FILE_NAME))


def fast_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """``tokenizer`` as a transformers tokenizer with its pad and end-of-sequence ids: what the
    trainer's collator pads batches with."""
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def encode(tokenizer: Tokenizer, texts: list[str], max_tokens: int, keep_end: bool = False) -> list[list[int]]:
    """Token ids of each text followed by end-of-sequence, at most ``max_tokens`` in all.

    A text that is too long loses its end, or its beginning with ``keep_end`` (a prompt's
    question comes last, after the column list).
    """
    room = max_tokens - 1
    out = []
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        ids = encoding.ids
        if len(ids) > room:
            ids = ids[len(ids) - room:] if keep_end else ids[:room]
        out.append(ids + [EOS_ID])
    return out


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Text of generated ids up to the first end-of-sequence, placeholders kept."""
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return tokenizer.decode([i for i in ids if i != PAD_ID], skip_special_tokens=False)
