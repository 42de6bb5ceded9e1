/*
 * warden.c: the C guest SDK's host calls, memory and step (warden.h says what each
 * function promises; warden_json.c has the text and JSON helpers).
 *
 * The one invariant kept here: every byte that crosses the guest/host boundary is
 * encoded and decoded exactly as guest-sdk/src/wire.rs defines it with postcard, so
 * that Warden cannot tell a C agent's requests from a Rust agent's:
 *
 * - unsigned integers and enum variant indexes are LEB128 varints (u32 at most 5 bytes,
 *   u64 at most 10);
 * - a String is its byte length as a varint, then the UTF-8 bytes;
 * - an Option is one byte, 0 (None) or 1 (Some) followed by the value;
 * - a bool is one byte, 0 or 1; an f64 is 8 bytes, little-endian;
 * - a struct is its fields in declaration order; a Result is the enum Ok = 0, Err = 1.
 *
 * The variant indexes below are the declaration order of Request and Response in
 * wire.rs; a test (tests/c_guest.rs) holds the two to each other.
 */
#include "warden_internal.h"

/* The `op` of a host call (wire::OP_CALL, wire::OP_READ_RESPONSE). */
#define OP_CALL 0
#define OP_READ_RESPONSE 1

/* Request variants, in wire.rs order. */
enum request_tag {
    REQ_INPUT = 0,
    REQ_STATE = 1,
    REQ_TOOL = 2,
    REQ_MODEL = 3,
    REQ_TRANSITION = 4,
    REQ_LOG = 5,
    REQ_FINISH = 6,
    REQ_ABORT = 7,
    REQ_REVIEW = 8
};

/* Response variants, in wire.rs order. */
enum response_tag {
    RESP_INPUT = 0,
    RESP_STATE = 1,
    RESP_TOOL = 2,
    RESP_MODEL = 3,
    RESP_TRANSITIONED = 4,
    RESP_ACK = 5,
    RESP_REVIEW = 6
};

/* ---------------------------------------------------------------------------------- */
/* Memory: one bump allocator. `kept_top` ends what is kept for the run; scratch memory
 * lies above it and is released by moving `heap_top` back down at each step. Both are
 * in linear memory, so a checkpoint holds them with everything they point to. */

extern unsigned char __heap_base;

static uintptr_t heap_top;
static uintptr_t kept_top;

#define PAGE_BYTES 65536u

static void *bump(size_t size) {
    if (heap_top == 0) {
        heap_top = kept_top = ((uintptr_t)&__heap_base + 7u) & ~(uintptr_t)7u;
    }
    uintptr_t start = (heap_top + 7u) & ~(uintptr_t)7u;
    if (size > UINTPTR_MAX - start) {
        __builtin_trap();
    }
    uintptr_t end = start + size;
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * PAGE_BYTES;
    if ((uint64_t)end > have) {
        uint64_t missing = (uint64_t)end - have;
        size_t pages = (size_t)((missing + PAGE_BYTES - 1) / PAGE_BYTES);
        /* Refused by the policy's memory budget: trap, so the run ends as MemoryLimit. */
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) {
            __builtin_trap();
        }
    }
    heap_top = end;
    return (void *)start;
}

void *wd_alloc(size_t size) {
    return bump(size);
}

void *wd_keep(size_t size) {
    void *kept = bump(size);
    kept_top = heap_top;
    return kept;
}

size_t wd_strlen(const char *text) {
    size_t n = 0;
    while (text[n] != '\0') {
        n++;
    }
    return n;
}

int wd_strcmp(const char *a, const char *b) {
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return (int)(unsigned char)*a - (int)(unsigned char)*b;
}

bool wd_streq(const char *a, const char *b) {
    return wd_strcmp(a, b) == 0;
}

static char *copy_into(char *to, const char *text, size_t n) {
    memcpy(to, text, n);
    to[n] = '\0';
    return to;
}

char *wd_str_copy(const char *text) {
    size_t n = wd_strlen(text);
    return copy_into(wd_alloc(n + 1), text, n);
}

char *wd_keep_str(const char *text) {
    size_t n = wd_strlen(text);
    return copy_into(wd_keep(n + 1), text, n);
}

/* The compiler emits calls to these for struct copies and large initialisers; with no
 * libc, they are defined here. `no_builtin` keeps the optimiser from turning their loops
 * back into calls of themselves. */
__attribute__((no_builtin("memcpy"))) void *memcpy(void *dest, const void *src, size_t n) {
    unsigned char *d = dest;
    const unsigned char *s = src;
    while (n-- > 0) {
        *d++ = *s++;
    }
    return dest;
}

__attribute__((no_builtin("memmove"))) void *memmove(void *dest, const void *src, size_t n) {
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (d < s) {
        while (n-- > 0) {
            *d++ = *s++;
        }
    } else {
        while (n-- > 0) {
            d[n] = s[n];
        }
    }
    return dest;
}

__attribute__((no_builtin("memset"))) void *memset(void *dest, int byte, size_t n) {
    unsigned char *d = dest;
    while (n-- > 0) {
        *d++ = (unsigned char)byte;
    }
    return dest;
}

__attribute__((no_builtin("memcmp"))) int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a;
    const unsigned char *y = b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return (int)x[i] - (int)y[i];
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Errors of the step in progress (scratch memory, like everything they point to). */

static const char *last_error;
static wd_call_error last_call_error;
static bool has_call_error;
static const char *escalated_to;

const char *wd_error(void) {
    return last_error != NULL ? last_error : "no error";
}

wd_status wdi_fail(wd_status status, const char *message) {
    last_error = message;
    return status;
}

wd_status wd_fail(const char *reason) {
    return wdi_fail(WD_AGENT_ERROR, wd_str_copy(reason));
}

const wd_call_error *wd_last_call_error(void) {
    return has_call_error ? &last_call_error : NULL;
}

const char *wd_escalated_to(void) {
    return escalated_to;
}

/* ---------------------------------------------------------------------------------- */
/* Postcard: encoding requests. */

typedef struct encoder {
    wd_text bytes;
} encoder;

static void put_byte(encoder *e, uint8_t byte) {
    wd_text_append_n(&e->bytes, (const char *)&byte, 1);
}

static void put_varint(encoder *e, uint64_t value) {
    while (value >= 0x80) {
        put_byte(e, (uint8_t)(value | 0x80));
        value >>= 7;
    }
    put_byte(e, (uint8_t)value);
}

static void put_str(encoder *e, const char *text) {
    size_t n = wd_strlen(text);
    put_varint(e, n);
    wd_text_append_n(&e->bytes, text, n);
}

/* ---------------------------------------------------------------------------------- */
/* Postcard: decoding responses. Every read is bounds-checked; a response that does not
 * decode sets `ok` to false and the call returns WD_PROTOCOL_ERROR. */

typedef struct decoder {
    const uint8_t *at;
    const uint8_t *end;
    bool ok;
} decoder;

static uint8_t get_byte(decoder *d) {
    if (!d->ok || d->at >= d->end) {
        d->ok = false;
        return 0;
    }
    return *d->at++;
}

static uint64_t get_varint(decoder *d, unsigned max_bytes) {
    uint64_t value = 0;
    for (unsigned i = 0; i < max_bytes; i++) {
        uint8_t byte = get_byte(d);
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0) {
            return value;
        }
    }
    d->ok = false;
    return 0;
}

static const char *get_str(decoder *d) {
    uint64_t n = get_varint(d, 5);
    if (!d->ok || n > (uint64_t)(d->end - d->at)) {
        d->ok = false;
        return "";
    }
    char *text = copy_into(wd_alloc((size_t)n + 1), (const char *)d->at, (size_t)n);
    d->at += n;
    return text;
}

static bool get_bool(decoder *d) {
    uint8_t byte = get_byte(d);
    if (byte > 1) {
        d->ok = false;
    }
    return byte == 1;
}

static double get_f64(decoder *d) {
    uint64_t bits = 0;
    for (unsigned i = 0; i < 8; i++) {
        bits |= (uint64_t)get_byte(d) << (8 * i);
    }
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* ---------------------------------------------------------------------------------- */
/* The host call: send one request, read its response. */

static decoder call(const encoder *request) {
    int64_t len = warden_host_call(OP_CALL, (int32_t)(uintptr_t)request->bytes.data,
                                   (int32_t)request->bytes.len);
    if (len < 0 || len > INT32_MAX) {
        __builtin_trap();
    }
    uint8_t *response = wd_alloc((size_t)len);
    warden_host_call(OP_READ_RESPONSE, (int32_t)(uintptr_t)response, (int32_t)len);
    decoder d = {response, response + len, true};
    return d;
}

static encoder request(enum request_tag tag) {
    encoder e = {{0}};
    put_varint(&e, tag);
    return e;
}

static wd_status protocol_error(const char *what) {
    return wdi_fail(WD_PROTOCOL_ERROR, wd_format("unexpected response to %s", what));
}

/* Calls with `e` and expects a response of variant `tag` whose payload is one string. */
static wd_status call_for_str(const encoder *e, enum response_tag tag, const char *what,
                              const char **out) {
    decoder d = call(e);
    uint64_t got = get_varint(&d, 5);
    const char *text = get_str(&d);
    if (!d.ok || got != tag || d.at != d.end) {
        return protocol_error(what);
    }
    *out = text;
    return WD_OK;
}

static wd_status call_for_ack(const encoder *e, const char *what) {
    decoder d = call(e);
    uint64_t got = get_varint(&d, 5);
    if (!d.ok || got != RESP_ACK || d.at != d.end) {
        return protocol_error(what);
    }
    return WD_OK;
}

wd_status wd_input(const char **json) {
    encoder e = request(REQ_INPUT);
    return call_for_str(&e, RESP_INPUT, "input", json);
}

wd_status wd_state(const char **state) {
    encoder e = request(REQ_STATE);
    return call_for_str(&e, RESP_STATE, "state", state);
}

static const char *kind_name(wd_call_error_kind kind) {
    switch (kind) {
    case WD_NOT_FOUND:
        return "NotFound";
    case WD_INVALID_ARGUMENTS:
        return "InvalidArguments";
    case WD_UNAVAILABLE:
        return "Unavailable";
    }
    return "Unknown";
}

/* Reads a Result's tag; on Err, reads the CallError and records it. Returns whether the
 * result is Ok. */
static bool ok_or_call_error(decoder *d) {
    uint64_t result = get_varint(d, 5);
    if (result == 0 || !d->ok) {
        return true;
    }
    if (result != 1) {
        d->ok = false;
        return true;
    }
    uint64_t kind = get_varint(d, 5);
    const char *message = get_str(d);
    if (kind > WD_UNAVAILABLE) {
        d->ok = false;
    }
    last_call_error.kind = (wd_call_error_kind)kind;
    last_call_error.message = message;
    has_call_error = true;
    return false;
}

wd_status wd_tool(const char *name, const char *args, const char **result) {
    encoder e = request(REQ_TOOL);
    put_str(&e, name);
    put_str(&e, args);
    decoder d = call(&e);
    bool tool = get_varint(&d, 5) == RESP_TOOL;
    bool ok = tool && ok_or_call_error(&d);
    const char *text = ok ? get_str(&d) : NULL;
    if (!d.ok || !tool || d.at != d.end) {
        return protocol_error("tool");
    }
    if (!ok) {
        return wdi_fail(WD_CALL_ERROR, wd_format("%s: %s", kind_name(last_call_error.kind),
                                               last_call_error.message));
    }
    *result = text;
    return WD_OK;
}

wd_status wd_model(const char *name, const char *features, wd_inference *inference) {
    encoder e = request(REQ_MODEL);
    put_str(&e, name);
    put_str(&e, features);
    decoder d = call(&e);
    bool model = get_varint(&d, 5) == RESP_MODEL;
    bool ok = model && ok_or_call_error(&d);
    wd_inference got = {0, NULL, NULL, 0.0};
    if (ok) {
        got.id = get_varint(&d, 10);
        got.model = get_str(&d);
        got.value = get_str(&d);
        got.confidence = get_f64(&d);
    }
    if (!d.ok || !model || d.at != d.end) {
        return protocol_error("model");
    }
    if (!ok) {
        return wdi_fail(WD_CALL_ERROR, wd_format("%s: %s", kind_name(last_call_error.kind),
                                               last_call_error.message));
    }
    *inference = got;
    return WD_OK;
}

static wd_status transition(const char *to, bool cite, wd_inference_id evidence) {
    encoder e = request(REQ_TRANSITION);
    put_str(&e, to);
    put_byte(&e, cite ? 1 : 0);
    if (cite) {
        put_varint(&e, evidence);
    }
    const char *state;
    WD_TRY(call_for_str(&e, RESP_TRANSITIONED, "transition", &state));
    if (wd_streq(state, to)) {
        return WD_OK;
    }
    escalated_to = state;
    return wdi_fail(WD_ESCALATED,
                  wd_format("the transition to `%s` was escalated: the run waits for review "
                            "in `%s`",
                            to, state));
}

wd_status wd_transition(const char *to) {
    return transition(to, false, 0);
}

wd_status wd_transition_citing(const char *to, wd_inference_id evidence) {
    return transition(to, true, evidence);
}

wd_status wd_log(wd_log_level level, const char *message) {
    encoder e = request(REQ_LOG);
    put_varint(&e, (uint64_t)level);
    put_str(&e, message);
    return call_for_ack(&e, "log");
}

wd_status wd_review(wd_review_info *review) {
    encoder e = request(REQ_REVIEW);
    decoder d = call(&e);
    bool kind = get_varint(&d, 5) == RESP_REVIEW;
    wd_review_info got = {false, NULL, NULL, NULL, NULL, false};
    got.decided = kind && get_bool(&d);
    if (got.decided) {
        got.outcome = get_str(&d);
        got.reviewer = get_str(&d);
        got.role = get_str(&d);
        got.note = get_str(&d);
        got.by_timeout = get_bool(&d);
    }
    if (!d.ok || !kind || d.at != d.end) {
        return protocol_error("review");
    }
    *review = got;
    return WD_OK;
}

wd_status wd_finish(const char *output) {
    encoder e = request(REQ_FINISH);
    put_str(&e, output);
    return call_for_ack(&e, "finish");
}

/* Ends the run as failed with `reason`: Warden records it and stops the guest. */
static void abort_run(const char *reason) {
    encoder e = request(REQ_ABORT);
    put_str(&e, reason);
    (void)call(&e);
}

/* ---------------------------------------------------------------------------------- */
/* The step. */

int32_t wd_run_step(wd_step_fn step) {
    if (heap_top != 0) {
        heap_top = kept_top;
    }
    last_error = NULL;
    has_call_error = false;
    escalated_to = NULL;
    wd_status status = step();
    if (status == WD_OK || status == WD_ESCALATED) {
        return 0;
    }
    abort_run(wd_error());
    return 1;
}
