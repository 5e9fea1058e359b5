/* blake3(data: Uint8Array): Buffer -- BLAKE3-256 with the C implementation file-batch.c uses, so every
 * ID snapdir computes comes from one implementation (and loading a second native module for it, with
 * its libc detection, cost each thread ~25 ms at start). */
#include <string.h>

#include "addon.h"
#include "blake3.h"

static napi_value hash(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "blake3(data: Uint8Array)");
  size_t len;
  void *data, *out;
  if (!get_typed(env, argv[0], napi_uint8_array, "blake3: data", &data, &len)) return NULL;
  napi_value result;
  NAPI_CALL(napi_create_buffer(env, BLAKE3_OUT_LEN, &out, &result));
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
  return result;
}

void register_hash(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("blake3", hash));
}
