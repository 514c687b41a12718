#include "runtime/scheduling.hh"

#include "runtime/coroutine.hh"
#include "runtime/smp.hh"

#include <stdexcept>

namespace reef {

future<scheduling_group> create_scheduling_group(std::string name, float shares) {
    if (!(shares > 0)) {
        throw std::invalid_argument("scheduling group '" + name + "': shares must be positive");
    }
    if (name.empty()) {
        throw std::invalid_argument("scheduling group name must not be empty");
    }
    // Ids are handed out on shard 0 only, so two shards creating groups at once cannot collide;
    // the group exists on shard 0 (reserving the id) before the other shards learn of it.
    // The futures are named before co_await: GCC 12 destroys a temporary closure's captures twice
    // inside a co_await expression (see coroutine.hh).
    auto reserved = smp::submit_to(0, [name, shares] {
        if (find_scheduling_group(name)) {
            throw std::invalid_argument("scheduling group '" + name + "' already exists");
        }
        unsigned i = 1;
        while (i < max_scheduling_groups && engine().scheduling_group_exists(i)) {
            ++i;
        }
        if (i == max_scheduling_groups) {
            throw std::runtime_error("cannot create scheduling group '" + name + "': all " +
                                     std::to_string(max_scheduling_groups) + " groups are in use");
        }
        engine().init_scheduling_group(i, name, shares);
        return i;
    });
    unsigned id = co_await std::move(reserved);
    auto others = smp::submit_to(0, [id, name, shares] {
        return smp::invoke_on_others([id, name, shares] { engine().init_scheduling_group(id, name, shares); });
    });
    co_await std::move(others);
    co_return scheduling_group(id);
}

future<> destroy_scheduling_group(scheduling_group sg) {
    if (sg.id() == 0) {
        throw std::invalid_argument("the main scheduling group cannot be destroyed");
    }
    // Shard 0 last: its entry is what reserves the id.
    co_await smp::submit_to(0, [id = sg.id()] {
        return smp::invoke_on_others([id] { engine().destroy_scheduling_group(id); }).then([id] {
            engine().destroy_scheduling_group(id);
        });
    });
}

future<> set_scheduling_group_shares(scheduling_group sg, float shares) {
    if (!(shares > 0)) {
        throw std::invalid_argument("scheduling group shares must be positive");
    }
    return smp::invoke_on_all([id = sg.id(), shares] { engine().set_scheduling_group_shares(id, shares); });
}

std::optional<scheduling_group> find_scheduling_group(const std::string& name) {
    for (unsigned i = 0; i < max_scheduling_groups; ++i) {
        if (engine().scheduling_group_exists(i) && engine().scheduling_group_stats(i).name == name) {
            return scheduling_group(i);
        }
    }
    return std::nullopt;
}

std::vector<scheduling_group> all_scheduling_groups() {
    std::vector<scheduling_group> out;
    for (unsigned i = 0; i < max_scheduling_groups; ++i) {
        if (engine().scheduling_group_exists(i)) {
            out.emplace_back(i);
        }
    }
    return out;
}

std::string scheduling_group_name(scheduling_group sg) { return engine().scheduling_group_stats(sg.id()).name; }

float scheduling_group_shares(scheduling_group sg) { return engine().scheduling_group_stats(sg.id()).shares; }

reactor::group_stats scheduling_group_stats(scheduling_group sg) { return engine().scheduling_group_stats(sg.id()); }

}  // namespace reef
