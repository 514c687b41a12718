#include "runtime/thread.hh"

#include "runtime/log.hh"
#include "runtime/reactor.hh"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <system_error>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Context switch for x86-64 System V: save the callee-saved registers and the FPU/SSE control
// words on the current stack, store the stack pointer, load the other one and restore. `arg`
// reaches a new thread's entry function in %rdi. This is what swapcontext does minus the
// sigprocmask system call, which makes a switch a few nanoseconds instead of a microsecond.
#if defined(__x86_64__)
extern "C" void reef_switch_context(void** save_sp, void* new_sp, void* arg);
asm(R"(
    .text
    .globl reef_switch_context
    .type reef_switch_context, @function
reef_switch_context:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw (%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr 8(%rsp)
    fldcw (%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    movq %rdx, %rdi
    ret
    .cfi_endproc
    .size reef_switch_context, .-reef_switch_context
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

namespace reef {

static logger tlog("thread");

namespace internal {

class thread_context final : public task {
public:
    thread_context(thread_attributes attr, std::function<void()> func);
    ~thread_context();

    void run_and_dispose() noexcept override { switch_in(); }  // woken: continue the thread
    void switch_in() noexcept;
    void switch_out() noexcept;
    future<> join();
    bool finished() const noexcept { return _finished; }

private:
    std::function<void()> _func;
    promise<> _done;
    bool _join_taken = false;
    bool _finished = false;
    char* _mapping = nullptr;
    std::size_t _mapping_size = 0;
    char* _stack_bottom = nullptr;
    std::size_t _stack_size = 0;
#if defined(__x86_64__)
    void* _sp = nullptr;         // the thread's saved stack pointer
    void* _caller_sp = nullptr;  // the reactor's, while the thread runs
#else
    ucontext_t _uc{};
    ucontext_t _caller_uc{};
#endif
#ifdef __SANITIZE_ADDRESS__
    void* _fake_stack = nullptr;
    const void* _caller_stack_bottom = nullptr;
    std::size_t _caller_stack_size = 0;
#endif

    static void entry(void* self) noexcept;
    void main() noexcept;
};

thread_local thread_context* g_current_thread = nullptr;

thread_context::thread_context(thread_attributes attr, std::function<void()> func)
    : task(attr.sched_group), _func(std::move(func)) {
    std::size_t page = std::size_t(::sysconf(_SC_PAGESIZE));
    _stack_size = (std::max<std::size_t>(attr.stack_size, 16 * 1024) + page - 1) / page * page;
    _mapping_size = _stack_size + page;
    void* m = ::mmap(nullptr, _mapping_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
        throw std::system_error(errno, std::system_category(), "mmap (reef::thread stack)");
    }
    _mapping = static_cast<char*>(m);
    // The guard page: the stack grows down into it and faults instead of overwriting memory.
    if (::mprotect(_mapping, page, PROT_NONE) != 0) {
        int e = errno;
        ::munmap(_mapping, _mapping_size);
        throw std::system_error(e, std::system_category(), "mprotect (reef::thread guard page)");
    }
    _stack_bottom = _mapping + page;
#if defined(__x86_64__)
    // Initial frame, read by the second half of reef_switch_context: FPU/SSE control words,
    // six callee-saved registers, then the "return address" = entry. The slot above it stays 0
    // (entry never returns) and keeps the ABI's 16-byte alignment at entry.
    auto top = reinterpret_cast<std::uintptr_t>(_stack_bottom + _stack_size) & ~std::uintptr_t(15);
    auto* frame = reinterpret_cast<std::uint64_t*>(top - 80);
    std::memset(frame, 0, 80);
    std::uint32_t mxcsr = 0x1F80;
    std::uint16_t fpucw = 0x037F;
    std::memcpy(reinterpret_cast<char*>(frame) + 8, &mxcsr, sizeof(mxcsr));
    std::memcpy(reinterpret_cast<char*>(frame), &fpucw, sizeof(fpucw));
    frame[8] = reinterpret_cast<std::uint64_t>(&thread_context::entry);
    _sp = frame;
#else
    ::getcontext(&_uc);
    _uc.uc_stack.ss_sp = _stack_bottom;
    _uc.uc_stack.ss_size = _stack_size;
    _uc.uc_link = nullptr;
    ::makecontext(&_uc, reinterpret_cast<void (*)()>(&thread_context::entry), 1, this);
#endif
}

thread_context::~thread_context() {
    if (_mapping) {
#ifdef __SANITIZE_ADDRESS__
        // The thread's frames left stack redzones in ASan's shadow memory, and munmap does not
        // clear them: the next mapping at this address (another thread's stack) would inherit them.
        __asan_unpoison_memory_region(_mapping, _mapping_size);
#endif
        ::munmap(_mapping, _mapping_size);
    }
}

void thread_context::entry(void* self) noexcept {
    auto* t = static_cast<thread_context*>(self);
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(nullptr, &t->_caller_stack_bottom, &t->_caller_stack_size);
#endif
    t->main();
}

void thread_context::main() noexcept {
    try {
        _func();
        _done.set_value();
    } catch (...) {
        _done.set_exception(std::current_exception());
    }
    _func = nullptr;
    _finished = true;
    switch_out();
    // Never resumed after finishing.
    std::abort();
}

void thread_context::switch_in() noexcept {
    auto* prev = g_current_thread;
    g_current_thread = this;
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_start_switch_fiber(&_fake_stack, _stack_bottom, _stack_size);
#endif
#if defined(__x86_64__)
    reef_switch_context(&_caller_sp, _sp, this);
#else
    ::swapcontext(&_caller_uc, &_uc);
#endif
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(_fake_stack, nullptr, nullptr);
#endif
    g_current_thread = prev;
}

void thread_context::switch_out() noexcept {
#ifdef __SANITIZE_ADDRESS__
    // A finished thread's stack is going away: pass nullptr so ASan drops its fake stack.
    __sanitizer_start_switch_fiber(_finished ? nullptr : &_fake_stack, _caller_stack_bottom, _caller_stack_size);
#endif
#if defined(__x86_64__)
    reef_switch_context(&_sp, _caller_sp, this);
#else
    ::swapcontext(&_uc, &_caller_uc);
#endif
#ifdef __SANITIZE_ADDRESS__
    __sanitizer_finish_switch_fiber(_fake_stack, &_caller_stack_bottom, &_caller_stack_size);
#endif
}

future<> thread_context::join() {
    if (_join_taken) {
        report_misuse("reef::thread::join() called twice");
    }
    _join_taken = true;
    return _done.get_future();
}

bool in_thread() noexcept { return g_current_thread != nullptr; }

void thread_wait(promise_base& pr) {
    auto* t = g_current_thread;
    pr.set_task(t);
    t->switch_out();
}

}  // namespace internal

thread::thread() noexcept = default;

thread::thread(std::function<void()> func) : thread(thread_attributes{}, std::move(func)) {}

thread::thread(thread_attributes attr, std::function<void()> func)
    : _context(std::make_unique<internal::thread_context>(attr, std::move(func))) {
    schedule(_context.get());
}

thread::thread(thread&&) noexcept = default;
thread& thread::operator=(thread&&) noexcept = default;

thread::~thread() {
    if (_context && !_context->finished()) {
        tlog.error("reef::thread destroyed while still running; aborting");
        std::abort();
    }
}

future<> thread::join() {
    if (!_context) {
        report_misuse("join() on an empty reef::thread");
    }
    return _context->join();
}

bool thread::running_in_thread() noexcept { return internal::g_current_thread != nullptr; }

void thread::yield() {
    auto* t = internal::g_current_thread;
    if (!t) {
        report_misuse("reef::thread::yield() outside a reef::thread");
    }
    schedule(t);
    t->switch_out();
}

bool thread::should_yield() noexcept { return need_preempt(); }

void thread::maybe_yield() {
    if (need_preempt()) {
        yield();
    }
}

}  // namespace reef
