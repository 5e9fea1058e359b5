#ifndef SNAPDIR_OBJECT_WRITE_H
#define SNAPDIR_OBJECT_WRITE_H
#include <node_api.h>
#include <stddef.h>

/* Unless `final` exists: encodes raw as a store object (format/object.ts: zstd at `level` when that is
 * smaller), writes it at `tmp` (making its directory if missing) and renames it to `final`.
 * *written is the stored bytes, 0 when the object was there. Returns 0, or -1 after throwing a JS error (errno's name as `code`); nothing is left at tmp. */
int store_object(napi_env env, const char *final, char *tmp, const void *raw, size_t len, int level,
                 size_t *written);
#endif
