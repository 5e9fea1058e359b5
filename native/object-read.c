/* Decoding a stored object's payload off the JS thread:
 *   objectDecode(payload, codec, rawLength) -> Promise<[raw: Buffer, blake3: Buffer]>   on the libuv pool
 * codec 0 (raw): raw is the payload itself; 1 (zstd): the payload decompressed (up to rawLength + 1
 * bytes, so that a longer one shows). format/object.ts checks the header, the length and the hash, so
 * its messages are the same whichever thread decoded. A layer regenerated from its recipe reads some
 * 3,000 chunks per 170 MB of tar: decompressing and hashing them on the JS thread kept it from
 * feeding the encoders (about a third of its time). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "addon.h"
#include "blake3.h"

#define CODEC_RAW 0
#define CODEC_ZSTD 1
/* chunks are at most 256 KiB; a header claiming far more is damage, decoded (and refused) on the JS thread */
#define MAX_RAW (64u << 20)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref payload_ref;
  const uint8_t *payload;
  size_t len;
  uint32_t codec;
  size_t raw_len;
  uint8_t *raw; /* malloc'd (zstd), handed to the Buffer */
  size_t raw_got;
  const char *zstd_error;
  int oom;
  uint8_t hash[BLAKE3_OUT_LEN];
} decode_job;

static void decode_execute(napi_env env, void *data) {
  decode_job *j = data;
  const uint8_t *raw = j->payload;
  size_t n = j->len;
  if (j->codec == CODEC_ZSTD) {
    if (!(j->raw = malloc(j->raw_len + 1))) {
      j->oom = 1;
      return;
    }
    size_t got = ZSTD_decompress(j->raw, j->raw_len + 1, j->payload, j->len);
    if (ZSTD_isError(got)) {
      j->zstd_error = ZSTD_getErrorName(got);
      return;
    }
    raw = j->raw;
    n = j->raw_got = got;
  }
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, raw, n);
  blake3_hasher_finalize(&h, j->hash, BLAKE3_OUT_LEN);
}

static void free_raw(napi_env env, void *data, void *hint) { free(data); }

static napi_value decode_result(napi_env env, decode_job *j) {
  napi_value out, raw, hash;
  void *hash_data;
  if (j->codec == CODEC_ZSTD) {
    NAPI_CALL(napi_create_external_buffer(env, j->raw_got, j->raw, free_raw, NULL, &raw));
    j->raw = NULL; /* the Buffer owns it now */
  } else {
    napi_value payload;
    NAPI_CALL(napi_get_reference_value(env, j->payload_ref, &payload));
    raw = payload;
  }
  NAPI_CALL(napi_create_buffer_copy(env, BLAKE3_OUT_LEN, j->hash, &hash_data, &hash));
  NAPI_CALL(napi_create_array_with_length(env, 2, &out));
  NAPI_CALL(napi_set_element(env, out, 0, raw));
  NAPI_CALL(napi_set_element(env, out, 1, hash));
  return out;
}

static void decode_complete(napi_env env, napi_status status, void *data) {
  decode_job *j = data;
  napi_value v = NULL;
  if (j->oom)
    throw_errno(env, ENOMEM, "malloc", NULL);
  else if (j->zstd_error)
    throw_error(env, "ERR_ZSTD", "%s", j->zstd_error);
  else
    v = decode_result(env, j);
  if (v)
    napi_resolve_deferred(env, j->deferred, v);
  else
    reject_with_pending(env, j->deferred);
  free(j->raw);
  napi_delete_reference(env, j->payload_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value object_decode(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "objectDecode(payload, codec, rawLength)");
  void *payload;
  size_t len;
  uint32_t codec;
  double raw_len;
  if (!get_typed(env, argv[0], napi_uint8_array, "objectDecode: payload", &payload, &len) ||
      !get_u32(env, argv[1], "objectDecode: codec", &codec) || !get_double(env, argv[2], "objectDecode: rawLength", &raw_len))
    return NULL;
  if (codec != CODEC_RAW && codec != CODEC_ZSTD)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "objectDecode: codec must be 0 or 1, got %u", codec);
  if (!(raw_len >= 0 && raw_len <= MAX_RAW) || raw_len != (double)(size_t)raw_len)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "objectDecode: rawLength must be 0..%u", MAX_RAW);
  decode_job *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, ENOMEM, "malloc", NULL);
  j->payload = payload;
  j->len = len;
  j->codec = codec;
  j->raw_len = (size_t)raw_len;
  if (napi_create_reference(env, argv[0], 1, &j->payload_ref) != napi_ok) {
    free(j);
    return napi_failed(env, "napi_create_reference");
  }
  return queue_promise_work(env, "snapdir:objectDecode", decode_execute, decode_complete, j, &j->deferred, &j->work);
}

void register_object_read(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("objectDecode", object_decode));
}
