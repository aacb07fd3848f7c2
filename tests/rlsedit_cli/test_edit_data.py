"""`rlsedit edit` on checkpoints with the genuine data formats, without snippets, and with a shared
statistics cache (two GPT-2-layout checkpoints saved in folders of the same name).

The checkpoints are tiny GPT-2-layout models with random weights and the evaluation fixtures' word
tokenizer (no unknown word), saved with ``save_pretrained``: each run takes a few seconds.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("transformers")

from llm_experiments.table import markdown_table, read_run
from rlsedit_cli import main
from tests.llm_fixtures import TINY_CORPUS, eval_model, eval_tokenizer
from tests.paths import FIXTURES

FAST = ["--n-edits", "3", "--batch-size", "3", "--value-steps", "2", "--max-length", "10", "--layers", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two different GPT-2-layout checkpoints, a/model and b/model, and a statistics corpus."""
    root = tmp_path_factory.mktemp("ckpt")
    tok = eval_tokenizer()
    paths = []
    for seed, folder in ((0, "a"), (1, "b")):
        path = root / folder / "model"
        eval_model("gpt2", tok, seed=seed).save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(path)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(TINY_CORPUS) + "\n")
    return root, paths[0], paths[1], corpus


def edit(model, data, out, cache, corpus, *extra):
    return main(["edit", "--model", str(model), "--data", str(data), "--stats-corpus", str(corpus),
                 "--out", str(out), "--cache", str(cache), *FAST, *extra])


def stat_files(cache, layer=1):
    """The statistics files of a layer in a run cache (by the key beside each)."""
    return sorted(p.name for p in (cache / "stats").glob("*.safetensors")
                  if json.loads(p.with_suffix(".json").read_text())["layer"] == str(layer))


# -- item: two checkpoints under one folder name share a cache safely ----------------------------------
def check_checkpoints_share_a_cache(root, a, b, corpus, tag):
    """a/model, then b/model (another checkpoint, same folder name), then a copy of a/model saved
    elsewhere, all with one --cache: each runs; the copy adds no statistics file."""
    cache = root / f"cache-{tag}"
    data = FIXTURES / "counterfact.json"
    assert edit(a, data, root / f"{tag}-a", cache, corpus, "--no-generation") == 0
    assert edit(b, data, root / f"{tag}-b", cache, corpus, "--no-generation") == 0
    assert len(stat_files(cache)) == 2
    moved = root / f"{tag}-elsewhere" / "renamed"
    if not moved.exists():
        shutil.copytree(a, moved)
    assert edit(moved, data, root / f"{tag}-moved", cache, corpus, "--no-generation") == 0
    assert len(stat_files(cache)) == 2


def test_two_checkpoints_under_one_folder_name_share_a_cache_safely(checkpoints):
    check_checkpoints_share_a_cache(*checkpoints, tag="content")


def test_a_cache_keyed_by_site_alone_fails_the_check_in_one_line(checkpoints, monkeypatch):
    """The mutant: one file per site (the folder-name layout): the second checkpoint finds the first's
    statistics. The run stops with one line naming the option, no traceback."""
    from llm_experiments.edit import statistics

    monkeypatch.setattr(statistics, "cache_path", lambda d, key: statistics.legacy_cache_path(d, key["site"]))
    with pytest.raises(SystemExit) as info:
        check_checkpoints_share_a_cache(*checkpoints, tag="mutant")
    message = str(info.value)
    assert message.startswith("rlsedit edit: ") and "\n" not in message
    assert "--cache" in message and "weights_fingerprint" in message


def test_a_damaged_cache_file_is_one_line_naming_the_option(checkpoints):
    root, a, _, corpus = checkpoints
    cache = root / "cache-damaged"
    data = FIXTURES / "counterfact.json"
    assert edit(a, data, root / "damaged-1", cache, corpus, "--no-generation") == 0
    for f in (cache / "stats").glob("*.safetensors"):
        f.write_bytes(b"not safetensors")
    with pytest.raises(SystemExit) as info:
        edit(a, data, root / "damaged-2", cache, corpus, "--no-generation")
    message = str(info.value)
    assert "\n" not in message and "--cache" in message and "not a readable safetensors" in message


def test_llm_stats_and_edit_share_the_cache(checkpoints):
    """Statistics written by `rlsedit llm-stats` into CACHE/stats are the ones `rlsedit edit --cache
    CACHE` looks for (same corpus, token count): the edit adds no file."""
    root, a, _, corpus = checkpoints
    cache = root / "cache-shared"
    assert main(["llm-stats", "--model", str(a), "--layers", "1", "--cache-dir", str(cache / "stats"),
                 "--corpus", str(corpus), "--max-tokens", "100000", "--no-progress"]) == 0
    before = stat_files(cache)
    assert len(before) == 1
    assert edit(a, FIXTURES / "counterfact.json", root / "shared", cache, corpus, "--no-generation") == 0
    assert stat_files(cache) == before


# -- item: CounterFact without attribute_snippets.json ---------------------------------------------------
def check_consistency_absent_with_reason(run):
    s = json.loads((run / "summary.json").read_text())
    assert s["fluency"] > 0 and "consistency" not in s
    assert "attribute_snippets.json" in s["absent"]["consistency"]
    table = markdown_table([read_run(run)])
    row = table.splitlines()[2]
    assert row.rstrip(" |").endswith("- [1]"), table
    assert "[1] Consistency: no request has reference texts" in table


def test_counterfact_without_snippets_reports_consistency_absent(checkpoints, capsys):
    root, a, _, corpus = checkpoints
    run = root / "no-snippets"
    assert edit(a, FIXTURES / "counterfact.json", run, root / "cache-ns", corpus) == 0
    printed = capsys.readouterr().out
    assert "- [1]" in printed and "[1] Consistency:" in printed  # the table `rlsedit edit` prints
    check_consistency_absent_with_reason(run)
    assert main(["edit-table", "--runs", str(run), "--no-figures"]) == 0
    assert "[1] Consistency: no request has reference texts" in capsys.readouterr().out
    # the mutant: a run that dropped Consistency without saying why fails the check
    s = json.loads((run / "summary.json").read_text())
    del s["absent"]["consistency"]
    silent = root / "silent"
    silent.mkdir()
    (silent / "summary.json").write_text(json.dumps(s))
    with pytest.raises((AssertionError, KeyError)):
        check_consistency_absent_with_reason(silent)


# -- item: the genuine formats through `rlsedit edit --dataset` -------------------------------------------
FORMAT_RUNS = [
    ("zsre_mend_train.json", "zsre", {"fluency", "consistency"}),
    ("multi_counterfact.json", "counterfact", {"consistency"}),
    ("easyedit_counterfact.json", "counterfact", {"fluency", "consistency"}),
    ("easyedit_zsre.json", "zsre", {"fluency", "consistency"}),
    ("mquake.json", "counterfact", {"specificity", "fluency", "consistency"}),
]


@pytest.mark.parametrize(("name", "dataset", "absent"), FORMAT_RUNS, ids=[f[0] for f in FORMAT_RUNS])
def test_each_format_runs_through_rlsedit_edit(checkpoints, name, dataset, absent):
    root, a, _, corpus = checkpoints
    run = root / f"format-{name}"
    extra = ["--dataset", dataset] + (["--no-generation"] if dataset == "zsre" else [])
    assert edit(a, FIXTURES / "formats" / name, run, root / "cache-formats", corpus, *extra) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["n_edits"] == 3 and set(s["absent"]) == absent
    present = {"efficacy", "generalization", "specificity", "fluency", "consistency"} - absent
    assert all(0 <= s[m] for m in present) and not any(m in s for m in absent)
    records = [json.loads(x) for x in (run / "after_stream" / "records.jsonl").read_text().splitlines()]
    expected_ids = {"mquake.json": ["1:0", "1:1", "2:0"], "multi_counterfact.json": [7, 19, 23]}
    assert [r["case_id"] for r in records] == expected_ids.get(name, [0, 1, 2])[: len(records)]
