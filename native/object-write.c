/* Writing one store object (format/object.ts) in a single call: check, compress, write, rename.
 * Push's worker threads call it once per new chunk. In C rather than through zstd-napi and node:fs
 * because the JS path copied every chunk twice (out of the read buffer, then header + payload),
 * allocated a buffer per chunk for the garbage collector to chase, and made six JS/C crossings per
 * object; here the chunk is compressed straight from the caller's buffer into one reused per-thread
 * buffer and written with one writev. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include "addon.h"
#include "object-write.h"

#define HEADER_BYTES 16
#define CODEC_RAW 0
#define CODEC_ZSTD 1
/* below this a zstd frame cannot be smaller than the bytes (object.ts uses the same bound) */
#define MIN_COMPRESS 64

/* One compression context and output buffer per thread (JS threads, and the libuv pool's threads
 * that file-batch.c runs on), freed when the thread ends. */
typedef struct {
  ZSTD_CCtx *cctx;
  int level;
  void *out;
  size_t out_cap;
} writer_state;

static void release_writer(void *state) {
  writer_state *s = state;
  ZSTD_freeCCtx(s->cctx);
  free(s->out);
}

static thread_state_kind writer_kind = THREAD_STATE_KIND(writer_state, release_writer);

/* Compresses into the state's buffer; returns the compressed size, or 0 when storing raw is better. */
static size_t compress(writer_state *s, const void *raw, size_t len, int level, const char **why) {
  if (len < MIN_COMPRESS) return 0;
  if (!s->cctx || s->level != level) {
    if (!s->cctx && !(s->cctx = ZSTD_createCCtx())) return (*why = "cannot allocate a zstd context"), 0;
    ZSTD_CCtx_reset(s->cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, level);
    s->level = level;
  }
  if (grow_buffer(&s->out, &s->out_cap, ZSTD_compressBound(len)) < 0) return (*why = "out of memory"), 0;
  size_t n = ZSTD_compress2(s->cctx, s->out, s->out_cap, raw, len);
  if (ZSTD_isError(n)) return (*why = ZSTD_getErrorName(n)), 0;
  return n < len ? n : 0;
}

/* mkdir -p: makes dir and any missing parents (a concurrent push making them too is fine) */
static int make_dirs(char *dir) {
  if (mkdir(dir, 0755) == 0 || errno == EEXIST) return 0;
  if (errno != ENOENT) return -1;
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return -1;
  *slash = 0;
  int rc = make_dirs(dir);
  *slash = '/';
  if (rc < 0) return -1;
  return mkdir(dir, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int write_all(int fd, struct iovec *iov, int cnt) {
  while (cnt > 0) {
    ssize_t n = writev(fd, iov, cnt);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    while (cnt > 0 && (size_t)n >= iov->iov_len) {
      n -= (ssize_t)iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + n;
      iov->iov_len -= (size_t)n;
    }
  }
  return 0;
}

int store_object(const char *final, char *tmp, const void *raw, size_t len, int level, size_t *written,
                 store_error *e) {
  writer_state *s = thread_state(&writer_kind);
  if (!s) return e->err = ENOMEM, e->syscall = "malloc", e->path = NULL, -1;
  *written = 0;
  struct stat st;
  if (lstat(final, &st) == 0) return 0; /* content-addressed: present means identical */

  const char *why = NULL;
  size_t packed = compress(s, raw, len, level, &why);
  if (why) return e->err = 0, e->syscall = why, e->path = NULL, -1;
  unsigned char header[HEADER_BYTES] = {'S', 'D', 'O', '1', packed ? CODEC_ZSTD : CODEC_RAW};
  uint64_t raw_len = len;
  for (int i = 0; i < 8; i++) header[8 + i] = (unsigned char)(raw_len >> (8 * i));
  struct iovec iov[2] = {{header, HEADER_BYTES}, {packed ? s->out : (void *)raw, packed ? packed : len}};

  e->path = tmp;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {
    /* the fan-out directory (chunks/3f/), and chunks/ itself in a new store, are made on first use */
    char *slash = strrchr(tmp, '/');
    if (slash) {
      *slash = 0;
      /* on failure tmp stays cut at the directory, which the error then names */
      if (make_dirs(tmp) < 0) return e->err = errno, e->syscall = "mkdir", -1;
      *slash = '/';
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  }
  if (fd < 0) return e->err = errno, e->syscall = "open", -1;
  const char *failed = NULL;
  /* no sync_file_range here: push flushes in the background meanwhile (store/background-flush.ts),
   * and starting writeback file by file cost more CPU than the batched writeback of a syncfs */
  if (write_all(fd, iov, 2) < 0) failed = "write";
  int err = errno;
  if (close(fd) < 0 && !failed) failed = "close", err = errno;
  if (!failed && rename(tmp, final) < 0) failed = "rename", err = errno;
  if (failed) {
    unlink(tmp);
    return e->err = err, e->syscall = failed, -1;
  }
  *written = HEADER_BYTES + iov[1].iov_len;
  return 0;
}

/* writeObject(finalPath, tmpPath, raw: Buffer, level): number -- store_object for one object from JS:
 * the stored bytes, or 0 when the object was there already. */
static napi_value write_object(napi_env env, napi_callback_info info) {
  GET_ARGS(4, "writeObject(finalPath, tmpPath, raw: Buffer, level: number)");
  void *raw;
  size_t len;
  int32_t level;
  if (!get_buffer(env, argv[2], "writeObject: raw", &raw, &len) || !get_i32(env, argv[3], "writeObject: level", &level))
    return NULL;
  char *final = get_path(env, argv[0], "writeObject: finalPath");
  if (!final) return NULL;
  char *tmp = get_path(env, argv[1], "writeObject: tmpPath");
  if (!tmp) return free(final), NULL;
  size_t written;
  store_error e;
  int rc = store_object(final, tmp, raw, len, level, &written, &e);
  napi_value result = NULL;
  if (rc < 0) {
    if (e.err == 0) throw_error(env, "ERR_COMPRESS", "%s", e.syscall);
    else throw_errno(env, e.err, e.syscall, e.path);
  }
  free(final);
  free(tmp);
  if (rc < 0) return NULL;
  napi_create_double(env, (double)written, &result);
  return result;
}

void register_object_write(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("writeObject", write_object));
}
