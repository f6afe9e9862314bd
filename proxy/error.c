/*
 * Descriptions for the TG_E* codes of error.h, generated from the same
 * X-macro so that a new code cannot lack a name.
 */
#include "proxy/error.h"

const char *tg_strerror(int err)
{
    switch (err) {
#define TG_ERRNO_CASE(name, value, desc)                                                           \
    case TG_E##name:                                                                               \
        return desc;
        TG_ERRNO_MAP(TG_ERRNO_CASE)
#undef TG_ERRNO_CASE
    default:
        return "unknown error";
    }
}
