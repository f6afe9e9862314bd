/*
 * protocol: tcp -- see session.h.
 *
 *   accept --> connect backend --> relay both ways (no copy) --> EOF on one side is
 *   passed on as a half-close; the pair closes when both directions have ended.
 *
 * The relay is established as soon as the backend answers: there is no
 * handshake and no authentication.
 */
#include "protocols/tcp/session.h"

#include "proxy/conn.h"
#include "proxy/metrics.h"

static int tcp_open(tg_conn *c, void *session)
{
    (void)session;
    return tg_conn_connect_backend(c);
}

static int tcp_backend_ready(tg_conn *c, void *session)
{
    (void)session;
    tg_conn_established(c);
    return 0;
}

static ssize_t tcp_data(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len)
{
    (void)session;
    int r = tg_conn_forward(c, tg_side_other(from), data, len);
    return r < 0 ? r : (ssize_t)len;
}

static int tcp_eof(tg_conn *c, void *session, tg_side_id from)
{
    (void)session;
    tg_conn_shutdown(c, tg_side_other(from));
    return 0;
}

const tg_protocol_ops tg_tcp_protocol = {
    .name = "tcp",
    .session_size = 0,
    .own_tls_upgrade = false,
    .on_open = tcp_open,
    .on_backend_ready = tcp_backend_ready,
    .on_data = tcp_data,
    .on_eof = tcp_eof,
    .on_close = NULL,
};
