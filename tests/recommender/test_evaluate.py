"""Full-ranking metrics against hand-computed cases, ties included."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from recommender.evaluate import evaluate, make_eval_set


def _fixed(scores: list[list[float]]):
    S = torch.tensor(scores, dtype=torch.float32)
    return lambda pos: S[torch.from_numpy(pos)]


def _frame(pairs):
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


def test_single_target_with_exclusion():
    # items 1..5 scored .9 .8 .7 .6 .5; item 1 is a training item -> removed; target 3 lands at rank 1
    es = make_eval_set(_frame([(7, 3)]), [_frame([(7, 1)])])
    m = evaluate(_fixed([[0, 0.9, 0.8, 0.7, 0.6, 0.5]]), es, num_items=5, ks=(1, 2))
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == 1.0
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
    # top-1 of that user is item 2 only -> coverage@10 counts the top 10 = items 2..5
    assert m["coverage@10"] == pytest.approx(4 / 5)


def test_pessimistic_ties_go_against_the_target():
    es = make_eval_set(_frame([(1, 2)]), [])
    m = evaluate(_fixed([[0, 1, 1, 1, 1]]), es, num_items=4, ks=(3, 4), tie_break="pessimistic")
    assert m["recall@3"] == 0.0  # three other items tie -> rank 3
    assert m["recall@4"] == 1.0
    assert m["ndcg@4"] == pytest.approx(1 / math.log2(5))


def test_random_ties_give_chance_level_not_a_free_hit():
    n_users, n_items = 4000, 10
    targets = _frame([(u, 1 + u % n_items) for u in range(1, n_users + 1)])
    es = make_eval_set(targets, [])
    const = lambda pos: torch.ones(len(pos), n_items + 1)  # noqa: E731
    m = evaluate(const, es, num_items=n_items, ks=(2,), tie_break="random", seed=3)
    assert m["recall@2"] == pytest.approx(2 / n_items, abs=0.02)
    # expected NDCG@2 of a uniform rank over 10 slots: (1 + 1/log2 3) / 10
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / n_items, abs=0.02)
    assert evaluate(const, es, num_items=n_items, ks=(2,), tie_break="pessimistic")["recall@2"] == 0.0


def test_two_targets_other_target_counts_as_ahead():
    # scores .4 .3 .2 .1 for items 1..4, targets {1, 3}: ranks 0 and 2
    es = make_eval_set(_frame([(1, 1), (1, 3)]), [])
    m = evaluate(_fixed([[0, 0.4, 0.3, 0.2, 0.1]]), es, num_items=4, ks=(2, 3))
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(1.0 / (1 + 1 / math.log2(3)))
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))


def test_excluded_target_is_a_miss_and_users_average():
    # user 1: target 2 is also a training item -> -inf -> miss; user 2: target 1 at the top
    es = make_eval_set(_frame([(1, 2), (2, 1)]), [_frame([(1, 2)])])
    m = evaluate(_fixed([[0, 0.1, 0.9, 0.5], [0, 0.9, 0.1, 0.5]]), es, num_items=3, ks=(1, 2))
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["users"] == 2


def test_bad_score_shape_is_refused():
    es = make_eval_set(_frame([(1, 1)]), [])
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda pos: torch.zeros(len(pos), 3), es, num_items=4)
