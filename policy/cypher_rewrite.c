/*
 * The Cypher rewriter (policy and reasoning in cypher_rewrite.h).
 *
 *   tg_cypher_rewrite(text)
 *     ├─ cache hit ──────────────────────────────────────────────> verdict (+ text)
 *     └─ miss: tg_cypher_parse ──> check() ──> scope_query() ──> add_tenant() on every
 *              node pattern ──> tg_cypher_print ──> tg_cypher_parse(output) ──> verify()
 *              ──> verdict ──> cache
 *
 *   check()        one walk over every node: procedures, functions, parameters, SET/REMOVE
 *                  of the tenant property or template labels, updating clauses inside
 *                  EXISTS/COUNT/COLLECT, parameter maps on node patterns
 *   scope_query()  clause by clause, the variables in scope and what bound them (node
 *                  pattern, relationship, path, expression): marks CREATE/MERGE node
 *                  patterns that name a bound variable, inserts WITH * WHERE guards for
 *                  expression-bound ones, re-asserts the tenant after SET n = / +=
 *   add_tenant()   the tenant map entry or label on every node pattern not marked
 *   verify()       the re-parsed output has no unscoped node pattern
 */
#include "policy/cypher_rewrite.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The first arena block, on the stack: enough for typical statements. */
#define ARENA_STACK 16384

/* ---- policy data ------------------------------------------------------------------------- */

/*
 * Built-in functions that may be called (case-insensitive, as Neo4j resolves
 * them). Left out on purpose: file() and linenumber() (LOAD CSV),
 * db.nameFromElementId() (names other databases), graph.* (composite
 * databases); everything namespaced that is not listed (apoc.*, gds.*, db.*,
 * user functions) needs allow_functions.
 */
#define F(name)                                                                                    \
    {                                                                                              \
        name, sizeof(name) - 1                                                                     \
    }
static const struct {
    const char *name;
    size_t len;
} builtin_functions[] = {F("abs"),
                         F("acos"),
                         F("allShortestPaths"),
                         F("asin"),
                         F("atan"),
                         F("atan2"),
                         F("avg"),
                         F("btrim"),
                         F("ceil"),
                         F("char_length"),
                         F("character_length"),
                         F("coalesce"),
                         F("collect"),
                         F("cos"),
                         F("cot"),
                         F("count"),
                         F("degrees"),
                         F("distance"),
                         F("e"),
                         F("elementId"),
                         F("endNode"),
                         F("exists"),
                         F("exp"),
                         F("floor"),
                         F("haversin"),
                         F("head"),
                         F("id"),
                         F("isEmpty"),
                         F("isNaN"),
                         F("keys"),
                         F("labels"),
                         F("last"),
                         F("left"),
                         F("length"),
                         F("log"),
                         F("log10"),
                         F("lower"),
                         F("ltrim"),
                         F("max"),
                         F("min"),
                         F("nodes"),
                         F("normalize"),
                         F("nullIf"),
                         F("percentileCont"),
                         F("percentileDisc"),
                         F("pi"),
                         F("properties"),
                         F("radians"),
                         F("rand"),
                         F("randomUUID"),
                         F("range"),
                         F("relationships"),
                         F("replace"),
                         F("reverse"),
                         F("right"),
                         F("round"),
                         F("rtrim"),
                         F("shortestPath"),
                         F("sign"),
                         F("sin"),
                         F("size"),
                         F("split"),
                         F("sqrt"),
                         F("startNode"),
                         F("stDev"),
                         F("stDevP"),
                         F("substring"),
                         F("sum"),
                         F("tail"),
                         F("tan"),
                         F("timestamp"),
                         F("toBoolean"),
                         F("toBooleanList"),
                         F("toBooleanOrNull"),
                         F("toFloat"),
                         F("toFloatList"),
                         F("toFloatOrNull"),
                         F("toInteger"),
                         F("toIntegerList"),
                         F("toIntegerOrNull"),
                         F("toLower"),
                         F("toString"),
                         F("toStringList"),
                         F("toStringOrNull"),
                         F("toUpper"),
                         F("trim"),
                         F("type"),
                         F("upper"),
                         F("valueType"),
                         F("date"),
                         F("datetime"),
                         F("localdatetime"),
                         F("localtime"),
                         F("time"),
                         F("duration"),
                         F("point"),
                         F("date.realtime"),
                         F("date.statement"),
                         F("date.transaction"),
                         F("date.truncate"),
                         F("datetime.fromepoch"),
                         F("datetime.fromepochmillis"),
                         F("datetime.realtime"),
                         F("datetime.statement"),
                         F("datetime.transaction"),
                         F("datetime.truncate"),
                         F("localdatetime.realtime"),
                         F("localdatetime.statement"),
                         F("localdatetime.transaction"),
                         F("localdatetime.truncate"),
                         F("localtime.realtime"),
                         F("localtime.statement"),
                         F("localtime.transaction"),
                         F("localtime.truncate"),
                         F("time.realtime"),
                         F("time.statement"),
                         F("time.transaction"),
                         F("time.truncate"),
                         F("duration.between"),
                         F("duration.inDays"),
                         F("duration.inMonths"),
                         F("duration.inSeconds"),
                         F("point.distance"),
                         F("point.withinBBox"),
                         F("vector.similarity.cosine"),
                         F("vector.similarity.euclidean")};
#undef F

/*
 * Procedures that list labels (and so, in label mode, tenants): refused in
 * label mode even when allow_procedures names them.
 */
static const char *const label_listing_procedures[] = {
    "db.labels",   "db.schema.*",     "db.stats.*",
    "apoc.meta.*", "db.propertyKeys", "db.relationshipTypes",
    "db.indexes",  "db.constraints",  "apoc.*",
    "gds.*",
};

/* ---- names ------------------------------------------------------------------------------- */

typedef struct name_list {
    char **items;
    size_t n;
} name_list;

static bool ieq_n(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* True when name matches pattern: equal ignoring ASCII case, or "prefix.*" and name under it. */
static bool name_matches(tg_cypher_str name, const char *pattern)
{
    size_t pl = strlen(pattern);
    if (pl >= 2 && pattern[pl - 2] == '.' && pattern[pl - 1] == '*')
        return name.len > pl - 1 && ieq_n(name.s, pl - 1, pattern, pl - 1);
    return ieq_n(name.s, name.len, pattern, pl);
}

static bool list_matches(const name_list *l, tg_cypher_str name)
{
    for (size_t i = 0; i < l->n; i++)
        if (name_matches(name, l->items[i]))
            return true;
    return false;
}

static bool table_matches(const char *const *t, size_t n, tg_cypher_str name)
{
    for (size_t i = 0; i < n; i++)
        if (name_matches(name, t[i]))
            return true;
    return false;
}

static void list_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int list_build(name_list *l, const char *const *src)
{
    size_t n = 0;
    while (src && src[n])
        n++;
    l->n = 0;
    l->items = n ? calloc(n, sizeof(char *)) : NULL;
    if (n && !l->items)
        return TG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        l->items[i] = strdup(src[i]);
        if (!l->items[i])
            return TG_ENOMEM;
        l->n++;
    }
    return 0;
}

/*
 * A name from the statement made safe for a reason: printable ASCII only
 * (others become '?'), at most 48 bytes.
 */
static void sanitize(char *out, size_t cap, tg_cypher_str s)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len && o + 4 < cap; i++) {
        if (o >= 48) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s.s[i];
        out[o++] = (c > 0x20 && c < 0x7f && c != '`') ? (char)c : '?';
    }
    out[o] = '\0';
}

/* ---- the rewriter ------------------------------------------------------------------------ */

struct tg_cypher_rewriter {
    tg_cypher_isolation isolation;
    char *tenant_property; /* NUL-terminated copy */
    size_t tenant_property_len;
    char *label_prefix, *label_suffix; /* the template around {tenant} */
    size_t label_prefix_len, label_suffix_len;
    name_list allow_procedures, allow_functions;
    tg_cypher_limits limits;
    uint64_t identity; /* hash of the configuration and a per-process secret: seeds cache keys */
};

static pthread_once_t g_secret_once = PTHREAD_ONCE_INIT;
static uint64_t g_secret;

static void secret_init(void)
{
    if (getrandom(&g_secret, sizeof(g_secret), 0) != (ssize_t)sizeof(g_secret))
        g_secret = (uint64_t)time(NULL) ^ (uint64_t)getpid(); /* getrandom cannot fail on Linux */
}

/* A configured name is printable in a quoted name: no control character, no backslash. */
static bool config_name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return false;
    }
    return true;
}

void tg_cypher_rewrite_free(tg_cypher_rewriter *rw)
{
    if (!rw)
        return;
    free(rw->tenant_property);
    free(rw->label_prefix);
    free(rw->label_suffix);
    list_free(&rw->allow_procedures);
    list_free(&rw->allow_functions);
    free(rw);
}

tg_cypher_rewriter *tg_cypher_rewrite_new(const tg_cypher_rewrite_config *cfg)
{
    tg_cypher_rewrite_config def = {0};
    if (!cfg)
        cfg = &def;
    const char *prop = cfg->tenant_property ? cfg->tenant_property : "tenant_id";
    const char *tmpl = cfg->label_template ? cfg->label_template : "Tenant_{tenant}";
    size_t plen = strlen(prop);
    if (plen == 0 || plen > 128 || !config_name_ok(prop, plen))
        return NULL;
    const char *mark = strstr(tmpl, "{tenant}");
    /* a bare "{tenant}" would make every label look like some tenant's */
    if (!mark || strstr(mark + 1, "{tenant}") || strlen(tmpl) > 128 ||
        strlen(tmpl) == strlen("{tenant}") || !config_name_ok(tmpl, strlen(tmpl)))
        return NULL;
    tg_cypher_rewriter *rw = calloc(1, sizeof(*rw));
    if (!rw)
        return NULL;
    rw->isolation = cfg->isolation;
    rw->limits = tg_cypher_limits_resolve(&cfg->limits);
    rw->tenant_property = strdup(prop);
    rw->tenant_property_len = plen;
    rw->label_prefix_len = (size_t)(mark - tmpl);
    rw->label_prefix = strndup(tmpl, rw->label_prefix_len);
    rw->label_suffix = strdup(mark + strlen("{tenant}"));
    rw->label_suffix_len = rw->label_suffix ? strlen(rw->label_suffix) : 0;
    if (!rw->tenant_property || !rw->label_prefix || !rw->label_suffix ||
        list_build(&rw->allow_procedures, cfg->allow_procedures) != 0 ||
        list_build(&rw->allow_functions, cfg->allow_functions) != 0) {
        tg_cypher_rewrite_free(rw);
        return NULL;
    }
    /* The identity covers everything a verdict depends on, and a version of the rules. */
    static const char rules_version[] = "tenantgate cypher rewriter rules v1";
    uint64_t h = XXH3_64bits(rules_version, sizeof(rules_version));
    uint32_t mode = (uint32_t)rw->isolation;
    h = XXH3_64bits_withSeed(&mode, sizeof(mode), h);
    h = XXH3_64bits_withSeed(prop, plen + 1, h);
    h = XXH3_64bits_withSeed(tmpl, strlen(tmpl) + 1, h);
    for (size_t i = 0; i < rw->allow_procedures.n; i++)
        h = XXH3_64bits_withSeed(rw->allow_procedures.items[i],
                                 strlen(rw->allow_procedures.items[i]) + 1, h);
    h = XXH3_64bits_withSeed("|", 1, h);
    for (size_t i = 0; i < rw->allow_functions.n; i++)
        h = XXH3_64bits_withSeed(rw->allow_functions.items[i],
                                 strlen(rw->allow_functions.items[i]) + 1, h);
    h = XXH3_64bits_withSeed(&rw->limits, sizeof(rw->limits), h);
    pthread_once(&g_secret_once, secret_init);
    rw->identity = XXH3_64bits_withSeed(&g_secret, sizeof(g_secret), h);
    return rw;
}

bool tg_cypher_param_reserved(const char *name, size_t len)
{
    size_t pl = strlen(TG_CYPHER_RESERVED_PARAM_PREFIX);
    return len >= pl && memcmp(name, TG_CYPHER_RESERVED_PARAM_PREFIX, pl) == 0;
}

const char *tg_cypher_verdict_name(tg_cypher_verdict v)
{
    switch (v) {
    case TG_CYPHER_FORWARD:
        return "forward";
    case TG_CYPHER_REWRITE:
        return "rewrite";
    case TG_CYPHER_DENY:
        return "deny";
    }
    return "?";
}

/* ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ (SPEC §4) */
static bool valid_tenant(const char *t)
{
    if (!t)
        return false;
    size_t n = strlen(t);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '-')))
            return false;
    }
    return true;
}

size_t tg_cypher_tenant_label(const tg_cypher_rewriter *rw, const char *tenant, char *out,
                              size_t cap)
{
    if (!valid_tenant(tenant))
        return 0;
    size_t tl = strlen(tenant);
    size_t n = rw->label_prefix_len + tl + rw->label_suffix_len;
    if (n + 1 > cap)
        return 0;
    memcpy(out, rw->label_prefix, rw->label_prefix_len);
    memcpy(out + rw->label_prefix_len, tenant, tl);
    memcpy(out + rw->label_prefix_len + tl, rw->label_suffix, rw->label_suffix_len);
    out[n] = '\0';
    return n;
}

/* True when label has the template's shape (any tenant's label). */
static bool template_label(const tg_cypher_rewriter *rw, tg_cypher_str l)
{
    size_t p = rw->label_prefix_len, s = rw->label_suffix_len;
    return l.len > p + s && memcmp(l.s, rw->label_prefix, p) == 0 &&
           memcmp(l.s + l.len - s, rw->label_suffix, s) == 0;
}

/* ---- the per-statement context ----------------------------------------------------------- */

typedef struct rctx {
    const tg_cypher_rewriter *rw;
    tg_arena *arena;
    tg_cypher_error *err;
    int rc;
    tg_cypher_str label; /* label mode: the tenant's label */
} rctx;

__attribute__((format(printf, 2, 3))) static bool fail(rctx *c, const char *fmt, ...)
{
    if (c->rc)
        return false;
    c->rc = TG_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->reason, sizeof(c->err->reason), fmt, ap);
    va_end(ap);
    return false;
}

static bool fail_arena(rctx *c)
{
    if (c->rc)
        return false;
    if (c->arena->nomem) {
        c->rc = TG_ENOMEM;
        c->err->transient = true;
        snprintf(c->err->reason, sizeof(c->err->reason), "out of memory");
    } else {
        c->rc = TG_ELIMIT;
        snprintf(c->err->reason, sizeof(c->err->reason), "statement too large to analyse");
    }
    return false;
}

static tg_cypher_node *mk(rctx *c, tg_cypher_kind k)
{
    tg_cypher_node *n = tg_cypher_node_new(c->arena, k, 0);
    if (!n)
        fail_arena(c);
    return n;
}

static bool is_property_mode(const rctx *c)
{
    return c->rw->isolation == TG_CYPHER_ISOLATION_PROPERTY;
}

static bool is_label_mode(const rctx *c)
{
    return c->rw->isolation == TG_CYPHER_ISOLATION_LABEL;
}

static bool is_tenant_property(const rctx *c, tg_cypher_str key)
{
    return key.len == c->rw->tenant_property_len &&
           memcmp(key.s, c->rw->tenant_property, key.len) == 0;
}

/* ---- check: refusals --------------------------------------------------------------------- */

static bool check_list(rctx *c, const tg_cypher_node *n, unsigned read_only);

static bool check_procedure(rctx *c, const tg_cypher_node *n)
{
    char name[64];
    sanitize(name, sizeof(name), n->str);
    if (is_label_mode(c) &&
        table_matches(label_listing_procedures, COUNT(label_listing_procedures), n->str))
        return fail(c, "procedure %s is not allowed (it lists labels)", name);
    if (!list_matches(&c->rw->allow_procedures, n->str))
        return fail(c, "procedure %s is not allowed", name);
    return true;
}

static bool builtin_function(tg_cypher_str name)
{
    for (size_t i = 0; i < COUNT(builtin_functions); i++)
        if (builtin_functions[i].len == name.len &&
            ieq_n(name.s, name.len, builtin_functions[i].name, builtin_functions[i].len))
            return true;
    return false;
}

static bool check_function(rctx *c, const tg_cypher_node *n)
{
    if (builtin_function(n->str) || list_matches(&c->rw->allow_functions, n->str))
        return true;
    char name[64];
    sanitize(name, sizeof(name), n->str);
    return fail(c, "function %s is not allowed", name);
}

/* Label mode: a label of the template's shape other than the tenant's own. */
static bool foreign_template_label(const rctx *c, const tg_cypher_node *labels)
{
    for (const tg_cypher_node *l = labels; l; l = l->next)
        if (template_label(c->rw, l->str) && !tg_cypher_str_eq(l->str, c->label))
            return true;
    return false;
}

static bool any_template_label(const rctx *c, const tg_cypher_node *labels)
{
    for (const tg_cypher_node *l = labels; l; l = l->next)
        if (template_label(c->rw, l->str))
            return true;
    return false;
}

/*
 * Walks every node under n (and its `next` siblings): the refusals of every
 * mode. read_only counts the EXISTS/COUNT/COLLECT subqueries around n.
 */
static bool check(rctx *c, const tg_cypher_node *n, unsigned read_only)
{
    switch (n->kind) {
    case TG_CYPHER_CREATE:
    case TG_CYPHER_MERGE:
    case TG_CYPHER_SET:
    case TG_CYPHER_REMOVE:
    case TG_CYPHER_DELETE:
    case TG_CYPHER_FOREACH:
        if (read_only)
            return fail(c, "updating clauses are not allowed inside EXISTS, COUNT or COLLECT");
        break;
    case TG_CYPHER_CALL_PROC:
        if (read_only)
            return fail(c, "procedure calls are not allowed inside EXISTS, COUNT or COLLECT");
        if (!check_procedure(c, n))
            return false;
        break;
    case TG_CYPHER_FUNC:
        if (!check_function(c, n))
            return false;
        break;
    case TG_CYPHER_PARAM:
        if (tg_cypher_param_reserved(n->str.s, n->str.len))
            return fail(c, "parameter names starting with " TG_CYPHER_RESERVED_PARAM_PREFIX
                           " are reserved");
        break;
    case TG_CYPHER_SET_PROP:
    case TG_CYPHER_REMOVE_PROP:
        if (is_property_mode(c) && is_tenant_property(c, n->kid[0]->str))
            return fail(c, "%s of the tenant property is not allowed",
                        n->kind == TG_CYPHER_SET_PROP ? "SET" : "REMOVE");
        break;
    case TG_CYPHER_SET_LABELS:
    case TG_CYPHER_REMOVE_LABELS:
        if (is_label_mode(c) && any_template_label(c, n->kid[1]))
            return fail(c, "%s of a tenant label is not allowed",
                        n->kind == TG_CYPHER_SET_LABELS ? "SET" : "REMOVE");
        break;
    case TG_CYPHER_NODE_PAT:
        if (is_property_mode(c) && n->kid[TG_CYPHER_S_PROPS] &&
            n->kid[TG_CYPHER_S_PROPS]->kind == TG_CYPHER_PARAM)
            return fail(c, "a node's properties given as a parameter cannot be scoped to the "
                           "tenant (use SET n += $map)");
        if (is_label_mode(c) && foreign_template_label(c, n->kid[TG_CYPHER_S_LABELS]))
            return fail(c, "labels of the tenant label template are reserved");
        break;
    case TG_CYPHER_LABEL_TEST:
        if (is_label_mode(c) && foreign_template_label(c, n->kid[1]))
            return fail(c, "labels of the tenant label template are reserved");
        break;
    case TG_CYPHER_SUBQUERY:
        read_only++;
        break;
    default:
        break;
    }
    for (int i = 0; i < TG_CYPHER_KIDS; i++)
        if (n->kid[i] && !check_list(c, n->kid[i], read_only))
            return false;
    return true;
}

static bool check_list(rctx *c, const tg_cypher_node *n, unsigned read_only)
{
    for (; n; n = n->next)
        if (!check(c, n, read_only))
            return false;
    return true;
}

/* ---- scope: what each variable is -------------------------------------------------------- */

/* What bound a variable. */
enum { B_NODE, B_REL, B_PATH, B_VALUE };

/*
 * Variables in one scope: real statements have a few dozen; the bound keeps
 * the linear searches below (hash first) cheap for any statement.
 */
#define MAX_VARIABLES 1024

typedef struct binding {
    tg_cypher_str name;
    uint32_t hash;
    uint8_t kind;
} binding;

/* The variables in scope at one point of a query (arena memory, searched linearly). */
typedef struct scope {
    binding *b;
    uint32_t n, cap;
} scope;

/* FNV-1a: names are short, and only compared within one statement. */
static uint32_t name_hash(tg_cypher_str name)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < name.len; i++)
        h = (h ^ (unsigned char)name.s[i]) * 16777619u;
    return h;
}

static int scope_find_h(const scope *s, tg_cypher_str name, uint32_t h)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->b[i].hash == h && tg_cypher_str_eq(s->b[i].name, name))
            return (int)i;
    return -1;
}

static int scope_find(const scope *s, tg_cypher_str name)
{
    return scope_find_h(s, name, name_hash(name));
}

static bool scope_reserve(rctx *c, scope *s, uint32_t need)
{
    if (need <= s->cap)
        return true;
    if (need > MAX_VARIABLES)
        return fail(c, "statement has too many variables in one scope");
    uint32_t cap = s->cap ? s->cap : 8;
    while (cap < need)
        cap *= 2;
    binding *b = tg_arena_alloc(c->arena, (size_t)cap * sizeof(*b));
    if (!b)
        return fail_arena(c);
    if (s->n)
        memcpy(b, s->b, (size_t)s->n * sizeof(*b));
    s->b = b;
    s->cap = cap;
    return true;
}

static bool scope_set(rctx *c, scope *s, tg_cypher_str name, uint8_t kind)
{
    uint32_t h = name_hash(name);
    int i = scope_find_h(s, name, h);
    if (i >= 0) {
        s->b[i].kind = kind;
        return true;
    }
    if (!scope_reserve(c, s, s->n + 1))
        return false;
    s->b[s->n++] = (binding){name, h, kind};
    return true;
}

/* A copy of src (whose names are distinct already). */
static bool scope_copy(rctx *c, scope *dst, const scope *src)
{
    *dst = (scope){0};
    if (!scope_reserve(c, dst, src->n))
        return false;
    if (src->n)
        memcpy(dst->b, src->b, (size_t)src->n * sizeof(*src->b));
    dst->n = src->n;
    return true;
}

/* The chain of a PATH (through shortestPath), or NULL. */
static tg_cypher_node *path_chain(tg_cypher_node *path)
{
    tg_cypher_node *e = path->kid[1];
    if (e && e->kind == TG_CYPHER_SHORTEST)
        e = e->kid[0];
    return e && e->kind == TG_CYPHER_CHAIN ? e : NULL;
}

/* MATCH / OPTIONAL MATCH: the pattern's variables. */
static bool bind_match(rctx *c, scope *s, tg_cypher_node *paths, bool optional)
{
    for (tg_cypher_node *p = paths; p; p = p->next) {
        if (p->kid[0] && scope_find(s, p->kid[0]->str) < 0 &&
            !scope_set(c, s, p->kid[0]->str, B_PATH))
            return false;
        tg_cypher_node *chain = path_chain(p);
        for (tg_cypher_node *e = chain ? chain->kid[0] : NULL; e; e = e->next) {
            tg_cypher_node *v = e->kid[TG_CYPHER_S_VAR];
            if (!v)
                continue;
            int i = scope_find(s, v->str);
            if (e->kind == TG_CYPHER_NODE_PAT) {
                /*
                 * A MATCH filters every row to nodes carrying the tenant, so
                 * an expression-bound variable matched here is a scoped node
                 * afterwards; an OPTIONAL MATCH keeps rows that did not match.
                 */
                if (i < 0) {
                    if (!scope_set(c, s, v->str, B_NODE))
                        return false;
                } else if (s->b[i].kind == B_VALUE && !optional) {
                    s->b[i].kind = B_NODE;
                }
            } else if (i < 0 && !scope_set(c, s, v->str, B_REL)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * CREATE / MERGE: node patterns naming a bound variable are references (no
 * labels or properties may be added there); those bound by an expression
 * are collected in *guards.
 */
static bool bind_update(rctx *c, scope *s, tg_cypher_node *paths, scope *guards, const char *what)
{
    for (tg_cypher_node *p = paths; p; p = p->next) {
        if (p->kid[1] && p->kid[1]->kind == TG_CYPHER_SHORTEST)
            return fail(c, "shortestPath is not allowed in %s", what);
        tg_cypher_node *chain = path_chain(p);
        for (tg_cypher_node *e = chain ? chain->kid[0] : NULL; e; e = e->next) {
            tg_cypher_node *v = e->kid[TG_CYPHER_S_VAR];
            if (!v)
                continue;
            int i = scope_find(s, v->str);
            if (e->kind == TG_CYPHER_REL_PAT) {
                if (i < 0 && !scope_set(c, s, v->str, B_REL))
                    return false;
                continue;
            }
            if (i < 0) {
                if (!scope_set(c, s, v->str, B_NODE))
                    return false;
                continue;
            }
            uint8_t kind = s->b[i].kind;
            if (kind == B_REL || kind == B_PATH)
                return fail(c, "a relationship or path variable is used as a node in %s", what);
            if (e->kid[TG_CYPHER_S_LABELS] || e->kid[TG_CYPHER_S_PROPS] ||
                e->kid[TG_CYPHER_S_WHERE])
                return fail(c,
                            "%s cannot add labels or properties to a variable that is "
                            "already bound",
                            what);
            e->flags |= TG_CYPHER_F_BOUND_REF;
            if (kind == B_VALUE && scope_find(guards, v->str) < 0 &&
                !scope_set(c, guards, v->str, B_VALUE))
                return false;
        }
        if (p->kid[0] && !scope_set(c, s, p->kid[0]->str, B_PATH))
            return false;
    }
    return true;
}

static tg_cypher_node *mk_var(rctx *c, tg_cypher_str name)
{
    tg_cypher_node *v = mk(c, TG_CYPHER_VAR);
    if (v)
        v->str = name;
    return v;
}

static tg_cypher_node *mk_tenant_param(rctx *c)
{
    tg_cypher_node *p = mk(c, TG_CYPHER_PARAM);
    if (p)
        p->str = (tg_cypher_str){TG_CYPHER_TENANT_PARAM, strlen(TG_CYPHER_TENANT_PARAM)};
    return p;
}

static tg_cypher_node *mk_tenant_label(rctx *c)
{
    tg_cypher_node *l = mk(c, TG_CYPHER_LABEL);
    if (l) {
        l->str = c->label;
        l->flags |= TG_CYPHER_F_TENANT;
    }
    return l;
}

/* v.tenant_property (a PROP over a fresh VAR). */
static tg_cypher_node *mk_tenant_prop(rctx *c, tg_cypher_str var)
{
    tg_cypher_node *p = mk(c, TG_CYPHER_PROP);
    if (!p || !(p->kid[0] = mk_var(c, var)))
        return NULL;
    p->str = (tg_cypher_str){c->rw->tenant_property, c->rw->tenant_property_len};
    return p;
}

/* The condition "v is the tenant's node": v.tenant_id = $param, or v:`Tenant_x`. */
static tg_cypher_node *mk_guard_condition(rctx *c, tg_cypher_str var)
{
    if (is_label_mode(c)) {
        tg_cypher_node *t = mk(c, TG_CYPHER_LABEL_TEST);
        if (!t || !(t->kid[0] = mk_var(c, var)) || !(t->kid[1] = mk_tenant_label(c)))
            return NULL;
        return t;
    }
    tg_cypher_node *eq = mk(c, TG_CYPHER_INFIX);
    tg_cypher_node *lhs = eq ? mk_tenant_prop(c, var) : NULL;
    tg_cypher_node *rhs = lhs ? mk_tenant_param(c) : NULL;
    if (!rhs)
        return NULL;
    eq->op = TG_CYPHER_OP_L_CMP;
    rhs->lop = TG_CYPHER_OP_EQ;
    eq->kid[0] = lhs;
    lhs->next = rhs;
    return eq;
}

/*
 * WITH * WHERE <every guard holds>, inserted at *link (before the clause
 * there): rows whose expression-bound "node" is not the tenant's are dropped
 * before CREATE or MERGE can attach anything to it.
 */
static bool insert_guard(rctx *c, tg_cypher_node **link, scope *s, const scope *guards)
{
    tg_cypher_node *with = mk(c, TG_CYPHER_WITH);
    if (!with)
        return false;
    with->flags = TG_CYPHER_F_STAR | TG_CYPHER_F_TENANT;
    tg_cypher_node *cond = NULL;
    if (guards->n == 1) {
        cond = mk_guard_condition(c, guards->b[0].name);
    } else {
        cond = mk(c, TG_CYPHER_INFIX);
        if (cond) {
            cond->op = TG_CYPHER_OP_L_AND;
            tg_cypher_node **tail = &cond->kid[0];
            for (uint32_t i = 0; i < guards->n; i++) {
                tg_cypher_node *g = mk_guard_condition(c, guards->b[i].name);
                if (!g)
                    return false;
                /* a comparison operand of AND: parenthesised for the reader */
                tg_cypher_node *par = g;
                if (g->kind == TG_CYPHER_INFIX) {
                    par = mk(c, TG_CYPHER_PAREN);
                    if (!par)
                        return false;
                    par->kid[0] = g;
                }
                if (i)
                    par->lop = TG_CYPHER_OP_AND;
                *tail = par;
                tail = &par->next;
            }
        }
    }
    if (!cond)
        return false;
    with->kid[TG_CYPHER_S_WHERE] = cond;
    with->next = *link;
    *link = with;
    for (uint32_t i = 0; i < guards->n; i++)
        if (!scope_set(c, s, guards->b[i].name, B_NODE))
            return false;
    return true;
}

/*
 * SET items (a SET clause or a MERGE action): in property mode, every
 * `v = ...` and `v += ...` whose v may be a node is followed by
 * `v.tenant_property = $__tenantgate_tenant`.
 */
static bool scope_set_items(rctx *c, tg_cypher_node *items, const scope *s)
{
    if (!is_property_mode(c))
        return true;
    for (tg_cypher_node *it = items; it; it = it->next) {
        if (it->kind != TG_CYPHER_SET_VAR)
            continue;
        tg_cypher_str v = it->kid[0]->str;
        int i = scope_find(s, v);
        if (i >= 0 && s->b[i].kind == B_REL)
            continue; /* relationships carry no tenant */
        tg_cypher_node *re = mk(c, TG_CYPHER_SET_PROP);
        if (!re || !(re->kid[0] = mk_tenant_prop(c, v)) || !(re->kid[1] = mk_tenant_param(c)))
            return false;
        re->flags |= TG_CYPHER_F_TENANT;
        re->next = it->next;
        it->next = re;
        it = re;
    }
    return true;
}

/* The columns of a WITH / RETURN, computed against `from`. */
static bool project(rctx *c, const tg_cypher_node *w, const scope *from, scope *out)
{
    *out = (scope){0};
    if ((w->flags & TG_CYPHER_F_STAR) && !scope_copy(c, out, from))
        return false;
    for (const tg_cypher_node *it = w->kid[TG_CYPHER_S_ITEMS]; it; it = it->next) {
        const tg_cypher_node *e = it->kid[0], *alias = it->kid[1];
        if (!alias && e->kind != TG_CYPHER_VAR)
            continue; /* unaliased expression: Neo4j refuses it in WITH */
        tg_cypher_str name = alias ? alias->str : e->str;
        uint8_t kind = B_VALUE;
        if (e->kind == TG_CYPHER_VAR) {
            int i = scope_find(from, e->str);
            if (i >= 0)
                kind = from->b[i].kind;
        }
        if (!scope_set(c, out, name, kind))
            return false;
    }
    return true;
}

/* Merges one UNION branch's columns into the query's: kinds that differ become values. */
static bool merge_columns(rctx *c, scope *into, const scope *branch, bool first)
{
    if (first)
        return scope_copy(c, into, branch);
    for (uint32_t i = 0; i < branch->n; i++) {
        int j = scope_find(into, branch->b[i].name);
        if (j < 0) {
            if (!scope_set(c, into, branch->b[i].name, B_VALUE))
                return false;
        } else if (into->b[j].kind != branch->b[i].kind) {
            into->b[j].kind = B_VALUE;
        }
    }
    return true;
}

static bool scope_query(rctx *c, tg_cypher_node *q, const scope *initial, const scope *import,
                        scope *returned);

/*
 * The clauses from *link on, with s the variables in scope (updated).
 * import: for an old-style CALL { WITH a, b ... } subquery, the outer
 * variables its first WITH may import (NULL otherwise). in_foreach: inside a
 * FOREACH body, where no guard can be inserted. returned (may be NULL):
 * the RETURN's columns.
 */
static bool scope_clauses(rctx *c, tg_cypher_node **link, scope *s, const scope *import,
                          bool in_foreach, scope *returned)
{
    bool first = true;
    for (; *link; link = &(*link)->next, first = false) {
        tg_cypher_node *cl = *link;
        switch (cl->kind) {
        case TG_CYPHER_MATCH:
            if (!bind_match(c, s, cl->kid[0], cl->flags & TG_CYPHER_F_OPTIONAL))
                return false;
            break;
        case TG_CYPHER_UNWIND:
            if (!scope_set(c, s, cl->kid[0]->str, B_VALUE))
                return false;
            break;
        case TG_CYPHER_WITH: {
            const scope *from = first && import ? import : s;
            if (from == s && (cl->flags & TG_CYPHER_F_STAR) && !cl->kid[TG_CYPHER_S_ITEMS])
                break; /* WITH * [WHERE ...]: the same variables */
            scope next;
            if (!project(c, cl, from, &next))
                return false;
            *s = next;
            break;
        }
        case TG_CYPHER_RETURN:
            if (returned && !project(c, cl, s, returned))
                return false;
            break;
        case TG_CYPHER_CREATE:
        case TG_CYPHER_MERGE: {
            const char *what = cl->kind == TG_CYPHER_CREATE ? "CREATE" : "MERGE";
            scope guards = {0};
            if (!bind_update(c, s, cl->kid[0], &guards, what))
                return false;
            if (guards.n) {
                if (in_foreach)
                    return fail(c,
                                "a variable bound by an expression cannot be a node of %s "
                                "inside FOREACH (use UNWIND)",
                                what);
                if (!insert_guard(c, link, s, &guards))
                    return false;
                link = &(*link)->next; /* past the guard, to the clause */
            }
            if (cl->kind == TG_CYPHER_MERGE)
                for (tg_cypher_node *a = cl->kid[1]; a; a = a->next)
                    if (!scope_set_items(c, a->kid[0], s))
                        return false;
            break;
        }
        case TG_CYPHER_SET:
            if (!scope_set_items(c, cl->kid[0], s))
                return false;
            break;
        case TG_CYPHER_FOREACH: {
            scope inner;
            if (!scope_copy(c, &inner, s) || !scope_set(c, &inner, cl->kid[0]->str, B_VALUE) ||
                !scope_clauses(c, &cl->kid[2], &inner, NULL, true, NULL))
                return false;
            break;
        }
        case TG_CYPHER_CALL_SUB: {
            scope inner = {0}, cols = {0};
            const scope *imp = NULL;
            if (cl->flags & TG_CYPHER_F_SCOPED) {
                if ((cl->flags & TG_CYPHER_F_STAR) && !scope_copy(c, &inner, s))
                    return false;
                for (tg_cypher_node *v = cl->kid[0]; v; v = v->next) {
                    int i = scope_find(s, v->str);
                    if (!scope_set(c, &inner, v->str, i >= 0 ? s->b[i].kind : B_VALUE))
                        return false;
                }
            } else {
                imp = s;
            }
            if (!scope_query(c, cl->kid[1], &inner, imp, &cols))
                return false;
            for (uint32_t i = 0; i < cols.n; i++)
                if (!scope_set(c, s, cols.b[i].name, cols.b[i].kind))
                    return false;
            break;
        }
        case TG_CYPHER_CALL_PROC:
            for (tg_cypher_node *y = cl->kid[1]; y; y = y->next)
                if (!scope_set(c, s, y->kid[0] ? y->kid[0]->str : y->str, B_VALUE))
                    return false;
            break;
        default:
            break;
        }
    }
    return true;
}

static bool scope_query(rctx *c, tg_cypher_node *q, const scope *initial, const scope *import,
                        scope *returned)
{
    *returned = (scope){0};
    bool first = true;
    for (tg_cypher_node *single = q->kid[0]; single; single = single->next, first = false) {
        scope s, cols = {0};
        if (!scope_copy(c, &s, initial) ||
            !scope_clauses(c, &single->kid[0], &s, import, false, &cols) ||
            !merge_columns(c, returned, &cols, first))
            return false;
    }
    return true;
}

/* ---- add_tenant: every node pattern ------------------------------------------------------ */

static bool add_tenant_to_node(rctx *c, tg_cypher_node *n)
{
    if (is_label_mode(c)) {
        tg_cypher_node **tail = &n->kid[TG_CYPHER_S_LABELS];
        for (; *tail; tail = &(*tail)->next)
            if (tg_cypher_str_eq((*tail)->str, c->label))
                return true;
        return (*tail = mk_tenant_label(c)) != NULL;
    }
    tg_cypher_node *props = n->kid[TG_CYPHER_S_PROPS];
    if (!props) {
        props = mk(c, TG_CYPHER_MAP);
        if (!props)
            return false;
        n->kid[TG_CYPHER_S_PROPS] = props;
    }
    if (props->kind != TG_CYPHER_MAP)
        return fail(c, "a node's properties given as a parameter cannot be scoped to the tenant");
    bool found = false;
    tg_cypher_node **tail = &props->kid[0];
    for (; *tail; tail = &(*tail)->next) {
        if (is_tenant_property(c, (*tail)->str)) {
            /* the client's own value is replaced: a tenant only ever names itself */
            if (!((*tail)->kid[0] = mk_tenant_param(c)))
                return false;
            (*tail)->flags |= TG_CYPHER_F_TENANT;
            found = true;
        }
    }
    if (found)
        return true;
    tg_cypher_node *e = mk(c, TG_CYPHER_MAP_ENTRY);
    if (!e || !(e->kid[0] = mk_tenant_param(c)))
        return false;
    e->str = (tg_cypher_str){c->rw->tenant_property, c->rw->tenant_property_len};
    e->flags |= TG_CYPHER_F_TENANT;
    *tail = e;
    return true;
}

/* Every node pattern under n (and its siblings) that is not a bound reference. */
static bool add_tenant(rctx *c, tg_cypher_node *n)
{
    for (; n; n = n->next) {
        if (n->kind == TG_CYPHER_NODE_PAT && !(n->flags & TG_CYPHER_F_BOUND_REF) &&
            !add_tenant_to_node(c, n))
            return false;
        for (int i = 0; i < TG_CYPHER_KIDS; i++)
            if (n->kid[i] && !add_tenant(c, n->kid[i]))
                return false;
    }
    return true;
}

/* ---- verify: the output is scoped ------------------------------------------------------- */

/*
 * The last check of every rewrite, run on the re-parsed output: an
 * implementation of its own, simpler and stricter than the rewriter's scope
 * analysis, so that a mistake there cannot slip through here. Every node
 * pattern must carry the tenant, except a bare variable in a CREATE / MERGE
 * chain, which must name a "safe" variable: one bound, earlier in the same
 * scope, by a scoped node pattern, passed on unchanged through WITH / RETURN
 * / CALL subqueries, or checked by a tenant guard (`WITH * WHERE
 * v.tenant_id = $__tenantgate_tenant`, or `v:Label` with the tenant's
 * label). Any other binding of the name (UNWIND, YIELD, expressions,
 * relationships, paths) makes it unsafe again.
 */

typedef struct vset {
    tg_cypher_str *v;
    uint32_t *h; /* name_hash() of each name */
    uint32_t n, cap;
} vset;

typedef struct vctx {
    const tg_cypher_rewriter *rw;
    tg_cypher_str label;
    tg_arena *arena;
    bool ok; /* false once out of memory or past MAX_VARIABLES (the verification fails) */
} vctx;

static int vs_find(const vset *s, tg_cypher_str name, uint32_t h)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->h[i] == h && tg_cypher_str_eq(s->v[i], name))
            return (int)i;
    return -1;
}

static bool vs_has(const vset *s, tg_cypher_str name)
{
    return vs_find(s, name, name_hash(name)) >= 0;
}

static void vs_del(vset *s, tg_cypher_str name)
{
    int i = vs_find(s, name, name_hash(name));
    if (i >= 0) {
        s->n--;
        s->v[i] = s->v[s->n];
        s->h[i] = s->h[s->n];
    }
}

static bool vs_reserve(vctx *c, vset *s, uint32_t need)
{
    if (need <= s->cap)
        return true;
    uint32_t cap = s->cap ? s->cap : 8;
    while (cap < need)
        cap *= 2;
    tg_cypher_str *v =
        need > MAX_VARIABLES ? NULL : tg_arena_alloc(c->arena, (size_t)cap * sizeof(*v));
    uint32_t *h = v ? tg_arena_alloc(c->arena, (size_t)cap * sizeof(*h)) : NULL;
    if (!h) {
        c->ok = false;
        return false;
    }
    if (s->n) {
        memcpy(v, s->v, (size_t)s->n * sizeof(*v));
        memcpy(h, s->h, (size_t)s->n * sizeof(*h));
    }
    s->v = v;
    s->h = h;
    s->cap = cap;
    return true;
}

static void vs_add(vctx *c, vset *s, tg_cypher_str name)
{
    uint32_t h = name_hash(name);
    if (vs_find(s, name, h) >= 0 || !vs_reserve(c, s, s->n + 1))
        return;
    s->v[s->n] = name;
    s->h[s->n++] = h;
}

static vset vs_copy(vctx *c, const vset *src)
{
    vset d = {0};
    if (src->n && vs_reserve(c, &d, src->n)) {
        memcpy(d.v, src->v, (size_t)src->n * sizeof(*d.v));
        memcpy(d.h, src->h, (size_t)src->n * sizeof(*d.h));
        d.n = src->n;
    }
    return d;
}

static bool node_scoped(const tg_cypher_rewriter *rw, const tg_cypher_node *n, tg_cypher_str label)
{
    if (rw->isolation == TG_CYPHER_ISOLATION_LABEL) {
        for (const tg_cypher_node *l = n->kid[TG_CYPHER_S_LABELS]; l; l = l->next)
            if (tg_cypher_str_eq(l->str, label))
                return true;
        return false;
    }
    const tg_cypher_node *props = n->kid[TG_CYPHER_S_PROPS];
    if (!props || props->kind != TG_CYPHER_MAP)
        return false;
    bool found = false;
    for (const tg_cypher_node *e = props->kid[0]; e; e = e->next) {
        if (e->str.len != rw->tenant_property_len ||
            memcmp(e->str.s, rw->tenant_property, e->str.len) != 0)
            continue;
        const tg_cypher_node *v = e->kid[0];
        if (v->kind != TG_CYPHER_PARAM || v->str.len != strlen(TG_CYPHER_TENANT_PARAM) ||
            memcmp(v->str.s, TG_CYPHER_TENANT_PARAM, v->str.len) != 0)
            return false; /* any other value for the tenant property */
        found = true;
    }
    return found;
}

static bool bare_variable(const tg_cypher_node *n)
{
    return n->kid[TG_CYPHER_S_VAR] && !n->kid[TG_CYPHER_S_LABELS] && !n->kid[TG_CYPHER_S_PROPS] &&
           !n->kid[TG_CYPHER_S_WHERE];
}

/* The variable that condition e guards (v.tenant = $param, or v:TenantLabel), if it is one. */
static const tg_cypher_node *guarded_var(const vctx *c, const tg_cypher_node *e)
{
    while (e->kind == TG_CYPHER_PAREN)
        e = e->kid[0];
    if (c->rw->isolation == TG_CYPHER_ISOLATION_LABEL) {
        if (e->kind != TG_CYPHER_LABEL_TEST || e->kid[0]->kind != TG_CYPHER_VAR)
            return NULL;
        for (const tg_cypher_node *l = e->kid[1]; l; l = l->next)
            if (tg_cypher_str_eq(l->str, c->label))
                return e->kid[0];
        return NULL;
    }
    if (e->kind != TG_CYPHER_INFIX || e->op != TG_CYPHER_OP_L_CMP)
        return NULL;
    const tg_cypher_node *a = e->kid[0], *b = a->next;
    if (!b || b->next || b->lop != TG_CYPHER_OP_EQ || a->kind != TG_CYPHER_PROP ||
        a->kid[0]->kind != TG_CYPHER_VAR || b->kind != TG_CYPHER_PARAM)
        return NULL;
    tg_cypher_str prop = {c->rw->tenant_property, c->rw->tenant_property_len};
    tg_cypher_str param = {TG_CYPHER_TENANT_PARAM, strlen(TG_CYPHER_TENANT_PARAM)};
    if (!tg_cypher_str_eq(a->str, prop) || !tg_cypher_str_eq(b->str, param))
        return NULL;
    return a->kid[0];
}

/* A WITH's WHERE: every guard among its top-level conjuncts makes its variable safe. */
static void v_guards(vctx *c, const tg_cypher_node *where, vset *s)
{
    if (!where)
        return;
    const tg_cypher_node *conds = where;
    bool conj = where->kind == TG_CYPHER_INFIX && where->op == TG_CYPHER_OP_L_AND;
    if (conj)
        conds = where->kid[0];
    for (const tg_cypher_node *e = conds; e; e = conj ? e->next : NULL) {
        const tg_cypher_node *v = guarded_var(c, e);
        if (v)
            vs_add(c, s, v->str);
    }
}

/* The safe columns of a WITH / RETURN computed against `from`. */
static vset v_project(vctx *c, const tg_cypher_node *w, const vset *from)
{
    vset out = (w->flags & TG_CYPHER_F_STAR) ? vs_copy(c, from) : (vset){0};
    for (const tg_cypher_node *it = w->kid[TG_CYPHER_S_ITEMS]; it; it = it->next) {
        const tg_cypher_node *e = it->kid[0], *alias = it->kid[1];
        if (!alias && e->kind != TG_CYPHER_VAR)
            continue;
        tg_cypher_str name = alias ? alias->str : e->str;
        if (e->kind == TG_CYPHER_VAR && vs_has(from, e->str))
            vs_add(c, &out, name);
        else
            vs_del(&out, name);
    }
    return out;
}

/* The elements of the chain of a PATH (through shortestPath). */
static const tg_cypher_node *v_chain(const tg_cypher_node *path)
{
    const tg_cypher_node *e = path->kid[1];
    if (e && e->kind == TG_CYPHER_SHORTEST)
        e = e->kid[0];
    return e && e->kind == TG_CYPHER_CHAIN ? e->kid[0] : NULL;
}

static void v_query(vctx *c, tg_cypher_node *q, const vset *initial, const vset *import,
                    vset *safe_cols);

static void v_clauses(vctx *c, tg_cypher_node *cl, vset *s, const vset *import, vset *cols)
{
    for (bool first = true; cl; cl = cl->next, first = false) {
        switch (cl->kind) {
        case TG_CYPHER_MATCH:
        case TG_CYPHER_CREATE:
        case TG_CYPHER_MERGE: {
            bool update = cl->kind != TG_CYPHER_MATCH;
            for (tg_cypher_node *p = cl->kid[0]; p; p = p->next) {
                for (tg_cypher_node *e = (tg_cypher_node *)v_chain(p); e; e = e->next) {
                    tg_cypher_node *v = e->kid[TG_CYPHER_S_VAR];
                    if (e->kind == TG_CYPHER_REL_PAT) {
                        if (v)
                            vs_del(s, v->str);
                    } else if (node_scoped(c->rw, e, c->label)) {
                        if (v)
                            vs_add(c, s, v->str);
                    } else if (update && bare_variable(e) && vs_has(s, v->str)) {
                        e->flags |= TG_CYPHER_F_BOUND_REF;
                    }
                }
                if (p->kid[0])
                    vs_del(s, p->kid[0]->str);
            }
            break;
        }
        case TG_CYPHER_UNWIND:
            vs_del(s, cl->kid[0]->str);
            break;
        case TG_CYPHER_WITH: {
            const vset *from = first && import ? import : s;
            if (from == s && (cl->flags & TG_CYPHER_F_STAR) && !cl->kid[TG_CYPHER_S_ITEMS]) {
                v_guards(c, cl->kid[TG_CYPHER_S_WHERE], s); /* the same variables */
                break;
            }
            vset next = v_project(c, cl, from);
            v_guards(c, cl->kid[TG_CYPHER_S_WHERE], &next);
            *s = next;
            break;
        }
        case TG_CYPHER_RETURN:
            if (cols)
                *cols = v_project(c, cl, s);
            break;
        case TG_CYPHER_FOREACH: {
            vset inner = vs_copy(c, s);
            vs_del(&inner, cl->kid[0]->str);
            v_clauses(c, cl->kid[2], &inner, NULL, NULL);
            break;
        }
        case TG_CYPHER_CALL_SUB: {
            vset inner = {0}, safe = {0};
            if (cl->flags & TG_CYPHER_F_SCOPED) {
                if (cl->flags & TG_CYPHER_F_STAR)
                    inner = vs_copy(c, s);
                for (const tg_cypher_node *v = cl->kid[0]; v; v = v->next)
                    if (vs_has(s, v->str))
                        vs_add(c, &inner, v->str);
                v_query(c, cl->kid[1], &inner, NULL, &safe);
            } else {
                v_query(c, cl->kid[1], &inner, s, &safe);
            }
            for (uint32_t i = 0; i < safe.n; i++)
                vs_add(c, s, safe.v[i]);
            break;
        }
        case TG_CYPHER_CALL_PROC:
            for (const tg_cypher_node *y = cl->kid[1]; y; y = y->next)
                vs_del(s, y->kid[0] ? y->kid[0]->str : y->str);
            break;
        default:
            break;
        }
    }
}

/* safe_cols: the columns safe in every UNION branch. */
static void v_query(vctx *c, tg_cypher_node *q, const vset *initial, const vset *import,
                    vset *safe_cols)
{
    *safe_cols = (vset){0};
    bool first = true;
    for (tg_cypher_node *single = q->kid[0]; single; single = single->next, first = false) {
        vset s = vs_copy(c, initial), cols = {0};
        v_clauses(c, single->kid[0], &s, import, &cols);
        if (first) {
            *safe_cols = cols;
        } else {
            for (uint32_t i = 0; i < safe_cols->n;) {
                if (vs_has(&cols, safe_cols->v[i]))
                    i++;
                else
                    vs_del(safe_cols, safe_cols->v[i]);
            }
        }
    }
}

/* Every node pattern under n is scoped, or a bare reference v_clauses marked. */
static bool verify_walk(const tg_cypher_rewriter *rw, const tg_cypher_node *n, tg_cypher_str label)
{
    for (; n; n = n->next) {
        if (n->kind == TG_CYPHER_NODE_PAT && !node_scoped(rw, n, label) &&
            !((n->flags & TG_CYPHER_F_BOUND_REF) && bare_variable(n)))
            return false;
        for (int i = 0; i < TG_CYPHER_KIDS; i++)
            if (n->kid[i] && !verify_walk(rw, n->kid[i], label))
                return false;
    }
    return true;
}

bool tg_cypher_rewrite_verify(const tg_cypher_rewriter *rw, tg_cypher_node *query,
                              const char *label, size_t label_len)
{
    if (rw->isolation == TG_CYPHER_ISOLATION_DATABASE)
        return true;
    unsigned char stack[4096];
    tg_arena arena;
    tg_arena_init(&arena, stack, sizeof(stack), 0);
    vctx c = {.rw = rw,
              .label = {label ? label : "", label ? label_len : 0},
              .arena = &arena,
              .ok = true};
    vset empty = {0}, cols;
    if (query->kind == TG_CYPHER_QUERY)
        v_query(&c, query, &empty, NULL, &cols);
    bool ok = c.ok && verify_walk(rw, query, c.label);
    tg_arena_release(&arena);
    return ok;
}

/* ---- the entry point --------------------------------------------------------------------- */

#define CHECK_SEED_SALT UINT64_C(0x9e3779b97f4a7c15)
#define TENANT_SEED_SALT UINT64_C(0xc2b2ae3d27d4eb4f)

void tg_cypher_result_init(tg_cypher_result *r)
{
    memset(r, 0, sizeof(*r));
}

void tg_cypher_result_free(tg_cypher_result *r)
{
    tg_cypher_buf_free(&r->text);
}

static tg_cypher_verdict deny(tg_cypher_result *out, const char *reason)
{
    out->kind = TG_CYPHER_DENY;
    snprintf(out->reason, sizeof(out->reason), "%s", reason);
    tg_cypher_buf_reset(&out->text);
    return out->kind;
}

/*
 * Parses, checks, rewrites and prints text into out->text; returns 0 with
 * out->kind set, or a negative code with err filled.
 */
static int rewrite_uncached(const tg_cypher_rewriter *rw, tg_cypher_str label, const char *text,
                            size_t len, tg_cypher_result *out, tg_cypher_error *err)
{
    unsigned char stack[ARENA_STACK];
    tg_arena arena;
    tg_arena_init(&arena, stack, sizeof(stack), rw->limits.max_memory);
    tg_cypher_node *q;
    int rc = tg_cypher_parse(&arena, text, len, &rw->limits, &q, err);
    rctx c = {.rw = rw, .arena = &arena, .err = err, .label = label};
    if (rc == 0 && !check_list(&c, q, 0))
        rc = c.rc;
    if (rc == 0 && rw->isolation != TG_CYPHER_ISOLATION_DATABASE) {
        scope empty = {0}, cols;
        if (!scope_query(&c, q, &empty, NULL, &cols) || !add_tenant(&c, q))
            rc = c.rc;
    }
    if (rc == 0) {
        tg_cypher_buf_reset(&out->text);
        out->text.max = (size_t)rw->limits.max_bytes * 4 + 65536;
        rc = tg_cypher_print(q, &out->text);
        if (rc == TG_ELIMIT)
            snprintf(err->reason, sizeof(err->reason), "rewritten statement too long");
        else if (rc)
            snprintf(err->reason, sizeof(err->reason), "out of memory");
        err->transient = rc == TG_ENOMEM;
    }
    tg_arena_release(&arena);
    if (rc)
        return rc;

    /* What leaves must parse again and be scoped: a last check of the rewriter itself. */
    tg_cypher_limits vl = rw->limits;
    vl.max_bytes = (uint32_t)(out->text.len > vl.max_bytes ? out->text.len : vl.max_bytes);
    vl.max_tokens *= 2;
    vl.max_nodes *= 2;
    vl.max_depth += 4;
    vl.max_memory *= 2;
    tg_arena_init(&arena, stack, sizeof(stack), vl.max_memory);
    tg_cypher_error verr;
    rc = tg_cypher_parse(&arena, out->text.s, out->text.len, &vl, &q, &verr);
    if (rc == 0 && !tg_cypher_rewrite_verify(rw, q, label.s, label.len))
        rc = TG_EPROTO;
    tg_arena_release(&arena);
    if (rc) {
        err->transient = verr.transient && rc == TG_ENOMEM;
        snprintf(err->reason, sizeof(err->reason), "%s",
                 rc == TG_ENOMEM ? "out of memory" : "statement could not be rewritten safely");
        return rc == TG_ENOMEM ? rc : TG_EINVAL;
    }
    out->kind = (out->text.len == len && memcmp(out->text.s, text, len) == 0) ? TG_CYPHER_FORWARD
                                                                              : TG_CYPHER_REWRITE;
    return 0;
}

tg_cypher_verdict tg_cypher_rewrite(const tg_cypher_rewriter *rw, tg_cypher_cache *cache,
                                    const char *tenant, const char *text, size_t len,
                                    tg_cypher_result *out)
{
    out->kind = TG_CYPHER_DENY;
    out->reason[0] = '\0';
    out->cached = false;
    out->fingerprint = 0;
    tg_cypher_buf_reset(&out->text);
    if (!rw || (!text && len))
        return deny(out, "statement could not be checked");
    if (!text)
        text = "";
    out->fingerprint = XXH3_64bits(text, len);
    char label_buf[256];
    tg_cypher_str label = {"", 0};
    uint64_t seed = rw->identity;
    if (rw->isolation == TG_CYPHER_ISOLATION_LABEL) {
        label.len = tg_cypher_tenant_label(rw, tenant, label_buf, sizeof(label_buf));
        if (!label.len)
            return deny(out, "invalid tenant for label isolation");
        label.s = label_buf;
        /* the rewrite is per tenant: so is the cache key */
        seed = XXH3_64bits_withSeed(tenant, strlen(tenant), rw->identity ^ TENANT_SEED_SALT);
    }
    tg_cypher_cache_key key = {0, 0, len};
    if (cache) {
        key.key = XXH3_64bits_withSeed(text, len, seed);
        key.check = XXH3_64bits_withSeed(text, len, seed ^ CHECK_SEED_SALT);
        uint8_t kind;
        const char *value;
        size_t vlen;
        if (tg_cypher_cache_get(cache, &key, &kind, &value, &vlen)) {
            out->cached = true;
            out->kind = (tg_cypher_verdict)kind;
            if (out->kind == TG_CYPHER_DENY) {
                size_t n = vlen < sizeof(out->reason) - 1 ? vlen : sizeof(out->reason) - 1;
                memcpy(out->reason, value, n);
                out->reason[n] = '\0';
                return out->kind;
            }
            out->text.max = 0;
            tg_cypher_buf_reset(&out->text);
            if (out->text.cap < vlen + 1) {
                size_t cap = out->text.cap ? out->text.cap : 256;
                while (cap < vlen + 1)
                    cap *= 2;
                char *s = realloc(out->text.s, cap);
                if (!s)
                    return deny(out, "out of memory");
                out->text.s = s;
                out->text.cap = cap;
            }
            memcpy(out->text.s, value, vlen);
            out->text.s[vlen] = '\0';
            out->text.len = vlen;
            return out->kind;
        }
    }
    tg_cypher_error err;
    memset(&err, 0, sizeof(err));
    int rc = rewrite_uncached(rw, label, text, len, out, &err);
    if (rc) {
        deny(out, err.reason[0] ? err.reason : "statement could not be checked");
        if (cache && !err.transient)
            (void)tg_cypher_cache_put(cache, &key, TG_CYPHER_DENY, out->reason,
                                      strlen(out->reason));
        return out->kind;
    }
    if (cache)
        (void)tg_cypher_cache_put(cache, &key, (uint8_t)out->kind, out->text.s, out->text.len);
    return out->kind;
}
