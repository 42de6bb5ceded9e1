// Attacks: the host's stack. Unbounded recursion whose values stay in wasm locals (none
// on the in-memory C stack), so it is the engine's native stack it exhausts, as
// agents/examples/recursion.rs.
#include "warden.h"

__attribute__((noinline)) static uint64_t dive(uint64_t n, uint64_t limit) {
    if (n == limit) {
        return n;
    }
    return dive(n + 1, limit) * 3 + n;
}

static wd_status step(void) {
    const char *input;
    WD_TRY(wd_input(&input));
    uint64_t limit = UINT64_MAX;
    if (wd_get_kind(input, "/limit") == WD_JSON_NUMBER) {
        WD_TRY(wd_get_uint(input, "/limit", &limit));
    }
    return wd_finish(wd_format("%llu", (unsigned long long)dive(0, limit)));
}

WARDEN_AGENT(step)
