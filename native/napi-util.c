/* See napi-util.h. Compiled into both addons. */
#include "napi-util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

napi_value napi_failed(napi_env env, const char *call) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) throw_error(env, "ERR_NATIVE", "N-API call failed: %s", call);
  return NULL;
}

typedef napi_status (*create_error_fn)(napi_env, napi_value, napi_value, napi_value *);

static napi_value throw_made(napi_env env, create_error_fn create, const char *code, const char *fmt, va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  napi_value c, m, e;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) == napi_ok &&
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) == napi_ok && create(env, c, m, &e) == napi_ok)
    napi_throw(env, e);
  return NULL;
}

#define THROW_WITH(create)                              \
  va_list ap;                                           \
  va_start(ap, fmt);                                    \
  throw_made(env, create, code, fmt, ap);               \
  va_end(ap);                                           \
  return NULL;

napi_value throw_type_error(napi_env env, const char *code, const char *fmt, ...) { THROW_WITH(napi_create_type_error) }
napi_value throw_range_error(napi_env env, const char *code, const char *fmt, ...) { THROW_WITH(napi_create_range_error) }
napi_value throw_error(napi_env env, const char *code, const char *fmt, ...) { THROW_WITH(napi_create_error) }

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

void reject_with_pending(napi_env env, napi_deferred deferred) {
  napi_value e;
  napi_get_and_clear_last_exception(env, &e);
  napi_reject_deferred(env, deferred, e);
}

/* ---- arguments ---- */

#define EXPECT(ok, what, kind) \
  if (!(ok)) return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be %s", what, kind), false; \
  return true;

bool get_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  napi_valuetype t;
  double d;
  bool ok = napi_typeof(env, v, &t) == napi_ok && t == napi_number && napi_get_value_double(env, v, &d) == napi_ok &&
            d >= 0 && d <= UINT32_MAX && d == (uint32_t)d;
  if (ok) *out = (uint32_t)d;
  EXPECT(ok, what, "an integer from 0 to 2^32-1")
}

bool get_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  EXPECT(napi_get_value_int32(env, v, out) == napi_ok, what, "a number")
}

bool get_i64(napi_env env, napi_value v, const char *what, int64_t *out) {
  EXPECT(napi_get_value_int64(env, v, out) == napi_ok, what, "a number")
}

bool get_double(napi_env env, napi_value v, const char *what, double *out) {
  EXPECT(napi_get_value_double(env, v, out) == napi_ok, what, "a number")
}

bool get_bool(napi_env env, napi_value v, const char *what, bool *out) {
  EXPECT(napi_get_value_bool(env, v, out) == napi_ok, what, "a boolean")
}

bool get_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  bool is = false;
  EXPECT(napi_is_buffer(env, v, &is) == napi_ok && is && napi_get_buffer_info(env, v, data, len) == napi_ok, what,
         "a Buffer")
}

static const char *const TYPED_NAMES[] = {
    "an Int8Array", "a Uint8Array", "a Uint8ClampedArray", "an Int16Array", "a Uint16Array", "an Int32Array",
    "a Uint32Array", "a Float32Array", "a Float64Array", "a BigInt64Array", "a BigUint64Array",
};

bool get_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what, void **data, size_t *len) {
  napi_typedarray_type t;
  bool is = false;
  EXPECT(napi_is_typedarray(env, v, &is) == napi_ok && is &&
             napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) == napi_ok && t == type,
         what, TYPED_NAMES[type])
}

bool get_function(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  EXPECT(napi_typeof(env, v, &t) == napi_ok && t == napi_function, what, "a function")
}

bool get_array(napi_env env, napi_value v, const char *what, uint32_t *length) {
  bool is = false;
  EXPECT(napi_is_array(env, v, &is) == napi_ok && is && napi_get_array_length(env, v, length) == napi_ok, what,
         "an array")
}

bool is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) != napi_ok || t == napi_null || t == napi_undefined;
}

char *get_path(napi_env env, napi_value v, const char *what) {
  bool is_buf = false;
  napi_is_buffer(env, v, &is_buf);
  if (is_buf) {
    void *data;
    size_t len;
    napi_get_buffer_info(env, v, &data, &len);
    if (memchr(data, 0, len))
      return throw_type_error(env, "ERR_INVALID_ARG_VALUE", "%s must not contain NUL bytes", what), NULL;
    char *s = malloc(len + 1);
    if (!s) return throw_errno(env, ENOMEM, "malloc", NULL), NULL;
    memcpy(s, data, len);
    s[len] = 0;
    return s;
  }
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s must be a Buffer or a string", what), NULL;
  char *s = malloc(len + 1);
  if (!s) return throw_errno(env, ENOMEM, "malloc", NULL), NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    return throw_type_error(env, "ERR_INVALID_ARG_VALUE", "%s must not contain NUL bytes", what), NULL;
  }
  return s;
}

/* ---- options objects ---- */

bool get_options(napi_env env, napi_value v, const char *call, options_t *o) {
  napi_valuetype t;
  o->env = env;
  o->obj = v;
  o->call = call;
  snprintf(o->what, sizeof o->what, "%s: options", call);
  EXPECT(napi_typeof(env, v, &t) == napi_ok && t == napi_object, o->what, "an object")
}

bool opt_value(options_t *o, const char *name, napi_value *out) {
  napi_env env = o->env;
  snprintf(o->what, sizeof o->what, "%s: options.%s", o->call, name);
  napi_valuetype t;
  if (napi_get_named_property(env, o->obj, name, out) != napi_ok) return napi_failed(env, "napi_get_named_property"), false;
  if (napi_typeof(env, *out, &t) == napi_ok && t == napi_undefined)
    return throw_type_error(env, "ERR_MISSING_OPTION", "%s is required", o->what), false;
  return true;
}

bool opt_u32(options_t *o, const char *name, uint32_t *out) {
  napi_value v;
  return opt_value(o, name, &v) && get_u32(o->env, v, o->what, out);
}

bool opt_i32(options_t *o, const char *name, int32_t *out) {
  napi_value v;
  return opt_value(o, name, &v) && get_i32(o->env, v, o->what, out);
}

bool opt_double(options_t *o, const char *name, double *out) {
  napi_value v;
  return opt_value(o, name, &v) && get_double(o->env, v, o->what, out);
}

bool opt_buffer(options_t *o, const char *name, void **data, size_t *len) {
  napi_value v;
  return opt_value(o, name, &v) && get_buffer(o->env, v, o->what, data, len);
}

bool opt_typed(options_t *o, const char *name, napi_typedarray_type type, void **data, size_t *len) {
  napi_value v;
  return opt_value(o, name, &v) && get_typed(o->env, v, type, o->what, data, len);
}

bool opt_path(options_t *o, const char *name, bool nullable, char **out) {
  napi_value v;
  *out = NULL;
  if (!opt_value(o, name, &v)) return false;
  if (nullable && is_nullish(o->env, v)) return true;
  return (*out = get_path(o->env, v, o->what)) != NULL;
}

/* ---- results, work, exports ---- */

static const size_t TYPED_SIZES[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};

napi_value new_typed_copy(napi_env env, napi_typedarray_type type, const void *src, size_t count) {
  void *dst;
  napi_value ab, arr;
  size_t bytes = count * TYPED_SIZES[type];
  NAPI_CALL(napi_create_arraybuffer(env, bytes, &dst, &ab));
  if (bytes) memcpy(dst, src, bytes);
  NAPI_CALL(napi_create_typedarray(env, type, count, ab, 0, &arr));
  return arr;
}

napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work) {
  napi_value promise, resource;
  NAPI_CALL(napi_create_promise(env, deferred, &promise));
  NAPI_CALL(napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource));
  NAPI_CALL(napi_create_async_work(env, NULL, resource, execute, complete, data, work));
  NAPI_CALL(napi_queue_async_work(env, *work));
  return promise;
}

static void encoder_step_execute(napi_env env, void *data) {
  encoder_step *j = data;
  j->run(j);
}

static void encoder_step_complete(napi_env env, napi_status status, void *data) {
  encoder_step *j = data;
  *j->busy = false;
  napi_value v = j->done(env, j);
  if (v)
    napi_resolve_deferred(env, j->deferred, v);
  else
    reject_with_pending(env, j->deferred);
  if (j->input_ref) napi_delete_reference(env, j->input_ref);
  napi_delete_reference(env, j->handle_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

napi_value queue_encoder_step(napi_env env, const char *name, napi_value handle, napi_value input_v, encoder_step *j) {
  if (napi_create_reference(env, handle, 1, &j->handle_ref) != napi_ok ||
      (input_v && napi_create_reference(env, input_v, 1, &j->input_ref) != napi_ok)) {
    if (j->handle_ref) napi_delete_reference(env, j->handle_ref);
    free(j);
    return napi_failed(env, "napi_create_reference");
  }
  napi_value p = queue_promise_work(env, name, encoder_step_execute, encoder_step_complete, j, &j->deferred, &j->work);
  if (p) *j->busy = true;
  return p;
}

void export_enum(napi_env env, napi_value obj, const char *key, const char *const *names, const int32_t *values,
                 size_t count) {
  napi_value e, n;
  napi_create_object(env, &e);
  for (size_t i = 0; i < count; i++) {
    napi_create_int32(env, values ? values[i] : (int32_t)i, &n);
    napi_set_named_property(env, e, names[i], n);
  }
  napi_object_freeze(env, e);
  napi_set_named_property(env, obj, key, e);
}
