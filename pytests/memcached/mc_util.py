"""Constants and helpers the memcached tests import by name (a module of its own: `from conftest
import ...` finds whichever suite's conftest.py was imported first)."""

from netutil import free_port  # noqa: F401  (re-exported to the suite's tests)

MEMCACHED = "apps/memcached/reef-memcached"
# Gentle on the shared two-core machine: shards sleep when idle instead of polling.
QUIET = ["--idle-policy", "sleep"]
