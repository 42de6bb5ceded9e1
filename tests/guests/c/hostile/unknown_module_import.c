// Attacks: ambient authority. Imports a function from a module Warden does not provide
// (randomness), as hostile/unknown_module_import.wat.
#include "warden.h"

__attribute__((import_module("env"), import_name("getrandom")))
int32_t getrandom(int32_t buffer, int32_t length);

static wd_status step(void) {
    uint64_t luck = 0;
    (void)getrandom((int32_t)(uintptr_t)&luck, (int32_t)sizeof luck);
    return wd_log(WD_INFO, wd_format("luck %llu", (unsigned long long)luck));
}

WARDEN_AGENT(step)
