/* A read-only FUSE file system over libfuse3's low-level API, for `snapdir mount`.
 *
 * Why our own binding rather than fuse-native: fuse-native speaks the high-level, path-based libfuse2
 * API with paths as UTF-8 strings (names that are not UTF-8 cannot be served), times in milliseconds,
 * no stable inode numbers (hardlinks would not share one) and one JS round trip for every operation.
 *
 * Here JS hands over the whole metadata of the view once, as an inode table (see src/mount/inode-table.ts),
 * and every metadata operation (lookup, getattr, readdir(plus), readlink, xattrs, statfs, open) is answered
 * in C on the FUSE thread from that table, as is the content of files small enough to be inlined. Only
 * reads of chunked content go to JS: the request is parked in a slot, JS is told through a thread-safe
 * function and answers later with replyRead/replyError. So the FUSE thread never waits for JS, and
 * the JS thread never waits for FUSE: a read of the mount from this same process cannot deadlock it.
 * The tree never changes, so the kernel is told to cache entries, attributes, pages, directory
 * listings and symlinks for as long as it likes. */
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* Fields of one node in the Float64Array that JS fills (inode-table.ts NODE_FIELDS must match). */
enum {
  F_MODE, F_UID, F_GID, F_NLINK, F_SIZE, F_RDEV, F_BLOCKS, F_MTIME_SEC, F_MTIME_NSEC,
  F_CHILD_START, F_CHILD_COUNT, F_DATA_OFF, F_DATA_LEN, F_XATTR_START, F_XATTR_COUNT, F_FLAGS,
  NODE_FIELDS
};
#define FLAG_INLINE 1  /* a regular file whose content is pool[data_off, data_off + size) */
#define FLAG_CHUNKED 2 /* a regular file whose refs are refs[data_off, data_off + data_len) */

/* A file's content: `length` bytes from `offset` in chunk `chunk`, `count` times in a row, ending at
 * file offset `end` (REF_FIELDS numbers per ref in the Float64Array JS fills). */
enum { R_CHUNK, R_OFFSET, R_LENGTH, R_COUNT, R_END, REF_FIELDS };
typedef struct { uint64_t chunk, offset, length, count, end; } ref_t;

/* A verified chunk JS holds in memory and lent us (setChunk); ptr is NULL when it is not cached. */
typedef struct { const char *ptr; size_t len; napi_ref ref; } chunk_t;

typedef struct {
  uint32_t mode, uid, gid, nlink;
  uint64_t size, rdev, blocks;
  int64_t mtime_sec;
  uint32_t mtime_nsec, flags;
  uint64_t child_start, child_count, data_off, data_len, xattr_start, xattr_count;
} node_t;

typedef struct { uint64_t name_off, name_len, ino; } dirent_t;
typedef struct { uint64_t name_off, name_len, value_off, value_len; } xattr_t;

enum { EV_READ = 1, EV_EXIT = 2, EV_HIT = 3 };
typedef struct {
  int kind;
  uint32_t slot;
  uint64_t ino, offset, size;
  int error;
} event_t;

typedef struct {
  struct fuse_session *se;
  pthread_t thread;
  int thread_started;
  napi_threadsafe_function tsfn;
  node_t *nodes;
  uint64_t node_count;
  dirent_t *dirents;
  xattr_t *xattrs;
  ref_t *refs;
  char *pool;
  /* chunks lent by JS; chunk_lock is held while a reply is written from them */
  pthread_mutex_t chunk_lock;
  chunk_t *chunks;
  uint64_t chunk_count;
  uint64_t total_bytes;
  double timeout;
  int no_open, no_opendir; /* the kernel takes ENOSYS from open/opendir as "always succeeds" */
  /* parked read requests, waiting for JS */
  pthread_mutex_t lock;
  fuse_req_t *slots;
  uint32_t slot_cap, pending;
  uint32_t *free_slots;
  uint32_t free_count;
  int exited;
} fs_t;

static node_t *node_of(fs_t *fs, fuse_ino_t ino) {
  return ino >= 1 && ino <= fs->node_count ? &fs->nodes[ino - 1] : NULL;
}

static void fill_stat(fs_t *fs, fuse_ino_t ino, const node_t *n, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = n->mode;
  st->st_nlink = n->nlink;
  st->st_uid = n->uid;
  st->st_gid = n->gid;
  st->st_rdev = n->rdev;
  st->st_size = (off_t)n->size;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)n->blocks;
  st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = n->mtime_sec;
  st->st_mtim.tv_nsec = st->st_atim.tv_nsec = st->st_ctim.tv_nsec = n->mtime_nsec;
}

static void fill_entry(fs_t *fs, fuse_ino_t ino, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = ino;
  e->generation = 1;
  e->attr_timeout = e->entry_timeout = fs->timeout;
  fill_stat(fs, ino, node_of(fs, ino), &e->attr);
}

/* Children are sorted by name bytes (shorter first on a common prefix), as Buffer.compare orders. */
static int compare_name(const char *a, size_t alen, const char *b, size_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c;
  return alen < blen ? -1 : alen > blen;
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  /* always readdirplus: a walk that stats every entry gets the attributes with the listing */
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  fs_t *fs = userdata;
  fs->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  fs->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *p = node_of(fs, parent);
  if (!p) { fuse_reply_err(req, ENOENT); return; }
  if (!S_ISDIR(p->mode)) { fuse_reply_err(req, ENOTDIR); return; }
  size_t len = strlen(name);
  uint64_t lo = p->child_start, hi = p->child_start + p->child_count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    dirent_t *d = &fs->dirents[mid];
    int c = compare_name(fs->pool + d->name_off, d->name_len, name, len);
    if (c == 0) {
      struct fuse_entry_param e;
      fill_entry(fs, d->ino, &e);
      fuse_reply_entry(req, &e);
      return;
    }
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  /* a negative entry with a timeout: the kernel remembers the name is absent */
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.entry_timeout = fs->timeout;
  fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  struct stat st;
  fill_stat(fs, ino, n, &st);
  fuse_reply_attr(req, &st, fs->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n || !S_ISLNK(n->mode)) { fuse_reply_err(req, EINVAL); return; }
  char *target = malloc(n->data_len + 1);
  if (!target) { fuse_reply_err(req, ENOMEM); return; }
  memcpy(target, fs->pool + n->data_off, n->data_len);
  target[n->data_len] = 0;
  fuse_reply_readlink(req, target);
  free(target);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  if (!S_ISDIR(n->mode)) { fuse_reply_err(req, ENOTDIR); return; }
  if (fs->no_opendir) { fuse_reply_err(req, ENOSYS); return; } /* as for open: no more OPENDIR/RELEASEDIR */
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

/* Offsets: 0 is ".", 1 is "..", 2 + k is child k; each entry carries the offset of the next one. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  char *buf = malloc(size);
  if (!buf) { fuse_reply_err(req, ENOMEM); return; }
  size_t used = 0;
  char name[4096];
  for (uint64_t i = (uint64_t)off; i < n->child_count + 2; i++) {
    fuse_ino_t child;
    const char *nm;
    if (i == 0) { child = ino; nm = "."; }
    else if (i == 1) { child = ino; nm = ".."; } /* the kernel answers ".." itself; any ino will do */
    else {
      dirent_t *d = &fs->dirents[n->child_start + i - 2];
      size_t len = d->name_len < sizeof name - 1 ? d->name_len : sizeof name - 1;
      memcpy(name, fs->pool + d->name_off, len);
      name[len] = 0;
      child = d->ino;
      nm = name;
    }
    size_t want;
    if (plus) {
      struct fuse_entry_param e;
      fill_entry(fs, child, &e);
      want = fuse_add_direntry_plus(req, buf + used, size - used, nm, &e, (off_t)(i + 1));
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = child;
      st.st_mode = node_of(fs, child)->mode;
      want = fuse_add_direntry(req, buf + used, size - used, nm, &st, (off_t)(i + 1));
    }
    if (want > size - used) break;
    used += want;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  do_readdir(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  do_readdir(req, ino, size, off, 1);
}

/* Answering open with ENOSYS tells the kernel (FUSE_CAP_NO_OPEN_SUPPORT) that opens always succeed:
 * it stops sending OPEN and RELEASE altogether and keeps the page cache across opens, which saves two
 * round trips per file. The mount is read-only ("ro"), so the kernel refuses writes itself. */
static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) { fuse_reply_err(req, EROFS); return; }
  if (fs->no_open) { fuse_reply_err(req, ENOSYS); return; }
  fi->keep_cache = 1; /* pages stay valid across opens: the content never changes */
  fuse_reply_open(req, fi);
}

static void post_event(fs_t *fs, event_t *ev) {
  if (napi_call_threadsafe_function(fs->tsfn, ev, napi_tsfn_nonblocking) != napi_ok) free(ev);
}

/* Serves a read of a chunked file from the chunks JS lent, if all it needs are there. The reply is
 * written under chunk_lock, so JS cannot drop a chunk while the kernel copies from it. */
static int read_from_chunks(fs_t *fs, fuse_req_t req, const node_t *n, uint64_t off, size_t size) {
  const ref_t *refs = fs->refs + n->data_off;
  uint64_t lo = 0, hi = n->data_len;
  while (lo < hi) { /* first ref ending after off */
    uint64_t mid = lo + (hi - lo) / 2;
    if (refs[mid].end <= off) lo = mid + 1; else hi = mid;
  }
  struct iovec iov[32];
  int count = 0;
  int served = 0;
  pthread_mutex_lock(&fs->chunk_lock);
  uint64_t at = off, end = off + size;
  for (uint64_t k = lo; at < end && k < n->data_len; ) {
    const ref_t *r = &refs[k];
    const chunk_t *c = r->chunk < fs->chunk_count ? &fs->chunks[r->chunk] : NULL;
    if (!c || !c->ptr || c->len < r->offset + r->length || count == 32) goto out;
    uint64_t start = r->end - r->length * r->count;
    uint64_t inner = (at - start) % r->length;
    uint64_t take = r->length - inner < end - at ? r->length - inner : end - at;
    iov[count].iov_base = (void *)(c->ptr + r->offset + inner);
    iov[count].iov_len = take;
    count++;
    at += take;
    if (at >= r->end) k++;
  }
  fuse_reply_iov(req, iov, count);
  served = 1;
out:
  pthread_mutex_unlock(&fs->chunk_lock);
  return served;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  if (off < 0 || (uint64_t)off >= n->size || size == 0) { fuse_reply_buf(req, NULL, 0); return; }
  if ((uint64_t)off + size > n->size) size = n->size - (uint64_t)off;
  if (n->flags & FLAG_INLINE) { fuse_reply_buf(req, fs->pool + n->data_off + off, size); return; }

  event_t *ev = malloc(sizeof *ev);
  if (!ev) { fuse_reply_err(req, ENOMEM); return; }
  if ((n->flags & FLAG_CHUNKED) && read_from_chunks(fs, req, n, (uint64_t)off, size)) {
    /* served; JS still hears of it, for read-ahead and its counters, after the fact */
    *ev = (event_t){ .kind = EV_HIT, .ino = ino, .offset = (uint64_t)off, .size = size };
    post_event(fs, ev);
    return;
  }
  pthread_mutex_lock(&fs->lock);
  if (fs->free_count == 0) {
    uint32_t cap = fs->slot_cap ? fs->slot_cap * 2 : 256;
    fuse_req_t *slots = realloc(fs->slots, cap * sizeof *slots);
    uint32_t *free_slots = realloc(fs->free_slots, cap * sizeof *free_slots);
    if (slots) fs->slots = slots;
    if (free_slots) fs->free_slots = free_slots;
    if (!slots || !free_slots) {
      pthread_mutex_unlock(&fs->lock);
      free(ev);
      fuse_reply_err(req, ENOMEM);
      return;
    }
    for (uint32_t s = cap; s > fs->slot_cap; s--) fs->free_slots[fs->free_count++] = s - 1;
    for (uint32_t s = fs->slot_cap; s < cap; s++) fs->slots[s] = NULL;
    fs->slot_cap = cap;
  }
  uint32_t slot = fs->free_slots[--fs->free_count];
  fs->slots[slot] = req;
  fs->pending++;
  pthread_mutex_unlock(&fs->lock);

  *ev = (event_t){ .kind = EV_READ, .slot = slot, .ino = ino, .offset = (uint64_t)off, .size = size };
  post_event(fs, ev);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  fs_t *fs = fuse_req_userdata(req);
  struct statvfs sv;
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = sv.f_frsize = 4096;
  sv.f_blocks = (fs->total_bytes + 4095) / 4096;
  sv.f_files = fs->node_count;
  sv.f_namemax = 255;
  sv.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &sv);
}

static void reply_sized(fuse_req_t req, size_t size, const char *data, size_t len) {
  if (size == 0) fuse_reply_xattr(req, len);
  else if (size < len) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, data, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  size_t len = strlen(name);
  for (uint64_t i = 0; i < n->xattr_count; i++) {
    xattr_t *x = &fs->xattrs[n->xattr_start + i];
    if (x->name_len == len && memcmp(fs->pool + x->name_off, name, len) == 0) {
      reply_sized(req, size, fs->pool + x->value_off, x->value_len);
      return;
    }
  }
  fuse_reply_err(req, ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  fs_t *fs = fuse_req_userdata(req);
  node_t *n = node_of(fs, ino);
  if (!n) { fuse_reply_err(req, ENOENT); return; }
  size_t total = 0;
  for (uint64_t i = 0; i < n->xattr_count; i++) total += fs->xattrs[n->xattr_start + i].name_len + 1;
  char *list = malloc(total ? total : 1);
  if (!list) { fuse_reply_err(req, ENOMEM); return; }
  size_t at = 0;
  for (uint64_t i = 0; i < n->xattr_count; i++) {
    xattr_t *x = &fs->xattrs[n->xattr_start + i];
    memcpy(list + at, fs->pool + x->name_off, x->name_len);
    at += x->name_len;
    list[at++] = 0;
  }
  reply_sized(req, size, list, total);
  free(list);
}

static const struct fuse_lowlevel_ops ops = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .readlink = op_readlink,
  .open = op_open,
  .read = op_read,
  .release = op_release,
  .opendir = op_opendir,
  .readdir = op_readdir,
  .readdirplus = op_readdirplus,
  .releasedir = op_release,
  .statfs = op_statfs,
  .getxattr = op_getxattr,
  .listxattr = op_listxattr,
};

/* ---- the FUSE thread ---- */

static void *loop_thread(void *arg) {
  fs_t *fs = arg;
  /* signals belong to Node's thread (SIGINT/SIGTERM unmount there) */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  int rc = fuse_session_loop(fs->se);
  /* ENODEV after an unmount is the normal end; poll sees the dead connection, so nothing is unmounted here */
  fuse_session_unmount(fs->se);
  event_t *ev = calloc(1, sizeof *ev);
  if (ev) {
    ev->kind = EV_EXIT;
    ev->error = rc < 0 ? -rc : 0;
    post_event(fs, ev);
  }
  return NULL;
}

/* ---- N-API ---- */

#define NAPI_OK(call)                                                   \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_NATIVE", "N-API call failed: " #call); \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

/* libfuse explains a failed mount through its log; keep the last message for the thrown error */
static char last_log[512];
static void capture_log(enum fuse_log_level level, const char *fmt, va_list ap) {
  if (level > FUSE_LOG_ERR) return;
  vsnprintf(last_log, sizeof last_log, fmt, ap);
  size_t len = strlen(last_log);
  while (len && last_log[len - 1] == '\n') last_log[--len] = 0;
}

static void call_js(napi_env env, napi_value callback, void *context, void *data) {
  event_t *ev = data;
  if (env && callback) {
    napi_value argv[5], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_int32(env, ev->kind, &argv[0]);
    napi_create_uint32(env, ev->slot, &argv[1]);
    napi_create_double(env, (double)ev->ino, &argv[2]);
    napi_create_double(env, (double)ev->offset, &argv[3]);
    napi_create_double(env, ev->kind == EV_EXIT ? (double)ev->error : (double)ev->size, &argv[4]);
    napi_call_function(env, undefined, callback, 5, argv, NULL);
  }
  free(ev);
}

static int get_f64_array(napi_env env, napi_value v, double **data, size_t *length) {
  napi_typedarray_type type;
  size_t len;
  void *ptr;
  if (napi_get_typedarray_info(env, v, &type, &len, &ptr, NULL, NULL) != napi_ok || type != napi_float64_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a Float64Array");
    return 0;
  }
  *data = ptr;
  *length = len;
  return 1;
}

static void fs_free(fs_t *fs) {
  free(fs->nodes);
  free(fs->dirents);
  free(fs->xattrs);
  free(fs->refs);
  free(fs->chunks);
  free(fs->pool);
  free(fs->slots);
  free(fs->free_slots);
  pthread_mutex_destroy(&fs->lock);
  pthread_mutex_destroy(&fs->chunk_lock);
  free(fs);
}

static fs_t *get_fs(napi_env env, napi_value v) {
  fs_t *fs = NULL;
  if (napi_get_value_external(env, v, (void **)&fs) != napi_ok || !fs) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a mount handle");
    return NULL;
  }
  return fs;
}

/* mount(mountpoint, options[], nodes, dirents, xattrs, refs, chunkCount, pool, totalBytes, timeout, onEvent) -> handle */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "mount takes 11 arguments");
    return NULL;
  }
  char mountpoint[4096];
  size_t mlen;
  if (napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &mlen) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "mountpoint must be a string");
    return NULL;
  }
  uint32_t nopts = 0;
  NAPI_OK(napi_get_array_length(env, argv[1], &nopts));

  double *nodes, *dirents, *xattrs, *refs;
  size_t nnodes, ndirents, nxattrs, nrefs;
  if (!get_f64_array(env, argv[2], &nodes, &nnodes) || !get_f64_array(env, argv[3], &dirents, &ndirents) ||
      !get_f64_array(env, argv[4], &xattrs, &nxattrs) || !get_f64_array(env, argv[5], &refs, &nrefs))
    return NULL;
  double chunk_count, total_bytes, timeout;
  NAPI_OK(napi_get_value_double(env, argv[6], &chunk_count));
  void *pool;
  size_t pool_len;
  NAPI_OK(napi_get_buffer_info(env, argv[7], &pool, &pool_len));
  NAPI_OK(napi_get_value_double(env, argv[8], &total_bytes));
  NAPI_OK(napi_get_value_double(env, argv[9], &timeout));

  fs_t *fs = calloc(1, sizeof *fs);
  if (!fs) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  pthread_mutex_init(&fs->lock, NULL);
  pthread_mutex_init(&fs->chunk_lock, NULL);
  fs->node_count = nnodes / NODE_FIELDS;
  fs->chunk_count = (uint64_t)chunk_count;
  fs->chunks = calloc(fs->chunk_count + 1, sizeof *fs->chunks);
  fs->refs = calloc(nrefs / REF_FIELDS + 1, sizeof *fs->refs);
  fs->nodes = calloc(fs->node_count ? fs->node_count : 1, sizeof *fs->nodes);
  fs->dirents = calloc(ndirents / 3 + 1, sizeof *fs->dirents);
  fs->xattrs = calloc(nxattrs / 4 + 1, sizeof *fs->xattrs);
  fs->pool = malloc(pool_len ? pool_len : 1);
  if (!fs->nodes || !fs->dirents || !fs->xattrs || !fs->pool || !fs->chunks || !fs->refs) {
    fs_free(fs);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  memcpy(fs->pool, pool, pool_len);
  for (uint64_t i = 0; i < fs->node_count; i++) {
    const double *f = nodes + i * NODE_FIELDS;
    node_t *n = &fs->nodes[i];
    n->mode = (uint32_t)f[F_MODE];
    n->uid = (uint32_t)f[F_UID];
    n->gid = (uint32_t)f[F_GID];
    n->nlink = (uint32_t)f[F_NLINK];
    n->size = (uint64_t)f[F_SIZE];
    n->rdev = (uint64_t)f[F_RDEV];
    n->blocks = (uint64_t)f[F_BLOCKS];
    n->mtime_sec = (int64_t)f[F_MTIME_SEC];
    n->mtime_nsec = (uint32_t)f[F_MTIME_NSEC];
    n->child_start = (uint64_t)f[F_CHILD_START];
    n->child_count = (uint64_t)f[F_CHILD_COUNT];
    n->data_off = (uint64_t)f[F_DATA_OFF];
    n->data_len = (uint64_t)f[F_DATA_LEN];
    n->xattr_start = (uint64_t)f[F_XATTR_START];
    n->xattr_count = (uint64_t)f[F_XATTR_COUNT];
    n->flags = (uint32_t)f[F_FLAGS];
  }
  for (size_t i = 0; i < ndirents / 3; i++)
    fs->dirents[i] = (dirent_t){ (uint64_t)dirents[i * 3], (uint64_t)dirents[i * 3 + 1], (uint64_t)dirents[i * 3 + 2] };
  for (size_t i = 0; i < nxattrs / 4; i++)
    fs->xattrs[i] = (xattr_t){ (uint64_t)xattrs[i * 4], (uint64_t)xattrs[i * 4 + 1], (uint64_t)xattrs[i * 4 + 2],
                               (uint64_t)xattrs[i * 4 + 3] };
  for (size_t i = 0; i < nrefs / REF_FIELDS; i++) {
    const double *f = refs + i * REF_FIELDS;
    fs->refs[i] = (ref_t){ (uint64_t)f[R_CHUNK], (uint64_t)f[R_OFFSET], (uint64_t)f[R_LENGTH], (uint64_t)f[R_COUNT],
                           (uint64_t)f[R_END] };
  }
  fs->total_bytes = (uint64_t)total_bytes;
  fs->timeout = timeout;

  /* argv for libfuse: program name, then "-o" and each option */
  char **fargv = calloc(2 * nopts + 2, sizeof *fargv);
  int fargc = 0;
  fargv[fargc++] = strdup("snapdir");
  for (uint32_t i = 0; i < nopts; i++) {
    napi_value o;
    char buf[1024];
    size_t len;
    napi_get_element(env, argv[1], i, &o);
    if (napi_get_value_string_utf8(env, o, buf, sizeof buf, &len) != napi_ok) continue;
    fargv[fargc++] = strdup("-o");
    fargv[fargc++] = strdup(buf);
  }
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
  last_log[0] = 0;
  fuse_set_log_func(capture_log);
  fs->se = fuse_session_new(&args, &ops, sizeof ops, fs);
  int mounted = fs->se && fuse_session_mount(fs->se, mountpoint) == 0;
  fuse_opt_free_args(&args);
  for (int i = 0; i < fargc; i++) free(fargv[i]);
  free(fargv);
  if (!mounted) {
    if (fs->se) fuse_session_destroy(fs->se);
    fs_free(fs);
    char msg[4096 + 600];
    snprintf(msg, sizeof msg, "cannot mount at %s: %s", mountpoint, last_log[0] ? last_log : "libfuse failed");
    napi_throw_error(env, "ERR_MOUNT", msg);
    return NULL;
  }

  napi_value name;
  napi_create_string_utf8(env, "snapdir-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[10], NULL, name, 0, 1, NULL, NULL, fs, call_js, &fs->tsfn) != napi_ok ||
      pthread_create(&fs->thread, NULL, loop_thread, fs) != 0) {
    fuse_session_unmount(fs->se);
    fuse_session_destroy(fs->se);
    fs_free(fs);
    napi_throw_error(env, "ERR_MOUNT", "cannot start the FUSE thread");
    return NULL;
  }
  fs->thread_started = 1;
  napi_value handle;
  NAPI_OK(napi_create_external(env, fs, NULL, NULL, &handle));
  return handle;
}

static fuse_req_t take_slot(fs_t *fs, uint32_t slot) {
  fuse_req_t req = NULL;
  pthread_mutex_lock(&fs->lock);
  if (slot < fs->slot_cap && fs->slots[slot]) {
    req = fs->slots[slot];
    fs->slots[slot] = NULL;
    fs->free_slots[fs->free_count++] = slot;
    fs->pending--;
  }
  pthread_mutex_unlock(&fs->lock);
  return req;
}

/* replyRead(handle, slot, buffers[]): the bytes of a parked read, gathered from chunk slices */
static napi_value js_reply_read(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fs_t *fs = get_fs(env, argv[0]);
  if (!fs) return NULL;
  uint32_t slot, count;
  NAPI_OK(napi_get_value_uint32(env, argv[1], &slot));
  NAPI_OK(napi_get_array_length(env, argv[2], &count));
  struct iovec iov[64];
  struct iovec *v = count <= 64 ? iov : malloc(count * sizeof *v);
  if (!v) { napi_throw_error(env, "ENOMEM", "out of memory"); return NULL; }
  for (uint32_t i = 0; i < count; i++) {
    napi_value b;
    napi_get_element(env, argv[2], i, &b);
    if (napi_get_buffer_info(env, b, &v[i].iov_base, &v[i].iov_len) != napi_ok) {
      if (v != iov) free(v);
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "replyRead takes an array of Buffers");
      return NULL;
    }
  }
  fuse_req_t req = take_slot(fs, slot);
  if (req) fuse_reply_iov(req, v, (int)count);
  if (v != iov) free(v);
  return NULL;
}

/* replyError(handle, slot, errno) */
static napi_value js_reply_error(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fs_t *fs = get_fs(env, argv[0]);
  if (!fs) return NULL;
  uint32_t slot;
  int32_t err;
  NAPI_OK(napi_get_value_uint32(env, argv[1], &slot));
  NAPI_OK(napi_get_value_int32(env, argv[2], &err));
  fuse_req_t req = take_slot(fs, slot);
  if (req) fuse_reply_err(req, err > 0 ? err : EIO);
  return NULL;
}

/* setChunk(handle, index, buffer): lends a verified chunk; it is read in place until dropChunk */
static napi_value js_set_chunk(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fs_t *fs = get_fs(env, argv[0]);
  if (!fs) return NULL;
  uint32_t index;
  NAPI_OK(napi_get_value_uint32(env, argv[1], &index));
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok || index >= fs->chunk_count) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "setChunk takes a chunk index and a Buffer");
    return NULL;
  }
  napi_ref ref, old;
  NAPI_OK(napi_create_reference(env, argv[2], 1, &ref));
  pthread_mutex_lock(&fs->chunk_lock);
  old = fs->chunks[index].ref;
  fs->chunks[index] = (chunk_t){ data, len, ref };
  pthread_mutex_unlock(&fs->chunk_lock);
  if (old) napi_delete_reference(env, old);
  return NULL;
}

/* dropChunk(handle, index): takes a lent chunk back (JS evicted it) */
static napi_value js_drop_chunk(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fs_t *fs = get_fs(env, argv[0]);
  if (!fs) return NULL;
  uint32_t index;
  NAPI_OK(napi_get_value_uint32(env, argv[1], &index));
  if (index >= fs->chunk_count) return NULL;
  pthread_mutex_lock(&fs->chunk_lock);
  napi_ref old = fs->chunks[index].ref;
  fs->chunks[index] = (chunk_t){ NULL, 0, NULL };
  pthread_mutex_unlock(&fs->chunk_lock);
  if (old) napi_delete_reference(env, old);
  return NULL;
}

/* umount(path, lazy): umount2 for root; the caller falls back to fusermount3 when this says EPERM */
static napi_value js_umount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t len;
  bool lazy = false;
  NAPI_OK(napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len));
  if (argc > 1) napi_get_value_bool(env, argv[1], &lazy);
  napi_value rc;
  NAPI_OK(napi_create_int32(env, umount2(path, lazy ? MNT_DETACH : 0) == 0 ? 0 : errno, &rc));
  return rc;
}

/* close(handle): after the exit event. Frees everything unless JS still holds parked reads. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fs_t *fs = get_fs(env, argv[0]);
  if (!fs || fs->exited) return NULL;
  fs->exited = 1;
  if (fs->thread_started) pthread_join(fs->thread, NULL);
  napi_release_threadsafe_function(fs->tsfn, napi_tsfn_abort);
  if (fs->pending == 0) {
    fuse_session_destroy(fs->se);
    /* the handle stays referenced by JS; its memory is left for the process to reclaim at exit */
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL },
    { "replyRead", NULL, js_reply_read, NULL, NULL, NULL, napi_default, NULL },
    { "replyError", NULL, js_reply_error, NULL, NULL, NULL, napi_default, NULL },
    { "setChunk", NULL, js_set_chunk, NULL, NULL, NULL, napi_default, NULL },
    { "dropChunk", NULL, js_drop_chunk, NULL, NULL, NULL, napi_default, NULL },
    { "umount", NULL, js_umount, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  napi_value n;
  napi_create_int32(env, NODE_FIELDS, &n);
  napi_set_named_property(env, exports, "NODE_FIELDS", n);
  napi_create_int32(env, REF_FIELDS, &n);
  napi_set_named_property(env, exports, "REF_FIELDS", n);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
