/* File-system calls Node's fs lacks, needed to snapshot and restore a tree faithfully:
 * extended attributes of the link itself (l*xattr), device/fifo/socket nodes (mknod), nanosecond
 * timestamps that do not follow symlinks (utimensat), data/hole extents of sparse files (lseek
 * SEEK_DATA/SEEK_HOLE) and one flush of a whole file system before a tree is published (syncfs).
 * All are synchronous and cheap; none is called on a FUSE or gRPC serving path. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "addon.h"

/* Where an entry is: its full path, and, when listed from a directory, that directory's fd and the
 * entry's name in it (dirfd -1 otherwise). */
typedef struct {
  const char *path;
  int dirfd;
  const char *name;
} entry_at;

/* llistxattr, through listxattrat (Linux 6.13) relative to the entry's directory when there is one:
 * the full path walk of llistxattr was half of a scan's time per entry. */
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
static int have_listxattrat = 1;
static ssize_t list_names(const entry_at *e, char *list, size_t size) {
  if (e->dirfd >= 0 && have_listxattrat) {
    ssize_t n = syscall(SYS_listxattrat, e->dirfd, e->name, AT_SYMLINK_NOFOLLOW, list, size);
    if (n >= 0 || errno != ENOSYS) return n;
    have_listxattrat = 0;
  }
  return llistxattr(e->path, list, size);
}

/* The xattrs of the link itself as Array<[name: Buffer, value: Buffer]>, in the order listed; an empty
 * array where the file system keeps none. NULL after throwing. */
static napi_value xattrs_of(napi_env env, const entry_at *e) {
  const char *path = e->path;
  napi_value result;
  napi_create_array(env, &result);
  ssize_t n;
  char *names = NULL;
  for (;;) {
    n = list_names(e, NULL, 0);
    if (n < 0) {
      if (errno == ENOTSUP) return result; /* file system without xattrs: none to keep */
      return throw_errno(env, errno, "llistxattr", path);
    }
    if (n == 0) return result;
    names = realloc(names, (size_t)n);
    ssize_t m = list_names(e, names, (size_t)n);
    if (m >= 0) { n = m; break; }
    if (errno != ERANGE) {
      napi_value r = throw_errno(env, errno, "llistxattr", path);
      free(names);
      return r;
    }
  }
  uint32_t idx = 0;
  for (ssize_t off = 0; off < n;) {
    const char *name = names + off;
    size_t nl = strlen(name);
    off += (ssize_t)nl + 1;
    void *val = NULL;
    ssize_t vl;
    for (;;) {
      vl = lgetxattr(path, name, NULL, 0);
      if (vl < 0) break;
      val = realloc(val, vl ? (size_t)vl : 1);
      ssize_t got = lgetxattr(path, name, val, (size_t)vl);
      if (got >= 0) { vl = got; break; }
      if (errno != ERANGE) { vl = -1; break; }
    }
    if (vl < 0) {
      if (errno == ENODATA) { free(val); continue; } /* removed since listed */
      napi_value r = throw_errno(env, errno, "lgetxattr", path);
      free(val); free(names);
      return r;
    }
    napi_value pair, nb, vb;
    napi_create_buffer_copy(env, nl, name, NULL, &nb);
    napi_create_buffer_copy(env, (size_t)vl, val ? val : "", NULL, &vb);
    napi_create_array_with_length(env, 2, &pair);
    napi_set_element(env, pair, 0, nb);
    napi_set_element(env, pair, 1, vb);
    napi_set_element(env, result, idx++, pair);
    free(val);
  }
  free(names);
  return result;
}

/* setXattr(path, name: Buffer, value: Buffer), on the link itself */
static napi_value set_xattr(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "setXattr(path, name: Buffer, value: Buffer)");
  void *name, *val;
  size_t nl, vl;
  if (!get_buffer(env, argv[1], "setXattr: name", &name, &nl) || !get_buffer(env, argv[2], "setXattr: value", &val, &vl))
    return NULL;
  char *path = get_path(env, argv[0], "setXattr: path");
  if (!path) return NULL;
  char *zname = malloc(nl + 1);
  if (!zname) return free(path), throw_errno(env, ENOMEM, "malloc", NULL);
  memcpy(zname, name, nl);
  zname[nl] = 0;
  int rc = lsetxattr(path, zname, val, vl, 0);
  napi_value r = NULL;
  if (rc < 0) r = throw_errno(env, errno, "lsetxattr", path);
  free(zname);
  free(path);
  return r;
}

/* mknod(path, mode, rdev) — rdev as st_rdev reports it (a number) */
static napi_value do_mknod(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "mknod(path, mode: number, rdev: number)");
  uint32_t mode;
  int64_t rdev;
  if (!get_u32(env, argv[1], "mknod: mode", &mode) || !get_i64(env, argv[2], "mknod: rdev", &rdev)) return NULL;
  char *path = get_path(env, argv[0], "mknod: path");
  if (!path) return NULL;
  napi_value r = NULL;
  if (mknod(path, (mode_t)mode, (dev_t)rdev) < 0) r = throw_errno(env, errno, "mknod", path);
  free(path);
  return r;
}

/* setTimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec) — nanoseconds, never following a symlink */
static napi_value set_times(napi_env env, napi_callback_info info) {
  GET_ARGS(5, "setTimes(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec)");
  static const char *const names[] = {"setTimes: atimeSec", "setTimes: atimeNsec", "setTimes: mtimeSec", "setTimes: mtimeNsec"};
  int64_t v[4];
  for (int i = 0; i < 4; i++)
    if (!get_i64(env, argv[i + 1], names[i], &v[i])) return NULL;
  char *path = get_path(env, argv[0], "setTimes: path");
  if (!path) return NULL;
  struct timespec ts[2] = {{.tv_sec = v[0], .tv_nsec = v[1]}, {.tv_sec = v[2], .tv_nsec = v[3]}};
  napi_value r = NULL;
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0) r = throw_errno(env, errno, "utimensat", path);
  free(path);
  return r;
}

static napi_value seek(napi_env env, napi_callback_info info, int whence, const char *what) {
  GET_ARGS(2, "seekData/seekHole(fd: number, offset: number)");
  int32_t fd;
  int64_t off;
  if (!get_i32(env, argv[0], "seek: fd", &fd) || !get_i64(env, argv[1], "seek: offset", &off)) return NULL;
  off_t r = lseek(fd, (off_t)off, whence);
  if (r < 0) {
    if (errno == ENXIO) r = -1; /* no data (or hole) at or after offset */
    else return throw_errno(env, errno, what, NULL);
  }
  napi_value out;
  napi_create_int64(env, (int64_t)r, &out);
  return out;
}

/* seekData(fd, offset) / seekHole(fd, offset) -> next data / hole offset, or -1 past the end */
static napi_value seek_data(napi_env env, napi_callback_info info) { return seek(env, info, SEEK_DATA, "lseek(SEEK_DATA)"); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return seek(env, info, SEEK_HOLE, "lseek(SEEK_HOLE)"); }

/* The fd argument of a call taking just one; false after throwing a TypeError that shows `usage`. */
static bool fd_arg(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s takes 1 argument", usage), false;
  return get_i32(env, argv[0], usage, fd);
}

/* syncfsAsync(fd): Promise<void> -- syncfs(fd): flush the whole file system holding fd, once, instead of
 * an fsync per object; in the libuv thread pool, so push can encode its tree while the chunks it
 * names reach the disk. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} syncfs_job;

static void syncfs_execute(napi_env env, void *data) {
  syncfs_job *j = data;
  j->err = syncfs(j->fd) < 0 ? errno : 0;
}

static void syncfs_complete(napi_env env, napi_status status, void *data) {
  syncfs_job *j = data;
  napi_value v;
  if (j->err == 0) {
    napi_get_undefined(env, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    throw_errno(env, j->err, "syncfs", NULL);
    reject_with_pending(env, j->deferred);
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value do_syncfs_async(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "syncfsAsync(fd: number)", &fd)) return NULL;
  syncfs_job *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, ENOMEM, "syncfs", NULL);
  j->fd = fd;
  return queue_promise_work(env, "snapdir:syncfs", syncfs_execute, syncfs_complete, j, &j->deferred, &j->work);
}

/* startWriteback(fd): ask the kernel to start writing the file's dirty pages now, without waiting, so
 * the one syncfs at the end of a push finds little left to do. */
static napi_value start_writeback(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "startWriteback(fd: number)", &fd)) return NULL;
  if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0) return throw_errno(env, errno, "sync_file_range", NULL);
  return NULL;
}

/* posix_fadvise(WILLNEED) over the whole file unless its first byte is already cached: the kernel
 * queues reads of what is not cached and returns, so the disk reads many files at once while the
 * caller works on the first (a cold push reads 2-3x faster than one file at a time). The check first,
 * because on a cached file the advice still walks every page (a tenth of a second of CPU over a warm
 * 200 MB tree); RWF_NOWAIT reads only from the cache. 1 when advised, 0 when cached (or empty). */
int advise_unless_cached(int fd) {
  char byte;
  struct iovec iov = {&byte, 1};
  if (preadv2(fd, &iov, 1, 0, RWF_NOWAIT) >= 0) return 0;
  posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
  return 1;
}

/* willNeed(fd): advise_unless_cached for one open file */
static napi_value will_need(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!fd_arg(env, info, "willNeed(fd: number)", &fd)) return NULL;
  advise_unless_cached(fd);
  return NULL;
}


/* A directory listing packed for JS: one Buffer of all names, one Float64Array of STAT_ROW numbers per
 * entry, and the xattrs of the few entries that have any. Built in C and handed over in three values,
 * because building a JS array per entry through N-API (fourteen calls each) cost more than the
 * system calls did: a scan of a root file system spent two thirds of its native time there. */
#define STAT_ROW 14 /* [nameStart, nameLength, mode, uid, gid, size, mtimeSec, mtimeNsec, nlink, rdev,
                       blocks, inoHigh, inoLow, dev]: inode numbers are 64-bit, so they come in two
                       exact halves (hardlink detection must never confuse two) */
typedef struct {
  char *names;
  size_t names_len, names_cap;
  double *rows;
  size_t count, rows_cap;
} listing;

static int listing_add(listing *l, const char *name, size_t nl, const struct stat *st) {
  if (l->names_len + nl > l->names_cap) {
    size_t cap = (l->names_len + nl) * 2 + 256;
    char *grown = realloc(l->names, cap);
    if (!grown) return -1;
    l->names = grown;
    l->names_cap = cap;
  }
  if (l->count == l->rows_cap) {
    size_t cap = l->rows_cap * 2 + 16;
    double *grown = realloc(l->rows, cap * STAT_ROW * sizeof(double));
    if (!grown) return -1;
    l->rows = grown;
    l->rows_cap = cap;
  }
  uint64_t ino = (uint64_t)st->st_ino;
  double row[STAT_ROW] = {(double)l->names_len, (double)nl, st->st_mode, st->st_uid, st->st_gid, (double)st->st_size,
                          (double)st->st_mtim.tv_sec, (double)st->st_mtim.tv_nsec, (double)st->st_nlink,
                          (double)st->st_rdev, (double)st->st_blocks, (double)(ino >> 32),
                          (double)(ino & 0xffffffffu), (double)st->st_dev};
  memcpy(l->rows + l->count * STAT_ROW, row, sizeof row);
  memcpy(l->names + l->names_len, name, nl);
  l->names_len += nl;
  l->count++;
  return 0;
}

/* [names, rows, xattrs] for JS; NULL after throwing */
static napi_value listing_value(napi_env env, const listing *l, napi_value xattrs) {
  napi_value names, buf, rows, out;
  void *data;
  size_t bytes = l->count * STAT_ROW * sizeof(double);
  if (napi_create_buffer_copy(env, l->names_len, l->names_len ? l->names : "", NULL, &names) != napi_ok ||
      napi_create_arraybuffer(env, bytes, &data, &buf) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, l->count * STAT_ROW, buf, 0, &rows) != napi_ok)
    return throw_error(env, "ERR_NO_MEMORY", "cannot allocate a directory listing");
  if (bytes) memcpy(data, l->rows, bytes);
  napi_create_array_with_length(env, 3, &out);
  napi_set_element(env, out, 0, names);
  napi_set_element(env, out, 1, rows);
  napi_set_element(env, out, 2, xattrs);
  return out;
}

/* Whether an entry has xattrs worth listing (a file system without them has none). */
static int has_xattrs(const entry_at *e) {
  ssize_t n = list_names(e, NULL, 0);
  return n > 0 || (n < 0 && errno != ENOTSUP);
}

/* Adds one entry's xattrs to `xattrs` at index i if it has any; 0, or -1 after throwing. */
static int add_xattrs(napi_env env, napi_value xattrs, uint32_t i, const entry_at *at) {
  if (!has_xattrs(at)) return 0;
  napi_value pairs = xattrs_of(env, at);
  if (!pairs) return -1;
  napi_set_element(env, xattrs, i, pairs);
  return 0;
}

/* lstatRow(path) -> the listing of readdirStat for that one path, its name empty */
static napi_value lstat_row(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "lstatRow(path)");
  char *path = get_path(env, argv[0], "lstatRow: path");
  if (!path) return NULL;
  struct stat st;
  napi_value r = NULL, xattrs;
  listing l = {0};
  entry_at at = {path, -1, NULL};
  napi_create_array(env, &xattrs);
  if (lstat(path, &st) < 0) r = throw_errno(env, errno, "lstat", path);
  else if (listing_add(&l, "", 0, &st) < 0) throw_errno(env, ENOMEM, "malloc", NULL);
  else if (add_xattrs(env, xattrs, 0, &at) == 0) r = listing_value(env, &l, xattrs);
  free(l.names);
  free(l.rows);
  free(path);
  return r;
}

/* readdirStat(dir) -> [names, rows, xattrs] (see listing) for every entry but '.' and '..', in
 * directory order. One call per directory and fstatat relative to it: a scan of a root file system
 * then costs a few microseconds an entry, where fs.lstatSync builds four Date objects for each. */
static napi_value readdir_stat(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "readdirStat(dir)");
  char *path = get_path(env, argv[0], "readdirStat: dir");
  if (!path) return NULL;
  DIR *d = opendir(path);
  if (!d) {
    napi_value r = throw_errno(env, errno, "opendir", path);
    free(path);
    return r;
  }
  napi_value xattrs, result = NULL;
  napi_create_array(env, &xattrs);
  listing l = {0};
  int fd = dirfd(d);
  size_t dl = strlen(path);
  char *full = NULL;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno) throw_errno(env, errno, "readdir", path);
      else result = listing_value(env, &l, xattrs);
      break;
    }
    const char *n = de->d_name;
    if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
    struct stat st;
    if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue; /* removed since listed */
      throw_errno(env, errno, "lstat", n);
      break;
    }
    size_t nl = strlen(n);
    char *grown = realloc(full, dl + nl + 2);
    if (!grown || listing_add(&l, n, nl, &st) < 0) {
      throw_errno(env, ENOMEM, "malloc", NULL);
      break;
    }
    full = grown;
    memcpy(full, path, dl);
    full[dl] = '/';
    memcpy(full + dl + 1, n, nl + 1);
    entry_at at = {full, fd, n};
    if (add_xattrs(env, xattrs, (uint32_t)(l.count - 1), &at) < 0) break;
  }
  closedir(d);
  free(path);
  free(full);
  free(l.names);
  free(l.rows);
  return result;
}

void register_fsmeta(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("setXattr", set_xattr), METHOD("mknod", do_mknod),
                 METHOD("setTimes", set_times), METHOD("seekData", seek_data), METHOD("seekHole", seek_hole),
                 METHOD("syncfsAsync", do_syncfs_async), METHOD("readdirStat", readdir_stat),
                 METHOD("lstatRow", lstat_row), METHOD("startWriteback", start_writeback),
                 METHOD("willNeed", will_need));
}
