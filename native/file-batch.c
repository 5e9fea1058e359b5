/* cutFiles: push's whole per-file pipeline for a batch of files, on a libuv pool thread. Each file is
 * read, cut (FastCDC), hashed (BLAKE3) and its new chunks compressed and written (store_object),
 * without a JS thread in the loop: push used to run this in worker threads, whose start-up (a Node
 * isolate each, ~0.13 s of CPU) and per-file JS cost about a fifth of a push of a Debian tree.
 *
 * cutFiles({ chunker, paths: Buffer[], sizes: Float64Array, jobs: Uint32Array, chunkDir: string | null,
 *            tmpTag: string, level: number }): Promise<{ counts, lengths, ids, inline, written }>
 * jobs holds [kind, first file, file count] triples: WHOLE (one file cut on its own), INLINE (one small
 * file whose bytes come back as they are) or GROUP (files cut as one stream, see pack-groups.ts).
 * The result: counts[j] chunks for job j, their lengths and 32-byte IDs in job order, the INLINE files'
 * bytes back to back, and written = [chunks stored, bytes stored]. A failure rejects with an Error
 * whose code is errno's name (ERR_SHRANK, ERR_COMPRESS without one), with `path`, `syscall` and
 * `where`: a number from CUT_WHERE, exported as cutFilesWhere (src/chunk/native.ts checks it). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addon.h"
#include "blake3.h"
#include "fastcdc.h"
#include "object-write.h"

enum { KIND_WHOLE, KIND_INLINE, KIND_GROUP, KIND_COUNT }; /* CUT_JOB in src/chunk/native.ts */
static const char *const kind_names[] = {"whole", "inline", "group"};
#define BLOCK (4u << 20)
#define ID_BYTES 32

/* Where a batch failed: opening or reading a source file, a source file that shrank while read, writing
 * a chunk to the store, compressing one. */
#define CUT_WHERE(X) X(WHERE_OPEN, "open") X(WHERE_READ, "read") X(WHERE_SHRANK, "shrank") \
  X(WHERE_STORE, "store") X(WHERE_COMPRESS, "compress")
#define WHERE_ENUM(id, name) id,
#define WHERE_NAME(id, name) name,
enum { CUT_WHERE(WHERE_ENUM) WHERE_COUNT };
static const char *const where_names[] = {CUT_WHERE(WHERE_NAME)};

static const char HEX[] = "0123456789abcdef";
static atomic_ulong tmp_counter;

typedef struct {
  uint32_t *v;
  size_t n, cap;
} u32s;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref chunker_ref;
  const fastcdc_params *p;
  size_t nfiles, njobs;
  char **paths;
  uint64_t *sizes;
  uint32_t *jobs;
  char *dir, *tag;
  char *final, *tmp; /* path buffers sized for dir and tag */
  int level;
  /* results */
  uint32_t *counts;
  u32s lengths;
  uint8_t *ids;
  size_t ids_cap;
  uint8_t *inline_buf;
  size_t inline_len;
  double written[2];
  /* failure */
  int failed, err;
  const char *syscall;
  int where;
  char *fail_path;
  char message[160];
} batch;

/* read and group buffers per pool thread, kept between batches (fresh ones cost a page fault per 4 KiB) */
typedef struct {
  void *buf;
  size_t cap;
} thread_buffer;

static void release_buffer(void *state) { free(((thread_buffer *)state)->buf); }

static thread_state_kind buffer_kind = THREAD_STATE_KIND(thread_buffer, release_buffer);

static uint8_t *thread_buf(size_t want) {
  thread_buffer *b = thread_state(&buffer_kind);
  return b && grow_buffer(&b->buf, &b->cap, want) == 0 ? b->buf : NULL;
}

static int fail(batch *b, int err, const char *syscall, const char *path, int where) {
  b->failed = 1;
  b->err = err;
  b->syscall = syscall;
  b->where = where;
  b->fail_path = path ? strdup(path) : NULL;
  return -1;
}

static int read_exact(batch *b, int fd, uint8_t *into, size_t len, uint64_t offset, size_t f) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, into + got, len - got, (off_t)(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(b, errno, "read", b->paths[f], WHERE_READ);
    }
    if (n == 0) {
      snprintf(b->message, sizeof b->message, "shrank while being read (expected %llu bytes)",
               (unsigned long long)b->sizes[f]);
      return fail(b, 0, "read", b->paths[f], WHERE_SHRANK);
    }
    got += (size_t)n;
  }
  return 0;
}

/* Cuts data, hashes and stores each chunk, appending lengths and IDs; returns the bytes consumed. */
static long cut_store(batch *b, const uint8_t *data, size_t len, int eof, uint32_t *count) {
  size_t cap = len / b->p->min + 2;
  if (b->lengths.n + cap > b->lengths.cap) {
    size_t want = (b->lengths.n + cap) * 2;
    uint32_t *v = realloc(b->lengths.v, want * sizeof *v);
    uint8_t *ids = realloc(b->ids, want * ID_BYTES);
    if (v) b->lengths.v = v;
    if (ids) b->ids = ids;
    if (!v || !ids) return fail(b, ENOMEM, "malloc", NULL, WHERE_STORE);
    b->lengths.cap = want;
  }
  size_t consumed;
  uint32_t *lens = b->lengths.v + b->lengths.n;
  size_t n = fastcdc_cuts(b->p, data, len, eof, lens, NULL, cap, &consumed);
  const uint8_t *at = data;
  char *final = b->final, *tmp = b->tmp;
  for (size_t i = 0; i < n; i++) {
    uint8_t *id = b->ids + (b->lengths.n + i) * ID_BYTES;
    blake3_hasher h;
    blake3_hasher_init(&h);
    blake3_hasher_update(&h, at, lens[i]);
    blake3_hasher_finalize(&h, id, ID_BYTES);
    if (b->dir) {
      char hex[2 * ID_BYTES + 1];
      for (int k = 0; k < ID_BYTES; k++) hex[2 * k] = HEX[id[k] >> 4], hex[2 * k + 1] = HEX[id[k] & 15];
      hex[2 * ID_BYTES] = 0;
      sprintf(final, "%s/%.2s/%s", b->dir, hex, hex);
      /* one counter for every pool thread: two threads storing the same chunk at once (files with the
       * same content in two batches) must not pick the same temporary name */
      sprintf(tmp, "%s.tmp-%s-%lx", final, b->tag, atomic_fetch_add(&tmp_counter, 1));
      size_t stored;
      store_error e;
      if (store_object(final, tmp, at, lens[i], b->level, &stored, &e) < 0) {
        if (e.err == 0) snprintf(b->message, sizeof b->message, "%s", e.syscall);
        return fail(b, e.err, e.err ? e.syscall : "zstd", e.path, e.err ? WHERE_STORE : WHERE_COMPRESS);
      }
      if (stored) b->written[0] += 1, b->written[1] += (double)stored;
    }
    at += lens[i];
  }
  b->lengths.n += n;
  *count += (uint32_t)n;
  return (long)consumed;
}

static int do_whole(batch *b, int fd, size_t f, uint32_t *count) {
  uint64_t size = b->sizes[f];
  uint8_t *buf = thread_buf(BLOCK + b->p->max);
  if (!buf) return fail(b, ENOMEM, "malloc", NULL, WHERE_READ);
  size_t carry = 0;
  for (uint64_t pos = 0; pos < size;) {
    size_t want = size - pos < BLOCK ? (size_t)(size - pos) : BLOCK;
    if (read_exact(b, fd, buf + carry, want, pos, f) < 0) return -1;
    pos += want;
    long consumed = cut_store(b, buf, carry + want, pos == size, count);
    if (consumed < 0) return -1;
    /* what is left after the last cut is cut again with the next block in front of it */
    carry = carry + want - (size_t)consumed;
    memmove(buf, buf + consumed, carry);
  }
  return 0;
}

static void execute(napi_env env, void *data) {
  batch *b = data;
  int *fds = malloc(b->nfiles * sizeof *fds);
  if (!fds) return (void)fail(b, ENOMEM, "malloc", NULL, WHERE_READ);
  size_t opened = 0;
  /* every file of the batch is opened and, unless cached, announced to the kernel before the first is
   * read: a cold disk then reads them all at once (advise_unless_cached in fsmeta.c) */
  for (; opened < b->nfiles; opened++) {
    int fd = open(b->paths[opened], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      fail(b, errno, "open", b->paths[opened], WHERE_OPEN);
      goto done;
    }
    fds[opened] = fd;
    if (b->sizes[opened] > 0) advise_unless_cached(fd);
  }
  size_t inline_at = 0;
  for (size_t j = 0; j < b->njobs; j++) {
    uint32_t kind = b->jobs[3 * j], first = b->jobs[3 * j + 1], n = b->jobs[3 * j + 2];
    uint32_t *count = &b->counts[j];
    if (kind == KIND_INLINE) {
      if (read_exact(b, fds[first], b->inline_buf + inline_at, b->sizes[first], 0, first) < 0) goto done;
      inline_at += b->sizes[first];
    } else if (kind == KIND_WHOLE) {
      if (do_whole(b, fds[first], first, count) < 0) goto done;
    } else {
      size_t total = 0;
      for (uint32_t k = 0; k < n; k++) total += b->sizes[first + k];
      uint8_t *buf = thread_buf(total + 1);
      if (!buf) {
        fail(b, ENOMEM, "malloc", NULL, WHERE_READ);
        goto done;
      }
      size_t at = 0;
      for (uint32_t k = 0; k < n; k++) {
        if (read_exact(b, fds[first + k], buf + at, b->sizes[first + k], 0, first + k) < 0) goto done;
        at += b->sizes[first + k];
      }
      if (cut_store(b, buf, total, 1, count) < 0) goto done;
    }
  }
done:
  for (size_t i = 0; i < opened; i++) close(fds[i]);
  free(fds);
}

static void free_batch(napi_env env, batch *b) {
  for (size_t i = 0; b->paths && i < b->nfiles; i++) free(b->paths[i]);
  free(b->paths), free(b->sizes), free(b->jobs), free(b->dir), free(b->tag), free(b->final), free(b->tmp);
  free(b->counts), free(b->lengths.v), free(b->ids), free(b->inline_buf), free(b->fail_path);
  if (b->chunker_ref) napi_delete_reference(env, b->chunker_ref);
  if (b->work) napi_delete_async_work(env, b->work);
  free(b);
}

static void complete(napi_env env, napi_status status, void *data) {
  batch *b = data;
  napi_value v;
  if (b->failed) {
    if (b->err) throw_errno(env, b->err, b->syscall, b->fail_path);
    else throw_error(env, b->where == WHERE_SHRANK ? "ERR_SHRANK" : "ERR_COMPRESS", "%s", b->message);
    napi_get_and_clear_last_exception(env, &v);
    napi_value where, path;
    napi_create_int32(env, b->where, &where);
    napi_set_named_property(env, v, "where", where);
    if (b->fail_path) {
      napi_create_string_utf8(env, b->fail_path, NAPI_AUTO_LENGTH, &path);
      napi_set_named_property(env, v, "path", path);
    }
    napi_reject_deferred(env, b->deferred, v);
  } else {
    napi_create_object(env, &v);
    napi_set_named_property(env, v, "counts", new_typed_copy(env, napi_uint32_array, b->counts, b->njobs));
    napi_set_named_property(env, v, "lengths", new_typed_copy(env, napi_uint32_array, b->lengths.v, b->lengths.n));
    napi_value ids, inl;
    napi_create_buffer_copy(env, b->lengths.n * ID_BYTES, b->lengths.n ? (void *)b->ids : "", NULL, &ids);
    napi_set_named_property(env, v, "ids", ids);
    napi_create_buffer_copy(env, b->inline_len, b->inline_len ? (void *)b->inline_buf : "", NULL, &inl);
    napi_set_named_property(env, v, "inline", inl);
    napi_set_named_property(env, v, "written", new_typed_copy(env, napi_float64_array, b->written, 2));
    napi_resolve_deferred(env, b->deferred, v);
  }
  free_batch(env, b);
}

/* Fails the call (NULL) after freeing the half-made batch; the exception is already pending. */
static napi_value refuse(napi_env env, batch *b) {
  free_batch(env, b);
  return NULL;
}

/* The batch's inputs from cutFiles' options, checked; 0 after throwing. */
static bool read_options(napi_env env, napi_value options, batch *b, napi_value *chunker) {
  options_t o;
  napi_value paths;
  size_t nsizes, njobs3;
  void *sizes, *jobs;
  uint32_t npaths;
  if (!get_options(env, options, "cutFiles", &o) || !opt_value(&o, "chunker", chunker)) return false;
  if (napi_get_value_external(env, *chunker, (void **)&b->p) != napi_ok || !b->p)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be a chunker handle", o.what), false;
  if (!opt_value(&o, "paths", &paths) || !get_array(env, paths, o.what, &npaths) ||
      !opt_typed(&o, "sizes", napi_float64_array, &sizes, &nsizes) ||
      !opt_typed(&o, "jobs", napi_uint32_array, &jobs, &njobs3) || !opt_i32(&o, "level", &b->level) ||
      !opt_path(&o, "chunkDir", true, &b->dir) || (b->dir && !opt_path(&o, "tmpTag", false, &b->tag)))
    return false;
  if (nsizes != npaths)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "cutFiles: options.sizes holds %zu sizes for %u paths",
                             nsizes, npaths), false;
  if (njobs3 % 3 != 0)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "cutFiles: options.jobs must hold [kind, first, count] triples"), false;
  b->nfiles = npaths;
  b->njobs = njobs3 / 3;
  b->paths = calloc(npaths ? npaths : 1, sizeof *b->paths);
  b->sizes = malloc((npaths ? npaths : 1) * sizeof *b->sizes);
  b->jobs = malloc((njobs3 ? njobs3 : 1) * sizeof *b->jobs);
  b->counts = calloc(b->njobs ? b->njobs : 1, sizeof *b->counts);
  if (!b->paths || !b->sizes || !b->jobs || !b->counts) return throw_errno(env, ENOMEM, "cutFiles", NULL), false;
  memcpy(b->jobs, jobs, njobs3 * sizeof *b->jobs);
  for (uint32_t i = 0; i < npaths; i++) {
    napi_value pv;
    if (napi_get_element(env, paths, i, &pv) != napi_ok) return napi_failed(env, "napi_get_element"), false;
    if (!(b->paths[i] = get_path(env, pv, "cutFiles: options.paths[]"))) return false;
    b->sizes[i] = (uint64_t)((double *)sizes)[i];
  }
  for (size_t j = 0; j < b->njobs; j++) {
    uint32_t kind = b->jobs[3 * j], first = b->jobs[3 * j + 1], n = b->jobs[3 * j + 2];
    if (kind > KIND_GROUP || (size_t)first + n > npaths || n == 0 || (kind != KIND_GROUP && n != 1))
      return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "cutFiles: options.jobs: job %zu names files outside the batch", j), false;
    if (kind == KIND_INLINE) b->inline_len += b->sizes[first];
  }
  return true;
}

static napi_value cut_files(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "cutFiles(options)");
  batch *b = calloc(1, sizeof *b);
  if (!b) return throw_errno(env, ENOMEM, "cutFiles", NULL);
  napi_value chunker;
  if (!read_options(env, argv[0], b, &chunker)) return refuse(env, b);
  if (b->inline_len && !(b->inline_buf = malloc(b->inline_len))) return throw_errno(env, ENOMEM, "cutFiles", NULL), refuse(env, b);
  if (b->dir) {
    /* dir/xx/<64 hex> and that + .tmp-<tag>-<counter in hex> */
    size_t final_len = strlen(b->dir) + 4 + 2 * ID_BYTES;
    b->final = malloc(final_len + 1);
    b->tmp = malloc(final_len + 5 + strlen(b->tag) + 1 + 16 + 1);
    if (!b->final || !b->tmp) return throw_errno(env, ENOMEM, "cutFiles", NULL), refuse(env, b);
  }
  /* the chunker's parameters live in a JS external: held until the batch completes */
  if (napi_create_reference(env, chunker, 1, &b->chunker_ref) != napi_ok)
    return napi_failed(env, "napi_create_reference"), refuse(env, b);
  napi_value promise = queue_promise_work(env, "snapdir:cutFiles", execute, complete, b, &b->deferred, &b->work);
  return promise ? promise : refuse(env, b);
}

void register_file_batch(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("cutFiles", cut_files));
  export_enum(env, exports, "cutFilesWhere", where_names, NULL, WHERE_COUNT);
  export_enum(env, exports, "cutFilesJob", kind_names, NULL, KIND_COUNT);
}
