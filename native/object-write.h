#ifndef SNAPDIR_OBJECT_WRITE_H
#define SNAPDIR_OBJECT_WRITE_H
#include <stddef.h>

/* What failed: errno (0 for a compression failure, whose message is in syscall), the call, the path. */
typedef struct {
  int err;
  const char *syscall;
  const char *path;
} store_error;

/* Unless `final` exists: encodes raw as a store object (format/object.ts: zstd at `level` when that is
 * smaller), writes it at `tmp` (making its directory if missing) and renames it to `final`.
 * *written is the stored bytes, 0 when the object was there. Returns 0, or -1 with *e filled in;
 * nothing is left at tmp. No N-API: libuv pool threads (file-batch.c) call it too. */
int store_object(const char *final, char *tmp, const void *raw, size_t len, int level, size_t *written,
                 store_error *e);
#endif
