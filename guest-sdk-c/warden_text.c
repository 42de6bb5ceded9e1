/*
 * warden_text.c: growing text and wd_format for the C guest SDK (warden.h says what each
 * function promises; numbers are converted by warden_number.c).
 *
 * The invariant kept here: text grows in step memory and is always NUL-terminated, and
 * formatting reads exactly the arguments its conversions name.
 */
#include "warden_internal.h"

/* ---------------------------------------------------------------------------------- */
/* Growing text. */

void wd_text_append_n(wd_text *text, const char *s, size_t n) {
    if (text->len + n + 1 > text->cap) {
        size_t cap = text->cap < 64 ? 64 : text->cap;
        while (cap < text->len + n + 1) {
            cap *= 2;
        }
        char *data = wd_alloc(cap);
        if (text->len > 0) {
            memcpy(data, text->data, text->len);
        }
        text->data = data;
        text->cap = cap;
    }
    memcpy(text->data + text->len, s, n);
    text->len += n;
    text->data[text->len] = '\0';
}

void wd_text_append(wd_text *text, const char *s) {
    wd_text_append_n(text, s, wd_strlen(s));
}

void wdi_append_char(wd_text *text, char c) {
    if (text->len + 2 <= text->cap) {
        text->data[text->len++] = c;
        text->data[text->len] = '\0';
        return;
    }
    wd_text_append_n(text, &c, 1);
}

const char *wd_text_str(const wd_text *text) {
    return text->len > 0 ? text->data : "";
}

/* ---------------------------------------------------------------------------------- */
/* Formatting. */

static void vappendf(wd_text *text, const char *format, va_list args) {
    for (const char *f = format; *f != '\0'; f++) {
        if (*f != '%') {
            wdi_append_char(text, *f);
            continue;
        }
        const char *spec = f++;
        int decimals = -1;
        if (*f == '.') {
            decimals = 0;
            for (f++; *f >= '0' && *f <= '9'; f++) {
                decimals = decimals * 10 + (*f - '0');
            }
        }
        int longs = 0;
        while (*f == 'l' && longs < 2) {
            longs++;
            f++;
        }
        bool size = *f == 'z';
        if (size) {
            f++;
        }
        switch (*f) {
        case 's': {
            const char *s = va_arg(args, const char *);
            wd_text_append(text, s != NULL ? s : "(null)");
            break;
        }
        case 'c':
            wdi_append_char(text, (char)va_arg(args, int));
            break;
        case 'd':
        case 'i':
            wdi_append_int(text, longs == 2 ? va_arg(args, long long)
                             : longs == 1 ? va_arg(args, long)
                                          : va_arg(args, int));
            break;
        case 'u':
        case 'x': {
            uint64_t value = size        ? va_arg(args, size_t)
                             : longs == 2 ? va_arg(args, unsigned long long)
                             : longs == 1 ? va_arg(args, unsigned long)
                                          : va_arg(args, unsigned);
            if (*f == 'u') {
                wdi_append_uint(text, value);
                break;
            }
            char digits[16];
            int n = 0;
            do {
                digits[n++] = "0123456789abcdef"[value & 15];
                value >>= 4;
            } while (value > 0);
            while (n > 0) {
                wdi_append_char(text, digits[--n]);
            }
            break;
        }
        case 'g':
            wdi_append_double(text, va_arg(args, double));
            break;
        case 'f':
            wdi_append_fixed(text, va_arg(args, double), decimals < 0 ? 6 : decimals);
            break;
        case '%':
            wdi_append_char(text, '%');
            break;
        default:
            /* Not a conversion this formatter knows: written as it is. */
            wd_text_append_n(text, spec, (size_t)(f - spec) + (*f != '\0'));
            if (*f == '\0') {
                return;
            }
        }
    }
}

const char *wd_vformat(const char *format, va_list args) {
    wd_text text = {0};
    vappendf(&text, format, args);
    return wd_text_str(&text);
}

const char *wd_format(const char *format, ...) {
    va_list args;
    va_start(args, format);
    const char *text = wd_vformat(format, args);
    va_end(args);
    return text;
}

void wd_text_appendf(wd_text *text, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vappendf(text, format, args);
    va_end(args);
}

