/* blake3(data: Uint8Array): Buffer -- BLAKE3-256 with the C implementation file-batch.c uses, so every
 * ID snapdir computes comes from one implementation (and loading a second native module for it, with
 * its libc detection, cost each thread ~25 ms at start). */
#include <string.h>

#include "addon.h"
#include "blake3.h"

static napi_value hash(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type t;
  size_t len, off;
  void *data;
  napi_value ab;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "blake3(data: Uint8Array)");
    return NULL;
  }
  void *out;
  napi_value result;
  if (napi_create_buffer(env, BLAKE3_OUT_LEN, &out, &result) != napi_ok) return NULL;
  blake3_hasher h;
  blake3_hasher_init(&h);
  blake3_hasher_update(&h, data, len);
  blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
  return result;
}

void register_hash(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"blake3", NULL, hash, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
