"""Fixtures of the dataplane tests (defined in dataplane_util.py, which documents the layout), the
`needs_root` marker, and the skip of needs_root tests without the capabilities they need."""

from dataplane_util import (  # noqa: F401  (fixtures are found by name)
    echo_bin, missing_capabilities, raw_ports, start_dataplane, veth)

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: needs CAP_NET_ADMIN and CAP_NET_RAW (namespaces, veth, raw sockets)")


def pytest_collection_modifyitems(config, items):
    missing = missing_capabilities()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs {' and '.join(missing)} (network namespaces, veth pairs, raw sockets): "
                            "run as root")
    for item in items:
        if "needs_root" in item.keywords:
            item.add_marker(skip)
