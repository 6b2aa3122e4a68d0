"""The supervised group: a crashed part is restarted; one that keeps crashing stops the whole group; an embedded
server that dies is started again."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import redis

from clickmint import supervisor
from clickmint.embedded import EmbeddedValkey
from clickmint.supervisor import Part, Supervisor


def _part(name: str, code: str) -> Part:
    return Part(name, [sys.executable, "-c", code], dict(os.environ))


def test_a_part_that_keeps_crashing_takes_the_group_down(monkeypatch) -> None:
    monkeypatch.setattr(supervisor, "MAX_RESTARTS", 2)
    steady = _part("steady", "import time; time.sleep(60)")
    crashing = _part("crashing", "raise SystemExit(3)")
    group = Supervisor([steady, crashing])
    assert group.run_with() == 1
    assert group.failure is not None and "crashing exited with status 3" in group.failure
    assert steady.proc is not None and steady.proc.poll() is not None  # never left half-running


def test_a_crashed_part_is_restarted_and_sigterm_stops_all(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    flaky = _part("flaky", f"open({str(starts)!r}, 'a').write('x'); import time; time.sleep(0.3); raise SystemExit(1)")
    steady = _part("steady", "import time; time.sleep(60)")
    group = Supervisor([steady, flaky])

    def stop_later() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not starts.exists() or len(starts.read_text()) < 2):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_later, daemon=True).start()
    assert group.run_with() == 0
    assert len(starts.read_text()) >= 2  # it was started again after its crash
    for part in (steady, flaky):
        assert part.proc is not None and part.proc.poll() is not None


def test_an_embedded_server_killed_is_started_again_on_its_port(tmp_path: Path, caplog) -> None:
    """kill -9 of the embedded Valkey, twice: each time it is started again on the same port (the URL every
    part holds) with its data, after a growing backoff, and every event is one log line."""
    valkey = EmbeddedValkey(tmp_path, port=0)
    valkey.start()
    port = valkey.port
    client = redis.Redis.from_url(valkey.url, socket_timeout=1)
    client.set("kept", "yes")
    steady = _part("steady", "import time; time.sleep(60)")
    group = Supervisor([steady], (valkey,))
    killed: list[int] = []
    answered_again: list[bool] = []

    def kill_twice() -> None:
        try:
            for _ in range(2):
                while valkey.proc is None or not _pings(client):
                    time.sleep(0.05)
                pid = valkey.proc.pid
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                deadline = time.monotonic() + 20
                # Until the supervisor has seen it answer again (and said so), not only until it answers.
                while valkey.proc.pid == pid or not _pings(client) or group.keepers[0].down_since is not None:
                    assert time.monotonic() < deadline, "valkey was not restarted"
                    time.sleep(0.05)
                answered_again.append(client.get("kept") == b"yes")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    caplog.set_level(logging.INFO, logger="clickmint.up")
    threading.Thread(target=kill_twice, daemon=True).start()
    try:
        assert group.run_with() == 0
        assert valkey.port == port and valkey.proc is not None and valkey.proc.pid not in killed
    finally:
        client.close()
        valkey.stop()
    assert answered_again == [True, True]  # same port, same data (its AOF)
    lines = [r.getMessage() for r in caplog.records if r.name == "clickmint.up"]
    deaths = [line for line in lines if "killed by SIGKILL" in line]
    assert len(deaths) == 2, lines
    assert f"(pid {killed[0]})" in deaths[0] and "restarting it in 0.5s" in deaths[0]
    assert f"(pid {killed[1]})" in deaths[1] and "restarting it in 1.0s" in deaths[1]  # the backoff grows
    assert sum("valkey restarted" in line and f"on port {port}" in line for line in lines) == 2
    assert sum(line.startswith(f"valkey is back on port {port}") for line in lines) == 2


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_server_that_cannot_start_is_tried_again_with_a_growing_backoff(tmp_path: Path, caplog) -> None:
    """Valkey killed, and its port taken by another program meanwhile: each start fails at once and is tried
    again later and later, each failure logged; once the port is free it comes back by itself."""
    valkey = EmbeddedValkey(tmp_path, port=0)
    valkey.start()
    port = valkey.port
    client = redis.Redis.from_url(valkey.url, socket_timeout=1)
    group = Supervisor([_part("steady", "import time; time.sleep(60)")], (valkey,))
    deaths: list[str] = []

    def squat_then_free() -> None:
        try:
            while valkey.proc is None or not _pings(client):
                time.sleep(0.05)
            os.kill(valkey.proc.pid, signal.SIGKILL)
            with socket.socket() as squatter:
                squatter.setsockopt(
                    socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
                )  # as servers bind: TIME_WAIT is no conflict
                deadline = time.monotonic() + 5
                while True:  # the port is free the moment the killed Valkey's socket is closed
                    try:
                        squatter.bind(("127.0.0.1", port))
                        break
                    except OSError:
                        assert time.monotonic() < deadline
                        time.sleep(0.01)
                squatter.listen()
                deadline = time.monotonic() + 20
                while len(deaths) < 3:
                    assert time.monotonic() < deadline, "the failed starts were not retried"
                    deaths[:] = [r.getMessage() for r in caplog.records if "embedded valkey" in r.getMessage()]
                    time.sleep(0.05)
            deadline = time.monotonic() + 20
            while not _pings(client) or group.keepers[0].down_since is not None:
                assert time.monotonic() < deadline, "valkey did not come back once its port was free"
                time.sleep(0.05)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    caplog.set_level(logging.INFO, logger="clickmint.up")
    threading.Thread(target=squat_then_free, daemon=True).start()
    try:
        assert group.run_with() == 0
        assert valkey.port == port and _pings(client)  # back on its own port once the squatter left
    finally:
        client.close()
        valkey.stop()
    assert "killed by SIGKILL" in deaths[0] and "restarting it in 0.5s" in deaths[0]
    for line, delay in zip(deaths[1:3], ("1.0s", "2.0s"), strict=True):
        assert "exited with status 1;" in line and f"restarting it in {delay}" in line, line
        assert "valkey.log" in line  # where to look
    back = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"valkey is back on port {port}")]
    assert len(back) == 1, back
