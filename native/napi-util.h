/* N-API plumbing both addons share (snapdir.node: addon.c and the files it registers; snapdir_fuse.node:
 * fusemount.c): fetching and checking arguments and options, throwing JS errors, buffers and typed
 * arrays, promise work, exports. C throws JS errors, never asserts: a helper that returns 0 or NULL has
 * thrown (or left N-API's own exception pending), and its caller returns NULL to JS at once. */
#ifndef SNAPDIR_NAPI_UTIL_H
#define SNAPDIR_NAPI_UTIL_H
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns NULL from the calling function, after throwing, when an N-API call fails. */
#define NAPI_CALL(call)                                \
  do {                                                 \
    if ((call) != napi_ok) return napi_failed(env, #call); \
  } while (0)
/* Throws ERR_NATIVE naming the call, unless N-API left an exception pending; returns NULL. */
napi_value napi_failed(napi_env env, const char *call);

/* Declares argc/argv with the callback's first n arguments, or throws a TypeError showing `usage`
 * ("name(a, b)") and returns NULL when fewer came. */
#define GET_ARGS(n, usage)                                                                \
  size_t argc = n;                                                                        \
  napi_value argv[n];                                                                     \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n)        \
    return throw_type_error(env, "ERR_INVALID_ARG_TYPE", "%s takes %d arguments", usage, n);

/* Each throws and returns NULL, so a callback can `return throw_…(…)`. Messages are printf formats. */
napi_value throw_type_error(napi_env env, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
napi_value throw_range_error(napi_env env, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
napi_value throw_error(napi_env env, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An Error as Node's fs throws it: code errno's name (ENOENT), errno (negative), syscall, path. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path);
/* Rejects the promise with the exception pending on env (thrown by a throw_… just before). */
void reject_with_pending(napi_env env, napi_deferred deferred);

/* Argument readers: 1, or 0 after throwing a TypeError "<what> must be …". */
bool get_u32(napi_env env, napi_value v, const char *what, uint32_t *out);
bool get_i32(napi_env env, napi_value v, const char *what, int32_t *out);
bool get_i64(napi_env env, napi_value v, const char *what, int64_t *out);
bool get_double(napi_env env, napi_value v, const char *what, double *out);
bool get_bool(napi_env env, napi_value v, const char *what, bool *out);
bool get_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len);
/* A typed array of that type: its data and its length in elements. */
bool get_typed(napi_env env, napi_value v, napi_typedarray_type type, const char *what, void **data, size_t *len);
bool get_function(napi_env env, napi_value v, const char *what);
bool get_array(napi_env env, napi_value v, const char *what, uint32_t *length);
bool is_nullish(napi_env env, napi_value v);
/* A Buffer or string as a NUL-terminated path (no NUL inside); the caller frees. NULL after throwing. */
char *get_path(napi_env env, napi_value v, const char *what);

/* An options object: read its properties with opt_…, whose messages name "<call>: options.<name>". */
typedef struct {
  napi_env env;
  napi_value obj;
  const char *call;
  char what[128];
} options_t;
bool get_options(napi_env env, napi_value v, const char *call, options_t *o);
/* options[name] in *out, and o->what set to name it; 0 after throwing when it is undefined. */
bool opt_value(options_t *o, const char *name, napi_value *out);
bool opt_u32(options_t *o, const char *name, uint32_t *out);
bool opt_i32(options_t *o, const char *name, int32_t *out);
bool opt_double(options_t *o, const char *name, double *out);
bool opt_buffer(options_t *o, const char *name, void **data, size_t *len);
bool opt_typed(options_t *o, const char *name, napi_typedarray_type type, void **data, size_t *len);
/* options[name] as a path; *out NULL (no throw) when it is null or undefined and `nullable` */
bool opt_path(options_t *o, const char *name, bool nullable, char **out);

/* A new typed array of that type holding a copy of count elements from src; NULL after throwing. */
napi_value new_typed_copy(napi_env env, napi_typedarray_type type, const void *src, size_t count);
/* Queues execute (on the libuv pool) then complete (on the JS thread), and returns the promise that
 * complete settles through *deferred. */
napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work);

/* One write or end of a streaming encoder on the libuv pool (go-flate, pgzip, zstd), so the JS thread
 * goes on assembling input while the encoder works. An encoder embeds this as the FIRST member of its
 * own job struct (which holds its output), fills state/busy/end/input/len/run/done, and queues it: `run`
 * works on a pool thread; `done`, on the JS thread after *busy is cleared, makes the promise's value
 * (NULL with an exception pending rejects it) and frees what run left. The job is freed after done. The
 * handle and the input buffer are kept alive until then. */
typedef struct encoder_step encoder_step;
struct encoder_step {
  void *state;
  bool *busy;
  bool end; /* the end of the stream, not a write */
  const uint8_t *input;
  size_t len;
  void (*run)(encoder_step *step);
  napi_value (*done)(napi_env env, encoder_step *step);
  /* the rest is queue_encoder_step's */
  napi_async_work work;
  napi_deferred deferred;
  napi_ref handle_ref, input_ref;
};
/* Queues the step (input_v: the JS buffer behind step->input, or NULL at the end); the promise, or NULL
 * after throwing (the job is then freed). */
napi_value queue_encoder_step(napi_env env, const char *name, napi_value handle, napi_value input_v, encoder_step *step);

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}
/* Defines the METHOD(…)s given on exports. */
#define EXPORT_METHODS(env, exports, ...)                                           \
  do {                                                                              \
    napi_property_descriptor methods_[] = {__VA_ARGS__};                            \
    napi_define_properties(env, exports, sizeof methods_ / sizeof *methods_, methods_); \
  } while (0)
/* Sets obj[key] = {names[i]: values[i], …} (values NULL: i): an enum or a row layout (field -> column),
 * which JS checks against its own at load, so that no constant is written on both sides unchecked. */
void export_enum(napi_env env, napi_value obj, const char *key, const char *const *names, const int32_t *values,
                 size_t count);
#endif
