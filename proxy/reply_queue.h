/*
 * Reply ordering for pipelined protocols.
 *
 *   request 1 -> backend      expect_backend(1)      [1 backend]
 *   request 2 -> denied       push_local("-NOPERM")  [1 backend | "-NOPERM"]
 *   request 3 -> backend      expect_backend(1)      [1 backend | "-NOPERM"][1 backend]
 *   reply to 1 arrives        backend_done() -> emit "-NOPERM" after it
 *
 * A client that pipelines must see replies in request order, even when some
 * are made by tenantgate (denials, auth answers) and others come from the
 * backend. The queue records how many backend replies must pass before each
 * local reply; the session forwards each backend reply and then calls
 * tg_reply_queue_backend_done, which hands over the local replies that are
 * now due. Pure bookkeeping: no I/O.
 */
#ifndef TG_PROXY_REPLY_QUEUE_H
#define TG_PROXY_REPLY_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/buffer.h"

typedef struct tg_reply_segment {
    uint64_t backend; /* backend replies still due before `local` */
    tg_buf local;     /* local replies, concatenated */
    struct tg_reply_segment *next;
} tg_reply_segment;

typedef struct tg_reply_queue {
    tg_reply_segment *head, *tail;
    uint64_t outstanding; /* backend replies due in total */
} tg_reply_queue;

/* Called with each local reply that is due, in order. Returns 0 or a negative TG_E* to stop. */
typedef int (*tg_reply_emit_fn)(void *ud, const uint8_t *p, size_t len);

void tg_reply_queue_init(tg_reply_queue *q);
void tg_reply_queue_free(tg_reply_queue *q);

/* n more backend replies are due before anything queued from now on. Returns 0 or TG_ENOMEM. */
__attribute__((warn_unused_result)) int tg_reply_queue_expect_backend(tg_reply_queue *q,
                                                                      uint64_t n);

/*
 * A local reply: returns 1 when nothing is due before it (send it now, the
 * queue keeps nothing), 0 when it was queued (copied), or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_reply_queue_push_local(tg_reply_queue *q, const void *p,
                                                                  size_t len);

/*
 * One backend reply has been forwarded. Local replies that are now due are
 * passed to emit, in order. Returns 0, TG_EPROTO when no backend reply was
 * due (the backend sent more than asked), or emit's error.
 */
__attribute__((warn_unused_result)) int
tg_reply_queue_backend_done(tg_reply_queue *q, tg_reply_emit_fn emit, void *ud);

#endif
