"""A new item arrives by ``ecaug refresh --events`` and ``/recommend`` can return it after that one
refresh; rolling the item run back removes its row online (issue 34 item 4). Real Feast, the
embedded Redis, the real trainer, the real CLI for refresh and rollback.

The shop is small and made for the question: 6 categories of 12 items (a category and a brand
attribute each), 180 users who each buy items of one category, so the sequence model learns the
categories within a few epochs. The new item takes the attributes of an existing item of one
category; the user asked about has a history full of that category. Without its generated row the
item is not in the index at all (beyond the checkpoint's vocabulary): it cannot be returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecaug_feast import schema as S

CATEGORIES, PER_CATEGORY, USERS_PER_CATEGORY, HISTORY = 6, 12, 30, 8
K = 10


def _shop(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """events.csv (user, sku, ts) and products.csv (sku, category, brand)."""
    rng = np.random.default_rng(seed)
    products = pd.DataFrame({"sku": [f"p{c}-{i}" for c in range(CATEGORIES) for i in range(PER_CATEGORY)],
                             "category": [f"cat{c}" for c in range(CATEGORIES) for _ in range(PER_CATEGORY)],
                             "brand": [f"brand{c}-{i % 2}" for c in range(CATEGORIES) for i in range(PER_CATEGORY)]})
    rows, t0 = [], pd.Timestamp("2024-01-01", tz="UTC")
    for u in range(CATEGORIES * USERS_PER_CATEGORY):
        c = u % CATEGORIES
        for k, i in enumerate(rng.choice(PER_CATEGORY, HISTORY, replace=False)):
            rows.append((f"u{u}", f"p{c}-{i}", (t0 + pd.Timedelta(hours=u * 24 + k)).isoformat()))
    events = pd.DataFrame(rows, columns=["user", "sku", "ts"])
    folder.mkdir(parents=True, exist_ok=True)
    events.to_csv(folder / "events.csv", index=False)
    products.to_csv(folder / "products.csv", index=False)
    return folder / "events.csv", folder / "products.csv"


def _small_config():
    from ecaug_feast.quality.gates import GateConfig
    from ecaug_feast.synth.gan import GANConfig
    from ecaug_feast.synth.pipeline import AugmentConfig

    return AugmentConfig(gan=GANConfig(max_steps=60, eval_every=30, eval_rows=300, calib_rows=1000),
                         gates=GateConfig(max_c2st_auc=0.999, min_column_shapes=0.3, min_pair_trends=0.3,
                                          max_privacy_drop_share=0.99, min_accepted_share=0.01),
                         max_fit_rows=1000, holdout_rows=200)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The shop ingested, applied, materialized; a user run active (``ecaug refresh`` needs one), a
    sequence checkpoint trained, the first item run (the cold items) published."""
    from ecaug_feast import feast_io
    from ecaug_feast.datasets import load_generic
    from ecaug_feast.datasets.store import load_processed
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.jobs.augment import augment_run
    from ecaug_feast.jobs.augment_items import augment_items, default_generator
    from ecaug_feast.jobs.train import train_real
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.redis_server import EmbeddedRedis, free_port

    home = tmp_path_factory.mktemp("items_home")
    old = {k: os.environ.get(k) for k in ("ECAUG_HOME", "ECAUG_REDIS_URL")}
    server = EmbeddedRedis.for_state(home, port=free_port())
    url = server.start()
    os.environ["ECAUG_HOME"], os.environ["ECAUG_REDIS_URL"] = str(home), url
    try:
        events, products = _shop(home / "shop")
        ds = load_generic(events, {"user": "user", "item": "sku", "timestamp": "ts"}, items=products, name="catshop",
                          split="leave_last_out")
        ingest_dataset(ds)
        ws = Workspace(state_dir=home, redis_url=url)
        repo = ws.feast_repo(url)
        feast_io.apply(repo)
        feast_io.materialize(repo)
        run = augment_run(ws, rows=200, seed=0, config=_small_config())
        assert run["activated"], run
        tr = train_real(ws, dataset="catshop", epochs=15, batch_size=32, embedding_dim=32, seed=0)
        first = augment_items(ws, seed=0)  # the default generator (gar); the refresh reuses it
        assert first["activated"] and first["gate"] == "pass" and first["generator"] == default_generator(), first
        yield SimpleNamespace(home=home, url=url, ws=ws, repo=repo, data=load_processed("catshop"), checkpoint=tr["checkpoint"],
                              first=first)
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(env, *args: str) -> dict:
    e = {**os.environ, "ECAUG_HOME": str(env.home), "ECAUG_REDIS_URL": env.url, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", *args, "--json"], capture_output=True, text=True,
                       env=e, timeout=300)
    assert p.returncode == 0, (args, p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def _online_vector(env, item_id: int):
    from ecaug_feast import feast_io

    df = feast_io.online_features([{S.ITEM_ID: item_id}], S.refs(feast_io.ITEM_SYNTH_VIEW, [S.ITEM_VECTOR, S.RUN_ID]),
                                  repo_dir=env.repo)
    return df[S.ITEM_VECTOR].iloc[0], df[S.RUN_ID].iloc[0]


def test_new_item_by_refresh_is_recommended_and_rollback_removes_it(shop, tmp_path):
    from fastapi.testclient import TestClient

    from ecaug_feast import feast_io
    from recommender.serving.app import create_app
    from recommender.serving.wiring import build_services

    items, _ = feast_io.item_catalog(feast_io.get_store(shop.repo))
    attrs = {int(i): tuple(a) for i, a in zip(items[S.ITEM_ID], items[S.ATTRIBUTES])}
    train = shop.data.train
    # the user asked about: a history full of one category (every item shares its attributes' category)
    hist = train.groupby(S.USER_ID)[S.ITEM_ID].apply(list)
    user = int(hist.index[0])
    model_item = int(hist.iloc[0][-1])
    category = set.intersection(*(set(attrs[i]) for i in hist.iloc[0]))
    assert category, "the shop's users buy within one category"
    new_id = int(items[S.ITEM_ID].max()) + 1
    new_attrs = list(attrs[model_item])  # the attributes of an existing item of that category

    services = build_services("latest", store=feast_io.get_store(shop.repo), poll_s=3600)
    app = create_app(services, admin_token=None, metrics_token=None, state_dir=shop.home)
    with TestClient(app) as client:
        before = client.get(f"/recommend?user_id={user}&k={K}").json()
        assert before["fallback"] is None and new_id not in [it["item_id"] for it in before["items"]]
        assert new_id not in services.models.current.index.item_ids  # without a row: not rankable at all

        # the new item arrives: one event of another user of the category, with its attributes
        other = int(hist.index[CATEGORIES])  # same category (users cycle through the categories)
        t = pd.to_datetime(train[S.EVENT_TIMESTAMP], utc=True).max() + pd.Timedelta(days=30)
        ev = tmp_path / "new_item.csv"
        pd.DataFrame({S.USER_ID: [other], S.ITEM_ID: [new_id], S.EVENT_TIMESTAMP: [t.isoformat()],
                      S.ATTRIBUTES: [" ".join(map(str, new_attrs))]}).to_csv(ev, index=False)
        out = _cli(shop, "refresh", "--events", str(ev))
        step = out["items"]
        assert step["activated"] and step["new_items"] == 1 and step["parent_run_id"] == shop.first["run_id"], step
        assert step["generator"] == shop.first["generator"]
        vec, run_id = _online_vector(shop, new_id)
        assert vec is not None and len(vec) == 32 and run_id == step["run_id"]

        assert services.models.maybe_reload()  # the item publish is seen without a restart
        synth = client.get("/health").json()["synthetic_items"]
        assert synth["new"] == 1 and synth["runs"] == [step["run_id"]], synth
        bundle = services.models.current
        after = client.get(f"/recommend?user_id={user}&k={K}").json()
        got = [it["item_id"] for it in after["items"]]
        assert after["fallback"] is None and new_id in got, (got, new_id)
        # its rank among every unseen item for this user, with the generated vector
        q = bundle.encode_users(services.features.read([user]))
        full = bundle.index.search(q, len(bundle.index), exclude=[services.seen.get(user)])
        rank = int(np.flatnonzero(full.item_ids[0] == new_id)[0])
        assert rank < K
        # and for the category's other users (those who have not bought it): the median rank too
        ranks = []
        for u, items_u in hist.items():
            if set(attrs[items_u[0]]) >= category and int(u) != other:
                q = bundle.encode_users(services.features.read([int(u)]))
                res = bundle.index.search(q, len(bundle.index), exclude=[services.seen.get(int(u))])
                ranks.append(int(np.flatnonzero(res.item_ids[0] == new_id)[0]))
        assert len(ranks) >= USERS_PER_CATEGORY // 2 and np.median(ranks) < K, ranks

        # rollback of the item run: the row leaves the online store, the item the index
        rb = _cli(shop, "runs", "rollback", "--items")
        assert rb["previous"] == step["run_id"] and rb["active"] == shop.first["run_id"] and rb["removed_keys"] == 1
        assert _online_vector(shop, new_id)[0] is None
        assert _online_vector(shop, model_item)[0] is None  # a warm item never had a row
        assert services.models.maybe_reload()
        assert new_id not in services.models.current.index.item_ids
        gone = client.get(f"/recommend?user_id={user}&k={len(services.models.current.index)}").json()
        assert new_id not in [it["item_id"] for it in gone["items"]]
    listed = _cli(shop, "runs", "list", "--items")
    assert listed["active"] == shop.first["run_id"]
    by_id = {r["run_id"]: r for r in listed["runs"]}
    assert by_id[step["run_id"]]["parent_run_id"] == shop.first["run_id"] and by_id[step["run_id"]]["rows"] == 1


def test_augment_items_refuses_an_unknown_generator_before_any_work(shop):
    from ecaug_feast import item_runs
    from ecaug_feast.errors import EcaugError
    from ecaug_feast.jobs.augment_items import augment_items

    before = [r.run_id for r in item_runs.list_runs()]
    with pytest.raises(EcaugError, match="--generator must be one of .*attr_mean"):
        augment_items(shop.ws, generator="nosuch")
    assert [r.run_id for r in item_runs.list_runs()] == before


def test_interrupted_item_publish_is_redone(shop):
    """A publish of an item run killed after the switch (its intent on record, Redis not written)
    is redone by the next command that repairs: the active run's rows come online."""
    from ecaug_feast import intents, item_runs
    from ecaug_feast.jobs import repair

    with_rows = [r for r in item_runs.list_runs() if r.manifest.get("rows")]
    if not with_rows:
        pytest.skip("needs the refresh test's item run (the new item's row)")
    run = with_rows[-1]
    new_id = int(item_runs.rows_of(run)[S.ITEM_ID].max())
    intents.record(shop.home, item_runs.INTENT, repo=str(shop.repo))  # as a process killed mid-publish leaves it
    item_runs.activate(run.run_id)
    assert _online_vector(shop, new_id)[0] is None
    done = repair.redo_pending(shop.ws)
    assert [d["step"] for d in done if d.get("redone")] == [item_runs.INTENT]
    assert _online_vector(shop, new_id)[1] == run.run_id
    assert not intents.pending(shop.home)


def test_refresh_refuses_a_new_item_without_attributes_in_one_line(shop, tmp_path):
    """An unknown item id without its attributes is refused before anything is written: exit 2,
    one line naming the file and the column."""
    from ecaug_feast.features.append import store_events

    before = len(store_events(shop.ws.feast_dir))
    ev = tmp_path / "bad.csv"
    t = store_events(shop.ws.feast_dir)[S.EVENT_TIMESTAMP].max() + pd.Timedelta(days=1)
    user = int(shop.data.train[S.USER_ID].iloc[0])
    pd.DataFrame({S.USER_ID: [user], S.ITEM_ID: [10_000], S.EVENT_TIMESTAMP: [t.isoformat()]}).to_csv(ev, index=False)
    e = {**os.environ, "ECAUG_HOME": str(shop.home), "ECAUG_REDIS_URL": shop.url, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "ecaug_feast.cli.main", "refresh", "--events", str(ev)], capture_output=True,
                       text=True, env=e, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1 and str(ev) in p.stderr and S.ITEM_ID in p.stderr and S.ATTRIBUTES in p.stderr
    assert len(store_events(shop.ws.feast_dir)) == before


def _catalogue(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Items 1..3 with attributes, and a Feast folder whose item_features source holds item 4
    (added by an earlier append)."""
    items = pd.DataFrame({S.ITEM_ID: [1, 2, 3], S.ATTRIBUTES: [[1, 2], [1, 3], [4]]})
    rows = pd.DataFrame({S.ITEM_ID: [1, 4], S.EVENT_TIMESTAMP: pd.to_datetime(["2024-01-01", "2024-02-01"], utc=True),
                         S.ATTRIBUTES: [[1, 2], [2, 4]]})
    rows.to_parquet(tmp_path / "item_features.parquet")
    return items, tmp_path


@pytest.mark.parametrize("ids, attrs, column, words", [
    ([9], [None], S.ITEM_ID, "needs its attribute ids"),      # unknown item, no attributes
    ([6], [[1]], S.ITEM_ID, "must continue"),                 # a gap after 4 (the appended item)
    ([5], [[99]], S.ATTRIBUTES, "attribute id 99"),           # an attribute no item uses
])
def test_new_items_are_checked(tmp_path, ids, attrs, column, words):
    from ecaug_feast.errors import DataValidationError
    from ecaug_feast.features.append import catalogue_with_new_items

    items, feast_dir = _catalogue(tmp_path)
    new = pd.DataFrame({S.USER_ID: [1] * len(ids), S.ITEM_ID: ids, S.ATTRIBUTES: attrs})
    with pytest.raises(DataValidationError) as err:
        catalogue_with_new_items(items, feast_dir, new, "ev.csv", Path("items.parquet"))
    assert column in str(err.value) and words in str(err.value) and "ev.csv" in str(err.value)


def test_new_items_extend_the_catalogue(tmp_path):
    from ecaug_feast.features.append import _attribute_lists, catalogue_with_new_items

    items, feast_dir = _catalogue(tmp_path)
    new = pd.DataFrame({S.USER_ID: [1, 2, 3], S.ITEM_ID: [5, 5, 2],
                        S.ATTRIBUTES: _attribute_lists(pd.Series(["1|4", "[1, 4]", None]), Path("ev.csv"))})
    cat, added = catalogue_with_new_items(items, feast_dir, new, "ev.csv", Path("items.parquet"))
    assert added == [5]
    assert dict(zip(cat[S.ITEM_ID], map(list, cat[S.ATTRIBUTES]))) == {1: [1, 2], 2: [1, 3], 3: [4], 4: [2, 4], 5: [1, 4]}


def test_generated_rows_stand_in_for_untrained_rows_of_the_served_model_only(shop):
    """Serving's use of the online rows (:func:`recommender.serving.loader.load_bundle`): a row of
    the served checkpoint replaces an item's row in the index and in the user tower's input (the
    tied matrix), an item beyond the vocabulary joins the index, a row of another checkpoint or
    of the wrong dimension is not used."""
    from recommender.serving.loader import load_bundle, model_version

    version = model_version(Path(shop.checkpoint))
    base = load_bundle(shop.checkpoint)
    n = len(base.index)
    rng = np.random.default_rng(0)
    v_in, v_new = rng.normal(size=32).astype(np.float32), rng.normal(size=32).astype(np.float32)
    rows = pd.DataFrame({S.ITEM_ID: [3, n + 1, 5, 7], S.ITEM_VECTOR: [v_in, v_new, rng.normal(size=32), rng.normal(size=8)],
                         S.MODEL_VERSION: [version, version, "other@0123456789", version], S.RUN_ID: ["r1"] * 4})
    b = load_bundle(shop.checkpoint, item_vectors=lambda: rows)
    info = b.info["synthetic_items"]
    assert (info["in_vocabulary"], info["new"], info["other_model"], info["bad"]) == (1, 1, 1, 1), info
    assert len(b.index) == n + 1 and b.index.item_ids[-1] == n + 1

    def row(bundle, item):
        return bundle.index._index.reconstruct(int(np.flatnonzero(bundle.index.item_ids == item)[0]))

    assert np.allclose(row(b, 3), v_in) and np.allclose(row(b, n + 1), v_new)
    assert np.allclose(row(b, 5), row(base, 5)) and np.allclose(row(b, 7), row(base, 7))
    from recommender.serving.components import UserFeatures

    u = UserFeatures(1, True, {S.RECENT_ITEMS: [3, 1]})
    assert not np.allclose(b.encode_users([u]), base.encode_users([u]))  # item 3's input row changed too
    u = UserFeatures(1, True, {S.RECENT_ITEMS: [2, 1]})
    assert np.allclose(b.encode_users([u]), base.encode_users([u]), atol=1e-6)


def test_ingest_of_a_grown_catalogue_writes_the_new_items_rows(shop):
    """``ecaug ingest`` of the shop's tables with one product more (bought by two users): the
    product gets the next item id, and its generated row is written and materialized by the same
    command. (Last in the module: it replaces the Feast sources the other tests read.)"""
    from ecaug_feast import item_runs
    from ecaug_feast.datasets import load_generic
    from ecaug_feast.jobs.ingest import ingest

    events, products = shop.home / "shop" / "events.csv", shop.home / "shop" / "products.csv"
    ev, pr = pd.read_csv(events), pd.read_csv(products)
    # attributes no item had (a category with another category's brand): not the refresh test's item either
    pr = pd.concat([pr, pd.DataFrame({"sku": ["p0-new"], "category": ["cat5"], "brand": ["brand0-1"]})], ignore_index=True)
    t = pd.to_datetime(ev["ts"], utc=True).max()
    ev = pd.concat([ev, pd.DataFrame({"user": ["u0", "u6"], "sku": ["p0-new"] * 2,
                                      "ts": [(t + pd.Timedelta(hours=h)).isoformat() for h in (1, 2)]})], ignore_index=True)
    grown = shop.home / "shop2"
    grown.mkdir()
    ev.to_csv(grown / "events.csv", index=False)
    pr.to_csv(grown / "products.csv", index=False)
    before = item_runs.active_run()
    ds = load_generic(grown / "events.csv", {"user": "user", "item": "sku", "timestamp": "ts"}, items=grown / "products.csv",
                      name="catshop", split="leave_last_out")
    out = ingest(shop.ws, ds)
    new_id = CATEGORIES * PER_CATEGORY + 1  # the next id after the products the checkpoint was trained on
    step = out["items"]
    assert step.get("activated") and step["parent_run_id"] == before, step
    rows = item_runs.rows_of(item_runs.load_run(step["run_id"]))
    new = sorted(int(i) for i in rows[S.ITEM_ID] if i > CATEGORIES * PER_CATEGORY)
    assert new == [new_id], new
    vec, run_id = _online_vector(shop, new[0])
    assert vec is not None and run_id == step["run_id"]
