/*
 * TLS engine over two OpenSSL memory BIOs; see tls.h for the API.
 *
 *                    tg_tls_feed                        tg_tls_take_out
 *   network bytes ---------------> [rbio] --> SSL --> [wbio] ---------------> network
 *                                              |  ^
 *                        tg_tls_read <---------+  +--- flush <-- [pending] <-- tg_tls_write
 *
 * The connection layer owns the socket. It feeds whatever ciphertext it
 * received, then calls tg_tls_handshake (until it returns 1) or tg_tls_read,
 * and after every call sends what tg_tls_take_out yields: OpenSSL writes
 * handshake records, alerts and encrypted application data into the wbio at
 * any of these points.
 *
 * Writes before the handshake is complete (the client side may speak first)
 * are copied into a pending-plaintext buffer; the buffer is flushed through
 * SSL_write the moment the handshake completes, in tg_tls_handshake or in
 * tg_tls_read, and freed once empty. After the handshake a write goes straight
 * into SSL_write; the memory wbio grows as needed, so SSL_write never stops
 * half-way and every byte is accepted.
 *
 * Memory: SSL_MODE_RELEASE_BUFFERS lets OpenSSL drop its record buffers while
 * a connection is idle, and a memory BIO that grew past TLS_BIO_KEEP for one
 * large message is replaced by a fresh one once it is empty, so an idle
 * connection does not keep a megabyte of ciphertext buffer around.
 *
 * Errors: every failing call records a short reason (the first queued
 * OpenSSL error, plus the X.509 verify result when a certificate was
 * rejected) for tg_tls_last_error and then clears the thread's OpenSSL
 * error queue, so nothing leaks into the next connection served by the same
 * thread. A failure is sticky: after TG_ETLS the object only answers TG_ETLS
 * (the fatal alert OpenSSL queued can still be taken out and sent).
 *
 * Session resumption is off on both sides (no tickets, no session cache):
 * resumed sessions would skip the certificate checks and make the SNI of a
 * connection come from an earlier one, and ticket keys that live as long as
 * the process weaken forward secrecy. Database connections are long-lived
 * and pooled, so a full handshake per connection is cheap.
 *
 * There is no global state here; a tg_tls_ctx (SSL_CTX) is read-only after
 * creation and may be shared by every worker thread, each tg_tls is used by
 * one thread at a time.
 */
#include "proxy/tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "proxy/error.h"

/* A memory BIO whose buffer grew beyond this is replaced once it is empty. */
#define TLS_BIO_KEEP (64 * 1024)

/* Longest SNI host name kept; OpenSSL refuses longer ones (TLSEXT_MAXLEN_host_name). */
#define TLS_SNI_MAX 255

struct tg_tls_ctx {
    SSL_CTX *ssl_ctx;
    bool server;
    tg_backend_tls_mode mode; /* client side only */
};

struct tg_tls {
    SSL *ssl;
    BIO *rbio; /* owned by ssl; ciphertext from the network */
    BIO *wbio; /* owned by ssl; ciphertext for the network */
    bool server;
    bool done;        /* handshake complete */
    bool failed;      /* sticky: a fatal error happened */
    uint8_t *pending; /* plaintext written before the handshake completed */
    size_t pending_len;
    size_t pending_cap;
    char sni[TLS_SNI_MAX + 1]; /* server side: host name the client sent, "" when none */
    char err[160];
};

/* ---- error strings ---- */

/* Copies src into buf (len > 0 bytes), cut to fit; always NUL-terminated. */
static void copy_cut(char *buf, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(buf, src, n);
    buf[n] = '\0';
}

/* The reason of OpenSSL's error code e ("certificate verify failed", "No such file or directory").
 */
static void ossl_reason(unsigned long e, char *buf, size_t len)
{
    const char *r = ERR_reason_error_string(e);
    if (r != NULL) {
        copy_cut(buf, len, r);
        return;
    }
    /* "error:<code>:<library>:<function>:<reason>" (system errors carry strerror text): keep
     * the reason. */
    char full[256];
    ERR_error_string_n(e, full, sizeof(full));
    const char *p = full;
    for (int i = 0; i < 4 && p != NULL; i++) {
        p = strchr(p, ':');
        if (p != NULL)
            p++;
    }
    copy_cut(buf, len, p != NULL && *p != '\0' ? p : full);
}

/* err := "<what>: <first queued OpenSSL reason>"; clears the thread's error queue. */
static void ctx_error(char *err, size_t errlen, const char *what)
{
    char reason[128] = "unknown error";
    unsigned long e = ERR_peek_error();
    if (e != 0)
        ossl_reason(e, reason, sizeof(reason));
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, reason);
    ERR_clear_error();
}

/* True when the first queued error says a private key does not belong to its certificate. */
static bool key_mismatch_queued(void)
{
    unsigned long e = ERR_peek_error();
    return ERR_GET_LIB(e) == ERR_LIB_X509 && (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
                                              ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

/* Marks t failed with the first queued OpenSSL error (or fallback) as its reason. */
static int tls_fail(tg_tls *t, const char *fallback)
{
    unsigned long e = ERR_peek_error();
    if (e != 0)
        ossl_reason(e, t->err, sizeof(t->err));
    else
        copy_cut(t->err, sizeof(t->err), fallback);

    /* "certificate verify failed" says little; add why ("hostname mismatch"). */
    long vr = SSL_get_verify_result(t->ssl);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
        vr != X509_V_OK) {
        size_t n = strlen(t->err);
        snprintf(t->err + n, sizeof(t->err) - n, ": %s", X509_verify_cert_error_string(vr));
    }
    ERR_clear_error();
    t->failed = true;
    return TG_ETLS;
}

/* ---- contexts ---- */

/* Refuses to prompt on the terminal for a passphrase: encrypted keys fail to load instead. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return -1;
}

/* Captures the client's SNI into the connection while the ClientHello is processed. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    tg_tls *t = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (t == NULL || name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    size_t n = strlen(name);
    if (n > TLS_SNI_MAX) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    memcpy(t->sni, name, n + 1);
    return SSL_TLSEXT_ERR_OK;
}

/*
 * Settings shared by both sides: no compression, renegotiation or resumption;
 * idle record buffers released; a retried SSL_write may come from the
 * pending buffer after it moved (realloc); encrypted keys fail instead of
 * prompting. The minimum version is set by each constructor.
 */
static void ctx_common(SSL_CTX *c)
{
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_default_passwd_cb(c, no_passphrase_cb);
}

/* Wraps a configured SSL_CTX (taking it over, freed on failure) into a tg_tls_ctx. */
static int wrap_ctx(SSL_CTX *c, bool server, tg_backend_tls_mode mode, tg_tls_ctx **out, char *err,
                    size_t errlen)
{
    tg_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(c);
        return TG_ENOMEM;
    }
    ctx->ssl_ctx = c;
    ctx->server = server;
    ctx->mode = mode;
    *out = ctx;
    return 0;
}

int tg_tls_ctx_new_server(const char *cert_file, const char *key_file, tg_tls_ctx **out, char *err,
                          size_t errlen)
{
    char what[PATH_MAX + 64];
    SSL_CTX *c = NULL;

    ERR_clear_error();
    if (cert_file == NULL || key_file == NULL) {
        snprintf(err, errlen, "TLS server needs cert_file and key_file");
        return TG_ETLS;
    }
    c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        ctx_error(err, errlen, "cannot create TLS server context");
        goto fail;
    }
    ctx_common(c);
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
        ctx_error(err, errlen, "cannot set minimum TLS version");
        goto fail;
    }
    /* One TLS 1.3 session ticket is sent by default even with SSL_OP_NO_TICKET; send none. */
    SSL_CTX_set_num_tickets(c, 0);
    SSL_CTX_set_tlsext_servername_callback(c, servername_cb);

    if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
        snprintf(what, sizeof(what), "cert_file %s: cannot load a PEM certificate chain",
                 cert_file);
        ctx_error(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
        if (key_mismatch_queued())
            snprintf(what, sizeof(what), "key_file %s does not match cert_file %s", key_file,
                     cert_file);
        else
            snprintf(what, sizeof(what), "key_file %s: cannot load an unencrypted PEM private key",
                     key_file);
        ctx_error(err, errlen, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        snprintf(what, sizeof(what), "key_file %s does not match cert_file %s", key_file,
                 cert_file);
        ctx_error(err, errlen, what);
        goto fail;
    }

    return wrap_ctx(c, true, TG_BACKEND_TLS_DISABLE, out, err, errlen);

fail:
    SSL_CTX_free(c);
    ERR_clear_error();
    return TG_ETLS;
}

int tg_tls_ctx_new_client(tg_backend_tls_mode mode, const char *ca_file, tg_tls_ctx **out,
                          char *err, size_t errlen)
{
    char what[PATH_MAX + 64];
    SSL_CTX *c = NULL;

    ERR_clear_error();
    if (mode != TG_BACKEND_TLS_REQUIRE && mode != TG_BACKEND_TLS_VERIFY_FULL) {
        snprintf(err, errlen, "backend TLS context needs mode require or verify-full");
        return TG_ETLS;
    }
    if (mode == TG_BACKEND_TLS_VERIFY_FULL && ca_file == NULL) {
        snprintf(err, errlen, "backend tls verify-full needs ca_file");
        return TG_ETLS;
    }
    c = SSL_CTX_new(TLS_client_method());
    if (c == NULL) {
        ctx_error(err, errlen, "cannot create TLS client context");
        goto fail;
    }
    ctx_common(c);
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
        ctx_error(err, errlen, "cannot set minimum TLS version");
        goto fail;
    }
    /*
     * require: encrypt only. With a ca_file (config.h: "also used by require
     * when set") the chain is verified as well, but not the host name --
     * libpq's sslmode=require with a root certificate, i.e. verify-ca.
     * verify-full adds the host name check in tg_tls_new.
     */
    if (ca_file != NULL) {
        if (SSL_CTX_load_verify_file(c, ca_file) != 1) {
            snprintf(what, sizeof(what), "ca_file %s: cannot load PEM CA certificates", ca_file);
            ctx_error(err, errlen, what);
            goto fail;
        }
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    }

    return wrap_ctx(c, false, mode, out, err, errlen);

fail:
    SSL_CTX_free(c);
    ERR_clear_error();
    return TG_ETLS;
}

void tg_tls_ctx_free(tg_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx); /* live SSL objects hold their own references */
    free(ctx);
}

/* ---- connections ---- */

static bool is_ip_literal(const char *name)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* Client side: SNI for DNS names, and the name or address to verify in verify-full. */
static int client_setup(tg_tls *t, tg_backend_tls_mode mode, const char *server_name)
{
    bool has_name = server_name != NULL && server_name[0] != '\0';
    bool ip = has_name && is_ip_literal(server_name);

    if (has_name && !ip && SSL_set_tlsext_host_name(t->ssl, server_name) != 1)
        return TG_ENOMEM;
    if (mode != TG_BACKEND_TLS_VERIFY_FULL)
        return 0;
    if (!has_name) {
        /* Fail closed: verify-full without a name would check the chain only. */
        snprintf(t->err, sizeof(t->err), "verify-full needs a server name to verify");
        t->failed = true;
        return 0;
    }
    if (ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name) != 1)
            return TG_ENOMEM;
    } else {
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(t->ssl, server_name) != 1)
            return TG_ENOMEM;
    }
    return 0;
}

tg_tls *tg_tls_new(tg_tls_ctx *ctx, const char *server_name)
{
    tg_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->server = ctx->server;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        goto fail;
    }
    /* An empty memory BIO means "retry later", never end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both BIOs from here */
    SSL_set_app_data(t->ssl, t);

    if (t->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (client_setup(t, ctx->mode, server_name) != 0)
            goto fail;
    }
    ERR_clear_error();
    return t;

fail:
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
}

void tg_tls_free(tg_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees both BIOs and drops the SSL_CTX reference */
    free(t->pending);
    free(t);
}

/* Replaces an empty memory BIO whose buffer grew large (one huge message) with a fresh one. */
static void bio_shrink(tg_tls *t, bool read_side)
{
    BIO *old = read_side ? t->rbio : t->wbio;
    BUF_MEM *bm = NULL;

    if (!t->done || BIO_ctrl_pending(old) != 0)
        return;
    if (BIO_get_mem_ptr(old, &bm) != 1 || bm == NULL || bm->max <= TLS_BIO_KEEP)
        return;
    BIO *fresh = BIO_new(BIO_s_mem());
    if (fresh == NULL) {
        ERR_clear_error(); /* keep the old one; it still works */
        return;
    }
    BIO_set_mem_eof_return(fresh, -1);
    if (read_side) {
        SSL_set0_rbio(t->ssl, fresh); /* frees old */
        t->rbio = fresh;
    } else {
        SSL_set0_wbio(t->ssl, fresh); /* frees old */
        t->wbio = fresh;
    }
}

int tg_tls_feed(tg_tls *t, const uint8_t *data, size_t len)
{
    if (t->failed)
        return 0; /* nothing will read it; drop */
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(t->rbio, data, chunk);
        if (n <= 0) {
            ERR_clear_error();
            return TG_ENOMEM;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Appends plaintext to the pending buffer (written once the handshake is done). */
static int pending_add(tg_tls *t, const uint8_t *data, size_t len)
{
    if (len > SIZE_MAX - t->pending_len)
        return TG_ENOMEM;
    size_t need = t->pending_len + len;
    if (need > t->pending_cap) {
        size_t cap = t->pending_cap ? t->pending_cap : 1024;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        uint8_t *p = realloc(t->pending, cap);
        if (p == NULL)
            return TG_ENOMEM;
        t->pending = p;
        t->pending_cap = cap;
    }
    memcpy(t->pending + t->pending_len, data, len);
    t->pending_len = need;
    return 0;
}

/*
 * Encrypts data into the wbio. Returns 0 when all of it was written, 1 when
 * OpenSSL needs to read first (the caller keeps the bytes and retries), or TG_ETLS.
 */
static int ssl_write_all(tg_tls *t, const uint8_t *data, size_t len, size_t *written)
{
    *written = 0;
    while (*written < len) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, data + *written, len - *written, &n) == 1) {
            *written += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return 1;
        }
        return tls_fail(t, "write failed");
    }
    return 0;
}

/* Writes the pending plaintext; frees the buffer once it is empty. Returns 0 or TG_ETLS. */
static int pending_flush(tg_tls *t)
{
    if (t->pending_len == 0)
        return 0;
    size_t written = 0;
    int rc = ssl_write_all(t, t->pending, t->pending_len, &written);
    if (rc < 0)
        return rc;
    /*
     * Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write_ex reports success
     * only for everything; on a retry OpenSSL resumes inside its own state
     * and must be handed the same bytes again, so nothing is dropped here
     * unless all of it went through.
     */
    if (rc == 0) {
        free(t->pending);
        t->pending = NULL;
        t->pending_len = t->pending_cap = 0;
    }
    return 0;
}

int tg_tls_handshake(tg_tls *t)
{
    if (t->failed)
        return TG_ETLS;
    if (t->done)
        return 1;

    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->done = true;
        if (pending_flush(t) < 0)
            return TG_ETLS;
        return 1;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return TG_NEED_MORE;
    }
    return tls_fail(t, e == SSL_ERROR_SYSCALL ? "unexpected end of handshake" : "handshake failed");
}

bool tg_tls_handshake_done(const tg_tls *t)
{
    return t->done;
}

ssize_t tg_tls_read(tg_tls *t, uint8_t *buf, size_t cap)
{
    if (t->failed)
        return TG_ETLS;
    if (!t->done) {
        int rc = tg_tls_handshake(t);
        if (rc != 1)
            return rc;
    } else if (t->pending_len > 0 && pending_flush(t) < 0) {
        return TG_ETLS;
    }
    if (cap == 0)
        return TG_NEED_MORE;
    if (cap > SSIZE_MAX)
        cap = SSIZE_MAX;

    size_t n = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(t->ssl, buf, cap, &n);
    if (rc == 1) {
        bio_shrink(t, true);
        return (ssize_t)n;
    }
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        bio_shrink(t, true);
        return TG_NEED_MORE;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return TG_ECLOSED;
    default:
        return tls_fail(t, e == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "read failed");
    }
}

int tg_tls_write(tg_tls *t, const uint8_t *data, size_t len)
{
    if (t->failed)
        return TG_ETLS;
    if (len == 0)
        return 0;
    if (!t->done || t->pending_len > 0) {
        /* Early write (or a retry is outstanding): keep order, flush later. */
        if (pending_add(t, data, len) != 0)
            return TG_ENOMEM;
        int rc = t->done ? pending_flush(t) : tg_tls_handshake(t);
        return rc < 0 ? TG_ETLS : 0;
    }
    size_t written = 0;
    int rc = ssl_write_all(t, data, len, &written);
    if (rc < 0)
        return rc;
    if (rc == 1 && pending_add(t, data + written, len - written) != 0)
        return TG_ENOMEM;
    return 0;
}

size_t tg_tls_pending_out(const tg_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t tg_tls_take_out(tg_tls *t, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    if (BIO_read_ex(t->wbio, buf, cap, &n) != 1)
        n = 0; /* empty: BIO_read_ex reports that as a failure */
    ERR_clear_error();
    bio_shrink(t, false);
    return n;
}

void tg_tls_shutdown(tg_tls *t)
{
    if (t->failed || !t->done)
        return; /* no session to close; the caller just drops the connection */
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* 0: our close_notify is queued; the peer's is not awaited */
    ERR_clear_error();
}

const char *tg_tls_sni(const tg_tls *t)
{
    return t->server && t->sni[0] != '\0' ? t->sni : NULL;
}

const char *tg_tls_last_error(const tg_tls *t)
{
    return t->err[0] != '\0' ? t->err : "no error";
}
