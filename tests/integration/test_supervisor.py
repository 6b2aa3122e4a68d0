"""The supervised group: a crashed part is restarted; one that keeps crashing stops the whole group."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from clickmint import supervisor
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
