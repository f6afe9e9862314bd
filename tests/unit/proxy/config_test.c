/*
 * Tests for proxy/config.c: tenantgate.yaml parsing and validation.
 *
 * The group setup makes a mkdtemp() directory holding the files a config can
 * point at (secrets with various trailing newlines, a PEM, a JWKS, certs),
 * and every config is parsed with the name "<dir>/tenantgate.yaml" so that
 * relative *_file paths resolve into it. Error tests assert the whole prefix
 * "<name>:<line>: <key.path>: <problem>" of the message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/config.h"
#include "proxy/error.h"

static char dir[128];
static char cfgname[192];

static const char *const files[][2] = {
    {"jwt-secret", "s3cret-s3cret\n"},
    {"pg-pass", "pgpass\r\n"},
    {"redis-pass", "redispass"},
    {"two-newlines", "abc\n\n"},
    {"only-newline", "\n"},
    {"empty", ""},
    {"jwt.pem", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"},
    {"jwks.json", "{\"keys\": []}\n"},
    {"server.crt", "cert\n"},
    {"server.key", "key\n"},
    {"ca.pem", "ca\n"},
    {"sub/nested-secret", "nested\n"},
    {"context-key", "0123456789abcdef0123456789abcdef\n"}, /* 32 bytes once "\n" is dropped */
    {"short-key", "0123456789abcdef0123456789abcde\n"},    /* 31 bytes */
};

static void write_file(const char *name, const char *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void remove_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/tg-config-test-XXXXXX");
    if (!mkdtemp(dir)) {
        return -1;
    }
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    if (mkdir(sub, 0700) != 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        write_file(files[i][0], files[i][1], strlen(files[i][1]));
    }
    snprintf(cfgname, sizeof cfgname, "%s/tenantgate.yaml", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        remove_file(files[i][0]);
    }
    remove_file("tenantgate.yaml");
    remove_file("big");
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    rmdir(sub);
    rmdir(dir);
    return 0;
}

static int parse(const char *yaml, tg_config **cfg, char *err, size_t errlen)
{
    return tg_config_parse(yaml, strlen(yaml), cfgname, cfg, err, errlen);
}

static tg_config *parse_ok(const char *yaml)
{
    char err[512] = "";
    tg_config *cfg = NULL;
    int rc = parse(yaml, &cfg, err, sizeof err);
    if (rc != 0) {
        print_error("unexpected error: %s\n", err);
    }
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    return cfg;
}

/* Asserts the config fails with a message starting "<cfgname>:<expected>". */
static void expect_error(const char *yaml, const char *expected)
{
    char err[512];
    memset(err, 'X', sizeof err);
    tg_config *cfg = (tg_config *)0x1;
    int rc = parse(yaml, &cfg, err, sizeof err);
    assert_int_equal(rc, TG_ECONFIG);
    assert_ptr_equal(cfg, (tg_config *)0x1); /* untouched on failure */
    char want[2048];
    snprintf(want, sizeof want, "%s:%s", cfgname, expected);
    if (strncmp(err, want, strlen(want)) != 0) {
        print_error("expected: %s\n     got: %s\n", want, err);
        fail();
    }
}

/* Lines 1-3: a JWT key source, so that non-tcp listeners are allowed. */
#define AUTH "auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n"
/* Lines 4-8 after AUTH: one postgres listener. */
#define PG_LISTENER                                                                                \
    "listeners:\n"                                                                                 \
    "  - name: pg\n"                                                                               \
    "    protocol: postgres\n"                                                                     \
    "    listen: 127.0.0.1:6432\n"                                                                 \
    "    backend: {address: 127.0.0.1:5432}\n"

static const char full_yaml[] =
    "workers: 3\n"
    "drain_timeout_s: 12\n"
    "admin:\n"
    "  listen: 127.0.0.1:9187\n"
    "  quitquitquit: true\n"
    "log:\n"
    "  level: debug\n"
    "  format: text\n"
    "auth:\n"
    "  jwt:\n"
    "    algorithms: [RS256, ES384, HS512, PS256]\n"
    "    hs256_secret_file: jwt-secret\n"
    "    public_key_file: jwt.pem\n"
    "    jwks_file: jwks.json\n"
    "    issuer: https://auth.example.com/\n"
    "    audience: tenantgate\n"
    "    tenant_claim: org\n"
    "    leeway_s: 5\n"
    "    cache_size: 0\n"
    "    max_token_bytes: 4096\n"
    "  sni:\n"
    "    suffix: .db.example.com\n"
    "    slug_claim: slug\n"
    "listeners:\n"
    "  - name: pg\n"
    "    protocol: postgres\n"
    "    listen: 127.0.0.1:6432\n"
    "    tls: {mode: require, cert_file: server.crt, key_file: server.key}\n"
    "    backend:\n"
    "      address: db.internal:5432\n"
    "      user: app\n"
    "      password_file: pg-pass\n"
    "      tls: verify-full\n"
    "      ca_file: ca.pem\n"
    "      server_name: pg.example.com\n"
    "    max_connections: 50\n"
    "    high_water_bytes: 65536\n"
    "    timeouts: {connect_ms: 100, handshake_ms: 200, idle_s: 300}\n"
    "    postgres:\n"
    "      tenant_setting: myapp.tenant\n"
    "      allow_ddl: true\n"
    "      databases: [app, reports]\n"
    "  - name: redis\n"
    "    protocol: redis\n"
    "    listen: \"[::1]:6380\"\n"
    "    backend: {address: 127.0.0.1:6379, user: default, password_file: redis-pass}\n"
    "    redis:\n"
    "      key_prefix: \"tenant:{tenant}:\"\n"
    "      allow_scripts: true\n"
    "      max_connections_per_tenant: 7\n"
    "      acl_key_file: context-key\n"
    "      acl_user_template: \"tg-acl-{tenant}\"\n"
    "  - name: mongo\n"
    "    protocol: mongodb\n"
    "    listen: 127.0.0.1:27018\n"
    "    backend: {address: 127.0.0.1:27017, user: svc, auth_db: users, tls: require}\n"
    "    mongodb:\n"
    "      isolation: database\n"
    "      tenant_field: meta.tenant\n"
    "      database_template: \"t_{tenant}_{db}\"\n"
    "      allow_drop: true\n"
    "      allow_change_streams: true\n"
    "  - name: graph\n"
    "    protocol: bolt\n"
    "    listen: 127.0.0.1:7688\n"
    "    tls: {mode: allow, cert_file: server.crt, key_file: server.key}\n"
    "    backend: {address: \"[fe80::1%eth0]:7687\", user: neo4j}\n"
    "    bolt:\n"
    "      isolation: label\n"
    "      tenant_property: tid\n"
    "      label_template: \"T_{tenant}\"\n"
    "      database_template: \"db-{tenant}\"\n"
    "  - name: raw_tcp-1\n"
    "    protocol: tcp\n"
    "    listen: 0.0.0.0:9000\n"
    "    unsafe_passthrough: true\n"
    "    backend: {address: localhost:9001}\n";

static void path_in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void test_full_config(void **state)
{
    (void)state;
    tg_config *cfg = parse_ok(full_yaml);
    char p[512];

    assert_string_equal(cfg->path, cfgname);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->drain_timeout_s, 12);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9187");
    assert_true(cfg->admin_quitquitquit);
    assert_int_equal(cfg->log_level, TG_LOG_DEBUG);
    assert_int_equal(cfg->log_format, TG_LOG_FORMAT_TEXT);

    const tg_jwt_config *j = &cfg->jwt;
    assert_int_equal(j->algorithms,
                     TG_JWT_ALG_RS256 | TG_JWT_ALG_ES384 | TG_JWT_ALG_HS512 | TG_JWT_ALG_PS256);
    assert_int_equal(j->hs256_secret.len, strlen("s3cret-s3cret"));
    assert_memory_equal(j->hs256_secret.data, "s3cret-s3cret", j->hs256_secret.len);
    assert_int_equal(j->hs256_secret.data[j->hs256_secret.len], '\0');
    path_in_dir(p, sizeof p, "jwt-secret");
    assert_string_equal(j->hs256_secret.path, p);
    assert_string_equal(j->public_key.data,
                        "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----");
    assert_string_equal(j->jwks.data, "{\"keys\": []}");
    assert_string_equal(j->issuer, "https://auth.example.com/");
    assert_string_equal(j->audience, "tenantgate");
    assert_string_equal(j->tenant_claim, "org");
    assert_int_equal(j->leeway_s, 5);
    assert_int_equal(j->cache_size, 0);
    assert_int_equal(j->max_token_bytes, 4096);
    assert_string_equal(cfg->sni.suffix, ".db.example.com");
    assert_string_equal(cfg->sni.slug_claim, "slug");

    assert_int_equal(cfg->n_listeners, 5);
    const tg_listener_config *pg = &cfg->listeners[0];
    assert_string_equal(pg->name, "pg");
    assert_int_equal(pg->protocol, TG_PROTO_POSTGRES);
    assert_string_equal(pg->listen, "127.0.0.1:6432");
    assert_int_equal(pg->tls.mode, TG_TLS_REQUIRE);
    path_in_dir(p, sizeof p, "server.crt");
    assert_string_equal(pg->tls.cert_file, p);
    path_in_dir(p, sizeof p, "server.key");
    assert_string_equal(pg->tls.key_file, p);
    assert_string_equal(pg->backend.address, "db.internal:5432");
    assert_string_equal(pg->backend.user, "app");
    assert_string_equal(pg->backend.password.data, "pgpass"); /* "\r\n" dropped */
    assert_int_equal(pg->backend.password.len, 6);
    assert_null(pg->backend.auth_db);
    assert_int_equal(pg->backend.tls, TG_BACKEND_TLS_VERIFY_FULL);
    path_in_dir(p, sizeof p, "ca.pem");
    assert_string_equal(pg->backend.ca_file, p);
    assert_string_equal(pg->backend.server_name, "pg.example.com");
    assert_false(pg->unsafe_passthrough);
    assert_int_equal(pg->max_connections, 50);
    assert_int_equal(pg->high_water_bytes, 65536);
    assert_int_equal(pg->timeouts.connect_ms, 100);
    assert_int_equal(pg->timeouts.handshake_ms, 200);
    assert_int_equal(pg->timeouts.idle_s, 300);
    assert_string_equal(pg->postgres.tenant_setting, "myapp.tenant");
    assert_true(pg->postgres.allow_ddl);
    assert_int_equal(pg->postgres.n_databases, 2);
    assert_string_equal(pg->postgres.databases[0], "app");
    assert_string_equal(pg->postgres.databases[1], "reports");
    assert_null(pg->postgres.databases[2]);

    const tg_listener_config *r = &cfg->listeners[1];
    assert_int_equal(r->protocol, TG_PROTO_REDIS);
    assert_string_equal(r->listen, "[::1]:6380");
    assert_string_equal(r->backend.password.data, "redispass"); /* no newline: kept whole */
    assert_string_equal(r->backend.server_name, "127.0.0.1");
    assert_string_equal(r->redis.key_prefix, "tenant:{tenant}:");
    assert_true(r->redis.allow_scripts);
    assert_int_equal(r->redis.max_connections_per_tenant, 7);
    assert_int_equal(r->redis.acl_key.len, 32);
    assert_memory_equal(r->redis.acl_key.data, "0123456789abcdef0123456789abcdef", 32);
    assert_string_equal(r->redis.acl_user_template, "tg-acl-{tenant}");

    const tg_listener_config *m = &cfg->listeners[2];
    assert_int_equal(m->protocol, TG_PROTO_MONGODB);
    assert_string_equal(m->backend.auth_db, "users");
    assert_int_equal(m->backend.tls, TG_BACKEND_TLS_REQUIRE);
    assert_null(m->backend.password.data);
    assert_null(m->backend.password.path);
    assert_int_equal(m->mongodb.isolation, TG_MONGO_ISOLATION_DATABASE);
    assert_string_equal(m->mongodb.tenant_field, "meta.tenant");
    assert_string_equal(m->mongodb.database_template, "t_{tenant}_{db}");
    assert_true(m->mongodb.allow_drop);
    assert_true(m->mongodb.allow_change_streams);

    const tg_listener_config *b = &cfg->listeners[3];
    assert_int_equal(b->protocol, TG_PROTO_BOLT);
    assert_int_equal(b->tls.mode, TG_TLS_ALLOW);
    assert_string_equal(b->backend.server_name, "fe80::1%eth0");
    assert_int_equal(b->bolt.isolation, TG_BOLT_ISOLATION_LABEL);
    assert_string_equal(b->bolt.tenant_property, "tid");
    assert_string_equal(b->bolt.label_template, "T_{tenant}");
    assert_string_equal(b->bolt.database_template, "db-{tenant}");

    const tg_listener_config *t = &cfg->listeners[4];
    assert_string_equal(t->name, "raw_tcp-1");
    assert_int_equal(t->protocol, TG_PROTO_TCP);
    assert_true(t->unsafe_passthrough);

    assert_ptr_equal(tg_config_find_listener(cfg, "mongo"), m);
    assert_ptr_equal(tg_config_find_listener(cfg, "raw_tcp-1"), t);
    assert_null(tg_config_find_listener(cfg, "nope"));
    assert_null(tg_config_find_listener(NULL, "pg"));
    tg_config_free(cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    tg_config *cfg = parse_ok(AUTH PG_LISTENER);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t want = cpus < 1 ? 1 : cpus > 256 ? 256 : (uint32_t)cpus;
    assert_int_equal(cfg->workers, want);
    assert_int_equal(cfg->drain_timeout_s, 30);
    assert_null(cfg->admin_listen);
    assert_false(cfg->admin_quitquitquit);
    assert_int_equal(cfg->log_level, TG_LOG_INFO);
    assert_int_equal(cfg->log_format, TG_LOG_FORMAT_JSON);
    assert_int_equal(cfg->jwt.algorithms, TG_JWT_ALG_RS256 | TG_JWT_ALG_ES256 | TG_JWT_ALG_HS256);
    assert_null(cfg->jwt.public_key.data);
    assert_null(cfg->jwt.jwks.path);
    assert_null(cfg->jwt.issuer);
    assert_null(cfg->jwt.audience);
    assert_string_equal(cfg->jwt.tenant_claim, "tenant_id");
    assert_int_equal(cfg->jwt.leeway_s, 30);
    assert_int_equal(cfg->jwt.cache_size, 4096);
    assert_int_equal(cfg->jwt.max_token_bytes, 8192);
    assert_null(cfg->sni.suffix);
    assert_string_equal(cfg->sni.slug_claim, "tenant_slug");

    const tg_listener_config *l = &cfg->listeners[0];
    assert_int_equal(l->tls.mode, TG_TLS_DISABLE);
    assert_null(l->tls.cert_file);
    assert_null(l->backend.user);
    assert_null(l->backend.password.data);
    assert_int_equal(l->backend.tls, TG_BACKEND_TLS_DISABLE);
    assert_null(l->backend.ca_file);
    assert_string_equal(l->backend.server_name, "127.0.0.1");
    assert_false(l->unsafe_passthrough);
    assert_int_equal(l->max_connections, 10000);
    assert_int_equal(l->high_water_bytes, 262144);
    assert_int_equal(l->timeouts.connect_ms, 5000);
    assert_int_equal(l->timeouts.handshake_ms, 10000);
    assert_int_equal(l->timeouts.idle_s, 0);
    /* every section holds its defaults */
    assert_string_equal(l->postgres.tenant_setting, "app.tenant_id");
    assert_false(l->postgres.allow_ddl);
    assert_null(l->postgres.databases);
    assert_int_equal(l->postgres.n_databases, 0);
    assert_string_equal(l->postgres.tenant_column, "tenant_id");
    assert_null(l->postgres.reserved_settings);
    assert_int_equal(l->postgres.n_reserved_settings, 0);
    assert_null(l->postgres.deny_functions);
    assert_int_equal(l->postgres.n_deny_functions, 0);
    assert_null(l->postgres.deny_relations);
    assert_int_equal(l->postgres.n_deny_relations, 0);
    assert_false(l->postgres.signed_context);
    assert_null(l->postgres.context_key.path);
    assert_null(l->postgres.context_key.data);
    assert_int_equal(l->postgres.max_message_bytes, 64u << 20);
    assert_int_equal(l->postgres.max_connections_per_tenant, 0);
    assert_int_equal(l->postgres.session_timeout_s, 0);
    assert_string_equal(l->redis.key_prefix, "t:{tenant}:");
    assert_false(l->redis.allow_scripts);
    assert_int_equal(l->redis.max_connections_per_tenant, 0);
    assert_null(l->redis.acl_key.data);
    assert_string_equal(l->redis.acl_user_template, "tenantgate:{tenant}");
    assert_int_equal(l->mongodb.isolation, TG_MONGO_ISOLATION_FIELD);
    assert_string_equal(l->mongodb.tenant_field, "tenant_id");
    assert_string_equal(l->mongodb.database_template, "{db}_{tenant}");
    assert_false(l->mongodb.allow_drop);
    assert_false(l->mongodb.allow_change_streams);
    assert_int_equal(l->bolt.isolation, TG_BOLT_ISOLATION_PROPERTY);
    assert_string_equal(l->bolt.tenant_property, "tenant_id");
    assert_string_equal(l->bolt.label_template, "Tenant_{tenant}");
    assert_string_equal(l->bolt.database_template, "tenant-{tenant}");
    assert_null(l->bolt.advertised_address);
    assert_string_equal(l->bolt.database, "neo4j");
    assert_null(l->bolt.allow_procedures);
    assert_null(l->bolt.allow_functions);
    assert_false(l->bolt.hide_tenant_property);
    tg_config_free(cfg);

    /* mongodb listeners get auth_db "admin" */
    cfg = parse_ok(AUTH "listeners:\n"
                        "  - {name: m, protocol: mongodb, listen: 127.0.0.1:1, backend: "
                        "{address: 127.0.0.1:2}}\n");
    assert_string_equal(cfg->listeners[0].backend.auth_db, "admin");
    tg_config_free(cfg);
    tg_config_free(NULL);
}

static void test_load_file(void **state)
{
    (void)state;
    write_file("tenantgate.yaml", full_yaml, strlen(full_yaml));
    char err[512];
    tg_config *cfg = NULL;
    assert_int_equal(tg_config_load(cfgname, &cfg, err, sizeof err), 0);
    assert_int_equal(cfg->n_listeners, 5);
    const tg_listener_config *l = tg_config_find_listener(cfg, "graph");
    assert_non_null(l);
    assert_string_equal(tg_protocol_name(l->protocol), "bolt");
    assert_string_equal(tg_protocol_name(TG_PROTO_TCP), "tcp");
    assert_string_equal(tg_protocol_name(TG_PROTO_POSTGRES), "postgres");
    assert_string_equal(tg_protocol_name(TG_PROTO_REDIS), "redis");
    assert_string_equal(tg_protocol_name(TG_PROTO_MONGODB), "mongodb");
    tg_config_free(cfg);

    const char bad[] = "workers: 1\nbogus: 2\n";
    write_file("tenantgate.yaml", bad, strlen(bad));
    cfg = NULL;
    assert_int_equal(tg_config_load(cfgname, &cfg, err, sizeof err), TG_ECONFIG);
    assert_null(cfg);
    char want[1024];
    snprintf(want, sizeof want, "%s:2: bogus: unknown key", cfgname);
    assert_string_equal(err, want);

    char missing[256];
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    assert_int_equal(tg_config_load(missing, &cfg, err, sizeof err), TG_ECONFIG);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    assert_string_equal(err, want);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_error("workerz: 2\n" AUTH PG_LISTENER, "1: workerz: unknown key");
    expect_error("auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    leeway: 3\n" PG_LISTENER,
                 "4: auth.jwt.leeway: unknown key");
    expect_error("auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n  oidc: {}\n" PG_LISTENER,
                 "4: auth.oidc: unknown key");
    expect_error(AUTH PG_LISTENER "    color: blue\n", "9: listeners[0].color: unknown key");
    expect_error(AUTH "listeners:\n"
                      "  - name: pg\n"
                      "    protocol: postgres\n"
                      "    listen: 127.0.0.1:6432\n"
                      "    backend:\n"
                      "      address: 127.0.0.1:5432\n"
                      "      pasword_file: pg-pass\n",
                 "10: listeners[0].backend.pasword_file: unknown key");
    expect_error(AUTH PG_LISTENER "    postgres:\n      allow_dml: true\n",
                 "10: listeners[0].postgres.allow_dml: unknown key");
    expect_error(AUTH PG_LISTENER "    timeouts: {connect_ms: 1, read_ms: 2}\n",
                 "9: listeners[0].timeouts.read_ms: unknown key");
    expect_error(AUTH PG_LISTENER "    tls: {mode: disable, ciphers: x}\n",
                 "9: listeners[0].tls.ciphers: unknown key");
    expect_error("log: {level: info, colour: true}\n" AUTH PG_LISTENER,
                 "1: log.colour: unknown key");
    /* a key with control characters is shown printable */
    expect_error("\"a\\tb\": 1\n", "1: a?b: unknown key");
    /* a non-string key */
    expect_error("? [a, b]\n: 1\n", "1: (document): mapping keys must be strings");
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_error(AUTH "listeners:\n"
                      "  - name: pg\n"
                      "    protocol: postgres\n"
                      "    listen: 127.0.0.1:6432\n"
                      "    backend:\n"
                      "      address: 127.0.0.1:5432\n"
                      "      user: {name: app}\n",
                 "10: listeners[0].backend.user: expected a string");
    expect_error("workers: many\n" AUTH PG_LISTENER, "1: workers: expected an integer");
    expect_error("workers: -1\n" AUTH PG_LISTENER, "1: workers: must not be negative");
    expect_error("workers: \"4\"\n" AUTH PG_LISTENER, "1: workers: expected an integer");
    expect_error("workers: 2.5\n" AUTH PG_LISTENER, "1: workers: expected an integer");
    expect_error("workers: 010\n" AUTH PG_LISTENER, "1: workers: expected an integer");
    expect_error("workers: [1]\n" AUTH PG_LISTENER, "1: workers: expected an integer");
    expect_error(AUTH PG_LISTENER "    postgres: {allow_ddl: yes}\n",
                 "9: listeners[0].postgres.allow_ddl: expected true or false");
    expect_error(AUTH PG_LISTENER "    postgres: {allow_ddl: \"true\"}\n",
                 "9: listeners[0].postgres.allow_ddl: expected true or false");
    expect_error(AUTH PG_LISTENER "    postgres: {databases: app}\n",
                 "9: listeners[0].postgres.databases: expected a list");
    expect_error(AUTH PG_LISTENER "    postgres:\n      databases: [app, {x: 1}]\n",
                 "10: listeners[0].postgres.databases[1]: expected a string");
    expect_error(AUTH PG_LISTENER "    postgres: {databases: []}\n",
                 "9: listeners[0].postgres.databases: must list at least one database");
    expect_error(AUTH "listeners: {pg: 1}\n", "4: listeners: expected a list");
    expect_error(AUTH "listeners: [pg]\n", "4: listeners[0]: expected a mapping");
    expect_error(AUTH PG_LISTENER "    tls: require\n", "9: listeners[0].tls: expected a mapping");
    expect_error("admin:\n" AUTH PG_LISTENER, "1: admin: expected a mapping");
    expect_error("auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    issuer:\n" PG_LISTENER,
                 "4: auth.jwt.issuer: expected a string");
    expect_error("auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    issuer: ~\n" PG_LISTENER,
                 "4: auth.jwt.issuer: expected a string");
    expect_error(
        "auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    tenant_claim: \"\"\n" PG_LISTENER,
        "4: auth.jwt.tenant_claim: must not be empty");
    expect_error(
        "auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    audience: \"a\\nb\"\n" PG_LISTENER,
        "4: auth.jwt.audience: must not contain control characters");
    expect_error("log: {level: verbose}\n" AUTH PG_LISTENER,
                 "1: log.level: must be one of: debug, info, warn, error");
    expect_error("log: {format: xml}\n" AUTH PG_LISTENER,
                 "1: log.format: must be one of: json, text");
    expect_error(AUTH "listeners:\n  - {name: x, protocol: mysql, listen: 127.0.0.1:1, backend: "
                      "{address: 127.0.0.1:2}}\n",
                 "5: listeners[0].protocol: must be one of: tcp, postgres, redis, mongodb, bolt");
    expect_error(
        AUTH PG_LISTENER "    mongodb: {isolation: collection}\n",
        "9: listeners[0].mongodb: section does not match the listener's protocol postgres");
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_error(AUTH, "1: listeners: required key is missing");
    expect_error("workers: 2\n", "1: listeners: required key is missing");
    expect_error(AUTH "listeners: []\n", "4: listeners: at least one listener is required");
    expect_error(AUTH "listeners:\n  - protocol: postgres\n    listen: 127.0.0.1:1\n"
                      "    backend: {address: 127.0.0.1:2}\n",
                 "5: listeners[0].name: required key is missing");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: 127.0.0.1:1\n",
                 "5: listeners[0].backend: required key is missing");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: 127.0.0.1:1\n"
                      "    backend:\n      user: app\n",
                 "9: listeners[0].backend.address: required key is missing");
    expect_error("admin: {}\n" AUTH PG_LISTENER, "1: admin.listen: required key is missing");
    expect_error(
        "auth:\n  jwt: {hs256_secret_file: jwt-secret}\n  sni: {slug_claim: s}\n" PG_LISTENER,
        "3: auth.sni.suffix: required key is missing");
    expect_error("auth:\n  jwt: {hs256_secret_file: jwt-secret}\n  sni: {suffix: "
                 "db.example.com}\n" PG_LISTENER,
                 "3: auth.sni.suffix: must start with '.'");
}

static void test_out_of_range(void **state)
{
    (void)state;
    expect_error("workers: 0\n" AUTH PG_LISTENER, "1: workers: must be between 1 and 256");
    expect_error("workers: 257\n" AUTH PG_LISTENER, "1: workers: must be between 1 and 256");
    expect_error("workers: 99999999999999999999999\n" AUTH PG_LISTENER,
                 "1: workers: must be between 1 and 256");
    expect_error(
        "auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n    max_token_bytes: 100\n" PG_LISTENER,
        "4: auth.jwt.max_token_bytes: must be between 256 and 65536");
    expect_error(AUTH PG_LISTENER "    max_connections: 0\n",
                 "9: listeners[0].max_connections: must be between 1 and 1000000");
    expect_error(AUTH PG_LISTENER "    timeouts: {connect_ms: 0}\n",
                 "9: listeners[0].timeouts.connect_ms: must be between 1 and 600000");
    expect_error(AUTH
                 "listeners:\n  - name: a\n    protocol: postgres\n    listen: 127.0.0.1:70000\n"
                 "    backend: {address: 127.0.0.1:2}\n",
                 "7: listeners[0].listen: expected host:port");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: 127.0.0.1:1\n"
                      "    backend: {address: \"::1:5432\"}\n",
                 "8: listeners[0].backend.address: expected host:port");
    tg_config *cfg = parse_ok("workers: 256\ndrain_timeout_s: 0\n" AUTH PG_LISTENER);
    assert_int_equal(cfg->workers, 256);
    assert_int_equal(cfg->drain_timeout_s, 0);
    tg_config_free(cfg);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_error("workers: 1\nworkers: 2\n" AUTH PG_LISTENER,
                 "2: workers: duplicate key (first at line 1)");
    expect_error(AUTH PG_LISTENER "    protocol: redis\n",
                 "9: listeners[0].protocol: duplicate key (first at line 6)");
    expect_error(AUTH PG_LISTENER "    backend: {address: 127.0.0.1:1}\n",
                 "9: listeners[0].backend: duplicate key (first at line 8)");
}

static void test_duplicate_listeners(void **state)
{
    (void)state;
    expect_error(AUTH PG_LISTENER "  - name: pg\n"
                                  "    protocol: redis\n"
                                  "    listen: 127.0.0.1:6380\n"
                                  "    backend: {address: 127.0.0.1:6379}\n",
                 "9: listeners[1].name: duplicate listener name \"pg\" (also listeners[0])");
    expect_error(AUTH PG_LISTENER "  - name: redis\n"
                                  "    protocol: redis\n"
                                  "    listen: 127.0.0.1:6432\n"
                                  "    backend: {address: 127.0.0.1:6379}\n",
                 "11: listeners[1].listen: address 127.0.0.1:6432 is already used by listeners[0]");
    expect_error(AUTH
                 "listeners:\n"
                 "  - {name: a, protocol: redis, listen: \"[::1]:1\", backend: {address: h:2}}\n"
                 "  - {name: b, protocol: redis, listen: \"[::1]:1\", backend: {address: h:2}}\n",
                 "6: listeners[1].listen: address [::1]:1 is already used by listeners[0]");
    expect_error("admin: {listen: 127.0.0.1:6432}\n" AUTH PG_LISTENER,
                 "8: listeners[0].listen: address 127.0.0.1:6432 is already used by admin.listen");
    /* same port on another host is fine */
    tg_config *cfg = parse_ok(AUTH PG_LISTENER "  - name: pg2\n"
                                               "    protocol: postgres\n"
                                               "    listen: 127.0.0.2:6432\n"
                                               "    backend: {address: 127.0.0.1:5432}\n");
    assert_int_equal(cfg->n_listeners, 2);
    tg_config_free(cfg);

    expect_error(
        AUTH "listeners:\n  - {name: PG, protocol: redis, listen: h:1, backend: {address: h:2}}\n",
        "5: listeners[0].name: must match ^[a-z0-9][a-z0-9_-]{0,31}$");
    expect_error(
        AUTH "listeners:\n  - {name: -pg, protocol: redis, listen: h:1, backend: {address: h:2}}\n",
        "5: listeners[0].name: must match");
    expect_error(AUTH "listeners:\n  - {name: abcdefghijklmnopqrstuvwxyz0123456, protocol: redis, "
                      "listen: h:1, backend: {address: h:2}}\n",
                 "5: listeners[0].name: must match");
    cfg = parse_ok(AUTH "listeners:\n  - {name: abcdefghijklmnopqrstuvwxyz012345, protocol: redis, "
                        "listen: h:1, backend: {address: h:2}}\n");
    tg_config_free(cfg);
}

static void test_secret_newlines(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *data;
        size_t len;
    } cases[] = {
        {"jwt-secret", "s3cret-s3cret", 13}, /* "\n" dropped */
        {"pg-pass", "pgpass", 6},            /* "\r\n" dropped */
        {"redis-pass", "redispass", 9},      /* none to drop */
        {"two-newlines", "abc\n", 4},        /* only one dropped */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, "auth:\n  jwt:\n    hs256_secret_file: %s\n" PG_LISTENER,
                 cases[i].file);
        tg_config *cfg = parse_ok(yaml);
        assert_int_equal(cfg->jwt.hs256_secret.len, cases[i].len);
        assert_memory_equal(cfg->jwt.hs256_secret.data, cases[i].data, cases[i].len);
        assert_int_equal(cfg->jwt.hs256_secret.data[cases[i].len], '\0');
        tg_config_free(cfg);
    }
    expect_error("auth:\n  jwt:\n    hs256_secret_file: empty\n" PG_LISTENER,
                 "3: auth.jwt.hs256_secret_file: cannot read ");
    char want[1024];
    snprintf(want, sizeof want,
             "3: auth.jwt.hs256_secret_file: cannot read %s/only-newline: "
             "the file is empty",
             dir);
    expect_error("auth:\n  jwt:\n    hs256_secret_file: only-newline\n" PG_LISTENER, want);
}

static void test_relative_paths(void **state)
{
    (void)state;
    char abs[512], yaml[2048];
    path_in_dir(abs, sizeof abs, "jwt.pem");
    snprintf(yaml, sizeof yaml,
             "auth:\n  jwt:\n    hs256_secret_file: sub/nested-secret\n    public_key_file: "
             "%s\n" PG_LISTENER
             "    tls: {mode: disable, cert_file: missing.crt, key_file: /nope.key}\n",
             abs);
    tg_config *cfg = parse_ok(yaml);
    char p[512];
    path_in_dir(p, sizeof p, "sub/nested-secret");
    assert_string_equal(cfg->jwt.hs256_secret.path, p);
    assert_string_equal(cfg->jwt.hs256_secret.data, "nested");
    assert_string_equal(cfg->jwt.public_key.path, abs);
    /* with tls disabled, cert paths are resolved but not opened */
    path_in_dir(p, sizeof p, "missing.crt");
    assert_string_equal(cfg->listeners[0].tls.cert_file, p);
    assert_string_equal(cfg->listeners[0].tls.key_file, "/nope.key");
    tg_config_free(cfg);

    /* a name without a directory: paths stay relative to the working directory */
    char err[512];
    const char *y = "auth:\n  jwt:\n    hs256_secret_file: jwt-secret\n" PG_LISTENER;
    cfg = NULL;
    assert_int_equal(tg_config_parse(y, strlen(y), "plain.yaml", &cfg, err, sizeof err),
                     TG_ECONFIG);
    assert_string_equal(err, "plain.yaml:3: auth.jwt.hs256_secret_file: cannot read jwt-secret: "
                             "No such file or directory");
}

static void test_unreadable_files(void **state)
{
    (void)state;
    char want[1024];
    snprintf(want, sizeof want,
             "3: auth.jwt.hs256_secret_file: cannot read %s/nope: No such file or directory", dir);
    expect_error("auth:\n  jwt:\n    hs256_secret_file: nope\n" PG_LISTENER, want);
    snprintf(want, sizeof want, "3: auth.jwt.jwks_file: cannot read %s/sub: not a regular file",
             dir);
    expect_error("auth:\n  jwt:\n    jwks_file: sub\n" PG_LISTENER, want);
    expect_error("auth:\n  jwt:\n    jwks_file: /dev/null\n" PG_LISTENER,
                 "3: auth.jwt.jwks_file: cannot read /dev/null: not a regular file");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: h:1\n"
                      "    backend: {address: h:2, password_file: nope}\n",
                 "8: listeners[0].backend.password_file: cannot read ");

    size_t big = 1024 * 1024 + 1;
    char *data = malloc(big);
    assert_non_null(data);
    memset(data, 'x', big);
    write_file("big", data, big);
    free(data);
    expect_error("auth:\n  jwt:\n    hs256_secret_file: big\n" PG_LISTENER,
                 "3: auth.jwt.hs256_secret_file: cannot read ");
    char err[512];
    tg_config *cfg = NULL;
    const char *y = "auth:\n  jwt:\n    hs256_secret_file: big\n" PG_LISTENER;
    assert_int_equal(parse(y, &cfg, err, sizeof err), TG_ECONFIG);
    assert_non_null(strstr(err, "larger than 1 MiB"));
    remove_file("big");
}

static void test_split_address(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    assert_int_equal(tg_config_split_address("127.0.0.1:6432", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6432);
    assert_int_equal(tg_config_split_address("db.internal:1", host, sizeof host, &port), 0);
    assert_string_equal(host, "db.internal");
    assert_int_equal(port, 1);
    assert_int_equal(tg_config_split_address("[::1]:65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(tg_config_split_address("[2001:db8::1]:443", host, sizeof host, &port), 0);
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(tg_config_split_address("[fe80::1%eth0]:80", host, sizeof host, &port), 0);
    assert_string_equal(host, "fe80::1%eth0");
    assert_int_equal(tg_config_split_address("0.0.0.0:00080", host, sizeof host, &port), 0);
    assert_int_equal(port, 80);

    static const char *const bad[] = {
        "",         ":80",         "host",    "host:",        "host:0",  "host:65536",
        "host:-1",  "host:+80",    "host:8o", "host:123456",  "::1:80",  "[::1]",
        "[::1]80",  "[]:80",       "[::1]:",  "[1.2.3.4]:80", "[::1:80", "ho st:80",
        "host:80 ", "[::1]:80:80", "h/x:80",  "[::1]]:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(host, "unchanged");
        port = 7;
        if (tg_config_split_address(bad[i], host, sizeof host, &port) != TG_EINVAL) {
            print_error("accepted: \"%s\"\n", bad[i]);
            fail();
        }
        assert_string_equal(host, "unchanged");
        assert_int_equal(port, 7);
    }
    /* the host must fit, NUL included */
    char small[4];
    assert_int_equal(tg_config_split_address("abc:1", small, sizeof small, &port), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(tg_config_split_address("abcd:1", small, sizeof small, &port), TG_EINVAL);
    assert_int_equal(tg_config_split_address(NULL, host, sizeof host, &port), TG_EINVAL);
    assert_int_equal(tg_config_split_address("a:1", host, 0, &port), TG_EINVAL);
}

static void test_tcp_passthrough(void **state)
{
    (void)state;
    expect_error("listeners:\n  - name: raw\n    protocol: tcp\n    listen: 127.0.0.1:1\n"
                 "    backend: {address: 127.0.0.1:2}\n",
                 "3: listeners[0].protocol: protocol tcp relays bytes without any tenant checks "
                 "and requires unsafe_passthrough: true");
    expect_error("listeners:\n  - name: raw\n    protocol: tcp\n    listen: 127.0.0.1:1\n"
                 "    unsafe_passthrough: false\n    backend: {address: 127.0.0.1:2}\n",
                 "3: listeners[0].protocol: protocol tcp relays bytes without any tenant checks "
                 "and requires unsafe_passthrough: true");
    expect_error(AUTH PG_LISTENER "    unsafe_passthrough: true\n",
                 "9: listeners[0].unsafe_passthrough: only valid with protocol tcp");
    expect_error("listeners:\n  - name: raw\n    protocol: tcp\n    listen: 127.0.0.1:1\n"
                 "    unsafe_passthrough: true\n    backend: {address: 127.0.0.1:2}\n"
                 "    redis: {}\n",
                 "7: listeners[0].redis: section does not match the listener's protocol tcp");
    /* tcp only: no JWT key source needed */
    tg_config *cfg = parse_ok("listeners:\n  - name: raw\n    protocol: tcp\n    listen: h:1\n"
                              "    unsafe_passthrough: true\n    backend: {address: h:2}\n");
    assert_int_equal(cfg->listeners[0].protocol, TG_PROTO_TCP);
    tg_config_free(cfg);
}

static void test_algorithms(void **state)
{
    (void)state;
    expect_error(
        "auth:\n  jwt:\n    algorithms: [RS256, none]\n    jwks_file: jwks.json\n" PG_LISTENER,
        "3: auth.jwt.algorithms[1]: algorithm \"none\" is never accepted");
    expect_error("auth:\n  jwt:\n    algorithms:\n      - NONE\n" PG_LISTENER,
                 "4: auth.jwt.algorithms[0]: algorithm \"none\" is never accepted");
    expect_error("auth:\n  jwt:\n    algorithms: [HS1024]\n" PG_LISTENER,
                 "3: auth.jwt.algorithms[0]: unknown algorithm \"HS1024\"");
    expect_error("auth:\n  jwt:\n    algorithms: [rs256]\n" PG_LISTENER,
                 "3: auth.jwt.algorithms[0]: unknown algorithm \"rs256\"");
    expect_error("auth:\n  jwt:\n    algorithms: [ES256, ES256]\n" PG_LISTENER,
                 "3: auth.jwt.algorithms[1]: duplicate algorithm \"ES256\"");
    expect_error("auth:\n  jwt:\n    algorithms: []\n" PG_LISTENER,
                 "3: auth.jwt.algorithms: at least one algorithm is required");
    /* a key source whose family is not allowed could never verify */
    expect_error(
        "auth:\n  jwt:\n    algorithms: [RS256]\n    hs256_secret_file: jwt-secret\n" PG_LISTENER,
        "4: auth.jwt.hs256_secret_file: no HS256/HS384/HS512 algorithm is allowed");
    expect_error(
        "auth:\n  jwt:\n    algorithms: [HS256]\n    public_key_file: jwt.pem\n" PG_LISTENER,
        "4: auth.jwt.public_key_file: no RS*, PS* or ES* algorithm is allowed");
    expect_error("auth:\n  jwt:\n    algorithms: [HS384]\n    jwks_file: jwks.json\n" PG_LISTENER,
                 "4: auth.jwt.jwks_file: no RS*, PS* or ES* algorithm is allowed");
    /* HS algorithms without an HS secret are fine (they just never verify) */
    tg_config *cfg =
        parse_ok("auth:\n  jwt:\n    algorithms: [HS256, HS384, HS512, RS384, RS512, "
                 "ES256, ES384, PS256, RS256]\n    jwks_file: jwks.json\n" PG_LISTENER);
    assert_int_equal(cfg->jwt.algorithms, 0x1ff);
    assert_null(cfg->jwt.hs256_secret.data);
    tg_config_free(cfg);
}

static void test_key_source_required(void **state)
{
    (void)state;
    expect_error(PG_LISTENER, "1: auth.jwt: a key source (hs256_secret_file, public_key_file or "
                              "jwks_file) is required: listener \"pg\" authenticates tenants");
    expect_error("auth:\n  jwt:\n    issuer: me\n" PG_LISTENER, "3: auth.jwt: a key source");
}

static void test_aliases_and_tags(void **state)
{
    (void)state;
    expect_error("auth:\n  jwt:\n    hs256_secret_file: &s jwt-secret\n" PG_LISTENER,
                 "3: auth.jwt.hs256_secret_file: YAML anchors are not allowed");
    expect_error(AUTH PG_LISTENER "  - name: b\n    protocol: postgres\n    listen: h:9\n"
                                  "    backend: *be\n",
                 "12: listeners[1].backend: YAML aliases are not allowed");
    expect_error("x: &a [1, 2]\ny: [*a, *a]\n", "1: x: YAML anchors are not allowed");
    expect_error("listeners:\n  - &l {name: a}\n", "2: listeners[0]: YAML anchors are not allowed");
    expect_error("*k : 1\n", "1: ?: YAML aliases are not allowed");
    expect_error("workers: !!int 3\n", "1: workers: YAML tags are not allowed");
    expect_error("listeners: !foo []\n", "1: listeners: YAML tags are not allowed");
    /* a billion-laughs document stops at its first anchor */
    expect_error("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                 "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                 "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
                 "1: a: YAML anchors are not allowed");
}

static void test_document_shape(void **state)
{
    (void)state;
    expect_error("", "1: (document): the configuration is empty");
    expect_error("# only a comment\n", "1: (document): the configuration is empty");
    expect_error("---\n", "2: (document): expected a mapping");
    expect_error("- a\n- b\n", "1: (document): expected a mapping");
    expect_error(AUTH PG_LISTENER "---\nworkers: 2\n", "9: (document): multiple YAML documents");
    expect_error("workers: [1, 2\n", "2: yaml: did not find expected ',' or ']'");
    expect_error("a:\n  b: 1\n c: 2\n", "3: yaml: ");
    expect_error("workers: 1\n\xff\xfe: 2\n", "2: yaml: invalid leading UTF-8 octet");
    char deep[400] = "x: ";
    for (int i = 0; i < 100; i++) {
        strcat(deep, "[");
    }
    for (int i = 0; i < 100; i++) {
        strcat(deep, "]");
    }
    expect_error(deep, "1: x[0][0][0]");
    char err[512];
    tg_config *cfg = NULL;
    assert_int_equal(parse(deep, &cfg, err, sizeof err), TG_ECONFIG);
    assert_non_null(strstr(err, "nested deeper than 64 levels"));
    /* not NUL-terminated input: only len bytes are read */
    const char text[] = "workers: 1\nbogus";
    assert_int_equal(tg_config_parse(text, 10, "t.yaml", &cfg, err, sizeof err), TG_ECONFIG);
    assert_string_equal(err, "t.yaml:1: listeners: required key is missing");
}

static void test_client_tls(void **state)
{
    (void)state;
    expect_error(AUTH PG_LISTENER "    tls: {mode: require}\n",
                 "9: listeners[0].tls.cert_file: required key is missing");
    expect_error(AUTH PG_LISTENER "    tls: {mode: allow, cert_file: server.crt}\n",
                 "9: listeners[0].tls.key_file: required key is missing");
    char want[1024];
    snprintf(want, sizeof want,
             "9: listeners[0].tls.key_file: cannot read %s/nope.key: No such file or directory",
             dir);
    expect_error(AUTH PG_LISTENER "    tls: {mode: require, cert_file: server.crt, key_file: "
                                  "nope.key}\n",
                 want);
    expect_error(AUTH PG_LISTENER "    tls: {mode: on}\n",
                 "9: listeners[0].tls.mode: must be one of: disable, allow, require");
}

static void test_backend(void **state)
{
    (void)state;
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: h:1\n"
                      "    backend:\n      address: h:2\n      tls: verify-full\n",
                 "9: listeners[0].backend.ca_file: required key is missing");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: h:1\n"
                      "    backend: {address: h:2, tls: verify}\n",
                 "8: listeners[0].backend.tls: must be one of: disable, require, verify-full");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: h:1\n"
                      "    backend: {address: h:2, auth_db: admin}\n",
                 "8: listeners[0].backend.auth_db: only valid for protocol mongodb");
    expect_error(AUTH "listeners:\n  - name: a\n    protocol: postgres\n    listen: h:1\n"
                      "    backend: {address: h:2, tls: require, ca_file: missing.pem}\n",
                 "8: listeners[0].backend.ca_file: cannot read ");
    tg_config *cfg = parse_ok(AUTH "listeners:\n  - name: a\n    protocol: postgres\n"
                                   "    listen: h:1\n    backend: {address: \"[::1]:2\"}\n");
    assert_string_equal(cfg->listeners[0].backend.server_name, "::1");
    tg_config_free(cfg);
}

static void test_protocol_sections(void **state)
{
    (void)state;
    expect_error(AUTH PG_LISTENER "    redis: {key_prefix: \"t:\"}\n",
                 "9: listeners[0].redis: section does not match the listener's protocol postgres");
    expect_error(AUTH "listeners:\n  - name: r\n    protocol: redis\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    redis: {key_prefix: \"t:\"}\n",
                 "9: listeners[0].redis.key_prefix: must contain {tenant}");
    expect_error(AUTH "listeners:\n  - name: r\n    protocol: redis\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    redis: {max_connections_per_tenant: -1}\n",
                 "9: listeners[0].redis.max_connections_per_tenant: must not be negative");
    expect_error(AUTH "listeners:\n  - name: r\n    protocol: redis\n    listen: h:1\n"
                      "    backend: {address: h:2}\n"
                      "    redis: {max_connections_per_tenant: 1000001}\n",
                 "9: listeners[0].redis.max_connections_per_tenant: must be between 0 and "
                 "1000000");
    expect_error(AUTH "listeners:\n  - name: r\n    protocol: redis\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    redis: {max_connections_per_tenant: two}\n",
                 "9: listeners[0].redis.max_connections_per_tenant: expected an integer");
    expect_error(AUTH PG_LISTENER "    redis: {max_connections_per_tenant: 2}\n",
                 "9: listeners[0].redis: section does not match the listener's protocol postgres");
    {
        tg_config *rc = parse_ok(AUTH "listeners:\n  - name: r\n    protocol: redis\n"
                                      "    listen: h:1\n    backend: {address: h:2}\n"
                                      "    redis: {max_connections_per_tenant: 1000000}\n");
        assert_int_equal(rc->listeners[0].redis.max_connections_per_tenant, 1000000);
        tg_config_free(rc);
    }
    expect_error(AUTH "listeners:\n  - name: m\n    protocol: mongodb\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    mongodb:\n"
                      "      database_template: \"{db}_x\"\n",
                 "10: listeners[0].mongodb.database_template: must contain {tenant}");
    expect_error(AUTH "listeners:\n  - name: m\n    protocol: mongodb\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    mongodb:\n      tenant_field: $tenant\n",
                 "10: listeners[0].mongodb.tenant_field: must be a field name");
#define MONGO_DB_LISTENER                                                                          \
    "listeners:\n  - name: m\n    protocol: mongodb\n    listen: h:1\n"                            \
    "    backend: {address: h:2}\n    mongodb:\n      isolation: database\n"
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"t_{tenant}\"\n",
                 "11: listeners[0].mongodb.database_template: must contain {db} and {tenant} "
                 "exactly once each with isolation: database");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{db}_{tenant}_{db}\"\n",
                 "11: listeners[0].mongodb.database_template: must contain {db} and {tenant} "
                 "exactly once each");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{db}{tenant}\"\n",
                 "11: listeners[0].mongodb.database_template: needs a separator between {db} and "
                 "{tenant}");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{tenant}{db}\"\n",
                 "11: listeners[0].mongodb.database_template: needs a separator");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{db}.{tenant}\"\n",
                 "11: listeners[0].mongodb.database_template: holds a character a database name "
                 "cannot hold");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{db} {tenant}\"\n",
                 "11: listeners[0].mongodb.database_template: holds a character");
    expect_error(AUTH MONGO_DB_LISTENER "      database_template: \"{db}_{tenant}$\"\n",
                 "11: listeners[0].mongodb.database_template: holds a character");
    expect_error(AUTH MONGO_DB_LISTENER "      allow_drop: 1\n",
                 "11: listeners[0].mongodb.allow_drop: expected true or false");
    expect_error(AUTH "listeners:\n  - name: m\n    protocol: mongodb\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    mongodb:\n      allow_drop: true\n",
                 "10: listeners[0].mongodb.allow_drop: only valid with isolation: database");
    expect_error(AUTH MONGO_DB_LISTENER "      allow_change_streams: yes please\n",
                 "11: listeners[0].mongodb.allow_change_streams: expected true or false");
    /* field isolation leaves the template alone (it is not used) */
    tg_config_free(parse_ok(
        AUTH "listeners:\n  - name: m\n    protocol: mongodb\n    listen: h:1\n"
             "    backend: {address: h:2}\n    mongodb:\n      database_template: \"x{tenant}\"\n"
             "      allow_change_streams: true\n"));
    tg_config *ok = parse_ok(AUTH MONGO_DB_LISTENER "      database_template: \"{tenant}~{db}\"\n"
                                                    "      allow_drop: true\n");
    assert_true(ok->listeners[0].mongodb.allow_drop);
    assert_false(ok->listeners[0].mongodb.allow_change_streams);
    tg_config_free(ok);
#undef MONGO_DB_LISTENER
    expect_error(AUTH "listeners:\n  - name: g\n    protocol: bolt\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    bolt:\n      label_template: Tenant\n",
                 "10: listeners[0].bolt.label_template: must contain {tenant}");
    expect_error(AUTH "listeners:\n  - name: g\n    protocol: bolt\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    bolt:\n      database_template: x\n",
                 "10: listeners[0].bolt.database_template: must contain {tenant}");
    expect_error(AUTH "listeners:\n  - name: g\n    protocol: bolt\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    bolt:\n      isolation: tenant\n",
                 "10: listeners[0].bolt.isolation: must be one of: property, label, database");
    expect_error(AUTH "listeners:\n  - name: g\n    protocol: bolt\n    listen: h:1\n"
                      "    backend: {address: h:2}\n    bolt:\n      tenant_property: \"a b\"\n",
                 "10: listeners[0].bolt.tenant_property: must be a property name");
    expect_error(AUTH PG_LISTENER "    postgres: {tenant_setting: tenant}\n",
                 "9: listeners[0].postgres.tenant_setting: must be a dotted setting name");
    expect_error(AUTH PG_LISTENER "    postgres: {tenant_setting: \"app.x; drop\"}\n",
                 "9: listeners[0].postgres.tenant_setting: must be a dotted setting name");
    tg_config *cfg = parse_ok(AUTH PG_LISTENER "    postgres: {}\n");
    assert_string_equal(cfg->listeners[0].postgres.tenant_setting, "app.tenant_id");
    tg_config_free(cfg);
}

#define BOLT_LISTENER                                                                              \
    "listeners:\n  - name: g\n    protocol: bolt\n    listen: h:1\n"                               \
    "    backend: {address: h:2}\n    bolt:\n"

/* The bolt keys the session reads beyond the SPEC's four: routing, databases, allow-lists. */
static void test_bolt_section(void **state)
{
    (void)state;
    tg_config *cfg =
        parse_ok(AUTH BOLT_LISTENER "      advertised_address: graph.internal:7688\n"
                                    "      database: app.graph-1\n"
                                    "      allow_procedures: [db.labels, apoc.text.*]\n"
                                    "      allow_functions: [apoc.coll.sum]\n"
                                    "      hide_tenant_property: true\n");
    const tg_bolt_config *b = &cfg->listeners[0].bolt;
    assert_string_equal(b->advertised_address, "graph.internal:7688");
    assert_string_equal(b->database, "app.graph-1");
    assert_int_equal(b->n_allow_procedures, 2);
    assert_string_equal(b->allow_procedures[0], "db.labels");
    assert_string_equal(b->allow_procedures[1], "apoc.text.*");
    assert_null(b->allow_procedures[2]);
    assert_int_equal(b->n_allow_functions, 1);
    assert_string_equal(b->allow_functions[0], "apoc.coll.sum");
    assert_true(b->hide_tenant_property);
    tg_config_free(cfg);

    cfg = parse_ok(AUTH BOLT_LISTENER "      allow_procedures: []\n");
    assert_null(cfg->listeners[0].bolt.allow_procedures);
    tg_config_free(cfg);

    expect_error(AUTH BOLT_LISTENER "      advertised_address: nohost\n",
                 "10: listeners[0].bolt.advertised_address: expected host:port");
    expect_error(AUTH BOLT_LISTENER "      database: 1abc\n",
                 "10: listeners[0].bolt.database: must be a database name");
    expect_error(AUTH BOLT_LISTENER "      database: \"a_b\"\n",
                 "10: listeners[0].bolt.database: must be a database name");
    expect_error(AUTH BOLT_LISTENER "      database: \"\"\n",
                 "10: listeners[0].bolt.database: must not be empty");
    expect_error(AUTH BOLT_LISTENER "      allow_procedures: [\"db.labels()\"]\n",
                 "10: listeners[0].bolt.allow_procedures[0]: must be a name such as db.labels");
    expect_error(AUTH BOLT_LISTENER "      allow_procedures: [\"*\"]\n",
                 "10: listeners[0].bolt.allow_procedures[0]: must be a name such as db.labels");
    expect_error(AUTH BOLT_LISTENER "      allow_functions: [\"apoc.*.x\"]\n",
                 "10: listeners[0].bolt.allow_functions[0]: must be a name such as db.labels");
    expect_error(AUTH BOLT_LISTENER "      allow_functions: apoc.coll.sum\n",
                 "10: listeners[0].bolt.allow_functions: expected a list");
    expect_error(AUTH BOLT_LISTENER "      hide_tenant_property: yes please\n",
                 "10: listeners[0].bolt.hide_tenant_property: expected true or false");
    expect_error(AUTH BOLT_LISTENER "      isolation: label\n      hide_tenant_property: true\n",
                 "11: listeners[0].bolt.hide_tenant_property: only used with isolation: property");
    expect_error(AUTH BOLT_LISTENER "      database_template: \"{db}-{tenant}\"\n",
                 "10: listeners[0].bolt.database_template: only {tenant} is substituted");
    expect_error(AUTH BOLT_LISTENER "      route_ttl_s: 5\n",
                 "10: listeners[0].bolt.route_ttl_s: unknown key");
}

/* The postgres keys beyond tenant_setting/allow_ddl/databases: the guard's lists, the signed
 * tenant context and the limits. */
/* Lines 4-8 after AUTH: one redis listener (backend user svc, plaintext). */
#define REDIS_LISTENER                                                                             \
    "listeners:\n"                                                                                 \
    "  - name: rd\n"                                                                               \
    "    protocol: redis\n"                                                                        \
    "    listen: 127.0.0.1:6380\n"                                                                 \
    "    backend: {address: 127.0.0.1:6379, user: svc, password_file: redis-pass}\n"

static void test_redis_section(void **state)
{
    (void)state;
    char want[1024];
    tg_config *cfg = parse_ok(AUTH REDIS_LISTENER "    redis:\n"
                                                  "      allow_scripts: true\n"
                                                  "      acl_key_file: context-key\n");
    const tg_redis_config *r = &cfg->listeners[0].redis;
    assert_true(r->allow_scripts);
    snprintf(want, sizeof want, "%s/context-key", dir);
    assert_string_equal(r->acl_key.path, want);
    assert_int_equal(r->acl_key.len, 32);
    assert_string_equal(r->acl_user_template, "tenantgate:{tenant}");
    assert_string_equal(r->key_prefix, "t:{tenant}:");
    tg_config_free(cfg);

    /* the key: required, long enough, and unused without allow_scripts */
    expect_error(AUTH REDIS_LISTENER "    redis: {allow_scripts: true}\n",
                 "9: listeners[0].redis.acl_key_file: required when allow_scripts is true");
    snprintf(want, sizeof want,
             "9: listeners[0].redis.acl_key_file: the key in %s/short-key is 31 bytes; at least "
             "32 are required",
             dir);
    expect_error(AUTH REDIS_LISTENER "    redis: {allow_scripts: true, acl_key_file: short-key}\n",
                 want);
    expect_error(AUTH REDIS_LISTENER "    redis: {acl_key_file: context-key}\n",
                 "9: listeners[0].redis.acl_key_file: only used with allow_scripts: true");
    expect_error(AUTH REDIS_LISTENER "    redis: {allow_scripts: false, acl_user_template: "
                                     "\"u:{tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: only used with allow_scripts: true");
    expect_error(AUTH REDIS_LISTENER
                 "    redis: {allow_scripts: true, acl_key_file: missing-file}\n",
                 "9: listeners[0].redis.acl_key_file: cannot read");

#define ACL "allow_scripts: true, acl_key_file: context-key"
    /* the prefix: a separator after {tenant} (else "t:a*" matches "t:ab..."), no spaces */
    static const char *const bad_prefixes[] = {"t:{tenant}",        "t:{tenant}x:",
                                               "t:{tenant}-:",      "t:{tenant}_",
                                               "{tenant}{tenant}:", "a:{tenant}:{tenant}"};
    for (size_t i = 0; i < sizeof bad_prefixes / sizeof bad_prefixes[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 AUTH REDIS_LISTENER "    redis: {" ACL ", key_prefix: \"%s\"}\n", bad_prefixes[i]);
        expect_error(yaml, "9: listeners[0].redis.key_prefix: every {tenant} "
                           "must be followed by a separator");
        /* also without scripts: tenant "a"'s key "bx" would be tenant "ab"'s key "x" */
        snprintf(yaml, sizeof yaml, AUTH REDIS_LISTENER "    redis: {key_prefix: \"%s\"}\n",
                 bad_prefixes[i]);
        expect_error(yaml, "9: listeners[0].redis.key_prefix: every {tenant} "
                           "must be followed by a separator");
    }
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", key_prefix: \"t {tenant}:\"}\n",
                 "9: listeners[0].redis.key_prefix: must not contain spaces with allow_scripts");
    cfg =
        parse_ok(AUTH REDIS_LISTENER "    redis: {" ACL ", key_prefix: \"{tenant}/x{tenant}.\"}\n");
    tg_config_free(cfg);
    cfg = parse_ok(AUTH REDIS_LISTENER "    redis: {key_prefix: \"t:{tenant}:\"}\n");
    tg_config_free(cfg);

    /* the user template: {tenant} once, no spaces, never the service or default user */
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: tenantgate}\n",
                 "9: listeners[0].redis.acl_user_template: must contain {tenant} exactly once");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL
                                     ", acl_user_template: \"{tenant}:{tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: must contain {tenant} exactly once");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"tg {tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: must not contain spaces");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"{tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: a tenant's ACL user could be named "
                 "\"svc\"");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"s{tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: a tenant's ACL user could be named "
                 "\"svc\"");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"de{tenant}t\"}\n",
                 "9: listeners[0].redis.acl_user_template: a tenant's ACL user could be named "
                 "\"default\"");
    expect_error(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"sv{tenant}\"}\n",
                 "9: listeners[0].redis.acl_user_template: a tenant's ACL user could be named "
                 "\"svc\"");
    expect_error(AUTH "listeners:\n"
                      "  - name: rd\n"
                      "    protocol: redis\n"
                      "    listen: 127.0.0.1:6380\n"
                      "    backend: {address: 127.0.0.1:6379, user: \"svc_\"}\n"
                      "    redis: {" ACL ", acl_user_template: \"{tenant}_\"}\n",
                 "9: listeners[0].redis.acl_user_template: a tenant's ACL user could be named "
                 "\"svc_\"");
    /* "svc" is no tenant's name under these: a tenant id cannot start with '_' */
    cfg =
        parse_ok(AUTH REDIS_LISTENER "    redis: {" ACL ", acl_user_template: \"sv{tenant}x\"}\n");
    tg_config_free(cfg);
    cfg = parse_ok(AUTH "listeners:\n"
                        "  - name: rd\n"
                        "    protocol: redis\n"
                        "    listen: 127.0.0.1:6380\n"
                        "    backend: {address: 127.0.0.1:6379, user: \"x_svc\"}\n"
                        "    redis: {" ACL ", acl_user_template: \"x{tenant}\"}\n");
    tg_config_free(cfg);

    /* backend TLS: the provisioning connection has none */
    expect_error(AUTH "listeners:\n"
                      "  - name: rd\n"
                      "    protocol: redis\n"
                      "    listen: 127.0.0.1:6380\n"
                      "    backend: {address: 127.0.0.1:6379, tls: require}\n"
                      "    redis: {" ACL "}\n",
                 "9: listeners[0].redis.allow_scripts: needs backend.tls: disable");

    /* two listeners provisioning the same users on one backend must agree */
    static const char two[] = AUTH "listeners:\n"
                                   "  - {name: a, protocol: redis, listen: 127.0.0.1:1, backend: "
                                   "{address: 127.0.0.1:6379}, redis: {" ACL "}}\n"
                                   "  - {name: b, protocol: redis, listen: 127.0.0.1:2, backend: "
                                   "{address: 127.0.0.1:6379}, redis: {" ACL ", key_prefix: "
                                   "\"u:{tenant}:\"}}\n";
    expect_error(two, "6: listeners[1].redis: listeners[0] provisions the same ACL users on this "
                      "backend with another key_prefix or acl_key_file");
    static const char two_ok[] =
        AUTH "listeners:\n"
             "  - {name: a, protocol: redis, listen: 127.0.0.1:1, backend: "
             "{address: 127.0.0.1:6379}, redis: {" ACL "}}\n"
             "  - {name: b, protocol: redis, listen: 127.0.0.1:2, backend: "
             "{address: 127.0.0.1:6379}, redis: {" ACL ", key_prefix: "
             "\"u:{tenant}:\", acl_user_template: \"u:{tenant}\"}}\n";
    cfg = parse_ok(two_ok);
    tg_config_free(cfg);
#undef ACL
}

static void test_postgres_section(void **state)
{
    (void)state;
    tg_config *cfg = parse_ok(AUTH PG_LISTENER "    postgres:\n"
                                               "      tenant_column: org_id\n"
                                               "      reserved_settings: [app.region, "
                                               "statement_timeout]\n"
                                               "      deny_functions: [pg_catalog.pg_sleep, "
                                               "my_fn]\n"
                                               "      deny_relations: [audit.secrets]\n"
                                               "      signed_context: true\n"
                                               "      context_key_file: context-key\n"
                                               "      max_message_bytes: 1024\n"
                                               "      max_connections_per_tenant: 20\n"
                                               "      session_timeout_s: 3600\n");
    const tg_postgres_config *pg = &cfg->listeners[0].postgres;
    assert_string_equal(pg->tenant_column, "org_id");
    assert_int_equal(pg->n_reserved_settings, 2);
    assert_string_equal(pg->reserved_settings[0], "app.region");
    assert_string_equal(pg->reserved_settings[1], "statement_timeout");
    assert_null(pg->reserved_settings[2]);
    assert_int_equal(pg->n_deny_functions, 2);
    assert_string_equal(pg->deny_functions[0], "pg_catalog.pg_sleep");
    assert_string_equal(pg->deny_functions[1], "my_fn");
    assert_null(pg->deny_functions[2]);
    assert_int_equal(pg->n_deny_relations, 1);
    assert_string_equal(pg->deny_relations[0], "audit.secrets");
    assert_null(pg->deny_relations[1]);
    assert_true(pg->signed_context);
    char want[1024];
    snprintf(want, sizeof want, "%s/context-key", dir);
    assert_string_equal(pg->context_key.path, want);
    assert_int_equal(pg->context_key.len, 32);
    assert_memory_equal(pg->context_key.data, "0123456789abcdef0123456789abcdef", 32);
    assert_int_equal(pg->max_message_bytes, 1024);
    assert_int_equal(pg->max_connections_per_tenant, 20);
    assert_int_equal(pg->session_timeout_s, 3600);
    tg_config_free(cfg);

    /* empty lists mean "none"; the largest message size is 1 GiB */
    cfg = parse_ok(AUTH PG_LISTENER "    postgres: {reserved_settings: [], deny_functions: [], "
                                    "deny_relations: [], max_message_bytes: 1073741824}\n");
    pg = &cfg->listeners[0].postgres;
    assert_null(pg->reserved_settings);
    assert_int_equal(pg->n_reserved_settings, 0);
    assert_null(pg->deny_functions);
    assert_null(pg->deny_relations);
    assert_int_equal(pg->max_message_bytes, 1u << 30);
    assert_false(pg->signed_context);
    tg_config_free(cfg);

    /* signed_context: the key is required, must be long enough, and is unused without it */
    expect_error(AUTH PG_LISTENER "    postgres: {signed_context: true}\n",
                 "9: listeners[0].postgres.context_key_file: required when signed_context is "
                 "true");
    snprintf(want, sizeof want,
             "9: listeners[0].postgres.context_key_file: the key in %s/short-key is 31 bytes; "
             "at least 32 are required",
             dir);
    expect_error(AUTH PG_LISTENER
                 "    postgres: {signed_context: true, context_key_file: short-key}\n",
                 want);
    expect_error(AUTH PG_LISTENER "    postgres: {signed_context: true, context_key_file: empty}\n",
                 "9: listeners[0].postgres.context_key_file: cannot read ");
    expect_error(AUTH PG_LISTENER "    postgres: {signed_context: true, context_key_file: nope}\n",
                 "9: listeners[0].postgres.context_key_file: cannot read ");
    expect_error(AUTH PG_LISTENER "    postgres: {context_key_file: context-key}\n",
                 "9: listeners[0].postgres.context_key_file: only used with signed_context: true");
    expect_error(AUTH PG_LISTENER "    postgres: {signed_context: yes}\n",
                 "9: listeners[0].postgres.signed_context: expected true or false");

    /* names */
    expect_error(AUTH PG_LISTENER "    postgres: {tenant_column: \"tenant id\"}\n",
                 "9: listeners[0].postgres.tenant_column: must be a column name");
    expect_error(AUTH PG_LISTENER "    postgres: {tenant_column: app.tenant_id}\n",
                 "9: listeners[0].postgres.tenant_column: must be a column name");
    expect_error(AUTH PG_LISTENER "    postgres: {tenant_column: \"\"}\n",
                 "9: listeners[0].postgres.tenant_column: must not be empty");
    expect_error(AUTH PG_LISTENER
                 "    postgres:\n      tenant_column: "
                 "a234567890123456789012345678901234567890123456789012345678901234\n",
                 "10: listeners[0].postgres.tenant_column: must be a column name");
    expect_error(AUTH PG_LISTENER "    postgres:\n      reserved_settings: [app.x, \"\"]\n",
                 "10: listeners[0].postgres.reserved_settings[1]: must not be empty");
    expect_error(AUTH PG_LISTENER "    postgres:\n      reserved_settings: [\"app.x;\"]\n",
                 "10: listeners[0].postgres.reserved_settings[0]: must be a setting name");
    expect_error(AUTH PG_LISTENER "    postgres:\n      reserved_settings: app.x\n",
                 "10: listeners[0].postgres.reserved_settings: expected a list");
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_functions: [\"pg_sleep()\"]\n",
                 "10: listeners[0].postgres.deny_functions[0]: must be a name or schema.name");
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_functions: [a.b.c]\n",
                 "10: listeners[0].postgres.deny_functions[0]: must be a name or schema.name");
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_functions: [ok, [x]]\n",
                 "10: listeners[0].postgres.deny_functions[1]: expected a string");
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_relations: [~]\n",
                 "10: listeners[0].postgres.deny_relations[0]: expected a string");
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_relations: [\"pg stat\"]\n",
                 "10: listeners[0].postgres.deny_relations[0]: must be a name or schema.name");

    /* limits */
    expect_error(AUTH PG_LISTENER "    postgres: {max_message_bytes: 1023}\n",
                 "9: listeners[0].postgres.max_message_bytes: must be between 1024 and "
                 "1073741824");
    expect_error(AUTH PG_LISTENER "    postgres: {max_message_bytes: 1073741825}\n",
                 "9: listeners[0].postgres.max_message_bytes: must be between 1024 and "
                 "1073741824");
    expect_error(AUTH PG_LISTENER "    postgres: {max_connections_per_tenant: -1}\n",
                 "9: listeners[0].postgres.max_connections_per_tenant: must not be negative");
    expect_error(AUTH PG_LISTENER "    postgres: {max_connections_per_tenant: 1000001}\n",
                 "9: listeners[0].postgres.max_connections_per_tenant: must be between 0 and "
                 "1000000");
    expect_error(AUTH PG_LISTENER "    postgres: {session_timeout_s: 1h}\n",
                 "9: listeners[0].postgres.session_timeout_s: expected an integer");
    expect_error(AUTH PG_LISTENER "    postgres: {session_timeout_s: 604801}\n",
                 "9: listeners[0].postgres.session_timeout_s: must be between 0 and 604800");
    cfg = parse_ok(AUTH PG_LISTENER "    postgres: {max_connections_per_tenant: 0, "
                                    "session_timeout_s: 604800}\n");
    assert_int_equal(cfg->listeners[0].postgres.session_timeout_s, 604800);
    tg_config_free(cfg);

    /* a failure half-way through a list frees what was parsed (checked under ASan) */
    expect_error(AUTH PG_LISTENER "    postgres:\n      deny_functions: [a, b, \"c d\"]\n"
                                  "      signed_context: true\n"
                                  "      context_key_file: context-key\n",
                 "10: listeners[0].postgres.deny_functions[2]: must be a name or schema.name");
    expect_error(AUTH PG_LISTENER "    postgres:\n      signed_context: true\n"
                                  "      context_key_file: context-key\n"
                                  "      max_message_bytes: 0\n",
                 "12: listeners[0].postgres.max_message_bytes: must be between");
}

/* tenants: the registry, its failure mode, the cache and the default limits. */
static void test_tenants_section(void **state)
{
    (void)state;
    /* Defaults: no registry, nothing required, no limits. */
    tg_config *cfg = parse_ok(AUTH PG_LISTENER);
    const tg_tenants_config *t = &cfg->tenants;
    assert_null(t->registry.address);
    assert_false(t->require_registered);
    assert_int_equal(t->cache_ttl_s, 60);
    assert_int_equal(t->cache_size, 10000);
    assert_int_equal(t->on_registry_failure, TG_REGISTRY_FAILURE_DENY);
    assert_string_equal(t->registry.key_prefix, "tenantgate:");
    assert_int_equal(t->registry.timeout_ms, 1000);
    assert_int_equal(t->limits.max_connections, 0);
    assert_int_equal(t->limits.messages_per_second, 0);
    tg_config_free(cfg);

    cfg = parse_ok(AUTH "tenants:\n"
                        "  registry:\n"
                        "    address: redis.internal:6379\n"
                        "    user: tenantgate\n"
                        "    password_file: redis-pass\n"
                        "    key_prefix: \"cp:\"\n"
                        "    timeout_ms: 250\n"
                        "  require_registered: true\n"
                        "  cache_ttl_s: 0\n"
                        "  cache_size: 5\n"
                        "  on_registry_failure: cached\n"
                        "  limits:\n"
                        "    max_connections: 3\n"
                        "    messages_per_second: 100\n"
                        "    burst: 20\n"
                        "    global_messages_per_second: 1000\n"
                        "    max_inflight_bytes: 4294967295\n" PG_LISTENER);
    t = &cfg->tenants;
    assert_string_equal(t->registry.address, "redis.internal:6379");
    assert_string_equal(t->registry.user, "tenantgate");
    assert_string_equal(t->registry.password.data, "redispass");
    assert_string_equal(t->registry.key_prefix, "cp:");
    assert_int_equal(t->registry.timeout_ms, 250);
    assert_true(t->require_registered);
    assert_int_equal(t->cache_ttl_s, 0);
    assert_int_equal(t->cache_size, 5);
    assert_int_equal(t->on_registry_failure, TG_REGISTRY_FAILURE_CACHED);
    assert_int_equal(t->limits.max_connections, 3);
    assert_int_equal(t->limits.messages_per_second, 100);
    assert_int_equal(t->limits.burst, 20);
    assert_int_equal(t->limits.global_messages_per_second, 1000);
    assert_int_equal(t->limits.max_inflight_bytes, UINT32_MAX);
    tg_config_free(cfg);

    /* Limits alone need no registry. */
    cfg = parse_ok(AUTH "tenants:\n  limits: {messages_per_second: 5}\n" PG_LISTENER);
    assert_int_equal(cfg->tenants.limits.messages_per_second, 5);
    assert_int_equal(cfg->tenants.limits.burst, 0);
    tg_config_free(cfg);

    expect_error(AUTH "tenants:\n  require_registered: true\n" PG_LISTENER,
                 "5: tenants.require_registered: needs tenants.registry");
    expect_error(AUTH "tenants:\n  on_registry_failure: cached\n" PG_LISTENER,
                 "5: tenants.on_registry_failure: needs tenants.registry");
    expect_error(AUTH "tenants:\n  registry: {address: h:1}\n  on_registry_failure: allow\n",
                 "6: tenants.on_registry_failure: must be one of: deny, cached");
    expect_error(AUTH "tenants:\n  registry: {key_prefix: x}\n" PG_LISTENER,
                 "5: tenants.registry.address: required key is missing");
    expect_error(AUTH "tenants:\n  registry: {address: nope}\n" PG_LISTENER,
                 "5: tenants.registry.address: expected host:port");
    expect_error(AUTH "tenants:\n  registry: {address: h:1, user: u}\n" PG_LISTENER,
                 "5: tenants.registry.user: needs password_file");
    expect_error(AUTH "tenants:\n  registry: {address: h:1, key_prefix: \"a b\"}\n" PG_LISTENER,
                 "5: tenants.registry.key_prefix: must be 1-64 printable characters");
    expect_error(AUTH "tenants:\n  registry: {address: h:1, password_file: missing}\n" PG_LISTENER,
                 "5: tenants.registry.password_file: cannot read ");
    expect_error(AUTH "tenants:\n  registry: {address: h:1, timeout_ms: 0}\n" PG_LISTENER,
                 "5: tenants.registry.timeout_ms: ");
    expect_error(AUTH "tenants:\n  registry: {address: h:1, tls: require}\n" PG_LISTENER,
                 "5: tenants.registry.tls: unknown key");
    expect_error(AUTH "tenants:\n  limits: {burst: 5}\n" PG_LISTENER,
                 "5: tenants.limits.burst: only meaningful with messages_per_second");
    expect_error(AUTH "tenants:\n  limits: {messages_per_second: -1}\n" PG_LISTENER,
                 "5: tenants.limits.messages_per_second: ");
    expect_error(AUTH "tenants:\n  limits: {max_requests: 1}\n" PG_LISTENER,
                 "5: tenants.limits.max_requests: unknown key");
    expect_error(AUTH "tenants:\n  cache: 1\n" PG_LISTENER, "5: tenants.cache: unknown key");
    expect_error(AUTH "tenants:\n  registry: {address: h:1}\n  cache_size: 0\n" PG_LISTENER,
                 "6: tenants.cache_size: ");
}

static void test_error_buffer(void **state)
{
    (void)state;
    const char *y = "workerz: 1\n";
    tg_config *cfg = NULL;
    char err[10];
    memset(err, 'X', sizeof err);
    assert_int_equal(tg_config_parse(y, strlen(y), "t.yaml", &cfg, err, sizeof err), TG_ECONFIG);
    assert_string_equal(err, "t.yaml:1:");
    assert_int_equal(tg_config_parse(y, strlen(y), "t.yaml", &cfg, NULL, 0), TG_ECONFIG);
    assert_null(cfg);
    assert_int_equal(tg_config_parse(NULL, 0, NULL, &cfg, err, sizeof err), TG_ECONFIG);
    assert_int_equal(tg_config_parse(y, strlen(y), "t.yaml", NULL, err, sizeof err), TG_ECONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),         cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_load_file),           cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),         cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_out_of_range),        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_duplicate_listeners), cmocka_unit_test(test_secret_newlines),
        cmocka_unit_test(test_relative_paths),      cmocka_unit_test(test_unreadable_files),
        cmocka_unit_test(test_split_address),       cmocka_unit_test(test_tcp_passthrough),
        cmocka_unit_test(test_algorithms),          cmocka_unit_test(test_key_source_required),
        cmocka_unit_test(test_aliases_and_tags),    cmocka_unit_test(test_document_shape),
        cmocka_unit_test(test_client_tls),          cmocka_unit_test(test_backend),
        cmocka_unit_test(test_protocol_sections),   cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_postgres_section),    cmocka_unit_test(test_redis_section),
        cmocka_unit_test(test_tenants_section),     cmocka_unit_test(test_bolt_section),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
