// Memory for direct I/O buffers (internal to runtime/io; allocate_aligned_buffer in file.hh is
// the public entry point).
//
// Why not plain malloc: the kernel describes an O_DIRECT request to the device as one segment per
// physically contiguous run of the buffer. Ordinary memory is 4 KiB pages scattered in physical
// memory, so a 128 KiB buffer becomes 32 segments; on a device with a small request ring (a
// virtio-blk ring of 256 descriptors without indirect descriptors holds only 7 such requests)
// that caps the requests in flight and the bandwidth (measured on the development VM: sequential
// 128 KiB reads at 1.3 GB/s from malloc'ed buffers, 2.8 GB/s from huge pages; docs/disk-io.md).
// Buffers of 16 KiB and more therefore come from 2 MiB chunks advised as transparent huge pages
// (MADV_HUGEPAGE), so a buffer is one or a few segments whenever the kernel can give huge pages.
//
// Each thread has its own pool of chunks, cut into power-of-two blocks (16 KiB to 2 MiB) kept on
// free lists for reuse: a buffer is cheap to allocate and free on the hot path, and the chunks
// are only returned to the system when the thread has exited and its last buffer is freed.
// Buffers larger than 2 MiB are mapped and unmapped individually. A buffer may be freed on any
// thread (its pool takes a lock, uncontended in the usual same-thread case). Where mmap fails,
// allocation falls back to posix_memalign.
#pragma once

#include "runtime/temporary_buffer.hh"

#include <cstddef>

namespace reef::io::internal {

/// `size` bytes (uninitialized) at an address that is a multiple of `alignment` (a power of two,
/// else std::invalid_argument), from the calling thread's pool for sizes of 16 KiB and more.
/// Throws std::bad_alloc when no memory is left.
temporary_buffer<char> allocate_dma_buffer(std::size_t size, std::size_t alignment);

/// The calling thread's pool, for tests: bytes mapped in chunks, and blocks on its free lists.
struct dma_pool_stats {
    std::size_t chunk_bytes = 0;
    std::size_t free_blocks = 0;
    std::size_t outstanding = 0;  ///< blocks handed out and not yet freed
};
dma_pool_stats local_dma_pool_stats() noexcept;

}  // namespace reef::io::internal
