/*
 * The process-wide cancel-key registry: proxy (pid, key) -> {listener, backend (pid, key)}.
 *
 *   register:   RAND_bytes -> proxy key --(unused?)--> insert --> proxy key to the client
 *   lookup:     CancelRequest(proxy key) --> slot --(same listener?)--> backend key
 *   unregister: session closed --> remove (backward shift: no tombstones)
 *
 * An open-addressing hash table with linear probing, guarded by one mutex. It
 * is touched at session start and end and when a cancel arrives, never per
 * message, so one lock is cheap enough. Size follows the number of sessions:
 *
 *   count*2 > cap  --> double        count*8 < cap (cap > MIN) --> halve
 *   count == 0     --> table freed (given back when idle)
 *
 * Deletion shifts later members of the probe run back into the hole, so the
 * table never fills with tombstones and a probe always ends at an empty slot.
 * Proxy keys come from OpenSSL's CSPRNG (62 random bits), so a tenant cannot
 * guess a live one; a key also only resolves through the listener that issued it.
 */
#include "protocols/postgres/cancel.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "proxy/byteorder.h"
#include "proxy/error.h"

#define CANCEL_LISTENER_MAX 64 /* bytes, NUL included */
#define CANCEL_MIN_CAP 64      /* a power of two */
#define CANCEL_DRAW_TRIES 16   /* 2^62 keys: a collision is rare, 16 in a row is a broken RNG */

typedef struct cancel_slot {
    uint64_t proxy; /* (uint32 pid << 32) | uint32 key; pid > 0, so 0 marks a free slot */
    tg_pg_cancel_key backend;
    char listener[CANCEL_LISTENER_MAX];
} cancel_slot;

typedef struct cancel_table {
    cancel_slot *slots; /* NULL while empty */
    size_t cap;         /* 0 or a power of two >= CANCEL_MIN_CAP */
    size_t count;
} cancel_table;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static cancel_table g_table; /* guarded by g_lock */

static uint64_t pack(tg_pg_cancel_key k)
{
    return ((uint64_t)(uint32_t)k.pid << 32) | (uint32_t)k.key;
}

/* splitmix64's finalizer: the keys are random, but the table does not rely on it. */
static size_t slot_of(uint64_t proxy, size_t cap)
{
    uint64_t x = proxy;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & (cap - 1);
}

/* Returns the slot index holding `proxy`, or cap when absent. Call with g_lock held. */
static size_t find(const cancel_table *t, uint64_t proxy)
{
    if (t->count == 0)
        return t->cap;
    for (size_t i = slot_of(proxy, t->cap);; i = (i + 1) & (t->cap - 1)) {
        if (t->slots[i].proxy == proxy)
            return i;
        if (t->slots[i].proxy == 0)
            return t->cap;
    }
}

/* Places a slot known to be absent into a table with room. */
static void place(cancel_slot *slots, size_t cap, const cancel_slot *s)
{
    size_t i = slot_of(s->proxy, cap);
    while (slots[i].proxy != 0)
        i = (i + 1) & (cap - 1);
    slots[i] = *s;
}

/* Rehashes into a table of new_cap slots. Returns 0 or TG_ENOMEM (table unchanged). */
static int resize(cancel_table *t, size_t new_cap)
{
    cancel_slot *slots = calloc(new_cap, sizeof(*slots));
    if (slots == NULL)
        return TG_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].proxy != 0)
            place(slots, new_cap, &t->slots[i]);
    free(t->slots);
    t->slots = slots;
    t->cap = new_cap;
    return 0;
}

/* Removes slot i and shifts the rest of its probe run back (Knuth's algorithm R). */
static void remove_at(cancel_table *t, size_t i)
{
    size_t mask = t->cap - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; t->slots[j].proxy != 0; j = (j + 1) & mask) {
        size_t home = slot_of(t->slots[j].proxy, t->cap);
        /* j may move to the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    memset(&t->slots[hole], 0, sizeof(t->slots[hole]));
    t->count--;

    if (t->count == 0) {
        free(t->slots);
        t->slots = NULL;
        t->cap = 0;
    } else if (t->cap > CANCEL_MIN_CAP && t->count * 8 < t->cap) {
        (void)resize(t, t->cap / 2); /* on OOM the larger table simply stays */
    }
}

/*
 * Draws a candidate proxy key: pid from 31 random bits (0 is possible and means
 * "draw again"), key any int32. Returns 0 or TG_EIO.
 */
static int draw(tg_pg_cancel_key *out)
{
    unsigned char b[8];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return TG_EIO;
    uint32_t pid = tg_load_be32(b) & 0x7fffffffu;
    uint32_t key = tg_load_be32(b + 4);
    out->pid = (int32_t)pid;
    memcpy(&out->key, &key, sizeof(out->key)); /* two's complement reinterpretation */
    return 0;
}

int tg_pg_cancel_register(const char *listener, tg_pg_cancel_key backend, tg_pg_cancel_key *proxy)
{
    if (listener == NULL || proxy == NULL)
        return TG_EINVAL;
    size_t name_len = strnlen(listener, CANCEL_LISTENER_MAX);
    /* Never truncate: two listeners sharing a 63-byte prefix must not share keys. */
    if (name_len >= CANCEL_LISTENER_MAX)
        return TG_EINVAL;

    cancel_slot slot = {.backend = backend};
    memcpy(slot.listener, listener, name_len);

    pthread_mutex_lock(&g_lock);
    cancel_table *t = &g_table;
    int rc = 0;
    if (t->cap == 0)
        rc = resize(t, CANCEL_MIN_CAP);
    else if ((t->count + 1) * 2 > t->cap)
        rc = resize(t, t->cap * 2);
    if (rc != 0)
        goto out;

    rc = TG_EIO;
    for (int tries = 0; tries < CANCEL_DRAW_TRIES; tries++) {
        tg_pg_cancel_key k;
        if (draw(&k) != 0)
            break;
        uint64_t packed = pack(k);
        if (k.pid == 0 || find(t, packed) != t->cap)
            continue; /* not a valid pid, or in use: draw again */
        slot.proxy = packed;
        place(t->slots, t->cap, &slot);
        t->count++;
        *proxy = k;
        rc = 0;
        break;
    }
out:
    if (t->count == 0 && t->slots != NULL) { /* a failed first insert leaves nothing behind */
        free(t->slots);
        t->slots = NULL;
        t->cap = 0;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void tg_pg_cancel_unregister(tg_pg_cancel_key proxy)
{
    uint64_t packed = pack(proxy);
    if (proxy.pid <= 0)
        return;
    pthread_mutex_lock(&g_lock);
    size_t i = find(&g_table, packed);
    if (i != g_table.cap)
        remove_at(&g_table, i);
    pthread_mutex_unlock(&g_lock);
}

bool tg_pg_cancel_lookup(const char *listener, tg_pg_cancel_key proxy, tg_pg_cancel_key *backend)
{
    if (listener == NULL || backend == NULL || proxy.pid <= 0)
        return false;
    size_t name_len = strnlen(listener, CANCEL_LISTENER_MAX);
    if (name_len >= CANCEL_LISTENER_MAX)
        return false;

    bool found = false;
    pthread_mutex_lock(&g_lock);
    size_t i = find(&g_table, pack(proxy));
    if (i != g_table.cap && memcmp(g_table.slots[i].listener, listener, name_len + 1) == 0) {
        *backend = g_table.slots[i].backend;
        found = true;
    }
    pthread_mutex_unlock(&g_lock);
    return found;
}
