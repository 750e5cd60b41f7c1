"""recommender.item_keys: the shop's item keys <-> model indices, saved beside a checkpoint."""

import pytest

from recommender.item_keys import ItemKeys


def test_round_trip_string_keys(tmp_path):
    keys = ItemKeys.from_values(["b-2", "a-1", "b-2", "c-3"])
    assert keys.keys == ("b-2", "a-1", "c-3") and keys.num_items == 3
    assert keys.index_of(["a-1", "zzz", "c-3"]).tolist() == [2, 0, 3]
    assert keys.key_of([3, 1]) == ["c-3", "b-2"]
    keys.save(tmp_path)
    again = ItemKeys.load(tmp_path)
    assert again == keys and again.index_of(["b-2"]).tolist() == [1]


def test_int_keys_and_unknown_types(tmp_path):
    keys = ItemKeys.from_values([10, 7, 10], dtype="int64")
    assert keys.index_of([7, "7", "x", 99]).tolist() == [2, 2, 0, 0]
    assert ItemKeys.load(tmp_path) is None


def test_bad_dtype_and_duplicates():
    with pytest.raises(ValueError):
        ItemKeys(("a",), "map")
    with pytest.raises(ValueError):
        ItemKeys(("a", "a"))
