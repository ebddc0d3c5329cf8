#include "audit/review.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/util.h"
#include "policy/policy.h"
#include "policy/policy_load.h"

int hdx_review_period(const char *s, int64_t *us)
{
    uint64_t n;
    const char *end;
    int64_t unit = HDX_REVIEW_DAY_US;
    if (!s || hdx_parse_dec(s, &n, &end) != 0 || n < 1) return HDX_E_INVAL;
    if (*end) {
        switch (*end) {
        case 's':
            unit = 1000000;
            break;
        case 'm':
            unit = 60LL * 1000000;
            break;
        case 'h':
            unit = 3600LL * 1000000;
            break;
        case 'd':
            break;
        default:
            return HDX_E_INVAL;
        }
        if (end[1]) return HDX_E_INVAL;
    }
    if (n > (uint64_t)(HDX_REVIEW_PERIOD_MAX_US / unit)) return HDX_E_INVAL;
    *us = (int64_t)n * unit;
    return HDX_OK;
}

int64_t hdx_review_since(const struct hdx_review_window *w, int64_t period_us)
{
    return w->now_us - period_us;
}

/* "2026-11-25T12:00:00Z" (to the second: a review reads dates, not microseconds). */
static void when(int64_t us, char out[24])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (us <= 0 || !gmtime_r(&t, &tm) || !strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 24, "never");
}

static void patient_hex(const uint8_t *patient, char out[HDX_REVIEW_PATIENT_HEX + 1])
{
    char hex[2 * HDX_BLIND_LEN + 1];
    hdx_hex(patient, HDX_BLIND_LEN, hex);
    memcpy(out, hex, HDX_REVIEW_PATIENT_HEX);
    out[HDX_REVIEW_PATIENT_HEX] = 0;
}

static int person(const char *role)
{
    enum hdx_role r = hdx_role_parse(role);
    return r >= HDX_ROLE_ADMIN && r <= HDX_ROLE_RESEARCHER;
}

int hdx_review_mfa_missing(const struct hdx_review_window *w, const struct hdx_review_user *u,
                           char *detail, size_t cap)
{
    (void)w;
    if (u->has_mfa || u->api_key) return 0;
    snprintf(detail, cap,
             "role=%s no second factor enrolled (enrolment pending: a login gets an enrol-only "
             "session)",
             u->role);
    return 1;
}

int hdx_review_locked(const struct hdx_review_window *w, const struct hdx_review_user *u,
                      char *detail, size_t cap)
{
    (void)w;
    if (!u->locked) return 0;
    snprintf(detail, cap, "role=%s locked: no login until hdx user unlock", u->role);
    return 1;
}

int hdx_review_dormant(const struct hdx_review_window *w, const struct hdx_review_user *u,
                       char *detail, size_t cap)
{
    int64_t since = hdx_review_since(w, w->dormant_us);
    char s[24], c[24];
    if (u->created_us >= since || u->last_login_us >= since) return 0;
    when(since, s);
    when(u->created_us, c);
    snprintf(detail, cap, "role=%s no %s since %s (created %s)", u->role,
             u->api_key ? "request with its API key" : "successful login", s, c);
    return 1;
}

int hdx_review_role_unused(const struct hdx_review_window *w, const struct hdx_review_user *u,
                           char *detail, size_t cap)
{
    int64_t since = hdx_review_since(w, w->unused_us);
    char s[24];
    if (!hdx_policy_role_has(hdx_role_parse(u->role), HDX_RES_RECORD, HDX_ACT_READ) ||
        u->created_us >= since || u->last_access_us >= since)
        return 0;
    when(since, s);
    snprintf(detail, cap, "role=%s reads records but no permitted access since %s", u->role, s);
    return 1;
}

int hdx_review_training_missing(const struct hdx_review_window *w, const struct hdx_review_user *u,
                                char *detail, size_t cap)
{
    int64_t at;
    (void)w;
    if (!person(u->role)) return 0;
    if (!u->training[0]) {
        snprintf(detail, cap, "role=%s no training date recorded", u->role);
        return 1;
    }
    if (hdx_policy_date_us(u->training, &at) == HDX_OK) return 0;
    snprintf(detail, cap, "role=%s training date is not a date", u->role);
    return 1;
}

int hdx_review_training_expired(const struct hdx_review_window *w, const struct hdx_review_user *u,
                                char *detail, size_t cap)
{
    int64_t at, period = w->training_period_days * HDX_REVIEW_DAY_US;
    char e[24];
    if (!person(u->role) || !u->training[0] || hdx_policy_date_us(u->training, &at) != HDX_OK ||
        w->now_us - at <= period)
        return 0;
    when(at + period, e);
    snprintf(detail, cap, "role=%s training=%s expired %s (policy.training_period_days=%lld)",
             u->role, u->training, e, (long long)w->training_period_days);
    return 1;
}

int hdx_review_careteam_unused(const struct hdx_review_window *w, const uint8_t *patient,
                               int assigned_recently, int accessed, char *detail, size_t cap)
{
    char p[HDX_REVIEW_PATIENT_HEX + 1], s[24];
    if (assigned_recently || accessed) return 0;
    patient_hex(patient, p);
    when(hdx_review_since(w, w->unused_us), s);
    snprintf(detail, cap, "patient=%s on the care team, no permitted access to them since %s", p,
             s);
    return 1;
}

int hdx_review_grant_unreviewed(const struct hdx_review_window *w, const struct hdx_break_glass *g,
                                char *detail, size_t cap)
{
    char p[HDX_REVIEW_PATIENT_HEX + 1], gr[24], ex[24];
    if (g->reviewed_by[0]) return 0;
    patient_hex(g->patient, p);
    when(g->granted_us, gr);
    when(g->expires_us, ex);
    snprintf(detail, cap, "patient=%s granted_us=%lld granted=%s expires=%s state=%s not reviewed",
             p, (long long)g->granted_us, gr, ex, g->expires_us > w->now_us ? "active" : "expired");
    return 1;
}

int hdx_review_device_silent(const struct hdx_review_window *w, const struct hdx_device *d,
                             int64_t last_us, char *detail, size_t cap)
{
    int64_t since = hdx_review_since(w, w->silent_us);
    char s[24], c[24];
    if (d->revoked_us ||
        !hdx_policy_role_has(hdx_role_parse(d->role), HDX_RES_STREAM, HDX_ACT_WRITE) ||
        d->created_us >= since || last_us >= since)
        return 0;
    when(since, s);
    when(d->created_us, c);
    snprintf(detail, cap, "role=%s no record since %s (enrolled %s)", d->role, s, c);
    return 1;
}

/* One value into out at *n: a token (kind, subject) or the detail (escaped). */
static int put(char *out, size_t cap, size_t *n, const char *v, int token)
{
    for (; *v; v++) {
        unsigned char ch = (unsigned char)*v;
        int printable = ch >= 0x20 && ch < 0x7f;
        if (token && (ch == ' ' || ch == '=' || ch == '"')) printable = 0;
        if (!token && printable && (ch == '"' || ch == '\\')) {
            if (*n + 1 >= cap) return -1;
            out[(*n)++] = '\\';
        }
        if (*n + 1 >= cap) return -1;
        out[(*n)++] = printable ? (char)ch : '?';
    }
    return 0;
}

int hdx_review_line(const char *kind, const char *subject, const char *detail, char *out,
                    size_t cap)
{
    size_t n = 0;
    const char *parts[] = {"finding=", kind, " subject=", subject, " detail=\"", detail, "\""};
    if (!cap) return -1;
    for (size_t i = 0; i < HDX_ARRAY_LEN(parts); i++) {
        int literal = i % 2 == 0;
        if (literal) {
            size_t l = strlen(parts[i]);
            if (n + l >= cap) return -1;
            memcpy(out + n, parts[i], l);
            n += l;
        } else if (put(out, cap, &n, parts[i] ? parts[i] : "", i != 5) != 0) {
            return -1;
        }
    }
    out[n] = 0;
    return (int)n;
}

/* ---------- the pair set ---------- */

struct hdx_review_pair {
    uint8_t patient[HDX_BLIND_LEN];
    uint32_t user;
    uint32_t used;
};

/* Tokens are HMAC outputs (crypto/keys.h): their bytes are already uniform, and nobody who
 * lacks the blind key can choose them to collide. */
static size_t slot_of(const struct hdx_review_pairs *p, uint32_t user, const uint8_t *patient)
{
    uint64_t h;
    memcpy(&h, patient, sizeof(h));
    h ^= (uint64_t)user * 0x9e3779b97f4a7c15ULL;
    return (size_t)(h ^ (h >> 29)) & (p->cap - 1);
}

static struct hdx_review_pair *lookup(const struct hdx_review_pairs *p, uint32_t user,
                                      const uint8_t *patient)
{
    for (size_t i = slot_of(p, user, patient);; i = (i + 1) & (p->cap - 1)) {
        struct hdx_review_pair *e = &p->slots[i];
        if (!e->used || (e->user == user && !memcmp(e->patient, patient, HDX_BLIND_LEN))) return e;
    }
}

static int grow(struct hdx_review_pairs *p)
{
    struct hdx_review_pairs bigger = {NULL, p->cap ? p->cap * 2 : 256, p->n};
    if (bigger.cap > SIZE_MAX / sizeof(*bigger.slots)) return HDX_E_NOMEM;
    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots) return HDX_E_NOMEM;
    for (size_t i = 0; i < p->cap; i++)
        if (p->slots[i].used) *lookup(&bigger, p->slots[i].user, p->slots[i].patient) = p->slots[i];
    free(p->slots);
    *p = bigger;
    return HDX_OK;
}

int hdx_review_pairs_add(struct hdx_review_pairs *p, uint32_t user,
                         const uint8_t patient[HDX_BLIND_LEN])
{
    if ((p->n + 1) * 2 > p->cap && grow(p) != HDX_OK) return HDX_E_NOMEM;
    struct hdx_review_pair *e = lookup(p, user, patient);
    if (e->used) return HDX_OK;
    memcpy(e->patient, patient, HDX_BLIND_LEN);
    e->user = user;
    e->used = 1;
    p->n++;
    return HDX_OK;
}

int hdx_review_pairs_has(const struct hdx_review_pairs *p, uint32_t user,
                         const uint8_t patient[HDX_BLIND_LEN])
{
    return p->cap && lookup(p, user, patient)->used;
}

void hdx_review_pairs_free(struct hdx_review_pairs *p)
{
    free(p->slots);
    memset(p, 0, sizeof(*p));
}
