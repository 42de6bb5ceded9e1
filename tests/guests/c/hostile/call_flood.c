// Attacks: the host-call budget. Logs without end, as agents/examples/call_flood.rs.
#include "warden.h"

static wd_status step(void) {
    for (;;) {
        WD_TRY(wd_log(WD_DEBUG, "still here"));
    }
}

WARDEN_AGENT(step)
