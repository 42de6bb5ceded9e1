/*
 * warden_internal.h: what the SDK's own files share; not for agents (use warden.h).
 */
#ifndef WARDEN_INTERNAL_H
#define WARDEN_INTERNAL_H

#include "warden.h"

/* Appends one character, an unsigned or signed integer, or a double as %g writes it. */
void wdi_append_char(wd_text *text, char c);
void wdi_append_uint(wd_text *text, uint64_t value);
void wdi_append_int(wd_text *text, int64_t value);
void wdi_append_double(wd_text *text, double value);

/* Appends `value` with exactly `decimals` decimals (at most 17), rounded to nearest, a
 * tie to even. */
void wdi_append_fixed(wd_text *text, double value, int decimals);

/* Whether `value` is neither NaN nor infinite. */
bool wdi_is_finite(double value);

/* Parses the JSON number at [at, end): returns the end of its text, or NULL if there is
 * no number there. */
const char *wdi_parse_number(const char *at, const char *end, double *out);

/* Records `message` (kept until the step ends) as wd_error() and returns `status`. */
wd_status wdi_fail(wd_status status, const char *message);

#endif /* WARDEN_INTERNAL_H */
