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
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "napi-util.h"

extern char **environ;

/* The rows of the inode table JS fills (src/mount/inode-table.ts), one Float64Array per kind: the columns
 * of each are declared here once, by name, exported as `layout` and checked by JS when it loads this
 * addon (src/mount/fuse.ts), so the two sides cannot drift apart unnoticed. */
#define NODE_COLUMNS(X)                                                                                  \
  X(F_MODE, "mode") X(F_UID, "uid") X(F_GID, "gid") X(F_NLINK, "nlink") X(F_SIZE, "size") X(F_RDEV, "rdev") \
  X(F_BLOCKS, "blocks") X(F_MTIME_SEC, "mtimeSec") X(F_MTIME_NSEC, "mtimeNsec") X(F_CHILD_START, "childStart") \
  X(F_CHILD_COUNT, "childCount") X(F_DATA_OFF, "dataOff") X(F_DATA_LEN, "dataLen")                      \
  X(F_XATTR_START, "xattrStart") X(F_XATTR_COUNT, "xattrCount") X(F_FLAGS, "flags")
/* A directory entry: its name in the pool and its inode. Sorted by name within each directory. */
#define DIRENT_COLUMNS(X) X(D_NAME_OFF, "nameOff") X(D_NAME_LEN, "nameLen") X(D_INO, "ino")
#define XATTR_COLUMNS(X) X(X_NAME_OFF, "nameOff") X(X_NAME_LEN, "nameLen") X(X_VALUE_OFF, "valueOff") X(X_VALUE_LEN, "valueLen")
/* A file's content: `length` bytes from `offset` in chunk `chunk`, `count` times in a row, ending at
 * file offset `end`. */
#define REF_COLUMNS(X) X(R_CHUNK, "chunk") X(R_OFFSET, "offset") X(R_LENGTH, "length") X(R_COUNT, "count") X(R_END, "end")
/* node flags: a regular file whose content is pool[data_off, data_off + size), or whose refs are
 * refs[data_off, data_off + data_len) */
#define FLAGS(X) X(FLAG_INLINE, "inline", 1) X(FLAG_CHUNKED, "chunked", 2)
/* what the FUSE thread tells JS (see call_js) */
#define EVENTS(X) X(EV_READ, "read", 1) X(EV_EXIT, "exit", 2) X(EV_HIT, "hit", 3)

#define COLUMN_ID(id, name) id,
#define COLUMN_NAME(id, name) name,
#define VALUE_ID(id, name, value) id = value,
#define VALUE_NAME(id, name, value) name,
#define VALUE_OF(id, name, value) value,
enum { NODE_COLUMNS(COLUMN_ID) NODE_FIELDS };
enum { DIRENT_COLUMNS(COLUMN_ID) DIRENT_FIELDS };
enum { XATTR_COLUMNS(COLUMN_ID) XATTR_FIELDS };
enum { REF_COLUMNS(COLUMN_ID) REF_FIELDS };
enum { FLAGS(VALUE_ID) };
enum { EVENTS(VALUE_ID) };

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

typedef struct {
  int kind;
  uint32_t slot;
  uint64_t ino, offset, size;
  int error;
} event_t;

typedef struct {
  struct fuse_session *se;
  pthread_t thread;
  /* loop_done: the FUSE loop has ended (set by its thread under `lock`); closed: js close() freed the
   * session; gone: the JS handle was finalized without close (the environment is being torn down) */
  int loop_done, closed, gone;
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
  char *mountpoint;
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

/* Hands an event to the JS thread; 0 (and ev freed) when JS takes no more events. */
static int post_event(fs_t *fs, event_t *ev) {
  if (!__atomic_load_n(&fs->gone, __ATOMIC_ACQUIRE) &&
      napi_call_threadsafe_function(fs->tsfn, ev, napi_tsfn_nonblocking) == napi_ok)
    return 1;
  free(ev);
  return 0;
}

static fuse_req_t take_slot(fs_t *fs, uint32_t slot);

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
  if (!post_event(fs, ev) && (req = take_slot(fs, slot))) fuse_reply_err(req, EIO); /* nobody would answer it */
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
  pthread_mutex_lock(&fs->lock);
  fs->loop_done = 1;
  pthread_mutex_unlock(&fs->lock);
  event_t *ev = calloc(1, sizeof *ev);
  if (ev) {
    ev->kind = EV_EXIT;
    ev->error = rc < 0 ? -rc : 0;
    post_event(fs, ev);
  }
  return NULL;
}

/* ---- N-API ---- */

/* libfuse explains a failed mount through its log; keep the last message for the thrown error */
static char last_log[512];
static void capture_log(enum fuse_log_level level, const char *fmt, va_list ap) {
  if (level > FUSE_LOG_ERR) return;
  vsnprintf(last_log, sizeof last_log, fmt, ap);
  size_t len = strlen(last_log);
  while (len && last_log[len - 1] == '\n') last_log[--len] = 0;
}

/* onEvent(kind, slot, ino, offset, size | errno) on the JS thread; env is NULL when JS takes no more */
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

/* What the mount holds besides the struct itself: the table, lent chunks, parked reads, the session. */
static void fs_release(napi_env env, fs_t *fs) {
  for (uint32_t s = 0; s < fs->slot_cap; s++) { /* the connection is gone: the replies only free the requests */
    fuse_req_t req = take_slot(fs, s);
    if (req) fuse_reply_err(req, EIO);
  }
  if (fs->se) fuse_session_destroy(fs->se);
  fs->se = NULL;
  pthread_mutex_lock(&fs->chunk_lock);
  for (uint64_t i = 0; fs->chunks && i < fs->chunk_count; i++)
    if (fs->chunks[i].ref) napi_delete_reference(env, fs->chunks[i].ref);
  pthread_mutex_unlock(&fs->chunk_lock);
  free(fs->nodes), free(fs->dirents), free(fs->xattrs), free(fs->refs), free(fs->chunks), free(fs->pool);
  free(fs->slots), free(fs->free_slots);
  fs->nodes = NULL, fs->dirents = NULL, fs->xattrs = NULL, fs->refs = NULL, fs->chunks = NULL, fs->pool = NULL;
  fs->slots = NULL, fs->free_slots = NULL;
  fs->node_count = fs->chunk_count = 0;
  fs->slot_cap = fs->free_count = 0;
}

static void fs_free(napi_env env, fs_t *fs) {
  fs_release(env, fs);
  free(fs->mountpoint);
  pthread_mutex_destroy(&fs->lock);
  pthread_mutex_destroy(&fs->chunk_lock);
  free(fs);
}

static int loop_done(fs_t *fs) {
  pthread_mutex_lock(&fs->lock);
  int done = fs->loop_done;
  pthread_mutex_unlock(&fs->lock);
  return done;
}

/* After the loop ended: joins its thread, stops the events and frees all but the struct. */
static void fs_close(napi_env env, fs_t *fs) {
  pthread_join(fs->thread, NULL);
  napi_release_threadsafe_function(fs->tsfn, napi_tsfn_abort);
  fs_release(env, fs);
  fs->closed = 1;
}

/* Detaches the kernel mount, as fuse_session_unmount does (umount2 for root, fusermount3 otherwise),
 * without touching the session the FUSE thread still reads. */
static void detach_mount(const char *mountpoint) {
  if (umount2(mountpoint, MNT_DETACH) == 0 || errno != EPERM) return;
  char *argv[] = {"fusermount3", "-u", "-z", (char *)mountpoint, NULL};
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0) waitpid(pid, NULL, 0);
}

/* The handle's finalizer: it was dropped, or the JS environment is torn down. Closed, it frees the
 * rest; still mounted (a process or worker ending without close), it detaches the kernel mount so no
 * dead mount is left, and leaves the memory to the FUSE thread, which ends with the connection. */
static void finalize_fs(napi_env env, void *data, void *hint) {
  fs_t *fs = data;
  if (!fs->closed) {
    __atomic_store_n(&fs->gone, 1, __ATOMIC_RELEASE);
    if (!loop_done(fs)) {
      fuse_session_exit(fs->se);
      detach_mount(fs->mountpoint);
      return;
    }
    fs_close(env, fs);
  }
  fs_free(env, fs);
}

static fs_t *get_fs(napi_env env, napi_value v, const char *what) {
  fs_t *fs = NULL;
  if (napi_unwrap(env, v, (void **)&fs) != napi_ok || !fs)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be a mount handle", what), NULL;
  return fs;
}

/* a + b > limit, without overflow */
static int past(uint64_t a, uint64_t b, uint64_t limit) { return a > limit || b > limit - a; }

/* NULL when every index of the table is in bounds (the FUSE thread trusts them), else what is not. */
static const char *check_table(const fs_t *fs, size_t ndirents, size_t nxattrs, size_t nrefs, size_t pool,
                               const char **rows, uint64_t *row) {
  *rows = "nodes";
  if (fs->node_count == 0 || !S_ISDIR(fs->nodes[0].mode)) return (*row = 0), "the root (inode 1) must be a directory";
  for (uint64_t i = 0; i < fs->node_count; i++) {
    const node_t *n = &fs->nodes[i];
    *row = i;
    if (S_ISDIR(n->mode) && past(n->child_start, n->child_count, ndirents)) return "its children are past the dirents";
    if (past(n->xattr_start, n->xattr_count, nxattrs)) return "its xattrs are past the xattrs";
    if ((n->flags & FLAG_INLINE) && (n->data_len != n->size || past(n->data_off, n->data_len, pool)))
      return "its inline content is not size bytes within the pool";
    if (S_ISLNK(n->mode) && past(n->data_off, n->data_len, pool)) return "its target is past the pool";
    if ((n->flags & FLAG_CHUNKED) && past(n->data_off, n->data_len, nrefs)) return "its refs are past the refs";
  }
  *rows = "dirents";
  for (uint64_t i = 0; i < ndirents; i++) {
    const dirent_t *d = &fs->dirents[i];
    *row = i;
    if (d->ino < 1 || d->ino > fs->node_count) return "its inode is not in the nodes";
    if (past(d->name_off, d->name_len, pool)) return "its name is past the pool";
  }
  *rows = "xattrs";
  for (uint64_t i = 0; i < nxattrs; i++) {
    const xattr_t *x = &fs->xattrs[i];
    *row = i;
    if (past(x->name_off, x->name_len, pool) || past(x->value_off, x->value_len, pool)) return "it is past the pool";
  }
  *rows = "refs";
  for (uint64_t i = 0; i < nrefs; i++) {
    const ref_t *r = &fs->refs[i];
    *row = i;
    if (r->chunk >= fs->chunk_count) return "its chunk is not below chunkCount";
    if (r->length == 0 || r->count == 0) return "its length and count must not be 0";
  }
  return NULL;
}

/* The rows of one table from options[name]: a Float64Array of whole rows of `fields` numbers. */
static bool opt_rows(options_t *o, const char *name, size_t fields, double **rows, size_t *count) {
  size_t len;
  if (!opt_typed(o, name, napi_float64_array, (void **)rows, &len)) return false;
  if (len % fields)
    return throw_range_error(o->env, "ERR_INVALID_ARG_VALUE", "%s holds %zu numbers, not rows of %zu", o->what, len, fields),
           false;
  *count = len / fields;
  return true;
}

/* libfuse's argv: the program name, then "-o" and each of options.fuseOptions; NULL after throwing */
static char **fuse_argv(options_t *o, int *argc) {
  napi_env env = o->env;
  napi_value list;
  uint32_t n;
  if (!opt_value(o, "fuseOptions", &list) || !get_array(env, list, o->what, &n)) return NULL;
  char **argv = calloc(2 * n + 2, sizeof *argv);
  if (!argv) return throw_errno(env, ENOMEM, "malloc", NULL), NULL;
  *argc = 0;
  argv[(*argc)++] = strdup("snapdir");
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    char *opt = napi_get_element(env, list, i, &v) == napi_ok ? get_path(env, v, "mount: options.fuseOptions[]") : NULL;
    if (!opt) {
      for (int k = 0; k < *argc; k++) free(argv[k]);
      free(argv);
      return NULL;
    }
    argv[(*argc)++] = strdup("-o");
    argv[(*argc)++] = opt;
  }
  return argv;
}

/* mount({ mountpoint, fuseOptions, nodes, dirents, xattrs, refs, chunkCount, pool, totalBytes, cacheSeconds,
 * onEvent }) -> handle (see FuseAddon in src/mount/fuse.ts) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "mount(options)");
  options_t o;
  napi_value on_event;
  double *nodes, *dirents, *xattrs, *refs, total_bytes, timeout;
  uint32_t chunk_count;
  size_t nnodes, ndirents, nxattrs, nrefs, pool_len;
  void *pool;
  char *mountpoint;
  if (!get_options(env, argv[0], "mount", &o) || !opt_rows(&o, "nodes", NODE_FIELDS, &nodes, &nnodes) ||
      !opt_rows(&o, "dirents", DIRENT_FIELDS, &dirents, &ndirents) ||
      !opt_rows(&o, "xattrs", XATTR_FIELDS, &xattrs, &nxattrs) || !opt_rows(&o, "refs", REF_FIELDS, &refs, &nrefs) ||
      !opt_u32(&o, "chunkCount", &chunk_count) || !opt_buffer(&o, "pool", &pool, &pool_len) ||
      !opt_double(&o, "totalBytes", &total_bytes) || !opt_double(&o, "cacheSeconds", &timeout) ||
      !opt_value(&o, "onEvent", &on_event) || !get_function(env, on_event, o.what) ||
      !opt_path(&o, "mountpoint", false, &mountpoint))
    return NULL;

  fs_t *fs = calloc(1, sizeof *fs);
  if (!fs) return free(mountpoint), throw_errno(env, ENOMEM, "malloc", NULL);
  pthread_mutex_init(&fs->lock, NULL);
  pthread_mutex_init(&fs->chunk_lock, NULL);
  fs->mountpoint = mountpoint;
  fs->node_count = nnodes;
  fs->chunk_count = chunk_count;
  fs->chunks = calloc(fs->chunk_count + 1, sizeof *fs->chunks);
  fs->refs = calloc(nrefs + 1, sizeof *fs->refs);
  fs->nodes = calloc(nnodes + 1, sizeof *fs->nodes);
  fs->dirents = calloc(ndirents + 1, sizeof *fs->dirents);
  fs->xattrs = calloc(nxattrs + 1, sizeof *fs->xattrs);
  fs->pool = malloc(pool_len ? pool_len : 1);
  if (!fs->nodes || !fs->dirents || !fs->xattrs || !fs->pool || !fs->chunks || !fs->refs) {
    fs_free(env, fs);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  memcpy(fs->pool, pool, pool_len);
  for (size_t i = 0; i < nnodes; i++) {
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
  for (size_t i = 0; i < ndirents; i++) {
    const double *f = dirents + i * DIRENT_FIELDS;
    fs->dirents[i] = (dirent_t){ (uint64_t)f[D_NAME_OFF], (uint64_t)f[D_NAME_LEN], (uint64_t)f[D_INO] };
  }
  for (size_t i = 0; i < nxattrs; i++) {
    const double *f = xattrs + i * XATTR_FIELDS;
    fs->xattrs[i] = (xattr_t){ (uint64_t)f[X_NAME_OFF], (uint64_t)f[X_NAME_LEN], (uint64_t)f[X_VALUE_OFF], (uint64_t)f[X_VALUE_LEN] };
  }
  for (size_t i = 0; i < nrefs; i++) {
    const double *f = refs + i * REF_FIELDS;
    fs->refs[i] = (ref_t){ (uint64_t)f[R_CHUNK], (uint64_t)f[R_OFFSET], (uint64_t)f[R_LENGTH], (uint64_t)f[R_COUNT],
                           (uint64_t)f[R_END] };
  }
  const char *rows;
  uint64_t row;
  const char *bad = check_table(fs, ndirents, nxattrs, nrefs, pool_len, &rows, &row);
  if (bad) {
    fs_free(env, fs);
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "mount: options.%s row %llu: %s", rows,
                             (unsigned long long)row, bad);
  }
  fs->total_bytes = total_bytes > 0 ? (uint64_t)total_bytes : 0;
  fs->timeout = timeout;

  int fargc;
  char **fargv = fuse_argv(&o, &fargc);
  if (!fargv) return fs_free(env, fs), NULL;
  struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
  last_log[0] = 0;
  fuse_set_log_func(capture_log);
  fs->se = fuse_session_new(&args, &ops, sizeof ops, fs);
  int mounted = fs->se && fuse_session_mount(fs->se, fs->mountpoint) == 0;
  fuse_opt_free_args(&args);
  for (int i = 0; i < fargc; i++) free(fargv[i]);
  free(fargv);
  if (!mounted) {
    napi_value e = throw_error(env, "ERR_MOUNT", "cannot mount at %s: %s", fs->mountpoint,
                               last_log[0] ? last_log : "libfuse failed");
    fs_free(env, fs);
    return e;
  }

  /* from here the kernel mount is up: every failure unmounts it again before throwing */
  napi_value name, handle;
  napi_create_string_utf8(env, "snapdir-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_object(env, &handle) != napi_ok ||
      napi_create_threadsafe_function(env, on_event, NULL, name, 0, 1, NULL, NULL, fs, call_js, &fs->tsfn) != napi_ok) {
    fuse_session_unmount(fs->se);
    fs_free(env, fs);
    return napi_failed(env, "napi_create_threadsafe_function");
  }
  if (pthread_create(&fs->thread, NULL, loop_thread, fs) != 0) {
    fuse_session_unmount(fs->se);
    napi_release_threadsafe_function(fs->tsfn, napi_tsfn_abort);
    fs_free(env, fs);
    return throw_error(env, "ERR_MOUNT", "cannot start the FUSE thread");
  }
  /* from here the thread runs: the handle owns fs, and its finalizer ends what close() did not */
  if (napi_wrap(env, handle, fs, finalize_fs, NULL, NULL) != napi_ok) {
    fuse_session_exit(fs->se);
    detach_mount(fs->mountpoint);
    return napi_failed(env, "napi_wrap");
  }
  return handle;
}

/* replyRead(handle, slot, buffers[]): the bytes of a parked read, gathered from chunk slices */
static napi_value js_reply_read(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "replyRead(handle, slot, buffers)");
  fs_t *fs = get_fs(env, argv[0], "replyRead: handle");
  uint32_t slot, count;
  if (!fs || !get_u32(env, argv[1], "replyRead: slot", &slot) || !get_array(env, argv[2], "replyRead: buffers", &count))
    return NULL;
  if (fs->closed) return NULL;
  struct iovec iov[64];
  struct iovec *v = count <= 64 ? iov : malloc(count * sizeof *v);
  if (!v) return throw_errno(env, ENOMEM, "malloc", NULL);
  for (uint32_t i = 0; i < count; i++) {
    napi_value b;
    if (napi_get_element(env, argv[2], i, &b) != napi_ok ||
        !get_buffer(env, b, "replyRead: buffers[]", &v[i].iov_base, &v[i].iov_len)) {
      if (v != iov) free(v);
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
  GET_ARGS(3, "replyError(handle, slot, errno)");
  fs_t *fs = get_fs(env, argv[0], "replyError: handle");
  uint32_t slot;
  int32_t err;
  if (!fs || !get_u32(env, argv[1], "replyError: slot", &slot) || !get_i32(env, argv[2], "replyError: errno", &err))
    return NULL;
  if (fs->closed) return NULL;
  fuse_req_t req = take_slot(fs, slot);
  if (req) fuse_reply_err(req, err > 0 ? err : EIO);
  return NULL;
}

/* The handle and chunk index of setChunk/dropChunk; NULL after throwing. */
static fs_t *chunk_args(napi_env env, napi_value *argv, const char *call, uint32_t *index) {
  fs_t *fs = get_fs(env, argv[0], call);
  if (!fs || !get_u32(env, argv[1], call, index)) return NULL;
  if (!fs->closed && *index >= fs->chunk_count)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "%s: chunk %u is not below %llu", call, *index,
                             (unsigned long long)fs->chunk_count), NULL;
  return fs;
}

/* Lends (data non-NULL) or takes back a chunk; the old loan's reference is dropped. */
static void lend(napi_env env, fs_t *fs, uint32_t index, chunk_t c) {
  pthread_mutex_lock(&fs->chunk_lock);
  napi_ref old = fs->chunks[index].ref;
  fs->chunks[index] = c;
  pthread_mutex_unlock(&fs->chunk_lock);
  if (old) napi_delete_reference(env, old);
}

/* setChunk(handle, index, buffer): lends a verified chunk; it is read in place until dropChunk */
static napi_value js_set_chunk(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "setChunk(handle, index, buffer)");
  uint32_t index;
  fs_t *fs = chunk_args(env, argv, "setChunk", &index);
  void *data;
  size_t len;
  if (!fs || !get_buffer(env, argv[2], "setChunk: buffer", &data, &len)) return NULL;
  if (fs->closed) return NULL; /* the reader may still finish fetches after the mount ended */
  napi_ref ref;
  NAPI_CALL(napi_create_reference(env, argv[2], 1, &ref));
  lend(env, fs, index, (chunk_t){ data, len, ref });
  return NULL;
}

/* dropChunk(handle, index): takes a lent chunk back (JS evicted it) */
static napi_value js_drop_chunk(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "dropChunk(handle, index)");
  uint32_t index;
  fs_t *fs = chunk_args(env, argv, "dropChunk", &index);
  if (fs && !fs->closed) lend(env, fs, index, (chunk_t){ NULL, 0, NULL });
  return NULL;
}

/* umount(path, lazy): umount2 for root; the caller falls back to fusermount3 when this says EPERM */
static napi_value js_umount(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "umount(path, lazy)");
  bool lazy;
  char *path = get_path(env, argv[0], "umount: path");
  if (!path) return NULL;
  if (!get_bool(env, argv[1], "umount: lazy", &lazy)) return free(path), NULL;
  int rc = umount2(path, lazy ? MNT_DETACH : 0) == 0 ? 0 : errno;
  free(path);
  napi_value r;
  NAPI_CALL(napi_create_int32(env, rc, &r));
  return r;
}

/* close(handle): after the exit event, joins the FUSE thread and frees the session, the table and the
 * lent chunks. Again: nothing. Before the loop ended: throws, the mount is still up. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "close(handle)");
  fs_t *fs = get_fs(env, argv[0], "close: handle");
  if (!fs || fs->closed) return NULL;
  if (!loop_done(fs))
    return throw_error(env, "ERR_MOUNT_ACTIVE", "close: %s is still mounted: unmount it first", fs->mountpoint);
  fs_close(env, fs);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("mount", js_mount), METHOD("replyRead", js_reply_read),
                 METHOD("replyError", js_reply_error), METHOD("setChunk", js_set_chunk),
                 METHOD("dropChunk", js_drop_chunk), METHOD("umount", js_umount), METHOD("close", js_close));
  static const char *const node_names[] = {NODE_COLUMNS(COLUMN_NAME)};
  static const char *const dirent_names[] = {DIRENT_COLUMNS(COLUMN_NAME)};
  static const char *const xattr_names[] = {XATTR_COLUMNS(COLUMN_NAME)};
  static const char *const ref_names[] = {REF_COLUMNS(COLUMN_NAME)};
  static const char *const flag_names[] = {FLAGS(VALUE_NAME)};
  static const int32_t flag_values[] = {FLAGS(VALUE_OF)};
  static const char *const event_names[] = {EVENTS(VALUE_NAME)};
  static const int32_t event_values[] = {EVENTS(VALUE_OF)};
  napi_value layout;
  napi_create_object(env, &layout);
  export_enum(env, layout, "node", node_names, NULL, NODE_FIELDS);
  export_enum(env, layout, "dirent", dirent_names, NULL, DIRENT_FIELDS);
  export_enum(env, layout, "xattr", xattr_names, NULL, XATTR_FIELDS);
  export_enum(env, layout, "ref", ref_names, NULL, REF_FIELDS);
  export_enum(env, layout, "flag", flag_names, flag_values, sizeof flag_values / sizeof *flag_values);
  export_enum(env, layout, "event", event_names, event_values, sizeof event_values / sizeof *event_values);
  napi_object_freeze(env, layout);
  napi_set_named_property(env, exports, "layout", layout);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
