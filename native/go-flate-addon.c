/* The JS side of go-flate.c:
 *   goFlateCreate(level, followWrites, recordRestarts) -> handle
 *   goFlateWrite(handle, data) -> Buffer        the raw DEFLATE bytes produced so far
 *   goFlateEnd(handle) -> Buffer                the rest; the encoder's memory goes at once (about 450 KiB)
 *   goFlateWriteAsync(handle, data), goFlateEndAsync(handle) -> Promise<Buffer>   the same on the libuv pool
 *                                               (the handle is busy until the promise settles)
 *   goFlateRestarts(handle) -> Float64Array     restart points noted since the last call, RESTART_ROW each
 *   goFlateSegment(level, restart, endBit, input, inputEnds) -> Promise<Buffer>   on the libuv pool
 * One encoder per blob; each call compresses a whole buffer. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "addon.h"
#include "go-flate.h"

/* A restart point as JS sees it: a row of doubles (offsets stay below 2^53). */
enum { R_INPUT, R_BASE, R_BLOCK_START, R_OUT_BIT, R_LENGTH, R_OFFSET, R_BYTE_AVAILABLE, RESTART_ROW };
static const char *const restart_names[] = {"input", "base", "blockStart", "outBit", "length", "offset", "byteAvailable"};
static const int32_t restart_columns[] = {R_INPUT, R_BASE, R_BLOCK_START, R_OUT_BIT, R_LENGTH, R_OFFSET, R_BYTE_AVAILABLE};

typedef struct {
  goflate *f; /* NULL once ended */
  bool busy;  /* an async write or end runs on the pool */
} handle_t;

static void free_handle(napi_env env, void *data, void *hint) {
  handle_t *h = data;
  goflate_free(h->f);
  free(h);
}

static napi_value create(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "goFlateCreate(level, followWrites, recordRestarts)");
  int32_t level;
  bool follow, record;
  if (!get_i32(env, argv[0], "goFlateCreate: level", &level) ||
      !get_bool(env, argv[1], "goFlateCreate: followWrites", &follow) ||
      !get_bool(env, argv[2], "goFlateCreate: recordRestarts", &record))
    return NULL;
  int bad;
  goflate *f = goflate_new(level, follow, record, &bad);
  if (!f) {
    if (bad && (level < -2 || level > 9))
      return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "goFlateCreate: level must be -2..9, got %d", level);
    if (bad)
      return throw_range_error(env, "ERR_INVALID_ARG_VALUE",
                               "goFlateCreate: restart points need level 4..9 (or -1) and writes not followed, got level %d%s",
                               level, follow ? " with followWrites" : "");
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  handle_t *h = malloc(sizeof *h);
  if (!h) {
    goflate_free(f);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  h->f = f;
  h->busy = false;
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
  /* busy first: an async end may finish the encoder on a pool thread before its result comes back here */
  if (h->busy) return throw_error(env, "ERR_INVALID_STATE", "%s: the encoder is busy with an async call", what), NULL;
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

static napi_value restarts(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "goFlateRestarts(handle)");
  handle_t *h = get_handle(env, argv[0], "goFlateRestarts: handle");
  if (!h) return NULL;
  size_t count;
  const goflate_restart *r = goflate_take_restarts(h->f, &count);
  napi_value ab, arr;
  void *data;
  NAPI_CALL(napi_create_arraybuffer(env, count * RESTART_ROW * sizeof(double), &data, &ab));
  double *row = data;
  for (size_t i = 0; i < count; i++, row += RESTART_ROW) {
    row[R_INPUT] = (double)r[i].input;
    row[R_BASE] = (double)r[i].base;
    row[R_BLOCK_START] = (double)r[i].block_start;
    row[R_OUT_BIT] = (double)r[i].out_bit;
    row[R_LENGTH] = r[i].length;
    row[R_OFFSET] = r[i].offset;
    row[R_BYTE_AVAILABLE] = r[i].byte_available;
  }
  NAPI_CALL(napi_create_typedarray(env, napi_float64_array, count * RESTART_ROW, ab, 0, &arr));
  return arr;
}

/* goFlateWriteAsync / goFlateEndAsync: the encoder runs on a pool thread while the JS thread goes on
 * assembling the next input (oci/recipe-reader.ts keeps one write in flight). */
typedef struct {
  encoder_step step; /* first: queue_encoder_step frees the job through it */
  int rc;
} flate_job;

static void flate_run(encoder_step *step) {
  handle_t *h = step->state;
  ((flate_job *)step)->rc = step->end ? goflate_close(h->f) : goflate_write(h->f, step->input, step->len);
}

static napi_value flate_done(napi_env env, encoder_step *step) {
  handle_t *h = step->state;
  napi_value v = ((flate_job *)step)->rc != 0 ? throw_errno(env, ENOMEM, "malloc", NULL) : output(env, h->f);
  if (step->end) { /* ended, whatever happened */
    goflate_free(h->f);
    h->f = NULL;
  }
  return v;
}

static napi_value queue_step(napi_env env, napi_value handle, handle_t *h, napi_value input_v, const void *input, size_t len) {
  flate_job *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, ENOMEM, "malloc", NULL);
  j->step = (encoder_step){.state = h, .busy = &h->busy, .end = input_v == NULL, .input = input, .len = len, .run = flate_run, .done = flate_done};
  return queue_encoder_step(env, "snapdir:goFlateStep", handle, input_v, &j->step);
}

static napi_value write_async(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "goFlateWriteAsync(handle, data)");
  handle_t *h = get_handle(env, argv[0], "goFlateWriteAsync: handle");
  void *data;
  size_t len;
  if (!h || !get_typed(env, argv[1], napi_uint8_array, "goFlateWriteAsync: data", &data, &len)) return NULL;
  /* an empty write still goes through the pool: its promise settles in order after the others */
  return queue_step(env, argv[0], h, argv[1], len ? data : (const void *)"", len);
}

static napi_value end_async(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "goFlateEndAsync(handle)");
  handle_t *h = get_handle(env, argv[0], "goFlateEndAsync: handle");
  if (!h) return NULL;
  return queue_step(env, argv[0], h, NULL, NULL, 0);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;
  int level;
  goflate_restart restart;
  uint64_t end_bit;
  const uint8_t *input;
  size_t len;
  int input_ends;
  int rc;
  uint8_t *out;
  size_t out_len;
} segment_job;

static void segment_execute(napi_env env, void *data) {
  segment_job *j = data;
  j->rc = goflate_segment(j->level, &j->restart, j->end_bit, j->input, j->len, j->input_ends, &j->out, &j->out_len);
}

static void segment_complete(napi_env env, napi_status status, void *data) {
  segment_job *j = data;
  napi_value v;
  void *copy;
  if (j->rc == 0 && napi_create_buffer_copy(env, j->out_len, j->out_len ? (const void *)j->out : (const void *)"", &copy,
                                            &v) == napi_ok) {
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    if (j->rc == -2)
      throw_error(env, "ERR_INVALID_ARG_VALUE", "goFlateSegment: the input ended before the segment's last block");
    else if (j->rc == -3)
      throw_range_error(env, "ERR_INVALID_ARG_VALUE", "goFlateSegment: level %d has no restart points", j->level);
    else if (j->rc == -1)
      throw_errno(env, ENOMEM, "malloc", NULL);
    reject_with_pending(env, j->deferred);
  }
  free(j->out);
  napi_delete_reference(env, j->input_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static bool get_u53(napi_env env, double v, const char *what, uint64_t *out) {
  if (!(v >= 0 && v <= 9007199254740991.0) || v != (double)(uint64_t)v) {
    throw_range_error(env, "ERR_INVALID_ARG_VALUE", "%s must be a whole number of 0 or more", what);
    return false;
  }
  *out = (uint64_t)v;
  return true;
}

static napi_value segment(napi_env env, napi_callback_info info) {
  GET_ARGS(5, "goFlateSegment(level, restart, endBit, input, inputEnds)");
  int32_t level;
  void *row_data, *input;
  size_t row_len, len;
  double end_bit;
  bool input_ends;
  if (!get_i32(env, argv[0], "goFlateSegment: level", &level) ||
      !get_typed(env, argv[1], napi_float64_array, "goFlateSegment: restart", &row_data, &row_len) ||
      !get_double(env, argv[2], "goFlateSegment: endBit", &end_bit) ||
      !get_typed(env, argv[3], napi_uint8_array, "goFlateSegment: input", &input, &len) ||
      !get_bool(env, argv[4], "goFlateSegment: inputEnds", &input_ends))
    return NULL;
  if (row_len != RESTART_ROW)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "goFlateSegment: restart must hold %d numbers", RESTART_ROW);
  const double *row = row_data;
  goflate_restart r = {0};
  uint64_t length, offset, avail, end = UINT64_MAX;
  if (!get_u53(env, row[R_INPUT], "goFlateSegment: restart.input", &r.input) ||
      !get_u53(env, row[R_BASE], "goFlateSegment: restart.base", &r.base) ||
      !get_u53(env, row[R_BLOCK_START], "goFlateSegment: restart.blockStart", &r.block_start) ||
      !get_u53(env, row[R_OUT_BIT], "goFlateSegment: restart.outBit", &r.out_bit) ||
      !get_u53(env, row[R_LENGTH], "goFlateSegment: restart.length", &length) ||
      !get_u53(env, row[R_OFFSET], "goFlateSegment: restart.offset", &offset) ||
      !get_u53(env, row[R_BYTE_AVAILABLE], "goFlateSegment: restart.byteAvailable", &avail) ||
      (end_bit != -1 && !get_u53(env, end_bit, "goFlateSegment: endBit", &end)))
    return NULL;
  /* What the first encoder's state can be: anything else would index outside the window. */
  if (r.base > r.input || r.input - r.base > 65536 || r.block_start > r.base + INT32_MAX || r.block_start < r.base ||
      length > 258 || offset > 32768 || avail > 1 || end <= r.out_bit)
    return throw_range_error(env, "ERR_INVALID_ARG_VALUE", "goFlateSegment: restart is not a state the encoder can be in");
  r.length = (int32_t)length;
  r.offset = (int32_t)offset;
  r.byte_available = (int32_t)avail;
  segment_job *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, ENOMEM, "malloc", NULL);
  j->level = level;
  j->restart = r;
  j->end_bit = end;
  j->input = input;
  j->len = len;
  j->input_ends = input_ends;
  if (napi_create_reference(env, argv[3], 1, &j->input_ref) != napi_ok) {
    free(j);
    return napi_failed(env, "napi_create_reference");
  }
  return queue_promise_work(env, "snapdir:goFlateSegment", segment_execute, segment_complete, j, &j->deferred, &j->work);
}

void register_go_flate(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("goFlateCreate", create), METHOD("goFlateWrite", write_), METHOD("goFlateEnd", end),
                 METHOD("goFlateWriteAsync", write_async), METHOD("goFlateEndAsync", end_async),
                 METHOD("goFlateRestarts", restarts), METHOD("goFlateSegment", segment));
  export_enum(env, exports, "goFlateRestartRow", restart_names, restart_columns, RESTART_ROW);
}
