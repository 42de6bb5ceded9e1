// Attacks: guest memory bounds. Passes host_call a request pointer far past the end of
// memory, as hostile/out_of_bounds.wat.
#include "warden.h"

static wd_status step(void) {
    (void)warden_host_call(0, 0x7fff0000, 100);
    return WD_OK;
}

WARDEN_AGENT(step)
