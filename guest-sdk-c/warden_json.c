/*
 * warden_json.c: reading and writing JSON for the C guest SDK (warden.h says what each
 * function promises).
 *
 * The invariants kept here: reading never goes outside the text it is given, and text
 * that is not JSON (or nests deeper than 64 levels) is an error, never a guess; what is
 * written is JSON Warden accepts (strings escaped, no NaN or infinity). Both work
 * without recursion, so no input can exhaust the agent's stack.
 */
#include "warden_internal.h"

/* ---------------------------------------------------------------------------------- */
/* Reading JSON: validating the text, then walking to the value a pointer names. */

#define MAX_DEPTH 64

static uint64_t bit(unsigned depth) {
    return (uint64_t)1 << depth;
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* The four hex digits at p (p + 4 <= end), or -1. */
static int32_t hex4(const char *p) {
    int32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(p[i]);
        if (digit < 0) {
            return -1;
        }
        value = value * 16 + digit;
    }
    return value;
}

/* The string starting at the quote `p`: returns the end of its text (after the closing
 * quote), or NULL. */
static const char *skip_string(const char *p, const char *end) {
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            return p + 1;
        }
        if (c < 0x20) {
            return NULL;
        }
        if (c == '\\') {
            if (++p >= end) {
                return NULL;
            }
            if (*p == 'u') {
                if (end - p < 5 || hex4(p + 1) < 0) {
                    return NULL;
                }
                p += 4;
            } else if (*p != '"' && *p != '\\' && *p != '/' && *p != 'b' && *p != 'f' &&
                       *p != 'n' && *p != 'r' && *p != 't') {
                return NULL;
            }
        }
    }
    return NULL;
}

static void put_utf8(char **out, uint32_t code) {
    char *o = *out;
    if (code < 0x80) {
        *o++ = (char)code;
    } else if (code < 0x800) {
        *o++ = (char)(0xc0 | (code >> 6));
        *o++ = (char)(0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
        *o++ = (char)(0xe0 | (code >> 12));
        *o++ = (char)(0x80 | ((code >> 6) & 0x3f));
        *o++ = (char)(0x80 | (code & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (code >> 18));
        *o++ = (char)(0x80 | ((code >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((code >> 6) & 0x3f));
        *o++ = (char)(0x80 | (code & 0x3f));
    }
    *out = o;
}

/* The valid string [at, end) (quotes included), unescaped into scratch memory: never
 * longer than its text. */
static const char *decode_string(const char *at, const char *end) {
    char *out = wd_alloc((size_t)(end - at));
    char *o = out;
    for (const char *p = at + 1; p < end - 1; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            uint32_t code = (uint32_t)hex4(p + 1);
            p += 4;
            if (code >= 0xd800 && code < 0xdc00 && end - 1 - p >= 7 && p[1] == '\\' &&
                p[2] == 'u') {
                int32_t low = hex4(p + 3);
                if (low >= 0xdc00 && low < 0xe000) {
                    code = 0x10000 + ((code - 0xd800) << 10) + ((uint32_t)low - 0xdc00);
                    p += 6;
                }
            }
            /* A lone surrogate is not a character: U+FFFD stands for it. */
            put_utf8(&o, code >= 0xd800 && code < 0xe000 ? 0xfffd : code);
            break;
        }
        default:
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static const char *skip_literal(const char *p, const char *end, const char *word) {
    for (; *word != '\0'; word++, p++) {
        if (p >= end || *p != *word) {
            return NULL;
        }
    }
    return p;
}

/* A key and its colon, from the quote `p`: returns what follows the colon, or NULL. */
static const char *skip_key(const char *p, const char *end) {
    if (p >= end || *p != '"') {
        return NULL;
    }
    p = skip_ws(skip_string(p, end), end);
    return p != NULL && p < end && *p == ':' ? p + 1 : NULL;
}

static const char *skip_scalar(const char *p, const char *end) {
    double ignored;
    switch (*p) {
    case '"':
        return skip_string(p, end);
    case 't':
        return skip_literal(p, end, "true");
    case 'f':
        return skip_literal(p, end, "false");
    case 'n':
        return skip_literal(p, end, "null");
    default:
        return wdi_parse_number(p, end, &ignored);
    }
}

/* The value starting at or after `p`: returns the end of its text, or NULL if it is not
 * JSON. Containers are followed with a stack of one bit per level (object or array). */
static const char *skip_value(const char *p, const char *end) {
    uint64_t objects = 0;
    unsigned depth = 0;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end) {
            return NULL;
        }
        if (*p == '{' || *p == '[') {
            bool object = *p == '{';
            if (depth == MAX_DEPTH) {
                return NULL;
            }
            objects = object ? objects | bit(depth) : objects & ~bit(depth);
            depth++;
            p = skip_ws(p + 1, end);
            if (p < end && *p == (object ? '}' : ']')) {
                p++;
                depth--;
            } else {
                if (object && (p = skip_key(p, end)) == NULL) {
                    return NULL;
                }
                continue;
            }
        } else if ((p = skip_scalar(p, end)) == NULL) {
            return NULL;
        }
        /* After a value: close the containers it ends, or go on to the next element. */
        for (;;) {
            if (depth == 0) {
                return p;
            }
            bool object = (objects & bit(depth - 1)) != 0;
            p = skip_ws(p, end);
            if (p >= end) {
                return NULL;
            }
            if (*p == (object ? '}' : ']')) {
                p++;
                depth--;
                continue;
            }
            if (*p != ',') {
                return NULL;
            }
            p = skip_ws(p + 1, end);
            if (object && (p = skip_key(p, end)) == NULL) {
                return NULL;
            }
            break;
        }
    }
}

/* Where a lookup ended. */
typedef enum lookup { FOUND, MISSING, NOT_JSON, NOT_A_POINTER } lookup;

/* The next reference token of `pointer` (which starts with '/'), unescaped (~1 is '/',
 * ~0 is '~'), into scratch memory; *rest is what follows it. */
static const char *next_token(const char *pointer, const char **rest) {
    const char *p = pointer + 1;
    size_t n = 0;
    while (p[n] != '\0' && p[n] != '/') {
        n++;
    }
    char *token = wd_alloc(n + 1);
    char *o = token;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
            *o++ = p[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            *o++ = p[i];
        }
    }
    *o = '\0';
    *rest = p + n;
    return token;
}

/* Whether the valid string [at, end) (quotes included) says `token`. */
static bool key_is(const char *at, const char *end, const char *token) {
    const char *p = at + 1;
    const char *t = token;
    for (; p < end - 1 && *p != '\\'; p++, t++) {
        if (*t != *p) {
            return false;
        }
    }
    if (p == end - 1) {
        return *t == '\0';
    }
    return wd_streq(decode_string(at, end), token);
}

/* The index an array token names, or -1 ("0", or digits not starting with 0). */
static int64_t index_of(const char *token) {
    if (token[0] == '\0' || (token[0] == '0' && token[1] != '\0')) {
        return -1;
    }
    int64_t index = 0;
    for (const char *t = token; *t != '\0'; t++) {
        if (*t < '0' || *t > '9' || index > 100000000) {
            return -1;
        }
        index = index * 10 + (*t - '0');
    }
    return index;
}

/* In the valid container at `p`, the member `token` (the last one if it is there twice,
 * as serde_json reads it) or element number `token`: its text in [*at, *end). */
static bool child(const char *p, const char *end, const char *token, const char **at,
                  const char **child_end) {
    bool object = *p == '{';
    int64_t wanted = object ? 0 : index_of(token);
    bool found = false;
    p = skip_ws(p + 1, end);
    if (*p == '}' || *p == ']' || wanted < 0) {
        return false;
    }
    for (int64_t i = 0;; i++) {
        bool match;
        if (object) {
            const char *key_end = skip_string(p, end);
            match = key_is(p, key_end, token);
            p = skip_ws(skip_ws(key_end, end) + 1, end);
        } else {
            match = i == wanted;
        }
        const char *value_end = skip_value(p, end);
        if (match) {
            *at = p;
            *child_end = value_end;
            found = true;
            if (!object) {
                return true;
            }
        }
        p = skip_ws(value_end, end);
        if (*p != ',') {
            return found;
        }
        p = skip_ws(p + 1, end);
    }
}

/* The value `pointer` names in `json`: its text in [*at, *end). */
static lookup find(const char *json, const char *pointer, const char **at, const char **end) {
    const char *text_end = json + wd_strlen(json);
    const char *value_end = skip_value(json, text_end);
    if (value_end == NULL || skip_ws(value_end, text_end) != text_end) {
        return NOT_JSON;
    }
    if (pointer[0] != '\0' && pointer[0] != '/') {
        return NOT_A_POINTER;
    }
    const char *p = skip_ws(json, text_end);
    const char *p_end = value_end;
    while (*pointer != '\0') {
        const char *token = next_token(pointer, &pointer);
        if ((*p != '{' && *p != '[') || !child(p, p_end, token, &p, &p_end)) {
            return MISSING;
        }
    }
    *at = p;
    *end = p_end;
    return FOUND;
}

static wd_json_kind kind_at(const char *p) {
    switch (*p) {
    case 'n':
        return WD_JSON_NULL;
    case 't':
    case 'f':
        return WD_JSON_BOOL;
    case '"':
        return WD_JSON_STRING;
    case '[':
        return WD_JSON_ARRAY;
    case '{':
        return WD_JSON_OBJECT;
    default:
        return WD_JSON_NUMBER;
    }
}

static const char *kind_name(wd_json_kind kind) {
    static const char *const names[] = {"missing", "null",   "a boolean", "a number",
                                        "a string", "an array", "an object"};
    return names[kind];
}

static const char *where(const char *pointer) {
    return pointer[0] == '\0' ? "the JSON value" : wd_format("`%s`", pointer);
}

/* Finds the value at `pointer` and checks it is of `kind` (WD_JSON_MISSING: any). */
static wd_status value_at(const char *json, const char *pointer, wd_json_kind kind,
                          const char **at, const char **end) {
    const char *message = NULL;
    switch (find(json, pointer, at, end)) {
    case FOUND:
        if (kind == WD_JSON_MISSING || kind_at(*at) == kind) {
            return WD_OK;
        }
        message = wd_format("%s is %s, not %s", where(pointer), kind_name(kind_at(*at)),
                            kind_name(kind));
        break;
    case MISSING:
        message = wd_format("%s is missing", where(pointer));
        break;
    case NOT_JSON:
        message = wd_format("cannot read %s: the text is not JSON", where(pointer));
        break;
    case NOT_A_POINTER:
        message = wd_format("`%s` is not a JSON pointer (it must start with /)", pointer);
        break;
    }
    return wdi_fail(WD_DATA_ERROR, message);
}

wd_json_kind wd_get_kind(const char *json, const char *pointer) {
    const char *at;
    const char *end;
    return find(json, pointer, &at, &end) == FOUND ? kind_at(at) : WD_JSON_MISSING;
}

wd_status wd_get_number(const char *json, const char *pointer, double *out) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_NUMBER, &at, &end));
    wdi_parse_number(at, end, out);
    return WD_OK;
}

wd_status wd_get_uint(const char *json, const char *pointer, uint64_t *out) {
    double value;
    WD_TRY(wd_get_number(json, pointer, &value));
    if (!(value >= 0.0 && value <= 9007199254740992.0) || value != (double)(uint64_t)value) {
        return wdi_fail(WD_DATA_ERROR, wd_format("%s is %g, not a whole number from 0 to 2^53",
                                                 where(pointer), value));
    }
    *out = (uint64_t)value;
    return WD_OK;
}

wd_status wd_get_string(const char *json, const char *pointer, const char **out) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_STRING, &at, &end));
    *out = decode_string(at, end);
    return WD_OK;
}

wd_status wd_get_bool(const char *json, const char *pointer, bool *out) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_BOOL, &at, &end));
    *out = *at == 't';
    return WD_OK;
}

wd_status wd_get_length(const char *json, const char *pointer, size_t *out) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_MISSING, &at, &end));
    wd_json_kind kind = kind_at(at);
    if (kind != WD_JSON_ARRAY && kind != WD_JSON_OBJECT) {
        return wdi_fail(WD_DATA_ERROR, wd_format("%s is %s, not an array or an object",
                                                 where(pointer), kind_name(kind)));
    }
    size_t n = 0;
    const char *p = skip_ws(at + 1, end);
    while (*p != '}' && *p != ']') {
        if (kind == WD_JSON_OBJECT) {
            p = skip_key(p, end);
        }
        p = skip_ws(skip_value(p, end), end);
        n++;
        if (*p == ',') {
            p = skip_ws(p + 1, end);
        }
    }
    *out = n;
    return WD_OK;
}

wd_status wd_get_key(const char *json, const char *pointer, size_t index, const char **key) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_OBJECT, &at, &end));
    const char *p = skip_ws(at + 1, end);
    for (size_t i = 0; *p == '"'; i++) {
        const char *key_end = skip_string(p, end);
        if (i == index) {
            *key = decode_string(p, key_end);
            return WD_OK;
        }
        p = skip_ws(skip_value(skip_key(p, end), end), end);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
        }
    }
    return wdi_fail(WD_DATA_ERROR,
                    wd_format("%s has no member number %zu", where(pointer), index));
}

wd_status wd_get_raw(const char *json, const char *pointer, const char **out) {
    const char *at;
    const char *end;
    WD_TRY(value_at(json, pointer, WD_JSON_MISSING, &at, &end));
    size_t n = (size_t)(end - at);
    char *copy = wd_alloc(n + 1);
    memcpy(copy, at, n);
    copy[n] = '\0';
    *out = copy;
    return WD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Writing JSON. */

/* Before a value: a comma if its array or object already has one. */
static void before_value(wd_json *json) {
    if (json->after_key) {
        json->after_key = false;
        return;
    }
    if (json->depth == 0) {
        return;
    }
    uint64_t bit = (uint64_t)1 << (json->depth - 1);
    if (json->started & bit) {
        wdi_append_char(&json->text, ',');
    }
    json->started |= bit;
}

static void open_container(wd_json *json, char bracket) {
    before_value(json);
    /* Deeper than 64 levels is a bug of the agent's, and the same in every run. */
    if (json->depth >= 64) {
        __builtin_trap();
    }
    json->depth++;
    json->started &= ~((uint64_t)1 << (json->depth - 1));
    wdi_append_char(&json->text, bracket);
}

static void close_container(wd_json *json, char bracket) {
    if (json->depth == 0) {
        __builtin_trap();
    }
    json->depth--;
    wdi_append_char(&json->text, bracket);
}

void wd_json_begin_object(wd_json *json) {
    open_container(json, '{');
}

void wd_json_end_object(wd_json *json) {
    close_container(json, '}');
}

void wd_json_begin_array(wd_json *json) {
    open_container(json, '[');
}

void wd_json_end_array(wd_json *json) {
    close_container(json, ']');
}

static void append_quoted(wd_text *text, const char *value) {
    wdi_append_char(text, '"');
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        switch (*p) {
        case '"':
            wd_text_append(text, "\\\"");
            break;
        case '\\':
            wd_text_append(text, "\\\\");
            break;
        case '\n':
            wd_text_append(text, "\\n");
            break;
        case '\r':
            wd_text_append(text, "\\r");
            break;
        case '\t':
            wd_text_append(text, "\\t");
            break;
        default:
            if (*p < 0x20) {
                wd_text_append(text, "\\u00");
                wdi_append_char(text, "0123456789abcdef"[*p >> 4]);
                wdi_append_char(text, "0123456789abcdef"[*p & 15]);
            } else {
                wdi_append_char(text, (char)*p);
            }
        }
    }
    wdi_append_char(text, '"');
}

void wd_json_key(wd_json *json, const char *key) {
    before_value(json);
    append_quoted(&json->text, key);
    wdi_append_char(&json->text, ':');
    json->after_key = true;
}

void wd_json_string(wd_json *json, const char *value) {
    before_value(json);
    append_quoted(&json->text, value);
}

void wd_json_number(wd_json *json, double value) {
    before_value(json);
    if (!wdi_is_finite(value)) {
        wd_text_append(&json->text, "null");
        return;
    }
    size_t start = json->text.len;
    wdi_append_double(&json->text, value);
    /* serde_json marks a whole double as one (8000.0, -0.0; not 1e16), so that a Rust
     * agent sending the same number sends the same bytes. */
    for (size_t i = start; i < json->text.len; i++) {
        if (json->text.data[i] == '.' || json->text.data[i] == 'e') {
            return;
        }
    }
    wd_text_append(&json->text, ".0");
}

void wd_json_int(wd_json *json, int64_t value) {
    before_value(json);
    wdi_append_int(&json->text, value);
}

void wd_json_uint(wd_json *json, uint64_t value) {
    before_value(json);
    wdi_append_uint(&json->text, value);
}

void wd_json_bool(wd_json *json, bool value) {
    before_value(json);
    wd_text_append(&json->text, value ? "true" : "false");
}

void wd_json_null(wd_json *json) {
    before_value(json);
    wd_text_append(&json->text, "null");
}

void wd_json_raw(wd_json *json, const char *value) {
    before_value(json);
    wd_text_append(&json->text, value);
}

const char *wd_json_text(const wd_json *json) {
    return wd_text_str(&json->text);
}
