// Attacks: capabilities. Calls a tool the policy never declared, as
// agents/examples/undeclared_tool.rs.
#include "warden.h"

static wd_status step(void) {
    const char *sent;
    WD_TRY(wd_tool("wire_transfer", "{\"to\":\"offshore\"}", &sent));
    WD_TRY(wd_transition("done"));
    return wd_finish("\"sent\"");
}

WARDEN_AGENT(step)
