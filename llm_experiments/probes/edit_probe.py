"""PROBE (to be replaced by the llm-core machinery): is a cached tiny model a usable edit target?

Uses only the solver core (:class:`rlsedit.RLSEditor`, :class:`rlsedit.MEMITEditor`) on one layer's
``mlp.down_proj`` (W = weight.T, row convention), with plain forward hooks written here:

1. key k: the input of ``down_proj`` at the key position (``subject``: the subject's last token,
   found from the tokenizer's offset mapping; ``last``: the prompt's last token);
2. target value v = k W + delta, delta optimised by Adam on the layer's output at that position
   for the new object's likelihood, with a KL term keeping the person's other attributes (the
   prompts of their other relations) and the norm of delta clamped to ``clamp`` times the norm
   of the residual stream there;
3. anchor: E[k k^T] over keys at every position of a sample of the training corpus, weight mu;
4. single edits (each from the unedited model) and one sequential stream in batches, RLSEditor
   (C carried over the stream) against MEMITEditor (prior only, per batch).

Measures (CounterFact-style, single-token objects): efficacy (p(new) > p(true) on the edit
prompt), paraphrase success (same on held-out wordings), question success (same on the question
form), other attributes kept (top-1 still the true object for the edited person's other
relations, among those the model knew), never-edited facts kept (same for people never edited).

    python -m llm_experiments.probes.edit_probe --model DIR --out RESULTS_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llm_experiments.requests import EditRequest
from llm_experiments.tiny_models import TinyModel, load_tiny_model
from rlsedit import MEMITEditor, RLSEditor
from rlsedit.cli import thread_count


@dataclass(frozen=True)
class ProbeConfig:
    layer: int = 0
    position: str = "subject"  # "subject" (subject's last token) or "last" (prompt's last token)
    n_single: int = 50
    n_stream: int = 300
    batch_size: int = 50
    steps: int = 80
    lr: float = 0.3
    kl_weight: float = 1.0
    clamp: float = 0.75
    mu: float = 100.0
    lam: float = 1e-3
    anchor_texts: int = 500
    n_control: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.position not in ("subject", "last"):
            raise ValueError(f"ProbeConfig.position={self.position!r}: use 'subject' or 'last'")
        for name in ("n_single", "n_stream", "batch_size", "steps", "anchor_texts", "n_control"):
            if getattr(self, name) < 0 or (name in ("batch_size", "anchor_texts") and getattr(self, name) < 1):
                raise ValueError(f"ProbeConfig.{name}={getattr(self, name)!r} is out of range")
        if self.mu < 0 or self.lam < 0 or self.clamp <= 0 or self.lr <= 0:
            raise ValueError("ProbeConfig: mu, lam must be >= 0; clamp, lr > 0")


# ---- tokens and positions ---------------------------------------------------------------------

def encode_prompt(tok, prompt: str, subject: str, position: str) -> tuple[list[int], int]:
    """Token ids ("<bos>" + prompt) and the key position (from the offset mapping, not string counts)."""
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids = [tok.bos_token_id, *enc["input_ids"]]
    if position == "last":
        return ids, len(ids) - 1
    start = prompt.index(subject)
    end = start + len(subject)
    inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]
    return ids, inside[-1] + 1  # +1 for <bos>


def pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def token_id(tok, word: str) -> int:
    ids = tok(word.strip(), add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"object {word!r} is not one token"
    return ids[0]


# ---- hooks ------------------------------------------------------------------------------------

@contextlib.contextmanager
def capture_inputs(module: torch.nn.Module):
    """Collect the module's input tensors while inside the block; the hook is always removed."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def add_to_output(module: torch.nn.Module, rows: torch.Tensor, cols: torch.Tensor, delta: torch.Tensor):
    """Add ``delta`` (d_v,) to the module's output at (rows[i], cols[i]); the hook is always removed."""
    def hook(m, inp, out):
        out = out.clone()
        out[rows, cols] = out[rows, cols] + delta
        return out

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---- the probe --------------------------------------------------------------------------------

class Probe:
    def __init__(self, tiny: TinyModel, cfg: ProbeConfig):
        self.tiny, self.cfg = tiny, cfg
        self.model, self.tok, self.world = tiny.model.eval(), tiny.tokenizer, tiny.world
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.site = self.model.model.layers[cfg.layer].mlp.down_proj
        assert self.site.weight.shape == (self.model.config.hidden_size, self.model.config.intermediate_size)
        self.W0 = self.site.weight.detach().T.double().clone()  # (d_k, d_v), row convention

    def set_W(self, W: torch.Tensor) -> None:
        self.site.weight.data.copy_(W.T.to(self.site.weight.dtype))

    @torch.no_grad()
    def next_token_logprobs(self, prompts: list[str]) -> torch.Tensor:
        seqs = [[self.tok.bos_token_id, *self.tok(p, add_special_tokens=False)["input_ids"]] for p in prompts]
        out = []
        for s in range(0, len(seqs), 256):
            ids, mask = pad(seqs[s:s + 256], self.tok.pad_token_id)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            out.append(torch.log_softmax(logits[torch.arange(len(ids)), mask.sum(1) - 1], -1))
        return torch.cat(out)

    @torch.no_grad()
    def keys(self, prompts: list[str], subjects: list[str]) -> torch.Tensor:
        encs = [encode_prompt(self.tok, p, s, self.cfg.position) for p, s in zip(prompts, subjects, strict=True)]
        ids, mask = pad([e[0] for e in encs], self.tok.pad_token_id)
        with capture_inputs(self.site) as seen:
            self.model(input_ids=ids, attention_mask=mask)
        pos = torch.tensor([e[1] for e in encs])
        return seen[0][torch.arange(len(encs)), pos].double()  # (u, d_k)

    @torch.no_grad()
    def anchor_gram(self) -> torch.Tensor:
        """E[k k^T] over every position of a sample of the training corpus."""
        texts = random.Random(self.cfg.seed).sample(self.world.training_texts(),
                                                    min(self.cfg.anchor_texts, len(self.world.training_texts())))
        G = torch.zeros(self.W0.shape[0], self.W0.shape[0], dtype=torch.float64)
        n = 0
        for s in range(0, len(texts), 128):
            enc = self.tok(texts[s:s + 128], add_special_tokens=False)["input_ids"]
            seqs = [[self.tok.bos_token_id, *x] for x in enc]
            ids, mask = pad(seqs, self.tok.pad_token_id)
            with capture_inputs(self.site) as seen:
                self.model(input_ids=ids, attention_mask=mask)
            k = seen[0][mask.bool()].double()  # (tokens, d_k)
            G += k.T @ k
            n += k.shape[0]
        return G / n

    @torch.no_grad()
    def delta_efficacy(self, req: EditRequest, delta: torch.Tensor) -> bool:
        """Whether the delta alone (added at the key position, no weight change) makes p(new) > p(true)."""
        ids, pos = encode_prompt(self.tok, req.full_prompt, req.subject, self.cfg.position)
        with add_to_output(self.site, torch.tensor([0]), torch.tensor([pos]), delta.float()):
            lp = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        return bool(lp[token_id(self.tok, req.target_new)] > lp[token_id(self.tok, req.target_true)])

    def target_delta(self, req: EditRequest) -> torch.Tensor:
        """The delta (d_v,) on the site's output at the key position that makes the prompt say target_new."""
        world, cfg = self.world, self.cfg
        r = req.extra["relation"]
        others = [world.relations[q].trained_wordings[0].format(req.subject)
                  for q in range(world.config.n_relations) if q != r]
        prompts = [req.full_prompt, *others]
        encs = [encode_prompt(self.tok, x, req.subject, cfg.position) for x in prompts]
        ids, mask = pad([e[0] for e in encs], self.tok.pad_token_id)
        rows = torch.arange(len(prompts))
        cols = torch.tensor([e[1] for e in encs])
        last = mask.sum(1) - 1
        new = token_id(self.tok, req.target_new)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            ref = torch.log_softmax(out.logits[rows, last], -1)[1:]
            h_norm = out.hidden_states[cfg.layer + 1][0, cols[0]].norm()
        if cfg.position == "subject":
            cols_used, rows_used = cols, rows  # the same key position in every prompt about the person
        else:
            cols_used, rows_used = cols[:1], rows[:1]  # final token: only the edit prompt
        delta = torch.zeros(self.W0.shape[1], requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.lr)
        for _ in range(cfg.steps):
            with add_to_output(self.site, rows_used, cols_used, delta):
                logits = self.model(input_ids=ids, attention_mask=mask).logits[rows, last]
            logp = torch.log_softmax(logits, -1)
            loss = -logp[0, new]
            if len(prompts) > 1 and cfg.kl_weight > 0:
                loss = loss + cfg.kl_weight * torch.nn.functional.kl_div(logp[1:], ref, log_target=True,
                                                                         reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                limit = cfg.clamp * h_norm
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
        return delta.detach().double()

    # -- measurements ----------------------------------------------------------------------------

    def pairwise(self, prompts: list[str], new: list[str], true: list[str]) -> torch.Tensor:
        lp = self.next_token_logprobs(prompts)
        i = torch.arange(len(prompts))
        return lp[i, [token_id(self.tok, x) for x in new]] > lp[i, [token_id(self.tok, x) for x in true]]

    def top1(self, prompts: list[str], objs: list[str]) -> torch.Tensor:
        lp = self.next_token_logprobs(prompts)
        return lp.argmax(-1) == torch.tensor([token_id(self.tok, o) for o in objs])

    def measure(self, reqs: list[EditRequest], controls: list[tuple[str, str]]) -> dict[str, float]:
        eff = self.pairwise([r.full_prompt for r in reqs], [r.target_new for r in reqs],
                            [r.target_true for r in reqs])
        para = [(p, r.target_new, r.target_true) for r in reqs for p in r.paraphrase_prompts]
        gen = self.pairwise(*map(list, zip(*para, strict=True)))
        q = self.pairwise([r.extra["question"] for r in reqs], [r.target_new for r in reqs],
                          [r.target_true for r in reqs])
        edited = {(r.extra["person"], r.extra["relation"]) for r in reqs}
        other = [(self.world.relations[b].trained_wordings[0].format(self.world.people[a]), self.world.objects[a][b])
                 for a, b in sorted({(r.extra["person"], b) for r in reqs
                                     for b in range(self.world.config.n_relations)} - edited)]
        out = {"efficacy": float(eff.float().mean()), "paraphrase": float(gen.float().mean()),
               "question": float(q.float().mean())}
        if other:
            out["other_attributes_kept"] = float(self.top1(*map(list, zip(*other, strict=True))).float().mean())
        if controls:
            out["never_edited_kept"] = float(self.top1(*map(list, zip(*controls, strict=True))).float().mean())
        return out


def known(probe: Probe, reqs: list[EditRequest]) -> list[EditRequest]:
    """The requests whose true object the unedited model predicts (top-1) on the edit prompt."""
    ok = probe.top1([r.full_prompt for r in reqs], [r.target_true for r in reqs])
    return [r for r, k in zip(reqs, ok.tolist(), strict=True) if k]


def run_probe(model_dir: str | Path, out: str | Path, cfg: ProbeConfig, *, editors=("rlsedit", "memit")) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tiny = load_tiny_model(model_dir)
    probe = Probe(tiny, cfg)
    world = probe.world
    (out / "config.json").write_text(json.dumps({"probe": asdict(cfg), "model": str(model_dir),
                                                 "model_digest": tiny.metadata["digest"]}, indent=1))
    metrics = open(out / "metrics.jsonl", "w")
    t0 = time.perf_counter()
    G = probe.anchor_gram()
    evals = torch.linalg.eigvalsh(G)
    summary: dict = {"anchor_gram_eigs": {"max": float(evals[-1]), "median": float(evals.median()),
                                          "min": float(evals[0])}}

    all_reqs = known(probe, world.edit_requests(seed=cfg.seed))
    n_stream = min(cfg.n_stream, len(all_reqs))
    stream = all_reqs[:n_stream]
    edited_people = {r.extra["person"] for r in all_reqs[: max(cfg.n_single, n_stream)]}
    rng = random.Random(cfg.seed)
    free = [p for p in range(world.config.n_people) if p not in edited_people]
    controls = [(world.relations[b].trained_wordings[0].format(world.people[a]), world.objects[a][b])
                for a in rng.sample(free, min(len(free), cfg.n_control // world.config.n_relations + 1))
                for b in range(world.config.n_relations)][: cfg.n_control]
    ok = probe.top1(*map(list, zip(*controls, strict=True))) if controls else torch.zeros(0, dtype=torch.bool)
    controls = [c for c, k in zip(controls, ok.tolist(), strict=True) if k]  # facts the model knew

    # single edits, each from W0 (one edit: RLSEditor and MEMITEditor coincide)
    single = all_reqs[: cfg.n_single]
    rows = []
    for req in single:
        delta = probe.target_delta(req)
        delta_ok = float(probe.delta_efficacy(req, delta))  # at W0, before the write
        k = probe.keys([req.full_prompt], [req.subject])
        ed = RLSEditor(probe.W0, lam=cfg.lam, mu=cfg.mu, anchor_gram=G)
        ed.update(k, k @ probe.W0 + delta)
        probe.set_W(ed.W)
        m = probe.measure([req], controls)
        m["delta_efficacy"] = delta_ok
        m["dW_rel"] = float((ed.W - probe.W0).norm() / probe.W0.norm())
        rows.append(m)
        metrics.write(json.dumps({"phase": "single", "case_id": req.case_id, **m}) + "\n")
        probe.set_W(probe.W0)
    if rows:
        summary["single"] = {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in rows[0]}
        summary["single"]["n"] = len(rows)

    # sequential stream
    for name in editors if n_stream else ():
        cls = {"rlsedit": RLSEditor, "memit": MEMITEditor}[name]
        ed = cls(probe.W0, lam=cfg.lam, mu=cfg.mu, anchor_gram=G)
        probe.set_W(probe.W0)
        for b in range(0, n_stream, cfg.batch_size):
            batch = stream[b:b + cfg.batch_size]
            deltas = torch.stack([probe.target_delta(r) for r in batch])
            K = probe.keys([r.full_prompt for r in batch], [r.subject for r in batch])
            V = K @ ed.W + deltas
            ed.update(K, V)
            probe.set_W(ed.W)
            m = probe.measure(stream[: b + len(batch)], controls)
            metrics.write(json.dumps({"phase": "stream", "editor": name, "edits": b + len(batch), **m}) + "\n")
            metrics.flush()
        final = probe.measure(stream, controls)
        final["first_100_efficacy"] = probe.measure(stream[:100], [])["efficacy"]
        final["dW_rel"] = float((ed.W - probe.W0).norm() / probe.W0.norm())
        summary[f"stream_{name}"] = final
        probe.set_W(probe.W0)
    summary.update({"n_stream": n_stream, "n_controls": len(controls), "seconds": time.perf_counter() - t0})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    metrics.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    d = ProbeConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="a tiny-model cache directory (rlsedit train-tiny --out)")
    p.add_argument("--out", required=True, help="results directory (config.json, metrics.jsonl, summary.json)")
    for f, v in asdict(d).items():
        p.add_argument("--" + f.replace("_", "-"), type=type(v), default=v, help=f"ProbeConfig.{f}")
    p.add_argument("--threads", type=thread_count, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = ProbeConfig(**{f: getattr(args, f) for f in asdict(d)})
    summary = run_probe(args.model, args.out, cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
