/*
 * Reply ordering: see reply_queue.h. Segments form a FIFO; the head's
 * `backend` count drops as backend replies pass, and a segment whose count
 * reaches zero releases its local bytes and goes away.
 */
#include "proxy/reply_queue.h"

#include <stdlib.h>

#include "proxy/error.h"

void tg_reply_queue_init(tg_reply_queue *q)
{
    q->head = q->tail = NULL;
    q->outstanding = 0;
}

void tg_reply_queue_free(tg_reply_queue *q)
{
    while (q->head) {
        tg_reply_segment *s = q->head;
        q->head = s->next;
        tg_buf_free(&s->local);
        free(s);
    }
    q->tail = NULL;
    q->outstanding = 0;
}

int tg_reply_queue_expect_backend(tg_reply_queue *q, uint64_t n)
{
    if (n == 0)
        return 0;
    if (!q->tail || q->tail->local.len > 0) {
        tg_reply_segment *s = calloc(1, sizeof(*s));
        if (!s)
            return TG_ENOMEM;
        if (q->tail)
            q->tail->next = s;
        else
            q->head = s;
        q->tail = s;
    }
    q->tail->backend += n;
    q->outstanding += n;
    return 0;
}

int tg_reply_queue_push_local(tg_reply_queue *q, const void *p, size_t len)
{
    if (q->outstanding == 0)
        return 1;
    return tg_buf_append(&q->tail->local, p, len) < 0 ? TG_ENOMEM : 0;
}

int tg_reply_queue_backend_done(tg_reply_queue *q, tg_reply_emit_fn emit, void *ud)
{
    if (q->outstanding == 0)
        return TG_EPROTO;
    q->outstanding--;
    tg_reply_segment *s = q->head;
    if (--s->backend > 0)
        return 0;
    q->head = s->next;
    if (!q->head)
        q->tail = NULL;
    int r = s->local.len ? emit(ud, s->local.data, s->local.len) : 0;
    tg_buf_free(&s->local);
    free(s);
    return r;
}
