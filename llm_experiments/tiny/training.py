"""Tiny Llama and Qwen2 models trained on CPU on a synthetic fact world, cached by path.

The recipe (TINY-MODELS.md's third pilot, docs/fact-world.md): a word-level tokenizer over the
world's vocabulary, hidden 128, 4 layers, d_ff 1024, AdamW lr 3e-3, batch 64, weight decay 0.1
(keeps the early layers' residual norms in a normal range, which subject-position edits need),
a linear warm-up, a constant learning rate for most of training (the object loss sits on a
plateau until the model starts using the subject's identity: decaying early keeps it there), then
a linear decay to zero. Training length is given in epochs over the world's corpus, so a bigger
world trains proportionally longer.

A cache directory holds the model (``config.json``, ``model.safetensors``), the tokenizer (both via
``save_pretrained``), ``train_metrics.jsonl`` (the loss curve) and ``tiny_model.json`` (the world
config, the training config, the accuracy reached, the time, versions and a hash of the weights).
:func:`train_or_load` reuses a cache whose world and training configs match and refuses any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_experiments.data.world import (
    WORLD_VERSION,
    World,
    WorldConfig,
    WorldConfigError,
)
from llm_experiments.model.tokens import pad_batch
from rlsedit.config import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Config, ConfigError, between, one_of

ARCHS = ("llama", "qwen2")
METADATA_FILE = "tiny_model.json"
METRICS_FILE = "train_metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"


class TrainConfigError(ConfigError):
    """A training configuration that cannot be used (the message names the field)."""


class CacheMismatchError(RuntimeError):
    """A cache directory holds a model trained with another world or training config (or no model)."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """Architecture and optimisation of a tiny model. Defaults: the recipe of the third pilot.

    Attributes:
        arch: ``"llama"`` (LlamaForCausalLM) or ``"qwen2"`` (Qwen2ForCausalLM).
        hidden, layers, heads, d_ff: model sizes (d_ff is the MLP width, the edit keys' dimension).
        lr, batch_size, weight_decay: AdamW settings.
        warmup_steps: linear warm-up from 0 to ``lr``.
        constant_fraction: share of all steps (warm-up included) at the full ``lr``; the rest
            decays linearly to 0.
        epochs: passes over the world's corpus (steps = ceil(epochs * sequences / batch_size)).
        seed: initialisation and batch order.
    """

    arch: str = "llama"
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    d_ff: int = 1024
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.1
    warmup_steps: int = 50
    constant_fraction: float = 0.7
    epochs: float = 32.0
    seed: int = 0

    error = TrainConfigError

    def validate(self) -> None:
        self.require(one_of(ARCHS), "arch")
        self.require(POSITIVE_INT, "hidden", "layers", "heads", "d_ff", "batch_size")
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise self.bad("heads", f"must split hidden={self.hidden} into heads of an even size (rotary embeddings)")
        self.require(POSITIVE, "lr", "epochs")
        self.require(NON_NEGATIVE, "weight_decay")
        self.require(NON_NEGATIVE_INT, "warmup_steps", "seed")
        self.require(between(0.0, 1.0), "constant_fraction")

    def steps_for(self, n_sequences: int) -> int:
        return max(1, math.ceil(self.epochs * n_sequences / self.batch_size))


# A world and model small enough to train in seconds (tests, smoke runs). Not a good edit target.
QUICK_WORLD = WorldConfig(n_people=16, n_relations=3, pool_size=4, renderings=4, question_fraction=0.5)
QUICK_TRAIN = TrainConfig(hidden=32, layers=2, heads=2, d_ff=128, lr=1e-2, batch_size=16, warmup_steps=10,
                          epochs=60.0)


@dataclass
class TinyModel:
    """A trained (or reloaded) tiny model with its tokenizer, world and metadata."""

    model: torch.nn.Module
    tokenizer: object
    world: World
    metadata: dict
    path: Path
    reused: bool


def lr_factor(step: int, total: int, warmup: int, constant_fraction: float) -> float:
    """The learning-rate multiplier at ``step`` (0-based): warm-up, constant, linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    flat_end = max(warmup, round(constant_fraction * total))
    if step < flat_end:
        return 1.0
    return max(0.0, (total - step) / max(1, total - flat_end))


def build_model(cfg: TrainConfig, vocab_size: int, tokenizer) -> torch.nn.Module:
    """A randomly initialised model of ``cfg.arch`` (seeded by ``cfg.seed``)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kwargs = dict(vocab_size=vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.d_ff,
                  num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                  max_position_embeddings=128, tie_word_embeddings=False,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    if cfg.arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**kwargs))
    return Qwen2ForCausalLM(Qwen2Config(**kwargs))


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text with ``<bos>`` in front (the word tokenizer adds no special tokens)."""
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *ids] for ids in enc]


@torch.no_grad()
def probe_accuracy(model, tokenizer, probes: list[tuple[str, str]], *, batch_size: int = 256) -> float:
    """Share of (prompt, object) probes whose object is the model's top next token after the prompt."""
    if not probes:
        return float("nan")
    model.eval()
    seqs = encode(tokenizer, [p for p, _ in probes])
    targets = torch.tensor(tokenizer([o for _, o in probes], add_special_tokens=False)["input_ids"])[:, 0]
    correct = 0
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start:start + batch_size]
        ids, mask = pad_batch(chunk, tokenizer.pad_token_id, "cpu")
        logits = model(input_ids=ids, attention_mask=mask).logits  # (b, n, vocab)
        last = mask.sum(1) - 1
        pred = logits[torch.arange(len(chunk)), last].argmax(-1)
        correct += int((pred == targets[start:start + len(chunk)]).sum())
    return correct / len(seqs)


@torch.no_grad()
def subject_hidden_norms(model, tokenizer, world: World, *, n: int = 64) -> list[float]:
    """Mean norm of the residual stream after each layer at the subject's last token (first n people)."""
    names = list(world.people[:n])
    seqs = encode(tokenizer, names)
    ids, mask = pad_batch(seqs, tokenizer.pad_token_id, "cpu")
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    last = mask.sum(1) - 1
    return [float(h[torch.arange(len(names)), last].norm(dim=-1).mean()) for h in out.hidden_states]


def evaluate(model, tokenizer, world: World) -> dict[str, float]:
    """Accuracy on trained wordings, held-out wordings and held-out questions (every fact)."""
    return {kind: probe_accuracy(model, tokenizer, world.probes(kind)) for kind in ("trained", "heldout", "question")}


def train(world: World, cfg: TrainConfig, *, progress: bool = True, log=None) -> tuple[torch.nn.Module, object, dict]:
    """Train a tiny model on ``world`` and return (model, tokenizer, training record)."""
    from tqdm.auto import tqdm

    from llm_experiments.model.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(world.vocabulary())
    model = build_model(cfg, len(tokenizer), tokenizer)
    texts = world.training_texts()
    seqs = encode(tokenizer, texts)
    if any(tokenizer.unk_token_id in s for s in seqs):  # pragma: no cover - a generator bug
        raise WorldConfigError("the world's texts contain words outside its vocabulary")
    seqs = [[*s, tokenizer.eos_token_id] for s in seqs]
    steps = cfg.steps_for(len(seqs))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, cfg.warmup_steps, cfg.constant_fraction))
    g = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {cfg.arch}", disable=not progress, mininterval=2.0)
    for step in bar:
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(seqs), generator=g).tolist()
        batch, order = order[: cfg.batch_size], order[cfg.batch_size:]
        ids, mask = pad_batch([seqs[i] for i in batch], tokenizer.pad_token_id, "cpu")
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if log is not None:
                log({"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                     "seconds": time.perf_counter() - start})
    seconds = time.perf_counter() - start
    model.eval()
    record = {"steps": steps, "sequences": len(seqs), "train_seconds": seconds, "final_loss": loss.item()}
    return model, tokenizer, record


def _identity(world_config: WorldConfig, train_config: TrainConfig) -> dict:
    return {"world_version": WORLD_VERSION, "world_config": world_config.to_dict(),
            "train_config": train_config.to_dict()}


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_metadata(path: str | Path) -> dict:
    """The metadata of the tiny model cached in ``path`` (:class:`CacheMismatchError` if there is none)."""
    meta = Path(path) / METADATA_FILE
    if not meta.is_file():
        raise CacheMismatchError(f"{path} holds no tiny model ({METADATA_FILE} missing)")
    return json.loads(meta.read_text())


def load_tiny_model(path: str | Path) -> TinyModel:
    """Load a cached tiny model, checking its weights against the hash in its metadata."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    meta = read_metadata(path)
    sha = _file_sha256(path / WEIGHTS_FILE)
    if sha != meta["weights_sha256"]:
        raise CacheMismatchError(f"{path / WEIGHTS_FILE}: sha256 {sha[:16]}... differs from the metadata's "
                                 f"{meta['weights_sha256'][:16]}... (file changed after training); retrain")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    if meta.get("world_version") != WORLD_VERSION:
        raise CacheMismatchError(f"{path}: trained on world_version {meta.get('world_version')!r}, this "
                                 f"generator makes version {WORLD_VERSION}; retrain")
    world = World(WorldConfig.from_dict(meta["world_config"]))
    return TinyModel(model, tokenizer, world, meta, path, reused=True)


def train_or_load(world_config: WorldConfig, train_config: TrainConfig, out: str | Path, *,
                  progress: bool = True) -> TinyModel:
    """Reuse the model cached in ``out`` if it was trained with these configs, else train and cache it.

    Raises :class:`CacheMismatchError` when ``out`` holds a model trained with other configs, or
    files that are not a tiny model: pick another directory or delete that one.
    """
    out = Path(out)
    identity = _identity(world_config, train_config)
    if (out / METADATA_FILE).is_file():
        meta = read_metadata(out)
        if meta.get("digest") != _digest(identity) or meta.get("world_version") != WORLD_VERSION:
            diffs = [f"world_version: cached {meta.get('world_version')!r}, requested {WORLD_VERSION}"]
            diffs = diffs if meta.get("world_version") != WORLD_VERSION else []
            diffs += [f"{part}.{k}: cached {meta.get(part, {}).get(k)!r}, requested {v!r}"
                     for part in ("world_config", "train_config") for k, v in identity[part].items()
                     if meta.get(part, {}).get(k) != v]
            raise CacheMismatchError(f"{out} holds a tiny model trained with other settings ("
                                     + "; ".join(diffs) + "); use another --out or delete that directory")
        return load_tiny_model(out)
    if out.exists() and any(out.iterdir()):
        raise CacheMismatchError(f"{out} is not empty and holds no tiny model ({METADATA_FILE} missing); "
                                 "use an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    world = World(world_config)
    with open(out / METRICS_FILE, "w") as metrics:
        def log(row: dict) -> None:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()

        model, tokenizer, record = train(world, train_config, progress=progress, log=log)
    t0 = time.perf_counter()
    accuracy = evaluate(model, tokenizer, world)
    eval_seconds = time.perf_counter() - t0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    import transformers

    meta = {
        **identity,
        "digest": _digest(identity),
        "n_facts": world_config.n_facts,
        "n_params": sum(p.numel() for p in model.parameters()),
        "accuracy": accuracy,
        **record,
        "eval_seconds": eval_seconds,
        "subject_hidden_norms": subject_hidden_norms(model, tokenizer, world),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "weights_sha256": _file_sha256(out / WEIGHTS_FILE),
    }
    (out / METADATA_FILE).write_text(json.dumps(meta, indent=1))
    return TinyModel(model, tokenizer, world, meta, out, reused=False)
