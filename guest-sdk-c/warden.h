/*
 * warden.h: what a Warden agent written in C compiles against.
 *
 * An agent is a state machine: one function, called once per step of the run, registered
 * with WARDEN_AGENT. Everything it does outside its own memory is a call of this SDK,
 * and each such call is one host call that Warden enforces against the run's policy and
 * journals: there is no other way out (no libc, no WASI, no clock, no randomness).
 *
 *     #include "warden.h"
 *
 *     static wd_status step(void) {
 *         const char *input;
 *         WD_TRY(wd_input(&input));
 *         WD_TRY(wd_transition("done"));
 *         return wd_finish(input);
 *     }
 *
 *     WARDEN_AGENT(step)
 *
 * Build it for wasm32 with `guest-sdk-c/wardencc agent.wasm agent.c` (clang and lld;
 * README.md beside this file, and docs/authoring.md).
 *
 * The ABI is the Rust SDK's, byte for byte: the one import `warden.host_call(i32 op, i32
 * ptr, i32 len) -> i64`, the exports `warden_step: () -> i32` and `memory`, and requests
 * and responses encoded with postcard exactly as guest-sdk/src/wire.rs defines them.
 * Agent payloads (input, tool arguments and results, model features and values, output)
 * are JSON text; this header has a small JSON reader and writer for them.
 *
 * Conventions of every function below:
 * - A function that can fail returns a wd_status; WD_TRY propagates anything but WD_OK
 *   out of the step, which is what an agent should do with an error it does not handle.
 *   wd_error() says what went wrong.
 * - Strings are NUL-terminated UTF-8. Every string or buffer the SDK returns lives in
 *   the step's scratch memory: valid until the step returns (wd_keep_str keeps one).
 * - Requests the policy denies never return: Warden stops the run and records why.
 */
#ifndef WARDEN_H
#define WARDEN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------- */
/* Outcomes of SDK calls                                                              */

/* What an SDK call came to. A step returns one too: WD_OK or WD_ESCALATED end the step
 * normally; anything else ends the run as failed with wd_error() as its reason. */
typedef enum wd_status {
    /* Done; the out-parameters hold the answer. */
    WD_OK = 0,
    /* A confidence gate did not let the requested transition happen: Warden moved the
     * run to a review state instead (wd_escalated_to()) and the run now waits for a
     * person. Return it from the step: the step ends normally (this is not a failure),
     * and any further action in the step would be refused. */
    WD_ESCALATED = 1,
    /* The tool or model answered that it could not (wd_last_call_error()). */
    WD_CALL_ERROR = 2,
    /* JSON the agent read did not hold what it asked for (a missing field, a string
     * where a number was expected, text that is not JSON). */
    WD_DATA_ERROR = 3,
    /* Warden answered with a response of the wrong kind (a host bug; should not happen). */
    WD_PROTOCOL_ERROR = 4,
    /* The agent's own reason to stop (wd_fail). */
    WD_AGENT_ERROR = 5
} wd_status;

/* Evaluates `expr` (a wd_status) and returns it from the enclosing function unless it is
 * WD_OK: the C counterpart of Rust's `?`. */
#define WD_TRY(expr)                          \
    do {                                      \
        wd_status wd_try_status_ = (expr);    \
        if (wd_try_status_ != WD_OK) {        \
            return wd_try_status_;            \
        }                                     \
    } while (0)

/* What the last SDK call that did not return WD_OK said, for people: the failure reason
 * the run records if the step returns that status. Never NULL. */
const char *wd_error(void);

/* Records `reason` as the agent's reason to stop and returns WD_AGENT_ERROR, so that
 * `return wd_fail("...");` ends the run as failed with that reason. */
wd_status wd_fail(const char *reason);

/* ---------------------------------------------------------------------------------- */
/* The agent                                                                          */

/* One step of the agent: typically read wd_state, do that state's work, then request a
 * transition (or wd_finish in a terminal state). */
typedef wd_status (*wd_step_fn)(void);

/* Registers `step` as this module's agent: defines the export `warden_step` that Warden
 * calls once per step. Use it once, at file scope. */
#define WARDEN_AGENT(step)                                                       \
    __attribute__((export_name("warden_step"))) int32_t warden_step(void) {     \
        return wd_run_step(step);                                                \
    }

/* Runs one step (used by WARDEN_AGENT): releases the previous step's scratch memory,
 * calls `step`, and turns an error into an Abort request, which ends the run as failed
 * with wd_error() as its reason. Returns 0 when the step ended normally. */
int32_t wd_run_step(wd_step_fn step);

/* ---------------------------------------------------------------------------------- */
/* The host calls: each one enforced against the policy and journaled                 */

/* Severity of a journal line. */
typedef enum wd_log_level {
    /* Detail for whoever debugs the agent. */
    WD_DEBUG = 0,
    /* A normal event worth keeping in the journal. */
    WD_INFO = 1,
    /* Something the agent thinks a person should look at. */
    WD_WARN = 2
} wd_log_level;

/* The class of a tool's or model's refusal to answer. */
typedef enum wd_call_error_kind {
    /* The provider has no answer for these arguments (e.g. an unknown policy number). */
    WD_NOT_FOUND = 0,
    /* The arguments or features do not fit what the provider expects. */
    WD_INVALID_ARGUMENTS = 1,
    /* The provider failed. */
    WD_UNAVAILABLE = 2
} wd_call_error_kind;

/* Why a tool or model could not answer. Not a policy matter: the agent decides. */
typedef struct wd_call_error {
    wd_call_error_kind kind;
    /* A sentence for people. */
    const char *message;
} wd_call_error;

/* Identifies one model inference Warden computed and recorded in this run. */
typedef uint64_t wd_inference_id;

/* A model's answer, with the confidence Warden computed for it. */
typedef struct wd_inference {
    /* Cite it with wd_transition_citing. */
    wd_inference_id id;
    /* The model that answered. */
    const char *model;
    /* The model's value, JSON text (read it with wd_get_*). */
    const char *value;
    /* Warden's confidence in `value`, in [0, 1]. Informational: gates use Warden's own
     * record of the inference, never this copy. */
    double confidence;
} wd_inference;

/* A person's (or a timeout's) decision on a run a gate sent to review. */
typedef struct wd_review_info {
    /* Whether anyone decided; when false, the other fields are NULL or false. */
    bool decided;
    /* The state the reviewer sent the run to. */
    const char *outcome;
    /* Who decided (`warden` for a timeout), in which role, and why. */
    const char *reviewer;
    const char *role;
    const char *note;
    /* Whether a timeout decided rather than a person. */
    bool by_timeout;
} wd_review_info;

/* The run's input, JSON text. */
wd_status wd_input(const char **json);

/* The run's current state in the policy's state machine. */
wd_status wd_state(const char **state);

/* Calls the tool `name` (declared in the policy, allowed in the current state) with the
 * JSON arguments `args`; `*result` is its JSON answer. A tool that cannot answer makes
 * this return WD_CALL_ERROR (see wd_last_call_error). */
wd_status wd_tool(const char *name, const char *args, const char **result);

/* Asks the model `name` (declared in the policy, allowed in the current state) for an
 * inference on the JSON object `features`. Returns WD_CALL_ERROR if it cannot answer. */
wd_status wd_model(const char *name, const char *features, wd_inference *inference);

/* Requests a transition to `to`. If a confidence gate guards `to`, Warden judges it on
 * the latest inference of the gate's model in the current visit of the state; a gate
 * that is not met moves the run to its review state instead, and this returns
 * WD_ESCALATED: return it from the step, and the run waits for a person. */
wd_status wd_transition(const char *to);

/* Like wd_transition, resting the gate on the cited inference. */
wd_status wd_transition_citing(const char *to, wd_inference_id evidence);

/* The review state the last escalated transition of this step moved the run to, or NULL. */
const char *wd_escalated_to(void);

/* Writes `message` to the run's journal. */
wd_status wd_log(wd_log_level level, const char *message);

/* The latest human review of this run (review->decided is false if nobody decided it),
 * so that the output can cite who decided and why. */
wd_status wd_review(wd_review_info *review);

/* Ends the run with `output`, JSON text. Allowed only in a terminal state. */
wd_status wd_finish(const char *output);

/* The refusal behind the last WD_CALL_ERROR (or NULL if there was none this step). */
const wd_call_error *wd_last_call_error(void);

/* The raw import, for fixtures that test Warden itself. An agent never needs it. */
__attribute__((import_module("warden"), import_name("host_call")))
int64_t warden_host_call(int32_t op, int32_t ptr, int32_t len);

/* ---------------------------------------------------------------------------------- */
/* Memory                                                                              */
/*
 * One bump allocator over the module's linear memory, which Warden checkpoints at every
 * step boundary. Memory grows as needed; an allocation the policy's memory budget
 * refuses traps, and the run ends as MemoryLimit. Nothing is freed one by one.
 */

/* `size` bytes, 8-aligned, not zeroed, released when the step returns. */
void *wd_alloc(size_t size);

/* `size` bytes, 8-aligned, not zeroed, kept for the rest of the run: for what the agent
 * learns in one step and uses in a later one (or use static variables). */
void *wd_keep(size_t size);

/* A copy of `text` in step memory, or kept for the run. */
char *wd_str_copy(const char *text);
char *wd_keep_str(const char *text);

/* The standard C string and memory functions this module needs (no libc). */
size_t wd_strlen(const char *text);
int wd_strcmp(const char *a, const char *b);
bool wd_streq(const char *a, const char *b);
void *memcpy(void *dest, const void *src, size_t n);
void *memmove(void *dest, const void *src, size_t n);
void *memset(void *dest, int byte, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* ---------------------------------------------------------------------------------- */
/* Text                                                                                */

/* A string formatted into step memory, printf-style, with the conversions %s %c %d %i
 * %u %x (each with l or ll for long and long long, z for size_t), %g, %f, %.Nf and %%.
 * %g prints a double as serde_json does: the fewest significant digits that read back as
 * the same double, plainly from 1e-5 to below 1e16 and as 1.5e+300 beyond (NaN, inf and
 * -inf for what JSON cannot hold). %f and %.Nf print N decimals (6 if not given, at most
 * 17), rounded to nearest, a tie to even. Widths and flags are not supported. */
const char *wd_format(const char *format, ...) __attribute__((format(printf, 1, 2)));
const char *wd_vformat(const char *format, va_list args);

/* A growing text in step memory. */
typedef struct wd_text {
    char *data;
    size_t len;
    size_t cap;
} wd_text;

/* Appends to `text` (which may start zeroed: `wd_text t = {0};`). */
void wd_text_append(wd_text *text, const char *s);
void wd_text_append_n(wd_text *text, const char *s, size_t n);
void wd_text_appendf(wd_text *text, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* The text so far, NUL-terminated ("" for an empty one). */
const char *wd_text_str(const wd_text *text);

/* ---------------------------------------------------------------------------------- */
/* Reading JSON                                                                        */
/*
 * Each reader takes JSON text and an RFC 6901 pointer to one value in it ("" is the
 * whole text, "/claim/amount" a member of a member, "/reasons/0" an element of an array)
 * and returns WD_DATA_ERROR naming the pointer if the value is missing or of another
 * type. The reader never reads outside the text; text that is not JSON is an error.
 */

/* The kinds of JSON value. */
typedef enum wd_json_kind {
    WD_JSON_MISSING = 0,
    WD_JSON_NULL,
    WD_JSON_BOOL,
    WD_JSON_NUMBER,
    WD_JSON_STRING,
    WD_JSON_ARRAY,
    WD_JSON_OBJECT
} wd_json_kind;

/* The kind of the value at `pointer`, WD_JSON_MISSING if there is none. */
wd_json_kind wd_get_kind(const char *json, const char *pointer);

/* A number, as the double nearest to its text, as Rust's `str::parse::<f64>` reads it
 * (unless the text lies within about 10^-31 of a halfway point between two doubles). */
wd_status wd_get_number(const char *json, const char *pointer, double *out);

/* A number that is a non-negative integer no larger than 2^53. */
wd_status wd_get_uint(const char *json, const char *pointer, uint64_t *out);

/* A string, unescaped into step memory (\u0000 ends it early: C strings hold no NUL). */
wd_status wd_get_string(const char *json, const char *pointer, const char **out);

/* true or false. */
wd_status wd_get_bool(const char *json, const char *pointer, bool *out);

/* The number of elements of an array or members of an object. */
wd_status wd_get_length(const char *json, const char *pointer, size_t *out);

/* The name of the member number `index` (from 0, in the order of the text) of an
 * object: with wd_get_length, a way through an object whose keys the agent does not know. */
wd_status wd_get_key(const char *json, const char *pointer, size_t index, const char **key);

/* The value's own JSON text, copied into step memory (any kind). */
wd_status wd_get_raw(const char *json, const char *pointer, const char **out);

/* ---------------------------------------------------------------------------------- */
/* Writing JSON                                                                        */
/*
 * A writer builds JSON text in step memory and puts the commas in:
 *
 *     wd_json out = {0};
 *     wd_json_begin_object(&out);
 *     wd_json_key(&out, "decision");  wd_json_string(&out, "approved");
 *     wd_json_key(&out, "risk");      wd_json_number(&out, 0.04);
 *     wd_json_end_object(&out);
 *     WD_TRY(wd_finish(wd_json_text(&out)));
 *
 * In an object, each value follows its key. wd_json_number writes a double as serde_json
 * does (as %g, with ".0" after a whole number: 8000.0, 0.25, 1e+16), so a number read with
 * wd_get_number is written back as the same number, and a Rust agent sending the same
 * value sends the same bytes; NaN and infinities, which JSON cannot hold, as null (as
 * serde_json does). wd_json_int and wd_json_uint write integers (8000). Nesting deeper
 * than 64 levels traps.
 */
typedef struct wd_json {
    wd_text text;
    /* One bit per open object or array: whether it has an element yet. */
    uint64_t started;
    uint32_t depth;
    bool after_key;
} wd_json;

void wd_json_begin_object(wd_json *json);
void wd_json_end_object(wd_json *json);
void wd_json_begin_array(wd_json *json);
void wd_json_end_array(wd_json *json);
void wd_json_key(wd_json *json, const char *key);
void wd_json_string(wd_json *json, const char *value);
void wd_json_number(wd_json *json, double value);
void wd_json_int(wd_json *json, int64_t value);
void wd_json_uint(wd_json *json, uint64_t value);
void wd_json_bool(wd_json *json, bool value);
void wd_json_null(wd_json *json);
/* A value that is already JSON text (e.g. read with wd_get_raw). */
void wd_json_raw(wd_json *json, const char *value);

/* The text written so far. */
const char *wd_json_text(const wd_json *json);

#ifdef __cplusplus
}
#endif

#endif /* WARDEN_H */
