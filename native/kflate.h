/* The DEFLATE encoder of klauspost/compress 1.15.12 (its flate package), byte for byte, as klauspost pgzip
 * 1.2.5 drives it: one compressor per block, given the previous block's tail as dictionary, ended by a sync
 * flush (and, for the last block, by the final empty block Close writes). See kflate.c. */
#ifndef SNAPDIR_KFLATE_H
#define SNAPDIR_KFLATE_H
#include <stddef.h>
#include <stdint.h>

/* A growable output buffer. */
typedef struct {
  uint8_t *data;
  size_t len, cap;
  int oom; /* set when a grow failed; later appends are dropped */
} kf_out;

typedef struct kf_ctx kf_ctx;

/* Levels klauspost flate accepts: -2 (Huffman only), -1 (default: level 5), 0 (stored), 1..9. */
int kf_level_valid(int level);
/* A compressor's working memory (tables, window, tokens) for that level; NULL when out of memory. One
 * context compresses one block at a time; keep one per thread. */
kf_ctx *kf_ctx_new(int level);
void kf_ctx_free(kf_ctx *ctx);
/* Appends to out what flate.NewWriterDict(level, nil) + ResetDict(dict) + Write(in) + Flush() (+ Close()
 * when last) writes. 0, or -1 when out of memory. */
int kf_block(kf_ctx *ctx, const uint8_t *dict, size_t dict_len, const uint8_t *in, size_t n, int last, kf_out *out);
void kf_out_free(kf_out *out);
#endif
