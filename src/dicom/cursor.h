/* cursor: the one bounded reader of untrusted DICOM bytes (PS3.8 PDUs, PS3.5 data sets), in
 * the spirit of OpenSSL's PACKET and OpenSSH's sshbuf. A cursor is a window over caller
 * memory; every read checks the bytes left and either takes them or fails without moving, so
 * no parser built on it can read past the end of what arrived. A failed read also sets the
 * sticky `bad` flag: a parser may do several reads and check once.
 * Ownership: nothing is copied or owned; pointers handed out borrow the caller's memory.
 * Thread: any (a cursor is a value). */
#ifndef HDX_DICOM_CURSOR_H
#define HDX_DICOM_CURSOR_H

#include <stddef.h>
#include <stdint.h>

struct hdx_dcur {
    const uint8_t *p;
    size_t left;
    int bad; /* a read failed (sticky) */
};

static inline struct hdx_dcur hdx_dcur_make(const uint8_t *p, size_t n)
{
    struct hdx_dcur c = {p, n, 0};
    return c;
}

static inline size_t hdx_dcur_left(const struct hdx_dcur *c)
{
    return c->left;
}

static inline int hdx_dcur_fail(struct hdx_dcur *c)
{
    c->bad = 1;
    return -1;
}

/* n bytes: *out borrows them. */
static inline int hdx_dcur_bytes(struct hdx_dcur *c, size_t n, const uint8_t **out)
{
    if (c->bad || n > c->left) return hdx_dcur_fail(c);
    *out = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}

static inline int hdx_dcur_skip(struct hdx_dcur *c, size_t n)
{
    const uint8_t *unused;
    return hdx_dcur_bytes(c, n, &unused);
}

/* The next n bytes as a cursor of their own (a PDU item, an element's value). */
static inline int hdx_dcur_sub(struct hdx_dcur *c, size_t n, struct hdx_dcur *sub)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, n, &p) != 0) return -1;
    *sub = hdx_dcur_make(p, n);
    return 0;
}

static inline int hdx_dcur_u8(struct hdx_dcur *c, uint8_t *v)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, 1, &p) != 0) return -1;
    *v = p[0];
    return 0;
}

static inline int hdx_dcur_u16be(struct hdx_dcur *c, uint16_t *v)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, 2, &p) != 0) return -1;
    *v = (uint16_t)((unsigned)p[0] << 8 | p[1]);
    return 0;
}

static inline int hdx_dcur_u32be(struct hdx_dcur *c, uint32_t *v)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, 4, &p) != 0) return -1;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return 0;
}

static inline int hdx_dcur_u16le(struct hdx_dcur *c, uint16_t *v)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, 2, &p) != 0) return -1;
    *v = (uint16_t)((unsigned)p[1] << 8 | p[0]);
    return 0;
}

static inline int hdx_dcur_u32le(struct hdx_dcur *c, uint32_t *v)
{
    const uint8_t *p;
    if (hdx_dcur_bytes(c, 4, &p) != 0) return -1;
    *v = (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
    return 0;
}

#endif
