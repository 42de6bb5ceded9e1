// Attacks: fuel. An infinite loop inside a step, as agents/examples/spin.rs.
#include "warden.h"

static wd_status step(void) {
    const char *state;
    WD_TRY(wd_state(&state));
    volatile uint64_t x = 0;
    for (;;) {
        x = x + 1;
    }
}

WARDEN_AGENT(step)
