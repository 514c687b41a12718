// timer<Clock>: a callback at a point in time, optionally periodic. Timers belong to the shard
// that armed them; callbacks run on that shard's reactor, between task batches, and should be
// short (typically they resolve a promise). Destroying an armed timer cancels it.
#pragma once

#include "runtime/clocks.hh"
#include "runtime/task.hh"

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

namespace reef {

template <typename Clock>
class timer;

namespace internal {

// A binary min-heap of armed timers by expiry; each timer knows its slot so cancel is O(log n).
template <typename Clock>
class timer_set {
    std::vector<timer<Clock>*> _heap;

    bool less(std::size_t a, std::size_t b) const noexcept { return _heap[a]->_expiry < _heap[b]->_expiry; }
    void place(std::size_t i, timer<Clock>* t) noexcept {
        _heap[i] = t;
        t->_index = i;
    }
    void sift_up(std::size_t i) noexcept {
        while (i > 0) {
            std::size_t p = (i - 1) / 2;
            if (!less(i, p)) {
                break;
            }
            auto* a = _heap[i];
            place(i, _heap[p]);
            place(p, a);
            i = p;
        }
    }
    void sift_down(std::size_t i) noexcept {
        for (;;) {
            std::size_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < _heap.size() && less(l, m)) m = l;
            if (r < _heap.size() && less(r, m)) m = r;
            if (m == i) {
                break;
            }
            auto* a = _heap[i];
            place(i, _heap[m]);
            place(m, a);
            i = m;
        }
    }

public:
    bool empty() const noexcept { return _heap.empty(); }
    std::size_t size() const noexcept { return _heap.size(); }
    typename Clock::time_point next() const noexcept { return _heap.front()->_expiry; }
    void insert(timer<Clock>* t) {
        _heap.push_back(t);
        t->_index = _heap.size() - 1;
        sift_up(t->_index);
    }
    void remove(timer<Clock>* t) noexcept {
        std::size_t i = t->_index;
        auto* last = _heap.back();
        _heap.pop_back();
        if (last != t) {
            place(i, last);
            sift_up(i);
            sift_down(last->_index);
        }
    }
    /// Remove and return the earliest timer if it expired by `now`, else nullptr.
    timer<Clock>* pop_expired(typename Clock::time_point now) noexcept {
        if (_heap.empty() || _heap.front()->_expiry > now) {
            return nullptr;
        }
        auto* t = _heap.front();
        remove(t);
        return t;
    }
};

// The calling shard's timer set for Clock (steady_clock_type or lowres_clock).
template <typename Clock>
timer_set<Clock>& local_timers() noexcept;

}  // namespace internal

template <typename Clock = steady_clock_type>
class timer {
public:
    using time_point = typename Clock::time_point;
    using duration = typename Clock::duration;

private:
    std::function<void()> _callback;
    time_point _expiry{};
    std::optional<duration> _period;
    std::size_t _index = 0;
    bool _armed = false;
    scheduling_group _sg = current_scheduling_group();

    friend class internal::timer_set<Clock>;

public:
    timer() noexcept = default;
    template <typename Func>
    explicit timer(Func&& f) : _callback(std::forward<Func>(f)) {}
    template <typename Func>
    timer(scheduling_group sg, Func&& f) : _callback(std::forward<Func>(f)), _sg(sg) {}
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;
    ~timer() { cancel(); }

    template <typename Func>
    void set_callback(Func&& f) {
        _callback = std::forward<Func>(f);
    }
    void set_callback(scheduling_group sg, std::function<void()> f) {
        _sg = sg;
        _callback = std::move(f);
    }

    /// Fire at `until` (and then every `period`, if given). Arming an armed timer is misuse-free
    /// but re-arms it (same as rearm).
    void arm(time_point until, std::optional<duration> period = {}) {
        cancel();
        _expiry = until;
        _period = period;
        _armed = true;
        internal::local_timers<Clock>().insert(this);
    }
    void rearm(time_point until, std::optional<duration> period = {}) { arm(until, period); }
    void arm(duration delta) { arm(Clock::now() + delta); }
    void arm_periodic(duration delta) { arm(Clock::now() + delta, delta); }
    void rearm_periodic(duration delta) { arm_periodic(delta); }

    /// Disarm. Returns whether the timer was armed.
    bool cancel() noexcept {
        if (!_armed) {
            return false;
        }
        _armed = false;
        internal::local_timers<Clock>().remove(this);
        return true;
    }
    bool armed() const noexcept { return _armed; }
    time_point get_timeout() const noexcept { return _expiry; }
    scheduling_group group() const noexcept { return _sg; }

    // Called by a dying reactor for timers it has removed from its set.
    void cancel_after_removal() noexcept { _armed = false; }

    // Called by the reactor when the timer expires (already removed from the set).
    void fire() {
        _armed = false;
        if (_period) {
            _expiry += *_period;
            _armed = true;
            internal::local_timers<Clock>().insert(this);
        }
        if (_callback) {
            _callback();
        }
    }
};

}  // namespace reef
