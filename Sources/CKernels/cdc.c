#include "ckernels.h"
#include <pthread.h>

// The gear table is derived from a fixed seed with splitmix64, so every build and every machine
// cuts the same boundaries (chunk ids depend on it: changing the seed changes the format).
static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_init(void) {
    uint64_t x = 0x656e766d6f756e74ULL; // "envmount"
    for (int i = 0; i < 256; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        gear[i] = z ^ (z >> 31);
    }
}

static int log2_floor(size_t v) {
    int b = 0;
    while (v > 1) { v >>= 1; b++; }
    return b;
}

// Masks with `bits` one-bits spread over the high half of the word (FastCDC's padded masks).
static uint64_t spread_mask(int bits) {
    uint64_t m = 0;
    int placed = 0;
    for (int pos = 63; pos >= 0 && placed < bits; pos -= 2) { m |= (1ULL << pos); placed++; }
    for (int pos = 62; pos >= 0 && placed < bits; pos -= 2) { m |= (1ULL << pos); placed++; }
    return m;
}

size_t envmount_cdc_cut(const uint8_t *data, size_t len, size_t min_size, size_t avg_size,
                        size_t max_size, int at_end) {
    pthread_once(&gear_once, gear_init);
    if (len <= min_size) return (at_end || len >= max_size) ? len : 0;
    int bits = log2_floor(avg_size);
    uint64_t mask_s = spread_mask(bits + 2); // harder before the average size
    uint64_t mask_l = spread_mask(bits - 2); // easier after it
    size_t end = len < max_size ? len : max_size;
    size_t normal = avg_size < end ? avg_size : end;
    uint64_t h = 0;
    size_t i = min_size;
    for (; i < normal; i++) {
        h = (h << 1) + gear[data[i]];
        if (!(h & mask_s)) return i + 1;
    }
    for (; i < end; i++) {
        h = (h << 1) + gear[data[i]];
        if (!(h & mask_l)) return i + 1;
    }
    if (end == max_size) return max_size;
    return at_end ? len : 0;
}
