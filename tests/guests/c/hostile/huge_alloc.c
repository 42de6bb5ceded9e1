// Attacks: the memory budget. One allocation of 1 GiB, as agents/examples/huge_alloc.rs.
#include "warden.h"

static wd_status step(void) {
    const char *state;
    WD_TRY(wd_state(&state));
    volatile unsigned char *big = wd_keep((size_t)1 << 30);
    big[0] = 1;
    return wd_finish("1073741824");
}

WARDEN_AGENT(step)
