// Attacks: ambient authority. Writes with WASI's fd_write, outside the journal (what
// printf does in a C program built against wasi-libc), as hostile/wasi_import.wat.
#include "warden.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
int32_t fd_write(int32_t fd, int32_t iovs, int32_t iovs_len, int32_t written);

static wd_status step(void) {
    static const char hello[] = "hello from outside the journal\n";
    int32_t iov[2] = {(int32_t)(uintptr_t)hello, (int32_t)(sizeof hello - 1)};
    int32_t written = 0;
    (void)fd_write(1, (int32_t)(uintptr_t)iov, 1, (int32_t)(uintptr_t)&written);
    return WD_OK;
}

WARDEN_AGENT(step)
