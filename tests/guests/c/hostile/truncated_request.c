// Attacks: the decoder. A Tool request whose name claims 10 bytes but has 3, as
// hostile/truncated_request.wat.
#include "warden.h"

static unsigned char truncated[5] = {0x02, 0x0a, 'a', 'b', 'c'};

static wd_status step(void) {
    (void)warden_host_call(0, (int32_t)(uintptr_t)truncated, (int32_t)sizeof truncated);
    return WD_OK;
}

WARDEN_AGENT(step)
