/*
 * tenantgate's entry point: the command line, the main thread and the
 * process lifecycle.
 *
 *   tenantgate -c FILE          run (also: tenantgate run -c FILE)
 *   tenantgate check -c FILE    validate the config, then preflight every backend
 *   tenantgate check --offline -c FILE    validate the config only
 *   tenantgate token ...        mint an HS256 development token (cli_token.c)
 *   tenantgate --version
 *
 * The main thread owns the default loop: signals, the admin server, backend
 * probes, and the workers' lifecycle. It never touches a client connection.
 *
 *   start:   config -> runtime -> sockets (SO_REUSEPORT, one per worker) -> APPLY to workers
 *   SIGHUP:  new config -> new runtime -> sockets for new addresses -> APPLY (old sessions keep
 *            the runtime they started with)
 *   SIGTERM: DRAIN to workers -> all drained, or drain_timeout_s -> STOP -> join -> exit 0
 *            (a second SIGTERM/SIGINT stops at once)
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "proxy/admin.h"
#include "proxy/cli.h"
#include "proxy/config.h"
#include "proxy/error.h"
#include "proxy/listener.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/probe.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"
#include "protocols/postgres/preflight.h"
#include "protocols/redis/preflight.h"

#ifndef TG_VERSION
#define TG_VERSION "dev"
#endif

#define TG_PROBE_INTERVAL_MS 2000
#define TG_PROBE_TIMEOUT_MS 1000
#define TG_PREFLIGHT_TIMEOUT_MS 3000

typedef struct app {
    uv_loop_t *loop;
    const char *config_path;
    tg_runtime *rt; /* current generation; one reference */
    tg_worker *workers;
    uint32_t n_workers;
    tg_metrics *metrics;
    tg_admin *admin;
    char *admin_listen;
    tg_probe *probe;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_async_t notify;
    uv_timer_t drain_timer;
    bool draining;
    bool stop_sent;
    int exit_code;
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tenantgate -c tenantgate.yaml            run the proxy\n"
            "       tenantgate check -c tenantgate.yaml      validate config, preflight backends\n"
            "       tenantgate check --offline -c F          validate config only\n"
            "       tenantgate token --hs256-secret-file F --tenant T [--ttl 1h] [--claim k=v]\n"
            "       tenantgate --version\n");
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Loads the config and builds a runtime. Returns 0, or TG_ECONFIG with the reason in err. */
static int load_runtime(const char *path, tg_runtime **out, char *err, size_t errlen)
{
    tg_config *cfg;
    if (tg_config_load(path, &cfg, err, errlen) < 0)
        return TG_ECONFIG;
    return tg_runtime_new(cfg, out, err, errlen);
}

/* ---- check ----------------------------------------------------------------- */

/* A blocking TCP connect with a deadline, for `check` only. Returns 0 or -1 with why. */
static int preflight_connect(const char *address, char *why, size_t whylen)
{
    char host[256], port_s[8];
    uint16_t port;
    if (tg_config_split_address(address, host, sizeof(host), &port) < 0) {
        snprintf(why, whylen, "not a host:port address");
        return -1;
    }
    snprintf(port_s, sizeof(port_s), "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int gai = getaddrinfo(host, port_s, &hints, &res);
    if (gai != 0) {
        snprintf(why, whylen, "%s", gai_strerror(gai));
        return -1;
    }
    int rc = -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
    } else if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        rc = 0;
    } else if (errno != EINPROGRESS) {
        snprintf(why, whylen, "%s", strerror(errno));
    } else {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        int n = poll(&p, 1, TG_PREFLIGHT_TIMEOUT_MS);
        if (n == 0)
            snprintf(why, whylen, "timed out after %d ms", TG_PREFLIGHT_TIMEOUT_MS);
        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            snprintf(why, whylen, "%s", strerror(errno));
        else if (soerr != 0)
            snprintf(why, whylen, "%s", strerror(soerr));
        else
            rc = 0;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return rc;
}

static int cmd_check(const char *path, bool offline)
{
    char err[512];
    tg_runtime *rt;
    if (load_runtime(path, &rt, err, sizeof(err)) < 0) {
        fprintf(stderr, "tenantgate check: %s\n", err);
        return 1;
    }
    printf("config %s: ok (%zu listener%s)\n", path, rt->n_listeners,
           rt->n_listeners == 1 ? "" : "s");
    int failed = 0;
    for (size_t i = 0; i < rt->n_listeners && !offline; i++) {
        const tg_listener_config *l = rt->listeners[i].cfg;
        char why[256];
        if (preflight_connect(l->backend.address, why, sizeof(why)) < 0) {
            printf("listener %s: backend %s: unreachable: %s\n", l->name, l->backend.address, why);
            failed = 1;
        } else {
            printf("listener %s: backend %s: reachable\n", l->name, l->backend.address);
            /* RLS preflight: role, tables, signed context (0 safe, 1 unsafe, 2 unchecked) */
            if (l->protocol == TG_PROTO_POSTGRES && tg_pg_preflight(l, stdout) != 0)
                failed = 1;
            /* allow_scripts: may the service user provision per-tenant ACL users? */
            if (l->protocol == TG_PROTO_REDIS && l->redis.allow_scripts &&
                tg_redis_preflight(l, stdout) != 0)
                failed = 1;
        }
    }
    tg_runtime_unref(rt);
    return failed;
}

/* ---- run ------------------------------------------------------------------- */

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/*
 * Creates one APPLY command per worker for rt: listeners that `old` already
 * serves on the same address keep their sockets (-1), the others get fresh
 * SO_REUSEPORT sockets. On a bind error nothing is posted. Returns 0 or < 0.
 */
static int post_apply(app *a, tg_runtime *rt, const tg_runtime *old, char *err, size_t errlen)
{
    size_t n = rt->n_listeners;
    int *fds = malloc(sizeof(int) * n * a->n_workers);
    if (!fds) {
        snprintf(err, errlen, "out of memory");
        return TG_ENOMEM;
    }
    for (size_t i = 0; i < n * a->n_workers; i++)
        fds[i] = -1;
    for (size_t i = 0; i < n; i++) {
        const tg_listener_config *l = rt->listeners[i].cfg;
        const tg_listener_rt *prev = old ? tg_runtime_listener(old, l->name) : NULL;
        if (prev && strcmp(prev->cfg->listen, l->listen) == 0)
            continue;
        for (uint32_t w = 0; w < a->n_workers; w++) {
            if (tg_listen_socket(l->listen, &fds[w * n + i], err, errlen) < 0) {
                close_fds(fds, n * a->n_workers);
                free(fds);
                return TG_EIO;
            }
        }
    }
    for (uint32_t w = 0; w < a->n_workers; w++) {
        tg_worker_cmd *cmd = calloc(1, sizeof(*cmd));
        int *wfds = malloc(sizeof(int) * (n ? n : 1));
        if (!cmd || !wfds) { /* cannot happen in practice; give up cleanly */
            free(cmd);
            free(wfds);
            close_fds(fds + (size_t)w * n, n * (a->n_workers - w));
            free(fds);
            snprintf(err, errlen, "out of memory");
            return TG_ENOMEM;
        }
        memcpy(wfds, fds + (size_t)w * n, sizeof(int) * n);
        cmd->kind = TG_WORKER_APPLY;
        cmd->fds = wfds;
        cmd->rt = rt;
        tg_runtime_ref(rt);
        tg_worker_post(&a->workers[w], cmd);
    }
    free(fds);
    return 0;
}

static void set_probe_targets(app *a)
{
    const tg_runtime *rt = a->rt;
    const char **names = calloc(rt->n_listeners + 1, sizeof(char *));
    const char **addrs = calloc(rt->n_listeners + 1, sizeof(char *));
    if (names && addrs) {
        for (size_t i = 0; i < rt->n_listeners; i++) {
            names[i] = rt->listeners[i].cfg->name;
            addrs[i] = rt->listeners[i].cfg->backend.address;
        }
        if (tg_probe_set_targets(a->probe, names, addrs, rt->n_listeners) < 0)
            tg_log(TG_LOG_ERROR, "out of memory setting probe targets", TG_FEND);
    }
    free(names);
    free(addrs);
}

static bool is_ready(void *ud, char *why, size_t whylen)
{
    app *a = ud;
    if (a->draining) {
        snprintf(why, whylen, "draining");
        return false;
    }
    return tg_probe_all_ok(a->probe, why, whylen);
}

static void start_drain(app *a, const char *why);

/* POST /quitquitquit: a drain as SIGTERM starts, when admin.quitquitquit allows it. */
static bool on_quitquitquit(void *ud)
{
    app *a = ud;
    if (!a->rt->cfg->admin_quitquitquit)
        return false;
    if (!a->draining) /* a second request must not turn into a second signal's hard stop */
        start_drain(a, "POST /quitquitquit");
    return true;
}

static int start_admin(app *a)
{
    const char *listen = a->rt->cfg->admin_listen;
    if (!listen)
        return 0;
    char err[256];
    if (tg_admin_start(a->loop, listen, a->metrics, is_ready, on_quitquitquit, a, &a->admin, err,
                       sizeof(err)) < 0) {
        tg_log(TG_LOG_ERROR, "admin server failed", TG_FS("listen", listen), TG_FS("error", err),
               TG_FEND);
        return TG_EIO;
    }
    a->admin_listen = strdup(listen);
    return 0;
}

static void log_listeners(const tg_runtime *rt)
{
    for (size_t i = 0; i < rt->n_listeners; i++) {
        const tg_listener_config *l = rt->listeners[i].cfg;
        tg_log(TG_LOG_INFO, "listener ready", TG_FS("listener", l->name),
               TG_FS("protocol", tg_protocol_name(l->protocol)), TG_FS("listen", l->listen),
               TG_FS("backend", l->backend.address), TG_FEND);
    }
}

static void reload(app *a)
{
    char err[512];
    tg_runtime *rt;
    if (a->draining)
        return;
    if (load_runtime(a->config_path, &rt, err, sizeof(err)) < 0) {
        tg_log(TG_LOG_ERROR, "reload failed; keeping the running config", TG_FS("error", err),
               TG_FEND);
        return;
    }
    if (rt->cfg->workers != a->n_workers)
        tg_log(TG_LOG_WARN, "workers changes need a restart; keeping the running count",
               TG_FI("running", a->n_workers), TG_FI("configured", rt->cfg->workers), TG_FEND);
    if (post_apply(a, rt, a->rt, err, sizeof(err)) < 0) {
        tg_log(TG_LOG_ERROR, "reload failed; keeping the running config", TG_FS("error", err),
               TG_FEND);
        tg_runtime_unref(rt);
        return;
    }
    tg_log_configure(rt->cfg->log_level, rt->cfg->log_format);
    tg_runtime_unref(a->rt);
    a->rt = rt;
    set_probe_targets(a);
    const char *want = rt->cfg->admin_listen;
    if (!a->admin_listen || !want || strcmp(a->admin_listen, want) != 0) {
        if (a->admin)
            tg_admin_stop(a->admin);
        a->admin = NULL;
        free(a->admin_listen);
        a->admin_listen = NULL;
        (void)start_admin(a);
    }
    tg_log(TG_LOG_INFO, "config reloaded", TG_FS("config", a->config_path),
           TG_FI("generation", rt->generation), TG_FEND);
    log_listeners(rt);
}

static void stop_workers(app *a)
{
    if (a->stop_sent)
        return;
    a->stop_sent = true;
    for (uint32_t i = 0; i < a->n_workers; i++) {
        tg_worker_cmd *cmd = calloc(1, sizeof(*cmd));
        if (!cmd)
            abort(); /* a few bytes at shutdown; nothing sane is left to do */
        cmd->kind = TG_WORKER_STOP;
        tg_worker_post(&a->workers[i], cmd);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    app *a = t->data;
    tg_log(TG_LOG_WARN, "drain deadline reached; closing remaining sessions", TG_FEND);
    stop_workers(a);
}

static void start_drain(app *a, const char *why)
{
    if (a->draining) {
        tg_log(TG_LOG_WARN, "second signal; stopping now", TG_FEND);
        stop_workers(a);
        return;
    }
    a->draining = true;
    tg_log(TG_LOG_INFO, "draining", TG_FS("signal", why),
           TG_FI("deadline_s", a->rt->cfg->drain_timeout_s), TG_FEND);
    for (uint32_t i = 0; i < a->n_workers; i++) {
        tg_worker_cmd *cmd = calloc(1, sizeof(*cmd));
        if (!cmd) {
            stop_workers(a);
            return;
        }
        cmd->kind = TG_WORKER_DRAIN;
        tg_worker_post(&a->workers[i], cmd);
    }
    uv_timer_start(&a->drain_timer, on_drain_deadline, (uint64_t)a->rt->cfg->drain_timeout_s * 1000,
                   0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app *a = s->data;
    if (signum == SIGHUP)
        reload(a);
    else
        start_drain(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Worker news: all drained -> stop them; all exited -> close the main loop's handles. */
static void on_notify(uv_async_t *h)
{
    app *a = h->data;
    bool all_drained = true, all_exited = true;
    for (uint32_t i = 0; i < a->n_workers; i++) {
        all_drained &= atomic_load(&a->workers[i].drained);
        all_exited &= atomic_load(&a->workers[i].exited);
    }
    if (a->draining && all_drained)
        stop_workers(a);
    if (!all_exited)
        return;
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
    uv_close((uv_handle_t *)&a->drain_timer, NULL);
    uv_close((uv_handle_t *)&a->notify, NULL);
    if (a->admin)
        tg_admin_stop(a->admin);
    a->admin = NULL;
    if (a->probe)
        tg_probe_stop(a->probe);
    a->probe = NULL;
}

static int cmd_run(const char *path)
{
    app a;
    memset(&a, 0, sizeof(a));
    a.config_path = path;
    char err[512];
    if (load_runtime(path, &a.rt, err, sizeof(err)) < 0) {
        fprintf(stderr, "tenantgate: %s\n", err);
        return 1;
    }
    tg_log_configure(a.rt->cfg->log_level, a.rt->cfg->log_format);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    a.loop = uv_default_loop();
    a.n_workers = a.rt->cfg->workers;
    a.metrics = tg_metrics_new(a.n_workers);
    a.workers = calloc(a.n_workers, sizeof(tg_worker));
    if (!a.metrics || !a.workers) {
        fprintf(stderr, "tenantgate: out of memory\n");
        return 1;
    }
    uv_async_init(a.loop, &a.notify, on_notify);
    a.notify.data = &a;
    uv_timer_init(a.loop, &a.drain_timer);
    a.drain_timer.data = &a;
    uv_signal_init(a.loop, &a.sig_term);
    uv_signal_init(a.loop, &a.sig_int);
    uv_signal_init(a.loop, &a.sig_hup);
    a.sig_term.data = a.sig_int.data = a.sig_hup.data = &a;
    uv_signal_start(&a.sig_term, on_signal, SIGTERM);
    uv_signal_start(&a.sig_int, on_signal, SIGINT);
    uv_signal_start(&a.sig_hup, on_signal, SIGHUP);

    uint32_t started = 0;
    for (; started < a.n_workers; started++) {
        if (tg_worker_start(&a.workers[started], started, a.metrics, &a.notify) < 0)
            break;
    }
    int rc = 0;
    if (started < a.n_workers) {
        tg_log(TG_LOG_ERROR, "cannot start worker threads", TG_FEND);
        rc = 1;
    } else if (post_apply(&a, a.rt, NULL, err, sizeof(err)) < 0) {
        tg_log(TG_LOG_ERROR, "cannot listen", TG_FS("error", err), TG_FEND);
        rc = 1;
    }
    a.probe = tg_probe_start(a.loop, TG_PROBE_INTERVAL_MS, TG_PROBE_TIMEOUT_MS);
    if (a.probe)
        set_probe_targets(&a);
    if (rc == 0 && start_admin(&a) < 0)
        rc = 1;
    if (rc != 0) {
        a.n_workers = started; /* stop only the threads that exist */
        if (started == 0) {
            uv_async_send(&a.notify);
        } else {
            a.draining = true;
            stop_workers(&a);
        }
    } else {
        tg_log(TG_LOG_INFO, "tenantgate started", TG_FS("version", TG_VERSION),
               TG_FS("config", path), TG_FI("workers", a.n_workers), TG_FI("pid", getpid()),
               TG_FEND);
        log_listeners(a.rt);
    }

    uv_run(a.loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < a.n_workers; i++)
        tg_worker_join(&a.workers[i]);
    if (rc == 0)
        tg_log(TG_LOG_INFO, "tenantgate stopped", TG_FEND);
    uv_loop_close(a.loop);
    free(a.workers);
    free(a.admin_listen);
    tg_runtime_unref(a.rt);
    tg_metrics_free(a.metrics);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return tg_cli_token(argc - 1, argv + 1);
    bool check = false, offline = false;
    int first = 1;
    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        check = true;
        first = 2;
    } else if (argc >= 2 && strcmp(argv[1], "run") == 0) {
        first = 2;
    }
    const char *config = NULL;
    for (int i = first; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (check && strcmp(argv[i], "--offline") == 0) {
            offline = true; /* config only: image builds and CI have no backends to reach */
        } else if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("tenantgate %s\n", TG_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "tenantgate: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    return check ? cmd_check(config, offline) : cmd_run(config);
}
