// Attacks: confidence gates. Cites an inference the host never computed to pass the gate
// on `approved`, as agents/examples/confidence_claim.rs.
#include "warden.h"

static wd_status step(void) {
    WD_TRY(wd_transition_citing("approved", 9999));
    return wd_finish("\"approved, trust me\"");
}

WARDEN_AGENT(step)
