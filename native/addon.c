/* N-API entry: the FastCDC hot loop, the few file-system calls Node lacks (see fsmeta.c) and the
 * store-object writer and the per-file pipeline push runs on the libuv pool (object-write.c, file-batch.c).
 * Each call handles a whole buffer so the JS/C crossing costs nothing per byte. */
#include "addon.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastcdc.h"

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "ERR_NATIVE", "N-API call failed: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

/* Each state is allocated behind a pointer to its kind, which the key's destructor needs. */
typedef struct {
  thread_state_kind *kind;
  max_align_t state[];
} thread_state_box;

static void release_box(void *p) {
  thread_state_box *box = p;
  if (box->kind->release) box->kind->release(box->state);
  free(box);
}

void *thread_state(thread_state_kind *kind) {
  if (!__atomic_load_n(&kind->made, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock(&kind->lock);
    if (!kind->made && pthread_key_create(&kind->key, release_box) == 0) __atomic_store_n(&kind->made, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&kind->lock);
    if (!kind->made) return NULL;
  }
  thread_state_box *box = pthread_getspecific(kind->key);
  if (!box) {
    if (!(box = calloc(1, sizeof *box + kind->size))) return NULL;
    box->kind = kind;
    pthread_setspecific(kind->key, box);
  }
  return box->state;
}

int grow_buffer(void **buf, size_t *cap, size_t want) {
  if (*cap >= want) return 0;
  void *grown = realloc(*buf, want);
  if (!grown) return -1;
  *buf = grown;
  *cap = want;
  return 0;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char msg[512];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", name ? name : "EUNKNOWN", strerror(err), syscall,
           path ? path : "");
  napi_value e, code, m, sc, no;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, name ? name : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, e, "syscall", sc);
  napi_create_int32(env, -err, &no);
  napi_set_named_property(env, e, "errno", no);
  napi_throw(env, e);
  return NULL;
}

char *arg_path(napi_env env, napi_value v) {
  bool is_buf = false;
  napi_is_buffer(env, v, &is_buf);
  if (is_buf) {
    void *data;
    size_t len;
    napi_get_buffer_info(env, v, &data, &len);
    if (memchr(data, 0, len)) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "path must not contain NUL bytes");
      return NULL;
    }
    char *s = malloc(len + 1);
    memcpy(s, data, len);
    s[len] = 0;
    return s;
  }
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "path must be a Buffer or a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work) {
  napi_value promise, resource;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

static void free_params(napi_env env, void *data, void *hint) { free(data); }

/* chunkerCreate(min, avg, max, level, seed: bigint) -> external handle */
static napi_value chunker_create(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t min, avg, max, level;
  uint64_t seed;
  bool lossless;
  if (argc < 5 || napi_get_value_uint32(env, argv[0], &min) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &avg) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &max) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &level) != napi_ok ||
      napi_get_value_bigint_uint64(env, argv[4], &seed, &lossless) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCreate(min, avg, max, level, seed: bigint)");
    return NULL;
  }
  fastcdc_params *p = malloc(sizeof *p);
  const char *bad = fastcdc_init(p, min, avg, max, level, seed);
  if (bad) {
    free(p);
    napi_throw_range_error(env, "ERR_CHUNKER_PARAMS", bad);
    return NULL;
  }
  uint8_t *zeros = calloc(1, max);
  fastcdc_zero_chunk(p, zeros);
  free(zeros);
  napi_value ext;
  CHECK(napi_create_external(env, p, free_params, NULL, &ext));
  return ext;
}

/* chunkerCuts(handle, data: Uint8Array, eof: boolean, lengths: Uint32Array, hashes: BigUint64Array | null)
 * -> number of chunk lengths written */
static napi_value chunker_cuts(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fastcdc_params *p;
  if (argc < 5 || napi_get_value_external(env, argv[0], (void **)&p) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCuts: first argument must be a chunker handle");
    return NULL;
  }
  napi_typedarray_type t;
  size_t len, cap, hcap = 0;
  void *data, *lens, *hashes = NULL;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[1], &t, &len, &data, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCuts: data must be a Uint8Array");
    return NULL;
  }
  bool eof;
  CHECK(napi_get_value_bool(env, argv[2], &eof));
  if (napi_get_typedarray_info(env, argv[3], &t, &cap, &lens, &ab, &off) != napi_ok || t != napi_uint32_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCuts: lengths must be a Uint32Array");
    return NULL;
  }
  napi_valuetype vt;
  CHECK(napi_typeof(env, argv[4], &vt));
  if (vt != napi_null && vt != napi_undefined) {
    if (napi_get_typedarray_info(env, argv[4], &t, &hcap, &hashes, &ab, &off) != napi_ok ||
        t != napi_biguint64_array) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCuts: hashes must be a BigUint64Array or null");
      return NULL;
    }
    if (hcap < cap) cap = hcap;
  }
  size_t consumed;
  size_t n = fastcdc_cuts(p, data, len, eof, lens, hashes, cap, &consumed);
  napi_value r;
  CHECK(napi_create_uint32(env, (uint32_t)n, &r));
  return r;
}

/* chunkerZeroChunk(handle) -> [length, hash]: the chunk every run of >= max zeros starts with */
static napi_value chunker_zero_chunk(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fastcdc_params *p;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&p) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerZeroChunk: argument must be a chunker handle");
    return NULL;
  }
  napi_value arr, l, h;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  CHECK(napi_create_uint32(env, p->zero_len, &l));
  CHECK(napi_create_bigint_uint64(env, p->zero_hash, &h));
  napi_set_element(env, arr, 0, l);
  napi_set_element(env, arr, 1, h);
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"chunkerCreate", NULL, chunker_create, NULL, NULL, NULL, napi_default, NULL},
      {"chunkerCuts", NULL, chunker_cuts, NULL, NULL, NULL, napi_default, NULL},
      {"chunkerZeroChunk", NULL, chunker_zero_chunk, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  register_fsmeta(env, exports);
  register_object_write(env, exports);
  register_hash(env, exports);
  register_file_batch(env, exports);
  register_prefetch(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
