"""Metrics against hand computations: a token-by-token loop, hand-made entropies, scikit-learn's TF-IDF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_experiments.data.requests import EditRequest
from llm_experiments.data.tfidf import TfidfError, TfidfStats
from llm_experiments.evaluate.metrics import (
    MetricError,
    as_percent,
    counterfact_metrics,
    encode_continuation,
    fluency,
    generate_ids,
    generate_texts,
    ngram_entropy,
    score_continuations,
    summarize,
    word_tokenize,
    zsre_metrics,
)
from tests.llm_fixtures import eval_model, eval_tokenizer

ARCHS = ["llama", "qwen2", "gpt2"]
POOL = ("The mother tongue of Danielle Darrieux is French English Paris London Anna Smith speaks was born "
        "in the capital city John Brown").split()


@pytest.fixture(scope="module")
def tok():
    return eval_tokenizer()


@pytest.fixture(scope="module", params=ARCHS)
def model(request, tok):
    """Every architecture: for what depends on it (scoring positions, padding, the generation cache)."""
    return eval_model(request.param, tok)


@pytest.fixture(scope="module")
def llama(tok):
    """One architecture: for the metric definitions, which sit on top of the scoring tested on all."""
    return eval_model("llama", tok)


@torch.no_grad()
def manual_scores(model, tok, prompt, target):
    """Oracle: one forward pass per target token, prompt and target tokenized separately."""
    prompt_ids = tok(prompt)["input_ids"]
    target_ids = tok(target, add_special_tokens=False)["input_ids"]
    nll, correct = [], []
    for j, t in enumerate(target_ids):
        logits = model(input_ids=torch.tensor([prompt_ids + target_ids[:j]])).logits[0, -1]
        nll.append(-torch.log_softmax(logits.double(), dim=-1)[t].item())
        correct.append(int(logits.argmax()) == t)
    return target_ids, nll, correct


# ---------------------------------------------------------------------------------------------- scoring

sentences = st.lists(st.sampled_from(POOL), min_size=1, max_size=6).map(" ".join)
targets = st.lists(st.sampled_from(POOL), min_size=1, max_size=3).map(lambda words: " " + " ".join(words))


@settings(max_examples=6)
@given(pairs=st.lists(st.tuples(sentences, targets), min_size=1, max_size=4),
       batch_size=st.integers(1, 4))
def test_batched_scores_equal_a_token_by_token_loop(model, tok, pairs, batch_size):
    scores = score_continuations(model, tok, pairs, batch_size=batch_size)
    for (prompt, target), score in zip(pairs, scores, strict=True):
        ids, nll, correct = manual_scores(model, tok, prompt, target)
        assert score.token_ids == tuple(ids)
        np.testing.assert_allclose(score.token_nll, nll, rtol=1e-4, atol=1e-5)
        assert score.token_correct == tuple(correct)
        assert score.mean_nll == pytest.approx(np.mean(nll), rel=1e-4)


def _trained_tokenizer(kind: str):
    """A BPE tokenizer trained here: byte-level (GPT-2/Llama-3 style, 'Ġ') or Metaspace ('▁', with a BOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["The mother tongue of Danielle Darrieux is French .", "Anna Smith was born in Paris , London ."] * 5
    tk = Tokenizer(models.BPE(unk_token="<unk>" if kind == "metaspace" else None))
    if kind == "byte_level":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=["<pad>", "<bos>"])
    else:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<pad>", "<bos>", "<unk>"])
    tk.train_from_iterator(corpus, trainer)
    if kind == "metaspace":
        bos = tk.token_to_id("<bos>")
        tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<bos>")


@pytest.mark.parametrize("kind", ["byte_level", "metaspace"])
@pytest.mark.parametrize(("prompt", "target"), [("The mother tongue of Anna Smith is", " French"),
                                                 ("Danielle Darrieux was born in", " London , Paris")])
def test_target_tokens_come_from_offsets_for_leading_space_tokenizers(kind, prompt, target):
    tok = _trained_tokenizer(kind)
    ids, n_prompt = encode_continuation(tok, prompt, target)
    assert ids == tok(prompt + target)["input_ids"]  # the text as the model reads it
    assert ids[:n_prompt] == tok(prompt)["input_ids"]  # prompt tokens unchanged by the target
    assert tok.decode(ids[n_prompt:]).strip() == target.strip()  # the target's tokens, all of them
    if kind == "metaspace":
        assert ids[0] == tok.bos_token_id  # the BOS counts as prompt
    else:  # the leading space is inside the first target token ("Ġ...")
        assert tok.convert_ids_to_tokens(ids[n_prompt]).startswith("Ġ")


def test_scoring_refuses_what_it_cannot_score(tok, llama):
    with pytest.raises(MetricError, match="empty target"):
        encode_continuation(tok, "Anna Smith is", "")
    with pytest.raises(MetricError, match="no token before the target"):
        encode_continuation(tok, "", " French")
    with pytest.raises(MetricError, match="has no token after prompt"):
        encode_continuation(tok, "Anna Smith is", "   ")
    with pytest.raises(MetricError, match="batch_size"):
        score_continuations(llama, tok, [("Anna is", " French")], batch_size=0)


# ---------------------------------------------------------------------------------------------- CounterFact / ZsRE

def request(case_id=0, **kw):
    base = dict(case_id=case_id, prompt="The mother tongue of {} is", subject="Danielle Darrieux",
                target_new=" English", target_true=" French",
                paraphrase_prompts=("Danielle Darrieux speaks", "Danielle Darrieux was born in the city"),
                neighborhood_prompts=("The mother tongue of Anna Smith is",))
    base.update(kw)
    return EditRequest(**base)


def test_counterfact_metrics_follow_memits_definitions(llama, tok):
    reqs = [request(0), request(1, subject="John Brown", target_new=" Paris London", target_true=" Berlin")]
    rows = counterfact_metrics(llama, tok, reqs, batch_size=3)
    for r, row in zip(reqs, rows, strict=True):
        def nll(prompt, target):
            return np.mean(manual_scores(llama, tok, prompt, target)[1])

        new, true = nll(r.full_prompt, r.target_new), nll(r.full_prompt, r.target_true)
        assert row["case_id"] == r.case_id
        assert row["efficacy"] == float(new < true)
        assert row["efficacy_magnitude"] == pytest.approx(math.exp(-new) - math.exp(-true), rel=1e-3, abs=1e-6)
        para = [nll(p, r.target_new) < nll(p, r.target_true) for p in r.paraphrase_prompts]
        assert row["generalization"] == pytest.approx(np.mean(para))
        neigh = [nll(p, r.target_true) < nll(p, r.target_new) for p in r.neighborhood_prompts]
        assert row["specificity"] == pytest.approx(np.mean(neigh))
        assert "fluency" not in row


def test_counterfact_specificity_uses_the_answers_to_keep(llama, tok):
    r = request(5, neighborhood_prompts=("The mother tongue of Anna Smith is", "John Brown was born in"),
                neighborhood_targets=(" Spanish", " London"))
    (row,) = counterfact_metrics(llama, tok, [r])
    keep = [np.mean(manual_scores(llama, tok, p, t)[1]) < np.mean(manual_scores(llama, tok, p, r.target_new)[1])
            for p, t in r.neighborhood_pairs()]
    assert row["specificity"] == pytest.approx(np.mean(keep))


def test_counterfact_generation_metrics_are_fluency_and_tfidf_of_the_seeded_texts(llama, tok):
    stats = TfidfStats.fit(["Danielle Darrieux speaks English", "English is spoken in London", "French Paris"])
    with_refs = request(0, generation_prompts=("Danielle Darrieux speaks", "The mother tongue of"),
                        reference_texts=("English is the language of London .", "She speaks English ."))
    no_refs = request(1, generation_prompts=("Anna Smith was born in",))
    no_prompts = request(2)
    rows = counterfact_metrics(llama, tok, [with_refs, no_refs, no_prompts], generation=True, tfidf=stats,
                               max_length=9, top_k=4, seed=3)
    texts = generate_texts(llama, tok, with_refs.generation_prompts, max_length=9, top_k=4, seed=3)
    assert rows[0]["fluency"] == pytest.approx(fluency(texts))
    expected = stats.similarity(" ".join(texts), " ".join(with_refs.reference_texts))
    assert rows[0]["consistency"] == pytest.approx(expected)
    assert "fluency" in rows[1] and "consistency" not in rows[1]  # no reference texts
    assert "fluency" not in rows[2]  # no generation prompts
    with pytest.raises(MetricError, match="needs tfidf"):
        counterfact_metrics(llama, tok, [with_refs], generation=True)


def test_counterfact_needs_the_true_target(llama, tok):
    with pytest.raises(MetricError, match=r"record 7.*target_true"):
        counterfact_metrics(llama, tok, [request(7, target_true="")])


def test_zsre_token_accuracy_is_teacher_forced_argmax_per_token(llama, tok):
    r = EditRequest(case_id=3, prompt="What language does {} speak ?", subject="Toko Yasuda",
                    target_new=" German Spanish English", paraphrase_prompts=("Which language is spoken by Toko",),
                    neighborhood_prompts=("nq question : the capital city of Spain ?",),
                    neighborhood_targets=(" Madrid Paris",))
    (row,) = zsre_metrics(llama, tok, [r])
    assert row["efficacy"] == pytest.approx(np.mean(manual_scores(llama, tok, r.full_prompt, r.target_new)[2]))
    assert row["generalization"] == pytest.approx(
        np.mean(manual_scores(llama, tok, r.paraphrase_prompts[0], r.target_new)[2]))
    assert row["specificity"] == pytest.approx(
        np.mean(manual_scores(llama, tok, r.neighborhood_prompts[0], " Madrid Paris")[2]))


# ---------------------------------------------------------------------------------------------- generation

@torch.no_grad()
def test_greedy_generation_equals_a_loop_without_cache(model, tok):
    prompts = ["The mother tongue of", "Anna Smith was born in", "The capital"]
    texts = generate_texts(model, tok, prompts, max_length=9, top_k=1)
    for prompt, text in zip(prompts, texts, strict=True):
        ids = tok(prompt)["input_ids"]
        while len(ids) < 9:
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        assert text == tok.decode(ids, skip_special_tokens=True)


@torch.no_grad()
def test_sampling_is_seeded_and_stays_in_the_top_k(model, tok):
    prompts = ["The mother tongue of", "Paris is", "John Brown speaks"]
    a = generate_ids(model, tok, prompts, max_length=8, top_k=3, seed=1)
    assert a == generate_ids(model, tok, prompts, max_length=8, top_k=3, seed=1)
    assert a != generate_ids(model, tok, prompts, max_length=8, top_k=3, seed=2)
    assert generate_texts(model, tok, prompts, max_length=8, top_k=3, seed=1) == [
        tok.decode(ids, skip_special_tokens=True) for ids in a]
    for prompt, ids in zip(prompts, a, strict=True):
        assert len(ids) == 8
        assert ids[: len(tok(prompt)["input_ids"])] == tok(prompt)["input_ids"]
        for p in range(len(tok(prompt)["input_ids"]), len(ids)):  # the sampled positions
            logits = model(input_ids=torch.tensor([ids[:p]])).logits[0, -1]
            assert ids[p] in torch.topk(logits, 3).indices.tolist()


# ---------------------------------------------------------------------------------------------- fluency

def test_ngram_entropy_by_hand():
    # bigrams of "a b a b": ab, ba, ab -> (2/3, 1/3); trigrams: aba, bab -> (1/2, 1/2)
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert ngram_entropy("one") == 0.0  # no bigram, no trigram
    assert fluency(["a b a b", "one"]) == pytest.approx(ngram_entropy("a b a b") / 2)
    assert word_tokenize("Paris, France's capital.") == ["Paris", ",", "France's", "capital", "."]


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=4), min_size=3, max_size=30, unique=True))
def test_ngram_entropy_of_distinct_words_is_log_of_the_count(words):
    n = len(words)
    expected = (2 / 3 * math.log2(n - 1) + 4 / 3 * math.log2(n - 2)) / 2
    assert ngram_entropy(" ".join(words)) == pytest.approx(expected)


def test_repetition_lowers_fluency():
    assert ngram_entropy("Paris Paris Paris Paris Paris Paris") < ngram_entropy("a b c d e f")


# ---------------------------------------------------------------------------------------------- consistency

docs_strategy = st.lists(st.lists(st.sampled_from([*POOL, "Über", "x", "42", "naïve"]), min_size=1, max_size=12)
                         .map(" ".join), min_size=1, max_size=6)


@settings(max_examples=25)
@given(docs=docs_strategy, a=docs_strategy, b=docs_strategy)
def test_tfidf_matches_scikit_learn(docs, a, b):
    from sklearn.feature_extraction.text import TfidfVectorizer

    text_a, text_b = " ".join(a), " ".join(b)
    try:
        vec = TfidfVectorizer().fit(docs)
    except ValueError:  # scikit-learn refuses a corpus with no term of two or more characters
        with pytest.raises(TfidfError, match="no document holds a term"):
            TfidfStats.fit(docs)
        return
    ours = TfidfStats.fit(docs)
    assert ours.vocabulary == vec.vocabulary_
    np.testing.assert_allclose(ours.idf, vec.idf_, rtol=1e-12)
    enc = vec.transform([text_a, text_b]).toarray()
    norms = np.linalg.norm(enc, axis=1)
    expected = float(enc[0] @ enc[1] / (norms[0] * norms[1])) if norms.all() else 0.0
    assert ours.similarity(text_a, text_b) == pytest.approx(expected, abs=1e-12)
    # MEMIT's files are scikit-learn's idf_ and vocabulary_: loaded as they are, the same numbers
    from_files = TfidfStats({k: int(v) for k, v in vec.vocabulary_.items()}, vec.idf_)
    assert from_files.similarity(text_a, text_b) == pytest.approx(expected, abs=1e-12)


def test_tfidf_statistics_are_validated():
    with pytest.raises(ValueError, match="1-D"):
        TfidfStats({"a": 0}, np.ones((1, 1)))
    with pytest.raises(ValueError, match=r"columns must be 0..1"):
        TfidfStats({"aa": 0, "bb": 0}, np.ones(2))
    with pytest.raises(ValueError, match="finite and positive"):
        TfidfStats({"aa": 0}, np.array([np.nan]))


# ---------------------------------------------------------------------------------------------- aggregation

@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_summary_is_mean_and_standard_error(values):
    from scipy import stats

    rows = [{"case_id": i, "efficacy": v} for i, v in enumerate(values)]
    rows.append({"case_id": "x"})  # a record without the metric does not count
    s = summarize(rows)["efficacy"]
    assert s["n"] == len(values)
    assert s["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    if len(values) > 1:
        assert s["sem"] == pytest.approx(stats.sem(values), abs=1e-12)
    else:
        assert s["sem"] is None
    assert as_percent({"efficacy": s})["efficacy"][0] == pytest.approx(100 * s["mean"])


def test_generation_every_k_th_request_is_the_full_run_sliced(llama, tok):
    stats = TfidfStats.fit(["Danielle Darrieux speaks English", "English is spoken in London", "French Paris"])
    reqs = [request(i, generation_prompts=("Danielle Darrieux speaks",), reference_texts=("She speaks English .",))
            for i in range(5)]
    full = counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, max_length=8, seed=1)
    every = counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, max_length=8, seed=1,
                                generation_every=2)
    for i, (a, b) in enumerate(zip(full, every, strict=True)):
        if i % 2 == 0:
            assert a == b
        else:  # probabilities kept, generation skipped
            assert "fluency" not in b and "consistency" not in b
            assert {k: v for k, v in a.items() if k not in ("fluency", "consistency")} == b
    for bad in (0, -1, 1.5, True):
        with pytest.raises(MetricError, match="generation_every must be a positive integer"):
            counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, generation_every=bad)


def test_progress_bars_count_the_prompts_and_generations_and_change_nothing(llama, tok, capsys, monkeypatch):
    import llm_experiments.evaluate.metrics as metrics_module

    bars = []

    class Recorder:  # stands in for tqdm: what the bars were told
        def __init__(self, *, total, desc, disable, **_):
            self.total, self.desc, self.disable, self.n = total, desc, disable, 0
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            pass

    stats = TfidfStats.fit(["Danielle Darrieux speaks English", "English is spoken in London", "French Paris"])
    reqs = [request(i, generation_prompts=("Danielle Darrieux speaks",), reference_texts=("She speaks English .",))
            for i in range(5)]
    quiet = counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, max_length=8, seed=1,
                                generation_every=2)
    assert capsys.readouterr().err == ""
    shown = counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, max_length=8, seed=1,
                                generation_every=2, progress=True)
    assert shown == quiet and "score" in capsys.readouterr().err  # the real bars print to stderr
    monkeypatch.setattr(metrics_module, "tqdm", Recorder)
    counterfact_metrics(llama, tok, reqs, generation=True, tfidf=stats, max_length=8, seed=1,
                        generation_every=2, progress=True)
    # 5 requests x (edit prompt + 2 paraphrases + 1 neighbour) x (new, true) = 40 prompts; edits 0, 2, 4 generate
    assert [(b.desc, b.total, b.n, b.disable) for b in bars] == [("score", 40, 40, False), ("generate", 3, 3, False)]
    bars.clear()
    assert zsre_metrics(llama, tok, reqs[:2], progress=True) == zsre_metrics(llama, tok, reqs[:2])
    assert [(b.desc, b.total, b.n, b.disable) for b in bars] == [("score", 8, 8, False), ("score", 8, 8, True)]
