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

/* A new encoder at a Go level: -2 HuffmanOnly, -1 default (6), 0 NoCompression, 1 BestSpeed, 2..9.
 * NULL when the level is not one of those (*bad_level set) or memory ran out. */
goflate *goflate_new(int level, int *bad_level);
void goflate_free(goflate *f);
/* As Go's Writer.Write(data): 0, or -1 when memory ran out (the encoder is then unusable). */
int goflate_write(goflate *f, const uint8_t *data, size_t len);
/* As Go's Writer.Close(): the last block and the final empty stored block. 0 or -1 (memory). */
int goflate_close(goflate *f);
/* The output bytes produced since the last goflate_take_output; they stay valid until the next call. */
const uint8_t *goflate_take_output(goflate *f, size_t *len);
#endif
