"""Online ``user_features`` from Redis through Feast, failing fast when Redis is gone.

Failure policy (documented in docs/guide/serving.md): when a read fails, the reader raises
:class:`FeatureStoreUnavailable` and stays "open" for ``retry_s`` seconds, answering every read in
that window with the same exception *without* touching Redis; so while Redis is down each request
costs microseconds (the API serves a flagged popularity answer), and one request per ``retry_s``
probes Redis again; the first success closes the breaker (recovery needs no restart).

redis-py's default policy retries a failed command 3 times with up to seconds of backoff; that is
right for a batch job and wrong for a request with a 5 ms budget, so the reader gives Feast's Redis
client no retries and short socket timeouts.

Redis may come back somewhere else: outside the default state folder ``ecaug redis start`` picks
a free port. So when a read or probe fails the reader asks ``relocate(store)``, in a background
thread (one at a time), for a store pointing at the Redis address in use *now*
(``$ECAUG_REDIS_URL`` or the embedded server's ``server.json``; see
:func:`recommender.serving.wiring.redis_relocator`); a new store replaces the old one and closes
the breaker, so the next request reads from it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from ecaug_feast.redact import redact
from ecaug_feast.schema import USER_FEATURE_COLUMNS

from recommender.serving.components import FeatureStoreUnavailable, UserFeatures

log = logging.getLogger(__name__)

USER_FEATURES = tuple(USER_FEATURE_COLUMNS)
USER_VIEW = "user_features"
_TS = "__ts"  # feast.online_response.TIMESTAMP_POSTFIX


class FeastFeatureReader:
    """:class:`~recommender.serving.components.FeatureReader` over a ``feast.FeatureStore``."""

    def __init__(
        self,
        store: Any,
        features: Sequence[str] = USER_FEATURES,
        view: str = USER_VIEW,
        retry_s: float = 0.5,
        socket_timeout_s: float = 0.25,
        relocate: Callable[[Any], Any | None] | None = None,
        join_key: str = "user_id",
        key: Callable[[Any], Any] = int,
    ):
        self.store = store
        self.refs = [f"{view}:{f}" for f in features]
        # a shop's repo keys its users by its own join key and type (a UUID string, an Int32)
        self.join_key, self.key = join_key, key
        self.retry_s = retry_s
        self.relocate = relocate
        self.relocations = 0
        self._socket_timeout_s = socket_timeout_s
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._relocating = threading.Lock()
        self.last_error: str | None = None
        self._tune_redis_client(socket_timeout_s)

    # ------------------------------------------------------------------ state
    def _fail(self, exc: BaseException) -> FeatureStoreUnavailable:
        with self._lock:
            self._down_until = time.monotonic() + self.retry_s
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
        log.warning("online store unavailable (retry in %.1fs): %s", self.retry_s, self.last_error)
        return FeatureStoreUnavailable(self.last_error)

    def _try_relocate(self) -> None:
        """Look for a Redis that moved, in a background thread (resolving pings Redis and may
        re-read the Feast registry: not work for a request on the event loop). One look at a
        time; a new store is swapped in and the breaker closed, so the next request uses it."""
        if self.relocate is None or not self._relocating.acquire(blocking=False):
            return
        try:
            threading.Thread(target=self._relocate_now, name="redis-relocate", daemon=True).start()
        except RuntimeError:  # no thread to be had (interpreter shutting down)
            self._relocating.release()

    def _relocate_now(self) -> bool:
        try:
            new = self.relocate(self.store) if self.relocate is not None else None
        except Exception as exc:  # noqa: BLE001 - resolving is best effort; the breaker still works
            log.warning("could not re-resolve the Redis address: %s", redact(f"{type(exc).__name__}: {exc}"))
            return False
        finally:
            self._relocating.release()
        if new is None or new is self.store:
            return False
        self._tune_client_of(new, self._socket_timeout_s)
        self.store = new  # one reference assignment: a request reads one store or the other
        self.relocations += 1
        with self._lock:
            self._down_until = 0.0
        log.warning("online store moved; reading from %s now", redact(_connection_string(new) or "?"))
        return True

    # ------------------------------------------------------------------ reads
    def _read_once(self, user_ids: Sequence[int]) -> list[UserFeatures]:
        resp = self.store.get_online_features(features=self.refs, entity_rows=[{self.join_key: self.key(u)} for u in user_ids])
        return _rows(user_ids, resp.to_dict(include_event_timestamps=True), self.join_key, self.key)

    def read(self, user_ids: Sequence[int]) -> list[UserFeatures]:
        if time.monotonic() < self._down_until:
            raise FeatureStoreUnavailable(self.last_error or "online store unavailable")
        try:
            rows = self._read_once(user_ids)
        except Exception as exc:  # redis ConnectionError/TimeoutError, OSError, ...: all mean "down"
            err = self._fail(exc)  # breaker open first: a fast relocation then closes it
            self._try_relocate()
            raise err from exc
        if self.last_error is not None:
            log.info("online store is back")
            self.last_error = None
        return rows

    def _ping_once(self) -> None:
        client = self._redis_client()
        if client is not None:
            client.ping()
        else:
            self.store.get_online_features(features=self.refs[:1], entity_rows=[{self.join_key: self.key(0)}])

    def ping(self) -> bool:
        """Probe Redis directly (bypasses the breaker; follows a moved Redis); closes the
        breaker on success."""
        try:
            self._ping_once()
        except Exception as exc:
            self._fail(exc)
            self._try_relocate()
            return False
        with self._lock:
            self._down_until = 0.0
            self.last_error = None
        return True

    # ------------------------------------------------------------------ internals
    def _redis_client(self, store: Any | None = None) -> Any | None:
        """Feast's own redis-py client (private API; None if Feast's internals differ)."""
        store = store if store is not None else self.store
        try:
            online_store = store._get_provider().online_store
            return online_store._get_client(store.config.online_store)
        except Exception:
            return None

    def _tune_redis_client(self, timeout_s: float) -> None:
        self._tune_client_of(self.store, timeout_s)

    def _tune_client_of(self, store: Any, timeout_s: float) -> None:
        client = self._redis_client(store)
        if client is None or not hasattr(client, "set_retry"):
            log.info("could not tune Feast's Redis client; relying on the breaker alone")
            return
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client.set_retry(Retry(NoBackoff(), 0))
        if hasattr(client, "nodes_manager"):  # RedisCluster: no single pool; every node has its own
            pools = [client.nodes_manager.connection_kwargs] + [
                n.redis_connection.connection_pool.connection_kwargs for n in client.get_nodes() if n.redis_connection]
        else:
            pools = [client.connection_pool.connection_kwargs]
        for kw in pools:
            if kw.get("socket_timeout") is None:
                kw["socket_timeout"] = timeout_s
            if kw.get("socket_connect_timeout") is None:
                kw["socket_connect_timeout"] = timeout_s


def _connection_string(store: Any) -> str | None:
    try:
        return str(store.config.online_store.connection_string)
    except Exception:  # noqa: BLE001 - not a Redis-backed store
        return None


def _rows(user_ids: Sequence[Any], data: dict[str, list], join_key: str = "user_id",
          key: Callable[[Any], Any] = int) -> list[UserFeatures]:
    out: list[UserFeatures] = []
    names = [k for k in data if not k.endswith(_TS) and k != join_key]
    for i, uid in enumerate(user_ids):
        values = {n: data[n][i] for n in names}
        found = any(v is not None for v in values.values())
        ts_secs = [data[n + _TS][i] for n in names if n + _TS in data]
        ts = max((s for s in ts_secs if s), default=0)
        out.append(
            UserFeatures(
                user_id=key(uid),
                found=found,
                values=values,
                event_timestamp=datetime.fromtimestamp(ts, tz=timezone.utc) if found and ts else None,
            )
        )
    return out
