/* FastCDC 2020 (Xia et al., "The Design of Fast Content-Defined Chunking for Data Deduplication Based
 * Storage Systems", IEEE TPDS 2020): gear hash rolled two bytes per step, cut-point skipping below the
 * minimum size and normalized chunking with a strict mask before the average size and a loose one
 * after. Cut points match the fastcdc crate's v2020 module exactly, including its seed variant
 * (gear ^ seed) and the quirk that a cut on the even byte ends the chunk before that byte. */
#include "fastcdc.h"

#include <string.h>

#include "gear.h"

/* Masks by number of bits; 0..4 are unused padding (destor / restic-FastCDC values). */
static const uint64_t MASKS[26] = {
    0, 0, 0, 0, 0,
    0x0000000001804110ULL, 0x0000000001803110ULL, 0x0000000018035100ULL, 0x0000001800035300ULL,
    0x0000019000353000ULL, 0x0000590003530000ULL, 0x0000d90003530000ULL, 0x0000d90103530000ULL,
    0x0000d90303530000ULL, 0x0000d90313530000ULL, 0x0000d90f03530000ULL, 0x0000d90303537000ULL,
    0x0000d90703537000ULL, 0x0000d90707537000ULL, 0x0000d91707537000ULL, 0x0000d91747537000ULL,
    0x0000d91767537000ULL, 0x0000d93767537000ULL, 0x0000d93777537000ULL, 0x0000d93777577000ULL,
    0x0000db3777577000ULL,
};

static uint32_t log2_rounded(uint32_t v) {
  /* round(log2(v)) as the reference computes it in floating point: v >= 2^(k+0.5) rounds up. */
  uint32_t k = 31 - (uint32_t)__builtin_clz(v);
  /* compare v^2 with 2^(2k+1) to decide rounding without floating point */
  uint64_t sq = (uint64_t)v * (uint64_t)v;
  return (sq >= (1ULL << (2 * k + 1))) ? k + 1 : k;
}

const char *fastcdc_init(fastcdc_params *p, uint32_t min, uint32_t avg, uint32_t max, uint32_t level,
                         uint64_t seed) {
  if (min < 64 || min > 1048576) return "min must be within 64..1048576";
  if (avg < 256 || avg > 4194304) return "avg must be within 256..4194304";
  if (max < 1024 || max > 16777216) return "max must be within 1024..16777216";
  if (!(min <= avg && avg <= max)) return "sizes must satisfy min <= avg <= max";
  if (level > 3) return "normalization level must be 0..3";
  uint32_t bits = log2_rounded(avg);
  p->min = min;
  p->avg = avg;
  p->max = max;
  p->mask_s = MASKS[bits + level];
  p->mask_l = MASKS[bits - level];
  p->mask_s_ls = p->mask_s << 1;
  p->mask_l_ls = p->mask_l << 1;
  for (int i = 0; i < 256; i++) {
    p->gear[i] = GEAR[i] ^ seed;
    p->gear_ls[i] = (GEAR[i] << 1) ^ (seed << 1);
  }
  /* A chunk that starts in a run of at least max zero bytes always has the same length and hash
   * (the gear hash of zeros saturates): compute it once so zero runs skip the hash loop. */
  p->zero_len = 0;
  return NULL;
}

static size_t cut(const fastcdc_params *p, const uint8_t *src, size_t len, uint64_t *hash_out) {
  size_t remaining = len;
  if (remaining <= p->min) {
    *hash_out = 0;
    return remaining;
  }
  size_t center = p->avg;
  if (remaining > p->max)
    remaining = p->max;
  else if (remaining < center)
    center = remaining;
  size_t index = p->min / 2;
  uint64_t hash = 0;
  const uint64_t *gear = p->gear, *gear_ls = p->gear_ls;
  for (; index < center / 2; index++) {
    size_t a = index * 2;
    hash = (hash << 2) + gear_ls[src[a]];
    if ((hash & p->mask_s_ls) == 0) { *hash_out = hash; return a; }
    hash += gear[src[a + 1]];
    if ((hash & p->mask_s) == 0) { *hash_out = hash; return a + 1; }
  }
  for (; index < remaining / 2; index++) {
    size_t a = index * 2;
    hash = (hash << 2) + gear_ls[src[a]];
    if ((hash & p->mask_l_ls) == 0) { *hash_out = hash; return a; }
    hash += gear[src[a + 1]];
    if ((hash & p->mask_l) == 0) { *hash_out = hash; return a + 1; }
  }
  *hash_out = hash;
  return remaining;
}

static int all_zero(const uint8_t *s, size_t n) {
  /* exits on the first non-zero word, so the check costs next to nothing on ordinary data */
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if (w) return 0;
  }
  for (; i < n; i++)
    if (s[i]) return 0;
  return 1;
}

void fastcdc_zero_chunk(fastcdc_params *p, const uint8_t *zeros) {
  p->zero_len = (uint32_t)cut(p, zeros, p->max, &p->zero_hash);
}

size_t fastcdc_cuts(const fastcdc_params *p, const uint8_t *src, size_t len, int eof, uint32_t *lengths,
                    uint64_t *hashes, size_t cap, size_t *consumed) {
  size_t pos = 0, n = 0;
  while (n < cap && pos < len) {
    size_t rest = len - pos;
    /* Without the end of the input in view, a cut needs max bytes ahead to be final. */
    if (!eof && rest < p->max) break;
    size_t c;
    uint64_t h;
    if (p->zero_len && rest >= p->max && src[pos] == 0 && all_zero(src + pos, p->max)) {
      c = p->zero_len;
      h = p->zero_hash;
    } else {
      c = cut(p, src + pos, rest, &h);
    }
    lengths[n] = (uint32_t)c;
    if (hashes) hashes[n] = h;
    n++;
    pos += c;
  }
  *consumed = pos;
  return n;
}
