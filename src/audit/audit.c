#include "audit/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "store/record.h"

static const char *const keys[] = {"event",  "action", "outcome", "reason", "principal", "role",
                                   "source", "cert",   "patient", "seqs",   "count",     "detail"};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* One value: printable ASCII; tokens also without space and '='. */
static void put_value(char *out, size_t cap, size_t *n, const char *v, int token)
{
    size_t i = 0;
    if (!v || !*v) v = token ? "-" : "";
    for (; v[i] && i < HDX_AUDIT_VALUE_MAX && *n + 1 < cap; i++) {
        unsigned char ch = (unsigned char)v[i];
        int ok = ch >= 0x20 && ch < 0x7f && (!token || (ch != ' ' && ch != '='));
        out[(*n)++] = ok ? (char)ch : '?';
    }
}

int hdx_audit_format(const struct hdx_audit *a, char *out, size_t cap)
{
    char hex[2 * HDX_BLIND_LEN + 1], seqs[48], count[24];
    const char *vals[NKEYS];
    if (a->patient) hdx_hex(a->patient, HDX_BLIND_LEN, hex);
    if (a->first_seq)
        snprintf(seqs, sizeof(seqs), "%llu-%llu", (unsigned long long)a->first_seq,
                 (unsigned long long)a->last_seq);
    snprintf(count, sizeof(count), "%llu", (unsigned long long)a->count);
    vals[0] = a->event, vals[1] = a->action, vals[2] = a->outcome, vals[3] = a->reason;
    vals[4] = a->principal, vals[5] = a->role, vals[6] = a->source, vals[7] = a->cert;
    vals[8] = a->patient ? hex : NULL, vals[9] = a->first_seq ? seqs : NULL;
    vals[10] = count, vals[11] = a->detail;
    size_t n = 0;
    int w = snprintf(out, cap, "HDX-AUDIT 1\n");
    if (w < 0 || (size_t)w >= cap) return -1;
    n = (size_t)w;
    for (size_t k = 0; k < NKEYS; k++) {
        size_t kl = strlen(keys[k]);
        if (n + kl + 2 + HDX_AUDIT_VALUE_MAX + 1 > cap) return -1;
        memcpy(out + n, keys[k], kl);
        n += kl;
        out[n++] = '=';
        put_value(out, cap, &n, vals[k], k != NKEYS - 1);
        out[n++] = '\n';
    }
    out[n] = 0;
    return (int)n;
}

static int copy_token(const char *v, size_t len, char *out, size_t cap, int token)
{
    if (len >= cap || (token && len == 0)) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch >= 0x7f || (token && (ch == ' ' || ch == '='))) return -1;
    }
    memcpy(out, v, len);
    out[len] = 0;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s || (s[0] == '0' && s[1])) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

int hdx_audit_parse(const uint8_t *body, size_t len, struct hdx_audit_view *v)
{
    static const char magic[] = "HDX-AUDIT 1\n";
    char seqs[48], count[24];
    memset(v, 0, sizeof(*v));
    if (len < sizeof(magic) - 1 || memcmp(body, magic, sizeof(magic) - 1) != 0) return HDX_E_INVAL;
    char *dst[NKEYS] = {v->event,  v->action, v->outcome, v->reason, v->principal, v->role,
                        v->source, v->cert,   v->patient, seqs,      count,        v->detail};
    size_t caps[NKEYS] = {sizeof(v->event),  sizeof(v->action),    sizeof(v->outcome),
                          sizeof(v->reason), sizeof(v->principal), sizeof(v->role),
                          sizeof(v->source), sizeof(v->cert),      sizeof(v->patient),
                          sizeof(seqs),      sizeof(count),        sizeof(v->detail)};
    size_t off = sizeof(magic) - 1;
    for (size_t k = 0; k < NKEYS; k++) {
        size_t kl = strlen(keys[k]);
        if (off + kl + 1 > len || memcmp(body + off, keys[k], kl) != 0 || body[off + kl] != '=')
            goto bad;
        off += kl + 1;
        const uint8_t *nl = memchr(body + off, '\n', len - off);
        if (!nl) goto bad;
        size_t vl = (size_t)(nl - (body + off));
        if (vl > HDX_AUDIT_VALUE_MAX ||
            copy_token((const char *)body + off, vl, dst[k], caps[k], k != NKEYS - 1))
            goto bad;
        off += vl + 1;
    }
    if (off != len || parse_u64(count, &v->count)) goto bad;
    if (strcmp(seqs, "-") != 0) {
        char *dash = strchr(seqs, '-');
        if (!dash) goto bad;
        *dash = 0;
        if (parse_u64(seqs, &v->first_seq) || parse_u64(dash + 1, &v->last_seq) ||
            v->first_seq == 0 || v->last_seq < v->first_seq)
            goto bad;
    }
    return HDX_OK;
bad:
    memset(v, 0, sizeof(*v));
    return HDX_E_INVAL;
}

struct hdx_intake_item *hdx_audit_item_new(const struct hdx_audit *a)
{
    char body[HDX_AUDIT_BODY_MAX];
    int n = hdx_audit_format(a, body, sizeof(body));
    if (n < 0) return NULL;
    struct hdx_intake_item *it = hdx_intake_item_new((const uint8_t *)body, (size_t)n);
    if (!it) return NULL;
    it->kind = HDX_KIND_AUDIT;
    snprintf(it->sender, sizeof(it->sender), "%s", HDX_AUDIT_SENDER);
    snprintf(it->type, sizeof(it->type), "audit/%s", a->event ? a->event : "-");
    /* The token as it is: already blind (patient_id stays empty, so nothing re-blinds it). */
    if (a->patient) memcpy(it->patient, a->patient, HDX_BLIND_LEN);
    return it;
}
