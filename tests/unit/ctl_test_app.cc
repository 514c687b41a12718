// reef-ctl-testapp: a dataplane for the control-plane pytests (pytests/ctl). It runs on reef::app
// like every dataplane (so it has the control agent), creates two scheduling groups, "ga" and
// "gb", and registers app methods through the agent's registration API:
//   app.echo  -> its params back;
//   app.fail  -> fails (rpc_error "conflict" with {"kind":"rpc"}, else a plain exception);
//   app.spin  -> {"seconds": S}: keeps both groups busy on shard 0 for S seconds, so the CPU split
//                between them follows their shares (sched.groups.list shows it).
// It stops on SIGINT/SIGTERM.
#include "ctl/agent/agent.hh"
#include "dataplane/app.hh"
#include "runtime/coroutine.hh"
#include "runtime/reactor.hh"
#include "runtime/scheduling.hh"

#include <chrono>
#include <iostream>

using namespace reef;

namespace {

// Busy until `until`, giving the CPU back whenever the task quota is used up.
future<> spin(steady_clock_type::time_point until) {
    volatile std::uint64_t sink = 0;
    while (steady_clock_type::now() < until) {
        for (int i = 0; i < 2000; ++i) {
            sink = sink + std::uint64_t(i) * 2654435761u;
        }
        co_await coroutine::maybe_yield();
    }
}

struct state {
    promise<> stopped;
    std::vector<ctl::app_method_registration> methods;
};

}  // namespace

int main(int argc, char** argv) {
    reef::app app("reef-ctl-testapp", "Test dataplane for the control plane: two scheduling groups and app methods");
    state st;
    return app.run(argc, argv, [&]() -> future<int> {
        auto ga = co_await create_scheduling_group("ga", 1000);
        auto gb = co_await create_scheduling_group("gb", 1000);
        st.methods.push_back(ctl::register_app_method(
            "app.echo", [](ctl::json p) -> future<ctl::json> { return make_ready_future<ctl::json>(std::move(p)); }));
        st.methods.push_back(ctl::register_app_method("app.fail", [](ctl::json p) -> future<ctl::json> {
            if (p.is_object() && p.value("kind", "") == "rpc") {
                throw ctl::rpc_error(ctl::error_code::conflict, "app.fail: deliberate rpc error");
            }
            throw std::runtime_error("deliberate failure");
        }));
        st.methods.push_back(ctl::register_app_method("app.spin", [ga, gb](ctl::json p) -> future<ctl::json> {
            ctl::params_view v(p, "app.spin");
            v.allow_only({"seconds"});
            double secs = v.number("seconds", 0.01, 60);
            auto until = steady_clock_type::now() +
                         std::chrono::duration_cast<steady_clock_type::duration>(std::chrono::duration<double>(secs));
            auto a = with_scheduling_group(ga, [until] { return spin(until); });
            auto b = with_scheduling_group(gb, [until] { return spin(until); });
            co_await std::move(a);
            co_await std::move(b);
            co_return ctl::json{{"spun_s", secs}};
        }));
        engine().at_exit([&st] {
            st.methods.clear();
            st.stopped.set_value();
            return make_ready_future<>();
        });
        std::cout << "reef-ctl-testapp ready" << std::endl;
        auto f = st.stopped.get_future();
        co_await std::move(f);
        co_return 0;
    });
}
