#include "dataplane/app.hh"

#include "runtime/coroutine.hh"
#include "runtime/log.hh"
#include "runtime/reactor.hh"
#include "runtime/smp.hh"
#include "stack/net/api.hh"

#ifdef REEF_HAVE_DPDK
#include "dataplane/dpdk_device.hh"
#include "dataplane/dpdk_options.hh"
#include "dataplane/eal.hh"
#endif

namespace reef {

namespace {

logger blog("bootstrap");

// The process's device: created on shard 0, read by every shard (a pointer published before the
// app's main runs and cleared after every shard stopped using it).
net::device* g_device = nullptr;
std::unique_ptr<net::device> g_device_owner;

}  // namespace

app::app(std::string name, std::string description) : _tmpl(std::move(name), std::move(description)) {
    _net.register_options(_tmpl.options());
#ifdef REEF_HAVE_DPDK
    _dpdk = std::make_unique<dpdk::dpdk_options>();
    _dpdk->register_options(_tmpl.options());
#endif
}

app::~app() = default;

bool app::has_dpdk() noexcept {
#ifdef REEF_HAVE_DPDK
    return true;
#else
    return false;
#endif
}

bool app::dpdk_enabled() const noexcept {
#ifdef REEF_HAVE_DPDK
    return _dpdk && _dpdk->enabled;
#else
    return false;
#endif
}

net::device* app::device() noexcept { return g_device; }

int app::run(int argc, char** argv, std::function<future<int>()> main) {
#ifdef REEF_HAVE_DPDK
    _tmpl.add_before_start([this](smp_options& smp, reactor_config&) {
        if (!_dpdk->enabled) {
            return;
        }
        _dpdk->validate();
        dpdk::start_eal(*_dpdk, smp);
        dpdk::add_shard_init(smp);
    });
    _tmpl.add_after_stop([] { dpdk::stop_eal(); });
#endif
    return _tmpl.run(argc, argv, [this, main = std::move(main)]() -> future<int> {
#ifdef REEF_HAVE_DPDK
        if (_dpdk->enabled) {
            g_device_owner = dpdk::make_dpdk_device(*_dpdk);
            co_await g_device_owner->start();
            g_device = g_device_owner.get();
            blog.info("DPDK port {} ({}) started with {} queue(s) for {} shard(s)", g_device->name(),
                      g_device->hw_address().to_string(), g_device->hw_queues_count(), smp::count);
            // Registered before the stack's hooks and the app's, so it runs after them on shard 0
            // (hooks run last registered first): stop pollers, return every mbuf, free the device.
            // Other shards' own hooks run later still; a send on a stopped device is dropped.
            engine().at_exit([]() -> future<> {
                co_await g_device_owner->stop();
                g_device = nullptr;
                g_device_owner.reset();
            });
        }
#endif
        co_await net::start_network_stack(_net);
        co_return co_await main();
    });
}

}  // namespace reef
