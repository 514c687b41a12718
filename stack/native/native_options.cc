#include "stack/native/native_options.hh"

#include "stack/native/wire.hh"

#include <fmt/format.h>

#include <stdexcept>

namespace reef::net {

namespace {

// An IPv4 address option: checked while parsing so a typo fails with the option's name.
std::string check_ipv4(const std::string& v) {
    try {
        native::ipv4_addr::parse(v);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return {};
}

// A duration option given in milliseconds.
void add_ms(CLI::App& app, const char* name, std::chrono::milliseconds& field, const char* help, const char* group,
            std::uint64_t min = 1) {
    app.add_option_function<std::uint64_t>(
           name, [&field](const std::uint64_t& v) { field = std::chrono::milliseconds(v); }, help)
        ->default_str(std::to_string(field.count()))
        ->check(CLI::Range(min, std::uint64_t(24) * 3600 * 1000))
        ->group(group);
}

}  // namespace

void native_options::register_options(CLI::App& app) {
    const char* g = "Native stack options";
    app.add_option("--host-ipv4-addr", host_ipv4_addr, "This host's IPv4 address (native stack, without --dhcp)")
        ->check(check_ipv4)
        ->capture_default_str()
        ->group(g);
    app.add_option("--netmask-ipv4-addr", netmask_ipv4_addr, "IPv4 netmask of the host's subnet")
        ->check(check_ipv4)
        ->capture_default_str()
        ->group(g);
    app.add_option("--gw-ipv4-addr", gw_ipv4_addr, "IPv4 default gateway (empty: none, only the subnet is reachable)")
        ->check([](const std::string& v) { return v.empty() ? std::string() : check_ipv4(v); })
        ->capture_default_str()
        ->group(g);
    app.add_option("--mtu", mtu, "IPv4 MTU of the native stack (0: the device's; at most the device's)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str()
        ->group(g);
    app.add_flag("--dhcp", dhcp, "Get the address, netmask, gateway and MTU from DHCP instead")->group(g);
    add_ms(app, "--dhcp-timeout", dhcp_timeout,
           "With --dhcp: fail start-up when no DHCP server answered within this time (ms)", g);
    add_ms(app, "--arp-cache-timeout", arp_cache_timeout, "How long a resolved ARP entry is used (ms)", g);
    add_ms(app, "--arp-retry-interval", arp_retry_interval, "Interval between ARP requests for one address (ms)", g);
    app.add_option("--arp-retries", arp_retries, "ARP requests sent for an address before giving up")
        ->check(CLI::Range(1u, 100u))
        ->capture_default_str()
        ->group(g);
    app.add_option("--arp-queue-limit", arp_queue_limit, "Packets queued per address waiting for ARP")
        ->check(CLI::Range(std::size_t(1), std::size_t(65536)))
        ->capture_default_str()
        ->group(g);
    add_ms(app, "--ip-reassembly-timeout", reassembly_timeout,
           "Incomplete IPv4 datagrams are dropped this long after their first fragment (ms)", g);
    app.add_option("--ip-reassembly-memory", reassembly_memory,
                   "Bytes of IPv4 fragments one shard holds at most (oldest datagrams dropped beyond)")
        ->check(CLI::Range(std::size_t(4096), std::size_t(1) << 32))
        ->capture_default_str()
        ->group(g);
    app.add_option("--icmp-error-rate", icmp_error_rate, "ICMP errors sent per second per shard at most")
        ->check(CLI::Range(1u, 1000000u))
        ->capture_default_str()
        ->group(g);
    app.add_option("--icmp-error-burst", icmp_error_burst,
                   "ICMP errors one shard may send at once before --icmp-error-rate applies")
        ->check(CLI::Range(1u, 1000000u))
        ->capture_default_str()
        ->group(g);
}

}  // namespace reef::net
