/* fuzz_dicom_match: libFuzzer entry point for C-FIND matching (dicom/match.h) and character
 * set conversion (dicom/charset.h).
 * Input: byte 0 % 6 picks the VR (TEXT, PN, UI, DA, TM, DT); the rest is the key, then the
 * first NUL, then the stored value (no NUL: all key, empty value). Key and value are copied
 * to exact-size heap buffers so a read past either is an ASan finding.
 * Properties: compile is deterministic (same result, reason and struct twice); a refusal is
 * HDX_E_INVAL with a reason and a zeroed struct; eval is 0 or 1; a universal key matches the
 * value; a key without wildcards (TEXT, PN, UI without a list, DA/TM/DT without '-') matches
 * itself; "*" (TEXT, PN) matches every value. The value is converted under eight sets (the
 * default, ISO_IR 100, 144, 192, GB18030, Japanese and Korean ISO 2022) into buffers of
 * exactly cap bytes: output stays within cap, is NUL-terminated, valid UTF-8, and UTF-8 ->
 * set -> UTF-8 gives it back whenever the conversion to the set succeeds; the value read as
 * UTF-8 round-trips the same way. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dicom/charset.h"
#include "dicom/match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static struct hdx_dmatch m1, m2, any;
static const struct hdx_dmatch zero;

static const char *const sets[] = {
    "",
    "ISO_IR 100",
    "ISO_IR 144",
    "ISO_IR 192",
    "GB18030",
    "\\ISO 2022 IR 87",
    "ISO 2022 IR 13\\ISO 2022 IR 87",
    "\\ISO 2022 IR 149",
};
#define NSETS (sizeof(sets) / sizeof(sets[0]))
static struct hdx_charset *cs[NSETS];

static int utf8_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t l = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        if (l == 0 || l > n - i) return 0;
        uint32_t cp = l == 1 ? c : (c & (0x7F >> l));
        for (size_t k = 1; k < l; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += l;
    }
    return 1;
}

static char *dup(const uint8_t *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    CHECK(d != NULL);
    if (n) memcpy(d, p, n);
    return d;
}

/* conv into a heap buffer of exactly cap bytes; the result (when HDX_OK) is copied to res. */
typedef int (*conv_fn)(struct hdx_charset *, const char *, size_t, char *, size_t, size_t *);

static int conv(conv_fn f, struct hdx_charset *c, const char *in, size_t n, size_t cap, char **res,
                size_t *res_n)
{
    char *out = malloc(cap);
    size_t on = 12345;
    CHECK(out != NULL);
    int rc = f(c, in, n, out, cap, &on);
    CHECK(rc == HDX_OK || rc == HDX_E_INVAL || rc == HDX_E_TOOBIG);
    if (rc == HDX_OK) {
        CHECK(on < cap && out[on] == '\0');
        *res = out;
        *res_n = on;
    } else {
        CHECK(on == 0 && out[0] == '\0');
        free(out);
    }
    return rc;
}

/* UTF-8 u -> set -> UTF-8 gives u back whenever the first step succeeds. */
static void round_trip(struct hdx_charset *c, const char *u, size_t n)
{
    char *enc, *dec;
    size_t en, dn;

    if (conv(hdx_charset_from_utf8, c, u, n, 4 * n + 64, &enc, &en) != HDX_OK) return;
    /* At most 3 UTF-8 bytes per byte (a JIS X 0201 katakana byte). */
    int rc = conv(hdx_charset_to_utf8, c, enc, en, 3 * en + 64, &dec, &dn);
    CHECK(rc == HDX_OK);
    CHECK(dn == n && memcmp(dec, u, n) == 0);
    free(dec);
    free(enc);
}

static void charsets(const char *v, size_t vn, uint8_t capb)
{
    for (size_t i = 0; i < NSETS; i++) {
        char *u;
        size_t un;
        if (cs[i] == NULL) {
            CHECK(hdx_charset_open(sets[i], &cs[i], NULL) == HDX_OK);
        }
        /* A tight cap from the input (overruns would show), then a roomy one. */
        if (conv(hdx_charset_to_utf8, cs[i], v, vn, (size_t)capb % 32 + 1, &u, &un) == HDX_OK)
            free(u);
        if (conv(hdx_charset_to_utf8, cs[i], v, vn, 4 * vn + 16, &u, &un) == HDX_OK) {
            CHECK(utf8_ok((const unsigned char *)u, un));
            if (hdx_charset_is_utf8(cs[i])) CHECK(un == vn && memcmp(u, v, vn) == 0);
            round_trip(cs[i], u, un);
            free(u);
        }
        round_trip(cs[i], v, vn);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    enum hdx_dmatch_vr vr = (enum hdx_dmatch_vr)(data[0] % 6 + 1);
    const uint8_t *rest = data + 1;
    size_t rn = size - 1;
    const uint8_t *nul = memchr(rest, 0, rn);
    size_t kn = nul != NULL ? (size_t)(nul - rest) : rn;
    size_t vn = nul != NULL ? rn - kn - 1 : 0;
    char *key = dup(rest, kn), *val = dup(nul != NULL ? nul + 1 : rest + rn, vn);
    const char *why1 = NULL, *why2 = NULL;

    int rc1 = hdx_dmatch_compile(vr, key, kn, &m1, &why1);
    int rc2 = hdx_dmatch_compile(vr, key, kn, &m2, &why2);
    CHECK(rc1 == rc2 && why1 == why2 && memcmp(&m1, &m2, sizeof m1) == 0);
    if (rc1 != HDX_OK) {
        CHECK(rc1 == HDX_E_INVAL && why1 != NULL && why1[0] != '\0');
        CHECK(memcmp(&m1, &zero, sizeof m1) == 0);
    } else {
        CHECK(why1 == NULL && m1.vr == vr);
        int r = hdx_dmatch_eval(&m1, val, vn);
        CHECK(r == 0 || r == 1);
        if (m1.universal) CHECK(r == 1);
        int self = 0;
        switch (vr) {
        case HDX_DMATCH_TEXT:
        case HDX_DMATCH_PN:
            self = !m1.wildcard;
            break;
        case HDX_DMATCH_UI:
            self = m1.nuids == 1;
            break;
        default:
            self = memchr(key, '-', kn) == NULL;
            break;
        }
        if (self) CHECK(hdx_dmatch_eval(&m1, key, kn) == 1);
    }
    if (vr == HDX_DMATCH_TEXT || vr == HDX_DMATCH_PN) {
        CHECK(hdx_dmatch_compile(vr, "*", 1, &any, NULL) == HDX_OK);
        CHECK(hdx_dmatch_eval(&any, val, vn) == 1);
    }
    charsets(val, vn, data[0]);
    free(key);
    free(val);
    return 0;
}
