#include "commit/dedup.h"

#include <stdlib.h>
#include <string.h>

/* The content digest is kept truncated to 8 bytes here (the store keeps all 16): a collision
 * between a message and a different one under the same control id is 2^-64, and the window
 * costs 32 bytes an entry instead of 40. known = 0: stored before digests were (compared by
 * control id alone, as then). */
struct entry {
    uint8_t token[HDX_BLIND_LEN];
    uint64_t seq;
    uint8_t content[7];
    uint8_t known;
};

struct hdx_dedup {
    struct entry *ring;           /* FIFO of the newest tokens */
    size_t capacity, count, head; /* head: slot of the oldest entry */
    uint32_t *slots;              /* open addressing, linear probing; ring index + 1, 0 = empty */
    size_t mask;
};

static size_t hash_of(const uint8_t *token)
{
    uint64_t h;
    memcpy(&h, token, sizeof(h));
    return (size_t)h;
}

struct hdx_dedup *hdx_dedup_new(size_t capacity)
{
    if (capacity == 0 || capacity > UINT32_MAX / 4) return NULL;
    struct hdx_dedup *d = calloc(1, sizeof(*d));
    size_t nslots = 1;
    while (nslots < capacity * 2) /* load factor at most 1/2 */
        nslots <<= 1;
    if (!d) return NULL;
    d->ring = calloc(capacity, sizeof(*d->ring));
    d->slots = calloc(nslots, sizeof(*d->slots));
    if (!d->ring || !d->slots) {
        hdx_dedup_free(d);
        return NULL;
    }
    d->capacity = capacity;
    d->mask = nslots - 1;
    return d;
}

void hdx_dedup_free(struct hdx_dedup *d)
{
    if (!d) return;
    free(d->ring);
    free(d->slots);
    free(d);
}

static size_t find_slot(const struct hdx_dedup *d, const uint8_t *token)
{
    size_t i = hash_of(token) & d->mask;
    while (d->slots[i] && memcmp(d->ring[d->slots[i] - 1].token, token, HDX_BLIND_LEN) != 0)
        i = (i + 1) & d->mask;
    return i;
}

int hdx_dedup_find(const struct hdx_dedup *d, const uint8_t token[HDX_BLIND_LEN],
                   const uint8_t content[HDX_BLIND_LEN], uint64_t *seq)
{
    size_t i = find_slot(d, token);
    if (!d->slots[i]) return HDX_DEDUP_NONE;
    const struct entry *e = &d->ring[d->slots[i] - 1];
    *seq = e->seq;
    if (!e->known || !content) return HDX_DEDUP_SAME;
    return memcmp(e->content, content, sizeof(e->content)) == 0 ? HDX_DEDUP_SAME : HDX_DEDUP_REUSED;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void remove_slot(struct hdx_dedup *d, size_t hole)
{
    size_t i = hole;
    d->slots[hole] = 0;
    for (;;) {
        i = (i + 1) & d->mask;
        if (!d->slots[i]) return;
        size_t home = hash_of(d->ring[d->slots[i] - 1].token) & d->mask;
        /* Move the entry back if its home is not in the cyclic range (hole, i]. */
        int in_range = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!in_range) {
            d->slots[hole] = d->slots[i];
            d->slots[i] = 0;
            hole = i;
        }
    }
}

static void remove_entry(struct hdx_dedup *d, size_t ring_index)
{
    size_t i = find_slot(d, d->ring[ring_index].token);
    if (d->slots[i] == ring_index + 1) remove_slot(d, i);
}

void hdx_dedup_add(struct hdx_dedup *d, const uint8_t token[HDX_BLIND_LEN],
                   const uint8_t content[HDX_BLIND_LEN], uint64_t seq)
{
    size_t at;
    if (d->count == d->capacity) {
        at = d->head;
        remove_entry(d, at);
        d->head = (d->head + 1) % d->capacity;
    } else {
        at = (d->head + d->count) % d->capacity;
        d->count++;
    }
    memcpy(d->ring[at].token, token, HDX_BLIND_LEN);
    d->ring[at].seq = seq;
    d->ring[at].known = content != NULL;
    if (content)
        memcpy(d->ring[at].content, content, sizeof(d->ring[at].content));
    else
        memset(d->ring[at].content, 0, sizeof(d->ring[at].content));
    size_t i = find_slot(d, token);
    if (d->slots[i]) { /* the same token twice: keep the newest position */
        remove_slot(d, i);
        i = find_slot(d, token);
    }
    d->slots[i] = (uint32_t)(at + 1);
}

void hdx_dedup_forget_newest(struct hdx_dedup *d, size_t n)
{
    while (n-- && d->count) {
        size_t last = (d->head + d->count - 1) % d->capacity;
        remove_entry(d, last);
        d->count--;
    }
}

size_t hdx_dedup_count(const struct hdx_dedup *d)
{
    return d->count;
}
