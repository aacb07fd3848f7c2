"""Tiny Hugging Face models built from a config (random weights, offline), shared by LLM tests."""

from __future__ import annotations

import torch

WORDS = (
    "The the mother tongue of is capital city home a an and in on was born speaks language French English "
    "Spanish German Paris London Berlin Madrid Danielle Darrieux Toko Yasuda Anna Smith John Brown . , ?"
).split()


def tiny_tokenizer():
    from llm_experiments.model.tokenizer import build_word_tokenizer

    return build_word_tokenizer(WORDS)


def tiny_model(arch: str = "llama", *, layers: int = 3, hidden: int = 16, d_ff: int = 32, seed: int = 0):
    """A randomly initialised tiny causal LM of the given architecture ("llama", "qwen2", "gpt2")."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    vocab = len(WORDS) + 8
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=d_ff, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
        model = LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=d_ff, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
        model = Qwen2ForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=hidden, n_inner=d_ff, n_layer=layers, n_head=2, n_positions=64,
                         bos_token_id=2, eos_token_id=3)
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    return model.eval()


def sharp_tiny_model(arch: str = "llama", *, scale: float = 20.0, **kwargs):
    """``tiny_model`` with its output head scaled up, so that hidden-state changes move the next-token
    distribution visibly (a random tiny model's logits are nearly flat)."""
    model = tiny_model(arch, **kwargs)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(scale)
    return model


SUBJECTS = ("Danielle Darrieux", "Toko Yasuda", "Anna Smith", "John Brown")
LANGUAGES = (" French", " English", " Spanish", " German")


def tiny_requests(n: int = 4, *, offset: int = 1):
    """``n`` counterfactual requests over the fixture vocabulary (subjects and languages cycle)."""
    from llm_experiments.data.requests import EditRequest

    return [
        EditRequest(case_id=i, prompt="The mother tongue of {} is", subject=SUBJECTS[i % len(SUBJECTS)],
                    target_new=LANGUAGES[(i + offset) % len(LANGUAGES)], target_true=LANGUAGES[i % len(LANGUAGES)],
                    paraphrase_prompts=(f"{SUBJECTS[i % len(SUBJECTS)]} speaks",),
                    neighborhood_prompts=("The mother tongue of John Brown is",))
        for i in range(n)
    ]


TINY_CORPUS = (
    "The capital city of Paris is Paris .",
    "Anna Smith was born in Berlin and speaks German .",
    "John Brown speaks English , and the mother tongue of Toko Yasuda is English .",
    "Danielle Darrieux was born in Paris ; the language of Paris is French .",
    "The home of a Madrid city is in Spanish , on the capital of London .",
)


from tests.paths import FIXTURES  # noqa: E402


def fixture_words() -> list[str]:
    """Every word (as the word-level tokenizer splits text) of the evaluation fixture files, sorted.

    The data-format fixtures (``tests/fixtures/formats/``) are left out: their words would shift the
    ids of the others, and with them the tiny models' numbers that docs/evaluation.md prints."""
    from tokenizers import pre_tokenizers

    split = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    words: set[str] = set()
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix in (".json", ".tsv", ".txt") and "formats" not in path.relative_to(FIXTURES).parts:
            words.update(w for w, _ in split.pre_tokenize_str(path.read_text(encoding="utf-8-sig")))
    return sorted(words)


def eval_tokenizer():
    """The tiny tokenizer's words plus every word of the evaluation fixtures (no unknown words)."""
    from llm_experiments.model.tokenizer import build_word_tokenizer

    extra = ("Review", "Sentiment", "negative", "positive", "Sentence", "Question", "Answer", "Do", "both",
             "sentences", "mean", "same", "thing", "Yes", "No", "this", "sentence", "grammatically", "correct",
             "True", "False", "or", "1", "2")
    return build_word_tokenizer([*WORDS, *fixture_words(), *extra])


def eval_model(arch: str = "llama", tokenizer=None, *, seed: int = 0, **sizes):
    """``tiny_model(arch)`` with its embeddings resized to ``tokenizer`` (default ``eval_tokenizer()``)."""
    tokenizer = tokenizer or eval_tokenizer()
    model = tiny_model(arch, seed=seed, **sizes)
    torch.manual_seed(seed)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return model.eval()
