"""Where a run's host CPU went, by process role, from Linux process accounting (BSD acct v3).

Prints figures; asserts nothing. The cells' own `cpu_s` (lab.waits) misses what
runs outside them (the runner, its spare RabbitMQ nodes, cell servers, hub
brokers); the kernel's accounting file has every process that ended, with its
user and system CPU, command name (16 bytes) and parent pid.

    apt-get install acct                      # Debian: accton, sa, lastcomm
    accton /tmp/pacct && nox -s matrix; accton off   # off: else the file keeps growing
    python bench/bench_acct.py /tmp/pacct

Roles (from the command name and the parent chain as the kernel saw it at exit):
`worker` a `celery worker` master (python, child of a cell process), `pool-child`
a prefork child, `cell` a cell process (forked by a cell server), `runner` the
`lab` process, `erlang` every RabbitMQ/rabbitmqctl VM and its helpers (its
threads' names: `*_scheduler`, `*_dirty_*`, `beam.smp`, epmd, inet_gethost,
erl_child_setup), `redis` redis-server; anything else by its command name.
A process still running when accounting stops is not in the file, and
neither is the parent of a process whose parent outlived the accounting
(its chain then ends early: "python (other)").
Measured with this (run 20261204-024948, 550 cells): workers 498 CPU-s in 731
processes, Erlang 243 (about 3-4 a node boot, 1.0-1.4 a rabbitmqctl call), cell
processes 112, runner 20, Redis 18, prefork children 11; 925 in all.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import struct

FORMAT = "=BBHIIIIIIfHHHHHHHH16s"  # struct acct_v3 (linux/acct.h): 64 bytes
SIZE = struct.calcsize(FORMAT)
AHZ = 100  # the accounting clock: comp_t values are in 1/100 s


def comp_t(value: int) -> int:
    """A comp_t (13-bit mantissa, 3-bit base-8 exponent) as an integer."""
    return (value & 0x1FFF) << (3 * ((value >> 13) & 7))


def read(path: str) -> list[dict]:
    """Every v3 record of an accounting file: pid, ppid, start (btime, whole seconds since the
    epoch), elapsed (etime, s), comm, user and sys CPU in seconds. Raises OSError when the file
    cannot be read; a file of other content gives few or no records (version byte != 3)."""
    data = open(path, "rb").read()
    out = []
    for at in range(0, len(data) - SIZE + 1, SIZE):
        r = struct.unpack(FORMAT, data[at:at + SIZE])
        if r[1] != 3:
            continue
        out.append({"pid": r[6], "ppid": r[7], "btime": r[8], "etime": r[9] / AHZ,
                    "user": comp_t(r[10]) / AHZ, "sys": comp_t(r[11]) / AHZ,
                    "comm": r[18].split(b"\0")[0].decode(errors="replace")})
    return out


def erlang(comm: str) -> bool:
    return (comm.startswith(("beam", "erl", "epmd", "inet_gethost")) or "_sch" in comm or "dispatc" in comm
            or "dirty" in comm or comm.endswith(("_aux", "_poller")))


def parent(rec: dict, by_pid: dict) -> dict | None:
    """The record of `rec`'s parent: of the processes that had its ppid, the one alive when `rec`
    began (pids are reused quickly: every thread takes one); None when it had not ended."""
    for cand in reversed(by_pid.get(rec["ppid"], [])):
        if cand["btime"] - 1 <= rec["btime"] <= cand["btime"] + cand["etime"] + 1:  # btime: whole seconds
            return cand
    return None


def is_python(comm: str) -> bool:
    return comm.startswith("python")  # python, python3, python3.11


def role(rec: dict, by_pid: dict) -> str:
    comm = rec["comm"]
    if erlang(comm):
        return "erlang"
    if comm.startswith(("redis", "jemalloc", "bio_")):
        return "redis"
    if comm == "lab":
        return "runner"
    if not is_python(comm):
        return comm
    chain = []
    at = rec
    for _ in range(3):
        at = parent(at, by_pid)
        chain.append(("python" if is_python(at["comm"]) else at["comm"]) if at else "")
        if not at:
            break
    if chain[:3] == ["python", "python", "lab"]:
        return "worker"
    if chain[:2] == ["python", "lab"]:
        return "cell"
    if chain[:2] == ["python", "python"]:
        return "pool-child"
    return "python (other)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="an accounting file written by accton")
    args = parser.parse_args()
    try:
        records = read(args.file)
        slots = os.path.getsize(args.file) // SIZE
    except OSError as exc:
        parser.error(f"{args.file}: {exc.strerror or exc}")
    if not records or len(records) < 0.9 * slots:  # another binary has a v3 byte in a few slots only
        parser.error(f"{args.file}: not a BSD acct v3 file ({len(records)} of {slots} 64-byte records are v3; "
                     "written by `accton FILE`)")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    by_pid: dict[int, list[dict]] = collections.defaultdict(list)
    for rec in sorted(records, key=lambda r: r["btime"]):
        by_pid[rec["pid"]].append(rec)
    rows: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for rec in records:
        row = rows[role(rec, by_pid)]
        row[0] += 1
        row[1] += rec["user"]
        row[2] += rec["sys"]
    total = sum(v[1] + v[2] for v in rows.values())
    print(f"{len(records)} processes, {total:.1f} CPU-s")
    for name, (n, user, system) in sorted(rows.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:16]:
        print(f"  {name:16s} {int(n):6d} processes  user {user:7.1f}  sys {system:7.1f}  CPU-s")


if __name__ == "__main__":
    main()
