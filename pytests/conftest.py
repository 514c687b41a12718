"""Fixtures for tests that run Reef binaries.

Every process a test starts goes through the `processes` fixture, which stops it by PID in
teardown (SIGTERM, then SIGKILL) whatever the test's outcome, so a failing test never leaves a
dataplane behind. Its combined stdout+stderr is collected and printed in teardown, so pytest shows
it beside a failure.
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def reef_build_dir():
    """The build tree under test: $REEF_BUILD_DIR (relative paths are taken from the repository
    root), default `build`. Fails if it has not been configured."""
    d = Path(os.environ.get("REEF_BUILD_DIR", "build"))
    if not d.is_absolute():
        d = REPO_ROOT / d
    d = d.resolve()
    if not (d / "build.ninja").exists():
        pytest.fail(f"{d} is not a configured build tree: run scripts/dev.sh build (or set REEF_BUILD_DIR)")
    return d


@pytest.fixture(scope="session")
def reef_binary(reef_build_dir):
    """reef_binary("apps/demo/reef-demo") -> absolute path of a built binary. A missing binary
    fails the test (it must not be skipped: a suite that skips everything would pass in CI)."""

    def find(relpath):
        p = reef_build_dir / relpath
        if not os.access(p, os.X_OK):
            pytest.fail(f"{p} is missing or not executable: run scripts/dev.sh build")
        return p

    return find


class ReefProcess:
    """A started process whose stdout and stderr are read, merged, into `output` by a reader
    thread. wait_for() polls it; stop() signals the process by its PID."""

    def __init__(self, argv, env=None):
        self.argv = [str(a) for a in argv]
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self._lock = threading.Lock()
        self._chunks = []
        # A session of its own: a terminal's Ctrl-C aimed at pytest does not reach it mid-test,
        # and teardown still stops it.
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(lambda: self.proc.stdout.read1(4096), b""):
            with self._lock:
                self._chunks.append(raw.decode(errors="replace"))

    @property
    def output(self):
        with self._lock:
            return "".join(self._chunks)

    def lines(self):
        return self.output.splitlines()

    def wait_for(self, pattern, timeout=30.0, count=1):
        """Wait until `pattern` (a regex, searched per line) has matched `count` lines; returns the
        matching lines. Fails early, with the output, if the process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            if exited:
                self._reader.join(timeout=5)
            matches = [line for line in self.lines() if rx.search(line)]
            if len(matches) >= count:
                return matches
            if exited:
                pytest.fail(f"{self.argv[0]} exited with {self.proc.returncode} before printing "
                            f"{count} line(s) matching {pattern!r}; output:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {count} line(s) matching {pattern!r} within {timeout} s; output:\n{self.output}")
            time.sleep(0.05)

    def signal(self, signo):
        if self.proc.poll() is None:
            os.kill(self.pid, signo)

    def wait(self, timeout):
        """Wait for exit; returns the exit code (negative: killed by that signal). On timeout, fails
        the test (teardown then kills the process)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            pytest.fail(f"{self.argv[0]} did not exit within {timeout} s; output:\n{self.output}")
        self._reader.join(timeout=5)
        return rc

    def stop(self, grace=10.0):
        """SIGTERM, then SIGKILL after `grace` seconds. Always reaps the process."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=5)
        self.proc.stdout.close()


@pytest.fixture
def processes():
    """processes.start(argv, env=None) -> ReefProcess, stopped by PID in teardown."""

    class Starter:
        def __init__(self):
            self.started = []

        def start(self, argv, env=None):
            p = ReefProcess(argv, env)
            self.started.append(p)
            return p

    starter = Starter()
    yield starter
    for p in starter.started:
        still_running = p.proc.poll() is None
        p.stop(grace=5.0)
        print(f"--- {' '.join(p.argv)} (pid {p.pid}, exit {p.proc.returncode}"
              f"{', killed in teardown' if still_running else ''}) ---")
        print(p.output)


# Marks every suite may use (registered here so that `pytest pytests/<suite>` alone knows them
# under --strict-markers; each suite adds the skips, naming what is missing: see
# pytests/wire/wire_util.py NEEDS_ROOT). Added by helper W (pytests/wire).
def pytest_configure(config):
    for line in ("needs_root: needs CAP_NET_ADMIN, CAP_NET_RAW (and for pytests/wire CAP_SYS_ADMIN): namespaces, "
                 "veth pairs, raw sockets",
                 "needs_hugepages: needs free hugepages (DPDK without --no-huge)",
                 "slow: takes more than a few seconds"):
        config.addinivalue_line("markers", line)
