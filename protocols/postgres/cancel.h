/*
 * Cancel keys: tenants never learn backend pids.
 *
 *   session start: backend (pid, key) --tg_pg_cancel_register--> proxy (pid, key) to the client
 *   CancelRequest(proxy pid, key) on a new connection --tg_pg_cancel_lookup--> backend (pid, key)
 *
 * The registry is process-wide (a CancelRequest arrives on any worker) and
 * guarded by a mutex: it is touched when a session starts and ends and when a
 * cancel arrives, never per message. Proxy keys are random (OpenSSL RAND), so
 * a tenant cannot guess another session's.
 */
#ifndef TG_PROTOCOLS_POSTGRES_CANCEL_H
#define TG_PROTOCOLS_POSTGRES_CANCEL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tg_pg_cancel_key {
    int32_t pid;
    int32_t key;
} tg_pg_cancel_key;

/*
 * Registers a session's backend key for `listener` and returns a new random,
 * unused proxy key in *proxy. Returns 0 or TG_ENOMEM.
 * Also TG_EINVAL (listener NULL or 64 bytes or longer: names are never
 * truncated) and TG_EIO (OpenSSL's RNG failed).
 */
__attribute__((warn_unused_result)) int
tg_pg_cancel_register(const char *listener, tg_pg_cancel_key backend, tg_pg_cancel_key *proxy);

/* Forgets a proxy key (session closed). Unknown keys are ignored. */
void tg_pg_cancel_unregister(tg_pg_cancel_key proxy);

/*
 * Looks up a proxy key. Returns true and the backend key when it is known and
 * belongs to `listener`; false otherwise.
 */
bool tg_pg_cancel_lookup(const char *listener, tg_pg_cancel_key proxy, tg_pg_cancel_key *backend);

#endif
