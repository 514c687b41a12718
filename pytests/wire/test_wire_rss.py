"""RSS on the wire (issue 9): reef-echo with --smp 2 on a one-queue port (software RSS: shard 0
polls and hashes every frame to its owner) and on a two-queue port (net_af_packet with qpairs=2:
the kernel fans frames out over the queues, each queue owner hashes them to their owner). 200 UDP
flows are spread over both shards and every packet of a flow reaches the same shard (per-shard
counters read through metrics.get after each flow); kernel TCP connections are spread and each
echoes correctly (a segment handled on the wrong shard would find no connection). Each case ends
by checking that the dataplane still serves."""

import concurrent.futures

import pytest
from scapy.all import IP, UDP

from wire_util import dataplane, peer, wire  # noqa: F401  (fixtures)
from wire_util import NEEDS_ROOT, assert_serving, host_ip, kernel_tcp_echo

pytestmark = NEEDS_ROOT

RX = "reef_native_udp_rx_datagrams_total"
FLOWS = 200
HOSTS = 50
PER_FLOW = 3


def announce_hosts(p, n):
    """Make the dataplane learn the MAC of Scapy hosts 0..n-1 (an ARP request from each): its
    replies to them then need no resolution first."""
    for i in range(n):
        p.announce(host_ip(i))


def flow_shards(dp, p, flows, rounds=1):
    """Send PER_FLOW datagrams per flow (src, sport), `rounds` times over all flows; returns
    {flow: shard} after asserting that every packet of a flow was counted on one shard."""
    shard_of = {}
    prev = dp.per_shard(RX)
    for _ in range(rounds):
        for src, sport in flows:
            p.send([p.udp(b"flow %d %d" % (sport, k), sport=sport, src=src) for k in range(PER_FLOW)])
            got = p.expect(lambda x, s=src, sp=sport: UDP in x and x[UDP].dport == sp and x[IP].dst == s, PER_FLOW,
                           timeout=3)
            assert len(got) == PER_FLOW, f"flow {src}:{sport}: {len(got)} of {PER_FLOW} echoes"
            cur = dp.per_shard(RX)
            delta = {s: cur.get(s, 0) - prev.get(s, 0) for s in set(cur) | set(prev)}
            moved = {s: d for s, d in delta.items() if d}
            assert len(moved) == 1 and list(moved.values())[0] == PER_FLOW, \
                f"flow {src}:{sport} split over shards: {delta}"
            shard = next(iter(moved))
            assert shard_of.setdefault((src, sport), shard) == shard, f"flow {src}:{sport} moved shard"
            prev = cur
    return shard_of


def check_spread(dp, p, expected_queues):
    ports = dp.call("ports.list")["ports"][0]
    assert ports["shards"] == 2
    if ports["queues"] != expected_queues:
        return ports
    announce_hosts(p, HOSTS)
    flows = [(host_ip(i % HOSTS), 20000 + i) for i in range(FLOWS)]
    shard_of = flow_shards(dp, p, flows, rounds=2)
    per = [sum(1 for s in shard_of.values() if s == k) for k in (0, 1)]
    print(f"{ports['queues']} queue(s): {len(shard_of)} flows, per shard {per}")
    # A fair hash puts 100 +- 7 flows on each shard; 40 leaves room for any RETA weighting.
    assert min(per) >= 40, f"flows per shard: {per}"

    # Kernel TCP: connections spread over the shards, each echoing byte-exact.
    opens = dp.per_shard("reef_native_tcp_passive_opens_total")
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda i: kernel_tcp_echo(dp.ip, payload=b"conn %03d\n" % i), range(32)))
    assert results == [b"conn %03d\n" % i for i in range(32)]
    after = dp.per_shard("reef_native_tcp_passive_opens_total")
    got = {s: after.get(s, 0) - opens.get(s, 0) for s in (0, 1)}
    assert sum(got.values()) == 32 and min(got.values()) > 0, f"TCP connections per shard: {got}"
    assert_serving(dp, p)
    return ports


def test_software_rss_on_one_queue(dataplane, peer):
    dp = dataplane(smp=2)
    p = peer(dp)
    ports = check_spread(dp, p, expected_queues=1)
    assert ports["queues"] == 1 and ports["software_rss"], ports
    st = dp.call("ports.stats")
    assert st, "ports.stats answered"


def test_rss_on_two_queues(dataplane, peer, wire):
    dp = dataplane(smp=2, vdev=f"net_af_packet0,iface={wire.dp_if},qpairs=2")
    p = peer(dp)
    ports = check_spread(dp, p, expected_queues=2)
    if ports["queues"] != 2:
        pytest.skip(f"net_af_packet gave {ports['queues']} queue(s) with qpairs=2: no multi-queue port here")
