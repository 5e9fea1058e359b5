#ifndef SNAPDIR_FASTCDC_H
#define SNAPDIR_FASTCDC_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t min, avg, max;
  uint64_t mask_s, mask_l, mask_s_ls, mask_l_ls;
  uint64_t gear[256], gear_ls[256];
  uint32_t zero_len; /* length of a chunk cut from a run of >= max zeros; 0 until computed */
  uint64_t zero_hash;
} fastcdc_params;

/* Returns NULL on success or a message naming the bad parameter. */
const char *fastcdc_init(fastcdc_params *p, uint32_t min, uint32_t avg, uint32_t max, uint32_t level,
                         uint64_t seed);
/* Enables the zero-run shortcut; zeros must hold max zero bytes. */
void fastcdc_zero_chunk(fastcdc_params *p, const uint8_t *zeros);
/* Cuts src into chunks from its start, writing at most cap lengths (and hashes, if not NULL).
 * Unless eof, stops when fewer than max bytes remain, since a later byte could still move that cut.
 * *consumed is the number of bytes covered by the returned chunks. */
size_t fastcdc_cuts(const fastcdc_params *p, const uint8_t *src, size_t len, int eof, uint32_t *lengths,
                    uint64_t *hashes, size_t cap, size_t *consumed);
#endif
