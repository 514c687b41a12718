#include "apps/loadgen/request_generator.hh"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace reef::loadgen {

net::packet request_generator::make_datagram(std::uint64_t) {
    throw std::logic_error("this generator does not support UDP");
}

datagram_reply request_generator::parse_datagram(const net::packet&) {
    throw std::logic_error("this generator does not support UDP");
}

namespace {

// Filled before the shards start, read-only afterwards: shards may read it without locking.
std::map<std::string, generator_factory, std::less<>>& registry() {
    static std::map<std::string, generator_factory, std::less<>> r;
    return r;
}

}  // namespace

void register_generator(generator_factory f) {
    if (f.name.empty()) {
        throw std::invalid_argument("register_generator: empty name");
    }
    if (!f.make) {
        throw std::invalid_argument("register_generator: generator '" + f.name + "' has no make function");
    }
    auto& r = registry();
    if (r.contains(f.name)) {
        throw std::invalid_argument("register_generator: generator '" + f.name + "' is already registered");
    }
    std::string name = f.name;
    r.emplace(std::move(name), std::move(f));
}

const generator_factory* find_generator(std::string_view name) noexcept {
    auto& r = registry();
    auto it = r.find(name);
    return it == r.end() ? nullptr : &it->second;
}

std::vector<std::string> generator_names() {
    std::vector<std::string> names;
    for (auto& [name, f] : registry()) {
        names.push_back(name);
    }
    return names;  // std::map keeps them sorted
}

void register_builtin_generators() {
    if (find_generator("echo")) {
        return;
    }
    register_generator(make_echo_generator_factory());
}

}  // namespace reef::loadgen
