"""A local N-node Redis Cluster (the bundled ``redis-server`` in cluster mode) and cluster URLs.

This is what a shop's Redis Cluster looks like to Feast, on one machine: N masters on free
loopback ports, the 16384 hash slots split evenly between them, no replicas. It exists to test
ecaug against ``online_store: redis_type: redis_cluster`` (tests/scale/test_redis_cluster.py);
a real deployment runs its cluster elsewhere and only hands ecaug its address.

Cluster URLs: ``redis-cluster://[:password@]host:port,host:port,...`` (``rediss-cluster://`` for
TLS), read by :func:`ecaug_feast.redis_server.parse_url`. :func:`feast_cluster_string` turns one into Feast's ``host:port,host:port[,password=..]``
connection string; :func:`ecaug_feast.feast_io.render_repo` renders ``redis_type: redis_cluster``
for such a URL.

Nodes are started with ``cluster-require-full-coverage no``: when one master is lost, the slots
the others own keep answering (the alternative, the Redis default, refuses every key once the
cluster notices the hole). ``cluster-node-timeout`` is short (1 s) so that happens quickly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ecaug_feast.errors import EcaugError
from ecaug_feast.redis_server import parse_url

SLOTS = 16384
SCHEMES = ("redis-cluster", "rediss-cluster")


def is_cluster_url(url: str | None) -> bool:
    """True for a ``redis-cluster://`` / ``rediss-cluster://`` URL."""
    return bool(url) and str(url).split("://", 1)[0] in SCHEMES


def _parse(url: str) -> Any:
    """The :class:`~ecaug_feast.redis_server.RedisAddress` of a cluster URL (the one URL parser)."""
    if not is_cluster_url(url):
        raise EcaugError(f"{url.split('@')[-1]!r}: not a cluster URL (use redis-cluster://host:port,host:port)")
    return parse_url(url, source="cluster URL")


def cluster_url(nodes: list[tuple[str, int]], password: str | None = None) -> str:
    """``redis-cluster://[:pw@]host:port,...`` for ``nodes`` (the password %-encoded)."""
    cred = f":{quote(password, safe='')}@" if password else ""
    return "redis-cluster://" + cred + ",".join(f"{h}:{p}" for h, p in nodes)


def feast_cluster_string(url: str) -> str:
    """Feast's connection string for a cluster URL: ``host:port,host:port[,password=..][,ssl=true]``."""
    return _parse(url).feast_string()


def cluster_client(url: str, timeout: float = 2.0) -> Any:
    """A redis-py ``RedisCluster`` client for a cluster URL."""
    return _parse(url).client(timeout)


@dataclass
class LocalRedisCluster:
    """``n`` cluster-mode ``redis-server`` masters under ``state_dir`` (one folder per node)."""

    state_dir: Path
    n: int = 3
    host: str = "127.0.0.1"
    password: str | None = None
    node_timeout_ms: int = 1000
    ports: list[int] = field(default_factory=list)

    @property
    def info_file(self) -> Path:
        return Path(self.state_dir) / "cluster.json"

    @property
    def url(self) -> str:
        return cluster_url([(self.host, p) for p in self.ports], self.password)

    def node_url(self, i: int) -> str:
        cred = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{cred}{self.host}:{self.ports[i]}/0"

    def _client(self, i: int, timeout: float = 1.0) -> Any:
        import redis

        return redis.Redis(host=self.host, port=self.ports[i], password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout)

    def _start_node(self, port: int, timeout: float) -> None:
        from ecaug_feast.redis_server import ping, redis_binary

        d = Path(self.state_dir) / f"node-{port}"
        d.mkdir(parents=True, exist_ok=True)
        cmd = [redis_binary(), "--bind", self.host, "--port", str(port), "--dir", str(d),
               "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-node-timeout", str(self.node_timeout_ms),
               "--cluster-require-full-coverage", "no",  # healthy slots keep answering when a node is lost
               "--pidfile", str(d / "redis.pid"), "--logfile", str(d / "redis.log"),
               "--daemonize", "yes", "--save", "", "--appendonly", "no"]
        if self.password:
            cmd += ["--requirepass", self.password, "--masterauth", self.password]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise EcaugError(f"redis-server (cluster node {port}) failed to start: {(proc.stderr or proc.stdout).strip()[:300]}")
        cred = f":{quote(self.password, safe='')}@" if self.password else ""
        deadline = time.monotonic() + timeout
        while not ping(f"redis://{cred}{self.host}:{port}/0", timeout=0.5):
            if time.monotonic() > deadline:
                raise EcaugError(f"cluster node {self.host}:{port} did not answer within {timeout:.0f}s")
            time.sleep(0.05)

    def start(self, timeout: float = 20.0) -> str:
        """Start the nodes, split the slots, join them; returns the cluster URL once every node
        reports ``cluster_state:ok``."""
        from ecaug_feast.redis_server import _port_free, free_port

        if self.n < 1:
            raise EcaugError("a cluster needs at least one node")
        self.ports = []
        while len(self.ports) < self.n:  # distinct free ports (the OS could hand one out twice)
            p = free_port(self.host)
            # the cluster bus listens on port + 10000, so the port must be <= 55535 and that one free
            if p <= 55535 and p not in self.ports and p + 10000 not in self.ports and _port_free(self.host, p + 10000):
                self.ports.append(p)
        try:
            self._create(timeout)
        except BaseException:
            self.stop()  # no half-made cluster left running
            raise
        self.info_file.parent.mkdir(parents=True, exist_ok=True)
        self.info_file.write_text(json.dumps({"host": self.host, "ports": self.ports}) + "\n", encoding="utf-8")
        return self.url

    def _create(self, timeout: float) -> None:
        for p in self.ports:
            self._start_node(p, timeout)
        # Slots in contiguous ranges, one range per node (what `redis-cli --cluster create` does).
        bounds = [SLOTS * i // self.n for i in range(self.n + 1)]
        for i in range(self.n):
            self._client(i).execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        first = self._client(0)
        for p in self.ports[1:]:
            first.execute_command("CLUSTER MEET", self.host, p)
        deadline = time.monotonic() + timeout
        while not all(self._state(i) == "ok" for i in range(self.n)):
            if time.monotonic() > deadline:
                raise EcaugError(f"Redis Cluster on ports {self.ports} did not reach cluster_state:ok within {timeout:.0f}s")
            time.sleep(0.1)

    def _state(self, i: int) -> str:
        """``cluster_state`` as node ``i`` sees it (``ok`` / ``fail``)."""
        info = self._client(i).execute_command("CLUSTER INFO")
        if isinstance(info, dict):  # redis-py parses the reply into a dict
            return str(info.get("cluster_state", ""))
        info = info.decode() if isinstance(info, bytes) else str(info)
        return next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cluster_state:")), "")

    def node_of(self, key: bytes | str) -> int:
        """Index of the node that owns ``key``'s hash slot."""
        from redis.crc import key_slot

        slot = key_slot(key.encode() if isinstance(key, str) else key)
        return next(i for i in range(self.n) if self.slot_range(i)[0] <= slot <= self.slot_range(i)[1])

    def slot_range(self, i: int) -> tuple[int, int]:
        """``[first, last]`` hash slot owned by node ``i``."""
        return SLOTS * i // self.n, SLOTS * (i + 1) // self.n - 1

    def stop_node(self, i: int, timeout: float = 10.0) -> None:
        """Stop node ``i`` with SIGTERM (nodes run with ``save ""``: its keys are gone, as when a
        machine dies). Only the pid its own pid file names is signalled, and only when that
        process is a redis-server on the node's port."""
        import signal

        from ecaug_feast.redis_server import _cmdline

        pid_file = Path(self.state_dir) / f"node-{self.ports[i]}" / "redis.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if not _alive(pid) or not ("redis-server" in _cmdline(pid) and f":{self.ports[i]}" in _cmdline(pid)):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                raise EcaugError(f"cluster node {self.ports[i]} (pid {pid}) did not stop within {timeout:.0f}s")
            time.sleep(0.05)

    def wait_until_noticed(self, lost: int, timeout: float = 15.0) -> None:
        """Wait until every other node has marked node ``lost`` as failed (``fail`` flag)."""
        deadline = time.monotonic() + timeout
        addr = f"{self.host}:{self.ports[lost]}"
        while True:
            flags = []
            for i in range(self.n):
                if i == lost:
                    continue
                nodes = self._client(i).execute_command("CLUSTER NODES")
                if isinstance(nodes, dict):  # redis-py parses the reply: {"host:port": {"flags": ...}}
                    flags += [str(v.get("flags", "")) for k, v in nodes.items() if str(k).startswith(addr)]
                else:
                    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
                    flags += [ln.split()[2] for ln in text.splitlines() if ln.split()[1].startswith(addr)]
            if flags and all("fail" in f and "fail?" not in f for f in flags):
                return
            if time.monotonic() > deadline:
                raise EcaugError(f"the cluster did not mark {addr} failed within {timeout:.0f}s (flags {flags})")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node still running; drop the record."""
        for i in range(len(self.ports)):
            self.stop_node(i)
        self.info_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
