#include "store/logproof.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "merkle/merkle.h"
#include "merkle/sth.h"

struct jbuf {
    char *p;
    size_t cap, len;
    int overflow;
};

__attribute__((format(printf, 2, 3))) static void put(struct jbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        b->overflow = 1;
    else
        b->len += (size_t)n;
}

static void put_path(struct jbuf *b, const uint8_t path[][32], size_t n)
{
    char hex[65];
    put(b, "\"path\":[");
    for (size_t i = 0; i < n; i++) {
        hdx_hex(path[i], 32, hex);
        put(b, "%s\"%s\"", i ? "," : "", hex);
    }
    put(b, "]");
}

static int open_tree(struct hdx_store *s, struct merkle *m, struct merkle_store *ms)
{
    uint64_t last = 0;
    uint8_t chain[32];
    hdx_store_merkle(s, ms);
    if (hdx_store_last(s, &last, chain, NULL) != HDX_OK) return HDX_E_STORE;
    return merkle_open(m, last, ms);
}

static int fail(int rc, char *why, size_t cap, const char *text)
{
    snprintf(why, cap, "%s", text ? text : hdx_strerror(rc));
    return rc;
}

static int inclusion_json(struct hdx_store *s, uint64_t seq, char *out, size_t cap, char *why,
                          size_t why_cap)
{
    struct merkle m;
    struct merkle_store ms;
    struct hdx_sth sth;
    struct hdx_record r;
    uint8_t path[MERKLE_MAX_PATH][32];
    size_t n = 0;
    char sth_json[512], leaf[65];
    struct jbuf b = {out, cap, 0, 0};
    int rc = open_tree(s, &m, &ms);
    if (rc == HDX_OK) rc = hdx_store_sth_latest(s, &sth);
    if (rc != HDX_OK) return fail(rc, why, why_cap, NULL);
    if (seq == 0 || seq > sth.tree_size)
        return fail(HDX_E_NOTFOUND, why, why_cap,
                    "record not covered by a signed tree head yet (retry after a second)");
    if ((rc = hdx_store_get(s, seq, &r)) != HDX_OK) return fail(rc, why, why_cap, NULL);
    hdx_hex(r.leaf_hash, 32, leaf);
    hdx_record_clear(&r);
    rc = merkle_inclusion_proof(&m, seq - 1, sth.tree_size, path, MERKLE_MAX_PATH, &n);
    if (rc != HDX_OK || hdx_sth_json(&sth, sth_json, sizeof(sth_json)) < 0)
        return fail(rc ? rc : HDX_E_TOOBIG, why, why_cap, NULL);
    put(&b,
        "{\"type\":\"inclusion\",\"seq\":%llu,\"leaf_index\":%llu,\"leaf_hash\":\"%s\","
        "\"tree_size\":%llu,",
        (unsigned long long)seq, (unsigned long long)(seq - 1), leaf,
        (unsigned long long)sth.tree_size);
    put_path(&b, path, n);
    put(&b, ",\"sth\":%s}", sth_json);
    return b.overflow ? fail(HDX_E_TOOBIG, why, why_cap, NULL) : (int)b.len;
}

static int consistency_json(struct hdx_store *s, uint64_t old_size, uint64_t new_size, char *out,
                            size_t cap, char *why, size_t why_cap)
{
    struct merkle m;
    struct merkle_store ms;
    struct hdx_sth new_sth, old_sth;
    uint8_t path[MERKLE_MAX_PATH][32], old_root[32];
    size_t n = 0;
    char json[512], old_json[512] = "null", hex[65];
    struct jbuf b = {out, cap, 0, 0};
    if (old_size == 0 || old_size > new_size)
        return fail(HDX_E_INVAL, why, why_cap, "sizes must satisfy 0 < old <= new");
    int rc = open_tree(s, &m, &ms);
    if (rc != HDX_OK) return fail(rc, why, why_cap, NULL);
    if (hdx_store_sth_at(s, new_size, &new_sth) != HDX_OK)
        return fail(HDX_E_NOTFOUND, why, why_cap, "no signed tree head of that new size");
    if (hdx_store_sth_at(s, old_size, &old_sth) == HDX_OK &&
        hdx_sth_json(&old_sth, old_json, sizeof(old_json)) < 0)
        return fail(HDX_E_TOOBIG, why, why_cap, NULL);
    rc = merkle_root_at(&m, old_size, old_root);
    if (rc == HDX_OK)
        rc = merkle_consistency_proof(&m, old_size, new_size, path, MERKLE_MAX_PATH, &n);
    if (rc != HDX_OK || hdx_sth_json(&new_sth, json, sizeof(json)) < 0)
        return fail(rc ? rc : HDX_E_TOOBIG, why, why_cap, NULL);
    hdx_hex(old_root, 32, hex);
    put(&b, "{\"type\":\"consistency\",\"old_size\":%llu,\"new_size\":%llu,\"old_root\":\"%s\",",
        (unsigned long long)old_size, (unsigned long long)new_size, hex);
    put_path(&b, path, n);
    put(&b, ",\"old_sth\":%s,\"sth\":%s}", old_json, json);
    return b.overflow ? fail(HDX_E_TOOBIG, why, why_cap, NULL) : (int)b.len;
}

/* Each proof reads one snapshot: the size, head, nodes and record must agree even while hdxd
 * appends, and one read transaction is far cheaper than one per statement. */
int hdx_log_inclusion_json(struct hdx_store *s, uint64_t seq, char *out, size_t cap, char *why,
                           size_t why_cap)
{
    int rc = hdx_store_read_begin(s);
    if (rc != HDX_OK) return fail(rc, why, why_cap, NULL);
    rc = inclusion_json(s, seq, out, cap, why, why_cap);
    hdx_store_read_end(s);
    return rc;
}

int hdx_log_consistency_json(struct hdx_store *s, uint64_t old_size, uint64_t new_size, char *out,
                             size_t cap, char *why, size_t why_cap)
{
    int rc = hdx_store_read_begin(s);
    if (rc != HDX_OK) return fail(rc, why, why_cap, NULL);
    rc = consistency_json(s, old_size, new_size, out, cap, why, why_cap);
    hdx_store_read_end(s);
    return rc;
}

enum hdx_logreq_kind hdx_logreq_parse(const char *line, struct hdx_logreq *out)
{
    const char *p;
    memset(out, 0, sizeof(*out));
    if (!strcmp(line, "STH")) return out->kind = HDX_LOGREQ_STH;
    if (!strncmp(line, "INCLUSION ", 10)) {
        if (hdx_parse_dec(line + 10, &out->a, &p) || *p) return HDX_LOGREQ_NONE;
        return out->kind = HDX_LOGREQ_INCLUSION;
    }
    if (!strncmp(line, "CONSISTENCY ", 12)) {
        if (hdx_parse_dec(line + 12, &out->a, &p) || *p != ' ' ||
            hdx_parse_dec(p + 1, &out->b, &p) || *p)
            return out->kind = HDX_LOGREQ_NONE;
        return out->kind = HDX_LOGREQ_CONSISTENCY;
    }
    return HDX_LOGREQ_NONE;
}
