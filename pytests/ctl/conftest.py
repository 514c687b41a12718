"""Fixtures for the control-plane tests (helpers in ctl_util.py): `reefd`, a reefd in a fresh
temporary directory whose dataplanes are all stopped by PID in teardown."""

import os
import shutil
import tempfile

import pytest

from ctl_util import Reefd, stop_pids


@pytest.fixture
def reefd(processes, reef_binary):
    """A Reefd in a fresh directory (mode 0755, so a test may connect as `nobody`)."""
    base = tempfile.mkdtemp(prefix="reef-ctl-")
    os.chmod(base, 0o755)
    r = Reefd(processes, reef_binary, base)
    seen = set()
    r.remember = lambda: seen.update(r.dataplane_pids())
    yield r
    # Dataplanes outlive reefd by design: stop every one this test's reefd started, by PID.
    seen.update(r.dataplane_pids())
    if r.proc and r.proc.proc.poll() is None:
        r.proc.stop()
    seen.update(r.dataplane_pids())
    stop_pids(sorted(seen))
    for name in ("stdout", "stderr"):
        for f in sorted(r.run_dir.glob(f"*.{name}.log")):
            print(f"--- {f.name} ---")
            print(f.read_text(errors="replace")[-4000:])
    shutil.rmtree(base, ignore_errors=True)
