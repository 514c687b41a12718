"""The native stack's counters over the control socket (metrics.get), as the other wire suites
use them: per shard, labelled by device, drops by reason, TCP connections by state."""

import socket


from wire_util import dataplane, peer, wire  # noqa: F401  (fixtures)
from wire_util import NEEDS_ROOT, assert_serving, wait_until

pytestmark = NEEDS_ROOT


def test_native_metrics_per_shard_and_tcp_connections_by_state(dataplane, peer):
    dp = dataplane(smp=2)
    p = peer(dp)
    fams = {f["name"]: f for f in dp.metrics("reef_native_")}
    for name in ("reef_native_l2_rx_frames_total", "reef_native_ipv4_rx_dropped_total",
                 "reef_native_udp_rx_dropped_total", "reef_native_tcp_rx_dropped_total",
                 "reef_native_tcp_connections", "reef_native_ipv4_reasm_bytes"):
        assert name in fams, f"{name} missing from metrics.get"
    shards = {s["labels"]["shard"] for s in fams["reef_native_l2_rx_frames_total"]["samples"]}
    assert shards == {"0", "1"}
    assert all(s["labels"]["device"] == "net_af_packet0" for f in fams.values() for s in f["samples"])
    reasons = {s["labels"]["reason"] for s in fams["reef_native_ipv4_rx_dropped_total"]["samples"]}
    assert {"bad_checksum", "bad_version", "ttl_zero", "bad_total_length"} <= reasons
    assert fams["reef_native_tcp_connections"]["type"] == "gauge"

    def in_state(state):
        return dp.counter("reef_native_tcp_connections", state=state)

    assert in_state("ESTABLISHED") == 0
    with socket.create_connection((dp.ip, 7), timeout=10) as s:
        s.sendall(b"held open\n")
        assert s.recv(100) == b"held open\n"
        wait_until(lambda: in_state("ESTABLISHED") == 1, timeout=5, what="one ESTABLISHED connection")
    # The kernel closed first: the dataplane's side goes through CLOSE_WAIT/LAST_ACK to CLOSED.
    wait_until(lambda: in_state("ESTABLISHED") == 0 and in_state("LAST_ACK") == 0, timeout=10,
               what="the connection closed")
    assert dp.counter("reef_native_tcp_passive_opens_total") == 1
    assert_serving(dp, p)
