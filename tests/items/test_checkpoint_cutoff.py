"""The training-data cut-off ``augment-items`` tells warm items by is what the checkpoint records
(``config.json``: ``data.read_at``, written by ``ecaug train``), not the file's mtime: a copied
checkpoint with a new mtime gives the same warm items. An older checkpoint without the field falls
back to the mtime, with one log line. Real ingest, Feast repo, trainer and append; no Redis (offline
reads and ``publish=False`` only)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ecaug_feast import feast_io
from ecaug_feast import schema as S

pytestmark = pytest.mark.slow

USERS = 200


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Beauty's first ``USERS`` users ingested and applied, a sequence checkpoint trained (1
    epoch), then one event appended for an item with no positive training event before it."""
    from recommender.checkpoint import read_config

    from ecaug_feast.datasets import load_dataset, subset_users
    from ecaug_feast.features.append import append_events
    from ecaug_feast.features.ingest import ingest_dataset
    from ecaug_feast.jobs.train import train_real
    from ecaug_feast.jobs.workspace import Workspace
    from ecaug_feast.redis_server import NOT_RUNNING_URL

    home = tmp_path_factory.mktemp("cutoff_home")
    old = os.environ.get("ECAUG_HOME")
    os.environ["ECAUG_HOME"] = str(home)
    try:
        ds = subset_users(load_dataset("beauty"), USERS)
        ingest_dataset(ds)
        feast_io.apply(feast_io.render_repo(home / "feature_repo", state_dir=home, redis_url=NOT_RUNNING_URL))
        ws = Workspace(state_dir=home)
        tr = train_real(ws, dataset=ds.name, epochs=1, batch_size=32, embedding_dim=16, seed=0)
        ckpt = Path(tr["checkpoint"])
        meta = read_config(ckpt)
        ti = feast_io.source_rows(feast_io.source_file(ws.feast_dir, feast_io.TRAIN_SOURCE))
        n_vocab = int(meta["model"]["num_items"])
        never = sorted(set(range(1, n_vocab + 1)) - set(ti.loc[ti[S.LABEL] == 1, S.ITEM_ID].tolist()))
        assert never, "every catalogue item has a training event: no item can turn warm by an append"
        time.sleep(1.1)  # appended_at has whole seconds: after the recorded read, not in its second
        new = pd.DataFrame({S.USER_ID: [int(ti[S.USER_ID].min())], S.ITEM_ID: [never[0]],
                            S.EVENT_TIMESTAMP: [ti[S.EVENT_TIMESTAMP].max() + pd.Timedelta(hours=1)]})
        assert append_events(new, feast_dir=ws.feast_dir, source="test")["events"] == 1
        yield SimpleNamespace(home=home, ws=ws, ckpt=ckpt, meta=meta, n_vocab=n_vocab, late_item=never[0])
    finally:
        if old is None:
            os.environ.pop("ECAUG_HOME", None)
        else:
            os.environ["ECAUG_HOME"] = old


def _copy(src: Path, dst: Path, drop_read_at: bool = False) -> Path:
    """A copy of the checkpoint whose config.json has an mtime a day after now (as a restore
    gives it), optionally without ``data.read_at`` (an older checkpoint)."""
    shutil.copytree(src, dst)
    if drop_read_at:
        meta = json.loads((dst / "config.json").read_text())
        meta["data"].pop("read_at")
        (dst / "config.json").write_text(json.dumps(meta))
    later = time.time() + 86400
    os.utime(dst / "config.json", (later, later))
    return dst


def test_train_records_the_cutoff_before_the_append(trained):
    from recommender.checkpoint import data_read_at

    from ecaug_feast.features.append import APPENDED_LOG
    from ecaug_feast.features.build import CURRENT

    at = data_read_at(trained.meta)
    assert at is not None, trained.meta.get("data")
    appended = pd.to_datetime(pd.read_parquet(trained.ws.feast_dir / CURRENT / APPENDED_LOG)["appended_at"], utc=True)
    assert (appended > pd.Timestamp(at)).all()
    mtime = pd.Timestamp((trained.ckpt / "config.json").stat().st_mtime_ns, unit="ns", tz="UTC")
    assert pd.Timestamp(at) <= mtime  # read before the checkpoint was written


def test_a_copied_checkpoint_keeps_its_warm_items(trained, tmp_path, caplog):
    from recommender.checkpoint import read_config

    from ecaug_feast.jobs.augment_items import _checkpoint_time, augment_items, warm_items

    cut = _checkpoint_time(trained.ckpt, trained.meta)
    warm = warm_items(trained.ws.feast_dir, trained.n_vocab, cut)
    assert trained.late_item not in warm  # appended after training: the model never saw it

    copy = _copy(trained.ckpt, tmp_path / "restored")
    with caplog.at_level(logging.WARNING, logger="ecaug_feast.jobs.augment_items"):
        assert _checkpoint_time(copy, read_config(copy)) == cut
    assert not caplog.records
    assert np.array_equal(warm_items(trained.ws.feast_dir, trained.n_vocab, _checkpoint_time(copy, read_config(copy))), warm)

    # the whole job on both: same warm and cold items, same cut-off in the run's lineage
    kw = dict(generator="attr_mean", seed=0, publish=False)
    a, b = augment_items(trained.ws, model=trained.ckpt, **kw), augment_items(trained.ws, model=copy, **kw)
    assert (a["warm_items"], a["cold_items"]) == (b["warm_items"], b["cold_items"]) == (len(warm), a["cold_items"])
    lineage = [json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["lineage"]["training_data_cutoff"] for r in (a, b)]
    assert lineage[0] == lineage[1] == cut.isoformat()


def test_an_older_checkpoint_falls_back_to_the_mtime_with_one_line(trained, tmp_path, caplog):
    from recommender.checkpoint import read_config

    from ecaug_feast.jobs.augment_items import _checkpoint_time, warm_items

    old = _copy(trained.ckpt, tmp_path / "old", drop_read_at=True)
    with caplog.at_level(logging.WARNING, logger="ecaug_feast.jobs.augment_items"):
        cut = _checkpoint_time(old, read_config(old))
    assert [r.getMessage() for r in caplog.records if "data.read_at" in r.getMessage()] and len(caplog.records) == 1
    assert cut == pd.Timestamp((old / "config.json").stat().st_mtime_ns, unit="ns", tz="UTC")
    # the moved mtime counts the late event as seen: what the recorded cut-off prevents
    assert trained.late_item in warm_items(trained.ws.feast_dir, trained.n_vocab, cut)
