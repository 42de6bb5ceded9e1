/*
 * Well-behaved, multi-step, effectful: the C port of agents/examples/counter.rs, making
 * the same requests. One `disbursement` (a ledger effect with an idempotency key) per
 * step, memory that changes every step, `steps` steps in all. tests/c_guest.rs kills
 * `warden` while it runs this agent, resumes, forks and replays it.
 */
#include "warden.h"

/* More steps than any policy the tests use allows. */
#define MAX_STEPS 256

/* What persists between steps: it lives in linear memory, checkpointed by Warden. */
static uint32_t done;
static const char *receipts[MAX_STEPS];
static unsigned char *scratch[MAX_STEPS];

static wd_status step(void) {
    const char *input;
    WD_TRY(wd_input(&input));
    uint64_t steps;
    uint64_t amount;
    WD_TRY(wd_get_uint(input, "/steps", &steps));
    WD_TRY(wd_get_uint(input, "/amount", &amount));
    const char *state;
    WD_TRY(wd_state(&state));
    if (wd_streq(state, "done")) {
        uint64_t checksum = 0;
        for (uint32_t i = 0; i < done; i++) {
            for (size_t b = 0; b < 65536; b++) {
                checksum += scratch[i][b];
            }
        }
        /* Keys in serde_json's order, so the output is the Rust agent's, byte for byte. */
        wd_json out = {0};
        wd_json_begin_object(&out);
        wd_json_key(&out, "checksum");
        wd_json_uint(&out, checksum);
        wd_json_key(&out, "receipts");
        wd_json_begin_array(&out);
        for (uint32_t i = 0; i < done; i++) {
            wd_json_string(&out, receipts[i]);
        }
        wd_json_end_array(&out);
        wd_json_key(&out, "steps");
        wd_json_uint(&out, done);
        wd_json_key(&out, "total");
        wd_json_uint(&out, (uint64_t)done * amount);
        wd_json_end_object(&out);
        return wd_finish(wd_json_text(&out));
    }
    if (done >= MAX_STEPS) {
        return wd_fail("more steps than this agent counts");
    }
    done++;
    wd_json args = {0};
    wd_json_begin_object(&args);
    wd_json_key(&args, "amount");
    wd_json_uint(&args, amount);
    wd_json_key(&args, "n");
    wd_json_uint(&args, done);
    wd_json_end_object(&args);
    const char *receipt;
    WD_TRY(wd_tool("disbursement", wd_json_text(&args), &receipt));
    const char *key = "";
    if (wd_get_kind(receipt, "/receipt") == WD_JSON_STRING) {
        WD_TRY(wd_get_string(receipt, "/receipt", &key));
    }
    receipts[done - 1] = wd_keep_str(key);
    /* Touch a fresh 64 KiB page's worth of memory each step. */
    scratch[done - 1] = wd_keep(65536);
    memset(scratch[done - 1], (int)(done & 0xff), 65536);
    WD_TRY(wd_log(WD_INFO, wd_format("step %u of %llu", done, (unsigned long long)steps)));
    return wd_transition(done >= steps ? "done" : "working");
}

WARDEN_AGENT(step)
