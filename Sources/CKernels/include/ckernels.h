// Hot loops that Swift would run slower or only with unsafe pointers: the content-defined
// chunking boundary search.
#ifndef ENVMOUNT_CKERNELS_H
#define ENVMOUNT_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// FastCDC (normalized chunking, level 2) over `data[0..<len]`, starting a new chunk at data[0].
/// Returns the length of the chunk to cut: a content-defined boundary in [min_size, max_size], or
/// `len` when `len <= min_size`, or max_size when no boundary is found before it. When
/// `len < max_size` and no boundary is found, returns 0 ("need more data") unless `at_end`.
size_t envmount_cdc_cut(const uint8_t *data, size_t len, size_t min_size, size_t avg_size,
                        size_t max_size, int at_end);
#endif
