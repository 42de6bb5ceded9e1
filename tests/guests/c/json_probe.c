/*
 * Well-behaved: puts the C SDK's JSON reader and writer and its wd_format through their
 * paces under Warden, for tests/c_guest.rs to check against serde_json.
 *
 * Input: {"values": [...], "lookups": [{"json": TEXT, "pointer": POINTER}, ...],
 *         "numbers": [...], "texts": [a number's JSON text, as a string, ...]}
 * Output: {"values": the values, read and written again member by member,
 *          "lookups": [{"kind": ..., "raw": TEXT or null, "error": TEXT or null}, ...],
 *          "numbers": [{"g": "%g", "f2": "%.2f", "f0": "%.0f"}, ...],
 *          "parsed": ["%g" of each text, read as a number, ...],
 *          "formats": [what wd_format makes of a fixed set of conversions]}
 * It moves to `done` and finishes in one step.
 */
#include "warden.h"

/* `pointer` + "/" + `token`, the token escaped as RFC 6901 says (~ as ~0, / as ~1). */
static const char *child_pointer(const char *pointer, const char *token) {
    wd_text text = {0};
    wd_text_append(&text, pointer);
    wd_text_append(&text, "/");
    for (const char *t = token; *t != '\0'; t++) {
        wd_text_append(&text, *t == '~' ? "~0" : *t == '/' ? "~1" : (char[2]){*t, '\0'});
    }
    return wd_text_str(&text);
}

/* Writes the value at `pointer` of `json` again, through the typed readers. */
static wd_status copy(const char *json, const char *pointer, wd_json *out) {
    switch (wd_get_kind(json, pointer)) {
    case WD_JSON_MISSING:
        return wd_fail("copy: missing");
    case WD_JSON_NULL:
        wd_json_null(out);
        return WD_OK;
    case WD_JSON_BOOL: {
        bool value;
        WD_TRY(wd_get_bool(json, pointer, &value));
        wd_json_bool(out, value);
        return WD_OK;
    }
    case WD_JSON_NUMBER: {
        double value;
        WD_TRY(wd_get_number(json, pointer, &value));
        wd_json_number(out, value);
        return WD_OK;
    }
    case WD_JSON_STRING: {
        const char *value;
        WD_TRY(wd_get_string(json, pointer, &value));
        wd_json_string(out, value);
        return WD_OK;
    }
    case WD_JSON_ARRAY: {
        size_t n;
        WD_TRY(wd_get_length(json, pointer, &n));
        wd_json_begin_array(out);
        for (size_t i = 0; i < n; i++) {
            WD_TRY(copy(json, child_pointer(pointer, wd_format("%zu", i)), out));
        }
        wd_json_end_array(out);
        return WD_OK;
    }
    case WD_JSON_OBJECT: {
        size_t n;
        WD_TRY(wd_get_length(json, pointer, &n));
        wd_json_begin_object(out);
        for (size_t i = 0; i < n; i++) {
            const char *key;
            WD_TRY(wd_get_key(json, pointer, i, &key));
            wd_json_key(out, key);
            WD_TRY(copy(json, child_pointer(pointer, key), out));
        }
        wd_json_end_object(out);
        return WD_OK;
    }
    }
    return wd_fail("copy: unknown kind");
}

static const char *const kinds[] = {"missing", "null",  "bool",  "number",
                                    "string",  "array", "object"};

static wd_status lookups(const char *input, wd_json *out) {
    size_t n;
    WD_TRY(wd_get_length(input, "/lookups", &n));
    wd_json_begin_array(out);
    for (size_t i = 0; i < n; i++) {
        const char *json;
        const char *pointer;
        WD_TRY(wd_get_string(input, wd_format("/lookups/%zu/json", i), &json));
        WD_TRY(wd_get_string(input, wd_format("/lookups/%zu/pointer", i), &pointer));
        wd_json_begin_object(out);
        wd_json_key(out, "kind");
        wd_json_string(out, kinds[wd_get_kind(json, pointer)]);
        const char *raw;
        wd_status read = wd_get_raw(json, pointer, &raw);
        wd_json_key(out, "raw");
        if (read == WD_OK) {
            wd_json_string(out, raw);
        } else {
            wd_json_null(out);
        }
        wd_json_key(out, "error");
        if (read == WD_OK) {
            wd_json_null(out);
        } else {
            wd_json_string(out, wd_error());
        }
        wd_json_end_object(out);
    }
    wd_json_end_array(out);
    return WD_OK;
}

static wd_status numbers(const char *input, wd_json *out) {
    size_t n;
    WD_TRY(wd_get_length(input, "/numbers", &n));
    wd_json_begin_array(out);
    for (size_t i = 0; i < n; i++) {
        double value;
        WD_TRY(wd_get_number(input, wd_format("/numbers/%zu", i), &value));
        wd_json_begin_object(out);
        wd_json_key(out, "g");
        wd_json_string(out, wd_format("%g", value));
        wd_json_key(out, "f2");
        wd_json_string(out, wd_format("%.2f", value));
        wd_json_key(out, "f0");
        wd_json_string(out, wd_format("%.0f", value));
        wd_json_end_object(out);
    }
    wd_json_end_array(out);
    return WD_OK;
}

/* Each text of /texts read as a JSON number, and written with %g. */
static wd_status parsed(const char *input, wd_json *out) {
    size_t n;
    WD_TRY(wd_get_length(input, "/texts", &n));
    wd_json_begin_array(out);
    for (size_t i = 0; i < n; i++) {
        const char *text;
        double value;
        WD_TRY(wd_get_string(input, wd_format("/texts/%zu", i), &text));
        WD_TRY(wd_get_number(text, "", &value));
        wd_json_string(out, wd_format("%g", value));
    }
    wd_json_end_array(out);
    return WD_OK;
}

static void formats(wd_json *out) {
    wd_json_begin_array(out);
    wd_json_string(out, wd_format("%d %i %d", 0, -42, 2147483647));
    wd_json_string(out, wd_format("%u %lld %llu", 4294967295u, -9223372036854775807LL - 1,
                                  18446744073709551615ULL));
    wd_json_string(out, wd_format("%zu %x %llx", (size_t)65536, 255u, 0xdeadbeefcafeULL));
    wd_json_string(out, wd_format("%s|%c|%%|%f", "text", 'c', 1.5));
    wd_json_string(out, wd_format("%g %g %g", 0.0 / 0.0, 1.0 / 0.0, -1.0 / 0.0));
    wd_text text = {0};
    wd_text_appendf(&text, "%s=%g", "pi", 3.141592653589793);
    wd_text_append(&text, "; ");
    wd_text_append_n(&text, "truncated", 5);
    wd_json_string(out, wd_text_str(&text));
    wd_json_end_array(out);
}

static wd_status step(void) {
    const char *input;
    WD_TRY(wd_input(&input));
    wd_json out = {0};
    wd_json_begin_object(&out);
    wd_json_key(&out, "values");
    WD_TRY(copy(input, "/values", &out));
    wd_json_key(&out, "lookups");
    WD_TRY(lookups(input, &out));
    wd_json_key(&out, "numbers");
    WD_TRY(numbers(input, &out));
    wd_json_key(&out, "parsed");
    WD_TRY(parsed(input, &out));
    wd_json_key(&out, "formats");
    formats(&out);
    wd_json_end_object(&out);
    WD_TRY(wd_transition("done"));
    return wd_finish(wd_json_text(&out));
}

WARDEN_AGENT(step)
