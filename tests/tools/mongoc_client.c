/*
 * A small libmongoc client for the MongoDB proxy tests (test_mongo_proxy.py):
 *
 *   mongoc_client URI DB COLLECTION N
 *
 * Inserts N documents {source: "libmongoc", i} into DB.COLLECTION (one
 * insert_many: a kind 1 sequence), then finds {source: "libmongoc"} and
 * prints "inserted N found M" and each document as relaxed extended JSON,
 * one a line. Exit 0 on success; a server error prints its code and message
 * ("error CODE: MESSAGE") and exits 2; other failures exit 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include <mongoc/mongoc.h>

static int fail_with(const bson_error_t *e)
{
    printf("error %u: %s\n", e->code, e->message);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: mongoc_client URI DB COLLECTION N\n");
        return 1;
    }
    int n = atoi(argv[4]);
    if (n < 0 || n > 100000)
        return 1;
    int rc = 1;
    bson_error_t err;
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &err);
    mongoc_client_t *client = uri ? mongoc_client_new_from_uri(uri) : NULL;
    if (!client) {
        fprintf(stderr, "bad uri: %s\n", err.message);
        goto out;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, argv[2], argv[3]);
    bson_t **docs = calloc((size_t)n + 1, sizeof(*docs));
    for (int i = 0; i < n; i++)
        docs[i] = BCON_NEW("source", BCON_UTF8("libmongoc"), "i", BCON_INT32(i));
    bool ok = n == 0 || mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)n, NULL,
                                                      NULL, &err);
    for (int i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    if (!ok) {
        rc = fail_with(&err);
        mongoc_collection_destroy(coll);
        goto out;
    }
    bson_t *filter = BCON_NEW("source", BCON_UTF8("libmongoc"));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *doc;
    int found = 0;
    char **lines = NULL;
    while (mongoc_cursor_next(cur, &doc)) {
        char **grown = realloc(lines, (size_t)(found + 1) * sizeof(*lines));
        if (!grown)
            break;
        lines = grown;
        lines[found++] = bson_as_relaxed_extended_json(doc, NULL);
    }
    if (mongoc_cursor_error(cur, &err)) {
        rc = fail_with(&err);
    } else {
        printf("inserted %d found %d\n", n, found);
        for (int i = 0; i < found; i++)
            printf("%s\n", lines[i]);
        rc = 0;
    }
    for (int i = 0; i < found; i++)
        bson_free(lines[i]);
    free(lines);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
out:
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return rc;
}
