/*
 * A Redis command table from a COMMAND reply (see redis_cmdinfo.h).
 *
 *   reply ──tg_resp_reply_size(limits)──> one complete value, exactly len bytes
 *     ──walk with tg_resp_next──> per command (Redis 7 COMMAND INFO layout):
 *        0 name  1 arity  2 flags  3-5 first/last/step  6 ACL categories  7 tips
 *        8 key specs: maps {notes, flags, begin_search {type, spec}, find_keys {type, spec}}
 *        9 subcommands: entries of the same layout, named "container|sub"
 *     ──builder──> add_command (+ TG_REDIS_CMD_UNVETTED when something is unknown)
 *                  add_keyspec per spec, then the subcommands
 *     ──seal_vetted(vetted)──> sealed table
 *
 * RESP2 gives maps as flat arrays of key/value pairs and flags as arrays; RESP3
 * gives maps (`%`) and sets (`~`): both are read as flat sequences. Attributes,
 * streamed aggregates and nulls where a value is due are malformed. Structure
 * errors fail the whole parse; unknown names fail one command (see the header).
 * Nothing here logs or copies reply bytes into a reason.
 */
#include "policy/redis_cmdinfo.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "protocols/redis/codec.h"
#include "proxy/error.h"

#define KEYWORD_MAX 64 /* as the builder's NAME_MAX_LEN */

/* Reply limits: far above a real COMMAND reply (Redis 7.0: 90 KB, about 30,000 elements). */
static const tg_resp_limits cmdinfo_limits = {
    .max_args = 0,
    .max_bulk = 64 * 1024,
    .max_inline = 64 * 1024,
    .max_depth = 16,
    .max_reply_elems = 1u << 21,
};

/* A walk over one validated reply; errors are sticky in `err` with `why` set once. */
typedef struct walk {
    const uint8_t *p;
    size_t len, off;
    int err;
    char *why;
    size_t whylen;
    tg_redis_table *t;
    tg_redis_cmdinfo_stats st;
} walk;

__attribute__((format(printf, 3, 4))) static int wfail(walk *w, int err, const char *fmt, ...);

static int wfail(walk *w, int err, const char *fmt, ...)
{
    if (!w->err) {
        w->err = err;
        if (w->whylen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(w->why, w->whylen, fmt, ap);
            va_end(ap);
        }
    }
    return w->err;
}

/* The next header or scalar; attributes and streamed pieces are malformed here. */
static int next(walk *w, tg_resp_elem *e)
{
    if (w->err)
        return w->err;
    ssize_t n = tg_resp_next(w->p + w->off, w->len - w->off, e);
    if (n <= 0)
        return wfail(w, TG_EPROTO, "truncated at byte %zu", w->off);
    if (e->type == TG_RESP_ATTR || e->streamed || e->type == TG_RESP_CHUNK ||
        e->type == TG_RESP_END)
        return wfail(w, TG_EPROTO, "unexpected %s at byte %zu", tg_resp_type_name(e->type), w->off);
    w->off += (size_t)n;
    return 0;
}

/* Skips one complete value. */
static int skip(walk *w)
{
    if (w->err)
        return w->err;
    ssize_t n = tg_resp_reply_size(w->p + w->off, w->len - w->off, &cmdinfo_limits, NULL);
    if (n <= 0)
        return wfail(w, TG_EPROTO, "malformed value at byte %zu", w->off);
    w->off += (size_t)n;
    return 0;
}

/* An array, set or map: *n gets the number of values that follow (a map's pairs count twice). */
static int open_list(walk *w, uint64_t *n, const char *what)
{
    tg_resp_elem e;
    if (next(w, &e) < 0)
        return w->err;
    if (e.is_null || (e.type != TG_RESP_ARRAY && e.type != TG_RESP_SET && e.type != TG_RESP_MAP))
        return wfail(w, TG_EPROTO, "%s: expected a list, got %s", what,
                     e.is_null ? "a null" : tg_resp_type_name(e.type));
    *n = e.type == TG_RESP_MAP ? 2 * e.count : e.count;
    return 0;
}

static int read_string(walk *w, tg_slice *s, const char *what)
{
    tg_resp_elem e;
    if (next(w, &e) < 0)
        return w->err;
    if (e.is_null || (e.type != TG_RESP_BULK && e.type != TG_RESP_SIMPLE))
        return wfail(w, TG_EPROTO, "%s: expected a string", what);
    *s = e.data;
    return 0;
}

static int read_int(walk *w, int64_t *v, const char *what)
{
    tg_resp_elem e;
    if (next(w, &e) < 0)
        return w->err;
    if (e.type != TG_RESP_INTEGER)
        return wfail(w, TG_EPROTO, "%s: expected an integer", what);
    *v = e.integer;
    return 0;
}

static bool is(tg_slice s, const char *lit)
{
    return tg_slice_eq_str(s, lit);
}

/* A list of names: the OR of their bits; *unknown set for a name `bit_of` does not know. */
static int read_flags(walk *w, uint32_t (*bit_of)(tg_slice), uint32_t *bits, bool *unknown,
                      const char *what)
{
    uint64_t n;
    if (open_list(w, &n, what) < 0)
        return w->err;
    *bits = 0;
    for (uint64_t i = 0; i < n; i++) {
        tg_slice s;
        if (read_string(w, &s, what) < 0)
            return w->err;
        uint32_t b = bit_of(s);
        if (!b)
            *unknown = true;
        *bits |= b;
    }
    return 0;
}

/* An int64 from the reply as an int32 field; out of range: the spec is unknown. */
static void set32(int32_t *field, int64_t v, bool *unknown)
{
    if (v < INT32_MIN || v > INT32_MAX) {
        *unknown = true;
        return;
    }
    *field = (int32_t)v;
}

/* One key spec being read; the keyword is kept NUL-terminated for the builder. */
typedef struct spec_buf {
    tg_redis_keyspec ks;
    char keyword[KEYWORD_MAX + 1];
} spec_buf;

/*
 * begin_search {type, spec} or find_keys {type, spec} into sb. *unknown is set
 * for a type or field tenantgate does not know, or a missing field.
 */
static int read_search(walk *w, spec_buf *sb, bool begin, bool *unknown)
{
    const char *what = begin ? "begin_search" : "find_keys";
    uint64_t n;
    if (open_list(w, &n, what) < 0)
        return w->err;
    if (n % 2)
        return wfail(w, TG_EPROTO, "%s: odd number of map elements", what);
    tg_slice type = {0};
    bool have_type = false, have_spec = false;
    /* the spec's fields, read into a scratch spec and validated against the type after */
    int64_t index = 0, startfrom = 0, lastkey = 0, keystep = 0, limit = 0, keynumidx = 0,
            firstkey = 0;
    unsigned seen = 0; /* bit per field name below */
    enum {
        F_INDEX = 1,
        F_KEYWORD = 2,
        F_STARTFROM = 4,
        F_LASTKEY = 8,
        F_KEYSTEP = 16,
        F_LIMIT = 32,
        F_KEYNUMIDX = 64,
        F_FIRSTKEY = 128
    };
    for (uint64_t i = 0; i < n; i += 2) {
        tg_slice key;
        if (read_string(w, &key, what) < 0)
            return w->err;
        if (is(key, "type")) {
            if (read_string(w, &type, what) < 0)
                return w->err;
            have_type = true;
            continue;
        }
        if (!is(key, "spec")) {
            *unknown = true;
            if (skip(w) < 0)
                return w->err;
            continue;
        }
        have_spec = true;
        uint64_t m;
        if (open_list(w, &m, what) < 0)
            return w->err;
        if (m % 2)
            return wfail(w, TG_EPROTO, "%s spec: odd number of map elements", what);
        for (uint64_t j = 0; j < m; j += 2) {
            tg_slice f;
            if (read_string(w, &f, what) < 0)
                return w->err;
            if (is(f, "keyword")) {
                tg_slice kw;
                if (read_string(w, &kw, what) < 0)
                    return w->err;
                if (kw.len == 0 || kw.len > KEYWORD_MAX || memchr(kw.base, '\0', kw.len)) {
                    *unknown = true;
                } else {
                    if (seen & F_KEYWORD)
                        *unknown = true;
                    memcpy(sb->keyword, kw.base, kw.len);
                    sb->keyword[kw.len] = '\0';
                    seen |= F_KEYWORD;
                }
                continue;
            }
            static const struct {
                const char *name;
                unsigned bit;
            } fields[] = {{"index", F_INDEX},      {"startfrom", F_STARTFROM},
                          {"lastkey", F_LASTKEY},  {"keystep", F_KEYSTEP},
                          {"limit", F_LIMIT},      {"keynumidx", F_KEYNUMIDX},
                          {"firstkey", F_FIRSTKEY}};
            int64_t *slots[] = {&index, &startfrom, &lastkey, &keystep,
                                &limit, &keynumidx, &firstkey};
            size_t k = 0;
            while (k < sizeof(fields) / sizeof(fields[0]) && !is(f, fields[k].name))
                k++;
            if (k == sizeof(fields) / sizeof(fields[0])) {
                *unknown = true;
                if (skip(w) < 0)
                    return w->err;
                continue;
            }
            if (read_int(w, slots[k], what) < 0)
                return w->err;
            if (seen & fields[k].bit)
                *unknown = true; /* a field given twice: which one would Redis use? */
            seen |= fields[k].bit;
        }
    }
    if (!have_type || !have_spec) {
        *unknown = true;
        return 0;
    }
    tg_redis_keyspec *ks = &sb->ks;
    if (begin) {
        if (is(type, "index") && seen == F_INDEX) {
            ks->bs = TG_REDIS_BS_INDEX;
            set32(&ks->index, index, unknown);
        } else if (is(type, "keyword") && seen == (F_KEYWORD | F_STARTFROM)) {
            ks->bs = TG_REDIS_BS_KEYWORD;
            ks->keyword = sb->keyword;
            set32(&ks->startfrom, startfrom, unknown);
        } else if (is(type, "unknown") && seen == 0) {
            ks->bs = TG_REDIS_BS_UNKNOWN;
        } else {
            *unknown = true;
        }
    } else {
        if (is(type, "range") && seen == (F_LASTKEY | F_KEYSTEP | F_LIMIT)) {
            ks->fk = TG_REDIS_FK_RANGE;
            set32(&ks->lastkey, lastkey, unknown);
            set32(&ks->keystep, keystep, unknown);
            set32(&ks->limit, limit, unknown);
        } else if (is(type, "keynum") && seen == (F_KEYNUMIDX | F_FIRSTKEY | F_KEYSTEP)) {
            ks->fk = TG_REDIS_FK_KEYNUM;
            set32(&ks->keynumidx, keynumidx, unknown);
            set32(&ks->firstkey, firstkey, unknown);
            set32(&ks->keystep, keystep, unknown);
        } else if (is(type, "unknown") && seen == 0) {
            ks->fk = TG_REDIS_FK_UNKNOWN;
        } else {
            *unknown = true;
        }
    }
    return 0;
}

/* One key spec map into sb. */
static int read_keyspec(walk *w, spec_buf *sb, bool *unknown)
{
    memset(sb, 0, sizeof(*sb));
    uint64_t n;
    if (open_list(w, &n, "key spec") < 0)
        return w->err;
    if (n % 2)
        return wfail(w, TG_EPROTO, "key spec: odd number of map elements");
    bool have_bs = false, have_fk = false;
    for (uint64_t i = 0; i < n; i += 2) {
        tg_slice key;
        if (read_string(w, &key, "key spec") < 0)
            return w->err;
        if (is(key, "notes")) {
            tg_slice notes;
            if (read_string(w, &notes, "key spec notes") < 0)
                return w->err;
        } else if (is(key, "flags")) {
            bool unknown_flag = false;
            if (read_flags(w, tg_redis_ks_flag, &sb->ks.flags, &unknown_flag, "key spec flags") < 0)
                return w->err;
            if (unknown_flag)
                *unknown = true;
        } else if (is(key, "begin_search") && !have_bs) {
            have_bs = true;
            if (read_search(w, sb, true, unknown) < 0)
                return w->err;
        } else if (is(key, "find_keys") && !have_fk) {
            have_fk = true;
            if (read_search(w, sb, false, unknown) < 0)
                return w->err;
        } else {
            *unknown = true; /* a field of a newer Redis (or a repeated one): not understood */
            if (skip(w) < 0)
                return w->err;
        }
    }
    if (!have_bs || !have_fk)
        *unknown = true;
    return 0;
}

static int read_command(walk *w, const char *parent, size_t parent_len, uint32_t pos);

/* The subcommands of the command just added (named `parent`). */
static int read_subcommands(walk *w, const char *parent, size_t parent_len, uint32_t pos)
{
    uint64_t n;
    if (open_list(w, &n, "subcommands") < 0)
        return w->err;
    if (n && parent_len == 0)
        return wfail(w, TG_EPROTO, "command %u: subcommands of a subcommand", pos);
    for (uint64_t i = 0; i < n; i++)
        if (read_command(w, parent, parent_len, pos) < 0)
            return w->err;
    return 0;
}

/*
 * One command entry; `parent` is the container's lowercase name for a
 * subcommand (parent_len 0 for a top-level command, whose own name then
 * becomes the parent of its subcommands). pos is the top-level position.
 */
static int read_command(walk *w, const char *parent, size_t parent_len, uint32_t pos)
{
    uint64_t n = 0; /* set by open_list; 0 keeps -O3 from seeing it unset */
    if (open_list(w, &n, "command") < 0)
        return w->err;
    if (n < 10)
        return wfail(w, TG_ENOTFOUND, "command %u has %llu elements: no key specs (Redis < 7)", pos,
                     (unsigned long long)n);
    if (w->st.commands >= TG_REDIS_CMDINFO_MAX_COMMANDS)
        return wfail(w, TG_ETOOBIG, "more than %d commands", TG_REDIS_CMDINFO_MAX_COMMANDS);
    tg_slice name;
    int64_t arity, ignored;
    uint32_t flags = 0, acl = 0;
    bool unknown = false;
    if (read_string(w, &name, "command name") < 0 || read_int(w, &arity, "arity") < 0 ||
        read_flags(w, tg_redis_cmd_flag, &flags, &unknown, "flags") < 0 ||
        read_int(w, &ignored, "first key") < 0 || read_int(w, &ignored, "last key") < 0 ||
        read_int(w, &ignored, "key step") < 0 ||
        read_flags(w, tg_redis_acl_flag, &acl, &unknown, "ACL categories") < 0 || skip(w) < 0)
        return w->err;
    /* a subcommand is named "<parent>|sub"; a command has no '|' (the builder checks that) */
    if (parent_len) {
        if (name.len <= parent_len + 1 || name.base[parent_len] != '|')
            return wfail(w, TG_EPROTO, "command %u: a subcommand not named container|sub", pos);
        for (size_t i = 0; i < parent_len; i++) {
            uint8_t ch = name.base[i];
            if ((ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) != (uint8_t)parent[i])
                return wfail(w, TG_EPROTO, "command %u: a subcommand of another command", pos);
        }
    }
    if (arity == 0 || arity < INT32_MIN + 1 || arity > INT32_MAX)
        unknown = true;
    /* key specs: read whole before the command is added (the builder wants them after it) */
    uint64_t nspecs;
    if (open_list(w, &nspecs, "key specs") < 0)
        return w->err;
    if (nspecs > TG_REDIS_CMDINFO_MAX_SPECS)
        return wfail(w, TG_ETOOBIG, "command %u: more than %d key specs", pos,
                     TG_REDIS_CMDINFO_MAX_SPECS);
    spec_buf specs[TG_REDIS_CMDINFO_MAX_SPECS];
    for (uint64_t i = 0; i < nspecs; i++)
        if (read_keyspec(w, &specs[i], &unknown) < 0)
            return w->err;
    int r = tg_redis_table_add_command(w->t, name, unknown ? 0 : (int32_t)arity,
                                       flags | (unknown ? TG_REDIS_CMD_UNVETTED : 0), acl);
    if (r == TG_ENOMEM)
        return wfail(w, r, "out of memory");
    if (r < 0)
        return wfail(w, TG_EPROTO, "command %u: a bad or repeated name", pos);
    w->st.commands++;
    for (uint64_t i = 0; i < nspecs; i++) {
        r = tg_redis_table_add_keyspec(w->t, &specs[i].ks);
        if (r < 0)
            return wfail(w, r == TG_ENOMEM ? r : TG_EPROTO, "command %u: key spec not added", pos);
        w->st.keyspecs++;
    }
    /* element 9: the subcommands, named after this command's lowercase name */
    char lower[KEYWORD_MAX + 1];
    size_t ll = 0;
    if (!parent_len) {
        ll = name.len < KEYWORD_MAX ? name.len : KEYWORD_MAX; /* the builder refused longer */
        for (size_t i = 0; i < ll; i++) {
            uint8_t ch = name.base[i];
            lower[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        lower[ll] = '\0';
    }
    if (read_subcommands(w, lower, ll, pos) < 0)
        return w->err;
    for (uint64_t i = 10; i < n; i++) /* elements of a newer Redis: not needed */
        if (skip(w) < 0)
            return w->err;
    return 0;
}

static bool same_spec(const tg_redis_keyspec *a, const tg_redis_keyspec *b)
{
    return a->bs == b->bs && a->fk == b->fk && a->flags == b->flags && a->index == b->index &&
           a->startfrom == b->startfrom && a->lastkey == b->lastkey && a->limit == b->limit &&
           a->keynumidx == b->keynumidx && a->firstkey == b->firstkey && a->keystep == b->keystep &&
           (a->keyword && b->keyword ? strcmp(a->keyword, b->keyword) == 0
                                     : a->keyword == b->keyword);
}

/* Commands of t found in vetted whose key specs differ. */
static uint32_t count_differing(const tg_redis_table *t, const tg_redis_table *vetted)
{
    uint32_t d = 0, n = tg_redis_table_count(t);
    for (uint32_t i = 0; i < n; i++) {
        const tg_redis_command *c = tg_redis_table_at(t, i);
        const char *bar = strchr(c->name, '|');
        tg_slice argv[2] = {{(const uint8_t *)c->name, bar ? (size_t)(bar - c->name) : c->name_len},
                            {(const uint8_t *)(bar ? bar + 1 : ""), bar ? strlen(bar + 1) : 0}};
        const tg_redis_command *v = tg_redis_lookup(vetted, argv, bar ? 2 : 1);
        if (!v || strcmp(v->name, c->name) != 0)
            continue;
        bool same = v->nspecs == c->nspecs;
        for (uint32_t k = 0; same && k < c->nspecs; k++)
            same = same_spec(&v->specs[k], &c->specs[k]);
        d += !same;
    }
    return d;
}

int tg_redis_cmdinfo_parse(const uint8_t *reply, size_t len, const tg_redis_table *vetted,
                           tg_redis_table **out, tg_redis_cmdinfo_stats *stats, char *why,
                           size_t whylen)
{
    walk w = {.p = reply, .len = len, .why = why, .whylen = whylen};
    *out = NULL;
    if (whylen)
        why[0] = '\0';
    if (len > TG_REDIS_CMDINFO_MAX_BYTES) {
        wfail(&w, TG_ETOOBIG, "reply over %u bytes", TG_REDIS_CMDINFO_MAX_BYTES);
        return w.err;
    }
    tg_resp_type type;
    ssize_t size = tg_resp_reply_size(reply, len, &cmdinfo_limits, &type);
    if (size == TG_NEED_MORE || (size > 0 && (size_t)size != len) || size == TG_EPROTO) {
        wfail(&w, TG_EPROTO,
              size > 0    ? "trailing bytes after the reply"
              : size == 0 ? "incomplete reply"
                          : "malformed reply");
        return w.err;
    }
    if (size < 0) {
        wfail(&w, (int)size, "over the reply limits");
        return w.err;
    }
    if (type == TG_RESP_ERROR || type == TG_RESP_BLOB_ERROR) {
        wfail(&w, TG_ENOTFOUND, "the server answered an error");
        return w.err;
    }
    uint64_t n;
    if (open_list(&w, &n, "reply") < 0)
        return w.err;
    if (n == 0) {
        wfail(&w, TG_ENOTFOUND, "no commands");
        return w.err;
    }
    w.t = tg_redis_table_new();
    if (!w.t) {
        wfail(&w, TG_ENOMEM, "out of memory");
        return w.err;
    }
    for (uint64_t i = 0; i < n && !w.err; i++)
        (void)read_command(&w, "", 0, (uint32_t)i);
    if (!w.err && w.off != len)
        wfail(&w, TG_EPROTO, "trailing bytes after the last command");
    if (!w.err) {
        int r = tg_redis_table_seal_vetted(w.t, vetted);
        if (r < 0)
            wfail(&w, r == TG_ENOMEM ? r : TG_EPROTO, "the table does not seal (duplicates)");
    }
    if (w.err) {
        tg_redis_table_free(w.t);
        return w.err;
    }
    w.st.unvetted = 0;
    for (uint32_t i = 0; i < tg_redis_table_count(w.t); i++)
        w.st.unvetted += tg_redis_command_unvetted(tg_redis_table_at(w.t, i));
    if (vetted)
        w.st.differing = count_differing(w.t, vetted);
    if (stats)
        *stats = w.st;
    *out = w.t;
    return 0;
}
