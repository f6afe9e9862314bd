/*
 * The MongoDB command scoper (see mongo_scope.h for the contract).
 *
 *   body, kind 1 documents ──tg_mongo_bson_valid──> (malformed BSON: DENY)
 *   body ──first key──> commands[] row (name, modes, flags, reply kind, fields)
 *        ──pass 1: every key known (command field or generic), none twice, $db found,
 *                  $db legal / reserved / mapped (database mode)
 *        ──pass 2: every key again, in order, through its role:
 *             FILTER      checked, then (field mode) {$and: [{tf: T}, filter]} or {tf: T}
 *             PIPELINE    every stage checked; (field mode) the tenant $match merged into a
 *                         leading $match / $geoNear.query or prepended; $lookup, $graphLookup,
 *                         $unionWith, $facet sub-pipelines likewise; a tenant $set before $merge
 *             DOCS        (field mode) {tf: T} stamped into every inserted document
 *             UPDATES     q scoped; u: operators checked for the tenant path, replacements
 *                         stamped, pipelines checked and ended with a tenant $set
 *             LSID        id -> HMAC-SHA256(key, tenant, id)
 *             NS / $db    (database mode) mapped through database_template
 *             ANY         copied
 *        ──kind 1 sequences: the field they stand for, same role
 *        ──> FORWARD (nothing changed) | REWRITE (new bytes) | DENY (static reason)
 *
 * Everything is an allow-list: commands, command fields, generic fields, query
 * operators, expression operators, accumulators, window functions, system
 * variables, aggregation stages, update operators and index options. What is
 * not listed is DENY. Nested filters/expressions/pipelines deeper than
 * TG_MONGO_SCOPE_MAX_DEPTH are DENY. A field that appears twice in a command,
 * a stage, an update or delete statement, a $lookup... is DENY (libbson walks
 * both copies, MongoDB keeps one: an unscoped twin must never slip by).
 *
 * Why the tenant clause is a constant. Every sub-pipeline ($lookup,
 * $unionWith, $graphLookup) is scoped with {tf: "T"} itself, never with a
 * reference to the outer document's field, so a $project or $replaceRoot that
 * drops or rewrites the tenant field earlier in the pipeline changes nothing.
 * Writes that leave the pipeline ($merge) get a {$set: {tf: "T"}} stage right
 * before them and must match on the tenant field, so they can neither create
 * nor touch another tenant's documents. Pipeline-style updates end with the
 * same $set, so $replaceWith / $replaceRoot / $project cannot drop the tenant.
 *
 * Field-mode limits, by design (documented in the README): collection and
 * index names are shared by all tenants (listCollections and listIndexes are
 * allowed, views, TTL indexes, unique indexes without the tenant field,
 * drop/rename and $out are not); a unique index (_id included) that does not
 * start with the tenant field still answers "duplicate key" for another
 * tenant's value; explain is limited to verbosity queryPlanner (execution
 * statistics count other tenants' documents).
 */
#include "policy/mongo_scope.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buffer.h"
#include "proxy/byteorder.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define TENANT_MAX 64
#define PATH_MAX_COMPONENTS 16
#define LSID_CACHE 8
/* The prebuilt tenant documents: a 255-byte field, a 64-byte tenant twice, headers. */
#define TENANT_DOC_MAX 512

/* ---- operator and stage tables (data) ---------------------------------------------------- */

typedef struct name_flags {
    const char *name;
    uint32_t flags;
} name_flags;

static int name_flags_cmp(const void *a, const void *b)
{
    return strcmp(((const name_flags *)a)->name, ((const name_flags *)b)->name);
}

/* Field-level query operators ({field: {$op: ...}}). */
enum { QF_DATA = 1, QF_ELEM_MATCH, QF_NOT, QF_ALL };
static const name_flags query_field_ops[] = {
    {"$eq", QF_DATA},          {"$ne", QF_DATA},           {"$gt", QF_DATA},
    {"$gte", QF_DATA},         {"$lt", QF_DATA},           {"$lte", QF_DATA},
    {"$in", QF_DATA},          {"$nin", QF_DATA},          {"$exists", QF_DATA},
    {"$type", QF_DATA},        {"$mod", QF_DATA},          {"$regex", QF_DATA},
    {"$options", QF_DATA},     {"$size", QF_DATA},         {"$bitsAllClear", QF_DATA},
    {"$bitsAllSet", QF_DATA},  {"$bitsAnyClear", QF_DATA}, {"$bitsAnySet", QF_DATA},
    {"$geoWithin", QF_DATA},   {"$within", QF_DATA},       {"$geoIntersects", QF_DATA},
    {"$near", QF_DATA},        {"$nearSphere", QF_DATA},   {"$maxDistance", QF_DATA},
    {"$minDistance", QF_DATA}, {"$all", QF_ALL},           {"$elemMatch", QF_ELEM_MATCH},
    {"$not", QF_NOT},
};

/* Expression operators (E), $group accumulators (A), $setWindowFields functions (W). */
enum { OP_E = 1, OP_A = 2, OP_W = 4, OP_LITERAL = 8 };
static const name_flags expr_ops[] = {
    {"$abs", OP_E},
    {"$acos", OP_E},
    {"$acosh", OP_E},
    {"$add", OP_E},
    {"$addToSet", OP_A | OP_W},
    {"$allElementsTrue", OP_E},
    {"$and", OP_E},
    {"$anyElementTrue", OP_E},
    {"$arrayElemAt", OP_E},
    {"$arrayToObject", OP_E},
    {"$asin", OP_E},
    {"$asinh", OP_E},
    {"$atan", OP_E},
    {"$atan2", OP_E},
    {"$atanh", OP_E},
    {"$avg", OP_E | OP_A | OP_W},
    {"$binarySize", OP_E},
    {"$bitAnd", OP_E},
    {"$bitNot", OP_E},
    {"$bitOr", OP_E},
    {"$bitXor", OP_E},
    {"$bottom", OP_A | OP_W},
    {"$bottomN", OP_A | OP_W},
    {"$bsonSize", OP_E},
    {"$ceil", OP_E},
    {"$cmp", OP_E},
    {"$concat", OP_E},
    {"$concatArrays", OP_E},
    {"$cond", OP_E},
    {"$convert", OP_E},
    {"$cos", OP_E},
    {"$cosh", OP_E},
    {"$count", OP_A | OP_W},
    {"$covariancePop", OP_W},
    {"$covarianceSamp", OP_W},
    {"$dateAdd", OP_E},
    {"$dateDiff", OP_E},
    {"$dateFromParts", OP_E},
    {"$dateFromString", OP_E},
    {"$dateSubtract", OP_E},
    {"$dateToParts", OP_E},
    {"$dateToString", OP_E},
    {"$dateTrunc", OP_E},
    {"$dayOfMonth", OP_E},
    {"$dayOfWeek", OP_E},
    {"$dayOfYear", OP_E},
    {"$degreesToRadians", OP_E},
    {"$denseRank", OP_W},
    {"$derivative", OP_W},
    {"$divide", OP_E},
    {"$documentNumber", OP_W},
    {"$eq", OP_E},
    {"$exp", OP_E},
    {"$expMovingAvg", OP_W},
    {"$filter", OP_E},
    {"$first", OP_E | OP_A | OP_W},
    {"$firstN", OP_E | OP_A | OP_W},
    {"$floor", OP_E},
    {"$getField", OP_E},
    {"$gt", OP_E},
    {"$gte", OP_E},
    {"$hour", OP_E},
    {"$ifNull", OP_E},
    {"$in", OP_E},
    {"$indexOfArray", OP_E},
    {"$indexOfBytes", OP_E},
    {"$indexOfCP", OP_E},
    {"$integral", OP_W},
    {"$isArray", OP_E},
    {"$isNumber", OP_E},
    {"$isoDayOfWeek", OP_E},
    {"$isoWeek", OP_E},
    {"$isoWeekYear", OP_E},
    {"$last", OP_E | OP_A | OP_W},
    {"$lastN", OP_E | OP_A | OP_W},
    {"$let", OP_E},
    {"$linearFill", OP_W},
    {"$literal", OP_E | OP_LITERAL},
    {"$ln", OP_E},
    {"$locf", OP_W},
    {"$log", OP_E},
    {"$log10", OP_E},
    {"$lt", OP_E},
    {"$lte", OP_E},
    {"$ltrim", OP_E},
    {"$map", OP_E},
    {"$max", OP_E | OP_A | OP_W},
    {"$maxN", OP_E | OP_A | OP_W},
    {"$median", OP_E | OP_A | OP_W},
    {"$mergeObjects", OP_E | OP_A | OP_W},
    {"$meta", OP_E},
    {"$millisecond", OP_E},
    {"$min", OP_E | OP_A | OP_W},
    {"$minN", OP_E | OP_A | OP_W},
    {"$minute", OP_E},
    {"$mod", OP_E},
    {"$month", OP_E},
    {"$multiply", OP_E},
    {"$ne", OP_E},
    {"$not", OP_E},
    {"$objectToArray", OP_E},
    {"$or", OP_E},
    {"$percentile", OP_E | OP_A | OP_W},
    {"$pow", OP_E},
    {"$push", OP_A | OP_W},
    {"$radiansToDegrees", OP_E},
    {"$rand", OP_E},
    {"$range", OP_E},
    {"$rank", OP_W},
    {"$reduce", OP_E},
    {"$regexFind", OP_E},
    {"$regexFindAll", OP_E},
    {"$regexMatch", OP_E},
    {"$replaceAll", OP_E},
    {"$replaceOne", OP_E},
    {"$reverseArray", OP_E},
    {"$round", OP_E},
    {"$rtrim", OP_E},
    {"$sampleRate", OP_E},
    {"$second", OP_E},
    {"$setDifference", OP_E},
    {"$setEquals", OP_E},
    {"$setField", OP_E},
    {"$setIntersection", OP_E},
    {"$setIsSubset", OP_E},
    {"$setUnion", OP_E},
    {"$shift", OP_W},
    {"$sin", OP_E},
    {"$sinh", OP_E},
    {"$size", OP_E},
    {"$slice", OP_E},
    {"$sortArray", OP_E},
    {"$split", OP_E},
    {"$sqrt", OP_E},
    {"$stdDevPop", OP_E | OP_A | OP_W},
    {"$stdDevSamp", OP_E | OP_A | OP_W},
    {"$strLenBytes", OP_E},
    {"$strLenCP", OP_E},
    {"$strcasecmp", OP_E},
    {"$substr", OP_E},
    {"$substrBytes", OP_E},
    {"$substrCP", OP_E},
    {"$subtract", OP_E},
    {"$sum", OP_E | OP_A | OP_W},
    {"$switch", OP_E},
    {"$tan", OP_E},
    {"$tanh", OP_E},
    {"$toBool", OP_E},
    {"$toDate", OP_E},
    {"$toDecimal", OP_E},
    {"$toDouble", OP_E},
    {"$toHashedIndexKey", OP_E},
    {"$toInt", OP_E},
    {"$toLong", OP_E},
    {"$toLower", OP_E},
    {"$toObjectId", OP_E},
    {"$toString", OP_E},
    {"$toUpper", OP_E},
    {"$top", OP_A | OP_W},
    {"$topN", OP_A | OP_W},
    {"$trim", OP_E},
    {"$trunc", OP_E},
    {"$tsIncrement", OP_E},
    {"$tsSecond", OP_E},
    {"$type", OP_E},
    {"$unsetField", OP_E},
    {"$week", OP_E},
    {"$year", OP_E},
    {"$zip", OP_E},
};

/* System variables ($$NAME) an expression may read. */
static const char *const system_vars[] = {"ROOT",         "CURRENT", "REMOVE", "NOW",
                                          "CLUSTER_TIME", "DESCEND", "PRUNE",  "KEEP"};

/* Update operators and what their operands are. */
enum { UP_PATHS = 1, UP_SET, UP_RENAME, UP_PULL };
static const name_flags update_ops[] = {
    {"$set", UP_SET},       {"$setOnInsert", UP_SET}, {"$unset", UP_PATHS},
    {"$inc", UP_PATHS},     {"$mul", UP_PATHS},       {"$min", UP_PATHS},
    {"$max", UP_PATHS},     {"$rename", UP_RENAME},   {"$currentDate", UP_PATHS},
    {"$push", UP_PATHS},    {"$addToSet", UP_PATHS},  {"$pop", UP_PATHS},
    {"$pullAll", UP_PATHS}, {"$bit", UP_PATHS},       {"$pull", UP_PULL},
};

/* Aggregation stages: handler, where they may appear, in which modes. */
typedef enum {
    ST_MATCH,
    ST_EXPR,      /* the spec is an expression / a document of expressions */
    ST_SET,       /* $set / $addFields: fields -> expressions (update pipelines: paths) */
    ST_PROJECT,   /* fields -> 0/1/expressions (update pipelines: paths) */
    ST_UNSET,     /* a path or an array of paths */
    ST_REPLACE,   /* $replaceRoot / $replaceWith */
    ST_SORT,      /* a sort specification */
    ST_GROUP,     /* _id expression, accumulators */
    ST_BUCKET,    /* $bucket / $bucketAuto: groupBy expression, output accumulators */
    ST_WINDOW,    /* $setWindowFields */
    ST_FACET,     /* named sub-pipelines over the same input */
    ST_LOOKUP,    /* $lookup */
    ST_GRAPH,     /* $graphLookup */
    ST_UNION,     /* $unionWith */
    ST_GEO_NEAR,  /* $geoNear: first stage only */
    ST_OUT,       /* $out: last stage, database mode */
    ST_MERGE,     /* $merge: last stage */
    ST_DOCUMENTS, /* $documents: first stage of a collectionless pipeline */
    ST_CHANGE,    /* $changeStream: first stage, allow_change_streams */
    ST_STATS,     /* $collStats / $indexStats: first stage, database mode */
} stage_kind;

enum {
    SF_FIELD = 1,  /* allowed in field mode */
    SF_DB = 2,     /* allowed in database mode */
    SF_UPDATE = 4, /* allowed in pipeline-style updates */
};

typedef struct stage_spec {
    const char *name;
    uint32_t flags;
    stage_kind kind;
} stage_spec;

static const stage_spec stages[] = {
    {"$addFields", SF_FIELD | SF_DB | SF_UPDATE, ST_SET},
    {"$bucket", SF_FIELD | SF_DB, ST_BUCKET},
    {"$bucketAuto", SF_FIELD | SF_DB, ST_BUCKET},
    {"$changeStream", SF_FIELD | SF_DB, ST_CHANGE},
    {"$collStats", SF_DB, ST_STATS},
    {"$count", SF_FIELD | SF_DB, ST_EXPR},
    {"$densify", SF_FIELD | SF_DB, ST_EXPR},
    {"$documents", SF_FIELD | SF_DB, ST_DOCUMENTS},
    {"$facet", SF_FIELD | SF_DB, ST_FACET},
    {"$fill", SF_FIELD | SF_DB, ST_EXPR},
    {"$geoNear", SF_FIELD | SF_DB, ST_GEO_NEAR},
    {"$graphLookup", SF_FIELD | SF_DB, ST_GRAPH},
    {"$group", SF_FIELD | SF_DB, ST_GROUP},
    {"$indexStats", SF_DB, ST_STATS},
    {"$limit", SF_FIELD | SF_DB, ST_EXPR},
    {"$lookup", SF_FIELD | SF_DB, ST_LOOKUP},
    {"$match", SF_FIELD | SF_DB, ST_MATCH},
    {"$merge", SF_FIELD | SF_DB, ST_MERGE},
    {"$out", SF_DB, ST_OUT},
    {"$project", SF_FIELD | SF_DB | SF_UPDATE, ST_PROJECT},
    {"$redact", SF_FIELD | SF_DB, ST_EXPR},
    {"$replaceRoot", SF_FIELD | SF_DB | SF_UPDATE, ST_REPLACE},
    {"$replaceWith", SF_FIELD | SF_DB | SF_UPDATE, ST_REPLACE},
    {"$sample", SF_FIELD | SF_DB, ST_EXPR},
    {"$set", SF_FIELD | SF_DB | SF_UPDATE, ST_SET},
    {"$setWindowFields", SF_FIELD | SF_DB, ST_WINDOW},
    {"$skip", SF_FIELD | SF_DB, ST_EXPR},
    {"$sort", SF_FIELD | SF_DB, ST_SORT},
    {"$sortByCount", SF_FIELD | SF_DB, ST_EXPR},
    {"$unionWith", SF_FIELD | SF_DB, ST_UNION},
    {"$unset", SF_FIELD | SF_DB | SF_UPDATE, ST_UNSET},
    {"$unwind", SF_FIELD | SF_DB, ST_EXPR},
};

/* ---- the command table (data) ------------------------------------------------------------ */

/* What a command field carries, and so what the scoper does with it. */
typedef enum {
    R_ANY,           /* copied: options the server validates (limit, hint, collation...) */
    R_COLL,          /* a collection name of $db */
    R_ONE,           /* the command field of a command without a target (value ignored) */
    R_AGG_NAME,      /* aggregate: a collection name or 1 (collectionless) */
    R_CURSOR_ID,     /* getMore: the cursor id */
    R_CURSOR_IDS,    /* killCursors: cursors */
    R_EXPLAIN,       /* explain: the inner command */
    R_VERBOSITY,     /* explain verbosity */
    R_LSIDS,         /* endSessions: [{id}] */
    R_NS,            /* renameCollection / to: "db.collection" */
    R_FILTER,        /* a query filter, scoped in field mode (added when absent) */
    R_FILTER_PLAIN,  /* a query filter, checked only (listCollections, validators) */
    R_PIPELINE,      /* aggregate pipeline */
    R_VIEW_PIPE,     /* create: a view's pipeline */
    R_PROJECTION,    /* find projection / findAndModify fields */
    R_SORT,          /* a sort specification */
    R_LET,           /* let: variables -> expressions */
    R_DOCS,          /* insert documents (array or kind 1) */
    R_UPDATES,       /* update statements (array or kind 1) */
    R_DELETES,       /* delete statements (array or kind 1) */
    R_FAM_UPDATE,    /* findAndModify update: operators, replacement or pipeline */
    R_ARRAY_FILTERS, /* arrayFilters: filters on identifiers */
    R_INDEXES,       /* createIndexes specifications */
    R_FALSE,         /* allowed only when false (bypassDocumentValidation) */
    R_DENY,          /* known, refused (listDatabases filter) */
    R_DB,            /* $db */
    R_LSID,          /* lsid */
    R_TXN,           /* txnNumber */
} role;

enum { M_FIELD = 1, M_DB = 2, M_BOTH = 3 };

typedef struct field_spec {
    const char *name;
    uint8_t role;
    uint8_t modes; /* M_FIELD | M_DB: where the field is allowed */
} field_spec;

enum {
    C_FIELD = 1 << 0,      /* allowed in field mode */
    C_DB = 1 << 1,         /* allowed in database mode */
    C_ADMIN = 1 << 2,      /* may run on admin (and config/local are refused as ever) */
    C_ADMIN_ONLY = 1 << 3, /* must run on admin */
    C_NO_NS = 1 << 4,      /* names no data: $db is checked, never mapped */
    C_DROP = 1 << 5,       /* needs allow_drop */
    C_INNER = 1 << 6,      /* may be explained */
    C_HANDSHAKE = 1 << 7,  /* hello / isMaster: the session owns the fields */
};

#define MAX_FIELDS 40
typedef struct cmd_spec {
    const char *name;
    tg_mongo_cmd cmd;
    uint32_t flags;
    tg_mongo_reply_kind reply;
    field_spec fields[MAX_FIELDS]; /* fields[0] is the command field; ends at a NULL name */
} cmd_spec;

#define BOTH (C_FIELD | C_DB)
#define NS_ONLY (C_NO_NS | C_ADMIN)

/* Fields allowed on every command (MongoDB's generic arguments a client may send). */
static const field_spec generic_fields[] = {
    {"$db", R_DB, M_BOTH},
    {"lsid", R_LSID, M_BOTH},
    {"txnNumber", R_TXN, M_BOTH},
    {"autocommit", R_ANY, M_BOTH},
    {"startTransaction", R_ANY, M_BOTH},
    {"maxTimeMS", R_ANY, M_BOTH},
    {"readConcern", R_ANY, M_BOTH},
    {"writeConcern", R_ANY, M_BOTH},
    {"comment", R_ANY, M_BOTH},
    {"$readPreference", R_ANY, M_BOTH},
    {"$clusterTime", R_ANY, M_BOTH},
    {"apiVersion", R_ANY, M_BOTH},
    {"apiStrict", R_ANY, M_BOTH},
    {"apiDeprecationErrors", R_ANY, M_BOTH},
};
/* Of those, the ones an explained inner command may carry. */
static bool inner_generic_ok(const char *name)
{
    return !strcmp(name, "comment") || !strcmp(name, "maxTimeMS") || !strcmp(name, "readConcern") ||
           !strcmp(name, "writeConcern");
}

static const cmd_spec commands[] = {
    {"abortTransaction",
     TG_MONGO_CMD_ABORT_TRANSACTION,
     BOTH | NS_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"abortTransaction", R_ONE, M_BOTH}, {"recoveryToken", R_ANY, M_BOTH}}},
    {"aggregate",
     TG_MONGO_CMD_AGGREGATE,
     BOTH | C_INNER,
     TG_MONGO_REPLY_CURSOR,
     {{"aggregate", R_AGG_NAME, M_BOTH},
      {"pipeline", R_PIPELINE, M_BOTH},
      {"cursor", R_ANY, M_BOTH},
      {"explain", R_ANY, M_BOTH},
      {"allowDiskUse", R_ANY, M_BOTH},
      {"bypassDocumentValidation", R_FALSE, M_BOTH},
      {"collation", R_ANY, M_BOTH},
      {"hint", R_ANY, M_BOTH},
      {"let", R_LET, M_BOTH}}},
    {"buildInfo",
     TG_MONGO_CMD_BUILD_INFO,
     BOTH | NS_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"buildInfo", R_ONE, M_BOTH}}},
    {"buildinfo",
     TG_MONGO_CMD_BUILD_INFO,
     BOTH | NS_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"buildinfo", R_ONE, M_BOTH}}},
    {"collStats",
     TG_MONGO_CMD_COLL_STATS,
     C_DB,
     TG_MONGO_REPLY_NONE,
     {{"collStats", R_COLL, M_DB}, {"scale", R_ANY, M_DB}}},
    {"commitTransaction",
     TG_MONGO_CMD_COMMIT_TRANSACTION,
     BOTH | NS_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"commitTransaction", R_ONE, M_BOTH}, {"recoveryToken", R_ANY, M_BOTH}}},
    {"count",
     TG_MONGO_CMD_COUNT,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"count", R_COLL, M_BOTH},
      {"query", R_FILTER, M_BOTH},
      {"limit", R_ANY, M_BOTH},
      {"skip", R_ANY, M_BOTH},
      {"hint", R_ANY, M_BOTH},
      {"collation", R_ANY, M_BOTH}}},
    {"create",
     TG_MONGO_CMD_CREATE,
     BOTH,
     TG_MONGO_REPLY_NONE,
     {{"create", R_COLL, M_BOTH},
      {"validator", R_FILTER_PLAIN, M_BOTH},
      {"validationLevel", R_ANY, M_BOTH},
      {"validationAction", R_ANY, M_BOTH},
      {"collation", R_ANY, M_DB}, /* a default collation would bend unique indexes */
      {"capped", R_ANY, M_DB},
      {"size", R_ANY, M_DB},
      {"max", R_ANY, M_DB},
      {"viewOn", R_COLL, M_DB},
      {"pipeline", R_VIEW_PIPE, M_DB},
      {"timeseries", R_ANY, M_DB},
      {"expireAfterSeconds", R_ANY, M_DB},
      {"clusteredIndex", R_ANY, M_DB},
      {"changeStreamPreAndPostImages", R_ANY, M_DB},
      {"indexOptionDefaults", R_ANY, M_DB}}},
    {"createIndexes",
     TG_MONGO_CMD_CREATE_INDEXES,
     BOTH,
     TG_MONGO_REPLY_NONE,
     {{"createIndexes", R_COLL, M_BOTH},
      {"indexes", R_INDEXES, M_BOTH},
      {"commitQuorum", R_ANY, M_BOTH}}},
    {"dbStats",
     TG_MONGO_CMD_DB_STATS,
     C_DB,
     TG_MONGO_REPLY_NONE,
     {{"dbStats", R_ONE, M_DB}, {"scale", R_ANY, M_DB}, {"freeStorage", R_ANY, M_DB}}},
    {"delete",
     TG_MONGO_CMD_DELETE,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"delete", R_COLL, M_BOTH},
      {"deletes", R_DELETES, M_BOTH},
      {"ordered", R_ANY, M_BOTH},
      {"let", R_LET, M_BOTH}}},
    {"distinct",
     TG_MONGO_CMD_DISTINCT,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"distinct", R_COLL, M_BOTH},
      {"key", R_ANY, M_BOTH},
      {"query", R_FILTER, M_BOTH},
      {"collation", R_ANY, M_BOTH},
      {"hint", R_ANY, M_BOTH}}},
    {"drop", TG_MONGO_CMD_DROP, C_DB | C_DROP, TG_MONGO_REPLY_NONE, {{"drop", R_COLL, M_DB}}},
    {"dropDatabase",
     TG_MONGO_CMD_DROP_DATABASE,
     C_DB | C_DROP,
     TG_MONGO_REPLY_NONE,
     {{"dropDatabase", R_ONE, M_DB}}},
    {"dropIndexes",
     TG_MONGO_CMD_DROP_INDEXES,
     C_DB,
     TG_MONGO_REPLY_NONE,
     {{"dropIndexes", R_COLL, M_DB}, {"index", R_ANY, M_DB}}},
    {"endSessions",
     TG_MONGO_CMD_END_SESSIONS,
     BOTH | NS_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"endSessions", R_LSIDS, M_BOTH}}},
    {"explain",
     TG_MONGO_CMD_EXPLAIN,
     BOTH,
     TG_MONGO_REPLY_NONE,
     {{"explain", R_EXPLAIN, M_BOTH}, {"verbosity", R_VERBOSITY, M_BOTH}}},
    {"find",
     TG_MONGO_CMD_FIND,
     BOTH | C_INNER,
     TG_MONGO_REPLY_CURSOR,
     {{"find", R_COLL, M_BOTH},
      {"filter", R_FILTER, M_BOTH},
      {"sort", R_SORT, M_BOTH},
      {"projection", R_PROJECTION, M_BOTH},
      {"hint", R_ANY, M_BOTH},
      {"skip", R_ANY, M_BOTH},
      {"limit", R_ANY, M_BOTH},
      {"batchSize", R_ANY, M_BOTH},
      {"singleBatch", R_ANY, M_BOTH},
      {"max", R_ANY, M_BOTH},
      {"min", R_ANY, M_BOTH},
      {"returnKey", R_ANY, M_BOTH},
      {"showRecordId", R_ANY, M_BOTH},
      {"tailable", R_ANY, M_BOTH},
      {"awaitData", R_ANY, M_BOTH},
      {"noCursorTimeout", R_ANY, M_BOTH},
      {"allowPartialResults", R_ANY, M_BOTH},
      {"collation", R_ANY, M_BOTH},
      {"allowDiskUse", R_ANY, M_BOTH},
      {"let", R_LET, M_BOTH}}},
    {"findAndModify",
     TG_MONGO_CMD_FIND_AND_MODIFY,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"findAndModify", R_COLL, M_BOTH},
      {"query", R_FILTER, M_BOTH},
      {"sort", R_SORT, M_BOTH},
      {"remove", R_ANY, M_BOTH},
      {"update", R_FAM_UPDATE, M_BOTH},
      {"new", R_ANY, M_BOTH},
      {"fields", R_PROJECTION, M_BOTH},
      {"upsert", R_ANY, M_BOTH},
      {"bypassDocumentValidation", R_FALSE, M_BOTH},
      {"collation", R_ANY, M_BOTH},
      {"arrayFilters", R_ARRAY_FILTERS, M_BOTH},
      {"hint", R_ANY, M_BOTH},
      {"let", R_LET, M_BOTH}}},
    {"findandmodify",
     TG_MONGO_CMD_FIND_AND_MODIFY,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"findandmodify", R_COLL, M_BOTH},
      {"query", R_FILTER, M_BOTH},
      {"sort", R_SORT, M_BOTH},
      {"remove", R_ANY, M_BOTH},
      {"update", R_FAM_UPDATE, M_BOTH},
      {"new", R_ANY, M_BOTH},
      {"fields", R_PROJECTION, M_BOTH},
      {"upsert", R_ANY, M_BOTH},
      {"bypassDocumentValidation", R_FALSE, M_BOTH},
      {"collation", R_ANY, M_BOTH},
      {"arrayFilters", R_ARRAY_FILTERS, M_BOTH},
      {"hint", R_ANY, M_BOTH},
      {"let", R_LET, M_BOTH}}},
    {"getMore",
     TG_MONGO_CMD_GET_MORE,
     BOTH,
     TG_MONGO_REPLY_CURSOR,
     {{"getMore", R_CURSOR_ID, M_BOTH},
      {"collection", R_COLL, M_BOTH},
      {"batchSize", R_ANY, M_BOTH}}},
    {"hello",
     TG_MONGO_CMD_HELLO,
     BOTH | NS_ONLY | C_HANDSHAKE,
     TG_MONGO_REPLY_NONE,
     {{"hello", R_ONE, M_BOTH},
      {"helloOk", R_ANY, M_BOTH},
      {"client", R_ANY, M_BOTH},
      {"compression", R_ANY, M_BOTH},
      {"loadBalanced", R_ANY, M_BOTH},
      {"saslSupportedMechs", R_DENY, M_BOTH},      /* the session answers auth */
      {"speculativeAuthenticate", R_DENY, M_BOTH}, /* never on the backend connection */
      {"topologyVersion", R_ANY, M_BOTH},
      {"maxAwaitTimeMS", R_ANY, M_BOTH}}},
    {"insert",
     TG_MONGO_CMD_INSERT,
     BOTH,
     TG_MONGO_REPLY_NONE,
     {{"insert", R_COLL, M_BOTH},
      {"documents", R_DOCS, M_BOTH},
      {"ordered", R_ANY, M_BOTH},
      {"bypassDocumentValidation", R_FALSE, M_BOTH}}},
    {"isMaster",
     TG_MONGO_CMD_IS_MASTER,
     BOTH | NS_ONLY | C_HANDSHAKE,
     TG_MONGO_REPLY_NONE,
     {{"isMaster", R_ONE, M_BOTH},
      {"helloOk", R_ANY, M_BOTH},
      {"client", R_ANY, M_BOTH},
      {"compression", R_ANY, M_BOTH},
      {"loadBalanced", R_ANY, M_BOTH},
      {"saslSupportedMechs", R_DENY, M_BOTH},      /* the session answers auth */
      {"speculativeAuthenticate", R_DENY, M_BOTH}, /* never on the backend connection */
      {"topologyVersion", R_ANY, M_BOTH},
      {"maxAwaitTimeMS", R_ANY, M_BOTH}}},
    {"ismaster",
     TG_MONGO_CMD_IS_MASTER,
     BOTH | NS_ONLY | C_HANDSHAKE,
     TG_MONGO_REPLY_NONE,
     {{"ismaster", R_ONE, M_BOTH},
      {"helloOk", R_ANY, M_BOTH},
      {"client", R_ANY, M_BOTH},
      {"compression", R_ANY, M_BOTH},
      {"loadBalanced", R_ANY, M_BOTH},
      {"saslSupportedMechs", R_DENY, M_BOTH},      /* the session answers auth */
      {"speculativeAuthenticate", R_DENY, M_BOTH}, /* never on the backend connection */
      {"topologyVersion", R_ANY, M_BOTH},
      {"maxAwaitTimeMS", R_ANY, M_BOTH}}},
    {"killCursors",
     TG_MONGO_CMD_KILL_CURSORS,
     BOTH,
     TG_MONGO_REPLY_NONE,
     {{"killCursors", R_COLL, M_BOTH}, {"cursors", R_CURSOR_IDS, M_BOTH}}},
    {"listCollections",
     TG_MONGO_CMD_LIST_COLLECTIONS,
     BOTH,
     TG_MONGO_REPLY_CURSOR,
     {{"listCollections", R_ONE, M_BOTH},
      {"filter", R_FILTER_PLAIN, M_BOTH},
      {"nameOnly", R_ANY, M_BOTH},
      {"authorizedCollections", R_ANY, M_BOTH},
      {"cursor", R_ANY, M_BOTH}}},
    {"listDatabases",
     TG_MONGO_CMD_LIST_DATABASES,
     C_DB | C_ADMIN | C_ADMIN_ONLY,
     TG_MONGO_REPLY_LIST_DATABASES,
     {{"listDatabases", R_ONE, M_DB},
      {"nameOnly", R_ANY, M_DB},
      {"authorizedDatabases", R_ANY, M_DB},
      {"filter", R_DENY, M_DB}}},
    {"listIndexes",
     TG_MONGO_CMD_LIST_INDEXES,
     BOTH,
     TG_MONGO_REPLY_CURSOR,
     {{"listIndexes", R_COLL, M_BOTH}, {"cursor", R_ANY, M_BOTH}}},
    {"ping", TG_MONGO_CMD_PING, BOTH | NS_ONLY, TG_MONGO_REPLY_NONE, {{"ping", R_ONE, M_BOTH}}},
    {"renameCollection",
     TG_MONGO_CMD_RENAME_COLLECTION,
     C_DB | C_DROP | C_ADMIN | C_ADMIN_ONLY,
     TG_MONGO_REPLY_NONE,
     {{"renameCollection", R_NS, M_DB}, {"to", R_NS, M_DB}, {"dropTarget", R_ANY, M_DB}}},
    {"update",
     TG_MONGO_CMD_UPDATE,
     BOTH | C_INNER,
     TG_MONGO_REPLY_NONE,
     {{"update", R_COLL, M_BOTH},
      {"updates", R_UPDATES, M_BOTH},
      {"ordered", R_ANY, M_BOTH},
      {"bypassDocumentValidation", R_FALSE, M_BOTH},
      {"let", R_LET, M_BOTH}}},
};

/* Fields of one update statement (update command), delete statement, index spec. */
enum { U_Q, U_U, U_C, U_UPSERT, U_MULTI, U_ARRAY_FILTERS, U_COLLATION, U_HINT, U_SORT };
static const char *const update_stmt_fields[] = {
    "q", "u", "c", "upsert", "multi", "arrayFilters", "collation", "hint", "sort"};
enum { D_Q, D_LIMIT, D_COLLATION, D_HINT };
static const char *const delete_stmt_fields[] = {"q", "limit", "collation", "hint"};
enum {
    IX_KEY,
    IX_NAME,
    IX_UNIQUE,
    IX_SPARSE,
    IX_PARTIAL,
    IX_COLLATION,
    IX_HIDDEN,
    IX_BACKGROUND,
    IX_WEIGHTS,
    IX_DEFAULT_LANGUAGE,
    IX_LANGUAGE_OVERRIDE,
    IX_TEXT_VERSION,
    IX_2DSPHERE_VERSION,
    IX_BITS,
    IX_MIN,
    IX_MAX,
    IX_WILDCARD,
    IX_V,
    IX_TTL,
};
static const char *const index_fields[] = {"key",
                                           "name",
                                           "unique",
                                           "sparse",
                                           "partialFilterExpression",
                                           "collation",
                                           "hidden",
                                           "background",
                                           "weights",
                                           "default_language",
                                           "language_override",
                                           "textIndexVersion",
                                           "2dsphereIndexVersion",
                                           "bits",
                                           "min",
                                           "max",
                                           "wildcardProjection",
                                           "v",
                                           "expireAfterSeconds"};

/* ---- the scoper -------------------------------------------------------------------------- */

/* One command's fields (its own, then the generic ones it does not redefine), sorted. */
typedef struct cmd_index {
    const cmd_spec *spec;
    uint32_t nfields;
    field_spec fields[MAX_FIELDS + COUNT(generic_fields)];
} cmd_index;

struct tg_mongo_scope {
    tg_mongo_scope_isolation isolation;
    bool allow_drop, allow_change_streams;
    /* the tenant field and its components */
    char *tenant_field;
    size_t tenant_field_len;
    uint32_t ncomp;
    const char *comp[PATH_MAX_COMPONENTS];
    size_t comp_len[PATH_MAX_COMPONENTS];
    char *comp_buf;
    /* database_template = pre {A} mid {B} suf, A/B = {db}/{tenant} */
    char *tmpl;
    const char *pre, *mid, *suf;
    size_t pre_len, mid_len, suf_len;
    bool db_first;
    /* sorted tables */
    name_flags *field_ops, *ops, *upd_ops;
    stage_spec *stages;
    cmd_index *cmds; /* sorted by name */
    uint32_t ncmds;
};

struct tg_mongo_tenant {
    const tg_mongo_scope *s;
    char tenant[TENANT_MAX + 1];
    size_t tenant_len;
    char guard[TENANT_MAX + 4]; /* "^T\\z": the tenant, exactly, whatever the collation */
    /* prebuilt, appended whole: {tf: {$eq: T, $regex: /^T\\z/}} and {$match: <that>} */
    uint8_t clause[TENANT_DOC_MAX], match[TENANT_DOC_MAX];
    uint32_t clause_len, match_len;
    EVP_MD_CTX *inner, *outer, *work; /* HMAC-SHA256 with the key's pads absorbed */
    struct {
        uint8_t client[16], backend[16];
    } lsids[LSID_CACHE];
    uint32_t nlsids, next_lsid;
};

static int field_spec_cmp(const void *a, const void *b)
{
    return strcmp(((const field_spec *)a)->name, ((const field_spec *)b)->name);
}

static int cmd_index_cmp(const void *a, const void *b)
{
    return strcmp(((const cmd_index *)a)->spec->name, ((const cmd_index *)b)->spec->name);
}

static int stage_cmp(const void *a, const void *b)
{
    return strcmp(((const stage_spec *)a)->name, ((const stage_spec *)b)->name);
}

static void *dup_sorted(const void *src, size_t n, size_t size,
                        int (*cmp)(const void *, const void *))
{
    void *p = malloc(n * size);
    if (p) {
        memcpy(p, src, n * size);
        qsort(p, n, size, cmp);
    }
    return p;
}

/* A character MongoDB allows in a database name (on every platform). */
static bool db_char_ok(unsigned char ch)
{
    switch (ch) {
    case '/':
    case '\\':
    case '.':
    case ' ':
    case '"':
    case '$':
    case '*':
    case '<':
    case '>':
    case ':':
    case '|':
    case '?':
    case 0x7f:
        return false;
    default:
        return ch > 0x20;
    }
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Splits database_template; 0 or TG_ECONFIG with a message. */
static int parse_template(tg_mongo_scope *s, const char *t, char *err, size_t errlen)
{
    const char *db = strstr(t, "{db}"), *tn = strstr(t, "{tenant}");
    if (!db || !tn || strstr(db + 1, "{db}") || strstr(tn + 1, "{tenant}")) {
        set_err(err, errlen, "database_template must contain {db} and {tenant} exactly once each");
        return TG_ECONFIG;
    }
    s->tmpl = strdup(t);
    if (!s->tmpl)
        return TG_ENOMEM;
    char *c = s->tmpl;
    char *a = c + (db < tn ? db - t : tn - t), *b = c + (db < tn ? tn - t : db - t);
    size_t alen = db < tn ? 4 : 8, blen = db < tn ? 8 : 4;
    s->db_first = db < tn;
    s->pre = c;
    s->pre_len = (size_t)(a - c);
    s->mid = a + alen;
    s->mid_len = (size_t)(b - (a + alen));
    s->suf = b + blen;
    s->suf_len = strlen(s->suf);
    if (s->mid_len == 0) {
        set_err(
            err, errlen,
            "database_template needs a separator between {db} and {tenant} (e.g. {db}_{tenant})");
        return TG_ECONFIG;
    }
    const char *parts[3] = {s->pre, s->mid, s->suf};
    size_t lens[3] = {s->pre_len, s->mid_len, s->suf_len};
    for (int i = 0; i < 3; i++) {
        for (size_t j = 0; j < lens[i]; j++) {
            if (!db_char_ok((unsigned char)parts[i][j]) || parts[i][j] == '{' ||
                parts[i][j] == '}') {
                set_err(err, errlen,
                        "database_template holds a character a database name cannot hold");
                return TG_ECONFIG;
            }
        }
    }
    return 0;
}

/* Splits the tenant field into components; 0 or TG_ECONFIG. */
static int parse_tenant_field(tg_mongo_scope *s, const char *f, char *err, size_t errlen)
{
    size_t n = strlen(f);
    s->tenant_field = strdup(f);
    s->comp_buf = strdup(f);
    if (!s->tenant_field || !s->comp_buf)
        return TG_ENOMEM;
    s->tenant_field_len = n;
    bool ok = n > 0 && n <= 255 && f[0] != '$';
    char *p = s->comp_buf;
    s->ncomp = 0;
    while (ok) {
        char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || p[0] == '$' || s->ncomp == PATH_MAX_COMPONENTS) {
            ok = false;
            break;
        }
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == '$')
                ok = false;
        s->comp[s->ncomp] = p;
        s->comp_len[s->ncomp] = len;
        s->ncomp++;
        if (!dot)
            break;
        *dot = '\0';
        p = dot + 1;
    }
    if (!ok) {
        set_err(err, errlen,
                "tenant_field must be a field name or a dotted path such as tenant_id");
        return TG_ECONFIG;
    }
    return 0;
}

int tg_mongo_scope_new(const tg_mongo_scope_config *cfg, tg_mongo_scope **out, char *err,
                       size_t errlen)
{
    set_err(err, errlen, "");
    tg_mongo_scope *s = calloc(1, sizeof(*s));
    if (!s)
        return TG_ENOMEM;
    int rc = 0;
    s->isolation = cfg->isolation;
    s->allow_drop = cfg->allow_drop;
    s->allow_change_streams = cfg->allow_change_streams;
    if (cfg->isolation != TG_MONGO_SCOPE_FIELD && cfg->isolation != TG_MONGO_SCOPE_DATABASE) {
        set_err(err, errlen, "unknown isolation");
        rc = TG_ECONFIG;
        goto fail;
    }
    rc = parse_tenant_field(s, cfg->tenant_field ? cfg->tenant_field : "tenant_id", err, errlen);
    if (rc)
        goto fail;
    if (cfg->isolation == TG_MONGO_SCOPE_DATABASE) {
        rc = parse_template(s, cfg->database_template ? cfg->database_template : "{db}_{tenant}",
                            err, errlen);
        if (rc)
            goto fail;
    }
    rc = TG_ENOMEM;
    s->field_ops =
        dup_sorted(query_field_ops, COUNT(query_field_ops), sizeof(name_flags), name_flags_cmp);
    s->ops = dup_sorted(expr_ops, COUNT(expr_ops), sizeof(name_flags), name_flags_cmp);
    s->upd_ops = dup_sorted(update_ops, COUNT(update_ops), sizeof(name_flags), name_flags_cmp);
    s->stages = dup_sorted(stages, COUNT(stages), sizeof(stage_spec), stage_cmp);
    s->cmds = calloc(COUNT(commands), sizeof(cmd_index));
    if (!s->field_ops || !s->ops || !s->upd_ops || !s->stages || !s->cmds)
        goto fail;
    s->ncmds = COUNT(commands);
    for (uint32_t i = 0; i < s->ncmds; i++) {
        cmd_index *ci = &s->cmds[i];
        ci->spec = &commands[i];
        uint32_t n = 0;
        for (; n < MAX_FIELDS && ci->spec->fields[n].name; n++)
            ci->fields[n] = ci->spec->fields[n];
        uint32_t own = n;
        for (size_t g = 0; g < COUNT(generic_fields); g++) {
            bool dup = false;
            for (uint32_t k = 0; k < own; k++)
                dup = dup || !strcmp(ci->fields[k].name, generic_fields[g].name);
            if (!dup)
                ci->fields[n++] = generic_fields[g];
        }
        ci->nfields = n;
        qsort(ci->fields, n, sizeof(field_spec), field_spec_cmp);
    }
    qsort(s->cmds, s->ncmds, sizeof(cmd_index), cmd_index_cmp);
    *out = s;
    return 0;
fail:
    tg_mongo_scope_free(s);
    return rc;
}

void tg_mongo_scope_free(tg_mongo_scope *s)
{
    if (!s)
        return;
    free(s->tenant_field);
    free(s->comp_buf);
    free(s->tmpl);
    free(s->field_ops);
    free(s->ops);
    free(s->upd_ops);
    free(s->stages);
    free(s->cmds);
    free(s);
}

const char *tg_mongo_cmd_name(tg_mongo_cmd cmd)
{
    static const char *const names[] = {
#define TG_MONGO_CMD_NAME(n, s) s,
        TG_MONGO_CMD_MAP(TG_MONGO_CMD_NAME)
#undef TG_MONGO_CMD_NAME
    };
    return (unsigned)cmd < COUNT(names) ? names[cmd] : "";
}

/* ---- tenants, lsids, databases ----------------------------------------------------------- */

static bool tenant_valid(const char *t, size_t n)
{
    if (n < 1 || n > TENANT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || (ch != '_' && ch != '-')))
            return false;
    }
    return true;
}

tg_mongo_tenant *tg_mongo_tenant_new(const tg_mongo_scope *s, const char *tenant,
                                     const uint8_t *key, size_t key_len)
{
    size_t n = tenant ? strlen(tenant) : 0;
    if (!s || !tenant_valid(tenant, n) || !key || key_len < TG_MONGO_LSID_KEY_MIN)
        return NULL;
    tg_mongo_tenant *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->s = s;
    memcpy(t->tenant, tenant, n);
    t->tenant_len = n;
    snprintf(t->guard, sizeof(t->guard), "^%s\\z", tenant); /* no regex metacharacters */
    {
        bson_t cl = BSON_INITIALIZER, op, m = BSON_INITIALIZER;
        bool built =
            bson_append_document_begin(&cl, s->tenant_field, (int)s->tenant_field_len, &op) &&
            bson_append_utf8(&op, "$eq", 3, t->tenant, (int)n) &&
            bson_append_regex(&op, "$regex", 6, t->guard, "") &&
            bson_append_document_end(&cl, &op) && bson_append_document(&m, "$match", 6, &cl) &&
            cl.len <= TENANT_DOC_MAX && m.len <= TENANT_DOC_MAX;
        if (built) {
            memcpy(t->clause, bson_get_data(&cl), cl.len);
            t->clause_len = cl.len;
            memcpy(t->match, bson_get_data(&m), m.len);
            t->match_len = m.len;
        }
        bson_destroy(&cl);
        bson_destroy(&m);
        if (!built) {
            free(t);
            return NULL;
        }
    }
    /* HMAC (RFC 2104): keys longer than a block are hashed first; the inner and
     * outer pads are absorbed once, each mapping then costs two context copies. */
    uint8_t k[64] = {0}, pad[64];
    unsigned int klen = 0;
    t->inner = EVP_MD_CTX_new();
    t->outer = EVP_MD_CTX_new();
    t->work = EVP_MD_CTX_new();
    bool ok = t->inner && t->outer && t->work;
    if (ok && key_len > sizeof(k))
        ok = EVP_Digest(key, key_len, k, &klen, EVP_sha256(), NULL) == 1;
    else if (ok)
        memcpy(k, key, key_len);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && EVP_DigestInit_ex(t->inner, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(t->inner, pad, 64) == 1;
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex(t->outer, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(t->outer, pad, 64) == 1;
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    if (!ok) {
        tg_mongo_tenant_free(t);
        return NULL;
    }
    return t;
}

void tg_mongo_tenant_free(tg_mongo_tenant *t)
{
    if (!t)
        return;
    EVP_MD_CTX_free(t->inner);
    EVP_MD_CTX_free(t->outer);
    EVP_MD_CTX_free(t->work);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

int tg_mongo_tenant_map_lsid(tg_mongo_tenant *t, const uint8_t client[16], uint8_t backend[16])
{
    for (uint32_t i = 0; i < t->nlsids; i++) {
        if (!memcmp(t->lsids[i].client, client, 16)) {
            memcpy(backend, t->lsids[i].backend, 16);
            return 0;
        }
    }
    uint8_t h[EVP_MAX_MD_SIZE], len = (uint8_t)t->tenant_len;
    unsigned int hl = 0;
    bool ok =
        EVP_MD_CTX_copy_ex(t->work, t->inner) == 1 && EVP_DigestUpdate(t->work, &len, 1) == 1 &&
        EVP_DigestUpdate(t->work, t->tenant, t->tenant_len) == 1 &&
        EVP_DigestUpdate(t->work, client, 16) == 1 && EVP_DigestFinal_ex(t->work, h, &hl) == 1 &&
        EVP_MD_CTX_copy_ex(t->work, t->outer) == 1 && EVP_DigestUpdate(t->work, h, hl) == 1 &&
        EVP_DigestFinal_ex(t->work, h, &hl) == 1;
    if (!ok)
        return TG_ENOMEM; /* SHA-256 on memory fails only when a context copy cannot allocate */
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x40);
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
    memcpy(backend, h, 16);
    uint32_t slot = t->next_lsid;
    memcpy(t->lsids[slot].client, client, 16);
    memcpy(t->lsids[slot].backend, backend, 16);
    t->next_lsid = (slot + 1) % LSID_CACHE;
    if (t->nlsids < LSID_CACHE)
        t->nlsids++;
    return 0;
}

bool tg_mongo_tenant_unmap_lsid(const tg_mongo_tenant *t, const uint8_t backend[16],
                                uint8_t client[16])
{
    for (uint32_t i = 0; i < t->nlsids; i++) {
        if (!memcmp(t->lsids[i].backend, backend, 16)) {
            memcpy(client, t->lsids[i].client, 16);
            return true;
        }
    }
    return false;
}

static bool ascii_ieq(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b);
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* admin, config, local (any case: MongoDB refuses names differing in case only). */
static bool db_reserved(const char *db, size_t n)
{
    return ascii_ieq(db, n, "admin") || ascii_ieq(db, n, "config") || ascii_ieq(db, n, "local");
}

/* A legal database name: 1..63 bytes MongoDB accepts on every platform. */
static bool db_legal(const char *db, size_t n)
{
    if (n < 1 || n > TG_MONGO_DB_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!db_char_ok((unsigned char)db[i]))
            return false;
    return true;
}

/*
 * How many (db, tenant) pairs the template maps to name (n bytes) — legal,
 * unreserved client databases and valid tenants only. The first is returned.
 */
static int template_decode(const tg_mongo_scope *s, const char *name, size_t n, const char **db,
                           size_t *db_len, const char **tn, size_t *tn_len)
{
    if (n < s->pre_len + s->mid_len + s->suf_len || memcmp(name, s->pre, s->pre_len) != 0 ||
        memcmp(name + n - s->suf_len, s->suf, s->suf_len) != 0)
        return 0;
    const char *x = name + s->pre_len;
    size_t xn = n - s->pre_len - s->suf_len;
    int found = 0;
    for (size_t i = 0; i + s->mid_len <= xn; i++) {
        if (memcmp(x + i, s->mid, s->mid_len) != 0)
            continue;
        const char *l = x, *r = x + i + s->mid_len;
        size_t ln = i, rn = xn - i - s->mid_len;
        const char *d = s->db_first ? l : r, *t = s->db_first ? r : l;
        size_t dn = s->db_first ? ln : rn, tnn = s->db_first ? rn : ln;
        if (!tenant_valid(t, tnn) || !db_legal(d, dn) || db_reserved(d, dn))
            continue;
        if (found++ == 0) {
            *db = d;
            *db_len = dn;
            *tn = t;
            *tn_len = tnn;
        }
    }
    return found;
}

const char *tg_mongo_tenant_map_db(const tg_mongo_tenant *t, const char *db, size_t db_len,
                                   char out[TG_MONGO_DB_MAX + 1])
{
    const tg_mongo_scope *s = t->s;
    if (!db_legal(db, db_len))
        return "illegal database name";
    if (db_reserved(db, db_len))
        return "database is reserved";
    const char *a = s->db_first ? db : t->tenant, *b = s->db_first ? t->tenant : db;
    size_t an = s->db_first ? db_len : t->tenant_len, bn = s->db_first ? t->tenant_len : db_len;
    size_t n = s->pre_len + an + s->mid_len + bn + s->suf_len;
    if (n > TG_MONGO_DB_MAX)
        return "database name too long once mapped to the tenant";
    char *p = out;
    memcpy(p, s->pre, s->pre_len);
    p += s->pre_len;
    memcpy(p, a, an);
    p += an;
    memcpy(p, s->mid, s->mid_len);
    p += s->mid_len;
    memcpy(p, b, bn);
    p += bn;
    memcpy(p, s->suf, s->suf_len);
    p += s->suf_len;
    *p = '\0';
    const char *d, *tn;
    size_t dn, tnn;
    if (template_decode(s, out, n, &d, &dn, &tn, &tnn) != 1)
        return "database name is ambiguous under database_template";
    return NULL;
}

bool tg_mongo_tenant_unmap_db(const tg_mongo_tenant *t, const char *backend, size_t len,
                              char out[TG_MONGO_DB_MAX + 1])
{
    const char *d, *tn;
    size_t dn, tnn;
    if (!t->s->tmpl || len > TG_MONGO_DB_MAX ||
        template_decode(t->s, backend, len, &d, &dn, &tn, &tnn) != 1)
        return false;
    if (tnn != t->tenant_len || memcmp(tn, t->tenant, tnn) != 0)
        return false;
    memcpy(out, d, dn);
    out[dn] = '\0';
    return true;
}

/* ---- structural validation --------------------------------------------------------------- */

/*
 * One document, element by element, with exactly the checks libbson's
 * iterator makes (bson-iter.c, _bson_iter_next_internal), so that every
 * document accepted here is iterated by libbson to its end without an error;
 * plus what the iterator leaves to its callers: embedded documents, arrays
 * and code-with-scope scopes are documents of their own (length prefix equal
 * to their span, final NUL), recursively. tests/fuzz/mongo_scope_fuzz.c holds
 * it equal to a walk with libbson itself.
 *
 * NUL_FREE_ON_COPY: one check more than the iterator's. JavaScript code (with
 * or without scope) and a DBPointer's namespace may not hold a NUL, because
 * libbson copies them (bson_append_iter) with strlen: a copy would silently
 * cut them short, and what follows a cut DBPointer even escapes libbson's own
 * bson_validate. MongoDB never produces such values.
 */
static bool bson_valid_at(const uint8_t *p, size_t len, int depth)
{
    if (depth > TG_MONGO_BSON_MAX_DEPTH || len < 5 || len > INT32_MAX || tg_load_le32(p) != len ||
        p[len - 1] != 0)
        return false;
    size_t off = 4;
    while (off < len - 1) {
        uint8_t type = p[off];
        const uint8_t *nul = memchr(p + off + 1, 0, len - off - 1);
        size_t o = (size_t)(nul - p) + 1, next, l, sub_off = 0, sub_len = 0;
        switch (type) {
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DATE_TIME:
        case BSON_TYPE_INT64:
        case BSON_TYPE_TIMESTAMP:
            next = o + 8;
            break;
        case BSON_TYPE_UTF8:
        case BSON_TYPE_CODE:
        case BSON_TYPE_SYMBOL:
            if (o + 4 >= len)
                return false;
            l = tg_load_le32(p + o);
            if (l > len - (o + 4))
                return false;
            next = o + 4 + l;
            if (l == 0 || next >= len || p[o + 4 + l - 1] != 0)
                return false;
            if (type == BSON_TYPE_CODE && memchr(p + o + 4, 0, l - 1))
                return false; /* NUL_FREE_ON_COPY */
            break;
        case BSON_TYPE_BINARY:
            if (o >= len - 4)
                return false;
            l = tg_load_le32(p + o);
            if (l >= len - o - 4)
                return false;
            if (p[o + 4] == BSON_SUBTYPE_BINARY_DEPRECATED &&
                (l < 4 || (int64_t)(int32_t)tg_load_le32(p + o + 5) + 4 != (int64_t)l))
                return false;
            next = o + 5 + l;
            break;
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            if (o >= len - 4)
                return false;
            l = tg_load_le32(p + o);
            if (l > len - o)
                return false;
            next = o + l;
            sub_off = o;
            sub_len = l;
            break;
        case BSON_TYPE_OID:
            next = o + 12;
            break;
        case BSON_TYPE_BOOL:
            if (o >= len || p[o] > 1)
                return false;
            next = o + 1;
            break;
        case BSON_TYPE_REGEX: {
            const uint8_t *e1 = o < len ? memchr(p + o, 0, len - o) : NULL;
            size_t o2 = e1 ? (size_t)(e1 - p) + 1 : len;
            const uint8_t *e2 = o2 < len ? memchr(p + o2, 0, len - o2) : NULL;
            if (!e1 || !e2)
                return false;
            next = (size_t)(e2 - p) + 1;
            break;
        }
        case BSON_TYPE_DBPOINTER:
            if (o >= len - 4)
                return false;
            l = tg_load_le32(p + o);
            if (l == 0 || l > len - o - 4 || p[o + l + 3] != 0 || memchr(p + o + 4, 0, l - 1))
                return false; /* NUL_FREE_ON_COPY */
            next = o + 4 + l + 12;
            break;
        case BSON_TYPE_CODEWSCOPE: {
            if (len < 19 || o >= len - 14)
                return false;
            l = tg_load_le32(p + o);
            if (l < 14 || l >= len - o)
                return false;
            next = o + l;
            size_t sl = tg_load_le32(p + o + 4);
            if (sl == 0 || sl >= len - o - 8 || o + 8 + sl + 4 >= next ||
                memchr(p + o + 8, 0, sl - 1))
                return false; /* NUL_FREE_ON_COPY */
            sub_off = o + 8 + sl;
            sub_len = tg_load_le32(p + sub_off);
            if (sub_off + sub_len != next)
                return false;
            break;
        }
        case BSON_TYPE_INT32:
            next = o + 4;
            break;
        case BSON_TYPE_DECIMAL128:
            next = o + 16;
            break;
        case BSON_TYPE_MAXKEY:
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            next = o;
            break;
        default: /* unknown types and a NUL type byte before the end */
            return false;
        }
        if (next >= len)
            return false;
        if (sub_off && !bson_valid_at(p + sub_off, sub_len, depth + 1))
            return false;
        off = next;
    }
    return true;
}

bool tg_mongo_bson_valid(const uint8_t *data, size_t len)
{
    return data && bson_valid_at(data, len, 0);
}

/* ---- the per-command context ------------------------------------------------------------- */

typedef struct sc {
    const tg_mongo_scope *s;
    tg_mongo_tenant *t;
    tg_mongo_scoped *r;
    bool field;     /* field mode */
    const char *db; /* the client's $db */
    size_t db_len;
    char backend_db[TG_MONGO_DB_MAX + 1];
    bool changed;       /* the output differs from the input */
    bool change_stream; /* a $changeStream was seen */
} sc;

/* Records a denial; returns -1 so that callers can `return deny(...)`. */
static int deny(sc *c, const char *reason, const char *what)
{
    if (c->r->reason == NULL) {
        c->r->reason = reason;
        size_t i = 0;
        for (; what && what[i] && i + 1 < sizeof(c->r->what); i++) {
            unsigned char ch = (unsigned char)what[i];
            c->r->what[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
        c->r->what[i] = '\0';
    }
    return -1;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) != 0)                                                                              \
            return -1;                                                                             \
    } while (0)
/* libbson append calls return false when a document would pass INT32_MAX bytes. */
#define APPEND(c, x)                                                                               \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return deny((c), "command too large once rewritten", "");                              \
    } while (0)

static const name_flags *find_name(const name_flags *tab, size_t n, const char *name)
{
    name_flags key = {name, 0};
    return bsearch(&key, tab, n, sizeof(*tab), name_flags_cmp);
}

static const stage_spec *find_stage(const tg_mongo_scope *s, const char *name)
{
    stage_spec key = {name, 0, ST_MATCH};
    return bsearch(&key, s->stages, COUNT(stages), sizeof(stage_spec), stage_cmp);
}

static const cmd_index *find_cmd(const tg_mongo_scope *s, const char *name)
{
    cmd_spec spec = {.name = name};
    cmd_index key = {.spec = &spec};
    return bsearch(&key, s->cmds, s->ncmds, sizeof(cmd_index), cmd_index_cmp);
}

static const field_spec *find_field(const cmd_index *ci, const char *name)
{
    field_spec key = {name, 0, 0};
    return bsearch(&key, ci->fields, ci->nfields, sizeof(field_spec), field_spec_cmp);
}

/* Index of name in a small list of field names, or -1. */
static int field_index(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], name))
            return (int)i;
    return -1;
}

static bool holds_doc(const bson_iter_t *it)
{
    return bson_iter_type(it) == BSON_TYPE_DOCUMENT;
}

static bool holds_array(const bson_iter_t *it)
{
    return bson_iter_type(it) == BSON_TYPE_ARRAY;
}

/* The string value of it (NUL-free), or NULL. */
static const char *str_value(const bson_iter_t *it, uint32_t *len)
{
    if (bson_iter_type(it) != BSON_TYPE_UTF8)
        return NULL;
    const char *v = bson_iter_utf8(it, len);
    return memchr(v, '\0', *len) ? NULL : v;
}

/* True when it holds the tenant's own value: a string equal to the tenant. */
static bool is_tenant_value(const sc *c, const bson_iter_t *it)
{
    uint32_t n;
    const char *v = bson_iter_type(it) == BSON_TYPE_UTF8 ? bson_iter_utf8(it, &n) : NULL;
    return v && n == c->t->tenant_len && memcmp(v, c->t->tenant, n) == 0;
}

/* Array keys "0", "1", ... */
typedef struct arr_key {
    char buf[16];
    const char *key;
    uint32_t i;
} arr_key;

static const char *next_key(arr_key *k)
{
    bson_uint32_to_string(k->i++, &k->key, k->buf, sizeof(k->buf));
    return k->key;
}

/*
 * True when the dotted path p (n bytes) overlaps the tenant field: equal to it,
 * a parent of it or inside it. Positional components ($, $[], $[id]) match any
 * component. Empty components count as names (they never equal the tenant's).
 */
static bool path_conflicts(const tg_mongo_scope *s, const char *p, size_t n, bool *exact)
{
    uint32_t i = 0;
    size_t pos = 0;
    for (;;) {
        const char *dot = memchr(p + pos, '.', n - pos);
        size_t len = dot ? (size_t)(dot - (p + pos)) : n - pos;
        const char *comp = p + pos;
        bool positional = len >= 1 && comp[0] == '$' && (len == 1 || comp[1] == '[');
        if (!positional && (len != s->comp_len[i] || memcmp(comp, s->comp[i], len) != 0))
            return false;
        i++;
        if (!dot || i == s->ncomp) {
            if (exact)
                *exact = !dot && i == s->ncomp && !positional;
            return true; /* a parent, the field itself, or a path inside it */
        }
        pos += len + 1;
    }
}

/* ---- checks: filters, expressions, sorts, projections ------------------------------------ */

static int check_filter(sc *c, const bson_iter_t *it, int depth);
static int check_expr(sc *c, const bson_iter_t *it, int depth);

static int too_deep(sc *c)
{
    return deny(c, "nested too deeply", "");
}

/* A $$variable reference ("$$NAME" or "$$NAME.path"): system variables from the list. */
static int check_variable(sc *c, const char *v, uint32_t n)
{
    const char *name = v + 2;
    size_t len = n - 2;
    const char *dot = memchr(name, '.', len);
    if (dot)
        len = (size_t)(dot - name);
    if (len == 0)
        return deny(c, "malformed variable", v);
    unsigned char first = (unsigned char)name[0];
    if ((first >= 'a' && first <= 'z') || first >= 0x80)
        return 0; /* a user variable: let, $let, $map, $filter... */
    for (size_t i = 0; i < COUNT(system_vars); i++)
        if (strlen(system_vars[i]) == len && !memcmp(system_vars[i], name, len))
            return 0;
    return deny(c, "system variable is not allowed", v);
}

/* An aggregation expression of any type. */
static int check_expr(sc *c, const bson_iter_t *it, int depth)
{
    if (depth > TG_MONGO_SCOPE_MAX_DEPTH)
        return too_deep(c);
    bson_iter_t ch;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
        uint32_t n;
        const char *v = bson_iter_utf8(it, &n);
        if (n >= 2 && v[0] == '$' && v[1] == '$')
            return check_variable(c, v, n);
        return 0;
    }
    case BSON_TYPE_ARRAY:
        if (!bson_iter_recurse(it, &ch))
            return deny(c, "malformed expression", "");
        while (bson_iter_next(&ch))
            TRY(check_expr(c, &ch, depth + 1));
        return 0;
    case BSON_TYPE_DOCUMENT: {
        if (!bson_iter_recurse(it, &ch))
            return deny(c, "malformed expression", "");
        bool first = true, op = false;
        while (bson_iter_next(&ch)) {
            const char *k = bson_iter_key(&ch);
            if (k[0] == '$' || op) {
                /* {$op: args}: one operator, alone in its document */
                if (!first)
                    return deny(c, "an expression operator must be alone in its object", k);
                op = true;
                const name_flags *o = find_name(c->s->ops, COUNT(expr_ops), k);
                if (!o || !(o->flags & OP_E))
                    return deny(c, "expression operator is not allowed", k);
                if (o->flags & OP_LITERAL)
                    continue; /* $literal: data, never evaluated */
                TRY(check_expr(c, &ch, depth + 1));
            } else {
                TRY(check_expr(c, &ch, depth + 1)); /* {field: expression, ...} */
            }
            first = false;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* {field: {$accumulator-or-window: args[, window: {...}]}, ...}: output of $group etc. */
static int check_accumulators(sc *c, const bson_iter_t *field, uint32_t allow, int depth)
{
    if (depth > TG_MONGO_SCOPE_MAX_DEPTH)
        return too_deep(c);
    bson_iter_t ch;
    if (!holds_doc(field) || !bson_iter_recurse(field, &ch))
        return deny(c, "an accumulator must be an object", bson_iter_key(field));
    int ops = 0;
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (k[0] != '$') {
            if ((allow & OP_W) && !strcmp(k, "window")) {
                TRY(check_expr(c, &ch, depth + 1));
                continue;
            }
            return deny(c, "unknown accumulator field", k);
        }
        const name_flags *o = find_name(c->s->ops, COUNT(expr_ops), k);
        if (!o || !(o->flags & allow))
            return deny(c, "accumulator is not allowed", k);
        if (++ops > 1)
            return deny(c, "an accumulator object holds one accumulator", k);
        TRY(check_expr(c, &ch, depth + 1));
    }
    if (ops != 1)
        return deny(c, "an accumulator object holds one accumulator", bson_iter_key(field));
    return 0;
}

/* {$op: ..., $op2: ...} applied to one field (all keys operators). */
static int check_field_ops(sc *c, const bson_iter_t *it, int depth);

/* $elemMatch's argument: operators on the element, or a filter on its fields. */
static int check_elem_match(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "$elemMatch needs an object", "$elemMatch");
    if (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (k[0] == '$' && find_name(c->s->field_ops, COUNT(query_field_ops), k))
            return check_field_ops(c, it, depth + 1);
    }
    return check_filter(c, it, depth + 1);
}

static int check_field_ops(sc *c, const bson_iter_t *it, int depth)
{
    if (depth > TG_MONGO_SCOPE_MAX_DEPTH)
        return too_deep(c);
    bson_iter_t ch;
    if (!bson_iter_recurse(it, &ch))
        return deny(c, "malformed filter", "");
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        const name_flags *o =
            k[0] == '$' ? find_name(c->s->field_ops, COUNT(query_field_ops), k) : NULL;
        if (!o) {
            if (!strcmp(k, "$where"))
                return deny(c, "$where is not allowed", k);
            return deny(c, "query operator is not allowed", k);
        }
        bson_iter_t el;
        switch (o->flags) {
        case QF_ELEM_MATCH:
            TRY(check_elem_match(c, &ch, depth + 1));
            break;
        case QF_NOT:
            if (holds_doc(&ch))
                TRY(check_field_ops(c, &ch, depth + 1));
            else if (bson_iter_type(&ch) != BSON_TYPE_REGEX)
                return deny(c, "$not needs an object or a regular expression", k);
            break;
        case QF_ALL:
            /* values, or {$elemMatch: ...} objects */
            if (!holds_array(&ch) || !bson_iter_recurse(&ch, &el))
                break; /* the server refuses a non-array */
            while (bson_iter_next(&el)) {
                bson_iter_t first;
                if (holds_doc(&el) && bson_iter_recurse(&el, &first) && bson_iter_next(&first) &&
                    bson_iter_key(&first)[0] == '$')
                    TRY(check_field_ops(c, &el, depth + 1));
            }
            break;
        default:
            break; /* data: compared, never evaluated */
        }
    }
    return 0;
}

/* A field's condition: an operator object, or a value compared for equality. */
static int check_condition(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch) || !bson_iter_next(&ch))
        return 0; /* scalar, array, regex or {}: equality */
    const char *k = bson_iter_key(&ch);
    if (k[0] != '$' || !strcmp(k, "$ref"))
        return 0; /* an embedded document or a DBRef: equality */
    return check_field_ops(c, it, depth + 1);
}

static int check_text(sc *c, const bson_iter_t *it)
{
    static const char *const keys[] = {"$search", "$language", "$caseSensitive",
                                       "$diacriticSensitive"};
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "$text needs an object", "$text");
    while (bson_iter_next(&ch))
        if (field_index(keys, COUNT(keys), bson_iter_key(&ch)) < 0)
            return deny(c, "unknown $text option", bson_iter_key(&ch));
    return 0;
}

/* A query filter document (find filter, $match, q, partialFilterExpression...). */
static int check_filter(sc *c, const bson_iter_t *it, int depth)
{
    if (depth > TG_MONGO_SCOPE_MAX_DEPTH)
        return too_deep(c);
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "a filter must be an object", bson_iter_key(it));
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (k[0] != '$') {
            TRY(check_condition(c, &ch, depth + 1));
            continue;
        }
        if (!strcmp(k, "$and") || !strcmp(k, "$or") || !strcmp(k, "$nor")) {
            bson_iter_t el;
            if (!holds_array(&ch) || !bson_iter_recurse(&ch, &el))
                return deny(c, "a logical operator needs an array of filters", k);
            int n = 0;
            while (bson_iter_next(&el)) {
                TRY(check_filter(c, &el, depth + 2));
                n++;
            }
            if (n == 0)
                return deny(c, "a logical operator needs an array of filters", k);
        } else if (!strcmp(k, "$expr")) {
            TRY(check_expr(c, &ch, depth + 1));
        } else if (!strcmp(k, "$jsonSchema")) {
            if (!holds_doc(&ch))
                return deny(c, "$jsonSchema needs an object", k); /* keywords: no code */
        } else if (!strcmp(k, "$text")) {
            TRY(check_text(c, &ch));
        } else if (!strcmp(k, "$comment") || !strcmp(k, "$sampleRate")) {
            continue;
        } else if (!strcmp(k, "$where")) {
            return deny(c, "$where is not allowed", k);
        } else {
            return deny(c, "query operator is not allowed", k);
        }
    }
    return 0;
}

/* {field: 1 | -1 | {$meta: ...}, ...} */
static int check_sort(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "a sort must be an object", bson_iter_key(it));
    while (bson_iter_next(&ch))
        if (holds_doc(&ch))
            TRY(check_expr(c, &ch, depth + 1));
    return 0;
}

/* find projection / findAndModify fields: 0/1, expressions, $elemMatch, $slice, $meta. */
static int check_projection(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "a projection must be an object", bson_iter_key(it));
    while (bson_iter_next(&ch)) {
        bson_iter_t first;
        if (holds_doc(&ch) && bson_iter_recurse(&ch, &first) && bson_iter_next(&first) &&
            !strcmp(bson_iter_key(&first), "$elemMatch")) {
            bson_iter_t arg = first;
            if (bson_iter_next(&first))
                return deny(c, "$elemMatch must be alone in its object", "$elemMatch");
            TRY(check_elem_match(c, &arg, depth + 1));
        } else {
            TRY(check_expr(c, &ch, depth + 1));
        }
    }
    return 0;
}

/* let: {name: expression}: user variable names only (never ROOT, CURRENT...). */
static int check_let(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "let must be an object", "let");
    while (bson_iter_next(&ch)) {
        unsigned char first = (unsigned char)bson_iter_key(&ch)[0];
        if (!((first >= 'a' && first <= 'z') || first >= 0x80))
            return deny(c, "let variable names must start with a lowercase letter",
                        bson_iter_key(&ch));
        TRY(check_expr(c, &ch, depth + 1));
    }
    return 0;
}

/* ---- emitters: the tenant clause, filters, collection names ------------------------------ */

/* tf: "T" (stamps: a plain value; T never starts with '$') */
static int append_tenant_eq(sc *c, bson_t *dst)
{
    APPEND(c, bson_append_utf8(dst, c->s->tenant_field, (int)c->s->tenant_field_len, c->t->tenant,
                               (int)c->t->tenant_len));
    return 0;
}

/*
 * path: {$eq: "T", $regex: /^T\z/}: the tenant clause of every filter. $eq
 * gives upserts their tenant and the planner its index bounds; the regex pins
 * the exact bytes, because equality follows the query's or the collection's
 * collation (strength 1 would make "acme" equal "ACME", alternate "shifted"
 * "ac-me", numericOrdering "t01" equal "t1": other tenants) and $regex never
 * does. with_eq false: only the regex (the client's filter has the $eq already).
 */
static int append_tenant_clause_at(sc *c, bson_t *dst, const char *path, int path_len, bool with_eq)
{
    bson_t op;
    if (!with_eq) { /* {path: /^T\z/}: a regular expression as the value matches by it */
        APPEND(c, bson_append_regex(dst, path, path_len, c->t->guard, ""));
        return 0;
    }
    APPEND(c, bson_append_document_begin(dst, path, path_len, &op));
    APPEND(c, bson_append_utf8(&op, "$eq", 3, c->t->tenant, (int)c->t->tenant_len));
    APPEND(c, bson_append_regex(&op, "$regex", 6, c->t->guard, ""));
    APPEND(c, bson_append_document_end(dst, &op));
    return 0;
}

static int append_tenant_clause(sc *c, bson_t *dst, bool with_eq)
{
    return append_tenant_clause_at(c, dst, c->s->tenant_field, (int)c->s->tenant_field_len,
                                   with_eq);
}

/* {$match: {tf: "T"}} as the next element of a pipeline array. */
static int append_tenant_match(sc *c, bson_t *arr, arr_key *k)
{
    bson_t m;
    if (!bson_init_static(&m, c->t->match, c->t->match_len))
        return deny(c, "out of memory", "");
    APPEND(c, bson_append_document(arr, next_key(k), -1, &m));
    c->changed = true;
    return 0;
}

/* key: {tf: {$eq: T, $regex: /^T\z/}} (the prebuilt clause document). */
static int append_clause_doc(sc *c, bson_t *dst, const char *key, int key_len)
{
    bson_t cl;
    if (!bson_init_static(&cl, c->t->clause, c->t->clause_len))
        return deny(c, "out of memory", "");
    APPEND(c, bson_append_document(dst, key, key_len, &cl));
    return 0;
}

/* {$set: {tf: "T"}} as the next element of a pipeline array (T never starts with '$'). */
static int append_tenant_set(sc *c, bson_t *arr, arr_key *k)
{
    bson_t st, m;
    APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
    APPEND(c, bson_append_document_begin(&st, "$set", 4, &m));
    TRY(append_tenant_eq(c, &m));
    APPEND(c, bson_append_document_end(&st, &m));
    APPEND(c, bson_append_document_end(arr, &st));
    c->changed = true;
    return 0;
}

/*
 * key: filter, checked; in field mode {$and: [{tf: clause}, filter]}, or
 * {tf: clause} for an absent (user NULL) or empty filter.
 */
static int emit_filter(sc *c, bson_t *dst, const char *key, const bson_iter_t *user, int depth)
{
    bson_iter_t probe;
    if (user)
        TRY(check_filter(c, user, depth));
    if (!c->field) {
        if (user)
            APPEND(c, bson_append_iter(dst, key, -1, user));
        return 0;
    }
    /* A client's own {tf: "T"} already gives upserts the tenant: a second $eq on
     * the same path would fail them ("path is matched twice"). */
    bool empty = true, has_eq = false;
    if (user && bson_iter_recurse(user, &probe)) {
        while (bson_iter_next(&probe)) {
            empty = false;
            if (bson_iter_key_len(&probe) == c->s->tenant_field_len &&
                !memcmp(bson_iter_key(&probe), c->s->tenant_field, c->s->tenant_field_len) &&
                is_tenant_value(c, &probe))
                has_eq = true;
        }
    }
    bson_t f, and, t;
    c->changed = true;
    if (empty)
        return append_clause_doc(c, dst, key, -1);
    APPEND(c, bson_append_document_begin(dst, key, -1, &f));
    APPEND(c, bson_append_array_begin(&f, "$and", 4, &and));
    if (has_eq) {
        APPEND(c, bson_append_document_begin(&and, "0", 1, &t));
        TRY(append_tenant_clause(c, &t, false));
        APPEND(c, bson_append_document_end(&and, &t));
    } else {
        TRY(append_clause_doc(c, &and, "0", 1));
    }
    APPEND(c, bson_append_iter(&and, "1", 1, user));
    APPEND(c, bson_append_array_end(&f, &and));
    APPEND(c, bson_append_document_end(dst, &f));
    return 0;
}

/* A collection name of $db: a string MongoDB accepts and not a system collection. */
static int check_coll(sc *c, const bson_iter_t *it)
{
    uint32_t n;
    const char *v = str_value(it, &n);
    if (!v || n == 0 || n > 255 || memchr(v, '$', n) || v[0] == '.')
        return deny(c, "invalid collection name", bson_iter_key(it));
    if (n >= 7 && !memcmp(v, "system.", 7))
        return deny(c, "system collections are not allowed", v);
    return 0;
}

/* Maps a client database name (n bytes) into out; denies on failure. */
static int map_db(sc *c, const char *db, size_t n, char out[TG_MONGO_DB_MAX + 1])
{
    const char *why = tg_mongo_tenant_map_db(c->t, db, n, out);
    if (why) {
        char what[TG_MONGO_DB_MAX + 1];
        size_t m = n < TG_MONGO_DB_MAX ? n : TG_MONGO_DB_MAX;
        memcpy(what, db, m);
        what[m] = '\0';
        return deny(c, why, what);
    }
    return 0;
}

/* {db: ..., coll: ...} namespace documents ($out, $merge into): db mapped or checked. */
static int emit_ns_doc(sc *c, bson_t *dst, const char *key, const bson_iter_t *it,
                       const char *const *extra, size_t nextra)
{
    bson_iter_t ch;
    bson_t out;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "a namespace must be an object", key);
    APPEND(c, bson_append_document_begin(dst, key, -1, &out));
    bool has_db = false, has_coll = false;
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (!strcmp(k, "db")) {
            uint32_t n;
            const char *v = str_value(&ch, &n);
            if (has_db || !v)
                return deny(c, "invalid namespace", k);
            has_db = true;
            if (c->field) {
                if (n != c->db_len || memcmp(v, c->db, n) != 0)
                    return deny(c, "writing into another database is not allowed", v);
                APPEND(c, bson_append_iter(&out, NULL, 0, &ch));
            } else {
                char mapped[TG_MONGO_DB_MAX + 1];
                TRY(map_db(c, v, n, mapped));
                APPEND(c, bson_append_utf8(&out, "db", 2, mapped, -1));
                c->changed = true;
            }
        } else if (!strcmp(k, "coll")) {
            if (has_coll)
                return deny(c, "duplicate field", k);
            has_coll = true;
            TRY(check_coll(c, &ch));
            APPEND(c, bson_append_iter(&out, NULL, 0, &ch));
        } else if (field_index(extra, nextra, k) >= 0) {
            APPEND(c, bson_append_iter(&out, NULL, 0, &ch));
        } else {
            return deny(c, "unknown namespace field", k);
        }
    }
    if (!has_coll)
        return deny(c, "a namespace needs coll", key);
    APPEND(c, bson_append_document_end(dst, &out));
    return 0;
}

/* ---- pipelines --------------------------------------------------------------------------- */

typedef enum {
    P_COLL,       /* aggregate on a collection, a view's pipeline */
    P_NOCOLL,     /* aggregate: 1 ($documents, database-level $changeStream) */
    P_SUB,        /* $lookup / $unionWith on a collection */
    P_SUB_NOCOLL, /* $lookup / $unionWith without one ($documents) */
    P_FACET,      /* a $facet branch: the outer, already scoped input */
    P_UPDATE,     /* a pipeline-style update, $merge whenMatched */
} pipe_kind;

static int emit_pipeline(sc *c, bson_t *dst, const char *key, const bson_iter_t *arr,
                         pipe_kind kind, int depth);

/* Field mode: refuses a path of an update pipeline stage that touches the tenant field. */
static int check_update_path(sc *c, const char *path, size_t n, const bson_iter_t *value,
                             bool project)
{
    bool exact = false;
    if (!c->field || !path_conflicts(c->s, path, n, &exact))
        return 0;
    if (exact && value) {
        if (!project && is_tenant_value(c, value))
            return 0; /* setting the tenant's own value: a no-op */
        if (project &&
            (bson_iter_type(value) == BSON_TYPE_BOOL || bson_iter_type(value) == BSON_TYPE_INT32 ||
             bson_iter_type(value) == BSON_TYPE_INT64 ||
             bson_iter_type(value) == BSON_TYPE_DOUBLE) &&
            bson_iter_as_bool(value))
            return 0; /* keeping it */
    }
    return deny(c, "the tenant field cannot be changed", path);
}

/* The stage's spec iterator (the value of its only key); denies malformed stages. */
static int stage_open(sc *c, const bson_iter_t *el, bson_iter_t *spec, const stage_spec **st)
{
    bson_iter_t ch;
    if (!holds_doc(el) || !bson_iter_recurse(el, &ch) || !bson_iter_next(&ch))
        return deny(c, "a pipeline stage must be an object with one field", "");
    *spec = ch;
    const char *name = bson_iter_key(&ch);
    if (bson_iter_next(&ch))
        return deny(c, "a pipeline stage must be an object with one field", name);
    *st = find_stage(c->s, name);
    if (!*st)
        return deny(c, "aggregation stage is not allowed", name);
    if (!((*st)->flags & (c->field ? SF_FIELD : SF_DB)))
        return deny(c,
                    c->field ? "aggregation stage is not allowed in field isolation"
                             : "aggregation stage is not allowed in database isolation",
                    name);
    return 0;
}

/* Begins {<name>: {...}} as the next stage of arr. */
static int stage_begin(sc *c, bson_t *arr, arr_key *k, const char *name, bson_t *st, bson_t *spec)
{
    APPEND(c, bson_append_document_begin(arr, next_key(k), -1, st));
    APPEND(c, bson_append_document_begin(st, name, -1, spec));
    return 0;
}

static int stage_end(sc *c, bson_t *arr, bson_t *st, bson_t *spec)
{
    APPEND(c, bson_append_document_end(st, spec));
    APPEND(c, bson_append_document_end(arr, st));
    return 0;
}

/* Walks a stage spec's fields: each must be in names, and once. Returns the index or -1. */
typedef struct spec_walk {
    bson_iter_t it;
    uint32_t seen;
} spec_walk;

static int spec_next(sc *c, spec_walk *w, const char *const *names, size_t n, int *idx)
{
    if (!bson_iter_next(&w->it))
        return 1;
    const char *k = bson_iter_key(&w->it);
    int i = field_index(names, n, k);
    if (i < 0)
        return deny(c, "unknown field", k);
    if (w->seen & (1u << i))
        return deny(c, "duplicate field", k);
    w->seen |= 1u << i;
    *idx = i;
    return 0;
}

static int spec_start(sc *c, const bson_iter_t *spec, spec_walk *w, const char *stage)
{
    w->seen = 0;
    if (!holds_doc(spec) || !bson_iter_recurse(spec, &w->it))
        return deny(c, "stage needs an object", stage);
    return 0;
}

/* $lookup: from (a collection of $db) or none; the sub-pipeline scoped in field mode. */
static int emit_lookup(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    enum { L_FROM, L_LOCAL, L_FOREIGN, L_AS, L_LET, L_PIPELINE };
    static const char *const names[] = {"from", "localField", "foreignField",
                                        "as",   "let",        "pipeline"};
    spec_walk w;
    int i, rc;
    bson_t st, out;
    TRY(spec_start(c, spec, &w, "$lookup"));
    /* first pass: which fields there are */
    spec_walk pre = w;
    while ((rc = spec_next(c, &pre, names, COUNT(names), &i)) == 0) {
        if (i == L_FROM && !(bson_iter_type(&pre.it) == BSON_TYPE_UTF8))
            return deny(c, "$lookup from another database is not allowed", "$lookup");
        if (i == L_FROM)
            TRY(check_coll(c, &pre.it));
    }
    if (rc < 0)
        return -1;
    bool has_from = pre.seen & (1u << L_FROM), has_pipe = pre.seen & (1u << L_PIPELINE);
    if (!has_from && !has_pipe)
        return deny(c, "$lookup needs from or a pipeline", "$lookup");
    pipe_kind kind = has_from ? P_SUB : P_SUB_NOCOLL;
    TRY(stage_begin(c, arr, k, "$lookup", &st, &out));
    while ((rc = spec_next(c, &w, names, COUNT(names), &i)) == 0) {
        if (i == L_LET)
            TRY(check_let(c, &w.it, depth + 1));
        if (i == L_PIPELINE)
            TRY(emit_pipeline(c, &out, "pipeline", &w.it, kind, depth + 1));
        else
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
    }
    if (rc < 0)
        return -1;
    if (!has_pipe && c->field) /* localField/foreignField: add the foreign side's scope */
        TRY(emit_pipeline(c, &out, "pipeline", NULL, kind, depth + 1));
    return stage_end(c, arr, &st, &out);
}

/* $graphLookup: restrictSearchWithMatch ANDed with the tenant in field mode. */
static int emit_graph_lookup(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    enum {
        G_FROM,
        G_START,
        G_CONNECT_FROM,
        G_CONNECT_TO,
        G_AS,
        G_MAX_DEPTH,
        G_DEPTH_FIELD,
        G_RESTRICT
    };
    static const char *const names[] = {
        "from", "startWith", "connectFromField", "connectToField",
        "as",   "maxDepth",  "depthField",       "restrictSearchWithMatch"};
    spec_walk w;
    int i, rc;
    bson_t st, out;
    TRY(spec_start(c, spec, &w, "$graphLookup"));
    TRY(stage_begin(c, arr, k, "$graphLookup", &st, &out));
    while ((rc = spec_next(c, &w, names, COUNT(names), &i)) == 0) {
        switch (i) {
        case G_FROM:
            if (bson_iter_type(&w.it) != BSON_TYPE_UTF8)
                return deny(c, "$graphLookup from another database is not allowed", "$graphLookup");
            TRY(check_coll(c, &w.it));
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
            break;
        case G_START:
            TRY(check_expr(c, &w.it, depth + 1));
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
            break;
        case G_RESTRICT:
            TRY(emit_filter(c, &out, "restrictSearchWithMatch", &w.it, depth + 1));
            break;
        default:
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
        }
    }
    if (rc < 0)
        return -1;
    if (!(w.seen & (1u << G_FROM)))
        return deny(c, "$graphLookup needs from", "$graphLookup");
    if (c->field && !(w.seen & (1u << G_RESTRICT)))
        TRY(emit_filter(c, &out, "restrictSearchWithMatch", NULL, depth + 1));
    return stage_end(c, arr, &st, &out);
}

/* $unionWith: "coll" or {coll?, pipeline?}; the pipeline scoped in field mode. */
static int emit_union_with(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    enum { U_COLL, U_PIPELINE };
    static const char *const names[] = {"coll", "pipeline"};
    bson_t st, out;
    if (bson_iter_type(spec) == BSON_TYPE_UTF8) {
        TRY(check_coll(c, spec));
        if (!c->field) {
            APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
            APPEND(c, bson_append_iter(&st, NULL, 0, spec));
            APPEND(c, bson_append_document_end(arr, &st));
            return 0;
        }
        TRY(stage_begin(c, arr, k, "$unionWith", &st, &out));
        APPEND(c, bson_append_iter(&out, "coll", 4, spec));
        TRY(emit_pipeline(c, &out, "pipeline", NULL, P_SUB, depth + 1));
        return stage_end(c, arr, &st, &out);
    }
    spec_walk w;
    int i, rc;
    TRY(spec_start(c, spec, &w, "$unionWith"));
    spec_walk pre = w;
    while ((rc = spec_next(c, &pre, names, COUNT(names), &i)) == 0)
        if (i == U_COLL)
            TRY(check_coll(c, &pre.it));
    if (rc < 0)
        return -1;
    bool has_coll = pre.seen & (1u << U_COLL), has_pipe = pre.seen & (1u << U_PIPELINE);
    if (!has_coll && !has_pipe)
        return deny(c, "$unionWith needs coll or a pipeline", "$unionWith");
    pipe_kind kind = has_coll ? P_SUB : P_SUB_NOCOLL;
    TRY(stage_begin(c, arr, k, "$unionWith", &st, &out));
    while ((rc = spec_next(c, &w, names, COUNT(names), &i)) == 0) {
        if (i == U_PIPELINE)
            TRY(emit_pipeline(c, &out, "pipeline", &w.it, kind, depth + 1));
        else
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
    }
    if (rc < 0)
        return -1;
    if (!has_pipe && c->field)
        TRY(emit_pipeline(c, &out, "pipeline", NULL, kind, depth + 1));
    return stage_end(c, arr, &st, &out);
}

/* $facet: each branch checked and rebuilt (its $lookup etc. get scoped). */
static int emit_facet(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    bson_iter_t ch;
    bson_t st, out;
    if (!holds_doc(spec) || !bson_iter_recurse(spec, &ch))
        return deny(c, "stage needs an object", "$facet");
    TRY(stage_begin(c, arr, k, "$facet", &st, &out));
    while (bson_iter_next(&ch))
        TRY(emit_pipeline(c, &out, bson_iter_key(&ch), &ch, P_FACET, depth + 1));
    return stage_end(c, arr, &st, &out);
}

/* $geoNear (first stage): its query scoped in field mode. */
static int emit_geo_near(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    bson_iter_t ch;
    bson_t st, out;
    bool has_query = false;
    if (!holds_doc(spec) || !bson_iter_recurse(spec, &ch))
        return deny(c, "stage needs an object", "$geoNear");
    TRY(stage_begin(c, arr, k, "$geoNear", &st, &out));
    while (bson_iter_next(&ch)) {
        const char *key = bson_iter_key(&ch);
        if (!strcmp(key, "query")) {
            if (has_query)
                return deny(c, "duplicate field", key);
            has_query = true;
            TRY(emit_filter(c, &out, "query", &ch, depth + 1));
        } else {
            TRY(check_expr(c, &ch, depth + 1));
            APPEND(c, bson_append_iter(&out, NULL, 0, &ch));
        }
    }
    if (!has_query && c->field)
        TRY(emit_filter(c, &out, "query", NULL, depth + 1));
    return stage_end(c, arr, &st, &out);
}

/* True when $merge's on names the tenant field (a string, or an array holding it). */
static bool merge_on_has_tenant(sc *c, const bson_iter_t *on)
{
    uint32_t n;
    const char *v = str_value(on, &n);
    if (v)
        return n == c->s->tenant_field_len && !memcmp(v, c->s->tenant_field, n);
    bson_iter_t el;
    if (!holds_array(on) || !bson_iter_recurse(on, &el))
        return false;
    while (bson_iter_next(&el)) {
        v = str_value(&el, &n);
        if (v && n == c->s->tenant_field_len && !memcmp(v, c->s->tenant_field, n))
            return true;
    }
    return false;
}

/* $merge (last stage). Field mode: same database, on the tenant field, after a tenant $set. */
static int emit_merge(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec, int depth)
{
    enum { MG_INTO, MG_ON, MG_LET, MG_WHEN_MATCHED, MG_WHEN_NOT_MATCHED };
    static const char *const names[] = {"into", "on", "let", "whenMatched", "whenNotMatched"};
    static const char *const into_extra[] = {NULL};
    bson_t st, out;
    if (bson_iter_type(spec) == BSON_TYPE_UTF8) {
        if (c->field)
            return deny(c, "$merge must match on the tenant field", "$merge");
        TRY(check_coll(c, spec));
        APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
        APPEND(c, bson_append_iter(&st, NULL, 0, spec));
        APPEND(c, bson_append_document_end(arr, &st));
        return 0;
    }
    spec_walk w;
    int i, rc;
    TRY(spec_start(c, spec, &w, "$merge"));
    spec_walk pre = w;
    bool on_ok = false;
    while ((rc = spec_next(c, &pre, names, COUNT(names), &i)) == 0)
        if (i == MG_ON)
            on_ok = merge_on_has_tenant(c, &pre.it);
    if (rc < 0)
        return -1;
    if (!(pre.seen & (1u << MG_INTO)))
        return deny(c, "$merge needs into", "$merge");
    if (c->field) {
        if (!on_ok)
            return deny(c, "$merge must match on the tenant field", "$merge");
        TRY(append_tenant_set(c, arr, k)); /* every document written carries the tenant */
    }
    TRY(stage_begin(c, arr, k, "$merge", &st, &out));
    while ((rc = spec_next(c, &w, names, COUNT(names), &i)) == 0) {
        switch (i) {
        case MG_INTO:
            if (bson_iter_type(&w.it) == BSON_TYPE_UTF8) {
                TRY(check_coll(c, &w.it));
                APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
            } else {
                TRY(emit_ns_doc(c, &out, "into", &w.it, into_extra, 0));
            }
            break;
        case MG_LET:
            TRY(check_let(c, &w.it, depth + 1));
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
            break;
        case MG_WHEN_MATCHED:
            if (holds_array(&w.it)) {
                TRY(emit_pipeline(c, &out, "whenMatched", &w.it, P_UPDATE, depth + 1));
                break;
            }
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it)); /* "replace", "merge"... */
            break;
        default:
            APPEND(c, bson_append_iter(&out, NULL, 0, &w.it));
        }
    }
    if (rc < 0)
        return -1;
    return stage_end(c, arr, &st, &out);
}

/* $out (database mode, last stage): "coll" or {db, coll, timeseries?}. */
static int emit_out(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec)
{
    static const char *const extra[] = {"timeseries"};
    bson_t st;
    APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
    if (bson_iter_type(spec) == BSON_TYPE_UTF8) {
        TRY(check_coll(c, spec));
        APPEND(c, bson_append_iter(&st, NULL, 0, spec));
    } else {
        TRY(emit_ns_doc(c, &st, "$out", spec, extra, COUNT(extra)));
    }
    APPEND(c, bson_append_document_end(arr, &st));
    return 0;
}

/* $changeStream options; field mode then keeps only events on the tenant's documents. */
static int emit_change_stream(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *spec)
{
    static const char *const names[] = {
        "fullDocument",         "fullDocumentBeforeChange", "resumeAfter",       "startAfter",
        "startAtOperationTime", "allChangesForCluster",     "showExpandedEvents"};
    if (!c->s->allow_change_streams)
        return deny(c, "change streams are not allowed", "$changeStream");
    spec_walk w;
    int i, rc;
    TRY(spec_start(c, spec, &w, "$changeStream"));
    while ((rc = spec_next(c, &w, names, COUNT(names), &i)) == 0)
        if (i >= 5 && bson_iter_as_bool(&w.it))
            return deny(c, "change stream option is not allowed", names[i]);
    if (rc < 0)
        return -1;
    bson_t st, m, or, e;
    APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
    APPEND(c, bson_append_iter(&st, NULL, 0, spec));
    APPEND(c, bson_append_document_end(arr, &st));
    c->change_stream = true;
    if (!c->field)
        return 0;
    /* {$match: {$or: [{"fullDocument.tf": clause}, {"fullDocumentBeforeChange.tf": clause}]}} */
    static const char *const prefixes[] = {"fullDocument.", "fullDocumentBeforeChange."};
    APPEND(c, bson_append_document_begin(arr, next_key(k), -1, &st));
    APPEND(c, bson_append_document_begin(&st, "$match", 6, &m));
    APPEND(c, bson_append_array_begin(&m, "$or", 3, & or));
    for (int j = 0; j < 2; j++) {
        char path[300];
        int n = snprintf(path, sizeof(path), "%s%s", prefixes[j], c->s->tenant_field);
        if (n < 0 || (size_t)n >= sizeof(path))
            return deny(c, "tenant field too long", "");
        APPEND(c, bson_append_document_begin(& or, j ? "1" : "0", 1, &e));
        TRY(append_tenant_clause_at(c, &e, path, n, true));
        APPEND(c, bson_append_document_end(& or, &e));
    }
    APPEND(c, bson_append_array_end(&m, & or));
    APPEND(c, bson_append_document_end(&st, &m));
    APPEND(c, bson_append_document_end(arr, &st));
    c->changed = true;
    return 0;
}

/* A document of fields -> expressions ($set/$addFields) or projections ($project). */
static int check_fields_stage(sc *c, const bson_iter_t *spec, const char *stage, bool update,
                              bool project, int depth)
{
    bson_iter_t ch;
    if (!holds_doc(spec) || !bson_iter_recurse(spec, &ch))
        return deny(c, "stage needs an object", stage);
    while (bson_iter_next(&ch)) {
        if (update)
            TRY(check_update_path(c, bson_iter_key(&ch), bson_iter_key_len(&ch), &ch, project));
        TRY(check_expr(c, &ch, depth + 1));
    }
    return 0;
}

/* $unset: "path" or ["path", ...]. */
static int check_unset(sc *c, const bson_iter_t *spec, bool update)
{
    uint32_t n;
    const char *v = str_value(spec, &n);
    if (v)
        return update ? check_update_path(c, v, n, NULL, false) : 0;
    bson_iter_t el;
    if (!holds_array(spec) || !bson_iter_recurse(spec, &el))
        return deny(c, "$unset needs a path or an array of paths", "$unset");
    while (bson_iter_next(&el)) {
        v = str_value(&el, &n);
        if (!v)
            return deny(c, "$unset needs a path or an array of paths", "$unset");
        if (update)
            TRY(check_update_path(c, v, n, NULL, false));
    }
    return 0;
}

/* $group / $bucket / $bucketAuto / $setWindowFields specs. */
static int check_group_like(sc *c, const bson_iter_t *spec, stage_kind kind, int depth)
{
    bson_iter_t ch, out;
    if (!holds_doc(spec) || !bson_iter_recurse(spec, &ch))
        return deny(c, "stage needs an object", "");
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (kind == ST_GROUP) {
            if (!strcmp(k, "_id"))
                TRY(check_expr(c, &ch, depth + 1));
            else
                TRY(check_accumulators(c, &ch, OP_A, depth + 1));
        } else if (!strcmp(k, "output")) {
            if (!holds_doc(&ch) || !bson_iter_recurse(&ch, &out))
                return deny(c, "output needs an object", k);
            while (bson_iter_next(&out))
                TRY(check_accumulators(c, &out, kind == ST_WINDOW ? OP_A | OP_W : OP_A, depth + 2));
        } else if (kind == ST_WINDOW && !strcmp(k, "sortBy")) {
            TRY(check_sort(c, &ch, depth + 1));
        } else if (kind == ST_WINDOW && strcmp(k, "partitionBy") != 0) {
            return deny(c, "unknown field", k);
        } else {
            TRY(check_expr(c, &ch, depth + 1)); /* groupBy, boundaries, buckets... */
        }
    }
    return 0;
}

/* Checks one stage, then copies or rebuilds it into arr. */
static int emit_stage(sc *c, bson_t *arr, arr_key *k, const bson_iter_t *el,
                      const bson_iter_t *spec, const stage_spec *st, pipe_kind kind, int depth)
{
    const char *name = st->name;
    bool update = kind == P_UPDATE;
    switch (st->kind) {
    case ST_MATCH:
        TRY(check_filter(c, spec, depth + 1));
        break;
    case ST_EXPR:
    case ST_REPLACE:
    case ST_DOCUMENTS:
        TRY(check_expr(c, spec, depth + 1));
        break;
    case ST_SET:
        TRY(check_fields_stage(c, spec, name, update, false, depth));
        break;
    case ST_PROJECT:
        TRY(check_fields_stage(c, spec, name, update, true, depth));
        break;
    case ST_UNSET:
        TRY(check_unset(c, spec, update));
        break;
    case ST_SORT:
        TRY(check_sort(c, spec, depth + 1));
        break;
    case ST_GROUP:
    case ST_BUCKET:
    case ST_WINDOW:
        TRY(check_group_like(c, spec, st->kind, depth));
        break;
    case ST_STATS:
        if (!holds_doc(spec))
            return deny(c, "stage needs an object", name);
        break;
    case ST_FACET:
        return emit_facet(c, arr, k, spec, depth);
    case ST_LOOKUP:
        return emit_lookup(c, arr, k, spec, depth);
    case ST_GRAPH:
        return emit_graph_lookup(c, arr, k, spec, depth);
    case ST_UNION:
        return emit_union_with(c, arr, k, spec, depth);
    case ST_GEO_NEAR:
        return emit_geo_near(c, arr, k, spec, depth);
    case ST_MERGE:
        return emit_merge(c, arr, k, spec, depth);
    case ST_OUT:
        return emit_out(c, arr, k, spec);
    case ST_CHANGE:
        return emit_change_stream(c, arr, k, spec);
    }
    APPEND(c, bson_append_iter(arr, next_key(k), -1, el));
    return 0;
}

/*
 * key: [stages], every stage checked. Field mode: pipelines over a collection
 * start with the tenant clause (merged into a leading $match or $geoNear,
 * else a $match of its own); update pipelines end with a tenant $set.
 * arr NULL is an empty pipeline.
 */
static int emit_pipeline(sc *c, bson_t *dst, const char *key, const bson_iter_t *arr,
                         pipe_kind kind, int depth)
{
    if (depth > TG_MONGO_SCOPE_MAX_DEPTH)
        return too_deep(c);
    bson_iter_t el, cnt;
    bson_t out;
    arr_key k = {.i = 0};
    uint32_t n = 0, i = 0;
    if (arr && (!holds_array(arr) || !bson_iter_recurse(arr, &el)))
        return deny(c, "a pipeline must be an array", key);
    if (arr) {
        cnt = el;
        while (bson_iter_next(&cnt))
            n++;
    }
    bool collectionless = kind == P_NOCOLL || kind == P_SUB_NOCOLL;
    bool need_scope = c->field && (kind == P_COLL || kind == P_SUB);
    if (collectionless && n == 0)
        return deny(c, "a pipeline without a collection must start with $documents", key);
    APPEND(c, bson_append_array_begin(dst, key, -1, &out));
    for (; arr && bson_iter_next(&el); i++) {
        bson_iter_t spec;
        const stage_spec *st = NULL;
        TRY(stage_open(c, &el, &spec, &st));
        const char *name = st->name;
        if (kind == P_UPDATE && !(st->flags & SF_UPDATE))
            return deny(c, "stage is not allowed in an update pipeline", name);
        bool first_only = st->kind == ST_GEO_NEAR || st->kind == ST_STATS ||
                          st->kind == ST_CHANGE || st->kind == ST_DOCUMENTS;
        if (first_only && i != 0)
            return deny(c, "stage must be the first of its pipeline", name);
        if (st->kind == ST_DOCUMENTS && !collectionless)
            return deny(c, "$documents needs a pipeline without a collection", name);
        if (st->kind == ST_CHANGE && kind != P_COLL && kind != P_NOCOLL)
            return deny(c, "stage is not allowed in a sub-pipeline", name);
        if (st->kind == ST_STATS && kind != P_COLL)
            return deny(c, "stage is not allowed here", name);
        if (st->kind == ST_GEO_NEAR && kind != P_COLL && kind != P_SUB)
            return deny(c, "stage is not allowed here", name);
        if ((st->kind == ST_OUT || st->kind == ST_MERGE) &&
            ((kind != P_COLL && kind != P_NOCOLL) || i + 1 != n))
            return deny(c, "stage must be the last of the top-level pipeline", name);
        if (collectionless && i == 0 && st->kind != ST_DOCUMENTS &&
            !(kind == P_NOCOLL && st->kind == ST_CHANGE))
            return deny(c, "a pipeline without a collection must start with $documents", name);
        if (need_scope && i == 0) {
            need_scope = false;
            if (st->kind == ST_MATCH) {
                bson_t s;
                APPEND(c, bson_append_document_begin(&out, next_key(&k), -1, &s));
                TRY(emit_filter(c, &s, "$match", &spec, depth + 1));
                APPEND(c, bson_append_document_end(&out, &s));
                continue;
            }
            if (st->kind != ST_GEO_NEAR && st->kind != ST_CHANGE)
                TRY(append_tenant_match(c, &out, &k));
            /* $geoNear scopes its query; $changeStream adds its own $match */
        }
        TRY(emit_stage(c, &out, &k, &el, &spec, st, kind, depth));
    }
    if (need_scope)
        TRY(append_tenant_match(c, &out, &k));
    if (kind == P_UPDATE && c->field)
        TRY(append_tenant_set(c, &out, &k));
    APPEND(c, bson_append_array_end(dst, &out));
    return 0;
}

/* ---- writes: stamping, update and delete statements, indexes ----------------------------- */

/* Appends the tenant path from component i on: comp[i]: {comp[i+1]: ... "T"}. */
static int append_tenant_path(sc *c, bson_t *dst, uint32_t i)
{
    const tg_mongo_scope *s = c->s;
    if (i + 1 == s->ncomp)
        APPEND(c, bson_append_utf8(dst, s->comp[i], (int)s->comp_len[i], c->t->tenant,
                                   (int)c->t->tenant_len));
    else {
        bson_t ch;
        APPEND(c, bson_append_document_begin(dst, s->comp[i], (int)s->comp_len[i], &ch));
        TRY(append_tenant_path(c, &ch, i + 1));
        APPEND(c, bson_append_document_end(dst, &ch));
    }
    return 0;
}

/*
 * Copies src into dst (begun by the caller) with the tenant stamped at the
 * tenant path from component i: added when absent, kept when it is the
 * tenant's own string, refused when it is anything else or appears twice.
 */
static int stamp_into(sc *c, const bson_t *src, bson_t *dst, uint32_t i)
{
    const tg_mongo_scope *s = c->s;
    const char *name = s->comp[i];
    size_t len = s->comp_len[i];
    bson_iter_t it, at;
    int found = 0;
    if (!bson_iter_init(&it, src))
        return deny(c, "malformed document", "");
    bson_iter_t scan = it;
    while (bson_iter_next(&scan)) {
        if (bson_iter_key_len(&scan) == len && !memcmp(bson_iter_key(&scan), name, len)) {
            if (found++)
                return deny(c, "duplicate tenant field in a document", s->tenant_field);
            at = scan;
        }
    }
    if (found == 0) {
        APPEND(c, bson_concat(dst, src));
        TRY(append_tenant_path(c, dst, i));
        c->changed = true;
        return 0;
    }
    if (i + 1 == s->ncomp) {
        if (!is_tenant_value(c, &at))
            return deny(c,
                        bson_iter_type(&at) == BSON_TYPE_UTF8
                            ? "document carries another tenant's value"
                            : "the tenant field must be a string",
                        s->tenant_field);
        APPEND(c, bson_concat(dst, src));
        return 0;
    }
    if (!holds_doc(&at))
        return deny(c, "the tenant field's parent must be an object", s->tenant_field);
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) != len || memcmp(bson_iter_key(&it), name, len) != 0) {
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            continue;
        }
        uint32_t dl;
        const uint8_t *dd;
        bson_t sub, ch;
        bson_iter_document(&it, &dl, &dd);
        if (!bson_init_static(&sub, dd, dl))
            return deny(c, "malformed document", "");
        APPEND(c, bson_append_document_begin(dst, name, (int)len, &ch));
        TRY(stamp_into(c, &sub, &ch, i + 1));
        APPEND(c, bson_append_document_end(dst, &ch));
    }
    return 0;
}

/* One statement or document of an array or a sequence, written into dst (begun). */
typedef int (*doc_fn)(sc *c, const bson_t *src, bson_t *dst, int depth);

static int insert_doc(sc *c, const bson_t *src, bson_t *dst, int depth)
{
    (void)depth;
    if (c->field)
        return stamp_into(c, src, dst, 0);
    APPEND(c, bson_concat(dst, src));
    return 0;
}

/* arrayFilters: [filter, ...] */
static int check_array_filters(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t el;
    if (!holds_array(it) || !bson_iter_recurse(it, &el))
        return deny(c, "arrayFilters must be an array", "arrayFilters");
    while (bson_iter_next(&el))
        TRY(check_filter(c, &el, depth + 1));
    return 0;
}

/* {$set: {...}, $inc: {...}, ...}: allowed operators; none may touch the tenant field. */
static int check_update_ops(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t op, f;
    if (!bson_iter_recurse(it, &op))
        return deny(c, "malformed update", "");
    while (bson_iter_next(&op)) {
        const char *k = bson_iter_key(&op);
        const name_flags *o = k[0] == '$' ? find_name(c->s->upd_ops, COUNT(update_ops), k) : NULL;
        if (!o)
            return deny(c,
                        k[0] == '$' ? "update operator is not allowed"
                                    : "an update mixes operators and fields",
                        k);
        if (!holds_doc(&op) || !bson_iter_recurse(&op, &f))
            return deny(c, "an update operator needs an object", k);
        while (bson_iter_next(&f)) {
            const char *path = bson_iter_key(&f);
            bool exact = false;
            if (c->field && path_conflicts(c->s, path, bson_iter_key_len(&f), &exact) &&
                !(o->flags == UP_SET && exact && is_tenant_value(c, &f)))
                return deny(c, "the tenant field cannot be changed", path);
            if (o->flags == UP_RENAME) {
                uint32_t n;
                const char *to = str_value(&f, &n);
                if (!to)
                    return deny(c, "$rename needs a target path", path);
                if (c->field && path_conflicts(c->s, to, n, NULL))
                    return deny(c, "the tenant field cannot be changed", to);
            }
            if (o->flags == UP_PULL && holds_doc(&f))
                TRY(check_elem_match(c, &f, depth + 2));
        }
    }
    return 0;
}

/* An update: operators (checked), a replacement (stamped) or a pipeline (scoped). */
static int emit_update_u(sc *c, bson_t *dst, const char *key, const bson_iter_t *it, int depth)
{
    if (holds_array(it))
        return emit_pipeline(c, dst, key, it, P_UPDATE, depth + 1);
    bson_iter_t ch;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "an update must be an object or a pipeline", key);
    if (bson_iter_next(&ch) && bson_iter_key(&ch)[0] == '$') {
        TRY(check_update_ops(c, it, depth));
        APPEND(c, bson_append_iter(dst, key, -1, it));
        return 0;
    }
    /* a replacement document */
    bson_iter_recurse(it, &ch);
    while (bson_iter_next(&ch))
        if (bson_iter_key(&ch)[0] == '$')
            return deny(c, "an update mixes operators and fields", bson_iter_key(&ch));
    if (!c->field) {
        APPEND(c, bson_append_iter(dst, key, -1, it));
        return 0;
    }
    uint32_t dl;
    const uint8_t *dd;
    bson_t src, out;
    bson_iter_document(it, &dl, &dd);
    if (!bson_init_static(&src, dd, dl))
        return deny(c, "malformed document", "");
    APPEND(c, bson_append_document_begin(dst, key, -1, &out));
    TRY(stamp_into(c, &src, &out, 0));
    APPEND(c, bson_append_document_end(dst, &out));
    return 0;
}

/* {q, u, upsert, multi, arrayFilters, collation, hint, c, sort} */
static int update_stmt(sc *c, const bson_t *src, bson_t *dst, int depth)
{
    bson_iter_t it;
    uint32_t seen = 0;
    if (!bson_iter_init(&it, src))
        return deny(c, "malformed update statement", "");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int i = field_index(update_stmt_fields, COUNT(update_stmt_fields), k);
        if (i < 0)
            return deny(c, "unknown field", k);
        if (seen & (1u << i))
            return deny(c, "duplicate field", k);
        seen |= 1u << i;
        switch (i) {
        case U_Q:
            TRY(emit_filter(c, dst, "q", &it, depth + 1));
            break;
        case U_U:
            TRY(emit_update_u(c, dst, "u", &it, depth + 1));
            break;
        case U_ARRAY_FILTERS:
            TRY(check_array_filters(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case U_SORT:
            TRY(check_sort(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case U_C: /* constants of a pipeline update, read as $$name: checked like let */
            TRY(check_let(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        default:
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
        }
    }
    if (!(seen & (1u << U_Q)) || !(seen & (1u << U_U)))
        return deny(c, "an update statement needs q and u", "");
    return 0;
}

/* {q, limit, collation, hint} */
static int delete_stmt(sc *c, const bson_t *src, bson_t *dst, int depth)
{
    bson_iter_t it;
    uint32_t seen = 0;
    if (!bson_iter_init(&it, src))
        return deny(c, "malformed delete statement", "");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int i = field_index(delete_stmt_fields, COUNT(delete_stmt_fields), k);
        if (i < 0)
            return deny(c, "unknown field", k);
        if (seen & (1u << i))
            return deny(c, "duplicate field", k);
        seen |= 1u << i;
        if (i == D_Q)
            TRY(emit_filter(c, dst, "q", &it, depth + 1));
        else
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
    }
    if (!(seen & (1u << D_Q)))
        return deny(c, "a delete statement needs q", "");
    return 0;
}

/* key: [doc, ...] through fn. */
static int emit_doc_array(sc *c, bson_t *dst, const char *key, const bson_iter_t *it, doc_fn fn,
                          int depth)
{
    bson_iter_t el;
    bson_t arr, out;
    arr_key k = {.i = 0};
    if (!holds_array(it) || !bson_iter_recurse(it, &el))
        return deny(c, "must be an array of objects", key);
    APPEND(c, bson_append_array_begin(dst, key, -1, &arr));
    while (bson_iter_next(&el)) {
        uint32_t dl;
        const uint8_t *dd;
        bson_t src;
        if (!holds_doc(&el))
            return deny(c, "must be an array of objects", key);
        bson_iter_document(&el, &dl, &dd);
        if (!bson_init_static(&src, dd, dl))
            return deny(c, "malformed document", key);
        APPEND(c, bson_append_document_begin(&arr, next_key(&k), -1, &out));
        TRY(fn(c, &src, &out, depth + 1));
        APPEND(c, bson_append_document_end(&arr, &out));
    }
    APPEND(c, bson_append_array_end(dst, &arr));
    return 0;
}

/*
 * A kind 1 sequence through fn; out->docs stays NULL when nothing changed.
 * Each document is built in a bson_t of its own and then appended: libbson
 * 1.23's bson_writer_begin ensures room for the 5 bytes of an empty document
 * but writes 6, one past its buffer when a document starts 5 bytes before the
 * buffer's end, so its writer is never used for more than one document here.
 */
static int emit_doc_seq(sc *c, const tg_mongo_scope_seq *in, tg_mongo_seq_out *out, doc_fn fn)
{
    tg_buf out_docs = {0}; /* the rewritten documents back to back */
    bool before = c->changed;
    int rc = 0;
    const uint8_t *p = in->docs.base;
    size_t left = in->docs.len;
    uint32_t count = 0;
    c->changed = false;
    while (rc == 0 && left > 0) {
        int32_t dl;
        bson_t src, d;
        if (left < 5) {
            rc = deny(c, "malformed document sequence", "");
            break;
        }
        memcpy(&dl, p, 4);
        dl = (int32_t)BSON_UINT32_FROM_LE((uint32_t)dl);
        if (dl < 5 || (size_t)dl > left || !tg_mongo_bson_valid(p, (size_t)dl) ||
            !bson_init_static(&src, p, (size_t)dl)) {
            rc = deny(c, "malformed document sequence", "");
            break;
        }
        bson_init(&d);
        rc = fn(c, &src, &d, 1);
        if (rc == 0 && tg_buf_append(&out_docs, bson_get_data(&d), d.len) < 0)
            rc = deny(c, "out of memory", "");
        bson_destroy(&d);
        p += dl;
        left -= (size_t)dl;
        count++;
    }
    bool mine = c->changed;
    c->changed = before || mine;
    if (rc != 0 || !mine) {
        tg_buf_free(&out_docs);
        return rc;
    }
    out->docs = out_docs.data;
    out->len = out_docs.len;
    out->count = count;
    return 0;
}

/* createIndexes specifications (field mode: no TTL, unique only with the tenant field). */
static int check_indexes(sc *c, const bson_iter_t *it, int depth)
{
    bson_iter_t el, f, key;
    if (!holds_array(it) || !bson_iter_recurse(it, &el))
        return deny(c, "indexes must be an array", "indexes");
    while (bson_iter_next(&el)) {
        uint32_t seen = 0;
        bool unique = false, has_tenant = false, simple = true;
        if (!holds_doc(&el) || !bson_iter_recurse(&el, &f))
            return deny(c, "an index must be an object", "indexes");
        while (bson_iter_next(&f)) {
            const char *k = bson_iter_key(&f);
            int i = field_index(index_fields, COUNT(index_fields), k);
            if (i < 0)
                return deny(c, "index option is not allowed", k);
            if (seen & (1u << i))
                return deny(c, "duplicate field", k);
            seen |= 1u << i;
            switch (i) {
            case IX_KEY:
                if (!holds_doc(&f) || !bson_iter_recurse(&f, &key))
                    return deny(c, "an index key must be an object", k);
                while (bson_iter_next(&key))
                    has_tenant = has_tenant || !strcmp(bson_iter_key(&key), c->s->tenant_field);
                break;
            case IX_UNIQUE:
                unique = bson_iter_as_bool(&f);
                break;
            case IX_PARTIAL:
                TRY(check_filter(c, &f, depth + 1));
                break;
            case IX_COLLATION: {
                bson_iter_t loc;
                uint32_t n;
                const char *v;
                simple = holds_doc(&f) && bson_iter_recurse(&f, &loc) &&
                         bson_iter_find(&loc, "locale") && (v = str_value(&loc, &n)) &&
                         !strcmp(v, "simple");
                break;
            }
            case IX_TTL:
                if (c->field)
                    return deny(c, "TTL indexes are not allowed in field isolation", k);
                break;
            default:
                break;
            }
        }
        if (c->field && unique && !has_tenant)
            return deny(c, "a unique index must include the tenant field", "unique");
        if (c->field && unique && !simple) /* "ACME" would collide with "acme" */
            return deny(c, "a unique index needs the simple collation in field isolation",
                        "collation");
    }
    return 0;
}

/* ---- sessions, cursors, namespaces ------------------------------------------------------- */

/* {id: UUID} -> {id: mapped UUID}; with facts, remembered in r. */
static int emit_lsid(sc *c, bson_t *dst, const char *key, const bson_iter_t *it, bool facts)
{
    bson_iter_t ch;
    bson_subtype_t sub;
    uint32_t n = 0;
    const uint8_t *id = NULL;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return deny(c, "lsid must be an object", key);
    while (bson_iter_next(&ch)) {
        if (strcmp(bson_iter_key(&ch), "id") != 0 || id)
            return deny(c, "lsid may only carry id", bson_iter_key(&ch));
        if (bson_iter_type(&ch) != BSON_TYPE_BINARY)
            return deny(c, "lsid id must be a UUID", "id");
        bson_iter_binary(&ch, &sub, &n, &id);
        if (sub != BSON_SUBTYPE_UUID || n != 16)
            return deny(c, "lsid id must be a UUID", "id");
    }
    if (!id)
        return deny(c, "lsid needs id", key);
    uint8_t mapped[16];
    if (tg_mongo_tenant_map_lsid(c->t, id, mapped) != 0)
        return deny(c, "out of memory", "");
    /* {id: UUID(mapped)}: 4 + (1 + 3 + 4 + 1 + 16) + 1 bytes, appended whole */
    uint8_t raw[30] = {30, 0, 0, 0, BSON_TYPE_BINARY, 'i', 'd', 0, 16, 0, 0, 0, BSON_SUBTYPE_UUID};
    bson_t out;
    memcpy(raw + 13, mapped, 16);
    raw[29] = 0;
    if (!bson_init_static(&out, raw, sizeof(raw)))
        return deny(c, "out of memory", "");
    APPEND(c, bson_append_document(dst, key, -1, &out));
    if (facts) {
        c->r->has_lsid = true;
        memcpy(c->r->client_lsid, id, 16);
        memcpy(c->r->backend_lsid, mapped, 16);
    }
    c->changed = true;
    return 0;
}

/* endSessions: [{id}, ...] each mapped. */
static int emit_end_sessions(sc *c, bson_t *dst, const char *key, const bson_iter_t *it)
{
    bson_iter_t el;
    bson_t arr;
    arr_key k = {.i = 0};
    if (!holds_array(it) || !bson_iter_recurse(it, &el))
        return deny(c, "endSessions needs an array of lsids", key);
    APPEND(c, bson_append_array_begin(dst, key, -1, &arr));
    while (bson_iter_next(&el)) {
        if (k.i >= TG_MONGO_SCOPE_MAX_CURSORS)
            return deny(c, "too many sessions", key);
        TRY(emit_lsid(c, &arr, next_key(&k), &el, false));
    }
    APPEND(c, bson_append_array_end(dst, &arr));
    c->changed = true;
    return 0;
}

static bool cursor_id(const bson_iter_t *it, int64_t *id)
{
    if (bson_iter_type(it) == BSON_TYPE_INT64)
        *id = bson_iter_int64(it);
    else if (bson_iter_type(it) == BSON_TYPE_INT32)
        *id = bson_iter_int32(it);
    else
        return false;
    return true;
}

static int collect_cursor_ids(sc *c, const bson_iter_t *it)
{
    bson_iter_t el, cnt;
    uint32_t n = 0;
    if (!holds_array(it) || !bson_iter_recurse(it, &el))
        return deny(c, "cursors must be an array of ids", "cursors");
    cnt = el;
    while (bson_iter_next(&cnt))
        if (++n > TG_MONGO_SCOPE_MAX_CURSORS)
            return deny(c, "too many cursors", "cursors");
    tg_mongo_scoped *r = c->r;
    if (r->cursor_ids && r->cursor_ids != &r->cursor_one)
        bson_free(r->cursor_ids);
    r->cursor_ids = n ? bson_malloc(n * sizeof(int64_t)) : NULL;
    r->n_cursor_ids = 0;
    while (bson_iter_next(&el))
        if (!cursor_id(&el, &r->cursor_ids[r->n_cursor_ids++]))
            return deny(c, "cursors must be an array of ids", "cursors");
    return 0;
}

/* renameCollection / to: "db.coll" with db mapped (database mode only). */
static int emit_ns_string(sc *c, bson_t *dst, const char *key, const bson_iter_t *it)
{
    uint32_t n;
    const char *v = str_value(it, &n);
    const char *dot = v ? memchr(v, '.', n) : NULL;
    if (!dot)
        return deny(c, "a namespace must be \"db.collection\"", key);
    size_t dn = (size_t)(dot - v), cn = n - dn - 1;
    if (cn == 0 || cn > 255 || memchr(dot + 1, '$', cn) || dot[1] == '.' ||
        (cn >= 7 && !memcmp(dot + 1, "system.", 7)))
        return deny(c, "invalid collection name", key);
    char mapped[TG_MONGO_DB_MAX + 1];
    TRY(map_db(c, v, dn, mapped));
    char buf[TG_MONGO_DB_MAX + 1 + 256];
    size_t mn = strlen(mapped);
    memcpy(buf, mapped, mn);
    buf[mn] = '.';
    memcpy(buf + mn + 1, dot + 1, cn);
    APPEND(c, bson_append_utf8(dst, key, -1, buf, (int)(mn + 1 + cn)));
    c->changed = true;
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

static bool is_generic(const char *name)
{
    for (size_t i = 0; i < COUNT(generic_fields); i++)
        if (!strcmp(generic_fields[i].name, name))
            return true;
    return false;
}

#define MAX_BODY_FIELDS (MAX_FIELDS + COUNT(generic_fields))

/*
 * Scopes a command body into dst (a fresh document). inner: the command
 * inside explain (no $db, session or transaction fields; $db is the outer's).
 * The sequences are those of the outer command (none for inner).
 */
static int scope_body(sc *c, const bson_t *body, bson_t *dst, const tg_mongo_scope_seq *seqs,
                      uint32_t nseq, bool inner, int depth)
{
    bson_iter_t it;
    if (depth > 1)
        return deny(c, "explain cannot be nested", "explain");
    if (!bson_iter_init(&it, body) || !bson_iter_next(&it))
        return deny(c, "empty command", "");
    const char *name = bson_iter_key(&it);
    const cmd_index *ci = find_cmd(c->s, name);
    if (!ci)
        return deny(c, "command is not allowed", name);
    const cmd_spec *cs = ci->spec;
    if (!inner)
        c->r->cmd = cs->cmd;
    if (!(cs->flags & (c->field ? C_FIELD : C_DB)))
        return deny(c,
                    c->field ? "command is not allowed in field isolation"
                             : "command is not allowed in database isolation",
                    name);
    if ((cs->flags & C_DROP) && !c->s->allow_drop)
        return deny(c, "command is not allowed (allow_drop is off)", name);
    if (inner && !(cs->flags & C_INNER))
        return deny(c, "command cannot be explained", name);

    /* pass 1: every field known, allowed in this mode, once; facts needed by pass 2 */
    const field_spec *order[MAX_BODY_FIELDS];
    uint32_t nkeys = 0;
    uint64_t seen = 0;
    bson_iter_t db_it;
    bool has_db = false, has_filter = false, has_verbosity = false, has_pipeline = false;
    const field_spec *filter_field = NULL;
    pipe_kind agg_kind = P_COLL;
    for (uint32_t i = 0; i < ci->nfields; i++)
        if (ci->fields[i].role == R_FILTER)
            filter_field = &ci->fields[i];
    bson_iter_t p1 = it;
    do {
        const char *k = bson_iter_key(&p1);
        const field_spec *fs = find_field(ci, k);
        if (!fs)
            return deny(c, "unknown field", k);
        if (!(fs->modes & (c->field ? M_FIELD : M_DB)))
            return deny(c,
                        c->field ? "field is not allowed in field isolation"
                                 : "field is not allowed in database isolation",
                        k);
        if (inner && is_generic(k) && !inner_generic_ok(k))
            return deny(c, "field is not allowed in an explained command", k);
        uint32_t bit = (uint32_t)(fs - ci->fields);
        if (seen & (1ull << bit))
            return deny(c, "duplicate field", k);
        seen |= 1ull << bit;
        order[nkeys++] = fs;
        switch (fs->role) {
        case R_DB:
            db_it = p1;
            has_db = true;
            break;
        case R_FILTER:
            has_filter = true;
            break;
        case R_VERBOSITY:
            has_verbosity = true;
            break;
        case R_PIPELINE:
            has_pipeline = true;
            break;
        case R_AGG_NAME:
            if (bson_iter_type(&p1) == BSON_TYPE_UTF8) {
                TRY(check_coll(c, &p1));
                agg_kind = P_COLL;
            } else if (BSON_ITER_HOLDS_NUMBER(&p1) && bson_iter_as_int64(&p1) == 1 &&
                       (bson_iter_type(&p1) != BSON_TYPE_DOUBLE || bson_iter_double(&p1) == 1.0)) {
                agg_kind = P_NOCOLL;
            } else {
                return deny(c, "aggregate needs a collection name or 1", k);
            }
            break;
        default:
            break;
        }
    } while (bson_iter_next(&p1));

    /* $db: legal, reserved names only where the command allows, mapped in database mode */
    bool map = false;
    if (!inner) {
        uint32_t n;
        const char *db = has_db ? str_value(&db_it, &n) : NULL;
        if (!has_db)
            return deny(c, "$db is missing", "");
        if (!db || !db_legal(db, n))
            return deny(c, "illegal database name", "$db");
        bool reserved = db_reserved(db, n);
        if (reserved && !(cs->flags & C_ADMIN))
            return deny(c, "database is reserved", db);
        if ((cs->flags & C_ADMIN_ONLY) && !(n == 5 && !memcmp(db, "admin", 5)))
            return deny(c, "command must run on admin", name);
        c->db = db;
        c->db_len = n;
        map = !c->field && !reserved && !(cs->flags & C_NO_NS);
        if (map)
            TRY(map_db(c, db, n, c->backend_db));
        else {
            memcpy(c->backend_db, db, n);
            c->backend_db[n] = '\0';
        }
        tg_mongo_reply_map *rm = &c->r->reply;
        memcpy(rm->client_db, db, n);
        rm->client_db[n] = '\0';
        memcpy(rm->backend_db, c->backend_db, strlen(c->backend_db) + 1);
        rm->kind = cs->reply;
    }

    /* kind 1 sequences stand for a DOCS / UPDATES / DELETES field, given once */
    const field_spec *seq_field[TG_MONGO_SCOPE_MAX_SEQ];
    for (uint32_t i = 0; i < nseq; i++) {
        char id[64];
        if (seqs[i].id.len == 0 || seqs[i].id.len >= sizeof(id) ||
            memchr(seqs[i].id.base, '\0', seqs[i].id.len))
            return deny(c, "unknown document sequence", "");
        memcpy(id, seqs[i].id.base, seqs[i].id.len);
        id[seqs[i].id.len] = '\0';
        const field_spec *fs = find_field(ci, id);
        if (!fs || (fs->role != R_DOCS && fs->role != R_UPDATES && fs->role != R_DELETES))
            return deny(c, "unknown document sequence", id);
        uint32_t bit = (uint32_t)(fs - ci->fields);
        if (seen & (1ull << bit))
            return deny(c, "duplicate field", id);
        seen |= 1ull << bit;
        seq_field[i] = fs;
    }

    /* pass 2: every field through its role, in order */
    uint32_t i = 0;
    do {
        const field_spec *fs = order[i++];
        const char *k = bson_iter_key(&it);
        switch ((role)fs->role) {
        case R_ANY:
        case R_ONE:
        case R_AGG_NAME:
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_COLL:
            TRY(check_coll(c, &it));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_CURSOR_ID:
            if (!cursor_id(&it, &c->r->cursor_one))
                return deny(c, "getMore needs a cursor id", k);
            c->r->cursor_ids = &c->r->cursor_one;
            c->r->n_cursor_ids = 1;
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_CURSOR_IDS:
            TRY(collect_cursor_ids(c, &it));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_EXPLAIN: {
            uint32_t dl;
            const uint8_t *dd;
            bson_t src, out;
            if (!holds_doc(&it))
                return deny(c, "explain needs a command", k);
            bson_iter_document(&it, &dl, &dd);
            if (!bson_init_static(&src, dd, dl))
                return deny(c, "malformed command", k);
            APPEND(c, bson_append_document_begin(dst, k, -1, &out));
            TRY(scope_body(c, &src, &out, NULL, 0, true, depth + 1));
            APPEND(c, bson_append_document_end(dst, &out));
            break;
        }
        case R_VERBOSITY: {
            uint32_t n;
            const char *v = str_value(&it, &n);
            if (c->field && !(v && !strcmp(v, "queryPlanner")))
                return deny(c, "explain in field isolation needs verbosity queryPlanner", k);
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        }
        case R_LSIDS:
            TRY(emit_end_sessions(c, dst, k, &it));
            break;
        case R_NS:
            TRY(emit_ns_string(c, dst, k, &it));
            break;
        case R_FILTER:
            TRY(emit_filter(c, dst, k, &it, depth + 1));
            break;
        case R_FILTER_PLAIN:
            TRY(check_filter(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_PIPELINE:
            TRY(emit_pipeline(c, dst, k, &it, agg_kind, depth + 1));
            break;
        case R_VIEW_PIPE: /* database mode only: checked like a $facet branch, not scoped */
            TRY(emit_pipeline(c, dst, k, &it, P_FACET, depth + 1));
            break;
        case R_PROJECTION:
            TRY(check_projection(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_SORT:
            TRY(check_sort(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_LET:
            TRY(check_let(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_DOCS:
            TRY(emit_doc_array(c, dst, k, &it, insert_doc, depth + 1));
            break;
        case R_UPDATES:
            TRY(emit_doc_array(c, dst, k, &it, update_stmt, depth + 1));
            break;
        case R_DELETES:
            TRY(emit_doc_array(c, dst, k, &it, delete_stmt, depth + 1));
            break;
        case R_FAM_UPDATE:
            TRY(emit_update_u(c, dst, k, &it, depth + 1));
            break;
        case R_ARRAY_FILTERS:
            TRY(check_array_filters(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_INDEXES:
            TRY(check_indexes(c, &it, depth + 1));
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_FALSE:
            if (bson_iter_as_bool(&it))
                return deny(c, "field is only allowed as false", k);
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        case R_DENY:
            return deny(c, "field is not allowed", k);
        case R_DB:
            if (map) {
                APPEND(c, bson_append_utf8(dst, "$db", 3, c->backend_db, -1));
                c->changed = true;
            } else {
                APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            }
            break;
        case R_LSID:
            TRY(emit_lsid(c, dst, k, &it, true));
            break;
        case R_TXN:
            c->r->has_txn_number = true;
            APPEND(c, bson_append_iter(dst, NULL, 0, &it));
            break;
        }
    } while (bson_iter_next(&it));

    if (c->field && filter_field && !has_filter)
        TRY(emit_filter(c, dst, filter_field->name, NULL, depth + 1));
    if (cs->cmd == TG_MONGO_CMD_AGGREGATE && !has_pipeline)
        return deny(c, "aggregate needs a pipeline", name);
    if (cs->cmd == TG_MONGO_CMD_EXPLAIN && c->field && !has_verbosity)
        return deny(c, "explain in field isolation needs verbosity queryPlanner", name);

    for (uint32_t s = 0; s < nseq; s++) {
        doc_fn fn = seq_field[s]->role == R_DOCS      ? insert_doc
                    : seq_field[s]->role == R_UPDATES ? update_stmt
                                                      : delete_stmt;
        c->r->seq[s].id = seq_field[s]->name;
        TRY(emit_doc_seq(c, &seqs[s], &c->r->seq[s], fn));
    }
    return 0;
}

void tg_mongo_scoped_init(tg_mongo_scoped *r)
{
    memset(r, 0, sizeof(*r));
}

void tg_mongo_scoped_clear(tg_mongo_scoped *r)
{
    bson_free(r->body);
    for (uint32_t i = 0; i < TG_MONGO_SCOPE_MAX_SEQ; i++)
        free(r->seq[i].docs);
    if (r->cursor_ids && r->cursor_ids != &r->cursor_one)
        bson_free(r->cursor_ids);
    memset(r, 0, sizeof(*r));
}

tg_mongo_verdict tg_mongo_scope_command(tg_mongo_tenant *t, const bson_t *body,
                                        const tg_mongo_scope_seq *seqs, uint32_t nseq,
                                        tg_mongo_scoped *r)
{
    tg_mongo_scoped_clear(r);
    sc c = {.s = t->s, .t = t, .r = r, .field = t->s->isolation == TG_MONGO_SCOPE_FIELD};
    /* The new body is written straight into one buffer sized for the usual growth
     * (a tenant clause or two, a mapped $db), so it is rarely reallocated. (One
     * document at offset 0: clear of bson_writer_begin's overrun, see emit_doc_seq.) */
    size_t cap = (size_t)body->len + 512, len = 0;
    uint8_t *buf = bson_malloc(cap);
    bson_writer_t *w = bson_writer_new(&buf, &cap, 0, bson_realloc_ctx, NULL);
    bson_t *dst = NULL;
    int rc;
    if (!bson_writer_begin(w, &dst))
        rc = deny(&c, "out of memory", "");
    else if (nseq > TG_MONGO_SCOPE_MAX_SEQ)
        rc = deny(&c, "too many document sequences", "");
    else if (!tg_mongo_bson_valid(bson_get_data(body), body->len))
        rc = deny(&c, "malformed BSON", "");
    else
        rc = scope_body(&c, body, dst, seqs, nseq, false, 0);
    if (rc == 0) {
        bson_writer_end(w);
        len = bson_writer_get_length(w);
    }
    bson_writer_destroy(w);
    if (rc != 0) {
        bson_free(buf);
        tg_mongo_cmd cmd = r->cmd;
        const char *reason = r->reason ? r->reason : "command is not allowed";
        char what[sizeof(r->what)];
        memcpy(what, r->what, sizeof(what));
        tg_mongo_scoped_clear(r);
        r->cmd = cmd;
        r->reason = reason;
        memcpy(r->what, what, sizeof(what));
        r->kind = TG_MONGO_DENY;
        return r->kind;
    }
    if (c.change_stream)
        r->reply.kind = TG_MONGO_REPLY_CHANGE_STREAM;
    else if (c.field && r->reply.kind == TG_MONGO_REPLY_CURSOR)
        r->reply.kind = TG_MONGO_REPLY_NONE; /* namespaces are the client's own */
    if (!c.changed) {
        bson_free(buf);
        r->kind = TG_MONGO_FORWARD;
        return r->kind;
    }
    r->body = buf;
    r->body_len = (uint32_t)len;
    r->nseq = nseq;
    r->kind = TG_MONGO_REWRITE;
    return r->kind;
}

/* ---- replies ----------------------------------------------------------------------------- */

typedef struct rc_ctx {
    tg_mongo_tenant *t;
    const tg_mongo_reply_map *m;
    bool field;
} rc_ctx;

#define RAPPEND(x)                                                                                 \
    do {                                                                                           \
        if (!(x))                                                                                  \
            return TG_ENOMEM;                                                                      \
    } while (0)
#define RTRY(x)                                                                                    \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ < 0)                                                                               \
            return rc_;                                                                            \
    } while (0)

/* "backend_db.rest" -> "client_db.rest"; TG_EPROTO for any other database. */
static int map_ns_back(const rc_ctx *x, bson_t *dst, const char *key, const bson_iter_t *it)
{
    uint32_t n;
    const char *v = str_value(it, &n);
    size_t bn = strlen(x->m->backend_db), cn = strlen(x->m->client_db);
    if (!v || n <= bn || memcmp(v, x->m->backend_db, bn) != 0 || v[bn] != '.')
        return TG_EPROTO;
    char buf[TG_MONGO_DB_MAX + 512];
    if (cn + (n - bn) > sizeof(buf))
        return TG_EPROTO;
    memcpy(buf, x->m->client_db, cn);
    memcpy(buf + cn, v + bn, n - bn);
    RAPPEND(bson_append_utf8(dst, key, -1, buf, (int)(cn + n - bn)));
    return 0;
}

/* A change event's {db, coll} with db mapped back (database mode). */
static int map_event_ns(const rc_ctx *x, bson_t *dst, const bson_iter_t *it)
{
    bson_iter_t ch;
    bson_t out;
    if (x->field || !holds_doc(it)) {
        RAPPEND(bson_append_iter(dst, NULL, 0, it));
        return 0;
    }
    if (!bson_iter_recurse(it, &ch))
        return TG_EPROTO;
    RAPPEND(bson_append_document_begin(dst, bson_iter_key(it), -1, &out));
    while (bson_iter_next(&ch)) {
        if (!strcmp(bson_iter_key(&ch), "db")) {
            uint32_t n;
            const char *v = str_value(&ch, &n);
            char db[TG_MONGO_DB_MAX + 1];
            if (!v || !tg_mongo_tenant_unmap_db(x->t, v, n, db))
                return TG_EPROTO;
            RAPPEND(bson_append_utf8(&out, "db", 2, db, -1));
        } else {
            RAPPEND(bson_append_iter(&out, NULL, 0, &ch));
        }
    }
    RAPPEND(bson_append_document_end(dst, &out));
    return 0;
}

/* One change event: ns/to mapped back, lsid mapped back or dropped. */
static int map_event(const rc_ctx *x, bson_t *dst, const char *key, const bson_iter_t *it)
{
    bson_iter_t ch;
    bson_t out;
    if (!holds_doc(it) || !bson_iter_recurse(it, &ch))
        return TG_EPROTO;
    RAPPEND(bson_append_document_begin(dst, key, -1, &out));
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (!strcmp(k, "ns") || !strcmp(k, "to")) {
            RTRY(map_event_ns(x, &out, &ch));
        } else if (!strcmp(k, "lsid")) {
            bson_iter_t id;
            bson_subtype_t sub;
            uint32_t n = 0;
            const uint8_t *data = NULL;
            uint8_t client[16];
            if (bson_iter_recurse(&ch, &id) && bson_iter_find(&id, "id") &&
                bson_iter_type(&id) == BSON_TYPE_BINARY) {
                bson_iter_binary(&id, &sub, &n, &data);
                if (n == 16 && tg_mongo_tenant_unmap_lsid(x->t, data, client)) {
                    bson_t l;
                    RAPPEND(bson_append_document_begin(&out, "lsid", 4, &l));
                    RAPPEND(bson_append_binary(&l, "id", 2, BSON_SUBTYPE_UUID, client, 16));
                    RAPPEND(bson_append_document_end(&out, &l));
                }
            } /* unknown here (another connection's): dropped */
        } else {
            RAPPEND(bson_append_iter(&out, NULL, 0, &ch));
        }
    }
    RAPPEND(bson_append_document_end(dst, &out));
    return 0;
}

static int map_cursor(const rc_ctx *x, bson_t *dst, const bson_iter_t *it, bool events)
{
    bson_iter_t ch, el;
    bson_t out, arr;
    if (!bson_iter_recurse(it, &ch))
        return TG_EPROTO;
    RAPPEND(bson_append_document_begin(dst, "cursor", 6, &out));
    while (bson_iter_next(&ch)) {
        const char *k = bson_iter_key(&ch);
        if (!strcmp(k, "ns") && !x->field) {
            RTRY(map_ns_back(x, &out, k, &ch));
        } else if (events && (!strcmp(k, "firstBatch") || !strcmp(k, "nextBatch"))) {
            arr_key ak = {.i = 0};
            if (!holds_array(&ch) || !bson_iter_recurse(&ch, &el))
                return TG_EPROTO;
            RAPPEND(bson_append_array_begin(&out, k, -1, &arr));
            while (bson_iter_next(&el))
                RTRY(map_event(x, &arr, next_key(&ak), &el));
            RAPPEND(bson_append_array_end(&out, &arr));
        } else {
            RAPPEND(bson_append_iter(&out, NULL, 0, &ch));
        }
    }
    RAPPEND(bson_append_document_end(dst, &out));
    return 0;
}

static int map_list_databases(const rc_ctx *x, bson_t *dst, const bson_t *reply)
{
    bson_iter_t it, el, f;
    int64_t total = 0;
    /* pass 1: the tenant's total size */
    if (bson_iter_init_find(&it, reply, "databases") && holds_array(&it) &&
        bson_iter_recurse(&it, &el)) {
        while (bson_iter_next(&el)) {
            uint32_t n;
            const char *name;
            char db[TG_MONGO_DB_MAX + 1];
            if (!holds_doc(&el) || !bson_iter_recurse(&el, &f) || !bson_iter_find(&f, "name") ||
                !(name = str_value(&f, &n)) || !tg_mongo_tenant_unmap_db(x->t, name, n, db))
                continue;
            if (bson_iter_recurse(&el, &f) && bson_iter_find(&f, "sizeOnDisk") &&
                BSON_ITER_HOLDS_NUMBER(&f))
                total += bson_iter_as_int64(&f);
        }
    }
    if (!bson_iter_init(&it, reply))
        return TG_EPROTO;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!strcmp(k, "databases")) {
            bson_t arr, out;
            arr_key ak = {.i = 0};
            if (!holds_array(&it) || !bson_iter_recurse(&it, &el))
                return TG_EPROTO;
            RAPPEND(bson_append_array_begin(dst, k, -1, &arr));
            while (bson_iter_next(&el)) {
                uint32_t n;
                const char *name;
                char db[TG_MONGO_DB_MAX + 1];
                if (!holds_doc(&el) || !bson_iter_recurse(&el, &f) || !bson_iter_find(&f, "name") ||
                    !(name = str_value(&f, &n)) || !tg_mongo_tenant_unmap_db(x->t, name, n, db))
                    continue; /* not the tenant's */
                bson_iter_recurse(&el, &f);
                RAPPEND(bson_append_document_begin(&arr, next_key(&ak), -1, &out));
                while (bson_iter_next(&f)) {
                    if (!strcmp(bson_iter_key(&f), "name"))
                        RAPPEND(bson_append_utf8(&out, "name", 4, db, -1));
                    else if (!strcmp(bson_iter_key(&f), "shards"))
                        continue; /* shard names: the deployment's, not the tenant's */
                    else
                        RAPPEND(bson_append_iter(&out, NULL, 0, &f));
                }
                RAPPEND(bson_append_document_end(&arr, &out));
            }
            RAPPEND(bson_append_array_end(dst, &arr));
        } else if (!strcmp(k, "totalSize")) {
            RAPPEND(bson_append_int64(dst, k, -1, total));
        } else if (!strcmp(k, "totalSizeMb")) {
            RAPPEND(bson_append_int64(dst, k, -1, total / (1024 * 1024)));
        } else {
            RAPPEND(bson_append_iter(dst, NULL, 0, &it));
        }
    }
    return 0;
}

int tg_mongo_scope_reply(tg_mongo_tenant *t, const tg_mongo_reply_map *m, const bson_t *reply,
                         uint8_t **out, uint32_t *out_len)
{
    rc_ctx x = {t, m, t->s->isolation == TG_MONGO_SCOPE_FIELD};
    bson_iter_t it;
    bson_t dst;
    int rc = 0;
    *out = NULL;
    *out_len = 0;
    if (m->kind != TG_MONGO_REPLY_NONE && !tg_mongo_bson_valid(bson_get_data(reply), reply->len))
        return TG_EPROTO;
    switch (m->kind) {
    case TG_MONGO_REPLY_NONE:
        return 0;
    case TG_MONGO_REPLY_CURSOR:
    case TG_MONGO_REPLY_CHANGE_STREAM:
        if (x.field && m->kind == TG_MONGO_REPLY_CURSOR)
            return 0;
        if (!bson_iter_init_find(&it, reply, "cursor") || !holds_doc(&it))
            return 0; /* an error reply: nothing to map */
        bson_init(&dst);
        if (!bson_iter_init(&it, reply))
            rc = TG_EPROTO;
        while (rc == 0 && bson_iter_next(&it)) {
            if (!strcmp(bson_iter_key(&it), "cursor") && holds_doc(&it))
                rc = map_cursor(&x, &dst, &it, m->kind == TG_MONGO_REPLY_CHANGE_STREAM);
            else if (!bson_append_iter(&dst, NULL, 0, &it))
                rc = TG_ENOMEM;
        }
        break;
    case TG_MONGO_REPLY_LIST_DATABASES:
        if (x.field)
            return TG_EPROTO;
        bson_init(&dst);
        rc = map_list_databases(&x, &dst, reply);
        break;
    default:
        return TG_EPROTO;
    }
    if (rc < 0) {
        bson_destroy(&dst);
        return rc;
    }
    *out = bson_destroy_with_steal(&dst, true, out_len);
    return 1;
}
