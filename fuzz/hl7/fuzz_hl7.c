/* fuzz_hl7: libFuzzer entry point for the HL7 v2 parser and ACK builder.
 * Beyond "no crash", it traps on broken promises: views inside the input, unescape results
 * inside their buffer, escape/unescape round trips, the same verdict under tighter limits
 * being no more permissive, every ACK being well formed (and re-parseable whenever the
 * received message was accepted under a strict character set), and hl7_peek_ack agreeing
 * with the parser on MSA-1 and MSA-2 of every message both read. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto/ack.h"
#include "proto/hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

static void check_view(const struct hl7_msg *m, struct hl7_view v)
{
    CHECK(v.off <= m->len && v.len <= m->len - v.off);
}

/* escape(text) must unescape back to text with the same delimiters. */
static void round_trip(const struct hl7_msg *m, const char *text, size_t len)
{
    char esc[2048], back[512];

    if (strlen(text) != len) return; /* a decoded NUL cannot pass through a C string */
    int n = hl7_escape(&m->d, text, esc, sizeof esc);
    if (n < 0) return;
    struct hl7_msg tmp = *m;
    tmp.data = (const uint8_t *)esc;
    tmp.len = (size_t)n;
    struct hl7_view all = {0, (uint32_t)n};
    CHECK(hl7_unescape(&tmp, all, back, sizeof back) == (int)len);
    CHECK(memcmp(back, text, len + 1) == 0);
}

static void probe(const struct hl7_msg *m)
{
    static const struct {
        const char *seg;
        int occ, field, rep, comp, sub;
    } q[] = {
        {"MSH", 1, 1, 1, 0, 0}, {"MSH", 1, 2, 1, 0, 0},  {"MSH", 1, 3, 1, 1, 0},
        {"MSH", 1, 9, 1, 2, 0}, {"MSH", 1, 18, 2, 0, 0}, {"PID", 1, 3, 1, 1, 0},
        {"PID", 1, 3, 2, 4, 2}, {"PID", 1, 5, 1, 2, 0},  {"OBX", 1, 5, 1, 0, 0},
        {"OBX", 2, 3, 1, 2, 0}, {"NTE", 1, 3, 3, 0, 0},  {"EVN", 1, 2, 1, 1, 1},
    };
    struct hl7_view v;
    char out[256];

    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        if (hl7_get(m, q[i].seg, q[i].occ, q[i].field, q[i].rep, q[i].comp, q[i].sub, &v) != 0)
            continue;
        check_view(m, v);
        int n = hl7_unescape(m, v, out, sizeof out);
        CHECK(n < (int)sizeof out);
        if (n >= 0) {
            CHECK(out[n] == '\0');
            round_trip(m, out, (size_t)n);
        }
    }
}

static void check_ack(const struct hl7_msg *m, const struct hl7_error *e, int rc)
{
    static char out[4096];
    struct hl7_ack_params p = {rc == 0 ? HL7_AA : (e->ack == 'R' ? HL7_AR : HL7_AE), e, "ACK00001",
                               1704110400123456, NULL};
    int n = hl7_ack_build(m, &p, out, sizeof out);

    CHECK(n > 0 && memcmp(out, "MSH", 3) == 0 && out[n - 1] == '\r' && out[n] == '\0');
    for (int i = 0; i < n; i++)
        CHECK((uint8_t)out[i] >= 0x20 || out[i] == '\r');
    bool strict = m->charset[0] == '\0' || strcmp(m->charset, "UNICODE UTF-8") == 0 ||
                  strcmp(m->charset, "ASCII") == 0;
    if (rc != 0 || !strict) return;
    struct hl7_msg a;
    struct hl7_error ae;
    CHECK(hl7_parse((const uint8_t *)out, (size_t)n, NULL, &a, &ae) == 0);
    CHECK(strcmp(a.control_id, "ACK00001") == 0);
    hl7_msg_free(&a);
}

/* hl7_peek_ack, where it answers, says what the parser says of an accepted message. */
static void check_peek_ack(const struct hl7_msg *m, int rc, const uint8_t *data, size_t size)
{
    char code[8], id[200], pcode[8], pid[200];
    struct hl7_view v1, v2;
    if (hl7_peek_ack(data, size, pcode, sizeof pcode, pid, sizeof pid) != 0) return;
    CHECK(strlen(pcode) < sizeof pcode && strlen(pid) < sizeof pid);
    if (rc != 0) return;
    CHECK(hl7_get(m, "MSA", 1, 1, 1, 0, 0, &v1) == 0 && hl7_get(m, "MSA", 1, 2, 1, 0, 0, &v2) == 0);
    CHECK(hl7_unescape(m, v1, code, sizeof code) >= 0 && hl7_unescape(m, v2, id, sizeof id) >= 0);
    CHECK(strcmp(code, pcode) == 0 && strcmp(id, pid) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hl7_msg m, small;
    struct hl7_error e, se;
    struct hl7_limits lim = {4, 32};

    int rc = hl7_parse(data, size, NULL, &m, &e);
    if (rc == 0) {
        CHECK(m.nsegs >= 1 && m.segs != NULL && m.msg_type[0] != '\0');
        probe(&m);
    } else {
        CHECK(rc == -1 && m.segs == NULL && m.nsegs <= 1 && e.text[0] != '\0');
        CHECK(e.ack == 'E' || e.ack == 'R');
    }
    check_ack(&m, &e, rc);
    check_peek_ack(&m, rc, data, size);
    /* Tighter limits may only turn acceptance into rejection, never the reverse. */
    int src = hl7_parse(data, size, &lim, &small, &se);
    CHECK(src == -1 || rc == 0);
    if (src == 0) CHECK(small.nsegs == m.nsegs && strcmp(small.patient_id, m.patient_id) == 0);
    hl7_msg_free(&small);
    hl7_msg_free(&m);
    return 0;
}
