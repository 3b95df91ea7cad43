"""Local Docker images made from binaries already installed on this machine.

Contract: `build_image(kind, docker_host=None) -> tag` returns the tag of an
image for "redis", "postgres" or "rabbitmq" -- `lab/<kind>-local:<installed
version>`, e.g. `lab/redis-local:7.0.15` -- importing it only when the engine
lacks that tag (idempotent; `force=True` rebuilds). Nothing is pulled: the
root filesystem is a tar of the server binaries, every library `ldd` names,
the data files the server reads, /tmp, /etc/passwd and /bin/sh (dash), loaded
with the engine's import API (`docker import`). The images take the command
lines of the public ones (`redis-server --port P ...`, `postgres -p P ...`,
`rabbitmq-server` configured by RABBITMQ_* variables); postgres runs as the
non-root user `postgres` (uid 999) and runs initdb into $PGDATA on first
start. `image_tag(kind)` names the tag without building. Raises ServiceError
when the binaries are missing.
"""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from lab.services.base import ServiceError

PG_UID = 999
MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
PG_ENTRYPOINT = """#!/bin/sh
# initdb on first start (trust auth, like POSTGRES_HOST_AUTH_METHOD=trust), then exec the command
set -e
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres --auth=trust --no-locale -E UTF8 --no-sync --no-instructions
fi
exec "$@"
"""


def _run(argv: list[str], timeout: float = 30) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(f"{' '.join(argv)} failed: {exc}") from None


def _redis_binary() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise ServiceError("no redis-server on PATH to build lab/redis-local from (apt-get install redis-server)")
    return path


def _pg_bindir() -> Path:
    from lab.services.postgres import find_pg_bindir
    bindir = find_pg_bindir()
    if not bindir:
        raise ServiceError("no PostgreSQL binaries to build lab/postgres-local from (apt-get install postgresql)")
    return bindir


def rabbitmq_home() -> Path:
    homes = sorted(glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*"))
    if not homes or not glob.glob("/usr/lib/erlang/erts-*/bin/beam.smp"):
        raise ServiceError("no rabbitmq-server and Erlang under /usr/lib to build lab/rabbitmq-local from "
                           "(apt-get install rabbitmq-server)")
    return Path(homes[-1])


def image_tag(kind: str) -> str:
    """lab/<kind>-local:<version of the installed binary>."""
    if kind == "redis":
        version = re.search(r"v=(\S+)", _run([_redis_binary(), "--version"])).group(1)
    elif kind == "postgres":
        version = re.search(r"\)\s+(\d+(?:\.\d+)*)", _run([str(_pg_bindir() / "postgres"), "--version"])).group(1)
    elif kind == "rabbitmq":
        version = rabbitmq_home().name.split("-", 1)[1]
    else:
        raise ServiceError(f"no local image recipe for {kind!r} ({', '.join(RECIPES)})")
    return f"lab/{kind}-local:{version}"


def shared_libs(paths: list[str]) -> set[str]:
    """Every library (and the loader) `ldd` lists for the given ELF files."""
    libs: set[str] = set()
    for path in paths:           # ldd fails on static binaries: they need nothing
        listing = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30).stdout
        for line in listing.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                libs.add(match.group(1))
    return libs


class RootFS:
    """A tar of absolute paths, written in one go; parents become 0755 root dirs."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple] = {}

    @staticmethod
    def canonical(path: str) -> str:
        """The path under the real (merged-/usr) directory, file name kept."""
        return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).lstrip("/")

    def file(self, src: str, dest: str | None = None, mode: int | None = None) -> None:
        self.entries[self.canonical(dest or src)] = ("file", os.path.realpath(src), mode)

    def text(self, dest: str, content: str, mode: int = 0o644) -> None:
        self.entries[dest.lstrip("/")] = ("text", content.encode(), mode)

    def dir(self, dest: str, mode: int = 0o755, uid: int = 0) -> None:
        self.entries[dest.lstrip("/")] = ("dir", mode, uid)

    def link(self, dest: str, target: str) -> None:
        self.entries[dest.lstrip("/")] = ("link", target)

    def tree(self, src: str, skip=lambda path: False) -> None:
        """Every file below src; symlinks stay symlinks (scripts find their home through them)."""
        for root, dirs, files in os.walk(src):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                path = os.path.join(root, name)
                if skip(path):
                    continue
                if os.path.islink(path):
                    self.link(path, os.readlink(path))
                elif os.path.isfile(path):
                    self.file(path)

    def write(self, out: Path) -> None:
        dirs = {"tmp": ("dir", 0o1777, 0)}
        for name in self.entries:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.setdefault("/".join(parts[:i]), ("dir", 0o755, 0))
        items = {**dirs, **self.entries}
        with tarfile.open(out, "w") as tar:
            for name in sorted(items):
                entry, info = items[name], tarfile.TarInfo(name)
                if entry[0] == "dir":
                    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, entry[1], entry[2], entry[2]
                    tar.addfile(info)
                elif entry[0] == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, entry[1]
                    tar.addfile(info)
                elif entry[0] == "text":
                    info.size, info.mode = len(entry[1]), entry[2]
                    tar.addfile(info, io.BytesIO(entry[1]))
                else:
                    stat = os.stat(entry[1])
                    info.size, info.mode = stat.st_size, entry[2] or (stat.st_mode & 0o7777)
                    with open(entry[1], "rb") as handle:
                        tar.addfile(info, handle)


def _base(fs: RootFS, elves: list[str]) -> None:
    for name, target in MERGED_USR.items():
        if os.path.islink("/" + name):
            fs.link(name, target)
    for lib in shared_libs(elves):
        fs.file(lib)
    for elf in elves:
        fs.file(elf, mode=0o755)
    fs.text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n")
    fs.text("etc/group", "root:x:0:\npostgres:x:999:\n")
    fs.text("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n")
    fs.text("etc/hosts", "127.0.0.1 localhost\n")
    fs.dir("root", 0o700)


def redis_rootfs() -> tuple[RootFS, list[str]]:
    fs, binary = RootFS(), _redis_binary()
    _base(fs, [binary])          # copied as .../redis-server: the binary acts on its argv[0]
    fs.dir("data")
    return fs, ["ENV PATH=/usr/local/bin:/usr/bin:/bin", "WORKDIR /data", 'CMD ["redis-server"]']


def postgres_rootfs() -> tuple[RootFS, list[str]]:
    fs, bindir = RootFS(), _pg_bindir()
    share = Path(_run([str(bindir / "pg_config"), "--sharedir"]).strip()) if (bindir / "pg_config").exists() \
        else Path("/usr/share/postgresql") / bindir.parent.name
    pkglib = bindir.parent / "lib"
    modules = [p for p in glob.glob(f"{pkglib}/*.so") if not os.path.basename(p).startswith("llvmjit")]
    dash = shutil.which("dash") or "/bin/sh"
    _base(fs, [str(bindir / "postgres"), str(bindir / "initdb"), dash] + modules)
    fs.file(dash, "/usr/bin/sh", mode=0o755)
    fs.tree(str(pkglib), skip=lambda p: "/bitcode" in p or os.path.basename(p).startswith("llvmjit"))
    fs.tree(str(share), skip=lambda p: "/man/" in p)
    for zone in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        if os.path.exists(f"/usr/share/zoneinfo/{zone}"):
            fs.file(f"/usr/share/zoneinfo/{zone}")
    fs.text("usr/local/bin/docker-entrypoint.sh", PG_ENTRYPOINT, 0o755)
    fs.dir("var/lib/postgresql", 0o755, PG_UID)
    fs.dir("var/lib/postgresql/data", 0o700, PG_UID)
    fs.dir("var/run/postgresql", 0o2775, PG_UID)
    return fs, [f"ENV PATH=/usr/local/bin:{bindir}:/usr/bin:/bin", "ENV PGDATA=/var/lib/postgresql/data",
                "ENV TZ=UTC", "USER postgres", "WORKDIR /var/lib/postgresql",
                'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]', 'CMD ["postgres"]']


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def rabbitmq_rootfs() -> tuple[RootFS, list[str]]:
    """Erlang + RabbitMQ trees, their NIFs' libraries, and the tools their sh scripts call."""
    fs, home = RootFS(), rabbitmq_home()
    trees = ["/usr/lib/erlang", str(home.parent.parent)]
    elves = [os.path.join(d, f) for t in trees for d, _, files in os.walk(t) for f in files
             if not os.path.islink(os.path.join(d, f)) and _is_elf(os.path.join(d, f))]
    tools = [shutil.which(t) for t in ("dash", "readlink", "dirname", "basename", "date", "expr", "df")]
    _base(fs, [t for t in tools if t] + elves)
    fs.file(tools[0], "/usr/bin/sh", mode=0o755)
    for tree in trees:
        fs.tree(tree)
    fs.link("usr/bin/erl", "/usr/lib/erlang/bin/erl")
    fs.dir("var/lib/rabbitmq", 0o700)
    fs.dir("var/log/rabbitmq")
    fs.dir("etc/rabbitmq")
    return fs, ["ENV PATH=/usr/lib/rabbitmq/bin:/usr/local/bin:/usr/bin:/bin", "ENV HOME=/var/lib/rabbitmq",
                "WORKDIR /var/lib/rabbitmq", 'CMD ["rabbitmq-server"]']


RECIPES = {"redis": redis_rootfs, "postgres": postgres_rootfs, "rabbitmq": rabbitmq_rootfs}


def docker_client(docker_host: str | None = None, timeout: int = 120):
    import docker
    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    return docker.from_env(timeout=timeout)


def image_exists(client, tag: str) -> bool:
    import docker
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_image(kind: str, docker_host: str | None = None, force: bool = False) -> str:
    """The tag of the local image for `kind`, imported now if the engine lacks it."""
    tag = image_tag(kind)
    client = docker_client(docker_host)
    try:
        if not force and image_exists(client, tag):
            return tag
        fs, changes = RECIPES[kind]()
        with tempfile.TemporaryDirectory(prefix=f"lab-image-{kind}-") as tmp:
            out = Path(tmp) / "rootfs.tar"
            fs.write(out)
            repository, version = tag.rsplit(":", 1)
            client.api.import_image_from_file(str(out), repository=repository, tag=version, changes=changes)
        if not image_exists(client, tag):
            raise ServiceError(f"docker import of {tag} reported no error but the tag is missing")
        return tag
    finally:
        client.close()
