#ifndef SNAPDIR_OBJECT_WRITE_H
#define SNAPDIR_OBJECT_WRITE_H
#include <node_api.h>
#include <stddef.h>

/* Unless `final` exists: encodes raw as a store object (format/object.ts: zstd at `level` when that is
 * smaller), writes it at `tmp` (making its directory if missing) and renames it to `final`.
 * *written is the stored bytes, 0 when the object was there. Returns 0, or -1 after throwing a JS error (errno's name as `code`); nothing is left at tmp. */
/* What failed: errno (0 for a compression failure, whose message is in syscall), the call, the path. */
typedef struct {
  int err;
  const char *syscall;
  const char *path;
} store_error;

/* store_object without N-API, for threads that cannot call into JS; on failure fills *e, returns -1. */
int store_object_core(const char *final, char *tmp, const void *raw, size_t len, int level, size_t *written,
                      store_error *e);
napi_value throw_store_error(napi_env env, const store_error *e);

int store_object(napi_env env, const char *final, char *tmp, const void *raw, size_t len, int level,
                 size_t *written);
#endif
