/* Cut, hash and store a buffer in one call: push's workers hand it each block of a file they read (or
 * a whole group of small files) and get back the chunk lengths and IDs. In C because per chunk the JS
 * path cost more than the work: a generator step, a BLAKE3 call through N-API, hex and path strings,
 * and a Buffer per ID, ten thousand times per 200 MB. BLAKE3 is the reference C implementation (with
 * its SSE/AVX assembly) from the @c4312/blake3-native package's sources; store_object (object-write.c)
 * compresses and writes each chunk the store lacks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "blake3.h"
#include "fastcdc.h"
#include "object-write.h"

#define ID_BYTES 32

static const char HEX[] = "0123456789abcdef";

/* Temporary names unique within the process: the caller's tag (pid, random, thread) and a counter. */
static _Thread_local unsigned long tmp_counter;

/* cutHashStore(chunker, data: Uint8Array, eof: boolean, lengths: Uint32Array, ids: Uint8Array,
 *              chunkDir: string | null, tmpTag: string, level: number, written: Float64Array): number
 * Cuts data from its start (as chunkerCuts does: unless eof, it stops once fewer than max bytes remain),
 * writes each chunk's length and BLAKE3 ID, and with a chunkDir stores each chunk as
 * chunkDir/<first two hex digits>/<id hex> unless present. written[0] and written[1] grow by the
 * chunks and bytes stored. Returns the number of chunks. */
static napi_value cut_hash_store(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  fastcdc_params *p;
  napi_typedarray_type t;
  size_t len, cap, id_cap, nstats;
  void *data, *lens, *ids, *stats;
  napi_value ab;
  size_t off;
  bool eof;
  int32_t level;
  napi_valuetype dir_type;
  if (argc < 9 || napi_get_value_external(env, argv[0], (void **)&p) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &t, &len, &data, &ab, &off) != napi_ok || t != napi_uint8_array ||
      napi_get_value_bool(env, argv[2], &eof) != napi_ok ||
      napi_get_typedarray_info(env, argv[3], &t, &cap, &lens, &ab, &off) != napi_ok || t != napi_uint32_array ||
      napi_get_typedarray_info(env, argv[4], &t, &id_cap, &ids, &ab, &off) != napi_ok || t != napi_uint8_array ||
      napi_typeof(env, argv[5], &dir_type) != napi_ok ||
      napi_get_value_int32(env, argv[7], &level) != napi_ok ||
      napi_get_typedarray_info(env, argv[8], &t, &nstats, &stats, &ab, &off) != napi_ok || t != napi_float64_array ||
      nstats < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "cutHashStore(chunker, data, eof, lengths: Uint32Array, ids: Uint8Array, chunkDir, tmpTag, level, written: Float64Array)");
    return NULL;
  }
  if (id_cap / ID_BYTES < cap) cap = id_cap / ID_BYTES;
  char *dir = NULL, *tag = NULL, *final = NULL, *tmp = NULL;
  size_t dir_len = 0, tag_len = 0;
  if (dir_type == napi_string) {
    if (!(dir = arg_path(env, argv[5])) || !(tag = arg_path(env, argv[6]))) goto fail;
    dir_len = strlen(dir);
    tag_len = strlen(tag);
    /* dir/xx/<64 hex>.tmp-<tag>-<counter> */
    final = malloc(dir_len + 4 + 2 * ID_BYTES + 1);
    tmp = malloc(dir_len + 4 + 2 * ID_BYTES + 5 + tag_len + 1 + 20 + 1);
    if (!final || !tmp) {
      throw_errno(env, ENOMEM, "cutHashStore", NULL);
      goto fail;
    }
  }

  size_t consumed;
  size_t n = fastcdc_cuts(p, data, len, eof, lens, NULL, cap, &consumed);
  const uint8_t *at = data;
  double *written = stats;
  for (size_t i = 0; i < n; i++) {
    uint32_t clen = ((uint32_t *)lens)[i];
    uint8_t *id = (uint8_t *)ids + i * ID_BYTES;
    blake3_hasher h;
    blake3_hasher_init(&h);
    blake3_hasher_update(&h, at, clen);
    blake3_hasher_finalize(&h, id, ID_BYTES);
    if (dir) {
      char hex[2 * ID_BYTES + 1];
      for (int k = 0; k < ID_BYTES; k++) hex[2 * k] = HEX[id[k] >> 4], hex[2 * k + 1] = HEX[id[k] & 15];
      hex[2 * ID_BYTES] = 0;
      sprintf(final, "%s/%.2s/%s", dir, hex, hex);
      sprintf(tmp, "%s.tmp-%s-%lx", final, tag, tmp_counter++);
      size_t stored;
      if (store_object(env, final, tmp, at, clen, level, &stored) < 0) goto fail;
      if (stored) written[0] += 1, written[1] += (double)stored;
    }
    at += clen;
  }
  free(dir), free(tag), free(final), free(tmp);
  napi_value r;
  napi_create_uint32(env, (uint32_t)n, &r);
  return r;
fail:
  free(dir), free(tag), free(final), free(tmp);
  return NULL;
}

void register_cut_store(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"cutHashStore", NULL, cut_hash_store, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
