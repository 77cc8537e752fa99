"""labkit.hard_negatives against sentence-transformers' mine_hard_negatives and a naive full-matrix loop.

* Real data: 100 SciFact train claims with their cited abstracts, plus the first 1,000 corpus abstracts, embedded
  once by the offline all-MiniLM-L6-v2. sentence-transformers gets the very same embeddings (its model's
  ``encode_query`` / ``encode_document`` are replaced by a look-up), so any difference is the mining's.
* Random data: a slow reference written from the rules in the module docstring (full score matrix, Python loops),
  with duplicate texts, anchors with several positives and an anchor that is also a corpus text.
"""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch

from labkit.hard_negatives import (
    deduplicate_pairs, false_negative_suspects, filter_sweep, mine_from_embeddings, mine_hard_negatives,
    suspect_examples, top_k_scores,
)

N_CLAIMS, N_DOCS = 100, 1000
ENCODE_MAX_LENGTH = 64  # any embeddings do for the comparison; short inputs keep a shared CPU quick


def read_scifact(folder, n_claims: int, n_docs: int):
    """(claims, cited abstracts) of the first n_claims train claims, one row per qrels row, and a corpus made of the
    first n_docs abstracts. Abstract text = title + " " + text, as BEIR does. Read straight from the BEIR files."""
    docs = {}
    with open(folder / "corpus.jsonl") as lines:
        for line in lines:
            doc = json.loads(line)
            docs[doc["_id"]] = f"{doc['title']} {doc['text']}".strip()
    with open(folder / "queries.jsonl") as lines:
        claims = {q["_id"]: q["text"] for q in map(json.loads, lines)}
    with open(folder / "qrels" / "train.tsv") as rows:
        qrels = [(row["query-id"], row["corpus-id"]) for row in csv.DictReader(rows, delimiter="\t")]
    chosen = list(dict.fromkeys(q for q, _ in qrels))[:n_claims]
    pairs = [(claims[q], docs[d]) for q, d in qrels if q in set(chosen)]
    return [a for a, _ in pairs], [p for _, p in pairs], list(docs.values())[:n_docs]


@pytest.fixture(scope="module")
def scifact(data_dir, minilm):
    folder = data_dir / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip("SciFact is not in the dataset mirror")
    anchors, positives, corpus = read_scifact(folder, N_CLAIMS, N_DOCS)
    pairs = deduplicate_pairs(anchors, positives, corpus)
    texts = pairs.queries + pairs.corpus
    embeddings = minilm.encode(texts, batch_size=64, normalize=True, convert_to_tensor=True,
                               max_length=ENCODE_MAX_LENGTH)
    lookup = dict(zip(texts, embeddings.numpy()))
    return anchors, positives, corpus, pairs, lookup


@pytest.fixture(scope="module")
def st_model(scifact):
    pytest.importorskip("datasets")
    from sentence_transformers import SentenceTransformer

    from labkit.model import default_model_path

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    lookup = scifact[4]
    model.encode_query = model.encode_document = lambda texts, **_: np.stack([lookup[t] for t in texts])
    return model


def run_st(st_model, anchors, positives, corpus, capsys, **settings):
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives as st_mine

    capsys.readouterr()
    dataset = Dataset.from_dict({"claim": anchors, "abstract": positives})
    result = st_mine(dataset, st_model, corpus=corpus, verbose=True, **settings)
    return result.to_dict(), capsys.readouterr().out


def run_labkit(scifact, corpus, **settings):
    anchors, positives, _, _, lookup = scifact
    pairs = deduplicate_pairs(anchors, positives, corpus)
    embed = lambda texts: torch.from_numpy(np.stack([lookup[t] for t in texts]))  # noqa: E731
    return mine_from_embeddings(pairs, embed(pairs.queries), embed(pairs.corpus), column_names=("claim", "abstract"),
                                chunk_size=128, query_chunk_size=32, **settings)


def assert_same_columns(ours: dict, theirs: dict):
    assert list(ours) == list(theirs)
    for name in ours:
        if name in ("scores", "score"):
            np.testing.assert_allclose(np.array(ours[name], dtype=object).astype(float) if name == "score"
                                       else _flat(ours[name]), _flat(theirs[name]) if name == "scores"
                                       else np.array(theirs[name], dtype=float), atol=2e-6)
        else:
            assert ours[name] == theirs[name], f"column {name!r} differs"


def _flat(lists):
    return np.array([x for row in lists for x in row], dtype=float)


ST_CASES = [
    dict(),
    dict(range_min=5, range_max=30, num_negatives=5),
    dict(absolute_margin=0.0, output_format="n-tuple"),
    dict(relative_margin=0.05, num_negatives=4, output_format="n-tuple", output_scores=True),
    dict(max_score=0.55, min_score=0.3, output_scores=True),
    dict(absolute_margin=0.02, relative_margin=0.1, max_score=0.7, range_min=2, num_negatives=2),
    dict(relative_margin=0.05, range_max=8, num_negatives=2, output_format="labeled-list"),
    dict(absolute_margin=0.05, num_negatives=2, output_format="labeled-pair", output_scores=True),
    dict(max_score=0.45, range_max=12, num_negatives=6, output_format="n-tuple"),
]


@pytest.mark.parametrize("settings", ST_CASES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_equals_sentence_transformers_on_scifact(scifact, st_model, capsys, settings):
    anchors, positives, corpus = scifact[:3]
    theirs, printed = run_st(st_model, anchors, positives, corpus, capsys, **settings)
    ours = run_labkit(scifact, corpus, **settings)
    assert len(ours) > 0
    assert_same_columns(ours.columns, theirs)
    table = ours.statistics.table()
    assert table in printed, f"statistics differ.\nours:\n{table}\nST's output:\n{printed}"


def test_equals_sentence_transformers_without_a_corpus(scifact, st_model, capsys):
    anchors, positives = scifact[:2]
    theirs, printed = run_st(st_model, anchors, positives, None, capsys, num_negatives=2)
    ours = run_labkit(scifact, None, num_negatives=2)
    assert_same_columns(ours.columns, theirs)
    assert ours.statistics.table() in printed


def test_scifact_has_anchors_with_several_positives(scifact):
    """The comparison above covers the multi-positive path (margins against the weakest positive, row order)."""
    pairs = scifact[3]
    assert pairs.max_rows > 1 and len(pairs.pair_query) > len(pairs.queries)


# --- naive reference on random data -------------------------------------------------------------------------


def random_problem(seed=0, n_queries=23, n_corpus=61, dim=16):
    rng = random.Random(seed)
    corpus = [f"doc {i}" for i in range(n_corpus)] + ["doc 3", "doc 5"]  # duplicates, removed by dict.fromkeys
    anchors, positives = [], []
    for q in range(n_queries):
        for _ in range(rng.choice([1, 1, 2, 3])):
            anchors.append(f"query {q}")
            positives.append(rng.choice(corpus[:n_corpus] + [f"extra positive {q}"]))
    anchors.append("doc 7")  # an anchor that is also a corpus text: never its own negative
    positives.append("doc 8")
    pairs = deduplicate_pairs(anchors, positives, corpus)
    generator = torch.Generator().manual_seed(seed)
    query_embeddings = torch.nn.functional.normalize(torch.randn(len(pairs.queries), dim, generator=generator), dim=1)
    corpus_embeddings = torch.nn.functional.normalize(torch.randn(len(pairs.corpus), dim, generator=generator), dim=1)
    corpus_index = {t: i for i, t in enumerate(pairs.corpus)}
    corpus_embeddings[corpus_index["doc 7"]] = query_embeddings[pairs.queries.index("doc 7")]  # scores 1: the top
    return anchors, positives, corpus, pairs, query_embeddings, corpus_embeddings


def naive_candidates(pairs, query_embeddings, corpus_embeddings, range_min, range_max, settings):
    """Per unique query, the allowed negatives (corpus index, score) after every rule, best first; plus how many
    candidates each filter skipped. Written from the rules, one query and one candidate at a time."""
    scores = (query_embeddings @ corpus_embeddings.T).tolist()
    positives = {}
    for q, p in zip(pairs.pair_query.tolist(), pairs.pair_positive.tolist()):
        positives.setdefault(q, []).append(p)
    window = range_max + pairs.max_rows + 1
    allowed, skipped = [], dict.fromkeys(["absolute_margin", "relative_margin", "max_score", "min_score"], 0)
    for q, query in enumerate(pairs.queries):
        weakest = min(sum(a * b for a, b in zip(query_embeddings[q].tolist(), corpus_embeddings[p].tolist()))
                      for p in positives[q])
        ranked = sorted(range(len(pairs.corpus)), key=lambda c: -scores[q][c])[:window]
        survivors = []
        for c in ranked:
            s = scores[q][c]
            if c in positives[q] or pairs.corpus[c] == query:
                continue
            rule = next((name for name, rejects in [
                ("absolute_margin", lambda m: s + m > weakest), ("relative_margin", lambda m: s > weakest - abs(weakest) * m),
                ("max_score", lambda m: s > m), ("min_score", lambda m: s < m),
            ] if settings.get(name) is not None and rejects(settings[name])), None)
            if rule:
                skipped[rule] += 1
            else:
                survivors.append((c, s))
        allowed.append(survivors[:range_max][range_min:])
    return allowed, skipped


NAIVE_CASES = [
    dict(range_min=0, range_max=None, num_negatives=3),
    dict(range_min=2, range_max=9, num_negatives=4, absolute_margin=-0.1),
    dict(range_min=1, range_max=20, num_negatives=5, relative_margin=0.3, max_score=0.6, min_score=-0.2),
    dict(range_min=0, range_max=70, num_negatives=2, absolute_margin=0.1, relative_margin=0.05),
]


@pytest.mark.parametrize("case", NAIVE_CASES)
@pytest.mark.parametrize("chunks", [(7, 3), (1000, 1000)], ids=["chunked", "one-block"])
def test_top_mode_equals_naive_loop(case, chunks):
    _, _, _, pairs, queries, corpus = random_problem()
    settings = {k: v for k, v in case.items() if k in ("absolute_margin", "relative_margin", "max_score", "min_score")}
    mined = mine_from_embeddings(pairs, queries, corpus, range_min=case["range_min"], range_max=case["range_max"],
                                 num_negatives=case["num_negatives"], chunk_size=chunks[0], query_chunk_size=chunks[1],
                                 output_format="n-tuple", **settings)
    range_max = mined.statistics.range_max
    allowed, skipped = naive_candidates(pairs, queries, corpus, case["range_min"], range_max, settings)
    for q, expected in enumerate(allowed):
        expected = expected[: case["num_negatives"]]
        finite = mined.negative_scores[q] != -float("inf")
        assert mined.negative_indices[q][finite].tolist() == [c for c, _ in expected], f"query {q}"
        np.testing.assert_allclose(mined.negative_scores[q][finite].numpy(), [s for _, s in expected], atol=1e-6)
    assert {k: v for k, v in skipped.items() if v} == mined.statistics.skipped
    # n-tuple rows: exactly the pairs whose anchor got all its negatives
    full = [len(a) >= case["num_negatives"] for a in allowed]
    assert len(mined) == sum(full[q] for q in mined.pair_query.tolist())


def test_default_range_max_follows_sentence_transformers():
    _, _, _, pairs, queries, corpus = random_problem()
    assert pairs.max_rows == 3
    plain = mine_from_embeddings(pairs, queries, corpus, range_min=2, num_negatives=4)
    filtered = mine_from_embeddings(pairs, queries, corpus, range_min=2, num_negatives=4, max_score=0.9)
    assert (plain.statistics.range_max, filtered.statistics.range_max) == (2 + 4 + 3, 2 + 40 + 3)
    only_min = mine_from_embeddings(pairs, queries, corpus, num_negatives=4, min_score=0.0)
    assert only_min.statistics.range_max == 4 + 3  # min_score alone does not widen the range (as in ST)


def test_triplets_list_every_negative_of_every_pair_in_order():
    anchors, positives, _, pairs, queries, corpus = random_problem()
    mined = mine_from_embeddings(pairs, queries, corpus, num_negatives=2, range_max=5, max_score=0.0,
                                 output_scores=True)
    expected = []
    for q, p in zip(mined.pair_query.tolist(), mined.positive_indices.tolist()):
        for c, s in zip(mined.negative_indices[q].tolist(), mined.negative_scores[q].tolist()):
            if s != -float("inf"):
                expected.append((pairs.queries[q], pairs.corpus[p], pairs.corpus[c]))
    assert list(zip(*[mined.columns[n] for n in ("anchor", "positive", "negative")])) == expected
    assert set(zip(anchors, positives)) == set(zip(mined.columns["anchor"], mined.columns["positive"])) | {
        (pairs.queries[q], pairs.corpus[p]) for q, p in zip(mined.pair_query.tolist(), mined.positive_indices.tolist())
        if not (mined.negative_scores[q] != -float("inf")).any()}
    assert all(score[1] <= 0.0 for score in mined.columns["scores"])
    assert mined.statistics.missing == mined.statistics.possible - len(mined) > 0


def test_random_sampling_is_seeded_and_respects_the_rules():
    _, _, _, pairs, queries, corpus = random_problem()
    kwargs = dict(range_min=1, range_max=15, num_negatives=4, relative_margin=0.2, sampling_strategy="random",
                  output_format="n-tuple", chunk_size=5)
    first = mine_from_embeddings(pairs, queries, corpus, seed=3, **kwargs)
    again = mine_from_embeddings(pairs, queries, corpus, seed=3, **kwargs)
    other = mine_from_embeddings(pairs, queries, corpus, seed=4, **kwargs)
    assert torch.equal(first.negative_indices, again.negative_indices) and first.columns == again.columns
    assert not torch.equal(first.negative_indices, other.negative_indices)
    allowed, _ = naive_candidates(pairs, queries, corpus, 1, 15, {"relative_margin": 0.2})
    for q, options in enumerate(allowed):
        finite = first.negative_scores[q] != -float("inf")
        picked = first.negative_indices[q][finite].tolist()
        assert len(set(picked)) == len(picked) == min(4, len(options))
        assert set(picked) <= {c for c, _ in options}
        assert first.negative_scores[q][finite].tolist() == sorted(first.negative_scores[q][finite].tolist(),
                                                                     reverse=True)
    # Over many seeds, random mode reaches beyond the top 4 (it samples, it does not just take the best).
    widest = max(range(len(allowed)), key=lambda q: len(allowed[q]))
    assert len(allowed[widest]) > 6
    reached = {c for seed in range(20) for c in mine_from_embeddings(pairs, queries, corpus, seed=seed, **kwargs)
               .negative_indices[widest].tolist()}
    assert 4 < len(reached) <= len(allowed[widest])


def test_top_k_scores_is_the_full_matrix_top_k():
    generator = torch.Generator().manual_seed(1)
    queries, corpus = torch.randn(10, 8, generator=generator), torch.randn(37, 8, generator=generator)
    scores, indices = top_k_scores(queries, corpus, k=9, chunk_size=4, query_chunk_size=3)
    full = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(corpus, dim=1).T
    expected_scores, expected_indices = full.topk(9, dim=1)
    assert torch.equal(indices, expected_indices)
    torch.testing.assert_close(scores, expected_scores)
    padded_scores, padded_indices = top_k_scores(queries, corpus[:5], k=7, chunk_size=2)
    assert (padded_indices[:, 5:] == -1).all() and padded_scores[:, 5:].isinf().all()


def test_mine_hard_negatives_encodes_with_the_model(minilm):
    import pandas as pd

    table = pd.DataFrame({"question": ["What do cats eat?", "How fast is light?"],
                          "answer": ["Cats eat fish and mice.", "Light travels at 300,000 km per second."]})
    corpus = ["Dogs eat meat.", "Sound travels at 343 m/s.", "Mice eat cheese.", "The sun is a star.",
              "Cats like to sleep."]
    mined = mine_hard_negatives(minilm, table, corpus=corpus, num_negatives=2, output_format="n-tuple")
    assert list(mined.columns) == ["question", "answer", "negative_1", "negative_2"]
    embeddings = minilm.encode(mined.queries + mined.corpus, normalize=True, convert_to_tensor=True)
    pairs = deduplicate_pairs(table["question"], table["answer"], corpus)
    direct = mine_from_embeddings(pairs, embeddings[:2], embeddings[2:], num_negatives=2, output_format="n-tuple",
                                  column_names=("question", "answer"))
    assert mined.columns == direct.columns
    assert mined.to_pandas().shape == (2, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(corpus=[]), "corpus is empty"),
    (dict(num_negatives=0), "num_negatives must be at least 1"),
    (dict(range_min=5, range_max=3), "range_min must be smaller than range_max"),
    (dict(range_min=0, range_max=2, num_negatives=3), "Cannot mine 3 negatives"),
    (dict(range_min=-1), "range_min must be non-negative"),
    (dict(positives=["only one"]), "must pair up"),
    (dict(sampling_strategy="best"), "Unknown sampling_strategy"),
    (dict(output_format="triplets"), "Unknown output_format"),
    (dict(chunk_size=0), "chunk_size"),
])
def test_clear_errors(kwargs, message):
    class NeverEncodes:  # errors come before any encoding
        def encode(self, *args, **kwargs):
            raise AssertionError("encoded before checking the arguments")

    arguments = dict(anchors=["a", "b"], positives=["x", "y"], corpus=["x", "y", "z"]) | kwargs
    with pytest.raises(ValueError, match=message):
        mine_hard_negatives(NeverEncodes(), **arguments)


def test_no_pairs_and_non_text_are_errors():
    with pytest.raises(ValueError, match="at least one"):
        deduplicate_pairs([], [], ["x"])
    with pytest.raises(TypeError, match="must be strings"):
        deduplicate_pairs(["a"], [3], ["x"])


# --- false negatives: what the filters do ---------------------------------------------------------------------


def test_false_negative_suspects_and_filter_sweep():
    _, _, _, pairs, queries, corpus = random_problem()
    mined = mine_from_embeddings(pairs, queries, corpus, num_negatives=3)
    suspects = false_negative_suspects(mined)
    weakest = {}
    for q, s in zip(mined.pair_query.tolist(), mined.positive_scores.tolist()):
        weakest[q] = min(weakest.get(q, s), s)
    expected = [[s >= weakest[q] for s in row] for q, row in enumerate(mined.negative_scores.tolist())]
    assert suspects.tolist() == expected
    sweep = filter_sweep(pairs, queries, corpus, {"none": {}, "absolute_margin=0": {"absolute_margin": 0.0},
                                                   "max_score=0.5": {"max_score": 0.5}}, num_negatives=3)
    assert sweep["none"]["suspects"] == int(suspects.sum()) > 0
    assert sweep["absolute_margin=0"]["suspects"] == 0  # a margin of 0 keeps only negatives below the positive
    capped = mine_from_embeddings(pairs, queries, corpus, num_negatives=3, max_score=0.5)
    assert sweep["max_score=0.5"]["suspects"] == int(false_negative_suspects(capped).sum())
    assert sweep["max_score=0.5"]["negatives"] == int((capped.negative_scores != -float("inf")).sum())


def test_suspect_examples_are_the_highest_scored_suspect_top_negatives():
    _, _, _, pairs, queries, corpus = random_problem()
    mined = mine_from_embeddings(pairs, queries, corpus, num_negatives=2)
    weakest = {}
    for q, s in zip(mined.pair_query.tolist(), mined.positive_scores.tolist()):
        weakest[q] = min(weakest.get(q, s), s)
    expected = sorted((float(mined.negative_scores[q, 0]), q) for q in weakest
                      if mined.negative_scores[q, 0] >= weakest[q] and weakest[q] >= 0.1)[::-1][:3]
    examples = suspect_examples(mined, count=3, min_positive_score=0.1)
    assert [(e["negative_score"], e["anchor"]) for e in examples] == [(s, pairs.queries[q]) for s, q in expected]
    assert all(e["negative"] == pairs.corpus[int(mined.negative_indices[pairs.queries.index(e["anchor"]), 0])]
               for e in examples)
