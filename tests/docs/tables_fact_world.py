"""docs/fact-world.md's quick-mode numbers, from the ``tiny_model.json`` that ``rlsedit train-tiny --quick``
wrote for each architecture (``docs/fact_world_data/quick_llama.json``, ``quick_qwen2.json``)."""

from __future__ import annotations

from tests.docs.tables import builder, read_json


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


@builder("fw_quick")
def quick() -> str:
    llama, qwen2 = read_json("fact_world_data/quick_llama.json"), read_json("fact_world_data/quick_qwen2.json")
    w, t = llama["world_config"], llama["train_config"]
    assert (w, {**t, "arch": None}) == (qwen2["world_config"], {**qwen2["train_config"], "arch": None})
    acc = [qwen2["accuracy"][k] for k in ("trained", "heldout", "question")]
    return (f"Quick mode (`rlsedit train-tiny --arch llama --quick --threads 1 --out DIR`: {w['n_people']} people, "
            f"{w['n_relations']}\nrelations, pools of {w['pool_size']}; hidden {t['hidden']}, {t['layers']} layers, "
            f"d_ff {t['d_ff']}, {llama['steps']} steps): {llama['train_seconds']:.1f} s of training for Llama\n"
            f"({_percent(llama['accuracy']['trained'])} trained, {_percent(llama['accuracy']['heldout'])} held-out "
            f"wordings, {_percent(llama['accuracy']['question'])} questions) and {qwen2['train_seconds']:.1f} s for "
            f"Qwen2 ({', '.join(map(_percent, acc))}),\none thread on the shared machine (load average about 9; "
            "their `tiny_model.json` files are\n`docs/fact_world_data/quick_llama.json` and `quick_qwen2.json`). "
            "It exists for tests and smoke runs; it is\nnot a useful edit target (facts are barely in the name's "
            "representation).")
