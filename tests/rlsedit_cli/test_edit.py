"""rlsedit edit / edit-table end to end on the quick world and model (trained in seconds)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from llm_experiments.edit.presets import preset
from llm_experiments.experiment import TABLE_METRICS, EditRunError, ExperimentConfig, run_edit, with_bos
from llm_experiments.table import TableError, markdown_table, read_run
from rlsedit_cli import build_parser, main
from rlsedit_cli.edit import config_from_args
from tests.paths import FIXTURES

EDITORS = ("rlsedit", "memit", "alphaedit", "rome", "ft")
FAST = ["--quick", "--n-edits", "6", "--batch-size", "3", "--value-steps", "5", "--stats-tokens", "3000",
        "--max-length", "16", "--no-progress"]


@pytest.fixture(scope="module")
def five_runs(tmp_path_factory):
    """One `rlsedit edit` command with every editor, along the stream, sharing one quick model."""
    root = tmp_path_factory.mktemp("edit")
    code = main(["edit", "--editor", ",".join(EDITORS), "--out", str(root / "runs"), "--cache", str(root / "cache"),
                 "--along-stream", *FAST])
    assert code == 0
    return root


def test_every_editor_writes_a_summary_with_the_table_metrics(five_runs):
    for editor in EDITORS:
        s = json.loads((five_runs / "runs" / editor / "summary.json").read_text())
        assert s["editor"] == editor and s["n_edits"] == 6
        for m in ("efficacy", "generalization", "specificity", "consistency"):
            assert 0.0 <= s[m] <= 100.0, (editor, m, s[m])
        # fluency is 100 x bits (the paper prints 615 for Llama-3-8B): positive, below 100 x log2(16 tokens)
        assert 0.0 < s["fluency"] <= 100 * 4.0
        assert s["config"]["editing"]["editor"] == editor
        assert s["config"]["editing"]["editor_options"] == dict(preset("tiny", editor).editor_options)
        # the percent figures are the after-stream protocol's means over the records it wrote
        records = [json.loads(x) for x in (five_runs / "runs" / editor / "after_stream" / "records.jsonl")
                   .read_text().splitlines()]
        assert len(records) == 6
        eff = sum(r["efficacy"] for r in records) / len(records)
        assert s["efficacy"] == pytest.approx(100 * eff)
        lines = (five_runs / "runs" / editor / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["n_edits"] for x in lines] == [3, 6]
        assert set(s["retention"]) == {"first_1_batches"} and s["retention"]["first_1_batches"]["size"] == 3


def test_general_capability_is_recorded_before_after_and_along_the_stream(five_runs):
    for editor in EDITORS:
        s = json.loads((five_runs / "runs" / editor / "summary.json").read_text())
        for when in ("before", "after"):
            cap = s["capability"][when]
            assert 0.0 < cap["template"]["template_nll"] and 0.0 <= cap["type"]["type_accuracy"] <= 1.0
        # the pre-edit capability does not depend on the editor
        first = json.loads((five_runs / "runs" / EDITORS[0] / "summary.json").read_text())
        assert s["capability"]["before"] == first["capability"]["before"]
        lines = [json.loads(x) for x in
                 (five_runs / "runs" / editor / "along_stream" / "metrics.jsonl").read_text().splitlines()]
        assert lines[0]["n_edits"] == 0 and lines[0]["capability"] == s["capability"]["before"]
        assert lines[-1]["capability"] == s["capability"]["after"]  # same model, same measures


def test_the_cached_model_is_trained_once_then_reused(five_runs):
    reused = [json.loads((five_runs / "runs" / e / "config.json").read_text())["resolved"]["model_reused"]
              for e in EDITORS]
    assert reused == [False, True, True, True, True]


def test_editors_that_write_change_the_model_differently(five_runs):
    """The stream really edits: the editors' first batches move the weights by different amounts."""
    changes = {}
    for e in EDITORS:
        first = json.loads((five_runs / "runs" / e / "metrics.jsonl").read_text().splitlines()[0])
        changes[e] = first["layers"][0]["weight_change"]
    assert changes["rlsedit"] > 0 and changes["memit"] > 0 and changes["ft"] > 0
    # RLSEdit and MEMIT share C_0, so their first batch is the same write; the second one differs
    assert changes["rlsedit"] == pytest.approx(changes["memit"], rel=1e-6)
    second = {e: json.loads((five_runs / "runs" / e / "metrics.jsonl").read_text().splitlines()[1])
              ["layers"][0]["weight_change"] for e in ("rlsedit", "memit")}
    assert second["rlsedit"] != pytest.approx(second["memit"], rel=1e-6)


def test_table_and_figures_come_from_the_files(five_runs, capsys):
    table = (five_runs / "runs" / "table.md").read_text().splitlines()
    assert table[0].startswith("| Editor | Edits | Efficacy | Generalization | Specificity | Fluency | Consistency")
    assert [row.split("|")[1].strip() for row in table[2:2 + len(EDITORS)]] == list(EDITORS)
    # then general capability, before -> after, from each summary's numbers
    at = table.index("General capability, before -> after the stream:")
    assert table[at + 2].startswith("| Editor | Edits | template NLL")
    cap = read_run(five_runs / "runs" / "ft")["capability"]
    nll = [cap[k]["template"]["template_nll"] for k in ("before", "after")]
    assert f"| ft | 6 | {nll[0]:.3f} -> {nll[1]:.3f} |" in table[at + 4 + EDITORS.index("ft")]
    for name in ("metrics_vs_edits", "cohort_retention", "capability_vs_edits"):
        assert (five_runs / "runs" / f"{name}.png").stat().st_size > 0
    out = five_runs / "again" / "table.md"
    code = main(["edit-table", "--runs", *(str(five_runs / "runs" / e) for e in ("memit", "rlsedit")),
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| memit | 6 |" in printed and "| rlsedit | 6 |" in printed
    s = read_run(five_runs / "runs" / "rlsedit")
    assert f"| rlsedit | 6 | {s['efficacy']:.2f}" in out.read_text()
    assert (five_runs / "again" / "cohort_retention.png").is_file()


def test_markdown_table_layout_without_sem():
    s = {"editor": "x", "n_edits": 1, "_path": "x", **{m: 50.0 for m in TABLE_METRICS},
         **{f"{m}_sem": None for m in TABLE_METRICS}}
    assert markdown_table([s]).splitlines()[2] == "| x | 1 | 50.00 | 50.00 | 50.00 | 50.00 | 50.00 |"


def test_runs_sharing_an_editor_are_labelled_by_folder():
    from llm_experiments.table import labels

    runs = [{"editor": "alphaedit", "_path": "a/t01"}, {"editor": "alphaedit", "_path": "a/t1"},
            {"editor": "rlsedit", "_path": "a/r"}]
    assert labels(runs) == ["alphaedit (t01)", "alphaedit (t1)", "rlsedit"]


def test_edit_table_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(TableError, match=r"no summary\.json"):
        read_run(tmp_path)
    with pytest.raises(SystemExit, match=r"no summary\.json"):
        main(["edit-table", "--runs", str(tmp_path)])


def test_run_refuses_a_non_empty_folder(five_runs):
    config = ExperimentConfig.from_options(quick=True, n_edits=3, batch_size=3, cache_dir=str(five_runs / "cache"))
    with pytest.raises(EditRunError, match="not empty"):
        run_edit(config, five_runs / "runs" / "rlsedit", progress=False)


@pytest.mark.parametrize("changes, match", [
    ({"editor": "nope"}, "editor"),
    ({"n_edits": 0}, "n_edits"),
    ({"batch_size": 4, "checkpoint_every": 6}, "checkpoint_every"),
    ({"layers": (1, 0)}, "layers"),
    ({"lam": 0.0, "mu": 0.0}, "singular"),
    ({"model": "some/checkpoint"}, "data"),
    ({"model": "some/checkpoint", "data": "cf.json"}, "stats_corpus"),
    ({"dataset": "zsre", "data": "world"}, "dataset"),
    ({"ft_lr": 2.5}, "ft_lr"),
    ({"context": "english"}, "context"),
    ({"people": 3}, "people"),
    ({"snippets": "attribute_snippets.json"}, "snippets"),
    ({"tfidf": "stats"}, "tfidf"),
    ({"data": "zsre.json", "dataset": "zsre", "model": "some/checkpoint", "stats_corpus": "w.txt", "tfidf": "stats"},
     "tfidf"),
    ({"hidden": 100}, "hidden"),  # 4 heads of 25: odd, no rotary embedding
    ({"d_ff": 0}, "d_ff"),
    ({"quick": True, "hidden": 256}, "hidden"),
    ({"model": "some/checkpoint", "data": "cf.json", "stats_corpus": "w.txt", "d_ff": 4096}, "d_ff"),
])
def test_bad_configs_are_refused_with_the_option_named(changes, match):
    with pytest.raises(EditRunError, match=match):
        ExperimentConfig.from_options(**changes)


def test_bad_command_line_values_exit_with_the_option_named(tmp_path):
    with pytest.raises(SystemExit, match="n_edits"):
        main(["edit", "--out", str(tmp_path / "x"), "--n-edits", "0", "--cache", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["edit", "--out", str(tmp_path / "x"), "--editor", "rlsedit,nope"])


def test_model_size_options_choose_the_training_config_and_the_cache_directory():
    from llm_experiments.experiment import tiny_model_dir
    from llm_experiments.tiny.training import TrainConfig

    default = ExperimentConfig.from_options()
    assert tiny_model_dir(default)[2] == TrainConfig()  # the defaults are TrainConfig's sizes
    wide = ExperimentConfig.from_options(hidden=256, d_ff=2048, people=2000)
    path, world, train = tiny_model_dir(wide)
    assert (train.hidden, train.d_ff, world.n_people) == (256, 2048, 2000)
    assert path != tiny_model_dir(ExperimentConfig.from_options(people=2000))[0]
    args = build_parser("edit").parse_args(["edit", "--out", "x", "--hidden", "256", "--d-ff", "2048"])
    assert (config_from_args(args, "rlsedit").model.hidden, config_from_args(args, "rlsedit").model.d_ff) == (256, 2048)


def test_config_round_trips_through_a_dict():
    config = ExperimentConfig.from_options(editor="alphaedit", layers=(0, 1), cohort_batches=(1, 2), n_edits=10,
                                           batch_size=5)
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(EditRunError, match="unknown"):
        ExperimentConfig.from_dict({"nope": 1})


def test_with_bos_puts_bos_first_and_keeps_offsets():
    from llm_experiments.model.tokenizer import build_word_tokenizer

    tok = with_bos(build_word_tokenizer(["Ana", "Bo", "speaks", "Dutch"]))
    enc = tok("Ana Bo speaks Dutch", return_offsets_mapping=True)
    assert enc["input_ids"][0] == tok.bos_token_id and len(enc["input_ids"]) == 5
    assert enc["offset_mapping"][0] == (0, 0) and enc["offset_mapping"][2] == (4, 6)
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "Ana Bo speaks Dutch"


def test_a_checkpoint_with_a_counterfact_file(five_runs, tmp_path):
    """--model PATH --data FILE: the quick model's cache folder as a checkpoint, the fixture records."""

    fixtures = FIXTURES
    checkpoint = next((five_runs / "cache").glob("tiny-llama-quick-*"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join((fixtures / "heldout.txt").read_text().split("\n\n")))
    out = tmp_path / "run"
    code = main(["edit", "--model", str(checkpoint), "--data", str(fixtures / "counterfact.json"),
                 "--snippets", str(fixtures / "attribute_snippets.json"), "--stats-corpus", str(corpus),
                 "--tfidf", str(fixtures), "--n-edits", "3", "--batch-size", "3", "--value-steps", "3",
                 "--max-length", "12", "--no-progress", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_edits"] == 3 and set(TABLE_METRICS) <= set(s)
    assert s["config"]["resolved"]["stats_corpus"] == str(corpus.resolve())
    assert s["config"]["resolved"]["tfidf"] == str(fixtures.resolve())
    with pytest.raises(SystemExit, match="holds only 3 records"):
        main(["edit", "--model", str(checkpoint), "--data", str(fixtures / "counterfact.json"),
              "--stats-corpus", str(corpus), "--n-edits", "5", "--no-generation", "--no-progress",
              "--out", str(tmp_path / "run2"), "--cache", str(tmp_path / "cache")])


def test_tfidf_statistics_are_read_from_a_folder_or_refused_by_name(tmp_path, monkeypatch):
    """--tfidf DIR: MEMIT's idf.npy + tfidf_vocab.json replace the TF-IDF fitted on the references."""
    import shutil

    import numpy as np

    from llm_experiments.data.loaders import load_tfidf
    from llm_experiments.experiment import read_inputs

    fixtures = FIXTURES
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("John Brown speaks English.\n")

    def config(**kw):
        return ExperimentConfig.from_options(model=str(fixtures), data=str(fixtures / "counterfact.json"),
                                             stats_corpus=str(corpus), n_edits=2,
                                             snippets=str(fixtures / "attribute_snippets.json"), **kw)

    # the fixtures folder stands in for a checkpoint: read_inputs only checks the folder
    monkeypatch.setattr("llm_experiments.model.loading.check_model_path", lambda path: None)
    read = read_inputs(config(tfidf=str(fixtures))).tfidf
    fitted = read_inputs(config()).tfidf
    with pytest.raises(EditRunError, match=r"tfidf=.*not a folder"):
        read_inputs(config(tfidf=str(tmp_path / "missing")))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    shutil.copy(fixtures / "idf.npy", damaged / "idf.npy")
    with pytest.raises(EditRunError, match=r"tfidf=.*tfidf_vocab.json"):
        read_inputs(config(tfidf=str(damaged)))
    expected = load_tfidf(fixtures / "idf.npy", fixtures / "tfidf_vocab.json")
    assert read.vocabulary == expected.vocabulary and np.array_equal(read.idf, expected.idf)
    assert fitted.vocabulary != expected.vocabulary or not np.array_equal(fitted.idf, expected.idf)
    args = build_parser("edit").parse_args(["edit", "--out", "x", "--model", "ckpt", "--data", "cf.json",
                                            "--stats-corpus", "w.txt", "--tfidf", "DIR"])
    assert config_from_args(args, "rlsedit").data.tfidf == "DIR"


def test_world_and_train_seeds_choose_another_tiny_model():
    from llm_experiments.experiment import tiny_model_dir

    base_path, base_world, base_train = tiny_model_dir(ExperimentConfig.from_options())
    path, world, train = tiny_model_dir(ExperimentConfig.from_options(world_seed=7, train_seed=3))
    assert (world.seed, train.seed) == (7, 3) and (base_world.seed, base_train.seed) == (0, 0)
    assert path != base_path and path != tiny_model_dir(ExperimentConfig.from_options(world_seed=7))[0]
    args = build_parser("edit").parse_args(["edit", "--out", "x", "--world-seed", "7", "--train-seed", "3"])
    assert (args.world_seed, args.train_seed) == (7, 3)
    with pytest.raises(EditRunError, match="world_seed"):
        ExperimentConfig.from_options(quick=True, world_seed=1)
    with pytest.raises(EditRunError, match="world_seed"):
        ExperimentConfig.from_options(world_seed=-1)


def test_a_request_file_on_a_checkpoint_without_evaluation(tmp_path):
    """--dataset requests (EditRequest's fields) and --no-eval: the editing steps only, as rows."""
    import dataclasses

    from tests.llm_fixtures import TINY_CORPUS, tiny_model, tiny_requests, tiny_tokenizer

    path = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TINY_CORPUS) + "\n")
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([dataclasses.asdict(r) for r in tiny_requests(4)]))
    base = ["edit", "--model", str(path), "--data", str(requests), "--dataset", "requests", "--n-edits", "4",
            "--batch-size", "2", "--layers", "0,1", "--fact-token", "last", "--value-steps", "2", "--lam", "1e-6",
            "--n-w", "1e-3", "--stats-corpus", str(corpus), "--stats-tokens", "60", "--no-eval", "--no-progress",
            "--cache", str(tmp_path / "cache")]
    assert main([*base, "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_edits"] for r in rows] == [2, 4] and rows[1]["case_ids"] == [2, 3]
    assert set(rows[0]) == {"batch", "n_edits", "case_ids", "seconds", "target_nll_before", "target_nll_after",
                            "layers"}  # the one row schema (BatchReport.to_row)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["after_stream"] is None and s["config"]["editing"]["layers"] == [0, 1]
    requests.write_text(json.dumps([{"case_id": 9, "prompt": "no slot", "subject": "Anna", "target_new": " x"}]))
    with pytest.raises(SystemExit, match="request 0"):
        main([*base[:7], "--n-edits", "1", "--stats-corpus", str(corpus), "--no-eval", "--out", str(tmp_path / "y")])


@pytest.mark.parametrize("editor", ["rlsedit", "alphaedit"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(five_runs, tmp_path, monkeypatch, editor):
    """Killed after its second batch (a checkpoint every batch), `--resume` ends where a straight run ends:
    the same rows, the same along-stream record, the same summary, bit for bit."""
    from llm_experiments.edit.session import EditingSession

    args = ["edit", "--editor", editor, "--cache", str(five_runs / "cache"), "--along-stream", "--cohorts", "1,2",
            "--checkpoint-every", "2", "--save-every", "1", "--batch-size", "2", *FAST[:1], "--n-edits", "6",
            "--value-steps", "3", "--stats-tokens", "3000", "--max-length", "12", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    original = EditingSession.edit_batch
    calls = []

    def dies_on_the_third_batch(self, requests):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, requests)

    monkeypatch.setattr(EditingSession, "edit_batch", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        main([*args, "--out", str(tmp_path / "cut")])
    with pytest.raises(SystemExit, match="drop --n-edits"):
        main(["edit", "--resume", "--out", str(tmp_path / "cut"), "--n-edits", "8"])
    calls.clear()
    monkeypatch.setattr(EditingSession, "edit_batch", lambda self, r: (calls.append(1), original(self, r))[1])
    assert main(["edit", "--resume", "--out", str(tmp_path / "cut"), "--no-progress"]) == 0
    # only the lost batch is edited again (a resume that restarted the stream, the state-reset mutant,
    # would edit all three and still end with the same numbers)
    assert len(calls) == 1

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    for name in ("metrics.jsonl", "along_stream/metrics.jsonl"):
        a, b = ([json.loads(x) for x in (tmp_path / d / name).read_text().splitlines()] for d in ("straight", "cut"))
        assert without_time(a) == without_time(b), name
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("straight", "cut"))
    assert b["resumed_at"] == 4 and a["resumed_at"] is None
    for key in ("efficacy", "generalization", "specificity", "fluency", "consistency", "retention", "capability"):
        assert a[key] == b[key], key
    with pytest.raises(SystemExit, match="holds no run"):
        main(["edit", "--resume", "--out", str(tmp_path / "nothing")])


def test_a_run_without_checkpoints_cannot_resume(five_runs, tmp_path):
    args = ["edit", "--cache", str(five_runs / "cache"), "--save-every", "0", *FAST]
    assert main([*args, "--out", str(tmp_path / "r")]) == 0
    assert not (tmp_path / "r" / "checkpoints").exists()
    (tmp_path / "r" / "summary.json").unlink()  # as if it had been killed before its end
    with pytest.raises(SystemExit, match="no checkpoint to resume from"):
        main(["edit", "--resume", "--out", str(tmp_path / "r")])


def test_a_preset_sets_the_editing_section_and_options_override_it():
    args = build_parser("edit").parse_args(["edit", "--out", "x", "--preset", "llama3-8b", "--model", "ckpt",
                                            "--data", "cf.json", "--stats-corpus", "w.txt", "--batch-size", "10"])
    config = config_from_args(args, "memit")
    assert config.editing.layers == (4, 5, 6, 7, 8) and config.editing.n_w == 15000
    assert config.editing.batch_size == 10 and dict(config.editing.editor_options) == {"lam": 0.0, "mu": 1.0}
    assert config == ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))


def test_another_editor_over_a_config_keeps_the_options_both_take():
    base = ExperimentConfig.from_options(editor="rlsedit", lam=0.5, mu=2.0)
    memit = ExperimentConfig.from_options(base, editor="memit")
    assert dict(memit.editing.editor_options) == {"lam": 0.5, "mu": 2.0}
    alpha = ExperimentConfig.from_options(base, editor="alphaedit")
    assert dict(alpha.editing.editor_options) == dict(preset("tiny", "alphaedit").editor_options)
