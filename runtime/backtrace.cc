#include "runtime/backtrace.hh"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <fmt/format.h>

#include <cstdlib>
#include <memory>

#ifdef REEF_HAVE_LIBDW
#include <elfutils/libdwfl.h>
#include <unistd.h>
#endif

namespace reef {

namespace {

std::string demangle(const char* name) {
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
    return status == 0 && d ? std::string(d.get()) : std::string(name);
}

#ifdef REEF_HAVE_LIBDW
struct dwfl_session {
    Dwfl* dwfl = nullptr;
    Dwfl_Callbacks callbacks{};
    char* debuginfo_path = nullptr;
    dwfl_session() {
        callbacks.find_elf = dwfl_linux_proc_find_elf;
        callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
        callbacks.debuginfo_path = &debuginfo_path;
        dwfl = dwfl_begin(&callbacks);
        if (dwfl && (dwfl_linux_proc_report(dwfl, ::getpid()) != 0 || dwfl_report_end(dwfl, nullptr, nullptr) != 0)) {
            dwfl_end(dwfl);
            dwfl = nullptr;
        }
    }
    ~dwfl_session() {
        if (dwfl) {
            dwfl_end(dwfl);
        }
    }
};
#endif

}  // namespace

std::string symbolize_backtrace(void* const* frames, int n) {
    std::string out;
#ifdef REEF_HAVE_LIBDW
    // Reading the process's modules and debug information takes tens of milliseconds: do it once
    // per thread and reuse it (libraries loaded later are still named through dladdr).
    static thread_local std::unique_ptr<dwfl_session> session;
    if (!session) {
        session = std::make_unique<dwfl_session>();
    }
    dwfl_session& dw = *session;
#endif
    for (int i = 0; i < n; ++i) {
        auto addr = reinterpret_cast<std::uintptr_t>(frames[i]);
        // Return addresses point after the call; look up the call instruction itself.
        auto lookup = i > 0 ? addr - 1 : addr;
        std::string func;
        std::string where;
        std::string object;
        Dl_info info{};
        if (::dladdr(reinterpret_cast<void*>(lookup), &info) != 0) {
            if (info.dli_fname) {
                object = info.dli_fname;
            }
            if (info.dli_sname) {
                func = fmt::format("{}+{:#x}", demangle(info.dli_sname),
                                   lookup - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
            }
        }
#ifdef REEF_HAVE_LIBDW
        if (dw.dwfl) {
            if (Dwfl_Module* mod = dwfl_addrmodule(dw.dwfl, lookup)) {
                if (func.empty()) {
                    GElf_Off off = 0;
                    GElf_Sym sym;
                    if (const char* name = dwfl_module_addrinfo(mod, lookup, &off, &sym, nullptr, nullptr, nullptr)) {
                        func = fmt::format("{}+{:#x}", demangle(name), off);
                    }
                }
                if (Dwfl_Line* line = dwfl_module_getsrc(mod, lookup)) {
                    int lineno = 0;
                    if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
                        where = fmt::format(" ({}:{})", file, lineno);
                    }
                }
            }
        }
#endif
        out += fmt::format("  #{} {:#x} {}{}{}\n", i, addr, func.empty() ? "??" : func, where,
                           object.empty() ? "" : " in " + object);
    }
    return out;
}

std::string current_backtrace() {
    void* frames[64];
    int n = ::backtrace(frames, 64);
    return symbolize_backtrace(frames, n);
}

}  // namespace reef
