"""Smoke tests: the runtime demo starts, reports, stops cleanly on SIGTERM, and rejects bad options
the way every Reef program must (CLI11 error naming the option, exit code 2)."""

import signal
import subprocess

import pytest

DEMO = "apps/demo/reef-demo"


@pytest.fixture
def demo(reef_binary):
    return reef_binary(DEMO)


def test_demo_runs_and_stops_on_sigterm(demo, processes):
    p = processes.start([demo, "--duration", "30", "--report-interval", "0.2"])
    # Generous bounds: the CI machine has two cores shared with compilers and other tests.
    p.wait_for(r"reef-demo started", timeout=30)
    p.wait_for(r"\bstatus: tasks \d+", timeout=30)
    p.signal(signal.SIGTERM)
    rc = p.wait(timeout=10)
    assert rc == 0, f"reef-demo exited with {rc} after SIGTERM; output:\n{p.output}"
    assert "reef-demo stopped" in p.output, p.output
    # The workload ran between start and stop: the reactor processed tasks.
    totals = [int(line.split("status: tasks ")[1].split()[0]) for line in p.lines() if "status: tasks " in line]
    assert max(totals) > 0, p.output


def test_unknown_option_is_a_usage_error(demo):
    r = subprocess.run([demo, "--no-such-option"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, f"exit {r.returncode}; stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "--no-such-option" in r.stderr, r.stderr
    assert "reef-demo started" not in r.stdout + r.stderr


def test_help_lists_runtime_options(demo):
    r = subprocess.run([demo, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"exit {r.returncode}; stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "--task-quota-ms" in r.stdout, r.stdout
    assert "--duration" in r.stdout, r.stdout
