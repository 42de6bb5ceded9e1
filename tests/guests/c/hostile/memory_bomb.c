// Attacks: the memory budget. Keeps one more MiB, filled, until memory cannot grow, as
// agents/examples/memory_bomb.rs.
#include "warden.h"

static wd_status step(void) {
    const char *state;
    WD_TRY(wd_state(&state));
    for (;;) {
        memset(wd_keep(1 << 20), 7, 1 << 20);
    }
}

WARDEN_AGENT(step)
