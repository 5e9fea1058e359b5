#ifndef SNAPDIR_ADDON_H
#define SNAPDIR_ADDON_H
#include <node_api.h>
#include <pthread.h>

/* Throws a JS Error carrying errno's name as `code` (like Node's fs errors) and returns NULL. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path);
/* Reads a Buffer or string argument as a NUL-terminated path; caller frees. NULL after throwing. */
char *arg_path(napi_env env, napi_value v);
/* Declares argc/argv with the callback's first n arguments, or throws and returns NULL if fewer. */
#define GET_ARGS(n)                                                        \
  size_t argc = n;                                                         \
  napi_value argv[n];                                                      \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) { \
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected " #n " arguments"); \
    return NULL;                                                           \
  }
/* Queues execute (on the libuv pool) then complete (on the JS thread), and returns the promise that
 * complete settles through *deferred. */
napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work);
/* State of one kind kept per thread (the libuv pool's threads and JS threads keep buffers and
 * contexts between calls): zeroed on a thread's first use, and on its end handed to `release` (which
 * frees what the state points to) and freed. Declare one with THREAD_STATE_KIND. */
typedef struct {
  size_t size;
  void (*release)(void *state);
  pthread_mutex_t lock;
  int made;
  pthread_key_t key;
} thread_state_kind;
#define THREAD_STATE_KIND(type, release) {sizeof(type), (release), PTHREAD_MUTEX_INITIALIZER, 0, 0}
/* This thread's state of that kind; NULL when out of memory. */
void *thread_state(thread_state_kind *kind);
/* Grows *buf (of *cap bytes) to at least want bytes; 0, or -1 when out of memory (*buf kept). */
int grow_buffer(void **buf, size_t *cap, size_t want);

/* Advises WILLNEED for an open file unless its first byte is cached: 1 when advised (fsmeta.c). */
int advise_unless_cached(int fd);
void register_fsmeta(napi_env env, napi_value exports);
void register_object_write(napi_env env, napi_value exports);
void register_hash(napi_env env, napi_value exports);
void register_file_batch(napi_env env, napi_value exports);
void register_prefetch(napi_env env, napi_value exports);
#endif
