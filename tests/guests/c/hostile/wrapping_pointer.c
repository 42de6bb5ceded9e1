// Attacks: integer overflow. A request whose ptr + len wraps past 2^32 (0xfffffff0 +
// 0x20), as hostile/wrapping_pointer.wat.
#include "warden.h"

static wd_status step(void) {
    (void)warden_host_call(0, (int32_t)0xfffffff0u, 0x20);
    return WD_OK;
}

WARDEN_AGENT(step)
