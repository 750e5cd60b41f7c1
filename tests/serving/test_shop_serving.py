"""The parts of ``ecaug serve --repo`` below the served app (recommender/serving/shop.py): request
keys parsed into the shop's type, a checkpoint's ``data.repo`` read with one-line errors, the
vocabulary (item keys -> indices, popularity and seen items from the shop's events), and the event
log read again on a reload only when its source changed (a real Feast repo, no Redis). The whole
path, with the real Feast and Redis, is tests/plugin/test_shop_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecaug_feast import schema as S
from ecaug_feast.errors import EcaugError
from recommender.item_keys import ItemKeys
from recommender.serving.components import SeenItems, UserFeatures
from recommender.serving.shop import MAX_KEY_CHARS, RepoModel, ShopVocab, key_parser

REPO = {"project": "bookshop", "events": "loans", "user_key": "reader_id", "item_key": "book_id",
        "user_dtype": "string", "item_dtype": "int64", "history": {"view": "reader_shelf", "field": "recent_books"}}


def test_keys_are_parsed_into_the_shops_type_without_echoing_the_input():
    assert key_parser("string")("3f2c-uuid") == "3f2c-uuid"
    with pytest.raises(ValueError, match=f"1..{MAX_KEY_CHARS} characters"):
        key_parser("string")("x" * (MAX_KEY_CHARS + 1))
    p64, p32 = key_parser("int64"), key_parser("int32")
    assert p64("-42") == -42 and p64(" 9223372036854775807") == (1 << 63) - 1 and p32(7) == 7
    for parse, raw in ((p64, "abc"), (p64, str((1 << 63) + 5)), (p32, str((1 << 31) + 5)), (p32, "1.5")):
        with pytest.raises(ValueError) as exc:
            parse(raw)
        assert raw.strip() not in str(exc.value)


def test_repo_section_of_a_checkpoint(tmp_path: Path):
    spec = RepoModel.of({"data": {"repo": REPO}}, tmp_path)
    assert spec.history_ref == "reader_shelf:recent_books" and (spec.user_dtype, spec.item_dtype) == ("string", "int64")
    assert RepoModel.of({"data": {"dataset": "beauty"}}, tmp_path) is None  # ecaug's own data
    assert RepoModel.of({"data": {"repo": {**REPO, "history": None}}}, tmp_path).history_view is None
    bad = [({**REPO, "user_key": ""}, "data.repo has no user_key"),
           ({**REPO, "item_dtype": "float"}, "data.repo.item_dtype 'float': not one of string, int64, int32"),
           ({**REPO, "history": {"view": "v"}}, "data.repo.history must be"),
           ("x", "data.repo is not an object")]
    for repo, msg in bad:
        with pytest.raises(EcaugError, match=msg.replace("(", r"\(").replace(".", r"\.")) as exc:
            RepoModel.of({"data": {"repo": repo}}, tmp_path)
        assert str(tmp_path / "config.json") in str(exc.value) and "\n" not in str(exc.value)


def test_vocab_maps_the_history_and_counts_the_shops_events():
    keys = ItemKeys.from_values([70, 50, 90], "int64")  # indices 1, 2, 3
    users = np.array(["u-b", "u-a", "u-a", "u-a", "u-c"], dtype=object)
    vocab = ShopVocab.build(keys, users, [50, 70, 50, 12345, 90], "recent_books")
    assert vocab.popularity.top(3)[0].tolist() == [2, 1, 3]  # 50 twice; 12345 is no item of the model
    assert vocab.seen.get("u-a").tolist() == [1, 2] and vocab.seen.get("u-z").size == 0 and "u-c" in vocab.seen
    row = vocab.localize(UserFeatures("u-a", True, {"recent_books": [90, 999, 50, "x"]}))
    assert row.values == {S.RECENT_ITEMS: [3, 2], S.N_INTERACTIONS: 2} and row.user_id == "u-a"
    cold = vocab.localize(UserFeatures("u-d", True, {"recent_books": [999]}))  # no known item: cold
    assert cold.n_interactions == 0 and cold.recent_items == []
    assert not vocab.localize(UserFeatures("u-e", False, {"recent_books": None})).found
    assert vocab.keys_of([3, 1]) == [90, 70]


def test_seen_items_keyed_by_int_keys():
    seen = SeenItems.from_pairs(np.array([10**12, 5, 5]), np.array([4, 0, 2]))
    assert seen.get(5).tolist() == [2] and seen.get(10**12).tolist() == [4] and seen.n_users == 2


def _loans_repo(repo: Path) -> tuple[Any, Path]:
    """A shop's Feast repo with one event source ``loans`` (a parquet file), applied through Feast."""
    from feast import FeatureStore, FileSource

    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(
        "project: bookshop\nregistry: data/registry.db\nprovider: local\noffline_store:\n  type: file\n"
        "online_store:\n  type: sqlite\n  path: data/online.db\nentity_key_serialization_version: 3\n")
    loans = repo / "data" / "loans.parquet"
    _write_loans(loans, 3)
    store = FeatureStore(repo_path=str(repo))
    store.apply([FileSource(name="loans", path="data/loans.parquet", timestamp_field="at")])
    return store, loans


def _write_loans(path: Path, n: int, reader: str = "r-1") -> None:
    import pandas as pd

    pd.DataFrame({"reader_id": [reader] * n, "book_id": list(range(70, 70 + n)),
                  "at": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")}).to_parquet(path)


def test_a_reload_reads_the_shops_events_again_only_when_their_source_changed(tmp_path: Path):
    """The event log behind seen items and popularity (``ShopEventLog``, what each hot reload of
    ``ecaug serve --repo`` asks): the real read through the shop's offline store, counted."""
    import os

    from feast import FileSource

    from recommender.serving.shop import ShopEventLog, read_shop_events

    store, loans = _loans_repo(tmp_path / "bookshop")
    reads: list[int] = []

    def counted(store, source, spec):
        got = read_shop_events(store, source, spec)
        reads.append(len(got[1]))
        return got

    log = ShopEventLog(store, RepoModel.of({"data": {"repo": REPO}}, tmp_path), read=counted)
    users, items = log.get()  # at start
    assert reads == [3] and users.tolist() == ["r-1"] * 3 and items == [70, 71, 72]
    assert log.get()[1] == [70, 71, 72] and log.get()[1] == [70, 71, 72]
    assert reads == [3]  # reloads with the source unchanged: not read again

    _write_loans(loans, 5)  # the shop's log grew: another size
    assert log.get()[1] == [70, 71, 72, 73, 74] and reads == [3, 5]
    assert log.get()[1] == [70, 71, 72, 73, 74] and reads == [3, 5]

    _write_loans(loans, 5, reader="r-2")  # same size, rewritten: another mtime
    st = loans.stat()
    os.utime(loans, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert log.get()[0].tolist() == ["r-2"] * 5 and reads == [3, 5, 5]

    # the registry's definition moved to another file: read from there
    _write_loans(loans.with_name("loans2.parquet"), 2)
    store.apply([FileSource(name="loans", path="data/loans2.parquet", timestamp_field="at")])
    assert log.get()[1] == [70, 71] and reads == [3, 5, 5, 2]
    assert log.get()[1] == [70, 71] and reads == [3, 5, 5, 2]
