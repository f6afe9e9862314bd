/*
 * PackStream v1 (the value encoding under Bolt): a whole-value decoder into a
 * flat value array, accessors, an equality test, and a builder. No sockets,
 * no state between calls, no allocation beyond the tg_ps_doc and tg_buf the
 * caller hands in.
 *
 *   message bytes --tg_ps_decode--> tg_ps_doc: v[0..n) in encoding order (preorder),
 *                                   strings/bytes are slices of the message bytes
 *   tg_ps_doc --tg_ps_map_get / tg_ps_child / tg_ps_raw--> fields, values, raw spans
 *   values --tg_ps_put_*--> tg_ps_builder --tg_ps_end--> tg_buf (counts checked)
 *
 * A decoded document borrows the bytes it was decoded from: its slices stay
 * valid while those bytes do, and until the next tg_ps_decode into the same
 * document. The value array belongs to the document, grows as needed and is
 * released by tg_ps_doc_free (or trimmed by tg_ps_doc_trim when a huge
 * message made it grow).
 *
 * Decoding is fail-closed and bounded: every size and count is checked
 * against the bytes left the moment its header is read (a list announcing
 * 2^31 items in a 10-byte message fails at once, without allocating), the
 * nesting depth and the number of values against tg_ps_limits, strings must
 * be valid UTF-8, dictionary keys strings and unique (PackStream lets the
 * last duplicate win; we refuse duplicates so no reader can see a different
 * value than the one we checked), structure tags 0..127, and reserved
 * markers (C4-C7, CF, D3, D7, DB-DF, E0-EF) are errors.
 */
#ifndef TG_PROTOCOLS_BOLT_PACKSTREAM_H
#define TG_PROTOCOLS_BOLT_PACKSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buffer.h"
#include "proxy/slice.h"

/* Marker bytes (the specification's names). */
#define TG_PS_TINY_STRING 0x80 /* 0x80..0x8F: size in the low nibble */
#define TG_PS_TINY_LIST 0x90
#define TG_PS_TINY_MAP 0xA0
#define TG_PS_TINY_STRUCT 0xB0
#define TG_PS_NULL 0xC0
#define TG_PS_FLOAT_64 0xC1
#define TG_PS_FALSE 0xC2
#define TG_PS_TRUE 0xC3
#define TG_PS_INT_8 0xC8
#define TG_PS_INT_16 0xC9
#define TG_PS_INT_32 0xCA
#define TG_PS_INT_64 0xCB
#define TG_PS_BYTES_8 0xCC
#define TG_PS_BYTES_16 0xCD
#define TG_PS_BYTES_32 0xCE
#define TG_PS_STRING_8 0xD0
#define TG_PS_STRING_16 0xD1
#define TG_PS_STRING_32 0xD2
#define TG_PS_LIST_8 0xD4
#define TG_PS_LIST_16 0xD5
#define TG_PS_LIST_32 0xD6
#define TG_PS_MAP_8 0xD8
#define TG_PS_MAP_16 0xD9
#define TG_PS_MAP_32 0xDA

/* Sizes and counts are at most 2^31 - 1; structures hold at most 15 fields, tags 0..127. */
#define TG_PS_MAX_SIZE 0x7FFFFFFFu
#define TG_PS_MAX_FIELDS 15
#define TG_PS_MAX_TAG 0x7F

/* X(name, description): the PackStream value types. */
#define TG_PS_TYPE_MAP(X)                                                                          \
    X(NULL, "null")                                                                                \
    X(BOOL, "boolean")                                                                             \
    X(INT, "integer")                                                                              \
    X(FLOAT, "float")                                                                              \
    X(BYTES, "bytes")                                                                              \
    X(STRING, "string")                                                                            \
    X(LIST, "list")                                                                                \
    X(MAP, "dictionary")                                                                           \
    X(STRUCT, "structure")

typedef enum tg_ps_type {
#define TG_PS_TYPE_ENUM(name, desc) TG_PS_T_##name,
    TG_PS_TYPE_MAP(TG_PS_TYPE_ENUM)
#undef TG_PS_TYPE_ENUM
} tg_ps_type;

/* Returns a static description of a type ("unknown" for other values). */
const char *tg_ps_type_name(tg_ps_type type);

/* Hard ceiling on nesting (lists, dictionaries, structures; a Bolt message is depth 1). */
#define TG_PS_DEPTH_CAP 128

/*
 * Decoding limits, passed by the caller (one set per direction and auth
 * state). max_depth counts open containers (clamped to TG_PS_DEPTH_CAP);
 * max_values counts every value of the document, dictionary keys and the
 * root included, and is judged the moment a container header announces more
 * than fits, before any of it is read.
 */
typedef struct tg_ps_limits {
    uint32_t max_depth;
    uint32_t max_values;
} tg_ps_limits;

/*
 * After authentication: 64 levels (no driver nests parameters that deep) and
 * 4M values (a 128 MiB value array at worst; a RECORD with a longer list is
 * refused, the session can pass more).
 */
#define TG_PS_LIMITS_DEFAULT ((tg_ps_limits){.max_depth = 64, .max_values = 4u * 1024 * 1024})
/* Before authentication: HELLO {bolt_agent: {...}, routing: {...}} is depth 3. */
#define TG_PS_LIMITS_PREAUTH ((tg_ps_limits){.max_depth = 4, .max_values = 256})

/*
 * One decoded value. Containers are followed by what they contain, in
 * encoding order: the first child of v[i] is v[i + 1], the sibling after
 * v[i] is v[v[i].next]. A dictionary's children alternate key, value.
 */
typedef struct tg_ps_value {
    uint8_t type; /* tg_ps_type */
    uint8_t tag;  /* STRUCT: the tag byte; 0 otherwise */
    uint16_t reserved;
    uint32_t count; /* LIST: items; MAP: entries (pairs); STRUCT: fields; 0 otherwise */
    uint32_t next;  /* index of the first value after this one and everything in it */
    uint32_t off;   /* offset of this value's marker in the decoded bytes */
    union {
        bool b;     /* BOOL */
        int64_t i;  /* INT */
        double f;   /* FLOAT (bit pattern kept as sent, NaN payloads included) */
        tg_slice s; /* STRING (valid UTF-8), BYTES: borrows the decoded bytes */
    } u;
} tg_ps_value;

/* A decoded value tree: v[0] is the root. */
typedef struct tg_ps_doc {
    tg_slice bytes; /* what was decoded (borrowed) */
    tg_ps_value *v;
    uint32_t n;
    uint32_t cap;
    tg_slice *keys; /* scratch for the duplicate-key check */
    uint32_t keys_cap;
} tg_ps_doc;

/* An empty document (no allocation until the first decode). */
void tg_ps_doc_init(tg_ps_doc *d);

/* Frees the document's arrays; it is empty and reusable afterwards. */
void tg_ps_doc_free(tg_ps_doc *d);

/* Frees the arrays when they hold room for more than keep values (after a huge message). */
void tg_ps_doc_trim(tg_ps_doc *d, uint32_t keep);

/*
 * Decodes exactly one value filling buf[0..len) into d (the previous content
 * is replaced; d borrows buf). Returns 0, TG_EPROTO (malformed: reserved
 * marker, size or count beyond the bytes left, size above 2^31 - 1, invalid
 * UTF-8, non-string or duplicate dictionary key, structure tag above 127,
 * truncated value, bytes after the value, empty input), TG_ETOOBIG (nesting
 * or value count over *lim) or TG_ENOMEM. On failure d->n is 0. Iterative:
 * no recursion, whatever the input.
 */
__attribute__((warn_unused_result)) int tg_ps_decode(tg_ps_doc *d, const uint8_t *buf, size_t len,
                                                     const tg_ps_limits *lim);

/* The k-th child of container i (for a dictionary: entry k's key is child 2k), or 0 if none. */
uint32_t tg_ps_child(const tg_ps_doc *d, uint32_t i, uint32_t k);

/* Index of the value stored under key in dictionary i, or 0 when absent (or i is no dictionary). */
uint32_t tg_ps_map_get(const tg_ps_doc *d, uint32_t i, tg_slice key);

/* The encoded bytes of value i and everything in it (a slice of d->bytes). */
tg_slice tg_ps_raw(const tg_ps_doc *d, uint32_t i);

/* True when v[i] is a string equal to s. */
bool tg_ps_is_str(const tg_ps_doc *d, uint32_t i, const char *s);

/*
 * True when value i of a equals value j of b: same types, tags, counts, and
 * scalars (floats compared bit for bit, strings and bytes byte for byte,
 * dictionaries in the same order). Integers compare by value, whatever width
 * encoded them.
 */
bool tg_ps_equal(const tg_ps_doc *a, uint32_t i, const tg_ps_doc *b, uint32_t j);

/*
 * ---- building: values appended to a tg_buf with a sticky failure flag ----
 *
 * Containers are announced with their count and the builder checks that
 * exactly that many values follow, that dictionary keys are strings, and
 * that exactly one top-level value was written by tg_ps_end (keys are not
 * checked for duplicates: the caller writes keys it controls, and
 * tg_ps_put_map_edit never makes one). Integers are written in their
 * smallest form, strings must be valid UTF-8. A failed build removes
 * everything it appended: out->len is as before tg_ps_begin.
 */
typedef struct tg_ps_builder {
    tg_buf *out;
    size_t start;
    bool failed;
    int err; /* the first failure: TG_ENOMEM or TG_EINVAL (0 while !failed) */
    uint32_t depth;
    uint32_t roots; /* top-level values written */
    struct {
        uint32_t left; /* values still to come */
        bool map;      /* a dictionary: even `left` means a key comes next */
    } stack[TG_PS_DEPTH_CAP];
} tg_ps_builder;

/* Starts building at the end of out (borrowed until tg_ps_end). */
void tg_ps_begin(tg_ps_builder *b, tg_buf *out);
void tg_ps_put_null(tg_ps_builder *b);
void tg_ps_put_bool(tg_ps_builder *b, bool v);
void tg_ps_put_int(tg_ps_builder *b, int64_t v);
void tg_ps_put_float(tg_ps_builder *b, double v);
void tg_ps_put_bytes(tg_ps_builder *b, const void *p, size_t n);
/* A string of n bytes (TG_EINVAL when not UTF-8 or longer than 2^31 - 1). */
void tg_ps_put_string(tg_ps_builder *b, const void *s, size_t n);
/* A NUL-terminated string. */
void tg_ps_put_str(tg_ps_builder *b, const char *s);
/* Container headers: n items / n entries (then 2n values: key, value, ...) / a tag and n fields. */
void tg_ps_put_list(tg_ps_builder *b, uint32_t n);
void tg_ps_put_map(tg_ps_builder *b, uint32_t n);
void tg_ps_put_struct(tg_ps_builder *b, uint8_t tag, uint32_t n);
/* Value i of d and everything in it, re-encoded (smallest forms); d is only read. */
void tg_ps_put_value(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i);
/* Value i of d and everything in it, copied byte for byte (tg_ps_raw). */
void tg_ps_put_raw(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i);

/* One change to a dictionary copied by tg_ps_put_map_edit. */
typedef enum tg_ps_edit_op {
    TG_PS_EDIT_DROP,    /* remove the key if present */
    TG_PS_EDIT_SET_STR, /* set the key to a string: replaced in place, or appended */
    TG_PS_EDIT_SET_INT,
    TG_PS_EDIT_SET_NULL,
} tg_ps_edit_op;

typedef struct tg_ps_edit {
    tg_slice key;
    tg_ps_edit_op op;
    tg_slice str; /* SET_STR */
    int64_t i;    /* SET_INT */
} tg_ps_edit;

/*
 * Dictionary i of d (NULL d: an empty dictionary) with edits applied: its
 * other entries are copied raw in order, a SET key already present is
 * replaced where it stood, new SET keys follow in the order given. Keys of
 * edits must be distinct (TG_EINVAL otherwise, or when i is no dictionary).
 */
void tg_ps_put_map_edit(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i, const tg_ps_edit *edits,
                        size_t n_edits);

/* Finishes: 0, or the first failure (TG_EINVAL also for missing values) with out restored. */
__attribute__((warn_unused_result)) int tg_ps_end(tg_ps_builder *b);

#endif
