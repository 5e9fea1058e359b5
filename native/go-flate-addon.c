/* goFlateCreate(level) -> handle; goFlateWrite(handle, data) -> Buffer; goFlateEnd(handle) -> Buffer.
 * The JS side of go-flate.c: one encoder per blob, each call compressing a whole buffer and handing back
 * the raw DEFLATE bytes it produced. After goFlateEnd the encoder's memory is released at once (its hash
 * tables are 640 KiB) and the handle refuses further calls. */
#include <errno.h>
#include <stdlib.h>

#include "addon.h"
#include "go-flate.h"

typedef struct {
  goflate *f; /* NULL once ended */
} handle_t;

static void free_handle(napi_env env, void *data, void *hint) {
  handle_t *h = data;
  goflate_free(h->f);
  free(h);
}

static napi_value create(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "goFlateCreate(level)");
  int32_t level;
  if (!get_i32(env, argv[0], "goFlateCreate: level", &level)) return NULL;
  int bad_level;
  goflate *f = goflate_new(level, &bad_level);
  if (!f) {
    if (bad_level)
      return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "goFlateCreate: level must be -2..9, got %d", level);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  handle_t *h = malloc(sizeof *h);
  if (!h) {
    goflate_free(f);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  h->f = f;
  napi_value ext;
  if (napi_create_external(env, h, free_handle, NULL, &ext) != napi_ok) {
    free_handle(env, h, NULL);
    return napi_failed(env, "napi_create_external");
  }
  return ext;
}

static handle_t *get_handle(napi_env env, napi_value v, const char *what) {
  handle_t *h = NULL;
  if (napi_get_value_external(env, v, (void **)&h) != napi_ok || !h)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be a goFlate handle", what), NULL;
  if (!h->f) return throw_error(env, "ERR_INVALID_STATE", "%s: the encoder has ended", what), NULL;
  return h;
}

static napi_value output(napi_env env, goflate *f) {
  size_t len;
  const uint8_t *out = goflate_take_output(f, &len);
  napi_value buf;
  void *copy;
  NAPI_CALL(napi_create_buffer_copy(env, len, len ? (const void *)out : (const void *)"", &copy, &buf));
  return buf;
}

static napi_value write_(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "goFlateWrite(handle, data)");
  handle_t *h = get_handle(env, argv[0], "goFlateWrite: handle");
  void *data;
  size_t len;
  if (!h || !get_typed(env, argv[1], napi_uint8_array, "goFlateWrite: data", &data, &len)) return NULL;
  if (goflate_write(h->f, data, len) != 0) return throw_errno(env, ENOMEM, "malloc", NULL);
  return output(env, h->f);
}

static napi_value end(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "goFlateEnd(handle)");
  handle_t *h = get_handle(env, argv[0], "goFlateEnd: handle");
  if (!h) return NULL;
  if (goflate_close(h->f) != 0) return throw_errno(env, ENOMEM, "malloc", NULL);
  napi_value buf = output(env, h->f);
  goflate_free(h->f);
  h->f = NULL;
  return buf;
}

void register_go_flate(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("goFlateCreate", create), METHOD("goFlateWrite", write_),
                 METHOD("goFlateEnd", end));
}
