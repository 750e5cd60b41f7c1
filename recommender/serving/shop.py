"""Serving a model trained from a shop's own Feast repo (issue 31 item 4, docs/CONTRACT.md §8).

Such a checkpoint (``<state>/repos/<feast project>/models/<name>``) stores the shop's item keys
(``item_keys.json``, :class:`recommender.item_keys.ItemKeys`) and, in ``config.json``,
``data.repo = {project, events, user_key, item_key, user_dtype, item_dtype, history}``: where the
shop's events are, how its users and items are keyed, and ``history = {"view", "field"}``, the list
feature of a user's recent item keys (newest first) in the shop's online store.

``/recommend?user_id=<the shop's key>`` then reads that list through Feast, maps it to model
indices (keys the model never saw are dropped), runs the sequence user tower and answers the
shop's item keys. What depends on the model's vocabulary (the item keys, the popularity fallback,
each user's seen items from the shop's event log) lives in a :class:`ShopVocab` carried by the
model bundle, so a hot reload onto a checkpoint with more items swaps all of it at once. The event
log itself (:class:`ShopEventLog`) is read at start and again on a reload only when its source
changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ecaug_feast import schema as S
from ecaug_feast.errors import EcaugError

from recommender.item_keys import DTYPES, ItemKeys
from recommender.serving.components import Popularity, SeenItems, UserFeatures

MAX_KEY_CHARS = 256  # longest user/item key a request may carry (a UUID is 36)
_INT_RANGE = {"int64": (-(1 << 63), (1 << 63) - 1), "int32": (-(1 << 31), (1 << 31) - 1)}


def _dtype(value: Any, what: str, cfg: Path) -> str:
    d = str(value or "").lower()
    if d not in DTYPES:
        raise EcaugError(f"{cfg}: data.repo.{what} {value!r}: not one of {', '.join(DTYPES)}")
    return d


@dataclass(frozen=True)
class RepoModel:
    """The ``data.repo`` section of a checkpoint trained from a shop's repo."""

    project: str
    events: str
    user_key: str
    item_key: str
    user_dtype: str
    item_dtype: str
    history_view: str | None
    history_field: str | None

    @classmethod
    def of(cls, meta: dict[str, Any], where: Path) -> "RepoModel | None":
        """The section of a parsed ``config.json``, None when the checkpoint is of ecaug's own data."""
        data = meta.get("data") if isinstance(meta, dict) else None
        repo = data.get("repo") if isinstance(data, dict) else None
        if repo is None:
            return None
        cfg = where / "config.json"
        if not isinstance(repo, dict):
            raise EcaugError(f"{cfg}: data.repo is not an object")
        missing = [k for k in ("project", "events", "user_key", "item_key") if not repo.get(k)]
        if missing:
            raise EcaugError(f"{cfg}: data.repo has no {', '.join(missing)}")
        hist = repo.get("history")
        if hist is not None and (not isinstance(hist, dict) or not hist.get("view") or not hist.get("field")):
            raise EcaugError(f"{cfg}: data.repo.history must be {{\"view\": V, \"field\": F}} or null, got {hist!r}")
        return cls(str(repo["project"]), str(repo["events"]), str(repo["user_key"]), str(repo["item_key"]),
                   _dtype(repo.get("user_dtype", "string"), "user_dtype", cfg),
                   _dtype(repo.get("item_dtype", "string"), "item_dtype", cfg),
                   hist and str(hist["view"]), hist and str(hist["field"]))

    @property
    def history_ref(self) -> str:
        return f"{self.history_view}:{self.history_field}"


def key_parser(dtype: str) -> Callable[[Any], Any]:
    """``parse(raw)``: a request's key as the shop's type (``str``; ``int`` in range for Int64 /
    Int32). Raises ValueError with a reason that does not echo the input."""
    if dtype == "string":
        def parse_str(raw: Any) -> str:
            s = str(raw)
            if not s or len(s) > MAX_KEY_CHARS:
                raise ValueError(f"must be 1..{MAX_KEY_CHARS} characters")
            return s
        return parse_str
    lo, hi = _INT_RANGE[dtype]

    def parse_int(raw: Any) -> int:
        try:
            v = int(str(raw).strip()) if not isinstance(raw, (int, np.integer)) else int(raw)
        except ValueError:
            raise ValueError(f"must be an {dtype.capitalize()} key (an integer)") from None
        if not lo <= v <= hi:
            raise ValueError(f"must be an {dtype.capitalize()} key (between {lo} and {hi})")
        return v

    return parse_int


@dataclass(frozen=True)
class ShopVocab:
    """What one model's item vocabulary decides: the shop's item keys (index i = ``keys[i-1]``),
    the popularity fallback and each user's seen items (from the shop's real events), in that
    model's indices; and the list feature the user's history is read from."""

    item_keys: ItemKeys
    popularity: Popularity
    seen: SeenItems
    history_field: str

    @classmethod
    def build(cls, item_keys: ItemKeys, users: np.ndarray, items: Sequence[Any], history_field: str) -> "ShopVocab":
        """From the shop's real events (``users[j]`` bought ``items[j]``, the shop's keys)."""
        idx = item_keys.index_of(items)
        n = item_keys.num_items
        counts = np.bincount(idx, minlength=n + 1)[1:].astype(np.float64)  # index 0: items the model does not know
        return cls(item_keys, Popularity(np.arange(1, n + 1, dtype=np.int64), counts),
                   SeenItems.from_pairs(users, idx), history_field)

    def localize(self, f: UserFeatures) -> UserFeatures:
        """The online row with its history as model indices (newest first, unknown keys dropped)
        under ``recent_items``, and ``n_interactions`` = the known ones (none known: a cold user)."""
        raw = f.values.get(self.history_field)
        known = self.item_keys.index_of(raw if raw is not None else [])
        known = known[known > 0]
        return UserFeatures(f.user_id, f.found, {S.RECENT_ITEMS: known.tolist(), S.N_INTERACTIONS: int(len(known))},
                            f.event_timestamp)

    def keys_of(self, ids: Sequence[int]) -> list[Any]:
        return self.item_keys.key_of(ids)


def check_store(store: Any, spec: RepoModel, where: Path) -> None:
    """The shop's repo can serve this checkpoint: same Feast project, the event source and the
    history view registered, the view keyed by the checkpoint's user key, the field a list.
    Each failure is one line naming what differs."""
    project = str(store.config.project)
    if project != spec.project:
        raise EcaugError(f"{where}: trained from Feast project {spec.project!r}, the repo is project {project!r}")
    if spec.history_view is None:
        raise EcaugError(f"{where}: trained without a history feature (data.repo.history is null): serving reads a "
                         "user's recent items online; train with `ecaug train --repo R --events SRC --history VIEW:FIELD`")
    try:
        store.get_data_source(spec.events)
    except Exception:  # noqa: BLE001 - Feast's not-found error: one line
        raise EcaugError(f"{where}: trained on events {spec.events!r}, no such data source in the repo") from None
    try:
        view = store.get_feature_view(spec.history_view)
    except Exception:  # noqa: BLE001
        raise EcaugError(f"{where}: history view {spec.history_view!r}: no such feature view in the repo") from None
    keys = [c.name for c in view.entity_columns]
    if keys != [spec.user_key]:
        raise EcaugError(f"--history {spec.history_ref}: the view is keyed by {keys}, the model's users by {spec.user_key!r}")
    field = next((f for f in view.features if f.name == spec.history_field), None)
    if field is None:
        raise EcaugError(f"--history {spec.history_ref}: the view has no field {spec.history_field!r}")
    if not str(field.dtype).startswith("Array("):
        raise EcaugError(f"--history {spec.history_ref}: type {field.dtype}; a user's history is a list (Array) feature")


def source_stamp(source: Any, repo_path: str | Path | None) -> tuple[Any, ...] | None:
    """What says a shop's event source changed: its registered definition and, for a local file
    or folder (a ``FileSource``), each file's path, size and ``mtime_ns``. None where that cannot
    be told (another kind of source, a remote path, a file gone): then it is read again."""
    raw = str(getattr(source, "path", None) or "")
    if not raw or ("://" in raw and not raw.startswith("file://")):
        return None
    p = Path(raw.removeprefix("file://"))
    p = p if p.is_absolute() or repo_path is None else Path(repo_path) / p
    try:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        stats = tuple((str(f), st.st_size, st.st_mtime_ns) for f in files for st in (f.stat(),))
    except OSError:  # removed or replaced while listed: read it again
        return None
    if not stats:
        return None
    return source.to_proto().SerializeToString(deterministic=True), stats


def read_shop_events(store: Any, source: Any, spec: RepoModel) -> tuple[np.ndarray, list[Any]]:
    """(user keys, item keys) of every real event of ``source``, read by the shop's offline store."""
    from ecaug_feast import plugin

    ev = plugin.read_events(store, source, spec.user_key, spec.item_key)
    return ev[spec.user_key].to_numpy(), ev[spec.item_key].tolist()


class ShopEventLog:
    """The checkpoint's real events (what seen items and popularity come from), read at start and
    read again by :meth:`get` only when :func:`source_stamp` says the source changed, so a hot
    reload onto a new model does not read the whole event log again for nothing.

    ``read``: how the source is read (default :func:`read_shop_events`, the shop's offline store)."""

    def __init__(self, store: Any, spec: RepoModel,
                 read: Callable[[Any, Any, RepoModel], tuple[np.ndarray, list[Any]]] = read_shop_events):
        self.store = store
        self.spec = spec
        self._read = read
        self._stamp: tuple[Any, ...] | None = None
        self._events: tuple[np.ndarray, list[Any]] | None = None

    def get(self) -> tuple[np.ndarray, list[Any]]:
        """(user keys, item keys): those read before when the source is unchanged, else read now."""
        source = self.store.get_data_source(self.spec.events)  # the registry's definition now
        stamp = source_stamp(source, self.store.config.repo_path)  # taken before the read: a write during it reads again next time
        if self._events is None or stamp is None or stamp != self._stamp:
            self._events = self._read(self.store, source, self.spec)
            self._stamp = stamp
        return self._events
