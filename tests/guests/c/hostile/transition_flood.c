// Attacks: the state machine. Several transitions in one step, as
// agents/examples/transition_flood.rs.
#include "warden.h"

static wd_status step(void) {
    for (int i = 0; i < 1000; i++) {
        WD_TRY(wd_transition("working"));
    }
    return WD_OK;
}

WARDEN_AGENT(step)
