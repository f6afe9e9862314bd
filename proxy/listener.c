/*
 * Listening sockets: see listener.h.
 */
#include "proxy/listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/conn.h"
#include "proxy/error.h"
#include "proxy/log.h"
#include "proxy/worker.h"

#define TG_LISTEN_BACKLOG 4096

int tg_listen_socket(const char *address, int *fd_out, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (tg_config_split_address(address, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "listen %s: not a host:port address", address);
        return TG_EINVAL;
    }
    char port_s[8];
    snprintf(port_s, sizeof(port_s), "%u", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "listen %s: %s", address, gai_strerror(gai));
        return TG_EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (res->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, TG_LISTEN_BACKLOG) < 0)
        goto fail;
    freeaddrinfo(res);
    *fd_out = fd;
    return 0;
fail:
    snprintf(err, errlen, "listen %s: %s", address, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return TG_EIO;
}

static void on_connection(uv_stream_t *server, int status)
{
    tg_listener *l = server->data;
    if (status < 0) {
        tg_log(TG_LOG_WARN, "accept failed", TG_FS("listener", l->name),
               TG_FS("error", uv_strerror(status)), TG_FEND);
        return;
    }
    tg_conn_accept(l);
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

int tg_listener_open(tg_worker *w, const tg_listener_rt *rt, int fd, tg_listener **out)
{
    tg_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return TG_ENOMEM;
    }
    l->worker = w;
    l->rt = rt;
    snprintf(l->name, sizeof(l->name), "%s", rt->cfg->name);
    snprintf(l->listen, sizeof(l->listen), "%s", rt->cfg->listen);
    l->stats =
        tg_metrics_listener(w->metrics, rt->cfg->name, tg_protocol_name(rt->cfg->protocol), w->id);
    if (!l->stats || uv_tcp_init(&w->loop, &l->tcp) < 0) {
        close(fd);
        free(l);
        return TG_ENOMEM;
    }
    l->tcp.data = l;
    int r = uv_tcp_open(&l->tcp, fd);
    if (r < 0)
        close(fd); /* not adopted by the handle */
    else
        r = uv_listen((uv_stream_t *)&l->tcp, TG_LISTEN_BACKLOG, on_connection);
    if (r < 0) {
        tg_log(TG_LOG_ERROR, "listen failed", TG_FS("listener", l->name),
               TG_FS("error", uv_strerror(r)), TG_FEND);
        tg_listener_close(l);
        return TG_EIO;
    }
    *out = l;
    return 0;
}

void tg_listener_close(tg_listener *l)
{
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
