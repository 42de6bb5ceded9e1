/*
 * warden_number.c: numbers to and from decimal text, for the C guest SDK's JSON and
 * wd_format.
 *
 * The invariant kept here: a double is written with the fewest significant digits that
 * read back as the same double, as serde_json writes it, and decimal text is read as the
 * double nearest to it, so that a number an agent reads and writes again is the same
 * number (tests/c_guest.rs holds this against serde_json and Rust's parser). Both
 * directions scale by powers of ten in double-double arithmetic (about 104 bits,
 * Dekker's algorithms, no fused multiply-add), which rounds correctly except within
 * about 10^-31 (relative) of a halfway point; subnormals are rounded once, to their own
 * unit. All of it is plain WebAssembly floating point, so a run gives the same digits
 * every time.
 */
#include "warden_internal.h"

/* An unevaluated sum hi + lo with |lo| <= ulp(hi) / 2. */
typedef struct dd {
    double hi;
    double lo;
} dd;

static dd quick_two_sum(double a, double b) {
    double s = a + b;
    dd r = {s, b - (s - a)};
    return r;
}

static dd two_sum(double a, double b) {
    double s = a + b;
    double v = s - a;
    dd r = {s, (a - (s - v)) + (b - v)};
    return r;
}

/* a = hi + lo, each of at most 26 significant bits. */
static dd split(double a) {
    double c = 134217729.0 * a; /* 2^27 + 1 */
    double hi = c - (c - a);
    dd r = {hi, a - hi};
    return r;
}

/* a * b exactly, as a rounded product and its error. */
static dd two_prod(double a, double b) {
    double p = a * b;
    dd x = split(a);
    dd y = split(b);
    dd r = {p, ((x.hi * y.hi - p) + x.hi * y.lo + x.lo * y.hi) + x.lo * y.lo};
    return r;
}

static dd dd_mul(dd a, dd b) {
    dd p = two_prod(a.hi, b.hi);
    return quick_two_sum(p.hi, p.lo + (a.hi * b.lo + a.lo * b.hi));
}

static dd dd_sub(dd a, dd b) {
    dd s = two_sum(a.hi, -b.hi);
    return quick_two_sum(s.hi, s.lo + (a.lo - b.lo));
}

static dd dd_div(dd a, dd b) {
    double q1 = a.hi / b.hi;
    dd r = dd_sub(a, dd_mul(b, (dd){q1, 0.0}));
    double q2 = r.hi / b.hi;
    r = dd_sub(r, dd_mul(b, (dd){q2, 0.0}));
    double q3 = r.hi / b.hi;
    dd q = quick_two_sum(q1, q2);
    dd s = two_sum(q.hi, q3);
    return quick_two_sum(s.hi, s.lo + q.lo);
}

/* 5^k for 0 <= k <= 22: each one exactly representable as a double. */
static const double exact_pow5[23] = {
    1.0,           5.0,            25.0,           125.0,           625.0,
    3125.0,        15625.0,        78125.0,        390625.0,        1953125.0,
    9765625.0,     48828125.0,     244140625.0,    1220703125.0,    6103515625.0,
    30517578125.0, 152587890625.0, 762939453125.0, 3814697265625.0, 19073486328125.0,
    95367431640625.0, 476837158203125.0, 2384185791015625.0,
};

static dd pow5(int k) {
    dd r = {1.0, 0.0};
    for (; k > 22; k -= 22) {
        r = dd_mul(r, (dd){exact_pow5[22], 0.0});
    }
    return dd_mul(r, (dd){exact_pow5[k], 0.0});
}

/* 2^k for -1022 <= k <= 1023, exactly. */
static double pow2(int k) {
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* x * 2^k: exact unless the result is subnormal. */
static double scale2(double x, int k) {
    for (; k > 1000; k -= 1000) {
        x *= pow2(1000);
    }
    for (; k < -1000; k += 1000) {
        x *= pow2(-1000);
    }
    return x * pow2(k);
}

/* x * 5^k, for |k| up to about 350. */
static dd scale5(dd x, int k) {
    return k >= 0 ? dd_mul(x, pow5(k)) : dd_div(x, pow5(-k));
}

/* x * 10^k = x * 5^k * 2^k, for |k| up to about 350. */
static dd scale10(dd x, int k) {
    dd r = scale5(x, k);
    r.hi = scale2(r.hi, k);
    r.lo = scale2(r.lo, k);
    return r;
}

/* The integer nearest to x (0 <= x < 2^63); a tie (as far as 104 bits tell) goes to the
 * even one, as printf does. x.lo counts however small it is next to x.hi's fraction. */
static uint64_t round_dd(dd x) {
    double whole = __builtin_floor(x.hi);
    /* x - whole = t.hi + t.lo exactly, in about [-0.5, 1.5). */
    dd t = two_sum(x.hi - whole, x.lo);
    double below = __builtin_floor(t.hi);
    /* The sign of t - (below + 0.5): t.hi's when they differ (t.lo is too small to
     * change it), t.lo's when they are equal. */
    double d = t.hi - (below + 0.5);
    bool tie = d == 0.0 && t.lo == 0.0;
    uint64_t n = (uint64_t)((int64_t)whole + (int64_t)below);
    bool up = d > 0.0 || (d == 0.0 && t.lo > 0.0) || (tie && (n & 1) == 1);
    return n + up;
}

bool wdi_is_finite(double value) {
    return value == value && value - value == 0.0;
}

void wdi_append_uint(wd_text *text, uint64_t value) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    while (n > 0) {
        wdi_append_char(text, digits[--n]);
    }
}

void wdi_append_int(wd_text *text, int64_t value) {
    if (value < 0) {
        wdi_append_char(text, '-');
        wdi_append_uint(text, (uint64_t)0 - (uint64_t)value);
    } else {
        wdi_append_uint(text, (uint64_t)value);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Reading. */

const char *wdi_parse_number(const char *at, const char *end, double *out) {
    const char *p = at;
    bool negative = p < end && *p == '-';
    if (negative) {
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') {
        return NULL;
    }
    /* The first 31 significant digits, exactly (19 in `high`, 12 more in `low`); later
     * ones move the exponent, and whether any of them is not 0 puts the value just above
     * the digits kept, not on them. So the double found is the nearest one unless the
     * text lies within about 10^-31 of a halfway point between two doubles. */
    uint64_t high = 0;
    uint64_t low = 0;
    int digits = 0;
    int low_digits = 0;
    int exponent = 0;
    bool dropped = false;
    bool fraction = false;
    for (;;) {
        if (p < end && *p == '.' && !fraction) {
            fraction = true;
            p++;
            if (p >= end || *p < '0' || *p > '9') {
                return NULL;
            }
        }
        if (p >= end || *p < '0' || *p > '9') {
            break;
        }
        uint64_t digit = (uint64_t)(*p++ - '0');
        if (digits < 19) {
            high = high * 10 + digit;
            digits += high > 0;
        } else if (low_digits < 12) {
            low = low * 10 + digit;
            low_digits++;
        } else {
            dropped |= digit != 0;
            exponent += fraction ? 0 : 1;
            continue;
        }
        exponent -= fraction ? 1 : 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool minus = p < end && *p == '-';
        if (p < end && (*p == '-' || *p == '+')) {
            p++;
        }
        if (p >= end || *p < '0' || *p > '9') {
            return NULL;
        }
        int e = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (e < 100000) {
                e = e * 10 + (*p - '0');
            }
        }
        exponent += minus ? -e : e;
    }
    double value = 0.0;
    if (high != 0) {
        /* The value is high.low * 10^exponent, with digits + low_digits digits. */
        if (digits + low_digits + exponent > 310) {
            value = pow2(1023) * 2.0; /* infinity: beyond every double */
        } else if (digits + low_digits + exponent >= -343) {
            double hi = (double)high;
            dd m = quick_two_sum(hi, (double)(int64_t)(high - (uint64_t)hi));
            if (low_digits > 0) {
                m = dd_mul(m, pow5(low_digits));
                m.hi = scale2(m.hi, low_digits);
                m.lo = scale2(m.lo, low_digits);
                m = dd_sub(m, (dd){-((double)low + (dropped ? 0.25 : 0.0)), 0.0});
            }
            dd r = scale5(m, exponent);
            value = scale2(r.hi, exponent);
            if (value <= pow2(-1022)) {
                /* A subnormal (or zero, or the least normal double, which a subnormal
                 * just below rounds to at 53 bits): rounded once, to a whole number of
                 * its unit 2^-1074, instead of to 53 bits and then again to fewer. */
                dd units = {scale2(r.hi, exponent + 1074), scale2(r.lo, exponent + 1074)};
                value = (double)round_dd(units) * 0x1p-1074;
            }
        }
    }
    *out = negative ? -value : value;
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* Writing. */

/* The `precision` significant digits of `value` (finite, > 0), trailing zeros dropped,
 * and the decimal exponent of the first: value ~ d.ddd * 10^exponent. */
static int decimal_digits(double value, int precision, char *digits, int *exponent) {
    /* Subnormals are scaled into the normal range first, and the largest doubles down
     * from the top of it, so that no step below overflows (exactly, by powers of two). */
    int binary_shift = 0;
    if (value < pow2(-960)) {
        value *= pow2(128);
        binary_shift = 128;
    } else if (value >= pow2(960)) {
        value *= pow2(-128);
        binary_shift = -128;
    }
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    int binary = (int)((bits >> 52) & 0x7ff) - 1023 - binary_shift;
    /* floor(binary * log10(2)), within one of the decimal exponent. */
    int e = (int)(((int64_t)binary * 78913) >> 18);
    uint64_t low = 1;
    for (int i = 1; i < precision; i++) {
        low *= 10;
    }
    uint64_t high = low * 10;
    uint64_t scaled = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        dd x = {value, 0.0};
        dd s = scale10(x, precision - 1 - e);
        s.hi = scale2(s.hi, -binary_shift);
        s.lo = scale2(s.lo, -binary_shift);
        scaled = round_dd(s);
        if (scaled >= high) {
            e++;
        } else if (scaled < low) {
            e--;
        } else {
            break;
        }
    }
    char reversed[20];
    int n = 0;
    while (scaled > 0 && n < 20) {
        reversed[n++] = (char)('0' + scaled % 10);
        scaled /= 10;
    }
    int skip = 0;
    while (skip < n - 1 && reversed[skip] == '0') {
        skip++;
    }
    int count = 0;
    for (int i = n - 1; i >= skip; i--) {
        digits[count++] = reversed[i];
    }
    *exponent = e;
    return count;
}

/* Appends `digits` (count of them, the value d.ddd * 10^exponent) as serde_json writes a
 * double, so that a C agent's JSON is a Rust agent's: plainly from 1e-5 to below 1e16,
 * otherwise as d.ddde±x (1e+16, 1.5e-7). */
static void append_decimal(wd_text *text, const char *digits, int count, int exponent) {
    if (exponent < -5 || exponent >= 16) {
        wdi_append_char(text, digits[0]);
        if (count > 1) {
            wdi_append_char(text, '.');
            wd_text_append_n(text, digits + 1, (size_t)(count - 1));
        }
        wd_text_append(text, exponent < 0 ? "e" : "e+");
        wdi_append_int(text, exponent);
    } else if (exponent < 0) {
        wd_text_append(text, "0.");
        for (int i = -1; i > exponent; i--) {
            wdi_append_char(text, '0');
        }
        wd_text_append_n(text, digits, (size_t)count);
    } else {
        for (int i = 0; i <= exponent || i < count; i++) {
            if (i == exponent + 1) {
                wdi_append_char(text, '.');
            }
            wdi_append_char(text, i < count ? digits[i] : '0');
        }
    }
}

void wdi_append_double(wd_text *text, double value) {
    if (value != value) {
        wd_text_append(text, "NaN");
        return;
    }
    if (value < 0 || (value == 0.0 && 1.0 / value < 0)) {
        wdi_append_char(text, '-');
        value = -value;
    }
    if (value - value != 0.0) {
        wd_text_append(text, "inf");
        return;
    }
    if (value == 0.0) {
        wdi_append_char(text, '0');
        return;
    }
    char digits[20];
    int count = 0;
    int exponent = 0;
    /* The shortest digits that read back as `value`, as serde_json finds them. For
     * a normal double, 15 digits rounded are the shortest ones padded with zeros whenever
     * 15 or fewer suffice (no two decimals of 15 digits are the same double), so the
     * search starts there; a subnormal has fewer significant bits, and may need fewer. */
    int first = value < pow2(-1022) ? 1 : 15;
    for (int precision = first; precision <= 17; precision++) {
        count = decimal_digits(value, precision, digits, &exponent);
        wd_text probe = {0};
        append_decimal(&probe, digits, count, exponent);
        double back = 0.0;
        const char *start = wd_text_str(&probe);
        if (wdi_parse_number(start, start + probe.len, &back) != NULL && back == value) {
            break;
        }
    }
    append_decimal(text, digits, count, exponent);
}

void wdi_append_fixed(wd_text *text, double value, int decimals) {
    if (!wdi_is_finite(value)) {
        wdi_append_double(text, value);
        return;
    }
    if (decimals > 17) {
        decimals = 17;
    }
    double magnitude = value < 0 ? -value : value;
    dd scaled = scale10((dd){magnitude, 0.0}, decimals);
    if (!(scaled.hi < 9.2e18)) { /* also NaN, from the largest doubles */
        wdi_append_double(text, value);
        return;
    }
    uint64_t units = round_dd(scaled);
    uint64_t unit = 1;
    for (int i = 0; i < decimals; i++) {
        unit *= 10;
    }
    if (value < 0 || (value == 0.0 && 1.0 / value < 0)) {
        wdi_append_char(text, '-');
    }
    wdi_append_uint(text, units / unit);
    if (decimals > 0) {
        wdi_append_char(text, '.');
        uint64_t fraction = units % unit;
        for (uint64_t digit = unit / 10; digit > 0; digit /= 10) {
            wdi_append_char(text, (char)('0' + (fraction / digit) % 10));
        }
    }
}
