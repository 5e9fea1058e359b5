/* A port of Go 1.19's compress/flate Writer (deflate.go, deflatefast.go, huffman_bit_writer.go,
 * huffman_code.go), written so that its raw DEFLATE output is byte for byte what Go writes for the
 * same level and the same sequence of Write calls, ended by Close (never Flush). Docker, BuildKit,
 * containerd and crane write their gzip layers with that code (Go 1.8 to 1.26 all agree), so snapdir
 * can regenerate those blobs from their tar. No N-API here (go-flate-addon.c wraps it). */
#ifndef SNAPDIR_GO_FLATE_H
#define SNAPDIR_GO_FLATE_H
#include <stddef.h>
#include <stdint.h>

typedef struct goflate goflate;

/* Where a second encoder can take over from the first at a block boundary (levels 4..9), and produce
 * the same bits from there: the positions are offsets in the uncompressed stream, out_bit the offset
 * in bits of the block's first bit in the DEFLATE stream. */
typedef struct {
  uint64_t input;       /* the search position */
  uint64_t base;        /* stream offset of the window's first byte */
  uint64_t block_start; /* where the block being gathered starts (base + 2^31-1: not storable) */
  uint64_t out_bit;
  int32_t length, offset; /* the match found at input - 1, still to be emitted or bettered (lazy) */
  int32_t byte_available; /* the byte at input - 1 is still to be emitted */
} goflate_restart;

/* A new encoder at a Go level: -2 HuffmanOnly, -1 default (6), 0 NoCompression, 1 BestSpeed, 2..9.
 * follow_writes: step as Go does on every write, so that the output is Go's for the same sequence of
 * writes; otherwise only when the window is full, which gives Go's output for one large write whatever
 * the split (docs/go-flate.md). record_restarts (levels 4..9, not follow_writes): note a restart point
 * at each block boundary. NULL when the level or the combination is not one of those (*bad_level set)
 * or memory ran out. */
goflate *goflate_new(int level, int follow_writes, int record_restarts, int *bad_level);
/* The restart points noted since the last call; valid until the next call. */
const goflate_restart *goflate_take_restarts(goflate *f, size_t *count);
/* Encodes one segment of a stream from restart point r up to output bit end_bit (UINT64_MAX: to the
 * end of the stream): input is the stream from r->base on, at least up to the end of the block ending
 * at end_bit and the 64 KiB after it, and input_ends says that it is the whole rest of the stream.
 * *out (malloc'd) holds the bytes from bit r->out_bit / 8 * 8 to end_bit rounded up, the bits outside
 * [r->out_bit, end_bit) zero, so that segments OR together at their shared bytes. 0, -1 when memory ran
 * out, -2 when the input ended first, -3 for a level without restart points. */
int goflate_segment(int level, const goflate_restart *r, uint64_t end_bit, const uint8_t *input, size_t len,
                    int input_ends, uint8_t **out, size_t *out_len);
void goflate_free(goflate *f);
/* As Go's Writer.Write(data): 0, or -1 when memory ran out (the encoder is then unusable). */
int goflate_write(goflate *f, const uint8_t *data, size_t len);
/* As Go's Writer.Close(): the last block and the final empty stored block. 0 or -1 (memory). */
int goflate_close(goflate *f);
/* The output bytes produced since the last goflate_take_output; they stay valid until the next call. */
const uint8_t *goflate_take_output(goflate *f, size_t *len);
#endif
