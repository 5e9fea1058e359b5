/* The raw DEFLATE stream of a klauspost pgzip 1.2.5 gzip member, streaming (see kflate.c for the encoder).
 *
 * pgzip cuts its input into blocks of exactly blockSize bytes (the last one shorter, possibly empty) and
 * compresses each with a fresh flate writer whose dictionary is the previous block's last 16 KiB, ended by a
 * sync flush, the last one also by Close. A block's output depends on nothing but its dictionary and its
 * bytes, so blocks are compressed on worker threads of the encoder's own while the JS thread goes on
 * producing input; write() hands back whatever finished in order, end() waits for the rest. The result
 * is the same for any way the input is split into write() calls.
 *
 *   pgzipCreate(level, blockSize, threads) -> handle   (threads 0: compress on the calling thread)
 *   pgzipWrite(handle, buffer) -> Buffer              (the deflate bytes ready so far, in order)
 *   pgzipEnd(handle) -> Buffer                        (the rest; the handle is done)
 *   pgzipWriteAsync(handle, buffer), pgzipEndAsync(handle) -> Promise<Buffer>
 *                       the same on the libuv pool, so that the JS thread never waits for a block (the
 *                       handle is busy until the promise settles) */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "kflate.h"

#define TAIL_SIZE 16384 /* pgzip's tailSize */
#define MAX_THREADS 64

typedef struct {
  uint8_t *in;
  size_t n;
  uint8_t *dict;
  size_t dict_len;
  int last;
  kf_out out;
  int done;
  int failed; /* out of memory */
} job;

typedef struct pgz pgz;
typedef struct {
  pgz *z;
  pthread_t id;
  bool created; /* not joined yet */
  bool exited;  /* has taken its last job: join it before reusing the slot */
  /* the slot's encoder, kept for the next worker started in it: a fresh one per worker meant a few MiB
     allocated and faulted in again at every write that restarted the workers. A block's output does not
     depend on the jobs the context ran before (one worker already runs many). */
  kf_ctx *ctx;
} worker_slot;

struct pgz {
  int level;
  size_t block_size;
  int nthreads;
  uint8_t *cur; /* the block being filled */
  size_t cur_len;
  uint8_t tail[TAIL_SIZE];
  bool have_tail;
  job **ring; /* jobs in input order: seq_head .. seq_end-1 */
  size_t ring_cap;
  uint64_t seq_head, seq_end, seq_next; /* seq_next: the next job a worker takes */
  pthread_mutex_t mu;
  pthread_cond_t done_cv;
  worker_slot slots[MAX_THREADS];
  int running;
  bool stop;
  /* input buffers of finished blocks (block_size bytes each), for the next blocks: a fresh malloc per
     block was an mmap, its pages faulted in and zeroed again */
  uint8_t *spare[MAX_THREADS + 1];
  int nspare;
  kf_ctx *inline_ctx;
  bool ended;
  bool failed;
  bool busy; /* an async write or end runs on the pool */
};

static void job_free(job *j) {
  if (!j) return;
  free(j->in);
  free(j->dict);
  kf_out_free(&j->out);
  free(j);
}

/* Gives a finished block's input buffer back for reuse, or frees it; called with mu held (or no worker running). */
static void recycle_input(pgz *z, job *j) {
  if (j->in && j->n == z->block_size && z->nspare < (int)(sizeof z->spare / sizeof *z->spare))
    z->spare[z->nspare++] = j->in;
  else
    free(j->in);
  j->in = NULL;
}

static void run_job(kf_ctx *ctx, job *j) {
  if (!ctx || kf_block(ctx, j->dict, j->dict_len, j->in, j->n, j->last, &j->out) != 0) j->failed = 1;
}

/* A worker takes jobs while there are any and then exits, so that an encoder nobody ends (a candidate
 * dropped at its first differing byte) holds no thread, only memory until it is collected. */
static void *worker(void *arg) {
  worker_slot *slot = arg;
  pgz *z = slot->z;
  if (!slot->ctx) slot->ctx = kf_ctx_new(z->level);
  kf_ctx *ctx = slot->ctx;
  pthread_mutex_lock(&z->mu);
  while (!z->stop && z->seq_next < z->seq_end) {
    job *j = z->ring[z->seq_next % z->ring_cap];
    z->seq_next++;
    pthread_mutex_unlock(&z->mu);
    run_job(ctx, j);
    pthread_mutex_lock(&z->mu);
    recycle_input(z, j);
    j->done = 1;
    pthread_cond_broadcast(&z->done_cv);
  }
  slot->exited = true;
  z->running--;
  pthread_mutex_unlock(&z->mu);
  return NULL;
}

/* Starts workers for the queued jobs, up to nthreads; called with mu held. false when none could start
 * and none runs. */
static bool start_workers(pgz *z) {
  uint64_t waiting = z->seq_end - z->seq_next;
  for (int i = 0; i < z->nthreads && (uint64_t)z->running < waiting; i++) {
    worker_slot *slot = &z->slots[i];
    if (slot->created && !slot->exited) continue;
    if (slot->created) pthread_join(slot->id, NULL); /* it has unlocked mu and is returning */
    slot->created = false;
    slot->exited = false;
    slot->z = z;
    if (pthread_create(&slot->id, NULL, worker, slot) != 0) break;
    slot->created = true;
    z->running++;
  }
  return z->running > 0;
}

static void join_workers(pgz *z) {
  pthread_mutex_lock(&z->mu);
  z->stop = true;
  pthread_mutex_unlock(&z->mu);
  for (int i = 0; i < z->nthreads; i++)
    if (z->slots[i].created) {
      pthread_join(z->slots[i].id, NULL);
      z->slots[i].created = false;
    }
}

static void pgz_free(pgz *z) {
  join_workers(z);
  for (uint64_t s = z->seq_head; s < z->seq_end; s++) job_free(z->ring[s % z->ring_cap]);
  for (int i = 0; i < z->nthreads; i++) kf_ctx_free(z->slots[i].ctx);
  for (int i = 0; i < z->nspare; i++) free(z->spare[i]);
  free(z->ring);
  free(z->cur);
  kf_ctx_free(z->inline_ctx);
  pthread_mutex_destroy(&z->mu);
  pthread_cond_destroy(&z->done_cv);
  free(z);
}

static void finalize_pgz(napi_env env, void *data, void *hint) { pgz_free(data); }

static void append(pgz *z, kf_out *acc, const kf_out *o) {
  if (z->failed || !o->len) return;
  size_t need = acc->len + o->len;
  if (need > acc->cap) {
    size_t cap = acc->cap ? acc->cap : 1 << 16;
    while (cap < need) cap *= 2;
    uint8_t *d = realloc(acc->data, cap);
    if (!d) {
      z->failed = true;
      return;
    }
    acc->data = d;
    acc->cap = cap;
  }
  memcpy(acc->data + acc->len, o->data, o->len);
  acc->len += o->len;
}

/* Moves the finished jobs at the head into acc, in order; with wait_head, waits for the head first. */
static void collect(pgz *z, kf_out *acc, bool wait_head) {
  pthread_mutex_lock(&z->mu);
  while (z->seq_head < z->seq_end) {
    job *j = z->ring[z->seq_head % z->ring_cap];
    if (!j->done) {
      if (!wait_head) break;
      pthread_cond_wait(&z->done_cv, &z->mu);
      continue;
    }
    z->seq_head++;
    wait_head = false;
    pthread_mutex_unlock(&z->mu);
    if (j->failed || j->out.oom) z->failed = true;
    append(z, acc, &j->out);
    job_free(j);
    pthread_mutex_lock(&z->mu);
  }
  pthread_mutex_unlock(&z->mu);
}

/* Queues the current block (with the previous block's tail as dictionary); 0, or -1 out of memory. */
static int submit(pgz *z, bool last, kf_out *acc) {
  job *j = calloc(1, sizeof *j);
  if (!j) return -1;
  j->in = z->cur;
  j->n = z->cur_len;
  j->last = last;
  z->cur = NULL;
  z->cur_len = 0;
  if (z->have_tail) {
    if (!(j->dict = malloc(TAIL_SIZE))) {
      job_free(j);
      return -1;
    }
    memcpy(j->dict, z->tail, TAIL_SIZE);
    j->dict_len = TAIL_SIZE;
  }
  /* pgzip keeps a tail only from a block longer than tailSize */
  z->have_tail = j->n > TAIL_SIZE;
  if (z->have_tail) memcpy(z->tail, j->in + j->n - TAIL_SIZE, TAIL_SIZE);

  if (z->nthreads == 0) {
    if (!z->inline_ctx && !(z->inline_ctx = kf_ctx_new(z->level))) {
      job_free(j);
      return -1;
    }
    run_job(z->inline_ctx, j);
    recycle_input(z, j);
    j->done = 1;
  }
  /* a full ring: wait for its oldest job to finish and take its output */
  for (;;) {
    pthread_mutex_lock(&z->mu);
    bool full = z->seq_end - z->seq_head >= z->ring_cap;
    pthread_mutex_unlock(&z->mu);
    if (!full) break;
    collect(z, acc, true);
  }
  pthread_mutex_lock(&z->mu);
  z->ring[z->seq_end % z->ring_cap] = j;
  z->seq_end++;
  bool ok = true;
  if (z->nthreads == 0) z->seq_next = z->seq_end;
  else ok = start_workers(z);
  pthread_mutex_unlock(&z->mu);
  return ok ? 0 : -1;
}

static bool get_pgz(napi_env env, napi_value v, pgz **out) {
  void *p;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pgzip: handle must come from pgzipCreate");
    return false;
  }
  *out = p;
  /* busy first: it is set and cleared on this thread, while an async end sets `ended` on a pool thread
     before its result comes back here (so a call then would wrongly say "ended") */
  if ((*out)->busy) {
    throw_error(env, "ERR_INVALID_STATE", "pgzip: the encoder is busy with an async call");
    return false;
  }
  if ((*out)->ended) {
    throw_error(env, "ERR_INVALID_STATE", "pgzip: the encoder has ended");
    return false;
  }
  return true;
}

static napi_value to_buffer(napi_env env, pgz *z, kf_out *acc) {
  if (z->failed) {
    free(acc->data);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  napi_value buf;
  void *data;
  napi_status st = napi_create_buffer_copy(env, acc->len, acc->len ? (const void *)acc->data : (const void *)"", &data, &buf);
  free(acc->data);
  if (st != napi_ok) return napi_failed(env, "napi_create_buffer_copy");
  return buf;
}

static napi_value pgzip_create(napi_env env, napi_callback_info info) {
  GET_ARGS(3, "pgzipCreate(level, blockSize, threads)");
  int32_t level;
  uint32_t block_size, threads;
  if (!get_i32(env, argv[0], "pgzipCreate: level", &level) ||
      !get_u32(env, argv[1], "pgzipCreate: blockSize", &block_size) ||
      !get_u32(env, argv[2], "pgzipCreate: threads", &threads))
    return NULL;
  if (!kf_level_valid(level))
    return throw_range_error(env, "ERR_OUT_OF_RANGE", "pgzipCreate: level must be -2..9, got %d", level);
  /* pgzip refuses blockSize <= tailSize; the upper bound keeps the block a buffer of its own */
  if (block_size <= TAIL_SIZE || block_size > (1u << 30))
    return throw_range_error(env, "ERR_OUT_OF_RANGE", "pgzipCreate: blockSize must be 16385..1 GiB, got %u",
                             block_size);
  if (threads > MAX_THREADS)
    return throw_range_error(env, "ERR_OUT_OF_RANGE", "pgzipCreate: threads must be 0..%d, got %u", MAX_THREADS,
                             threads);
  pgz *z = calloc(1, sizeof *z);
  if (!z) return throw_errno(env, ENOMEM, "malloc", NULL);
  z->level = level;
  z->block_size = block_size;
  z->nthreads = (int)threads;
  z->ring_cap = threads ? 2 * (size_t)threads + 1 : 1;
  pthread_mutex_init(&z->mu, NULL);
  pthread_cond_init(&z->done_cv, NULL);
  if (!(z->ring = calloc(z->ring_cap, sizeof *z->ring))) {
    pgz_free(z);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  napi_value ext;
  if (napi_create_external(env, z, finalize_pgz, NULL, &ext) != napi_ok) {
    pgz_free(z);
    return napi_failed(env, "napi_create_external");
  }
  return ext;
}

/* Appends the bytes of the blocks finished so far to acc (waiting only when the ring is full). */
static void pgz_write(pgz *z, const uint8_t *p, size_t len, kf_out *acc) {
  while (len > 0 && !z->failed) {
    if (!z->cur) {
      pthread_mutex_lock(&z->mu);
      if (z->nspare > 0) z->cur = z->spare[--z->nspare];
      pthread_mutex_unlock(&z->mu);
    }
    if (!z->cur && !(z->cur = malloc(z->block_size))) {
      z->failed = true;
      break;
    }
    size_t k = z->block_size - z->cur_len;
    if (k > len) k = len;
    memcpy(z->cur + z->cur_len, p, k);
    z->cur_len += k;
    p += k;
    len -= k;
    if (z->cur_len == z->block_size && submit(z, false, acc) != 0) z->failed = true;
  }
  collect(z, acc, false);
}

/* Submits the last block and appends the rest of the stream to acc; the encoder is then done. */
static void pgz_end(pgz *z, kf_out *acc) {
  if (!z->failed && !z->cur && !(z->cur = malloc(1))) z->failed = true;
  if (!z->failed && submit(z, true, acc) != 0) z->failed = true;
  for (;;) {
    pthread_mutex_lock(&z->mu);
    bool pending = z->seq_head < z->seq_end;
    pthread_mutex_unlock(&z->mu);
    if (!pending) break;
    collect(z, acc, true);
  }
  z->ended = true;
  join_workers(z);
}

static napi_value pgzip_write(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "pgzipWrite(handle, buffer)");
  pgz *z;
  void *data;
  size_t len;
  if (!get_pgz(env, argv[0], &z) || !get_buffer(env, argv[1], "pgzipWrite: buffer", &data, &len)) return NULL;
  kf_out acc = {0};
  pgz_write(z, data, len, &acc);
  return to_buffer(env, z, &acc);
}

static napi_value pgzip_end(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "pgzipEnd(handle)");
  pgz *z;
  if (!get_pgz(env, argv[0], &z)) return NULL;
  kf_out acc = {0};
  pgz_end(z, &acc);
  return to_buffer(env, z, &acc);
}

typedef struct {
  encoder_step step; /* first: queue_encoder_step frees the job through it */
  kf_out acc;
} pgzip_job;

static void pgzip_run(encoder_step *step) {
  pgzip_job *j = (pgzip_job *)step;
  if (step->end)
    pgz_end(step->state, &j->acc);
  else
    pgz_write(step->state, step->input, step->len, &j->acc);
}

static napi_value pgzip_done(napi_env env, encoder_step *step) {
  return to_buffer(env, step->state, &((pgzip_job *)step)->acc); /* frees acc */
}

static napi_value queue_step(napi_env env, napi_value handle, pgz *z, napi_value input_v, const void *input, size_t len) {
  pgzip_job *j = calloc(1, sizeof *j);
  if (!j) return throw_errno(env, ENOMEM, "malloc", NULL);
  j->step = (encoder_step){.state = z, .busy = &z->busy, .end = input_v == NULL, .input = input, .len = len, .run = pgzip_run, .done = pgzip_done};
  return queue_encoder_step(env, "snapdir:pgzipStep", handle, input_v, &j->step);
}

static napi_value pgzip_write_async(napi_env env, napi_callback_info info) {
  GET_ARGS(2, "pgzipWriteAsync(handle, buffer)");
  pgz *z;
  void *data;
  size_t len;
  if (!get_pgz(env, argv[0], &z) || !get_buffer(env, argv[1], "pgzipWriteAsync: buffer", &data, &len)) return NULL;
  return queue_step(env, argv[0], z, argv[1], len ? data : (const void *)"", len);
}

static napi_value pgzip_end_async(napi_env env, napi_callback_info info) {
  GET_ARGS(1, "pgzipEndAsync(handle)");
  pgz *z;
  if (!get_pgz(env, argv[0], &z)) return NULL;
  return queue_step(env, argv[0], z, NULL, NULL, 0);
}

void register_pgzip(napi_env env, napi_value exports) {
  EXPORT_METHODS(env, exports, METHOD("pgzipCreate", pgzip_create), METHOD("pgzipWrite", pgzip_write),
                 METHOD("pgzipEnd", pgzip_end), METHOD("pgzipWriteAsync", pgzip_write_async),
                 METHOD("pgzipEndAsync", pgzip_end_async));
}
