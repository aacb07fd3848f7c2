"""Word-level tokenizers built locally (no download), for tiny models and tests.

The result is a ``PreTrainedTokenizerFast``: it saves and loads with ``save_pretrained`` /
``from_pretrained`` and gives offset mappings, so code written for real checkpoints runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")


def build_word_tokenizer(words: Iterable[str]):
    """A whitespace/punctuation word-level tokenizer over ``words`` (plus the special tokens).

    Tokens carry no leading-space marker: " French" and "French" map to the same id, so targets
    written CounterFact-style with a leading space tokenize as expected.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for w in (*SPECIAL_TOKENS, *words):
        if w not in vocab:
            vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
