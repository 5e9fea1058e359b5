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

static void free_params(napi_env env, void *data, void *hint) { free(data); }

/* chunkerCreate(min, avg, max, level, seed: bigint) -> external handle */
static napi_value chunker_create(napi_env env, napi_callback_info info) {
  GET_ARGS(5, "chunkerCreate(min, avg, max, level, seed: bigint)");
  uint32_t min, avg, max, level;
  uint64_t seed;
  bool lossless;
  if (!get_u32(env, argv[0], "chunkerCreate: min", &min) || !get_u32(env, argv[1], "chunkerCreate: avg", &avg) ||
      !get_u32(env, argv[2], "chunkerCreate: max", &max) || !get_u32(env, argv[3], "chunkerCreate: level", &level))
    return NULL;
  if (napi_get_value_bigint_uint64(env, argv[4], &seed, &lossless) != napi_ok)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunkerCreate: seed must be a bigint");
  fastcdc_params *p = malloc(sizeof *p);
  if (!p) return throw_errno(env, ENOMEM, "malloc", NULL);
  const char *bad = fastcdc_init(p, min, avg, max, level, seed);
  if (bad) {
    free(p);
    return throw_range_error(env, "ERR_CHUNKER_PARAMS", "%s", bad);
  }
  uint8_t *zeros = calloc(1, max);
  if (!zeros) {
    free(p);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  fastcdc_zero_chunk(p, zeros);
  free(zeros);
  napi_value ext;
  if (napi_create_external(env, p, free_params, NULL, &ext) != napi_ok) {
    free(p);
    return napi_failed(env, "napi_create_external");
  }
  return ext;
}

static fastcdc_params *get_chunker(napi_env env, napi_value v, const char *what) {
  fastcdc_params *p = NULL;
  if (napi_get_value_external(env, v, (void **)&p) != napi_ok || !p)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be a chunker handle", what), NULL;
  return p;
}

/* chunkerCuts(handle, data: Uint8Array, eof: boolean, lengths: Uint32Array, hashes: BigUint64Array | null)
 * -> number of chunk lengths written */
static napi_value chunker_cuts(napi_env env, napi_callback_info info) {
  GET_ARGS(5, "chunkerCuts(handle, data, eof, lengths, hashes)");
  fastcdc_params *p = get_chunker(env, argv[0], "chunkerCuts: handle");
  size_t len, cap, hcap;
  void *data, *lens, *hashes = NULL;
  bool eof;
  if (!p || !get_typed(env, argv[1], napi_uint8_array, "chunkerCuts: data", &data, &len) ||
      !get_bool(env, argv[2], "chunkerCuts: eof", &eof) ||
      !get_typed(env, argv[3], napi_uint32_array, "chunkerCuts: lengths", &lens, &cap))
    return NULL;
  if (!is_nullish(env, argv[4])) {
    if (!get_typed(env, argv[4], napi_biguint64_array, "chunkerCuts: hashes", &hashes, &hcap)) return NULL;
    if (hcap < cap) cap = hcap;
  }
  size_t consumed;
  size_t n = fastcdc_cuts(p, data, len, eof, lens, hashes, cap, &consumed);
  napi_value r;
  NAPI_CALL(napi_create_uint32(env, (uint32_t)n, &r));
  return r;
}

/* chunkerZeroChunk(handle) -> [length, hash]: the chunk every run of >= max zeros starts with */
static napi_value chunker_zero_chunk(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "chunkerZeroChunk(handle)");
  fastcdc_params *p = get_chunker(env, argv[0], "chunkerZeroChunk: handle");
  if (!p) return NULL;
  napi_value arr, l, h;
  NAPI_CALL(napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(napi_create_uint32(env, p->zero_len, &l));
  NAPI_CALL(napi_create_bigint_uint64(env, p->zero_hash, &h));
  NAPI_CALL(napi_set_element(env, arr, 0, l));
  NAPI_CALL(napi_set_element(env, arr, 1, h));
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("chunkerCreate", chunker_create), METHOD("chunkerCuts", chunker_cuts),
                 METHOD("chunkerZeroChunk", chunker_zero_chunk));
  register_fsmeta(env, exports);
  register_object_write(env, exports);
  register_hash(env, exports);
  register_file_batch(env, exports);
  register_prefetch(env, exports);
  register_go_flate(env, exports);
  register_pgzip(env, exports);
  register_kzstd(env, exports);
  register_object_read(env, exports);
  register_heap(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
