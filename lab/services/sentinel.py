"""A Redis replica and a Sentinel watching the cell's own Redis primary (the failover fault).

Contract: `SentinelPair(primary, workdir).start()` starts a replica of `primary`
(a lab RedisServer) with `--replicaof`, waits until its link is up, then runs
`redis-server <conf> --sentinel` (what the redis-sentinel binary is) on a free
loopback port, monitoring the primary as lab.faults.broker.SENTINEL_MASTER with
quorum 1 and the scaled down-after / failover timeouts, and returns once
Sentinel names the primary. `master_addr()` is the (host, port) Sentinel names
now (redis-py, installed with celery[redis]), None if unknown. `close()` stops
Sentinel, then the replica. Raises ServiceError when a step times out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.faults.broker import SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS, SENTINEL_MASTER
from lab.services.base import free_port, spawn_server, stop_process, wait_until


class SentinelPair:
    def __init__(self, primary, workdir: Path):
        self.primary, self.workdir = primary, Path(workdir)
        self.replica = None
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SentinelPair":
        from lab.services.redis import RedisServer, redis_command
        primary = self.primary
        self.replica = RedisServer(self.workdir / "redis-replica", primary.binary, primary.provider)
        self.replica.extra_args = ["--replicaof", "127.0.0.1", str(primary.port)]
        self.replica.start()
        wait_until(lambda: b"master_link_status:up" in redis_command(
            "127.0.0.1", self.replica.port, "INFO", "replication"), 15, what="replica link up")
        sdir = self.workdir / "sentinel"
        sdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = sdir / "sentinel.conf"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {sdir}\n"
                        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary.port} 1\n"
                        f"sentinel down-after-milliseconds {SENTINEL_MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {SENTINEL_MASTER} {SENTINEL_FAILOVER_TIMEOUT_MS}\n"
                        f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n")
        self.proc = spawn_server([primary.binary, str(conf), "--sentinel", "--set-proc-title", "no"],
                                 sdir / "sentinel.log")
        wait_until(lambda: self.master_addr() == ("127.0.0.1", primary.port), 15, what="sentinel sees primary")
        return self

    def master_addr(self) -> tuple[str, int] | None:
        import redis
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                             socket_connect_timeout=2, decode_responses=True)
        try:
            found = client.execute_command("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()
        return (found[0], int(found[1])) if found and len(found) == 2 else None

    def close(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if self.replica is not None:
            self.replica.stop()
