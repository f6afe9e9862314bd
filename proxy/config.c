/*
 * tenantgate.yaml -> tg_config.
 *
 *   text --libyaml events--> build_tree() --> node tree --> parse_root() --> tg_config
 *         refuses anchors, aliases, tags,          strict walker: every mapping's keys
 *         a second document, deep nesting          checked against its known list
 *                                                  (unknown / duplicate = error), typed
 *                                                  getters, *_file secrets read, then
 *                                                  cross-checks (names, addresses, keys)
 *
 * Two passes keep each simple: build_tree() only turns the event stream into
 * a small tree of scalars, mappings and sequences (each node remembers its
 * 1-based line); the walker then knows where it is (the key path, e.g.
 * "listeners[0].backend.user") and which keys are allowed. Anchors and aliases
 * are refused while building, so nothing is ever expanded (no billion laughs).
 *
 * Every error is reported once, as "name:line: key.path: problem", through a
 * sticky `failed` flag: after the first error every helper returns at once,
 * so section parsers call their getters in a row and check the flag at the
 * end. Syntax errors from libyaml use the path "yaml"; problems with the
 * document itself (empty, not a mapping) use "(document)". tg_config_load's own
 * errors (the file cannot be opened or read) have no line: "name: cannot open: why".
 *
 * Typing rules (strict on purpose):
 *   - integers are plain (unquoted) decimal scalars without sign or leading zero;
 *   - booleans are plain `true` or `false` (no yes/no/on/off);
 *   - strings are any scalar except null (`~`, `null`, empty), must be non-empty and
 *     hold no control characters;
 *   - explicit tags (`!!str`, `!foo`) are refused.
 *
 * Files: `*_file` secrets (hs256_secret_file, public_key_file, jwks_file,
 * password_file, postgres.context_key_file, redis.acl_key_file,
 * tenants.registry.password_file) are read here (regular files only, at most 1 MiB, one trailing
 * "\n" or "\r\n" dropped, empty is an error) and zeroed again by tg_config_free.
 * cert_file, key_file and ca_file are only checked to be readable regular files
 * (cert_file/key_file only when tls.mode is not disable) and kept as paths.
 * Relative paths are taken from the directory of the config's name.
 *
 * Key sources vs algorithms (kept deliberately simple): hs256_secret_file needs at
 * least one HS* algorithm in auth.jwt.algorithms, public_key_file and jwks_file need
 * at least one RS*, PS* or ES* algorithm; otherwise the key could never verify a token
 * and the config is refused. Algorithms without a matching key are allowed.
 */
#include "proxy/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "proxy/error.h"

#define CFG_SECRET_MAX (1024u * 1024u)    /* a *_file secret */
#define CFG_TEXT_MAX (4u * 1024u * 1024u) /* the config file itself (tg_config_load) */
#define CFG_DEPTH_MAX 64                  /* nested mappings/sequences */
#define CFG_LISTENERS_MAX 1024
#define CFG_STRING_MAX 4096
#define CFG_KEYPATH_MAX 256
#define CFG_HOST_MAX 256
#define CFG_WORKERS_MAX 256
#define CFG_CONTEXT_KEY_MIN 32 /* postgres.context_key_file: an HMAC-SHA256 key of >= 256 bits */

/* ---------------------------------------------------------------- the tree */

typedef enum { NODE_SCALAR, NODE_MAP, NODE_SEQ } node_kind;

typedef struct node {
    node_kind kind;
    size_t line;         /* 1-based */
    bool plain;          /* a scalar written without quotes */
    char *str;           /* scalar text, NUL-terminated (may hold NULs: see len) */
    size_t len;          /* scalar length */
    struct node **items; /* map: key, value, key, value...; seq: the items */
    size_t n, cap;
} node;

/* Frees a node and its children. Depth is bounded by CFG_DEPTH_MAX. */
static void node_free(node *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        node_free(n->items[i]);
    }
    free(n->items);
    free(n->str);
    free(n);
}

/* Appends child to parent (takes ownership on success). Returns 0 or -1 (out of memory). */
static int node_append(node *parent, node *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        node **items = realloc(parent->items, cap * sizeof *items);
        if (!items) {
            return -1;
        }
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return 0;
}

/* ------------------------------------------------------------- the walker */

typedef struct walker {
    const char *name; /* for messages */
    char *dir;        /* directory of name for relative paths; NULL: the cwd */
    char *err;        /* borrowed from the caller */
    size_t errlen;
    bool failed; /* sticky: the first error wins */
    char path[CFG_KEYPATH_MAX];
    size_t plen;
    const node *root; /* for cross-checks */
    const node *jwt;  /* auth.jwt, when present */
} walker;

static void vfail(walker *w, size_t line, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void vfail(walker *w, size_t line, const char *fmt, va_list ap)
{
    if (w->failed) {
        return;
    }
    w->failed = true;
    if (!w->err || w->errlen == 0) {
        return;
    }
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(w->err, w->errlen, "%s:%zu: %s: %s", w->name, line, w->plen ? w->path : "(document)",
             msg);
}

/* Records the first error, at the current key path. */
static void fail(walker *w, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(walker *w, size_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(w, line, fmt, ap);
    va_end(ap);
}

static void fail_oom(walker *w)
{
    fail(w, 0, "out of memory");
}

static void path_putc(walker *w, char c)
{
    if (w->plen + 1 < sizeof w->path) {
        w->path[w->plen++] = c;
        w->path[w->plen] = '\0';
    }
}

static void path_puts(walker *w, const char *s)
{
    while (*s) {
        path_putc(w, *s++);
    }
}

/* Appends ".key" (or "key" at the top) to the path; returns the length to restore. Keys from
 * the input are shown printable and cut at 64 bytes. */
static size_t path_keyn(walker *w, const char *key, size_t len)
{
    size_t saved = w->plen;
    if (w->plen > 0) {
        path_putc(w, '.');
    }
    for (size_t i = 0; i < len && i < 64; i++) {
        unsigned char c = (unsigned char)key[i];
        path_putc(w, c >= 0x20 && c < 0x7f ? (char)c : '?');
    }
    if (len > 64) {
        path_puts(w, "...");
    }
    return saved;
}

static size_t path_key(walker *w, const char *key)
{
    return path_keyn(w, key, strlen(key));
}

/* Appends "[i]"; returns the length to restore. */
static size_t path_index(walker *w, size_t i)
{
    size_t saved = w->plen;
    char buf[32];
    snprintf(buf, sizeof buf, "[%zu]", i);
    path_puts(w, buf);
    return saved;
}

static void path_restore(walker *w, size_t saved)
{
    w->plen = saved;
    w->path[saved] = '\0';
}

/* Copies s (len bytes) into buf as a short printable snippet for an error message. */
static const char *snippet(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < buflen; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (o + 4 >= buflen && o < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* ----------------------------------------------------------- tree builder */

/*
 * Sets the walker's path to where the event being built sits, from the stack of open
 * containers: a sequence's child is its next item, a mapping's child is the value of its
 * pending key, or the key itself when no key is pending.
 */
static void stack_path(walker *w, node *const *stack, int depth, const yaml_event_t *ev)
{
    path_restore(w, 0);
    for (int i = 0; i < depth; i++) {
        const node *c = stack[i];
        bool last = i == depth - 1;
        if (c->kind == NODE_SEQ) {
            path_index(w, last ? c->n : c->n - 1);
            continue;
        }
        /* mapping: the child is a value when the item count (with the child) is even */
        size_t n = last ? c->n + 1 : c->n;
        if (n % 2 == 1) {
            if (last && ev->type == YAML_SCALAR_EVENT) {
                path_keyn(w, (const char *)ev->data.scalar.value, ev->data.scalar.length);
            } else {
                path_key(w, "?");
            }
            return;
        }
        const node *k = c->items[n - 2];
        if (k->kind == NODE_SCALAR) {
            path_keyn(w, k->str, k->len);
        } else {
            path_key(w, "?");
        }
    }
}

static void fail_syntax(walker *w, const yaml_parser_t *p, const char *yaml, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR) {
        fail_oom(w);
        return;
    }
    path_restore(w, 0);
    path_puts(w, "yaml");
    size_t line = p->problem_mark.line + 1;
    if (p->error == YAML_READER_ERROR) { /* only an offset is known: count the lines */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            line += yaml[i] == '\n';
        }
    }
    if (p->context) {
        fail(w, line, "%s (%s)", p->problem ? p->problem : "syntax error", p->context);
    } else {
        fail(w, line, "%s", p->problem ? p->problem : "syntax error");
    }
}

/*
 * Parses the YAML text into a tree. Returns the root (caller frees with node_free) or NULL
 * with the walker failed.
 */
static node *build_tree(walker *w, const char *yaml, size_t len)
{
    yaml_parser_t p;
    node *stack[CFG_DEPTH_MAX];
    int depth = 0;
    node *root = NULL;
    int docs = 0;
    bool done = false;

    if (!yaml_parser_initialize(&p)) {
        fail_oom(w);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    while (!done && !w->failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            fail_syntax(w, &p, yaml, len);
            break;
        }
        size_t line = ev.start_mark.line + 1;
        const yaml_char_t *anchor = NULL, *tag = NULL;
        node_kind kind = NODE_SCALAR;
        bool make = false;

        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                path_restore(w, 0);
                fail(w, line, "multiple YAML documents are not allowed");
            }
            break;
        case YAML_ALIAS_EVENT:
            stack_path(w, stack, depth, &ev);
            fail(w, line, "YAML aliases are not allowed");
            break;
        case YAML_SCALAR_EVENT:
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
            make = true;
            break;
        case YAML_SEQUENCE_START_EVENT:
            anchor = ev.data.sequence_start.anchor;
            tag = ev.data.sequence_start.tag;
            kind = NODE_SEQ;
            make = true;
            break;
        case YAML_MAPPING_START_EVENT:
            anchor = ev.data.mapping_start.anchor;
            tag = ev.data.mapping_start.tag;
            kind = NODE_MAP;
            make = true;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                depth--;
            }
            break;
        default:
            break;
        }

        if (make && (anchor || tag)) {
            stack_path(w, stack, depth, &ev);
            fail(w, line, anchor ? "YAML anchors are not allowed" : "YAML tags are not allowed");
            make = false;
        }
        if (make && kind != NODE_SCALAR && depth == CFG_DEPTH_MAX) {
            stack_path(w, stack, depth, &ev);
            fail(w, line, "nested deeper than %d levels", CFG_DEPTH_MAX);
            make = false;
        }
        if (make) {
            node *n = calloc(1, sizeof *n);
            if (n) {
                n->kind = kind;
                n->line = line;
                if (kind == NODE_SCALAR) {
                    n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                    n->len = ev.data.scalar.length;
                    n->str = malloc(n->len + 1);
                    if (n->str) {
                        memcpy(n->str, ev.data.scalar.value, n->len);
                        n->str[n->len] = '\0';
                    }
                }
            }
            if (!n || (kind == NODE_SCALAR && !n->str)) {
                node_free(n);
                fail_oom(w);
            } else if (depth == 0 && root) {
                node_free(n); /* unreachable: a second document is refused above */
                fail(w, line, "unexpected second root node");
            } else if (depth == 0) {
                root = n;
            } else if (node_append(stack[depth - 1], n) < 0) {
                node_free(n);
                fail_oom(w);
            }
            if (!w->failed && kind != NODE_SCALAR) {
                stack[depth++] = n;
            }
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (!w->failed && !root) {
        path_restore(w, 0);
        fail(w, 1, "the configuration is empty");
    }
    if (w->failed) {
        node_free(root);
        return NULL;
    }
    path_restore(w, 0);
    return root;
}

/* ------------------------------------------------------- typed accessors */

static bool scalar_is(const node *n, const char *s)
{
    size_t len = strlen(s);
    return n->kind == NODE_SCALAR && n->len == len && memcmp(n->str, s, len) == 0;
}

static bool is_null(const node *n)
{
    return n->kind == NODE_SCALAR && n->plain &&
           (n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
            scalar_is(n, "NULL"));
}

/* Returns the value of key in mapping m, or NULL. */
static const node *map_get(const node *m, const char *key)
{
    if (m->kind != NODE_MAP) {
        return NULL;
    }
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        if (scalar_is(m->items[i], key)) {
            return m->items[i + 1];
        }
    }
    return NULL;
}

/* Checks that v is a mapping whose keys are unique scalars from `keys` (NULL-terminated). */
static bool check_map(walker *w, const node *v, const char *const *keys)
{
    if (w->failed) {
        return false;
    }
    if (v->kind != NODE_MAP) {
        fail(w, v->line, "expected a mapping");
        return false;
    }
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const node *k = v->items[i];
        if (k->kind != NODE_SCALAR || is_null(k)) {
            fail(w, k->line, "mapping keys must be strings");
            return false;
        }
        size_t saved = path_keyn(w, k->str, k->len);
        bool known = false;
        for (const char *const *kk = keys; *kk && !known; kk++) {
            known = scalar_is(k, *kk);
        }
        if (!known) {
            fail(w, k->line, "unknown key");
        }
        for (size_t j = 0; j < i && !w->failed; j += 2) {
            const node *o = v->items[j];
            if (o->len == k->len && memcmp(o->str, k->str, k->len) == 0) {
                fail(w, k->line, "duplicate key (first at line %zu)", o->line);
            }
        }
        path_restore(w, saved);
        if (w->failed) {
            return false;
        }
    }
    return true;
}

static bool check_seq(walker *w, const node *v)
{
    if (w->failed) {
        return false;
    }
    if (v->kind != NODE_SEQ) {
        fail(w, v->line, "expected a list");
        return false;
    }
    return true;
}

/* Duplicates s into *dst (freeing the old value); fails the walker when out of memory. */
static void set_str(walker *w, char **dst, const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fail_oom(w);
        return;
    }
    free(*dst);
    *dst = d;
}

/* Stores the string value of v in *out (replacing a default). */
static void get_string(walker *w, const node *v, char **out)
{
    if (w->failed) {
        return;
    }
    if (v->kind != NODE_SCALAR || is_null(v)) {
        fail(w, v->line, "expected a string");
        return;
    }
    if (v->len == 0) {
        fail(w, v->line, "must not be empty");
        return;
    }
    if (v->len > CFG_STRING_MAX) {
        fail(w, v->line, "longer than %d bytes", CFG_STRING_MAX);
        return;
    }
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->str[i];
        if (c < 0x20 || c == 0x7f) {
            fail(w, v->line, "must not contain control characters");
            return;
        }
    }
    set_str(w, out, v->str);
}

static void get_uint(walker *w, const node *v, uint32_t min, uint32_t max, uint32_t *out)
{
    if (w->failed) {
        return;
    }
    bool ok = v->kind == NODE_SCALAR && v->plain && v->len > 0;
    if (ok && v->str[0] == '-' && v->len > 1) {
        bool digits = true;
        for (size_t i = 1; i < v->len; i++) {
            digits = digits && v->str[i] >= '0' && v->str[i] <= '9';
        }
        if (digits) {
            fail(w, v->line, "must not be negative");
            return;
        }
    }
    uint64_t val = 0;
    for (size_t i = 0; ok && i < v->len; i++) {
        char c = v->str[i];
        ok = c >= '0' && c <= '9' && !(i == 0 && c == '0' && v->len > 1);
        if (ok && val <= UINT32_MAX) {
            val = val * 10 + (uint64_t)(c - '0'); /* stops growing past UINT32_MAX: no overflow */
        }
    }
    if (!ok) {
        fail(w, v->line, "expected an integer");
        return;
    }
    if (val < min || val > max) {
        fail(w, v->line, "must be between %u and %u", (unsigned)min, (unsigned)max);
        return;
    }
    *out = (uint32_t)val;
}

static void get_bool(walker *w, const node *v, bool *out)
{
    if (w->failed) {
        return;
    }
    if (v->kind == NODE_SCALAR && v->plain && scalar_is(v, "true")) {
        *out = true;
    } else if (v->kind == NODE_SCALAR && v->plain && scalar_is(v, "false")) {
        *out = false;
    } else {
        fail(w, v->line, "expected true or false");
    }
}

/* Stores the index of v's value in names (NULL-terminated) in *out. */
static void get_enum(walker *w, const node *v, const char *const *names, int *out)
{
    if (w->failed) {
        return;
    }
    if (v->kind == NODE_SCALAR && !is_null(v)) {
        for (int i = 0; names[i]; i++) {
            if (scalar_is(v, names[i])) {
                *out = i;
                return;
            }
        }
    }
    char list[256] = "";
    size_t o = 0;
    for (int i = 0; names[i] && o < sizeof list; i++) {
        int r = snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", names[i]);
        if (r < 0) {
            break;
        }
        o += (size_t)r;
    }
    fail(w, v->line, "must be one of: %s", list);
}

/* -------------------------------------------------- files and addresses */

/* Joins the config's directory and a relative path; absolute paths are kept. */
static void resolve_path(walker *w, const char *p, char **out)
{
    if (p[0] == '/' || !w->dir) {
        set_str(w, out, p);
        return;
    }
    size_t dl = strlen(w->dir), pl = strlen(p);
    bool slash = dl > 0 && w->dir[dl - 1] == '/';
    char *s = malloc(dl + 1 + pl + 1);
    if (!s) {
        fail_oom(w);
        return;
    }
    memcpy(s, w->dir, dl);
    if (!slash) {
        s[dl++] = '/';
    }
    memcpy(s + dl, p, pl + 1);
    free(*out);
    *out = s;
}

static void errno_str(int e, char *why, size_t whylen)
{
    char buf[128];
    const char *s = strerror_r(e, buf, sizeof buf); /* GNU variant (_GNU_SOURCE) */
    snprintf(why, whylen, "%s", s);
}

/* Opens a regular file for reading (never blocks on a FIFO or a device). Returns the fd or -1
 * with a reason in why. */
static int open_regular(const char *path, struct stat *st, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        errno_str(errno, why, whylen);
        return -1;
    }
    if (fstat(fd, st) != 0) {
        errno_str(errno, why, whylen);
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, whylen, "not a regular file");
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads a secret file into s->data / s->len (one trailing newline dropped). Returns 0 or -1
 * with a reason in why; s is untouched on failure and the buffer is zeroed before freeing. */
static int read_secret(const char *path, tg_secret *s, char *why, size_t whylen)
{
    struct stat st;
    int fd = open_regular(path, &st, why, whylen);
    if (fd < 0) {
        return -1;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > CFG_SECRET_MAX) {
        snprintf(why, whylen, "larger than 1 MiB");
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        snprintf(why, whylen, "out of memory");
        close(fd);
        return -1;
    }
    int rc = 0;
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            errno_str(errno, why, whylen);
            rc = -1;
            break;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    if (rc == 0) {
        char extra;
        ssize_t r;
        do {
            r = read(fd, &extra, 1);
        } while (r < 0 && errno == EINTR);
        explicit_bzero(&extra, sizeof extra);
        if (r != 0) {
            if (r < 0) {
                errno_str(errno, why, whylen);
            } else {
                snprintf(why, whylen, "its size changed while reading");
            }
            rc = -1;
        }
    }
    close(fd);
    if (rc == 0) {
        if (len > 0 && buf[len - 1] == '\n') {
            len--;
            if (len > 0 && buf[len - 1] == '\r') {
                len--;
            }
        }
        if (len == 0) {
            snprintf(why, whylen, "the file is empty");
            rc = -1;
        }
    }
    if (rc != 0) {
        explicit_bzero(buf, cap + 1);
        free(buf);
        return -1;
    }
    buf[len] = '\0';
    s->data = buf;
    s->len = len;
    return 0;
}

int tg_config_split_address(const char *address, char *host, size_t hostlen, uint16_t *port)
{
    if (!address || !host || hostlen == 0 || !port) {
        return TG_EINVAL;
    }
    const char *h, *hend, *p;
    if (address[0] == '[') {
        h = address + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h || hend[1] != ':') {
            return TG_EINVAL;
        }
        p = hend + 2;
        bool colon = false;
        for (const char *c = h; c < hend; c++) {
            bool ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                      (*c >= 'A' && *c <= 'Z') || *c == ':' || *c == '.' || *c == '%' ||
                      *c == '_' || *c == '-';
            if (!ok) {
                return TG_EINVAL;
            }
            colon = colon || *c == ':';
        }
        if (!colon) {
            return TG_EINVAL;
        }
    } else {
        h = address;
        hend = strrchr(address, ':');
        if (!hend || hend == h) {
            return TG_EINVAL;
        }
        p = hend + 1;
        for (const char *c = h; c < hend; c++) {
            bool ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                      (*c >= 'A' && *c <= 'Z') || *c == '.' || *c == '_' || *c == '-';
            if (!ok) {
                return TG_EINVAL; /* includes ':': IPv6 needs brackets */
            }
        }
    }
    size_t plen = strlen(p);
    if (plen == 0 || plen > 5) {
        return TG_EINVAL;
    }
    unsigned v = 0;
    for (size_t i = 0; i < plen; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return TG_EINVAL;
        }
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return TG_EINVAL;
    }
    size_t hl = (size_t)(hend - h);
    if (hl + 1 > hostlen) {
        return TG_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* --------------------------------------------------------- keyed fields */

/* Looks up key in m; when present, pushes it on the path (restore with *saved). */
static const node *field(walker *w, const node *m, const char *key, size_t *saved)
{
    if (w->failed) {
        return NULL;
    }
    const node *v = map_get(m, key);
    if (v) {
        *saved = path_key(w, key);
    }
    return v;
}

/* Fails at key of m (at its value's line, or m's when absent). */
static void fail_key(walker *w, const node *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_key(walker *w, const node *m, const char *key, const char *fmt, ...)
{
    if (w->failed) {
        return;
    }
    const node *v = map_get(m, key);
    size_t saved = path_key(w, key);
    va_list ap;
    va_start(ap, fmt);
    vfail(w, v ? v->line : m->line, fmt, ap);
    va_end(ap);
    path_restore(w, saved);
}

static void require(walker *w, const node *m, const char *key)
{
    if (!w->failed && !map_get(m, key)) {
        fail_key(w, m, key, "required key is missing");
    }
}

static void field_string(walker *w, const node *m, const char *key, char **out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (v) {
        get_string(w, v, out);
        path_restore(w, s);
    }
}

static void field_uint(walker *w, const node *m, const char *key, uint32_t min, uint32_t max,
                       uint32_t *out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (v) {
        get_uint(w, v, min, max, out);
        path_restore(w, s);
    }
}

static void field_bool(walker *w, const node *m, const char *key, bool *out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (v) {
        get_bool(w, v, out);
        path_restore(w, s);
    }
}

static void field_enum(walker *w, const node *m, const char *key, const char *const *names,
                       int *out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (v) {
        get_enum(w, v, names, out);
        path_restore(w, s);
    }
}

/* A "host:port" string. */
static void field_address(walker *w, const node *m, const char *key, char **out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (!v) {
        return;
    }
    char *a = NULL;
    get_string(w, v, &a);
    char host[CFG_HOST_MAX];
    uint16_t port;
    if (!w->failed && tg_config_split_address(a, host, sizeof host, &port) != 0) {
        fail(w, v->line, "expected host:port (e.g. 127.0.0.1:6432 or [::1]:6432; port 1-65535)");
    }
    if (!w->failed) {
        free(*out);
        *out = a;
        a = NULL;
    }
    free(a);
    path_restore(w, s);
}

/* A file path, resolved against the config's directory; checked readable when `check`. */
static void field_path(walker *w, const node *m, const char *key, bool check, char **out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (!v) {
        return;
    }
    char *raw = NULL;
    get_string(w, v, &raw);
    if (!w->failed) {
        resolve_path(w, raw, out);
    }
    free(raw);
    if (!w->failed && check) {
        struct stat st;
        char why[160];
        int fd = open_regular(*out, &st, why, sizeof why);
        if (fd < 0) {
            fail(w, v->line, "cannot read %s: %s", *out, why);
        } else {
            close(fd);
        }
    }
    path_restore(w, s);
}

/* A secret file: resolved, read and stored. */
static void field_secret(walker *w, const node *m, const char *key, tg_secret *out)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (!v) {
        return;
    }
    char *raw = NULL;
    get_string(w, v, &raw);
    if (!w->failed) {
        resolve_path(w, raw, &out->path);
    }
    free(raw);
    if (!w->failed) {
        char why[160];
        if (read_secret(out->path, out, why, sizeof why) != 0) {
            fail(w, v->line, "cannot read %s: %s", out->path, why);
        }
    }
    path_restore(w, s);
}

/* True when s is identifier segments joined by dots, with at least min_dots dots. */
static bool dotted_ident(const char *s, int min_dots)
{
    int dots = 0;
    bool start = true;
    for (; *s; s++) {
        char c = *s;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (c == '.' && !start) {
            dots++;
            start = true;
        } else if (alpha || (!start && c >= '0' && c <= '9')) {
            start = false;
        } else {
            return false;
        }
    }
    return !start && dots >= min_dots;
}

/* Fails when key is present in m and its (already stored) value lacks "{tenant}". */
static void check_tenant_template(walker *w, const node *m, const char *key, const char *value)
{
    if (!w->failed && map_get(m, key) && !strstr(value, "{tenant}")) {
        fail_key(w, m, key, "must contain {tenant}");
    }
}

/* ------------------------------------------------------------- sections */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"json", "text", NULL};
static const char *const protocols[] = {"tcp", "postgres", "redis", "mongodb", "bolt", NULL};
static const char *const tls_modes[] = {"disable", "allow", "require", NULL};
static const char *const backend_tls_modes[] = {"disable", "require", "verify-full", NULL};
static const char *const mongo_isolations[] = {"field", "database", NULL};
static const char *const bolt_isolations[] = {"property", "label", "database", NULL};
static const char *const registry_failures[] = {"deny", "cached", NULL};

static const struct {
    const char *name;
    uint32_t bit;
} jwt_algs[] = {
    {"HS256", TG_JWT_ALG_HS256}, {"HS384", TG_JWT_ALG_HS384}, {"HS512", TG_JWT_ALG_HS512},
    {"RS256", TG_JWT_ALG_RS256}, {"RS384", TG_JWT_ALG_RS384}, {"RS512", TG_JWT_ALG_RS512},
    {"ES256", TG_JWT_ALG_ES256}, {"ES384", TG_JWT_ALG_ES384}, {"PS256", TG_JWT_ALG_PS256},
};

#define JWT_ALGS_HMAC (TG_JWT_ALG_HS256 | TG_JWT_ALG_HS384 | TG_JWT_ALG_HS512)
#define JWT_ALGS_PUBLIC                                                                            \
    (TG_JWT_ALG_RS256 | TG_JWT_ALG_RS384 | TG_JWT_ALG_RS512 | TG_JWT_ALG_ES256 |                   \
     TG_JWT_ALG_ES384 | TG_JWT_ALG_PS256)

static void parse_algorithms(walker *w, const node *v, uint32_t *out)
{
    if (!check_seq(w, v)) {
        return;
    }
    if (v->n == 0) {
        fail(w, v->line, "at least one algorithm is required");
        return;
    }
    uint32_t bits = 0;
    for (size_t i = 0; i < v->n && !w->failed; i++) {
        const node *it = v->items[i];
        size_t saved = path_index(w, i);
        char buf[40];
        if (it->kind != NODE_SCALAR || is_null(it)) {
            fail(w, it->line, "expected a string");
        } else if (it->len == 4 && strncasecmp(it->str, "none", 4) == 0) {
            fail(w, it->line, "algorithm \"none\" is never accepted");
        } else {
            uint32_t bit = 0;
            for (size_t a = 0; a < sizeof jwt_algs / sizeof jwt_algs[0]; a++) {
                if (scalar_is(it, jwt_algs[a].name)) {
                    bit = jwt_algs[a].bit;
                }
            }
            if (!bit) {
                fail(w, it->line,
                     "unknown algorithm \"%s\" (expected HS256, HS384, HS512, RS256, RS384, "
                     "RS512, ES256, ES384 or PS256)",
                     snippet(it->str, it->len, buf, sizeof buf));
            } else if (bits & bit) {
                fail(w, it->line, "duplicate algorithm \"%s\"",
                     snippet(it->str, it->len, buf, sizeof buf));
            }
            bits |= bit;
        }
        path_restore(w, saved);
    }
    if (!w->failed) {
        *out = bits;
    }
}

static void parse_jwt(walker *w, const node *m, tg_jwt_config *j)
{
    static const char *const keys[] = {
        "algorithms", "hs256_secret_file", "public_key_file", "jwks_file",  "issuer",
        "audience",   "tenant_claim",      "leeway_s",        "cache_size", "max_token_bytes",
        NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    w->jwt = m;
    size_t s;
    const node *v = field(w, m, "algorithms", &s);
    if (v) {
        parse_algorithms(w, v, &j->algorithms);
        path_restore(w, s);
    }
    field_secret(w, m, "hs256_secret_file", &j->hs256_secret);
    field_secret(w, m, "public_key_file", &j->public_key);
    field_secret(w, m, "jwks_file", &j->jwks);
    field_string(w, m, "issuer", &j->issuer);
    field_string(w, m, "audience", &j->audience);
    field_string(w, m, "tenant_claim", &j->tenant_claim);
    field_uint(w, m, "leeway_s", 0, 3600, &j->leeway_s);
    field_uint(w, m, "cache_size", 0, 1u << 20, &j->cache_size);
    field_uint(w, m, "max_token_bytes", 256, 65536, &j->max_token_bytes);

    /* a key whose algorithm family is not allowed could never verify anything */
    if (j->hs256_secret.data && !(j->algorithms & JWT_ALGS_HMAC)) {
        fail_key(w, m, "hs256_secret_file",
                 "no HS256/HS384/HS512 algorithm is allowed in auth.jwt.algorithms, so this "
                 "key could never verify a token");
    }
    if (j->public_key.data && !(j->algorithms & JWT_ALGS_PUBLIC)) {
        fail_key(w, m, "public_key_file",
                 "no RS*, PS* or ES* algorithm is allowed in auth.jwt.algorithms, so this key "
                 "could never verify a token");
    }
    if (j->jwks.data && !(j->algorithms & JWT_ALGS_PUBLIC)) {
        fail_key(w, m, "jwks_file",
                 "no RS*, PS* or ES* algorithm is allowed in auth.jwt.algorithms, so this key "
                 "set could never verify a token");
    }
}

static void parse_sni(walker *w, const node *m, tg_sni_config *sni)
{
    static const char *const keys[] = {"suffix", "slug_claim", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    require(w, m, "suffix");
    field_string(w, m, "suffix", &sni->suffix);
    field_string(w, m, "slug_claim", &sni->slug_claim);
    if (!w->failed && (sni->suffix[0] != '.' || sni->suffix[1] == '\0')) {
        fail_key(w, m, "suffix", "must start with '.' (e.g. .db.example.com)");
    }
}

static void parse_auth(walker *w, const node *m, tg_config *cfg)
{
    static const char *const keys[] = {"jwt", "sni", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    size_t s;
    const node *v = field(w, m, "jwt", &s);
    if (v) {
        parse_jwt(w, v, &cfg->jwt);
        path_restore(w, s);
    }
    v = field(w, m, "sni", &s);
    if (v) {
        parse_sni(w, v, &cfg->sni);
        path_restore(w, s);
    }
}

static void parse_client_tls(walker *w, const node *m, tg_client_tls_config *tls)
{
    static const char *const keys[] = {"mode", "cert_file", "key_file", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    int mode = (int)tls->mode;
    field_enum(w, m, "mode", tls_modes, &mode);
    tls->mode = (tg_tls_mode)mode;
    bool used = tls->mode != TG_TLS_DISABLE;
    if (used) {
        require(w, m, "cert_file");
        require(w, m, "key_file");
    }
    field_path(w, m, "cert_file", used, &tls->cert_file);
    field_path(w, m, "key_file", used, &tls->key_file);
}

static void parse_backend(walker *w, const node *m, tg_listener_config *l)
{
    static const char *const keys[] = {"address", "user",    "password_file", "auth_db",
                                       "tls",     "ca_file", "server_name",   NULL};
    tg_backend_config *b = &l->backend;
    if (!check_map(w, m, keys)) {
        return;
    }
    require(w, m, "address");
    field_address(w, m, "address", &b->address);
    field_string(w, m, "user", &b->user);
    field_secret(w, m, "password_file", &b->password);
    if (!w->failed && map_get(m, "auth_db") && l->protocol != TG_PROTO_MONGODB) {
        fail_key(w, m, "auth_db", "only valid for protocol mongodb");
    }
    field_string(w, m, "auth_db", &b->auth_db);
    int mode = (int)b->tls;
    field_enum(w, m, "tls", backend_tls_modes, &mode);
    b->tls = (tg_backend_tls_mode)mode;
    if (b->tls == TG_BACKEND_TLS_VERIFY_FULL) {
        require(w, m, "ca_file");
    }
    field_path(w, m, "ca_file", true, &b->ca_file);
    field_string(w, m, "server_name", &b->server_name);
    if (!w->failed && !b->server_name) {
        char host[CFG_HOST_MAX];
        uint16_t port;
        if (tg_config_split_address(b->address, host, sizeof host, &port) == 0) {
            set_str(w, &b->server_name, host);
        }
    }
}

static void parse_timeouts(walker *w, const node *m, tg_timeouts_config *t)
{
    static const char *const keys[] = {"connect_ms", "handshake_ms", "idle_s", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    field_uint(w, m, "connect_ms", 1, 600000, &t->connect_ms);
    field_uint(w, m, "handshake_ms", 1, 600000, &t->handshake_ms);
    field_uint(w, m, "idle_s", 0, 7 * 86400, &t->idle_s);
}

/* What a list of names holds; decides how each item is checked. */
typedef enum {
    NAMES_ANY,     /* any non-empty string (database names) */
    NAMES_SETTING, /* a setting name: identifier segments joined by dots */
    NAMES_OBJECT,  /* a function or relation: name or schema.name */
    NAMES_CYPHER,  /* a Cypher procedure or function: ns.name, or a namespace as ns.* */
} names_kind;

/* True when s is a PostgreSQL identifier (or schema.identifier when max_dots is 1), every
 * segment at most 63 bytes (NAMEDATALEN - 1). */
static bool pg_name_valid(const char *s, int max_dots)
{
    if (!dotted_ident(s, 0)) {
        return false;
    }
    int dots = 0;
    size_t seg = 0;
    for (; *s; s++) {
        if (*s == '.') {
            dots++;
            seg = 0;
        } else if (++seg > 63) {
            return false;
        }
    }
    return max_dots < 0 || dots <= max_dots;
}

/* True when s is a Cypher procedure or function name (ns.name, dotted identifiers), or a
 * namespace given as "ns.*"; at most 255 bytes. */
static bool cypher_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255) {
        return false;
    }
    if (n > 2 && strcmp(s + n - 2, ".*") == 0) {
        char buf[256];
        memcpy(buf, s, n - 2);
        buf[n - 2] = 0;
        return dotted_ident(buf, 0);
    }
    return dotted_ident(s, 0);
}

/* True when s can name a Neo4j database: 1-63 ASCII letters, digits, dots and dashes, starting
 * with a letter. */
static bool neo4j_db_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

/*
 * A list of strings under key in m, stored as a new NULL-terminated array in *out and its
 * length in *n (the array is freed by tg_config_free, also after a failure half-way).
 * `empty_msg` non-NULL refuses an empty list with that message; otherwise an empty list
 * leaves *out NULL (= none).
 */
static void field_names(walker *w, const node *m, const char *key, names_kind kind,
                        const char *empty_msg, char ***out, size_t *n)
{
    size_t s;
    const node *v = field(w, m, key, &s);
    if (!v) {
        return;
    }
    if (check_seq(w, v) && v->n == 0 && empty_msg) {
        fail(w, v->line, "%s", empty_msg);
    }
    if (!w->failed && v->n > 0) {
        *out = calloc(v->n + 1, sizeof **out);
        if (!*out) {
            fail_oom(w);
        }
    }
    for (size_t i = 0; !w->failed && i < v->n; i++) {
        size_t saved = path_index(w, i);
        get_string(w, v->items[i], &(*out)[i]);
        if (!w->failed) {
            *n = i + 1;
        }
        if (!w->failed && kind == NAMES_SETTING && !pg_name_valid((*out)[i], -1)) {
            fail(w, v->items[i]->line,
                 "must be a setting name such as statement_timeout or "
                 "app.region");
        }
        if (!w->failed && kind == NAMES_OBJECT && !pg_name_valid((*out)[i], 1)) {
            fail(w, v->items[i]->line,
                 "must be a name or schema.name such as pg_read_file or "
                 "pg_catalog.pg_stat_activity");
        }
        if (!w->failed && kind == NAMES_CYPHER && !cypher_name_valid((*out)[i])) {
            fail(w, v->items[i]->line,
                 "must be a name such as db.labels or a namespace such as apoc.text.* "
                 "(letters, digits and _, joined by dots)");
        }
        path_restore(w, saved);
    }
    path_restore(w, s);
}

static void parse_postgres(walker *w, const node *m, tg_postgres_config *pg)
{
    static const char *const keys[] = {"tenant_setting",
                                       "allow_ddl",
                                       "databases",
                                       "tenant_column",
                                       "reserved_settings",
                                       "deny_functions",
                                       "deny_relations",
                                       "signed_context",
                                       "context_key_file",
                                       "max_message_bytes",
                                       "max_connections_per_tenant",
                                       "session_timeout_s",
                                       NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    field_string(w, m, "tenant_setting", &pg->tenant_setting);
    if (!w->failed && map_get(m, "tenant_setting") &&
        (strlen(pg->tenant_setting) > 63 || !dotted_ident(pg->tenant_setting, 1))) {
        fail_key(w, m, "tenant_setting", "must be a dotted setting name such as app.tenant_id");
    }
    field_bool(w, m, "allow_ddl", &pg->allow_ddl);
    field_names(w, m, "databases", NAMES_ANY,
                "must list at least one database (leave it out to allow any)", &pg->databases,
                &pg->n_databases);
    field_string(w, m, "tenant_column", &pg->tenant_column);
    if (!w->failed && map_get(m, "tenant_column") && !pg_name_valid(pg->tenant_column, 0)) {
        fail_key(w, m, "tenant_column", "must be a column name such as tenant_id");
    }
    field_names(w, m, "reserved_settings", NAMES_SETTING, NULL, &pg->reserved_settings,
                &pg->n_reserved_settings);
    field_names(w, m, "deny_functions", NAMES_OBJECT, NULL, &pg->deny_functions,
                &pg->n_deny_functions);
    field_names(w, m, "deny_relations", NAMES_OBJECT, NULL, &pg->deny_relations,
                &pg->n_deny_relations);
    field_bool(w, m, "signed_context", &pg->signed_context);
    if (!w->failed && pg->signed_context && !map_get(m, "context_key_file")) {
        fail_key(w, m, "context_key_file",
                 "required when signed_context is true (the HMAC key shared with "
                 "tenantgate.current_tenant(), at least %d bytes)",
                 CFG_CONTEXT_KEY_MIN);
    }
    if (!w->failed && !pg->signed_context && map_get(m, "context_key_file")) {
        fail_key(w, m, "context_key_file", "only used with signed_context: true");
    }
    field_secret(w, m, "context_key_file", &pg->context_key);
    if (!w->failed && pg->context_key.data && pg->context_key.len < CFG_CONTEXT_KEY_MIN) {
        fail_key(w, m, "context_key_file", "the key in %s is %zu bytes; at least %d are required",
                 pg->context_key.path, pg->context_key.len, CFG_CONTEXT_KEY_MIN);
    }
    field_uint(w, m, "max_message_bytes", 1024, 1u << 30, &pg->max_message_bytes);
    field_uint(w, m, "max_connections_per_tenant", 0, 1000000, &pg->max_connections_per_tenant);
    field_uint(w, m, "session_timeout_s", 0, 7 * 86400, &pg->session_timeout_s);
}

/* A character a tenant id can hold (SPEC §4: ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$). */
static bool tenant_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* True when some valid tenant id makes tpl (holding "{tenant}" once) expand to name. */
static bool template_makes(const char *tpl, const char *name)
{
    const char *at = strstr(tpl, "{tenant}");
    size_t pre = (size_t)(at - tpl), post = strlen(at + 8), n = strlen(name);
    if (n < pre + post + 1 || n - pre - post > 64 || strncmp(name, tpl, pre) != 0 ||
        strcmp(name + n - post, at + 8) != 0) {
        return false;
    }
    for (size_t i = pre; i < n - post; i++) {
        if (!tenant_char(name[i]) || (i == pre && (name[i] == '_' || name[i] == '-'))) {
            return false;
        }
    }
    return true;
}

/*
 * allow_scripts: per-tenant ACL users whose key and channel patterns are the
 * tenant's prefix. Everything the mode needs is checked here, so that `check`
 * and a reload report it before any tenant connects.
 */
static void check_redis_acl(walker *w, const node *m, const tg_listener_config *l)
{
    const tg_redis_config *r = &l->redis;
    if (!map_get(m, "acl_key_file")) {
        fail_key(w, m, "acl_key_file",
                 "required when allow_scripts is true (the key that derives each tenant's ACL "
                 "user password, at least %d random bytes)",
                 CFG_CONTEXT_KEY_MIN);
    }
    if (!w->failed && r->acl_key.len < CFG_CONTEXT_KEY_MIN) {
        fail_key(w, m, "acl_key_file", "the key in %s is %zu bytes; at least %d are required",
                 r->acl_key.path, r->acl_key.len, CFG_CONTEXT_KEY_MIN);
    }
    /* ACL patterns cannot hold spaces. */
    if (!w->failed && strpbrk(r->key_prefix, " \t")) {
        fail_key(w, m, "key_prefix", "must not contain spaces with allow_scripts");
    }
    const char *tpl = r->acl_user_template;
    const char *at = strstr(tpl, "{tenant}");
    if (!w->failed && (!at || strstr(at + 8, "{tenant}") || strlen(tpl) > 190)) {
        fail_key(w, m, "acl_user_template",
                 "must contain {tenant} exactly once (at most 190 bytes)");
    }
    for (const char *p = tpl; !w->failed && *p; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            fail_key(w, m, "acl_user_template", "must not contain spaces (an ACL user name)");
        }
    }
    /* A tenant must never be able to reset the service user or the default user. */
    const char *svc = l->backend.user ? l->backend.user : "default";
    if (!w->failed && (template_makes(tpl, svc) || template_makes(tpl, "default"))) {
        fail_key(w, m, "acl_user_template",
                 "a tenant's ACL user could be named \"%s\": use a fixed part that the "
                 "service and default users do not have, such as tenantgate:{tenant}",
                 template_makes(tpl, svc) ? svc : "default");
    }
    if (!w->failed && l->backend.tls != TG_BACKEND_TLS_DISABLE) {
        fail_key(w, m, "allow_scripts",
                 "needs backend.tls: disable (the control connection that provisions ACL users "
                 "has no TLS)");
    }
}

static void parse_redis(walker *w, const node *m, tg_listener_config *l)
{
    static const char *const keys[] = {"key_prefix",
                                       "allow_scripts",
                                       "acl_key_file",
                                       "acl_user_template",
                                       "max_connections_per_tenant",
                                       NULL};
    tg_redis_config *r = &l->redis;
    if (!check_map(w, m, keys)) {
        return;
    }
    field_string(w, m, "key_prefix", &r->key_prefix);
    check_tenant_template(w, m, "key_prefix", r->key_prefix);
    /* Prefixes of two tenants must never be prefixes of each other: with "t:{tenant}",
     * tenant "a"'s key "bx" would be tenant "ab"'s key "x". A character no tenant id
     * holds after every {tenant} keeps them apart (and ACL patterns "~t:a:*" exact). */
    for (const char *t = strstr(r->key_prefix, "{tenant}"); t && !w->failed;
         t = strstr(t + 8, "{tenant}")) {
        if (t[8] == '\0' || tenant_char(t[8]) || strncmp(t + 8, "{tenant}", 8) == 0) {
            fail_key(w, m, "key_prefix",
                     "every {tenant} must be followed by a separator a tenant id cannot hold, "
                     "such as ':' (t:{tenant}:), or one tenant's keys would be another's");
        }
    }
    field_bool(w, m, "allow_scripts", &r->allow_scripts);
    field_uint(w, m, "max_connections_per_tenant", 0, 1000000, &r->max_connections_per_tenant);
    if (!r->allow_scripts) {
        if (map_get(m, "acl_key_file")) {
            fail_key(w, m, "acl_key_file", "only used with allow_scripts: true");
        }
        if (map_get(m, "acl_user_template")) {
            fail_key(w, m, "acl_user_template", "only used with allow_scripts: true");
        }
        return;
    }
    field_secret(w, m, "acl_key_file", &r->acl_key);
    field_string(w, m, "acl_user_template", &r->acl_user_template);
    if (!w->failed) {
        check_redis_acl(w, m, l);
    }
}

/*
 * Database isolation maps a client database through the template: {db} and
 * {tenant} once each with something between them (without a separator "ab"
 * + "c" and "a" + "bc" meet), every other character one a database name may
 * hold. (policy/mongo_scope.c also refuses, per name, a mapping another tenant
 * could reach too.)
 */
static void check_db_template(walker *w, const node *m, const char *t)
{
    const char *db = strstr(t, "{db}"), *tn = strstr(t, "{tenant}");
    if (!db || !tn || strstr(db + 1, "{db}") || strstr(tn + 1, "{tenant}")) {
        fail_key(w, m, "database_template",
                 "must contain {db} and {tenant} exactly once each with isolation: database");
        return;
    }
    if ((db < tn && db + 4 == tn) || (tn < db && tn + 8 == db)) {
        fail_key(w, m, "database_template",
                 "needs a separator between {db} and {tenant}, e.g. {db}_{tenant}");
        return;
    }
    for (const char *p = t; *p; p++) {
        if (p == db) {
            p += 3;
            continue;
        }
        if (p == tn) {
            p += 7;
            continue;
        }
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || strchr("/\\. \"$*<>:|?{}", c)) {
            fail_key(w, m, "database_template", "holds a character a database name cannot hold");
            return;
        }
    }
}

static void parse_mongodb(walker *w, const node *m, tg_mongodb_config *mg)
{
    static const char *const keys[] = {"isolation",  "tenant_field",         "database_template",
                                       "allow_drop", "allow_change_streams", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    int iso = (int)mg->isolation;
    field_enum(w, m, "isolation", mongo_isolations, &iso);
    mg->isolation = (tg_mongo_isolation)iso;
    field_string(w, m, "tenant_field", &mg->tenant_field);
    if (!w->failed && map_get(m, "tenant_field") && !dotted_ident(mg->tenant_field, 0)) {
        fail_key(w, m, "tenant_field", "must be a field name or dotted path such as tenant_id");
    }
    field_string(w, m, "database_template", &mg->database_template);
    check_tenant_template(w, m, "database_template", mg->database_template);
    if (!w->failed && mg->isolation == TG_MONGO_ISOLATION_DATABASE &&
        map_get(m, "database_template")) {
        check_db_template(w, m, mg->database_template);
    }
    field_bool(w, m, "allow_drop", &mg->allow_drop);
    if (!w->failed && mg->allow_drop && mg->isolation != TG_MONGO_ISOLATION_DATABASE) {
        fail_key(w, m, "allow_drop",
                 "only valid with isolation: database (in field isolation a collection holds "
                 "every tenant's documents)");
    }
    field_bool(w, m, "allow_change_streams", &mg->allow_change_streams);
}

static void parse_bolt(walker *w, const node *m, tg_bolt_config *b)
{
    static const char *const keys[] = {"isolation",
                                       "tenant_property",
                                       "label_template",
                                       "database_template",
                                       "advertised_address",
                                       "database",
                                       "allow_procedures",
                                       "allow_functions",
                                       "hide_tenant_property",
                                       NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    int iso = (int)b->isolation;
    field_enum(w, m, "isolation", bolt_isolations, &iso);
    b->isolation = (tg_bolt_isolation)iso;
    field_string(w, m, "tenant_property", &b->tenant_property);
    if (!w->failed && map_get(m, "tenant_property") && !dotted_ident(b->tenant_property, 0)) {
        fail_key(w, m, "tenant_property", "must be a property name such as tenant_id");
    }
    if (!w->failed && map_get(m, "tenant_property") && strchr(b->tenant_property, '.')) {
        fail_key(w, m, "tenant_property", "must be a property name such as tenant_id");
    }
    field_string(w, m, "label_template", &b->label_template);
    check_tenant_template(w, m, "label_template", b->label_template);
    field_string(w, m, "database_template", &b->database_template);
    check_tenant_template(w, m, "database_template", b->database_template);
    if (!w->failed && strstr(b->database_template, "{db}")) {
        fail_key(w, m, "database_template",
                 "only {tenant} is substituted (one database per tenant), not {db}");
    }
    field_address(w, m, "advertised_address", &b->advertised_address);
    field_string(w, m, "database", &b->database);
    if (!w->failed && map_get(m, "database") && !neo4j_db_name_valid(b->database)) {
        fail_key(w, m, "database",
                 "must be a database name such as neo4j (letters, digits, dots and dashes, "
                 "starting with a letter, at most 63)");
    }
    field_names(w, m, "allow_procedures", NAMES_CYPHER, NULL, &b->allow_procedures,
                &b->n_allow_procedures);
    field_names(w, m, "allow_functions", NAMES_CYPHER, NULL, &b->allow_functions,
                &b->n_allow_functions);
    field_bool(w, m, "hide_tenant_property", &b->hide_tenant_property);
    if (!w->failed && b->hide_tenant_property && b->isolation != TG_BOLT_ISOLATION_PROPERTY) {
        fail_key(w, m, "hide_tenant_property", "only used with isolation: property");
    }
}

static void listener_defaults(walker *w, tg_listener_config *l)
{
    l->max_connections = 10000;
    l->high_water_bytes = 262144;
    l->timeouts.connect_ms = 5000;
    l->timeouts.handshake_ms = 10000;
    l->timeouts.idle_s = 0;
    set_str(w, &l->postgres.tenant_setting, "app.tenant_id");
    set_str(w, &l->postgres.tenant_column, "tenant_id");
    l->postgres.max_message_bytes = 64u << 20;
    set_str(w, &l->redis.key_prefix, "t:{tenant}:");
    set_str(w, &l->redis.acl_user_template, "tenantgate:{tenant}");
    set_str(w, &l->mongodb.tenant_field, "tenant_id");
    set_str(w, &l->mongodb.database_template, "{db}_{tenant}");
    set_str(w, &l->bolt.tenant_property, "tenant_id");
    set_str(w, &l->bolt.label_template, "Tenant_{tenant}");
    set_str(w, &l->bolt.database_template, "tenant-{tenant}");
    set_str(w, &l->bolt.database, "neo4j");
}

/* True when name matches ^[a-z0-9][a-z0-9_-]{0,31}$. */
static bool listener_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 32) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool same_address(const char *a, const char *b)
{
    char ha[CFG_HOST_MAX], hb[CFG_HOST_MAX];
    uint16_t pa, pb;
    if (!a || !b || tg_config_split_address(a, ha, sizeof ha, &pa) != 0 ||
        tg_config_split_address(b, hb, sizeof hb, &pb) != 0) {
        return false;
    }
    return pa == pb && strcasecmp(ha, hb) == 0;
}

static void parse_listener(walker *w, const node *m, tg_config *cfg, size_t idx)
{
    static const char *const keys[] = {"name",
                                       "protocol",
                                       "listen",
                                       "tls",
                                       "backend",
                                       "unsafe_passthrough",
                                       "max_connections",
                                       "high_water_bytes",
                                       "timeouts",
                                       "postgres",
                                       "redis",
                                       "mongodb",
                                       "bolt",
                                       NULL};
    static const char *const sections[] = {NULL, "postgres", "redis", "mongodb", "bolt"};
    tg_listener_config *l = &cfg->listeners[idx];

    listener_defaults(w, l);
    if (!check_map(w, m, keys)) {
        return;
    }
    require(w, m, "name");
    require(w, m, "protocol");
    require(w, m, "listen");
    require(w, m, "backend");

    field_string(w, m, "name", &l->name);
    if (!w->failed && !listener_name_valid(l->name)) {
        fail_key(w, m, "name", "must match ^[a-z0-9][a-z0-9_-]{0,31}$");
    }
    for (size_t i = 0; i < idx && !w->failed; i++) {
        if (strcmp(cfg->listeners[i].name, l->name) == 0) {
            fail_key(w, m, "name", "duplicate listener name \"%s\" (also listeners[%zu])", l->name,
                     i);
        }
    }

    int proto = (int)l->protocol;
    field_enum(w, m, "protocol", protocols, &proto);
    l->protocol = (tg_protocol)proto;

    field_address(w, m, "listen", &l->listen);
    for (size_t i = 0; i < idx && !w->failed; i++) {
        if (same_address(cfg->listeners[i].listen, l->listen)) {
            fail_key(w, m, "listen", "address %s is already used by listeners[%zu]", l->listen, i);
        }
    }
    if (!w->failed && same_address(cfg->admin_listen, l->listen)) {
        fail_key(w, m, "listen", "address %s is already used by admin.listen", l->listen);
    }

    field_bool(w, m, "unsafe_passthrough", &l->unsafe_passthrough);
    if (!w->failed && l->protocol == TG_PROTO_TCP && !l->unsafe_passthrough) {
        fail_key(w, m, "protocol",
                 "protocol tcp relays bytes without any tenant checks and requires "
                 "unsafe_passthrough: true");
    }
    if (!w->failed && l->protocol != TG_PROTO_TCP && l->unsafe_passthrough) {
        fail_key(w, m, "unsafe_passthrough", "only valid with protocol tcp");
    }

    size_t s;
    const node *v = field(w, m, "tls", &s);
    if (v) {
        parse_client_tls(w, v, &l->tls);
        path_restore(w, s);
    }
    v = field(w, m, "backend", &s);
    if (v) {
        parse_backend(w, v, l);
        path_restore(w, s);
    }
    if (!w->failed && l->protocol == TG_PROTO_MONGODB && !l->backend.auth_db) {
        set_str(w, &l->backend.auth_db, "admin");
    }
    field_uint(w, m, "max_connections", 1, 1000000, &l->max_connections);
    field_uint(w, m, "high_water_bytes", 4096, 1u << 30, &l->high_water_bytes);
    v = field(w, m, "timeouts", &s);
    if (v) {
        parse_timeouts(w, v, &l->timeouts);
        path_restore(w, s);
    }

    for (int p = TG_PROTO_POSTGRES; p <= TG_PROTO_BOLT && !w->failed; p++) {
        v = map_get(m, sections[p]);
        if (v && p != (int)l->protocol) {
            fail_key(w, m, sections[p], "section does not match the listener's protocol %s",
                     tg_protocol_name(l->protocol));
        }
    }
    v = l->protocol != TG_PROTO_TCP ? field(w, m, sections[l->protocol], &s) : NULL;
    if (v) {
        switch (l->protocol) {
        case TG_PROTO_POSTGRES:
            parse_postgres(w, v, &l->postgres);
            break;
        case TG_PROTO_REDIS:
            parse_redis(w, v, l);
            break;
        case TG_PROTO_MONGODB:
            parse_mongodb(w, v, &l->mongodb);
            break;
        case TG_PROTO_BOLT:
            parse_bolt(w, v, &l->bolt);
            break;
        case TG_PROTO_TCP:
            break;
        }
        path_restore(w, s);
    }
    /* Two listeners provisioning the same ACL users on one backend must agree on their rules. */
    for (size_t i = 0; i < idx && !w->failed && l->redis.allow_scripts; i++) {
        const tg_listener_config *o = &cfg->listeners[i];
        if (o->protocol != TG_PROTO_REDIS || !o->redis.allow_scripts ||
            !same_address(o->backend.address, l->backend.address) ||
            strcmp(o->redis.acl_user_template, l->redis.acl_user_template) != 0) {
            continue;
        }
        if (strcmp(o->redis.key_prefix, l->redis.key_prefix) != 0 ||
            o->redis.acl_key.len != l->redis.acl_key.len ||
            memcmp(o->redis.acl_key.data, l->redis.acl_key.data, l->redis.acl_key.len) != 0) {
            fail_key(w, m, "redis",
                     "listeners[%zu] provisions the same ACL users on this backend with another "
                     "key_prefix or acl_key_file: use another acl_user_template",
                     i);
        }
    }
}

static void parse_listeners(walker *w, const node *v, tg_config *cfg)
{
    if (!check_seq(w, v)) {
        return;
    }
    if (v->n == 0) {
        fail(w, v->line, "at least one listener is required");
        return;
    }
    if (v->n > CFG_LISTENERS_MAX) {
        fail(w, v->line, "more than %d listeners", CFG_LISTENERS_MAX);
        return;
    }
    cfg->listeners = calloc(v->n, sizeof *cfg->listeners);
    if (!cfg->listeners) {
        fail_oom(w);
        return;
    }
    cfg->n_listeners = v->n; /* zeroed entries free cleanly if a later one fails */
    for (size_t i = 0; i < v->n && !w->failed; i++) {
        size_t saved = path_index(w, i);
        parse_listener(w, v->items[i], cfg, i);
        path_restore(w, saved);
    }
}

/* A Redis key prefix for the registry: printable, no spaces (it is part of every key name). */
static bool registry_prefix_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

static void parse_registry(walker *w, const node *m, tg_registry_config *r)
{
    static const char *const keys[] = {"address",    "user",       "password_file",
                                       "key_prefix", "timeout_ms", NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    require(w, m, "address");
    field_address(w, m, "address", &r->address);
    field_string(w, m, "user", &r->user);
    field_secret(w, m, "password_file", &r->password);
    if (!w->failed && r->user && !r->password.data) {
        fail_key(w, m, "user", "needs password_file (AUTH <user> <password>)");
    }
    field_string(w, m, "key_prefix", &r->key_prefix);
    if (!w->failed && !registry_prefix_valid(r->key_prefix)) {
        fail_key(w, m, "key_prefix", "must be 1-64 printable characters without spaces");
    }
    field_uint(w, m, "timeout_ms", 10, 60000, &r->timeout_ms);
}

static void parse_limits(walker *w, const node *m, tg_tenant_limits *l)
{
    static const char *const keys[] = {"max_connections",
                                       "messages_per_second",
                                       "burst",
                                       "global_messages_per_second",
                                       "max_inflight_bytes",
                                       NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    field_uint(w, m, "max_connections", 0, 1000000, &l->max_connections);
    field_uint(w, m, "messages_per_second", 0, 100000000, &l->messages_per_second);
    field_uint(w, m, "burst", 0, 100000000, &l->burst);
    field_uint(w, m, "global_messages_per_second", 0, 100000000, &l->global_messages_per_second);
    field_uint(w, m, "max_inflight_bytes", 0, UINT32_MAX, &l->max_inflight_bytes);
    if (!w->failed && l->burst && !l->messages_per_second) {
        fail_key(w, m, "burst", "only meaningful with messages_per_second");
    }
}

static void parse_tenants(walker *w, const node *m, tg_tenants_config *t)
{
    static const char *const keys[] = {"registry",   "require_registered",  "cache_ttl_s",
                                       "cache_size", "on_registry_failure", "limits",
                                       NULL};
    if (!check_map(w, m, keys)) {
        return;
    }
    size_t s;
    const node *v = field(w, m, "registry", &s);
    if (v) {
        parse_registry(w, v, &t->registry);
        path_restore(w, s);
    }
    field_bool(w, m, "require_registered", &t->require_registered);
    field_uint(w, m, "cache_ttl_s", 0, 86400, &t->cache_ttl_s);
    field_uint(w, m, "cache_size", 1, 10000000, &t->cache_size);
    int mode = (int)t->on_registry_failure;
    field_enum(w, m, "on_registry_failure", registry_failures, &mode);
    t->on_registry_failure = (tg_registry_failure)mode;
    v = field(w, m, "limits", &s);
    if (v) {
        parse_limits(w, v, &t->limits);
        path_restore(w, s);
    }
    static const char *const need_registry[] = {"require_registered", "on_registry_failure",
                                                "cache_ttl_s", "cache_size", NULL};
    for (size_t i = 0; need_registry[i] && !w->failed; i++) {
        if (!t->registry.address && map_get(m, need_registry[i])) {
            fail_key(w, m, need_registry[i], "needs tenants.registry");
        }
    }
}

/* JWT key sources are needed as soon as one listener authenticates tenants (not tcp). */
static void check_key_sources(walker *w, const tg_config *cfg)
{
    if (w->failed) {
        return;
    }
    const tg_jwt_config *j = &cfg->jwt;
    if (j->hs256_secret.data || j->public_key.data || j->jwks.data) {
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].protocol != TG_PROTO_TCP) {
            size_t saved = path_key(w, "auth.jwt");
            fail(w, w->jwt ? w->jwt->line : w->root->line,
                 "a key source (hs256_secret_file, public_key_file or jwks_file) is required: "
                 "listener \"%s\" authenticates tenants with JWTs",
                 cfg->listeners[i].name);
            path_restore(w, saved);
            return;
        }
    }
}

static void parse_root(walker *w, const node *root, tg_config *cfg)
{
    static const char *const keys[] = {"workers", "drain_timeout_s", "admin",     "log",
                                       "auth",    "tenants",         "listeners", NULL};
    static const char *const admin_keys[] = {"listen", "quitquitquit", NULL};
    static const char *const log_keys[] = {"level", "format", NULL};
    w->root = root;
    if (!check_map(w, root, keys)) {
        return;
    }
    field_uint(w, root, "workers", 1, CFG_WORKERS_MAX, &cfg->workers);
    field_uint(w, root, "drain_timeout_s", 0, 86400, &cfg->drain_timeout_s);

    size_t s;
    const node *v = field(w, root, "admin", &s);
    if (v) {
        if (check_map(w, v, admin_keys)) {
            require(w, v, "listen");
            field_address(w, v, "listen", &cfg->admin_listen);
            field_bool(w, v, "quitquitquit", &cfg->admin_quitquitquit);
        }
        path_restore(w, s);
    }
    v = field(w, root, "log", &s);
    if (v) {
        if (check_map(w, v, log_keys)) {
            int level = (int)cfg->log_level, format = (int)cfg->log_format;
            field_enum(w, v, "level", log_levels, &level);
            field_enum(w, v, "format", log_formats, &format);
            cfg->log_level = (tg_log_level)level;
            cfg->log_format = (tg_log_format)format;
        }
        path_restore(w, s);
    }
    v = field(w, root, "auth", &s);
    if (v) {
        parse_auth(w, v, cfg);
        path_restore(w, s);
    }
    v = field(w, root, "tenants", &s);
    if (v) {
        parse_tenants(w, v, &cfg->tenants);
        path_restore(w, s);
    }
    require(w, root, "listeners");
    v = field(w, root, "listeners", &s);
    if (v) {
        parse_listeners(w, v, cfg);
        path_restore(w, s);
    }
    check_key_sources(w, cfg);
}

static void config_defaults(walker *w, tg_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n < 1 ? 1 : n > CFG_WORKERS_MAX ? CFG_WORKERS_MAX : (uint32_t)n;
    cfg->drain_timeout_s = 30;
    cfg->log_level = TG_LOG_INFO;
    cfg->log_format = TG_LOG_FORMAT_JSON;
    cfg->jwt.algorithms = TG_JWT_ALG_RS256 | TG_JWT_ALG_ES256 | TG_JWT_ALG_HS256;
    cfg->jwt.leeway_s = 30;
    cfg->jwt.cache_size = 4096;
    cfg->jwt.max_token_bytes = 8192;
    set_str(w, &cfg->jwt.tenant_claim, "tenant_id");
    set_str(w, &cfg->sni.slug_claim, "tenant_slug");
    cfg->tenants.cache_ttl_s = 60;
    cfg->tenants.cache_size = 10000;
    cfg->tenants.registry.timeout_ms = 1000;
    set_str(w, &cfg->tenants.registry.key_prefix, "tenantgate:");
}

/* ------------------------------------------------------------- public API */

int tg_config_parse(const char *yaml, size_t len, const char *name, tg_config **out, char *err,
                    size_t errlen)
{
    walker w;
    memset(&w, 0, sizeof w);
    w.name = name ? name : "<config>";
    w.err = err;
    w.errlen = errlen;
    if (err && errlen) {
        err[0] = '\0';
    }
    if (!out || (!yaml && len)) {
        fail(&w, 0, "invalid arguments");
        return TG_ECONFIG;
    }

    const char *slash = name ? strrchr(name, '/') : NULL;
    if (slash) {
        size_t dl = slash == name ? 1 : (size_t)(slash - name);
        w.dir = strndup(name, dl);
        if (!w.dir) {
            fail_oom(&w);
            return TG_ECONFIG;
        }
    }
    tg_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        free(w.dir);
        fail_oom(&w);
        return TG_ECONFIG;
    }
    config_defaults(&w, cfg);
    set_str(&w, &cfg->path, w.name);

    node *root = w.failed ? NULL : build_tree(&w, yaml ? yaml : "", len);
    if (root) {
        parse_root(&w, root, cfg);
    }
    node_free(root);
    free(w.dir);
    if (w.failed) {
        tg_config_free(cfg);
        return TG_ECONFIG;
    }
    *out = cfg;
    return 0;
}

int tg_config_load(const char *path, tg_config **out, char *err, size_t errlen)
{
    if (err && errlen) {
        err[0] = '\0';
    }
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : -1;
    char why[160];
    if (fd < 0) {
        errno_str(path ? errno : EINVAL, why, sizeof why);
        if (err && errlen) {
            snprintf(err, errlen, "%s: cannot open: %s", path ? path : "<config>", why);
        }
        return TG_ECONFIG;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            if (cap >= CFG_TEXT_MAX) {
                snprintf(why, sizeof why, "larger than %u bytes", CFG_TEXT_MAX);
                rc = -1;
                break;
            }
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf) {
                snprintf(why, sizeof why, "out of memory");
                rc = -1;
                break;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            errno_str(errno, why, sizeof why);
            rc = -1;
            break;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    close(fd);
    if (rc != 0) {
        free(buf);
        if (err && errlen) {
            snprintf(err, errlen, "%s: cannot read: %s", path, why);
        }
        return TG_ECONFIG;
    }
    rc = tg_config_parse(buf ? buf : "", len, path, out, err, errlen);
    free(buf);
    return rc;
}

static void secret_free(tg_secret *s)
{
    if (s->data) {
        explicit_bzero(s->data, s->len);
    }
    free(s->data);
    free(s->path);
    s->data = NULL;
    s->path = NULL;
    s->len = 0;
}

/* Frees a NULL-terminated array of strings (NULL is fine). */
static void free_names(char **names)
{
    if (names) {
        for (size_t i = 0; names[i]; i++) {
            free(names[i]);
        }
        free(names);
    }
}

void tg_config_free(tg_config *cfg)
{
    if (!cfg) {
        return;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        tg_listener_config *l = &cfg->listeners[i];
        free(l->name);
        free(l->listen);
        free(l->tls.cert_file);
        free(l->tls.key_file);
        free(l->backend.address);
        free(l->backend.user);
        secret_free(&l->backend.password);
        free(l->backend.auth_db);
        free(l->backend.ca_file);
        free(l->backend.server_name);
        free(l->postgres.tenant_setting);
        free_names(l->postgres.databases);
        free(l->postgres.tenant_column);
        free_names(l->postgres.reserved_settings);
        free_names(l->postgres.deny_functions);
        free_names(l->postgres.deny_relations);
        secret_free(&l->postgres.context_key);
        free(l->redis.key_prefix);
        secret_free(&l->redis.acl_key);
        free(l->redis.acl_user_template);
        free(l->mongodb.tenant_field);
        free(l->mongodb.database_template);
        free(l->bolt.tenant_property);
        free(l->bolt.label_template);
        free(l->bolt.database_template);
        free(l->bolt.advertised_address);
        free(l->bolt.database);
        free_names(l->bolt.allow_procedures);
        free_names(l->bolt.allow_functions);
    }
    free(cfg->listeners);
    secret_free(&cfg->jwt.hs256_secret);
    secret_free(&cfg->jwt.public_key);
    secret_free(&cfg->jwt.jwks);
    free(cfg->jwt.issuer);
    free(cfg->jwt.audience);
    free(cfg->jwt.tenant_claim);
    free(cfg->sni.suffix);
    free(cfg->sni.slug_claim);
    free(cfg->tenants.registry.address);
    free(cfg->tenants.registry.user);
    secret_free(&cfg->tenants.registry.password);
    free(cfg->tenants.registry.key_prefix);
    free(cfg->admin_listen);
    free(cfg->path);
    free(cfg);
}

const tg_listener_config *tg_config_find_listener(const tg_config *cfg, const char *name)
{
    if (!cfg || !name) {
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].name && strcmp(cfg->listeners[i].name, name) == 0) {
            return &cfg->listeners[i];
        }
    }
    return NULL;
}

const char *tg_protocol_name(tg_protocol p)
{
    switch (p) {
    case TG_PROTO_TCP:
        return "tcp";
    case TG_PROTO_POSTGRES:
        return "postgres";
    case TG_PROTO_REDIS:
        return "redis";
    case TG_PROTO_MONGODB:
        return "mongodb";
    case TG_PROTO_BOLT:
        return "bolt";
    }
    return "unknown";
}
