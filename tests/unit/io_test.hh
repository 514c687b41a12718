// Helpers for the disk I/O tests: a temporary directory on a filesystem with O_DIRECT (tmpfs has
// none, so /tmp is avoided when it is a tmpfs), and a size-limited tmpfs for ENOSPC.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace reef::testing {

inline bool is_tmpfs(const std::string& dir) {
    struct statfs s {};
    return ::statfs(dir.c_str(), &s) == 0 && s.f_type == TMPFS_MAGIC;
}

/// A fresh directory removed (with its contents) on destruction. Placed under $REEF_IO_TEST_DIR,
/// /var/tmp or /tmp: the first that exists and is not a tmpfs, so O_DIRECT works.
class temp_dir {
    std::string _path;

public:
    temp_dir() {
        std::string base;
        for (const char* c : {static_cast<const char*>(std::getenv("REEF_IO_TEST_DIR")), "/var/tmp", "/tmp"}) {
            if (c && std::filesystem::is_directory(c) && !is_tmpfs(c)) {
                base = c;
                break;
            }
        }
        if (base.empty()) {
            base = "/tmp";
        }
        std::string tmpl = base + "/reef-io-test-XXXXXX";
        if (!::mkdtemp(tmpl.data())) {
            throw std::runtime_error(fmt::format("mkdtemp {}: {}", tmpl, std::strerror(errno)));
        }
        _path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::string& path() const noexcept { return _path; }
    std::string file(const std::string& name) const { return _path + "/" + name; }
};

/// A filesystem mounted on a fresh directory, unmounted on destruction: a tmpfs of `size` bytes
/// (for ENOSPC), or a ramfs (no O_DIRECT on any kernel, unlike tmpfs since Linux 6.6). mounted()
/// is false (and why() says why) when this process may not mount (not root, no CAP_SYS_ADMIN).
class scratch_fs {
    temp_dir _dir;
    bool _mounted = false;
    std::string _why;

public:
    /// `type` "tmpfs" (limited to `size` bytes) or "ramfs".
    scratch_fs(const char* type, std::size_t size) {
        if (::geteuid() != 0) {
            _why = fmt::format("mounting a {} needs root", type);
            return;
        }
        auto opts = std::string(type) == "tmpfs" ? fmt::format("size={}", size) : std::string();
        if (::mount(type, _dir.path().c_str(), type, 0, opts.c_str()) != 0) {
            _why = fmt::format("mount -t {} failed: {} (no CAP_SYS_ADMIN in this container?)", type, std::strerror(errno));
            return;
        }
        _mounted = true;
    }
    ~scratch_fs() {
        if (_mounted) {
            ::umount2(_dir.path().c_str(), MNT_DETACH);
        }
    }
    bool mounted() const noexcept { return _mounted; }
    const std::string& why() const noexcept { return _why; }
    std::string file(const std::string& name) const { return _dir.file(name); }
};

}  // namespace reef::testing
