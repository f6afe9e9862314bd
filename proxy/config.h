/*
 * tenantgate.yaml, parsed and validated.
 *
 *   file --libyaml events--> strict walker --> tg_config (immutable)
 *
 * Validation is strict: unknown keys, wrong types, missing required keys,
 * values out of range and unreadable secret files are errors whose message
 * names the file, the line and the key path ("tenantgate.yaml:12: listeners[0].backend.user: ...").
 * Secret files (`*_file`) are read at load time; one trailing newline is
 * dropped. A loaded tg_config is never modified: SIGHUP builds a new one.
 */
#ifndef TG_PROXY_CONFIG_H
#define TG_PROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { TG_LOG_DEBUG, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR } tg_log_level;
typedef enum { TG_LOG_FORMAT_JSON, TG_LOG_FORMAT_TEXT } tg_log_format;

typedef enum {
    TG_PROTO_TCP,
    TG_PROTO_POSTGRES,
    TG_PROTO_REDIS,
    TG_PROTO_MONGODB,
    TG_PROTO_BOLT
} tg_protocol;

/* Client-facing TLS: how a listener treats clients. */
typedef enum { TG_TLS_DISABLE, TG_TLS_ALLOW, TG_TLS_REQUIRE } tg_tls_mode;

/* Backend-facing TLS. */
typedef enum {
    TG_BACKEND_TLS_DISABLE,
    TG_BACKEND_TLS_REQUIRE,
    TG_BACKEND_TLS_VERIFY_FULL
} tg_backend_tls_mode;

/* Bits of tg_jwt_config.algorithms. "none" has no bit: it is never accepted. */
enum {
    TG_JWT_ALG_HS256 = 1u << 0,
    TG_JWT_ALG_HS384 = 1u << 1,
    TG_JWT_ALG_HS512 = 1u << 2,
    TG_JWT_ALG_RS256 = 1u << 3,
    TG_JWT_ALG_RS384 = 1u << 4,
    TG_JWT_ALG_RS512 = 1u << 5,
    TG_JWT_ALG_ES256 = 1u << 6,
    TG_JWT_ALG_ES384 = 1u << 7,
    TG_JWT_ALG_PS256 = 1u << 8,
};

/* A secret read from a *_file key: bytes (NUL-terminated for convenience) and length. */
typedef struct tg_secret {
    char *path; /* the file it came from; NULL when not configured */
    char *data; /* contents, one trailing newline dropped; NULL when not configured */
    size_t len;
} tg_secret;

typedef struct tg_jwt_config {
    uint32_t algorithms;      /* TG_JWT_ALG_* bits; default RS256|ES256|HS256 */
    tg_secret hs256_secret;   /* hs256_secret_file */
    tg_secret public_key;     /* public_key_file (PEM, RSA or EC) */
    tg_secret jwks;           /* jwks_file (JSON Web Key Set) */
    char *issuer;             /* checked when non-NULL */
    char *audience;           /* checked when non-NULL */
    char *tenant_claim;       /* default "tenant_id" */
    uint32_t leeway_s;        /* default 30 */
    uint32_t cache_size;      /* verified-token cache entries per worker; default 4096, 0 = off */
    uint32_t max_token_bytes; /* default 8192 */
} tg_jwt_config;

typedef struct tg_sni_config {
    char *suffix;     /* NULL: SNI not used */
    char *slug_claim; /* default "tenant_slug" */
} tg_sni_config;

typedef struct tg_client_tls_config {
    tg_tls_mode mode; /* default disable */
    char *cert_file;  /* required unless mode is disable */
    char *key_file;
} tg_client_tls_config;

typedef struct tg_backend_config {
    char *address;           /* "host:port", required */
    char *user;              /* optional */
    tg_secret password;      /* password_file, optional */
    char *auth_db;           /* mongodb only; default "admin" */
    tg_backend_tls_mode tls; /* `tls: disable|require|verify-full`; default disable */
    char *ca_file;           /* for verify-full (also used by require when set) */
    char *server_name;       /* SNI / name to verify; default: host part of address */
} tg_backend_config;

typedef struct tg_postgres_config {
    char *tenant_setting; /* default "app.tenant_id" */
    bool allow_ddl;       /* default false */
    char **databases;     /* allow-list, NULL-terminated; NULL = any */
    size_t n_databases;
    char *tenant_column; /* `check`: tables with this column need forced RLS; default "tenant_id" */
    char **
        reserved_settings; /* extra settings clients may not change, NULL-terminated; NULL = none */
    size_t n_reserved_settings;
    char **deny_functions; /* extra denied functions (added to the safe defaults); NULL = none */
    size_t n_deny_functions;
    char **deny_relations; /* extra denied relations (added to the safe defaults); NULL = none */
    size_t n_deny_relations;
    bool signed_context; /* also set tenantgate.tenant_sig = HMAC-SHA256(key, tenant); default false
                          */
    tg_secret context_key;               /* context_key_file: required when signed_context */
    uint32_t max_message_bytes;          /* default 64 MiB */
    uint32_t max_connections_per_tenant; /* per listener, this process; default 0 = unlimited */
    uint32_t session_timeout_s;          /* a session ends after this long; default 0 = never */
} tg_postgres_config;

typedef struct tg_redis_config {
    char *key_prefix;        /* default "t:{tenant}:" */
    bool allow_scripts;      /* default false; true: per-tenant ACL users on the backend */
    tg_secret acl_key;       /* acl_key_file: derives each tenant's ACL password; required
                                with allow_scripts (>= 32 bytes) */
    char *acl_user_template; /* ACL user name per tenant; default "tenantgate:{tenant}" */
    uint32_t max_connections_per_tenant; /* per listener, this process; default 0 = unlimited */
} tg_redis_config;

typedef enum { TG_MONGO_ISOLATION_FIELD, TG_MONGO_ISOLATION_DATABASE } tg_mongo_isolation;

typedef struct tg_mongodb_config {
    tg_mongo_isolation isolation; /* default field */
    char *tenant_field;           /* default "tenant_id" */
    char *database_template;      /* default "{db}_{tenant}"; database isolation: {db} and
                                     {tenant} once each, a separator between them */
    bool allow_drop;              /* database isolation only: drop, dropDatabase,
                                     renameCollection; default false */
    bool allow_change_streams;    /* $changeStream (field isolation: the tenant's documents'
                                     events only); default false */
} tg_mongodb_config;

typedef enum {
    TG_BOLT_ISOLATION_PROPERTY,
    TG_BOLT_ISOLATION_LABEL,
    TG_BOLT_ISOLATION_DATABASE
} tg_bolt_isolation;

typedef struct tg_bolt_config {
    tg_bolt_isolation isolation; /* default property */
    char *tenant_property;       /* default "tenant_id" */
    char *label_template;        /* default "Tenant_{tenant}" */
    char *database_template;     /* default "tenant-{tenant}" */
    /* The address ROUTE answers list (host:port); NULL: the listen address. */
    char *advertised_address;
    /* The database clients name (default "neo4j"): the only one in property and label modes;
     * in database mode the client-side name that maps to the tenant's database. */
    char *database;
    char **allow_procedures; /* procedures clients may CALL ("name" or "prefix.*"); NULL = none */
    size_t n_allow_procedures;
    char **allow_functions; /* namespaced functions clients may call (same forms); NULL = none */
    size_t n_allow_functions;
    bool hide_tenant_property; /* property mode: drop tenant_property from returned nodes */
} tg_bolt_config;

typedef struct tg_timeouts_config {
    uint32_t connect_ms;   /* backend connect; default 5000 */
    uint32_t handshake_ms; /* client connect until the session is established; default 10000 */
    uint32_t idle_s;       /* no bytes either way; default 0 = never */
} tg_timeouts_config;

typedef struct tg_listener_config {
    char *name;           /* required, unique */
    tg_protocol protocol; /* required */
    char *listen;         /* "host:port", required */
    tg_client_tls_config tls;
    tg_backend_config backend;
    bool unsafe_passthrough;   /* required true for protocol tcp */
    uint32_t max_connections;  /* across all workers; default 10000 */
    uint32_t high_water_bytes; /* pending writes toward a side before its peer is paused; default
                                  262144 */
    tg_timeouts_config timeouts;
    /* Exactly the section of this listener's protocol is meaningful; the
     * others hold defaults. A section for another protocol is an error. */
    tg_postgres_config postgres;
    tg_redis_config redis;
    tg_mongodb_config mongodb;
    tg_bolt_config bolt;
} tg_listener_config;

/*
 * Per-tenant limits (SPEC §6 invariant 5): defaults under tenants.limits, overridden per tenant
 * by the fields of the same names in its registry hash. 0 means unlimited everywhere.
 */
typedef struct tg_tenant_limits {
    uint32_t max_connections;            /* open sessions per listener, this process */
    uint32_t messages_per_second;        /* token bucket per listener, this process */
    uint32_t burst;                      /* bucket size; 0: messages_per_second */
    uint32_t global_messages_per_second; /* sliding window per listener shared through the
                                            registry by every tenantgate using it */
    uint32_t max_inflight_bytes;         /* request bytes sent to backends and not yet answered,
                                            per listener, this process */
} tg_tenant_limits;

/* tenants.on_registry_failure: what authentication does while the registry cannot be asked. */
typedef enum { TG_REGISTRY_FAILURE_DENY, TG_REGISTRY_FAILURE_CACHED } tg_registry_failure;

typedef struct tg_registry_config {
    char *address;       /* "host:port" of the registry's redis-server; NULL: no registry */
    char *user;          /* ACL user for AUTH; NULL: AUTH <password> only */
    tg_secret password;  /* password_file; none: no AUTH */
    char *key_prefix;    /* default "tenantgate:" */
    uint32_t timeout_ms; /* bounds a connect and every lookup; default 1000 */
} tg_registry_config;

typedef struct tg_tenants_config {
    tg_registry_config registry;
    bool require_registered;                 /* unknown tenants are refused; default false */
    uint32_t cache_ttl_s;                    /* registry answers remembered; default 60, 0 = off */
    uint32_t cache_size;                     /* entries per worker; default 10000 */
    tg_registry_failure on_registry_failure; /* default deny */
    tg_tenant_limits limits;                 /* defaults for every tenant */
} tg_tenants_config;

typedef struct tg_config {
    char *path;               /* the file it was loaded from */
    uint32_t workers;         /* default: CPU count */
    uint32_t drain_timeout_s; /* SIGTERM drain deadline; default 30 */
    char *admin_listen;       /* admin.listen; NULL: no admin server */
    bool admin_quitquitquit;  /* admin.quitquitquit: POST /quitquitquit drains; default false */
    tg_log_level log_level;   /* default info */
    tg_log_format log_format; /* default json */
    tg_jwt_config jwt;
    tg_sni_config sni;
    tg_tenants_config tenants;
    tg_listener_config *listeners;
    size_t n_listeners;
} tg_config;

/*
 * Parses and validates the YAML text (len bytes, need not be NUL-terminated).
 * `name` is used in error messages and as the base for relative *_file paths
 * (relative paths are taken from the directory of `name`).
 * On success returns 0 and a new config in *out (free with tg_config_free).
 * On failure returns TG_ECONFIG and writes "name:line: key.path: problem"
 * into err (errlen bytes, always NUL-terminated); *out is untouched.
 */
__attribute__((warn_unused_result)) int tg_config_parse(const char *yaml, size_t len,
                                                        const char *name, tg_config **out,
                                                        char *err, size_t errlen);

/* Reads the file at path and parses it as tg_config_parse does. */
__attribute__((warn_unused_result)) int tg_config_load(const char *path, tg_config **out, char *err,
                                                       size_t errlen);

/* Frees a config and every string it owns (secrets are zeroed first). NULL is fine. */
void tg_config_free(tg_config *cfg);

/* Returns the listener named `name`, or NULL. */
const tg_listener_config *tg_config_find_listener(const tg_config *cfg, const char *name);

/* Names for enums, for logs and errors. */
const char *tg_protocol_name(tg_protocol p);

/*
 * Splits "host:port" / "[v6]:port" into host (without brackets) and port.
 * Returns 0 or TG_EINVAL. host must have room for hostlen bytes.
 */
__attribute__((warn_unused_result)) int tg_config_split_address(const char *address, char *host,
                                                                size_t hostlen, uint16_t *port);

#endif
