/* front_sub: FHIR Subscriptions at /fhir (docs/FHIR.md "Subscriptions"), the Subscriptions R5
 * Backport IG for R4 on one topic (fhir/subscription.h).
 *
 * A Subscription is a FHIR resource like the others (a record of the log); the indexer
 * (fhir/index.h) matches every vital-sign Observation version against the live filters and
 * lists the topic's events per subscription, deterministically from the log. This side turns
 * them into numbered notifications:
 *   - numbering: after each index pass, each subscription's new events are authorized for its
 *     owner as the owner stands now (the user not locked, the API key's account, the SMART
 *     client registered and scoped for Observation) by the policy engine (action subscribe,
 *     the event's patient); a permitted one gets the next event number. Number, events and
 *     the position reached are one transaction of DIR/subscriptions.db, so a number is never
 *     given twice nor skipped, across kill -9;
 *   - audit: the numbered events are disclosure records (event access, action notify) and
 *     nothing of an event leaves before its record is durable (the audited number);
 *   - delivery: websocket clients bound with a token from $get-ws-binding-token get every
 *     event after their bind in order (back-pressure: sending pauses while 256 KiB are unsent
 *     and goes on when they drain), heartbeats, and may ask $events for any gap; a rest-hook
 *     subscription's worker (net/resthook.h) gets a handshake first, then its events in order
 *     from the last one it acknowledged, for ever, off this thread. The policy is asked again
 *     when an event is sent: one the owner may no longer see goes out with its number only.
 * Only its owner may read, change or delete a Subscription, or ask its operations; its filter
 * cannot change (create a new one). Thread: the network thread; the workers are their own. */
#include <errno.h>
#include <event2/event.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/smart_scope.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"
#include "fhir/index.h"
#include "fhir/subscription.h"
#include "net/front_internal.h"
#include "net/resthook.h"
#include "net/ws.h"

#define OWNER_SYSTEM "urn:hdx:subscription-owner"
#define OWNER_MAX 96
#define EVENTS_PER_PASS 512 /* per subscription and index pass; the next pass goes on */
#define WS_QUEUE_MAX (256 * 1024)
#define WS_BINDS_MAX 8
#define WS_BIND_TIMEOUT_US (30 * 1000000LL)
#define TOKEN_TTL_US (60 * 1000000LL)
#define TOKENS_MAX 256
#define EVENTS_QUERY_MAX 100 /* events one $events answer holds */

struct sub;
struct ws_client;

struct stored_event {
    char type[HDX_FHIR_TYPE_MAX + 1], rid[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    uint64_t seq; /* the record of the Observation version */
    int64_t time_us;
    int has_patient;
    uint8_t patient[HDX_BLIND_LEN];
};

#define RECENT 8 /* a subscription's newest events, kept for their audit and their send */

struct sub {
    char id[HDX_FHIR_ID_MAX + 1];
    uint32_t version;
    struct hdx_sub_spec spec;
    char owner[OWNER_MAX];
    uint64_t number;             /* events numbered */
    uint64_t audited;            /* events whose disclosure record is durable */
    uint64_t auditing;           /* audit records in flight up to this number */
    uint64_t delivered;          /* rest-hook: acknowledged by the receiver */
    int dirty;                   /* numbered in this pass: its state is written with it */
    int audited_dirty;           /* audited moved: written at the next pass or tick */
    uint64_t pass_denied;        /* events refused in this pass */
    uint64_t recent_num[RECENT]; /* event number N at N % RECENT, or 0 */
    struct ws_client **bound;    /* the websockets bound to it (a fan-out visits only those) */
    size_t nbound, bound_cap;
    struct stored_event recent[RECENT];
    enum hdx_policy_reason pass_deny_reason;
    int handshaken; /* rest-hook: the handshake was acknowledged */
    int failing;
    char error[64];
    struct hdx_hook *hook;
    uint64_t offers, offered_upto; /* rest-hook: the offer on the worker */
    int offered_handshake;
    int64_t last_note_us;
    int seen; /* refresh */
    /* the owner's standing, as of policy generation standing_gen (0: not yet known) */
    uint64_t standing_gen;
    int standing;
    struct asker standing_who;
};

struct ws_bind {
    struct sub *s; /* NULL: a slot freed when its subscription went */
    char sub_id[HDX_FHIR_ID_MAX + 1];
    uint64_t sent;
    int64_t last_us;
};

struct ws_client {
    struct ws_client *prev, *next;
    struct front_sub *fs;
    struct hdx_ws *w;
    int64_t opened_us;
    size_t nbinds;
    struct ws_bind binds[WS_BINDS_MAX];
};

struct bind_token {
    char token[65];
    char sub_id[HDX_FHIR_ID_MAX + 1];
    int64_t expires_us;
};

struct front_sub {
    struct hdx_front *f;
    struct hdx_fhir_index *ix;
    sqlite3 *db;
    sqlite3_stmt *put_state, *put_event, *get_event, *get_state, *del_sub, *put_pos;
    struct hdx_fhir_event_pos pos; /* every event up to here is numbered or refused */
    struct sub **subs;
    size_t nsubs, cap;
    struct ws_client *clients;
    struct bind_token tokens[TOKENS_MAX];
    int hook_fd;
    struct event *hook_ev;
    int more;             /* a pass stopped at EVENTS_PER_PASS */
    uint64_t events_seen; /* hdx_fhir_index_events_added at the last numbering */
    uint64_t policy_gen;  /* counts committed admin records: owners' standing may change */
    int refresh;          /* the Subscriptions are read again once the index passes refresh_at */
    uint64_t refresh_at;
    char ws_url[200];
    char ca[HDX_PATH_MAX];
};

static struct sub *sub_find(struct front_sub *fs, const char *id);

static struct front_sub *fs_of(struct hdx_front *f)
{
    return f->sub;
}

/* ---------- the state file ---------- */

static const char *const state_schema =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS sub_state(id TEXT PRIMARY KEY, number INTEGER NOT NULL,"
    " audited INTEGER NOT NULL, delivered INTEGER NOT NULL, pos_seq INTEGER NOT NULL,"
    " pos_part INTEGER NOT NULL, handshaken INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sub_pos(k INTEGER PRIMARY KEY CHECK (k = 1), seq INTEGER NOT NULL,"
    " part INTEGER NOT NULL, sub TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS sub_event(id TEXT NOT NULL, number INTEGER NOT NULL,"
    " type TEXT NOT NULL, rid TEXT NOT NULL, version INTEGER NOT NULL, time_us INTEGER NOT NULL,"
    " patient BLOB, seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(id, number)) WITHOUT ROWID;";

static int db_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? HDX_OK : HDX_E_STORE;
}

static int state_save(struct front_sub *fs, const struct sub *s)
{
    sqlite3_stmt *st = fs->put_state;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)s->number);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->audited);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)s->delivered);
    sqlite3_bind_int64(st, 5, 0); /* pos_seq, pos_part: the position is the file's, sub_pos */
    sqlite3_bind_int64(st, 6, 0);
    sqlite3_bind_int(st, 7, s->handshaken);
    return sqlite3_step(st) == SQLITE_DONE ? HDX_OK : HDX_E_STORE;
}

static void state_load(struct front_sub *fs, struct sub *s)
{
    sqlite3_stmt *st = fs->get_state;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        s->number = (uint64_t)sqlite3_column_int64(st, 0);
        s->audited = (uint64_t)sqlite3_column_int64(st, 1);
        s->delivered = (uint64_t)sqlite3_column_int64(st, 2);
        s->handshaken = sqlite3_column_int(st, 5);
    }
    sqlite3_reset(st);
    s->auditing = s->audited;
}

static int event_get(struct front_sub *fs, const char *id, uint64_t number, struct stored_event *e)
{
    sqlite3_stmt *st = fs->get_event;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)number);
    int rc = HDX_E_NOTFOUND;
    memset(e, 0, sizeof(*e));
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(e->type, sizeof(e->type), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(e->rid, sizeof(e->rid), "%s", (const char *)sqlite3_column_text(st, 1));
        e->version = (uint32_t)sqlite3_column_int64(st, 2);
        e->time_us = sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == HDX_BLIND_LEN) {
            e->has_patient = 1;
            memcpy(e->patient, sqlite3_column_blob(st, 4), HDX_BLIND_LEN);
        }
        e->seq = (uint64_t)sqlite3_column_int64(st, 5);
        rc = HDX_OK;
    }
    sqlite3_reset(st);
    return rc;
}

/* The newest events are read from memory: a fan-out reads each twice (audit, send). */
static int sub_event_get(struct front_sub *fs, struct sub *s, uint64_t number,
                         struct stored_event *e)
{
    if (s->recent_num[number % RECENT] == number) {
        *e = s->recent[number % RECENT];
        return HDX_OK;
    }
    return event_get(fs, s->id, number, e);
}

/* ---------- owners ---------- */

/* The owner a Subscription written by who gets: "user:NAME" (a person's session with MFA),
 * "api-key:NAME", "smart:CLIENT"; 0, or -1 for a principal that cannot own one. */
static int owner_of(const struct asker *who, char *out, size_t cap)
{
    if (who->smart)
        snprintf(out, cap, "smart:%s", who->user);
    else if (!strcmp(who->session, "api-key"))
        snprintf(out, cap, "api-key:%s", who->user);
    else if (who->serial && who->mfa)
        snprintf(out, cap, "user:%s", who->user);
    else
        return -1;
    return 0;
}

static const char *owner_tag(const json_t *res)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(res, "meta"), "tag"), i, t)
    {
        const char *sys = json_string_value(json_object_get(t, "system"));
        if (sys && !strcmp(sys, OWNER_SYSTEM)) return json_string_value(json_object_get(t, "code"));
    }
    return NULL;
}

/* The owner as it stands now, as an asker for the policy: 0, or -1 when it no longer may
 * (a locked or removed account, a revoked client, one whose scopes lost Observation). */
static int owner_standing(struct front_sub *fs, const char *owner, struct asker *who)
{
    memset(who, 0, sizeof(*who));
    const char *colon = strchr(owner, ':');
    if (!colon) return -1;
    const char *name = colon + 1;
    size_t kl = (size_t)(colon - owner);
    snprintf(who->user, sizeof(who->user), "%s", name);
    snprintf(who->session, sizeof(who->session), "subscription");
    who->purpose = HDX_PURPOSE_TREATMENT;
    who->mfa = 1;
    struct hdx_store *st = fs->f->env.ro_store;
    if (kl == 5 && !strncmp(owner, "smart", 5)) {
        struct hdx_smart_client c;
        struct hdx_smart_scopes sc;
        char why[96];
        int ok = hdx_store_client_get(st, name, &c) == HDX_OK && !c.revoked_us &&
                 hdx_smart_scope_parse(c.scope, strlen(c.scope), &sc, why, sizeof(why)) == HDX_OK &&
                 hdx_smart_scope_allows(&sc, "system", "Observation", 'r');
        hdx_smart_client_clear(&c);
        if (!ok) return -1;
        snprintf(who->role_name, sizeof(who->role_name), "integration");
        who->role = HDX_ROLE_INTEGRATION;
        return 0;
    }
    struct hdx_user u;
    int ok = hdx_store_user_get(st, name, &u) == HDX_OK && !u.locked;
    if (ok && kl == 7 && !strncmp(owner, "api-key", 7))
        ok = !strcmp(u.role, "integration");
    else if (ok)
        ok = kl == 4 && !strncmp(owner, "user", 4);
    if (ok) {
        snprintf(who->role_name, sizeof(who->role_name), "%s", u.role);
        who->role = hdx_role_parse(u.role);
    }
    sodium_memzero(&u, sizeof(u));
    return ok ? 0 : -1;
}

/* The owner's standing, looked up again only when an admin record (a lock, a role, a client
 * revoked or rescoped) was committed since. */
static int sub_standing(struct front_sub *fs, struct sub *s, const struct asker **who)
{
    if (s->standing_gen != fs->policy_gen) {
        s->standing = owner_standing(fs, s->owner, &s->standing_who);
        s->standing_gen = fs->policy_gen;
    }
    *who = &s->standing_who;
    return s->standing;
}

static int may_disclose(struct front_sub *fs, const struct asker *who, int standing,
                        const uint8_t *patient, struct hdx_policy_decision *d)
{
    if (standing != 0) {
        *d = (struct hdx_policy_decision){0, HDX_PR_UNKNOWN_ROLE};
        return 0;
    }
    hdx_front_decide(fs->f->api, who, HDX_ACT_SUBSCRIBE, HDX_RES_RECORD, patient, d);
    return d->permit;
}

/* ---------- notifications ---------- */

static const char *sub_status(const struct sub *s)
{
    if (s->spec.off) return "off";
    if (s->spec.channel == HDX_SUB_REST_HOOK && s->failing) return "error";
    if (s->spec.channel == HDX_SUB_REST_HOOK && !s->handshaken) return "requested";
    return "active";
}

/* The Bundle text of a notification of s (events from..to, 0..0 for none), plain malloc'd. */
static char *note_text(struct front_sub *fs, struct sub *s, enum hdx_sub_note note, uint64_t from,
                       uint64_t to, enum hdx_sub_content content, const struct asker *asker,
                       size_t *len, struct tally *tally)
{
    const struct asker *who = asker;
    int standing = 0;
    if (!who) standing = sub_standing(fs, s, &who);
    size_t n = from && to >= from ? (size_t)(to - from + 1) : 0;
    struct hdx_sub_event *ev = n ? calloc(n, sizeof(*ev)) : NULL;
    if (n && !ev) return NULL;
    size_t k = 0;
    enum hdx_sub_content c = content;
    for (uint64_t num = from; n && num <= to; num++) {
        struct stored_event se;
        if (sub_event_get(fs, s, num, &se) != HDX_OK) continue;
        struct hdx_sub_event *e = &ev[k++];
        e->number = num;
        e->time_us = se.time_us;
        snprintf(e->type, sizeof(e->type), "%s", se.type);
        snprintf(e->id, sizeof(e->id), "%s", se.rid);
        e->version = se.version;
        if (note == HDX_SUB_EVENT) hdx_metric_fhir_notification(hdx_now_us() - se.time_us);
        struct hdx_policy_decision d;
        if (!may_disclose(fs, who, standing, se.has_patient ? se.patient : NULL, &d)) {
            /* its number only: the receiver sees no gap and learns nothing of it */
            e->type[0] = 0;
            if (tally) hdx_front_tally_deny(tally, d.reason);
            continue;
        }
        if (tally && c != HDX_SUB_EMPTY)
            hdx_front_tally_add(tally, se.has_patient ? se.patient : NULL, se.seq, 0);
        if (c == HDX_SUB_FULL) {
            struct hdx_fhir_row row;
            int err;
            if (hdx_fhir_index_get(fs->ix, se.type, se.rid, se.version, &row) == HDX_OK)
                e->resource = hdx_front_fhir_load(fs->f, &row, &err);
        }
    }
    struct hdx_sub_status st = {.base_url = hdx_front_fhir_base(fs->f),
                                .sub_id = s->id,
                                .status = sub_status(s),
                                .note = note,
                                .events_since_start = s->audited,
                                .content = c,
                                .error = s->failing ? s->error : NULL,
                                .now_us = hdx_now_us()};
    /* an event refused now carries no focus: the builders leave it out when type is "" */
    char *text = NULL;
    if (c != HDX_SUB_FULL) {
        text = hdx_sub_bundle_text(&st, ev, k, len); /* the fan-out's: no JSON objects */
    } else {
        json_t *b = hdx_sub_bundle(&st, ev, k);
        if (b) text = hdx_front_fhir_dump(b, len);
        json_decref(b);
    }
    for (size_t i = 0; i < k; i++)
        json_decref(ev[i].resource);
    free(ev);
    return text;
}

/* ---------- websockets ---------- */

static void ws_pump(struct ws_client *wc, struct ws_bind *b)
{
    struct front_sub *fs = wc->fs;
    struct sub *s = b->s;
    if (!s) return;
    while (b->sent < s->audited && hdx_ws_queued(wc->w) < WS_QUEUE_MAX) {
        size_t len = 0;
        char *text = note_text(fs, s, HDX_SUB_EVENT, b->sent + 1, b->sent + 1, s->spec.content,
                               NULL, &len, NULL);
        if (!text || hdx_ws_send_text(wc->w, text, len) != HDX_OK) {
            free(text);
            return;
        }
        free(text);
        b->sent++;
        b->last_us = hdx_monotonic_us();
    }
}

static void ws_text(void *arg, struct hdx_ws *w, const uint8_t *msg, size_t len)
{
    struct ws_client *wc = arg;
    struct front_sub *fs = wc->fs;
    static const char cmd[] = "bind-with-token ";
    char token[65] = "";
    if (len > sizeof(cmd) - 1 && len - (sizeof(cmd) - 1) < sizeof(token) &&
        !memcmp(msg, cmd, sizeof(cmd) - 1)) {
        memcpy(token, msg + sizeof(cmd) - 1, len - (sizeof(cmd) - 1));
        token[len - (sizeof(cmd) - 1)] = 0;
    }
    int64_t now = hdx_monotonic_us();
    struct bind_token *t = NULL;
    for (size_t i = 0; token[0] && i < TOKENS_MAX; i++)
        if (fs->tokens[i].token[0] && fs->tokens[i].expires_us > now &&
            strlen(fs->tokens[i].token) == strlen(token) &&
            sodium_memcmp(fs->tokens[i].token, token, strlen(token)) == 0)
            t = &fs->tokens[i];
    struct sub *s = NULL;
    for (size_t i = 0; t && i < fs->nsubs; i++)
        if (!strcmp(fs->subs[i]->id, t->sub_id)) s = fs->subs[i];
    sodium_memzero(token, sizeof(token));
    if (!t || !s || s->spec.channel != HDX_SUB_WEBSOCKET || wc->nbinds == WS_BINDS_MAX) {
        hdx_warn("fhir_ws_bind_refused", "peer=%s", hdx_ws_peer(w));
        hdx_ws_close(w, 1008, "bind-with-token: no such token");
        return;
    }
    memset(t, 0, sizeof(*t)); /* once */
    int listed = 0;           /* bound twice over one connection: listed once */
    for (size_t i = 0; i < s->nbound; i++)
        listed |= s->bound[i] == wc;
    if (!listed && s->nbound == s->bound_cap) {
        size_t cap = s->bound_cap ? 2 * s->bound_cap : 4;
        struct ws_client **n = realloc(s->bound, cap * sizeof(*n));
        if (!n) {
            hdx_ws_close(w, 1011, "out of memory");
            return;
        }
        s->bound = n;
        s->bound_cap = cap;
    }
    if (!listed) s->bound[s->nbound++] = wc;
    struct ws_bind *b = &wc->binds[wc->nbinds++];
    b->s = s;
    snprintf(b->sub_id, sizeof(b->sub_id), "%s", s->id);
    b->sent = s->audited; /* events from now on; $events has the earlier ones */
    b->last_us = now;
    size_t n = 0;
    char *text = note_text(fs, s, HDX_SUB_HANDSHAKE, 0, 0, s->spec.content, NULL, &n, NULL);
    if (text) hdx_ws_send_text(w, text, n);
    free(text);
    hdx_info("fhir_ws_bound", "peer=%s subscription=%s events=%llu", hdx_ws_peer(w), s->id,
             (unsigned long long)s->audited);
}

static void ws_drained(void *arg, struct hdx_ws *w)
{
    struct ws_client *wc = arg;
    for (size_t i = 0; i < wc->nbinds; i++)
        ws_pump(wc, &wc->binds[i]);
}

static void ws_closed(void *arg, struct hdx_ws *w)
{
    struct ws_client *wc = arg;
    struct front_sub *fs = wc->fs;
    if (!fs) { /* the front went first */
        free(wc);
        return;
    }
    for (size_t k = 0; k < wc->nbinds; k++) { /* off its subscriptions' lists */
        struct sub *s = wc->binds[k].s;
        for (size_t i = 0; s && i < s->nbound; i++)
            if (s->bound[i] == wc) {
                s->bound[i] = s->bound[--s->nbound];
                break;
            }
    }
    if (wc->prev)
        wc->prev->next = wc->next;
    else
        fs->clients = wc->next;
    if (wc->next) wc->next->prev = wc->prev;
    free(wc);
}

static const struct hdx_ws_ops ws_ops = {
    .text = ws_text, .drained = ws_drained, .closed = ws_closed};

void hdx_front_sub_ws(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                      struct hdx_http_reply *r)
{
    struct front_sub *fs = fs_of(f);
    struct ws_client *wc = calloc(1, sizeof(*wc));
    if (!wc) {
        hdx_http_error(r, 503, "unavailable", "out of memory");
        return;
    }
    wc->fs = fs;
    wc->opened_us = hdx_monotonic_us();
    if (hdx_ws_accept(c, req, r, &ws_ops, wc, &wc->w) != HDX_OK) {
        free(wc);
        return;
    }
    wc->next = fs->clients;
    if (fs->clients) fs->clients->prev = wc;
    fs->clients = wc;
}

/* ---------- rest-hooks ---------- */

static void hook_notify(void *arg)
{
    struct front_sub *fs = arg;
    uint64_t one = 1;
    if (write(fs->hook_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_write_failed", "errno=%d", errno);
}

static void hook_pump(struct front_sub *fs, struct sub *s)
{
    if (!s->hook) return;
    int failing = 0;
    char why[64];
    uint64_t done = hdx_hook_delivered(s->hook, &failing, why, sizeof(why));
    s->failing = failing;
    snprintf(s->error, sizeof(s->error), "%s", why);
    if (done && done == s->offers && (s->offered_handshake || s->offered_upto)) {
        if (s->offered_handshake) s->handshaken = 1;
        if (s->offered_upto > s->delivered) s->delivered = s->offered_upto;
        s->offered_handshake = 0;
        s->offered_upto = 0;
        if (state_save(fs, s) != HDX_OK)
            hdx_error("fhir_sub_state_failed", "subscription=%s", s->id);
    }
    if (!hdx_hook_idle(s->hook) || s->spec.off) return;
    enum hdx_sub_note note;
    uint64_t from = 0, to = 0;
    if (!s->handshaken) {
        note = HDX_SUB_HANDSHAKE;
    } else if (s->delivered < s->audited) {
        note = HDX_SUB_EVENT;
        from = s->delivered + 1;
        to = s->audited - s->delivered > s->spec.max_count ? s->delivered + s->spec.max_count
                                                           : s->audited;
    } else if (s->spec.heartbeat_s &&
               hdx_monotonic_us() - s->last_note_us >= (int64_t)s->spec.heartbeat_s * 1000000) {
        note = HDX_SUB_HEARTBEAT;
    } else {
        return;
    }
    size_t len = 0;
    char *text = note_text(fs, s, note, from, to, s->spec.content, NULL, &len, NULL);
    if (!text) return;
    s->offers++;
    s->offered_handshake = note == HDX_SUB_HANDSHAKE;
    s->offered_upto = to;
    s->last_note_us = hdx_monotonic_us();
    hdx_hook_offer(s->hook, text, len, s->offers);
}

static void on_hook(evutil_socket_t fd, short what, void *arg)
{
    struct front_sub *fs = arg;
    uint64_t n;
    if (read(fs->hook_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        hdx_error("eventfd_read_failed", "errno=%d", errno);
    for (size_t i = 0; i < fs->nsubs; i++)
        hook_pump(fs, fs->subs[i]);
}

/* ---------- the subscriptions ---------- */

static void sub_drop(struct front_sub *fs, size_t i)
{
    struct sub *s = fs->subs[i];
    for (struct ws_client *wc = fs->clients; wc; wc = wc->next)
        for (size_t k = 0; k < wc->nbinds; k++)
            if (wc->binds[k].s == s) {
                wc->binds[k].s = NULL;
                hdx_ws_close(wc->w, 1000, "the subscription ended");
            }
    hdx_hook_stop(s->hook);
    sqlite3_reset(fs->del_sub);
    sqlite3_bind_text(fs->del_sub, 1, s->id, -1, SQLITE_STATIC);
    if (sqlite3_step(fs->del_sub) != SQLITE_DONE)
        hdx_error("fhir_sub_state_failed", "subscription=%s", s->id);
    db_exec(fs->db, "DELETE FROM sub_event WHERE id NOT IN (SELECT id FROM sub_state)");
    free(s->bound);
    sodium_memzero(s, sizeof(*s));
    free(s);
    fs->subs[i] = fs->subs[--fs->nsubs];
}

static int seen_one(void *ctx, const struct hdx_fhir_row *row)
{
    struct front_sub *fs = ctx;
    struct sub *s = NULL;
    for (size_t i = 0; i < fs->nsubs; i++)
        if (!strcmp(fs->subs[i]->id, row->id)) s = fs->subs[i];
    if (s && s->version == row->version) {
        s->seen = 1;
        return 0;
    }
    int err;
    json_t *res = hdx_front_fhir_load(fs->f, row, &err);
    const char *owner = res ? owner_tag(res) : NULL;
    struct hdx_sub_spec spec;
    char path[96], why[128];
    if (!res || !owner || strlen(owner) >= OWNER_MAX ||
        hdx_sub_parse(res, &spec, path, sizeof(path), why, sizeof(why)) != HDX_OK) {
        json_decref(res);
        if (s) s->seen = 1; /* keeps what it was */
        return 0;
    }
    if (!s) {
        if (fs->nsubs == fs->cap) {
            size_t cap = fs->cap ? fs->cap * 2 : 16;
            struct sub **n = realloc(fs->subs, cap * sizeof(*n));
            if (!n) {
                json_decref(res);
                return 1;
            }
            fs->subs = n;
            fs->cap = cap;
        }
        s = calloc(1, sizeof(*s));
        if (!s) {
            json_decref(res);
            return 1;
        }
        snprintf(s->id, sizeof(s->id), "%s", row->id);
        state_load(fs, s);
        s->last_note_us = hdx_monotonic_us();
        fs->subs[fs->nsubs++] = s;
    }
    int endpoint_changed = strcmp(s->spec.endpoint, spec.endpoint) != 0 ||
                           s->spec.nheaders != spec.nheaders ||
                           memcmp(s->spec.headers, spec.headers, sizeof(spec.headers)) != 0;
    s->spec = spec;
    s->version = row->version;
    snprintf(s->owner, sizeof(s->owner), "%s", owner);
    s->seen = 1;
    json_decref(res);
    if (s->hook && (endpoint_changed || spec.channel != HDX_SUB_REST_HOOK)) {
        hdx_hook_stop(s->hook);
        s->hook = NULL;
        s->offered_handshake = 0;
        s->offered_upto = 0;
        if (endpoint_changed) s->handshaken = 0; /* a new receiver is asked first */
    }
    if (!s->hook && spec.channel == HDX_SUB_REST_HOOK) {
        const struct hdx_conf *conf = fs->f->env.conf;
        struct hdx_hook_conf hc = {.name = s->id,
                                   .endpoint = spec.endpoint,
                                   .nheaders = spec.nheaders,
                                   .ca_file = fs->ca,
                                   .timeout_ms = conf->fhir_sub_timeout_ms,
                                   .backoff_ms = 500,
                                   .backoff_max_ms = conf->fhir_sub_backoff_max_ms,
                                   .notify = hook_notify,
                                   .arg = fs};
        for (size_t i = 0; i < spec.nheaders; i++)
            hc.headers[i] = s->spec.headers[i];
        if (hdx_hook_start(&hc, &s->hook) != HDX_OK)
            hdx_error("fhir_resthook_start_failed", "subscription=%s", s->id);
        s->offers = 0;
    }
    if (state_save(fs, s) != HDX_OK) hdx_error("fhir_sub_state_failed", "subscription=%s", s->id);
    return 0;
}

static int sub_cmp(const void *a, const void *b)
{
    return strcmp((*(struct sub *const *)a)->id, (*(struct sub *const *)b)->id);
}

/* The subscriptions as the view has them, kept in id order (sub_find: a binary search, once
 * per event of a fan-out). */
static void refresh(struct front_sub *fs)
{
    for (size_t i = 0; i < fs->nsubs; i++)
        fs->subs[i]->seen = 0;
    struct hdx_fhir_query q = {.type = "Subscription"};
    long n = hdx_fhir_index_query(fs->ix, &q, 0, seen_one, fs);
    if (n < 0)
        hdx_error("fhir_sub_refresh_failed", "err=%s", hdx_strerror((int)n));
    else
        for (size_t i = fs->nsubs; i-- > 0;)
            if (!fs->subs[i]->seen) sub_drop(fs, i);
    if (fs->nsubs) qsort(fs->subs, fs->nsubs, sizeof(fs->subs[0]), sub_cmp);
}

/* ---------- numbering and audit ---------- */

struct audit_wait {
    struct front_sub *fs;
    char sub_id[HDX_FHIR_ID_MAX + 1];
    uint64_t upto;
    unsigned pending;
    int failed;
};

static void deliver(struct front_sub *fs, struct sub *s)
{
    for (size_t i = 0; i < s->nbound; i++) {
        struct ws_client *wc = s->bound[i];
        for (size_t k = 0; k < wc->nbinds; k++)
            if (wc->binds[k].s == s) ws_pump(wc, &wc->binds[k]);
    }
    hook_pump(fs, s);
}

static void audit_done(void *arg, const struct hdx_intake_item *it)
{
    struct audit_wait *aw = arg;
    if (it->status != HDX_OK) aw->failed = 1;
    if (--aw->pending) return;
    struct front_sub *fs = aw->fs;
    struct sub *s = fs ? sub_find(fs, aw->sub_id) : NULL;
    if (s && aw->failed) {
        hdx_error("fhir_sub_audit_failed", "subscription=%s", s->id);
        s->auditing = s->audited; /* asked again at the next pass, the next tick at the latest */
        fs->more = 1;
    } else if (s && aw->upto > s->audited) {
        s->audited = aw->upto;
        s->audited_dirty = 1; /* written with the next pass or tick: a restart audits again */
        deliver(fs, s);
    }
    free(aw);
}

/* first..last: the records (log seqs) of the Observation versions disclosed, as a read's
 * audit record names them; events: the subscription's event numbers (0: none). */
static void audit_submit(struct front_sub *fs, struct audit_wait *aw, const struct sub *s,
                         const char *outcome, const char *reason, const uint8_t *patient,
                         uint64_t first, uint64_t last, uint64_t count, uint64_t ev_first,
                         uint64_t ev_last)
{
    char detail[200];
    int n = snprintf(detail, sizeof(detail),
                     "session=subscription purpose=treatment route=subscription:%s", s->id);
    if (ev_first && n > 0 && (size_t)n < sizeof(detail))
        snprintf(detail + n, sizeof(detail) - (size_t)n, " events=%llu-%llu",
                 (unsigned long long)ev_first, (unsigned long long)ev_last);
    const char *colon = strchr(s->owner, ':');
    struct hdx_audit a = {.event = "access",
                          .action = "notify",
                          .outcome = outcome,
                          .reason = reason,
                          .principal = colon ? colon + 1 : s->owner,
                          /* the owner's role as the policy judged it (its standing) */
                          .role = s->standing_who.role_name[0] ? s->standing_who.role_name : "-",
                          .source = "subscription",
                          .cert = "-",
                          .patient = patient,
                          .first_seq = first,
                          .last_seq = last,
                          .count = count,
                          .detail = detail};
    struct hdx_intake_item *it = hdx_audit_item_new(&a);
    if (!it) {
        aw->failed = 1;
        return;
    }
    it->on_done = audit_done;
    it->done_arg = aw;
    aw->pending++;
    fs->f->env.submit(fs->f->env.arg, it);
}

/* The disclosure records of events (auditing, number]: one per patient, counts and numbers. */
static void audit_start(struct front_sub *fs, struct sub *s, uint64_t denied,
                        enum hdx_policy_reason deny_reason)
{
    if (s->number <= s->auditing && !denied) return;
    struct audit_wait *aw = calloc(1, sizeof(*aw));
    if (!aw) return;
    aw->fs = fs;
    snprintf(aw->sub_id, sizeof(aw->sub_id), "%s", s->id);
    aw->upto = s->number;
    aw->pending = 1; /* held until every record is submitted */
    /* per patient: the records disclosed and the event numbers, one audit record each */
    struct tally *t = calloc(1, sizeof(*t));
    uint64_t ev_first[TALLY_MAX], ev_last[TALLY_MAX];
    for (uint64_t num = s->auditing + 1; t && num <= s->number; num++) {
        struct stored_event e;
        if (sub_event_get(fs, s, num, &e) != HDX_OK) continue;
        size_t before = t->n;
        if (hdx_front_tally_add(t, e.has_patient ? e.patient : NULL, e.seq, 0)) {
            for (size_t i = 0; i < t->n; i++)
                audit_submit(fs, aw, s, "permit", "-", t->e[i].has_patient ? t->e[i].patient : NULL,
                             t->e[i].first, t->e[i].last, t->e[i].count, ev_first[i], ev_last[i]);
            memset(t, 0, sizeof(*t));
            before = 0;
            hdx_front_tally_add(t, e.has_patient ? e.patient : NULL, e.seq, 0);
        }
        /* which entry it went to: a new one is the last; else find it */
        size_t k = t->n - 1;
        if (t->n == before)
            for (k = 0; k < t->n; k++)
                if (t->e[k].has_patient == e.has_patient &&
                    (!e.has_patient || !memcmp(t->e[k].patient, e.patient, HDX_BLIND_LEN)))
                    break;
        if (k >= t->n) k = t->n - 1; /* (an all-zero token: the tally's no-patient entry) */
        if (t->n != before) ev_first[k] = num;
        ev_last[k] = num;
    }
    for (size_t i = 0; t && i < t->n; i++)
        audit_submit(fs, aw, s, "permit", "-", t->e[i].has_patient ? t->e[i].patient : NULL,
                     t->e[i].first, t->e[i].last, t->e[i].count, ev_first[i], ev_last[i]);
    if (denied)
        audit_submit(fs, aw, s, "deny", hdx_policy_reason_name(deny_reason), NULL, 0, 0, denied, 0,
                     0);
    if (t) sodium_memzero(t, sizeof(*t));
    free(t);
    if (!t) aw->failed = 1;
    s->auditing = s->number;
    struct hdx_intake_item none = {.status = HDX_OK};
    audit_done(aw, &none); /* the hold */
}

struct number_pass {
    struct front_sub *fs;
    struct hdx_fhir_event_pos pos;
    int rc;
};

/* One event of the log for one subscription: authorized for its owner now, then numbered. */
static int number_one(void *ctx, const char *sub_id, const struct hdx_fhir_row *row)
{
    struct number_pass *np = ctx;
    np->pos.seq = row->seq;
    np->pos.part = row->part;
    snprintf(np->pos.sub, sizeof(np->pos.sub), "%s", sub_id);
    struct sub *s = sub_find(np->fs, sub_id);
    if (!s) return 0; /* deleted since */
    const struct asker *who;
    int standing = sub_standing(np->fs, s, &who);
    struct hdx_policy_decision d;
    if (!may_disclose(np->fs, who, standing, row->has_patient ? row->patient : NULL, &d)) {
        if (!s->pass_denied++) s->pass_deny_reason = d.reason;
        return 0;
    }
    sqlite3_stmt *st = np->fs->put_event;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, s->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(s->number + 1));
    sqlite3_bind_text(st, 3, row->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, row->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, row->version);
    sqlite3_bind_int64(st, 6, row->updated_us);
    if (row->has_patient)
        sqlite3_bind_blob(st, 7, row->patient, HDX_BLIND_LEN, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)row->seq);
    if (sqlite3_step(st) != SQLITE_DONE) {
        np->rc = HDX_E_STORE;
        return 1;
    }
    s->number++;
    s->dirty = 1;
    struct stored_event *c = &s->recent[s->number % RECENT];
    memset(c, 0, sizeof(*c));
    snprintf(c->type, sizeof(c->type), "%s", row->type);
    snprintf(c->rid, sizeof(c->rid), "%s", row->id);
    c->version = row->version;
    c->seq = row->seq;
    c->time_us = row->updated_us;
    c->has_patient = row->has_patient;
    if (row->has_patient) memcpy(c->patient, row->patient, HDX_BLIND_LEN);
    s->recent_num[s->number % RECENT] = s->number;
    return 0;
}

static int pos_save(struct front_sub *fs)
{
    sqlite3_stmt *st = fs->put_pos;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)fs->pos.seq);
    sqlite3_bind_int64(st, 2, fs->pos.part);
    sqlite3_bind_text(st, 3, fs->pos.sub, -1, SQLITE_STATIC);
    return sqlite3_step(st) == SQLITE_DONE ? HDX_OK : HDX_E_STORE;
}

/* At start, once the view has caught up with the log as it was. */
static void maybe_refresh(struct front_sub *fs)
{
    if (fs->refresh && hdx_fhir_index_through(fs->ix) >= fs->refresh_at) {
        fs->refresh = 0;
        refresh(fs);
        /* and a pass soon, whoever asked: what a stop left unaudited or unnumbered is done
         * then, even when no index pass comes (a view already caught up at start) */
        fs->more = 1;
    }
}

void hdx_front_sub_indexed(struct hdx_front *f)
{
    struct front_sub *fs = fs_of(f);
    if (!fs) return;
    maybe_refresh(fs);
    uint64_t added = hdx_fhir_index_events_added(fs->ix);
    if (!fs->nsubs || (added == fs->events_seen && !fs->more)) return;
    fs->events_seen = added;
    fs->more = 0;
    if (db_exec(fs->db, "BEGIN") != HDX_OK) return;
    struct number_pass np = {.fs = fs, .pos = fs->pos};
    /* every subscription's events in one read, in log order: the fan-out of one event to many
     * subscriptions costs one query, not one per subscription */
    long n = hdx_fhir_index_events(fs->ix, &fs->pos, EVENTS_PER_PASS, number_one, &np);
    int rc = n < 0 ? (int)n : np.rc;
    if (n == EVENTS_PER_PASS) fs->more = 1; /* the next tick goes on */
    for (size_t i = 0; i < fs->nsubs && rc == HDX_OK; i++)
        if (fs->subs[i]->dirty) rc = state_save(fs, fs->subs[i]);
    struct hdx_fhir_event_pos before = fs->pos;
    fs->pos = np.pos;
    if (rc == HDX_OK) rc = pos_save(fs);
    if (rc == HDX_OK) rc = db_exec(fs->db, "COMMIT");
    if (rc != HDX_OK) {
        db_exec(fs->db, "ROLLBACK");
        hdx_error("fhir_sub_number_failed", "err=%s", hdx_strerror(rc));
        fs->more = 1; /* again at the next tick */
        fs->pos = before;
        for (size_t i = 0; i < fs->nsubs; i++) {
            state_load(fs, fs->subs[i]); /* as the file says */
            fs->subs[i]->pass_denied = 0;
            memset(fs->subs[i]->recent_num, 0, sizeof(fs->subs[i]->recent_num));
        }
        return;
    }
    for (size_t i = 0; i < fs->nsubs; i++) {
        struct sub *s = fs->subs[i];
        s->dirty = 0;
        if (s->number > s->auditing || s->pass_denied)
            audit_start(fs, s, s->pass_denied, s->pass_deny_reason);
        s->pass_denied = 0;
    }
}

void hdx_front_sub_admin(struct hdx_front *f)
{
    struct front_sub *fs = fs_of(f);
    if (fs) fs->policy_gen++;
}

void hdx_front_sub_changed(struct hdx_front *f)
{
    struct front_sub *fs = fs_of(f);
    if (!fs) return;
    refresh(fs);
    hdx_front_sub_indexed(f);
}

void hdx_front_sub_tick(struct hdx_front *f)
{
    struct front_sub *fs = fs_of(f);
    if (!fs) return;
    if (fs->more || fs->refresh) hdx_front_sub_indexed(f);
    int64_t now = hdx_monotonic_us();
    for (struct ws_client *wc = fs->clients; wc; wc = wc->next) {
        if (!wc->nbinds && now - wc->opened_us > WS_BIND_TIMEOUT_US) {
            hdx_ws_close(wc->w, 1008, "no bind-with-token in time");
            continue;
        }
        for (size_t k = 0; k < wc->nbinds; k++) {
            struct ws_bind *b = &wc->binds[k];
            if (!b->s || !b->s->spec.heartbeat_s ||
                now - b->last_us < (int64_t)b->s->spec.heartbeat_s * 1000000)
                continue;
            size_t len = 0;
            char *text =
                note_text(fs, b->s, HDX_SUB_HEARTBEAT, 0, 0, b->s->spec.content, NULL, &len, NULL);
            if (text && hdx_ws_queued(wc->w) < WS_QUEUE_MAX) hdx_ws_send_text(wc->w, text, len);
            free(text);
            b->last_us = now;
        }
    }
    int any = 0;
    for (size_t i = 0; i < fs->nsubs; i++) {
        hook_pump(fs, fs->subs[i]);
        any |= fs->subs[i]->audited_dirty;
    }
    if (any && db_exec(fs->db, "BEGIN") == HDX_OK) {
        int rc = HDX_OK;
        for (size_t i = 0; i < fs->nsubs && rc == HDX_OK; i++)
            if (fs->subs[i]->audited_dirty) rc = state_save(fs, fs->subs[i]);
        if (rc == HDX_OK && db_exec(fs->db, "COMMIT") == HDX_OK) {
            for (size_t i = 0; i < fs->nsubs; i++)
                fs->subs[i]->audited_dirty = 0;
        } else {
            db_exec(fs->db, "ROLLBACK");
        }
    }
    for (size_t i = 0; i < TOKENS_MAX; i++)
        if (fs->tokens[i].token[0] && fs->tokens[i].expires_us <= now)
            memset(&fs->tokens[i], 0, sizeof(fs->tokens[i]));
}

/* ---------- writes and operations ---------- */

static struct sub *sub_find(struct front_sub *fs, const char *id)
{
    size_t lo = 0, hi = fs->nsubs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(fs->subs[mid]->id, id);
        if (!c) return fs->subs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int hdx_front_sub_owns(struct hdx_front *f, const struct asker *who, const json_t *res)
{
    char mine[OWNER_MAX];
    const char *owner = owner_tag(res);
    return owner && owner_of(who, mine, sizeof(mine)) == 0 && !strcmp(owner, mine);
}

int hdx_front_sub_prepare(struct hdx_front *f, const struct asker *who, json_t *res,
                          const json_t *prior, int *has_patient, uint8_t *patient,
                          struct hdx_http_reply *r)
{
    struct front_sub *fs = fs_of(f);
    char owner[OWNER_MAX], path[96], why[160];
    struct hdx_sub_spec spec;
    *has_patient = 0;
    if (owner_of(who, owner, sizeof(owner)) != 0) {
        hdx_front_fhir_outcome(r, 403, "forbidden",
                               "a Subscription is owned by a user (with MFA), an API key or a "
                               "SMART client",
                               NULL);
        return -1;
    }
    if (who->smart && !hdx_smart_scope_allows(&who->smart->scopes, "system", "Observation", 'r')) {
        hdx_front_fhir_outcome(r, 403, "forbidden",
                               "the token's scopes do not cover reading Observation", NULL);
        return -1;
    }
    if (hdx_sub_parse(res, &spec, path, sizeof(path), why, sizeof(why)) != HDX_OK) {
        hdx_front_fhir_outcome(r, 422, "processing", why, path);
        return -1;
    }
    if (prior) {
        struct hdx_sub_spec old;
        if (!hdx_front_sub_owns(f, who, prior)) {
            hdx_front_fhir_outcome(r, 403, "forbidden", "only its owner may change a Subscription",
                                   NULL);
            return -1;
        }
        if (hdx_sub_parse(prior, &old, path, sizeof(path), why, sizeof(why)) == HDX_OK &&
            !hdx_sub_same_filter(&old, &spec)) {
            hdx_front_fhir_outcome(r, 422, "processing",
                                   "the filter of a Subscription cannot change: create another",
                                   "Subscription.criteria");
            return -1;
        }
    } else if (fs->nsubs >= (size_t)f->env.conf->fhir_sub_max) {
        hdx_front_fhir_outcome(r, 422, "processing",
                               "too many Subscriptions (fhir.subscriptions_max)", NULL);
        return -1;
    }
    if (spec.patient_id[0]) {
        struct hdx_fhir_row row;
        struct hdx_policy_decision d;
        if (hdx_fhir_index_get(fs->ix, "Patient", spec.patient_id, 0, &row) != HDX_OK ||
            row.deleted || !row.has_patient) {
            hdx_front_fhir_outcome(r, 422, "processing", "the filter's Patient does not exist",
                                   "Subscription.criteria");
            return -1;
        }
        hdx_front_decide(f->api, who, HDX_ACT_SUBSCRIBE, HDX_RES_RECORD, row.patient, &d);
        if (!d.permit) { /* exactly like one that does not exist */
            hdx_front_fhir_outcome(r, 422, "processing", "the filter's Patient does not exist",
                                   "Subscription.criteria");
            return -1;
        }
        *has_patient = 1;
        memcpy(patient, row.patient, HDX_BLIND_LEN);
    } else {
        struct hdx_policy_decision d;
        hdx_front_decide(f->api, who, HDX_ACT_SUBSCRIBE, HDX_RES_RECORD, NULL, &d);
        if (!d.permit && d.reason != HDX_PR_NOT_ON_CARE_TEAM && d.reason != HDX_PR_NO_PATIENT) {
            char msg[96];
            snprintf(msg, sizeof(msg), "not permitted: %s", hdx_policy_reason_name(d.reason));
            hdx_front_fhir_outcome(r, 403, "forbidden", msg, NULL);
            return -1;
        }
    }
    /* the server's: the status it runs, and who owns it */
    json_object_set_new(res, "status", json_string(spec.off ? "off" : "active"));
    json_t *meta = json_object_get(res, "meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(res, "meta", meta);
    }
    json_t *tags = json_array(), *old = json_object_get(meta, "tag");
    size_t i;
    json_t *t;
    json_array_foreach(old, i, t)
    {
        const char *sys = json_string_value(json_object_get(t, "system"));
        if (!sys || strcmp(sys, OWNER_SYSTEM) != 0) json_array_append(tags, t);
    }
    json_array_append_new(tags, json_pack("{s:s, s:s}", "system", OWNER_SYSTEM, "code", owner));
    json_object_set_new(meta, "tag", tags);
    return 0;
}

static uint64_t number_param(const struct http_req *req, const char *name, uint64_t dflt, int *bad)
{
    char v[24];
    int n = http_query_get(req, name, v, sizeof(v));
    if (n == -1) return dflt;
    char *end;
    unsigned long long x = n > 0 ? strtoull(v, &end, 10) : 0;
    if (n <= 0 || *end || v[0] == '-') {
        *bad = 1;
        return 0;
    }
    return (uint64_t)x;
}

void hdx_front_sub_operation(struct hdx_front *f, struct hdx_conn *c, const struct http_req *req,
                             const struct asker *who, const char *id, const char *op,
                             struct hdx_http_reply *r)
{
    struct front_sub *fs = fs_of(f);
    maybe_refresh(fs);
    if (fs->refresh) {
        hdx_front_fhir_outcome(r, 503, "transient",
                               "the subscriptions are being read after a start; ask again", NULL);
        snprintf(r->extra, sizeof(r->extra), "Retry-After: 1\r\n");
        return;
    }
    struct sub *s = sub_find(fs, id);
    struct hdx_fhir_row row;
    int err;
    json_t *res = NULL;
    if (s && hdx_fhir_index_get(fs->ix, "Subscription", id, 0, &row) == HDX_OK && !row.deleted)
        res = hdx_front_fhir_load(f, &row, &err);
    int mine = res && hdx_front_sub_owns(f, who, res);
    json_decref(res);
    if (!mine) { /* another's is answered exactly like none */
        char msg[120];
        snprintf(msg, sizeof(msg), "Subscription/%s is not known", id);
        hdx_front_fhir_outcome(r, 404, "not-found", msg, NULL);
        return;
    }
    if (!strcmp(op, "$status")) {
        size_t len = 0;
        r->body = note_text(fs, s, HDX_SUB_QUERY_STATUS, 0, 0, s->spec.content, who, &len, NULL);
        r->body_len = len;
        r->status = r->body ? 200 : 503;
        r->content_type = "application/fhir+json";
        return;
    }
    if (!strcmp(op, "$get-ws-binding-token")) {
        if (s->spec.channel != HDX_SUB_WEBSOCKET) {
            hdx_front_fhir_outcome(r, 422, "processing",
                                   "the Subscription's channel is not websocket",
                                   "Subscription.channel.type");
            return;
        }
        struct bind_token *t = NULL;
        int64_t now = hdx_monotonic_us();
        for (size_t i = 0; i < TOKENS_MAX && !t; i++)
            if (!fs->tokens[i].token[0] || fs->tokens[i].expires_us <= now) t = &fs->tokens[i];
        if (!t) {
            hdx_front_fhir_outcome(r, 503, "transient", "too many binding tokens; ask again", NULL);
            return;
        }
        uint8_t raw[24];
        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(t->token, sizeof(t->token), raw, sizeof(raw));
        snprintf(t->sub_id, sizeof(t->sub_id), "%s", s->id);
        t->expires_us = now + TOKEN_TTL_US;
        char exp[40], ref[HDX_FHIR_ID_MAX + 16];
        hdx_fhir_instant(hdx_now_us() + TOKEN_TTL_US, exp, sizeof(exp));
        snprintf(ref, sizeof(ref), "Subscription/%s", s->id);
        json_t *p =
            json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}", "resourceType",
                      "Parameters", "parameter", "name", "token", "valueString", t->token, "name",
                      "expiration", "valueDateTime", exp, "name", "subscription", "valueString",
                      ref, "name", "websocket-url", "valueUrl", fs->ws_url);
        hdx_front_fhir_answer(r, 200, p);
        return;
    }
    /* $events */
    int bad = 0;
    uint64_t since = number_param(req, "eventsSinceNumber", 1, &bad);
    uint64_t until = number_param(req, "eventsUntilNumber", s->audited, &bad);
    char content[24];
    int cn = http_query_get(req, "content", content, sizeof(content));
    enum hdx_sub_content ct = s->spec.content;
    if (cn > 0 && !strcmp(content, "empty"))
        ct = HDX_SUB_EMPTY;
    else if (cn > 0 && !strcmp(content, "id-only"))
        ct = HDX_SUB_ID_ONLY;
    else if (cn > 0 && !strcmp(content, "full-resource"))
        ct = HDX_SUB_FULL;
    else if (cn != -1)
        bad = 1;
    if (bad) {
        hdx_front_fhir_outcome(r, 400, "invalid",
                               "eventsSinceNumber and eventsUntilNumber are numbers; content is "
                               "empty, id-only or full-resource",
                               NULL);
        return;
    }
    if (!since) since = 1;
    if (until > s->audited) until = s->audited;
    if (until >= since && until - since >= EVENTS_QUERY_MAX) until = since + EVENTS_QUERY_MAX - 1;
    struct tally *t = calloc(1, sizeof(*t));
    if (!t) {
        hdx_front_fhir_outcome(r, 503, "transient", "out of memory", NULL);
        return;
    }
    size_t len = 0;
    r->body = note_text(fs, s, HDX_SUB_QUERY_EVENT, until >= since ? since : 0,
                        until >= since ? until : 0, ct, who, &len, t);
    hdx_front_tally_flush(f->api, c, who, t, "read", "fhir");
    free(t);
    r->body_len = len;
    r->status = r->body ? 200 : 503;
    r->content_type = "application/fhir+json";
}

/* ---------- set-up ---------- */

int hdx_front_sub_init(struct hdx_front *f, struct hdx_fhir_index *ix, char *why, size_t cap)
{
    const struct hdx_conf *conf = f->env.conf;
    struct front_sub *fs = calloc(1, sizeof(*fs));
    if (!fs) return HDX_E_NOMEM;
    f->sub = fs;
    fs->f = f;
    fs->ix = ix;
    fs->hook_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const char *base = hdx_front_fhir_base(f);
    snprintf(fs->ws_url, sizeof(fs->ws_url), "%s%s/ws", !strncmp(base, "https", 5) ? "wss" : "ws",
             !strncmp(base, "https", 5) ? base + 5 : base + 4);
    if (conf->fhir_sub_ca[0] &&
        hdx_conf_path(conf, conf->fhir_sub_ca, fs->ca, sizeof(fs->ca)) != HDX_OK) {
        snprintf(why, cap, "fhir.subscription_ca: the path is too long");
        return HDX_E_CONFIG;
    }
    char db[HDX_PATH_MAX + 24];
    snprintf(db, sizeof(db), "%s/subscriptions.db", conf->dir);
    int rc = fs->hook_fd < 0 ? HDX_E_IO : HDX_OK;
    if (rc == HDX_OK &&
        (sqlite3_open_v2(db, &fs->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL) != SQLITE_OK ||
         db_exec(fs->db, state_schema) != HDX_OK ||
         /* WAL with synchronous NORMAL: a kill -9 loses no committed number (a power cut may
          * take back the last ones, never handed out twice since the events are not yet sent
          * until audited, and the audit records are in the log) */
         db_exec(fs->db, "PRAGMA synchronous=NORMAL;") != HDX_OK ||
         (sqlite3_exec(fs->db, "SELECT seq FROM sub_event LIMIT 0", NULL, NULL, NULL) !=
              SQLITE_OK &&
          db_exec(fs->db, "ALTER TABLE sub_event ADD COLUMN seq INTEGER NOT NULL DEFAULT 0") !=
              HDX_OK) ||
         sqlite3_prepare_v2(fs->db, "INSERT OR REPLACE INTO sub_state VALUES(?1,?2,?3,?4,?5,?6,?7)",
                            -1, &fs->put_state, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(fs->db,
                            "INSERT OR REPLACE INTO sub_event VALUES(?1,?2,?3,?4,?5,?6,?7,?8)", -1,
                            &fs->put_event, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(fs->db,
                            "SELECT type, rid, version, time_us, patient, seq FROM sub_event"
                            " WHERE id = ?1 AND number = ?2",
                            -1, &fs->get_event, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(fs->db,
                            "SELECT number, audited, delivered, pos_seq, pos_part, handshaken"
                            " FROM sub_state WHERE id = ?1",
                            -1, &fs->get_state, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(fs->db, "DELETE FROM sub_state WHERE id = ?1", -1, &fs->del_sub,
                            NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(fs->db, "INSERT OR REPLACE INTO sub_pos VALUES(1, ?1, ?2, ?3)", -1,
                            &fs->put_pos, NULL) != SQLITE_OK)) {
        snprintf(why, cap, "cannot open %s: %s", db, fs->db ? sqlite3_errmsg(fs->db) : "no memory");
        rc = HDX_E_STORE;
    }
    if (rc == HDX_OK && chmod(db, 0600) != 0) rc = HDX_E_IO;
    sqlite3_stmt *st = NULL;
    if (rc == HDX_OK &&
        sqlite3_prepare_v2(fs->db, "SELECT seq, part, sub FROM sub_pos WHERE k = 1", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        fs->pos.seq = (uint64_t)sqlite3_column_int64(st, 0);
        fs->pos.part = (uint32_t)sqlite3_column_int64(st, 1);
        snprintf(fs->pos.sub, sizeof(fs->pos.sub), "%s", (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    if (rc == HDX_OK &&
        !(fs->hook_ev = event_new(f->env.base, fs->hook_fd, EV_READ | EV_PERSIST, on_hook, fs)))
        rc = HDX_E_NOMEM;
    if (rc == HDX_OK && event_add(fs->hook_ev, NULL)) rc = HDX_E_NOMEM;
    if (rc != HDX_OK && !why[0]) snprintf(why, cap, "cannot set up Subscriptions");
    uint64_t last = 0;
    if (rc == HDX_OK &&
        hdx_store_last(f->env.ro_store, &last, (uint8_t[HDX_HASH_LEN]){0}, NULL) != HDX_OK)
        last = 0;
    fs->refresh = 1;
    fs->refresh_at = last;        /* once the view has caught up with the log as it is now */
    fs->events_seen = UINT64_MAX; /* the first pass numbers what a stop left */
    fs->policy_gen = 1;
    return rc;
}

void hdx_front_sub_free(struct hdx_front *f)
{
    struct front_sub *fs = fs_of(f);
    if (!fs) return;
    for (size_t i = 0; i < fs->nsubs; i++) {
        hdx_hook_stop(fs->subs[i]->hook);
        free(fs->subs[i]->bound);
        sodium_memzero(fs->subs[i], sizeof(*fs->subs[i]));
        free(fs->subs[i]);
    }
    free(fs->subs);
    for (struct ws_client *wc = fs->clients; wc; wc = wc->next)
        wc->fs = NULL;
    sqlite3_finalize(fs->put_state);
    sqlite3_finalize(fs->put_event);
    sqlite3_finalize(fs->get_event);
    sqlite3_finalize(fs->get_state);
    sqlite3_finalize(fs->del_sub);
    sqlite3_finalize(fs->put_pos);
    sqlite3_close(fs->db);
    if (fs->hook_ev) event_free(fs->hook_ev);
    if (fs->hook_fd >= 0) close(fs->hook_fd);
    sodium_memzero(fs->tokens, sizeof(fs->tokens));
    free(fs);
    f->sub = NULL;
}
