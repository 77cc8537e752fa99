"""The NDCG@3 worked example: the numbers labkit shows equal the hand computation written out here."""
from __future__ import annotations

import math

import pytest

from labkit.course import ir_worked_example as example

pytestmark = pytest.mark.usefixtures("one_thread")

# By hand, from the score table: each query's top 3 and which of them are relevant.
TOP_3 = {"q1": ["d4", "d2", "d1"], "q2": ["d5", "d6", "d2"], "q3": ["d3", "d1", "d5"]}
HAND_DCG = {"q1": 1 / math.log2(2) + 1 / math.log2(4), "q2": 1 / math.log2(4), "q3": 1 + 0.5}
HAND_IDCG = {"q1": 1 + 1 / math.log2(3), "q2": 1.0, "q3": 1 + 1 / math.log2(3) + 1 / math.log2(4)}


def test_the_ranking_is_the_one_worked_out_by_hand():
    ranking = example.toy_ranking(3)
    assert {q: group["doc"].tolist() for q, group in ranking.groupby("query")} == TOP_3
    assert ranking["relevant"].tolist() == [1, 0, 1, 0, 0, 1, 1, 0, 1]
    assert ranking["discount"].tolist()[:3] == pytest.approx([1, 1 / math.log2(3), 0.5])
    assert ranking.groupby("query")["gain"].sum().to_dict() == pytest.approx(HAND_DCG)


def test_dcg_idcg_and_ndcg_match_the_hand_formula():
    table = example.ndcg_by_hand(3).set_index("query")
    assert table["relevant_in_top_k"].to_dict() == {"q1": "101", "q2": "001", "q3": "101"}
    assert table["dcg"].to_dict() == pytest.approx(HAND_DCG)
    assert table["idcg"].to_dict() == pytest.approx(HAND_IDCG)
    assert table["ndcg@3"].to_dict() == pytest.approx({q: HAND_DCG[q] / HAND_IDCG[q] for q in HAND_DCG})
    mean = sum(HAND_DCG[q] / HAND_IDCG[q] for q in HAND_DCG) / 3
    assert example.toy_ndcg(3) == pytest.approx(mean, abs=1e-12)
    assert round(mean, 4) == 0.7079


def test_the_embeddings_reproduce_the_score_table():
    queries, docs = example.toy_embeddings()
    assert (queries @ docs.t()).tolist() == example.TOY_SCORES.tolist()
    assert set(example.TOY_QRELS) == set(example.TOY_QUERIES)
