// Attacks: the decoder. Sixteen bytes of garbage as a request, as
// hostile/garbage_request.wat.
#include "warden.h"

static unsigned char garbage[16] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static wd_status step(void) {
    (void)warden_host_call(0, (int32_t)(uintptr_t)garbage, (int32_t)sizeof garbage);
    return WD_OK;
}

WARDEN_AGENT(step)
