// packet: a network packet as a scatter-gather list of fragments, owned through one deleter.
//
// The unit the datagram API, the native stack and device drivers exchange. A packet is built
// without copying from memory someone else owns (a temporary_buffer, a DPDK mbuf, a static
// table): each fragment points into that memory and the packet's deleter keeps all of it alive.
// Headers are added in front cheaply (prepend_header reuses one headroom block for Ethernet, IP
// and TCP headers) and read in place (get_header linearizes only the bytes asked for when they
// straddle fragments).
//
// Contract:
//  - Single-shard: the deleter's reference count is a plain integer, so a packet, its shares and
//    every buffer released from it are destroyed on the shard that created them.
//  - Move-only; moves never allocate or throw and leave the source empty (no impl). Copies are
//    explicit: share() (same memory) or to_buffer()/to_string() (new memory).
//  - The owner's action (free the memory, release an mbuf...) runs exactly once, after the packet
//    and every share of it are gone.
//  - Nothing is copied except where a function says so (the copying constructors, get_header
//    across fragments, linearize, to_buffer/to_string).
//  - Empty fragments are never stored: nr_frags() counts fragments with at least one byte.
//  - Ranges are the caller's responsibility: trim/share/frag past the end is a bug caught by
//    assertions in debug builds. get_header is the exception: it returns nullptr past the end.
//  - Functions that allocate throw std::bad_alloc when memory is short and leave the packet as it
//    was, unless they say otherwise.
//  - Writing through a fragment's base is seen by every share of the same memory.
#pragma once

#include "runtime/deleter.hh"
#include "runtime/temporary_buffer.hh"

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace reef::net {

/// A contiguous piece of a packet. The memory belongs to the packet's deleter.
struct fragment {
    char* base;
    std::size_t size;
};

/// What a device (or the software fallback) must do to a packet on the way out, and what it
/// learned about it on the way in. Kept through moves and shares.
struct offload_info {
    std::uint8_t protocol = 0;   ///< IPPROTO_TCP/UDP of the L4 header, 0 = none
    bool needs_csum = false;     ///< L4 checksum to be filled by the device (or software)
    bool needs_ip_csum = false;  ///< IPv4 header checksum to be filled likewise
    std::uint8_t ip_hdr_len = 20, tcp_hdr_len = 20, udp_hdr_len = 8;
    std::uint16_t tso_seg_size = 0;  ///< 0 = no TSO
    bool reassembled = false;        ///< built by IP reassembly
    std::optional<std::uint16_t> vlan_tci;
};

class packet {
    // Fragments up to this count live in the impl itself; more move to a heap array that doubles.
    static constexpr std::size_t inline_frags = 4;

    struct impl {
        deleter owner;
        std::size_t len = 0;
        std::size_t nr_frags = 0;
        std::size_t capacity = inline_frags;
        fragment* frags = inline_storage;  // inline_storage or a heap array of `capacity`
        // Headroom of this packet's own: [headroom_begin, headroom_front) is free and nobody else
        // sees it. Reused only while the first fragment still starts at headroom_front.
        char* headroom_begin = nullptr;
        char* headroom_front = nullptr;
        offload_info offload;
        std::optional<std::uint32_t> rss_hash;
        fragment inline_storage[inline_frags];

        impl() noexcept = default;
        explicit impl(std::size_t reserve);
        impl(const impl&) = delete;
        impl& operator=(const impl&) = delete;
        ~impl();

        /// Room for at least n fragments (may move them to a bigger heap array).
        void reserve(std::size_t n);
        /// Add f (if non-empty) at the end; capacity must be there.
        void push_back_unchecked(fragment f) noexcept {
            if (f.size) {
                frags[nr_frags++] = f;
                len += f.size;
            }
        }
    };

    impl* _impl = nullptr;

    impl& ensure_impl();
    void destroy() noexcept {
        delete _impl;
        _impl = nullptr;
    }
    // Put [offset, offset + size) into one fragment by copying those bytes (they span fragments).
    char* get_header_slow(std::size_t offset, std::size_t size);
    char* linearize_range(std::size_t first_frag, std::size_t frag_start, std::size_t offset, std::size_t size);

public:
    /// Bytes of headroom the first prepend reserves, so later prepends cost no allocation.
    static constexpr std::size_t default_headroom = 128;

    /// An empty packet: no impl, no allocation.
    packet() noexcept = default;
    packet(packet&& x) noexcept : _impl(std::exchange(x._impl, nullptr)) {}
    packet& operator=(packet&& x) noexcept {
        if (this != &x) {
            impl* i = std::exchange(x._impl, nullptr);
            destroy();
            _impl = i;
        }
        return *this;
    }
    packet(const packet&) = delete;
    packet& operator=(const packet&) = delete;
    ~packet() { destroy(); }

    /// An empty packet (with an impl) with room for `reserve_fragments` fragments, so that many
    /// appends need no further allocation.
    explicit packet(std::size_t reserve_fragments);
    /// Zero-copy: a packet of one fragment whose memory `d` owns. An empty `f` gives a packet of
    /// no fragments that still holds `d`. On std::bad_alloc, d is released.
    packet(fragment f, deleter d);
    /// Zero-copy: n fragments (empty ones skipped), all owned by `d`.
    packet(const fragment* frags, std::size_t n, deleter d);
    /// Copies [data, data + len) into memory of the packet's own (one block, with default_headroom
    /// free bytes in front so that headers prepended later cost no allocation and the packet stays
    /// one fragment).
    packet(const char* data, std::size_t len);
    explicit packet(std::string_view data) : packet(data.data(), data.size()) {}
    /// Zero-copy: the buffer's bytes, owned by its deleter.
    explicit packet(temporary_buffer<char> buf);
    /// Zero-copy: one fragment per non-empty buffer; the buffers are kept alive together.
    explicit packet(std::vector<temporary_buffer<char>> bufs);
    /// Zero-copy over memory that outlives every packet (a static table): no owner at all.
    /// Allocates the impl only.
    static packet from_static_data(const char* data, std::size_t len) {
        return packet(fragment{const_cast<char*>(data), len}, deleter());
    }

    /// p followed by a copy of f. On std::bad_alloc p is released.
    packet(packet&& p, fragment f);
    /// p followed by f, zero-copy, owned by d (chained to p's owner). On std::bad_alloc p and d
    /// are released.
    packet(packet&& p, fragment f, deleter d);
    /// p followed by buf's bytes, zero-copy.
    packet(packet&& p, temporary_buffer<char> buf);
    /// A copy of f followed by p (uses p's headroom when it has some, see prepend_header).
    packet(fragment f, packet&& p);

    /// Concatenation, zero-copy: p's fragments go after this packet's and p's owner is chained to
    /// this packet's. This packet's offload info and rss hash are kept (p's are dropped). On
    /// std::bad_alloc this packet is unchanged and p is released.
    void append(packet&& p);

    /// Total bytes.
    std::size_t len() const noexcept { return _impl ? _impl->len : 0; }
    std::size_t nr_frags() const noexcept { return _impl ? _impl->nr_frags : 0; }
    std::span<const fragment> fragments() const noexcept {
        return _impl ? std::span<const fragment>(_impl->frags, _impl->nr_frags) : std::span<const fragment>();
    }
    /// Mutable fragments, for code that re-points them in place (e.g. a driver swapping in
    /// device-visible addresses of the same bytes). Sizes must not change: len() would go stale.
    std::span<fragment> fragments() noexcept {
        return _impl ? std::span<fragment>(_impl->frags, _impl->nr_frags) : std::span<fragment>();
    }
    /// Fragment i (i < nr_frags()).
    fragment& frag(std::size_t i) noexcept {
        assert(i < nr_frags() && "packet::frag index out of range");
        return _impl->frags[i];
    }
    const fragment& frag(std::size_t i) const noexcept {
        assert(i < nr_frags() && "packet::frag index out of range");
        return _impl->frags[i];
    }

    /// Pointer to `size` contiguous bytes at `offset`, or nullptr if they go past the end. When
    /// the range spans fragments, just those bytes are copied into one new fragment (so a header
    /// can be read in place); the rest of the packet is untouched. size 0 gives a non-null
    /// pointer only if offset < len().
    char* get_header(std::size_t offset, std::size_t size) {
        // Inline for the common case, headers within the first fragment (per-packet hot paths).
        if (_impl && _impl->nr_frags && offset < _impl->frags[0].size && size <= _impl->frags[0].size - offset) {
            return _impl->frags[0].base + offset;
        }
        return get_header_slow(offset, size);
    }
    /// The same, as a pointer to H (a packed wire-format struct; no alignment is assumed).
    template <typename H>
    H* get_header(std::size_t offset = 0) {
        return reinterpret_cast<H*>(get_header(offset, sizeof(H)));
    }

    /// Room for `size` (> 0) uninitialized bytes in front of the packet (which become its first bytes).
    /// The first prepend allocates a headroom block of max(size, default_headroom) bytes owned by
    /// this packet; later prepends take their bytes from its free part just in front of the
    /// previous header, so stacking Ethernet+IP+TCP costs one allocation total. Shares never
    /// write into the headroom, and after trim_front or a change of the first fragment a new block
    /// is taken rather than writing bytes a share might see.
    char* prepend_uninitialized_header(std::size_t size);
    /// An uninitialized H (plus `extra` bytes after it) in front of the packet.
    template <typename H>
    H* prepend_header(std::size_t extra = 0) {
        return reinterpret_cast<H*>(prepend_uninitialized_header(sizeof(H) + extra));
    }

    /// Drop the first n bytes (n <= len()). Memory is released only when the packet dies.
    void trim_front(std::size_t n) noexcept;
    /// Drop the last n bytes (n <= len()).
    void trim_back(std::size_t n) noexcept;

    /// Another packet over the same bytes (fragments, offload info and rss hash copied; owner
    /// shared). The memory lives until both are gone. An empty packet shares to an empty packet.
    packet share();
    /// Another packet over bytes [offset, offset + len) of this one (which must be in range).
    packet share(std::size_t offset, std::size_t len);

    /// Make the packet one fragment. Copies (into new memory of the packet's own, releasing the
    /// old owner) only if it has more than one fragment.
    void linearize();
    /// At most one fragment?
    bool is_linear() const noexcept { return nr_frags() <= 1; }

    /// A copy of the bytes, contiguous (tests and slow paths).
    temporary_buffer<char> to_buffer() const;
    std::string to_string() const;

    /// The fragments as temporary_buffers sharing the packet's memory (no copy), for writev-style
    /// sinks. The packet is consumed.
    std::vector<temporary_buffer<char>> release_into_buffers() &&;
    /// Take the owner: the caller keeps the memory alive; the packet becomes empty (no impl).
    deleter release() &&;
    /// The owner, to look at (a device recognizing its own buffer); an empty packet's is empty.
    const deleter& owner() const noexcept {
        static const deleter none;
        return _impl ? _impl->owner : none;
    }

    /// Offload info. The mutable forms allocate the impl of an empty packet (so an allocation
    /// failure there terminates).
    offload_info& offload() noexcept { return ensure_impl_noexcept().offload; }
    const offload_info& offload() const noexcept {
        static const offload_info none;
        return _impl ? _impl->offload : none;
    }
    void set_offload_info(const offload_info& oi) noexcept { ensure_impl_noexcept().offload = oi; }
    /// The receive-side flow hash the device computed (nullopt if none).
    std::optional<std::uint32_t> rss_hash() const noexcept { return _impl ? _impl->rss_hash : std::nullopt; }
    void set_rss_hash(std::uint32_t h) noexcept { ensure_impl_noexcept().rss_hash = h; }

    /// Has an impl (a default-constructed, moved-from, reset or released packet has none). A
    /// packet may have an impl and still be of length 0.
    explicit operator bool() const noexcept { return _impl != nullptr; }
    /// Drop everything: release the owner and the impl.
    void reset() noexcept { destroy(); }

private:
    impl& ensure_impl_noexcept() noexcept { return ensure_impl(); }
};

/// "packet(len=N, frags=M)".
std::ostream& operator<<(std::ostream& os, const packet& p);

}  // namespace reef::net
