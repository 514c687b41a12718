#include "stack/net/device_base.hh"

#include <algorithm>

namespace reef::net {

logger device_log("device");

std::vector<std::uint16_t> build_reta(unsigned shards, unsigned queues, float queue_weight, std::size_t size) {
    std::vector<std::uint16_t> reta;
    if (shards == 0 || size == 0) {
        return reta;
    }
    double w = std::clamp(static_cast<double>(queue_weight), 0.0, 1.0);
    if (queues >= shards) {
        w = 1.0;  // every shard owns a queue: nobody to favour
    }
    std::vector<double> weight(shards);
    double total = 0;
    for (unsigned s = 0; s < shards; ++s) {
        weight[s] = s < queues ? w : 1.0;
        total += weight[s];
    }
    // Entries per shard by largest remainder, ties to the lower shard.
    std::vector<std::size_t> count(shards);
    std::vector<std::pair<double, unsigned>> rem;
    std::size_t given = 0;
    for (unsigned s = 0; s < shards; ++s) {
        double exact = static_cast<double>(size) * weight[s] / total;
        count[s] = static_cast<std::size_t>(exact);
        given += count[s];
        rem.emplace_back(exact - static_cast<double>(count[s]), s);
    }
    std::stable_sort(rem.begin(), rem.end(), [](auto& a, auto& b) { return a.first > b.first; });
    for (std::size_t i = 0; given < size; ++i, ++given) {
        ++count[rem[i % rem.size()].second];
    }
    // Smooth weighted round-robin over those counts: each step every shard gains its count, the
    // richest takes the entry and pays `size`. Spreads each shard's entries evenly over the table.
    std::vector<long long> credit(shards, 0);
    reta.reserve(size);
    for (std::size_t i = 0; i < size; ++i) {
        unsigned best = 0;
        for (unsigned s = 0; s < shards; ++s) {
            credit[s] += static_cast<long long>(count[s]);
            if (credit[s] > credit[best]) {
                best = s;
            }
        }
        credit[best] -= static_cast<long long>(size);
        reta.push_back(static_cast<std::uint16_t>(best));
    }
    return reta;
}

namespace internal {

void log_callback_exception(const char* what, std::exception_ptr ex) noexcept {
    try {
        std::rethrow_exception(ex);
    } catch (const std::exception& e) {
        device_log.error("{} threw: {}; frame dropped", what, e.what());
    } catch (...) {
        device_log.error("{} threw an unknown exception; frame dropped", what);
    }
}

}  // namespace internal

}  // namespace reef::net
