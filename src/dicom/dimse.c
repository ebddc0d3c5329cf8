/* dimse: DIMSE command sets (see dimse.h for the contract).
 *
 * DESIGN: the parser is a visitor on dataset.h's walker in Implicit VR LE with depth 0 (a
 * command set holds no sequence), so every byte is read under the walker's bounds; the
 * visitor only checks lengths and copies the few fields hdx acts on. The builder writes
 * into the caller's buffer through a bounds-checked cursor and patches the group length.
 *
 * Choices where PS3.7 leaves room:
 *  - Elements must come in strictly ascending tag order (PS3.5 7.1): a repeated field would
 *    leave two readings of one command.
 *  - (0000,0000) must be UL of length 4 and, when present, equal the bytes after it; an
 *    absent one is tolerated (old peers), as dcmtk does.
 *  - Fields hdx does not act on (move destination, priority of a response, attribute lists)
 *    are skipped after the walker has bounded them.
 *  - A response with a data set says 0x0102 in (0000,0800): PS3.7 E.1 counts any value
 *    other than 0x0101 as present, and 0x0102 is what dcmtk sends.
 *  - A UID field may carry one trailing NUL or space pad (PS3.5 6.2); it is removed, and
 *    any byte but a digit or '.' is refused (PS3.5 9.1), as dicom/ul.c does, so a UID never
 *    compares equal to a known one by an embedded NUL. */
#include "dicom/dimse.h"

#include <stdbool.h>
#include <string.h>

#include "core/err.h"

#define DIMSE_MAX_ELEMENTS 256
#define DIMSE_DATA_SET_PRESENT 0x0102

struct parse_ctx {
    struct hdx_dimse_cmd *cmd;
    const char *why;
    uint32_t last_tag;
    bool any;
    size_t n;
};

static int fail(struct parse_ctx *x, const char *why)
{
    x->why = why;
    return HDX_E_INVAL;
}

static int get_us(struct parse_ctx *x, const struct hdx_ds_elem *e, uint16_t *v)
{
    if (e->value_len != 2) return fail(x, "US field of a length other than 2");
    *v = (uint16_t)((unsigned)e->value[1] << 8 | e->value[0]);
    return 0;
}

static int get_uid(struct parse_ctx *x, const struct hdx_ds_elem *e, char *out)
{
    size_t len = e->value_len;

    if (len > 0 && (e->value[len - 1] == '\0' || e->value[len - 1] == ' ')) len--;
    if (len > HDX_DS_UID_MAX) return fail(x, "UID longer than 64 bytes");
    for (size_t i = 0; i < len; i++)
        if ((e->value[i] < '0' || e->value[i] > '9') && e->value[i] != '.')
            return fail(x, "UID with a byte other than a digit or '.'");
    if (len > 0) memcpy(out, e->value, len);
    out[len] = '\0';
    return 0;
}

static int parse_visit(void *arg, const struct hdx_ds_elem *e)
{
    struct parse_ctx *x = arg;
    struct hdx_dimse_cmd *c = x->cmd;
    uint32_t tag = (uint32_t)e->group << 16 | e->element;

    if (e->group != 0x0000) return fail(x, "element outside group 0000");
    if (x->any && tag <= x->last_tag) return fail(x, "elements out of ascending order");
    x->any = true;
    x->last_tag = tag;
    if (e->value == NULL && e->length != 0) return fail(x, "command element is not a value");
    switch (e->element) {
    case 0x0000: {
        if (e->offset != 0 || e->value_len != 4) return fail(x, "bad command group length");
        uint32_t gl = (uint32_t)e->value[0] | (uint32_t)e->value[1] << 8 |
                      (uint32_t)e->value[2] << 16 | (uint32_t)e->value[3] << 24;
        if ((size_t)gl != x->n - 12) return fail(x, "command group length does not match");
        return 0;
    }
    case 0x0002:
        return get_uid(x, e, c->affected_class);
    case 0x0003:
        return get_uid(x, e, c->requested_class);
    case 0x0100:
        c->has_command = 1;
        return get_us(x, e, &c->command);
    case 0x0110:
        c->has_message_id = 1;
        return get_us(x, e, &c->message_id);
    case 0x0120:
        return get_us(x, e, &c->responded_id);
    case 0x0700:
        return get_us(x, e, &c->priority);
    case 0x0800:
        c->has_data_set_type = 1;
        return get_us(x, e, &c->data_set_type);
    case 0x0900:
        return get_us(x, e, &c->status);
    case 0x1000:
        return get_uid(x, e, c->affected_instance);
    default:
        return 0;
    }
}

int hdx_dimse_parse(const uint8_t *p, size_t n, struct hdx_dimse_cmd *cmd, const char **why)
{
    struct parse_ctx x = {cmd, NULL, 0, false, n};
    struct hdx_ds_limits lim = {0, HDX_DIMSE_CMD_MAX, DIMSE_MAX_ELEMENTS};
    struct hdx_ds_error err;
    const char *unused;
    int rc;

    if (why == NULL) why = &unused;
    *why = NULL;
    if (cmd == NULL) {
        *why = "bad argument";
        return HDX_E_INVAL;
    }
    memset(cmd, 0, sizeof *cmd);
    if (n > HDX_DIMSE_CMD_MAX) {
        rc = HDX_E_INVAL;
        x.why = "command set over 64 KiB";
    } else {
        rc = hdx_ds_walk(p, n, HDX_DS_IMPLICIT_LE, &lim, parse_visit, &x, &err);
        if (rc != HDX_OK && x.why == NULL) x.why = err.why != NULL ? err.why : "malformed";
    }
    if (rc == HDX_OK) {
        if (!cmd->has_command)
            x.why = "no Command Field";
        else if (!cmd->has_data_set_type)
            x.why = "no Command Data Set Type";
        else if ((cmd->command & 0x8000) == 0 && cmd->command != HDX_C_CANCEL_RQ &&
                 !cmd->has_message_id)
            x.why = "request without a Message ID";
        if (x.why != NULL) rc = HDX_E_INVAL;
    }
    if (rc != HDX_OK) {
        memset(cmd, 0, sizeof *cmd);
        *why = x.why;
        return rc;
    }
    return HDX_OK;
}

struct wbuf {
    uint8_t *p;
    size_t cap, n;
    bool bad;
};

static void put(struct wbuf *w, const void *v, size_t len)
{
    if (w->bad || len > w->cap - w->n) {
        w->bad = true;
        return;
    }
    memcpy(w->p + w->n, v, len);
    w->n += len;
}

/* An Implicit VR LE element header: tag (group 0000) and a 4-byte length. */
static void put_hdr(struct wbuf *w, uint16_t element, uint32_t len)
{
    uint8_t b[8] = {0,
                    0,
                    (uint8_t)element,
                    (uint8_t)(element >> 8),
                    (uint8_t)len,
                    (uint8_t)(len >> 8),
                    (uint8_t)(len >> 16),
                    (uint8_t)(len >> 24)};
    put(w, b, sizeof b);
}

static void put_us(struct wbuf *w, uint16_t element, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put_hdr(w, element, 2);
    put(w, b, 2);
}

static void put_padded(struct wbuf *w, uint16_t element, const char *s, size_t len, char pad)
{
    put_hdr(w, element, (uint32_t)(len + (len & 1)));
    put(w, s, len);
    if (len & 1) put(w, &pad, 1);
}

size_t hdx_dimse_build_rsp(uint16_t command, uint16_t responded_id, const char *affected_class,
                           const char *affected_instance, uint16_t status, int has_data_set,
                           const char *error_comment, uint8_t *out, size_t cap)
{
    struct wbuf w = {out, cap, 0, out == NULL};
    size_t lc, li, le = 0;

    if (affected_class == NULL) affected_class = "";
    if (affected_instance == NULL) affected_instance = "";
    lc = strnlen(affected_class, HDX_DS_UID_MAX + 1);
    li = strnlen(affected_instance, HDX_DS_UID_MAX + 1);
    if (lc > HDX_DS_UID_MAX || li > HDX_DS_UID_MAX) return 0;
    if (error_comment != NULL) le = strnlen(error_comment, 64); /* LO: 64 characters */

    put_hdr(&w, 0x0000, 4);
    put(&w, "\0\0\0\0", 4); /* patched below */
    if (lc > 0) put_padded(&w, 0x0002, affected_class, lc, '\0');
    put_us(&w, 0x0100, command);
    put_us(&w, 0x0120, responded_id);
    put_us(&w, 0x0800, has_data_set ? DIMSE_DATA_SET_PRESENT : HDX_DIMSE_NO_DATASET);
    put_us(&w, 0x0900, status);
    if (error_comment != NULL) put_padded(&w, 0x0902, error_comment, le, ' ');
    if (li > 0) put_padded(&w, 0x1000, affected_instance, li, '\0');
    if (w.bad) return 0;
    uint32_t gl = (uint32_t)(w.n - 12);
    out[8] = (uint8_t)gl;
    out[9] = (uint8_t)(gl >> 8);
    out[10] = (uint8_t)(gl >> 16);
    out[11] = (uint8_t)(gl >> 24);
    return w.n;
}

size_t hdx_dimse_build_store_rq(uint16_t message_id, const char *sop_class,
                                const char *sop_instance, uint8_t *out, size_t cap)
{
    struct wbuf w = {out, cap, 0, out == NULL};
    size_t lc, li;

    if (sop_class == NULL || sop_instance == NULL) return 0;
    lc = strnlen(sop_class, HDX_DS_UID_MAX + 1);
    li = strnlen(sop_instance, HDX_DS_UID_MAX + 1);
    if (lc == 0 || li == 0 || lc > HDX_DS_UID_MAX || li > HDX_DS_UID_MAX) return 0;
    put_hdr(&w, 0x0000, 4);
    put(&w, "\0\0\0\0", 4); /* patched below */
    put_padded(&w, 0x0002, sop_class, lc, '\0');
    put_us(&w, 0x0100, HDX_C_STORE_RQ);
    put_us(&w, 0x0110, message_id);
    put_us(&w, 0x0700, 0x0000); /* priority: medium */
    put_us(&w, 0x0800, DIMSE_DATA_SET_PRESENT);
    put_padded(&w, 0x1000, sop_instance, li, '\0');
    if (w.bad) return 0;
    uint32_t gl = (uint32_t)(w.n - 12);
    out[8] = (uint8_t)gl;
    out[9] = (uint8_t)(gl >> 8);
    out[10] = (uint8_t)(gl >> 16);
    out[11] = (uint8_t)(gl >> 24);
    return w.n;
}
