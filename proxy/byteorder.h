/*
 * Fixed-width integers in wire byte order, read and written a byte at a time.
 *
 *   big-endian (network order):  PostgreSQL lengths and codes, Bolt handshakes and chunk sizes
 *   little-endian:               MongoDB headers and BSON sizes
 *
 * Byte by byte, so alignment and the host's order never matter; compilers
 * turn each into one load or store (and a swap). The signed conversions
 * reinterpret a wire value as two's complement without the
 * implementation-defined conversion of an out-of-range unsigned value.
 */
#ifndef TG_PROXY_BYTEORDER_H
#define TG_PROXY_BYTEORDER_H

#include <stdint.h>

static inline uint16_t tg_load_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t tg_load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void tg_store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void tg_store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t tg_load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t tg_load_le64(const uint8_t *p)
{
    return (uint64_t)tg_load_le32(p) | ((uint64_t)tg_load_le32(p + 4) << 32);
}

static inline void tg_store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* The two's complement value of a 16-bit wire integer. */
static inline int16_t tg_i16(uint16_t v)
{
    return v <= INT16_MAX ? (int16_t)v : (int16_t)((int32_t)v - 0x10000);
}

/* The two's complement value of a 32-bit wire integer. */
static inline int32_t tg_i32(uint32_t v)
{
    return v <= INT32_MAX ? (int32_t)v : (int32_t)(v - 0x80000000u) - INT32_MAX - 1;
}

/* The two's complement value of a 64-bit wire integer. */
static inline int64_t tg_i64(uint64_t v)
{
    return v <= INT64_MAX ? (int64_t)v : (int64_t)(v - 0x8000000000000000u) - INT64_MAX - 1;
}

#endif
