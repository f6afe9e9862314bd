/*
 * Per-tenant session counts: see tenant_count.h. Chained hash table keyed by
 * "listener\0tenant", sized for many tenants; buckets are fixed (the table
 * does not resize: chains stay short for the session counts a proxy holds).
 */
#include "proxy/tenant_count.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proxy/error.h"

#define TG_TENANT_BUCKETS 4096

typedef struct entry {
    struct entry *next;
    uint32_t count;
    char key[]; /* listener, NUL, tenant, NUL */
} entry;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *g_buckets[TG_TENANT_BUCKETS];

/* Finds the entry's link for (listener, tenant); *link is NULL when absent. */
static entry **find(const char *listener, const char *tenant, size_t ll, size_t tl)
{
    uint64_t h = XXH64(tenant, tl, XXH64(listener, ll, 0));
    entry **link = &g_buckets[h % TG_TENANT_BUCKETS];
    while (*link && !(memcmp((*link)->key, listener, ll + 1) == 0 &&
                      strcmp((*link)->key + ll + 1, tenant) == 0))
        link = &(*link)->next;
    return link;
}

int tg_tenant_count_acquire(const char *listener, const char *tenant, uint32_t max)
{
    size_t ll = strlen(listener), tl = strlen(tenant);
    int rc = 0;
    pthread_mutex_lock(&g_lock);
    entry **link = find(listener, tenant, ll, tl);
    if (!*link) {
        entry *e = malloc(sizeof(*e) + ll + tl + 2);
        if (!e) {
            rc = TG_ENOMEM;
            goto out;
        }
        e->next = NULL;
        e->count = 0;
        memcpy(e->key, listener, ll + 1);
        memcpy(e->key + ll + 1, tenant, tl + 1);
        *link = e;
    }
    if (max && (*link)->count >= max)
        rc = TG_ELIMIT;
    else
        (*link)->count++;
out:
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void tg_tenant_count_release(const char *listener, const char *tenant)
{
    size_t ll = strlen(listener), tl = strlen(tenant);
    pthread_mutex_lock(&g_lock);
    entry **link = find(listener, tenant, ll, tl);
    if (*link && --(*link)->count == 0) {
        entry *e = *link;
        *link = e->next;
        free(e);
    }
    pthread_mutex_unlock(&g_lock);
}
