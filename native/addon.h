#ifndef SNAPDIR_ADDON_H
#define SNAPDIR_ADDON_H
#include <node_api.h>
#include <pthread.h>

#include "napi-util.h"

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
void register_go_flate(napi_env env, napi_value exports);
void register_pgzip(napi_env env, napi_value exports);
void register_kzstd(napi_env env, napi_value exports);
void register_object_read(napi_env env, napi_value exports);
void register_heap(napi_env env, napi_value exports);
#endif
