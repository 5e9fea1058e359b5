/* klauspost/compress 1.15.12 flate, the encoder side, written again in C so that snapdir regenerates gzip
 * layers that containers/image (skopeo, podman, buildah) and umoci wrote through klauspost pgzip 1.2.5,
 * byte for byte, from their tar. Every decision that shapes the output follows that version: the fast
 * match finders of levels 1-6 (level5 is the default), the lazy matcher of levels 7-9, stored (0) and
 * Huffman-only (-2) modes, the block writer's choice between stored, fixed, dynamic and reused tables
 * (with its float32 entropy estimate), and the exact order of table updates. Where Go would panic (an
 * index out of range) the original never goes, and neither does this port.
 *
 * Output is a bit stream: how the original buffers bytes before writing them never shows in the result,
 * so the writer here keeps only the bit order. Matches, tables and sizes follow the Go code line by line;
 * names follow it too, so that the two can be read side by side. */
#include "kflate.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define LITERAL_COUNT 286
#define OFFSET_CODE_COUNT 30
#define END_BLOCK_MARKER 256
#define LENGTH_CODES_START 257
#define CODEGEN_CODE_COUNT 19
#define BAD_CODE 255
#define MAX_PREDEFINED_TOKENS 250
#define MAX_NUM_LIT 286
#define MAX_NUM_DIST 30
#define MAX_STORE_BLOCK_SIZE 65535
#define MAX_MATCH_OFFSET (1 << 15)
#define MAX_MATCH_LENGTH 258
#define MIN_MATCH_LENGTH 4
#define BASE_MATCH_LENGTH 3
#define BASE_MATCH_OFFSET 1
#define MIN_OFFSET_SIZE 1
#define LENGTH_SHIFT 22
#define OFFSET_MASK ((1u << LENGTH_SHIFT) - 1)
#define MATCH_TYPE (1u << 30)
#define MATCH_OFFSET_ONLY_MASK 0xffffu
#define TABLE_BITS 15
#define TABLE_SIZE (1 << TABLE_BITS)
#define BTABLE_BITS 17
#define BTABLE_SIZE (1 << BTABLE_BITS)
#define ALLOC_HISTORY (MAX_STORE_BLOCK_SIZE * 5)
#define BUFFER_RESET ((int32_t)((1u << 31) - ALLOC_HISTORY - MAX_STORE_BLOCK_SIZE - 1))
#define LOG_WINDOW_SIZE 15
#define WINDOW_SIZE (1 << LOG_WINDOW_SIZE)
#define WINDOW_MASK (WINDOW_SIZE - 1)
#define HASH_BITS 17
#define HASH_SIZE (1 << HASH_BITS)
#define HASH_MASK (HASH_SIZE - 1)
#define MAX_HASH_OFFSET (1 << 28)
#define MAX_FLATE_BLOCK_TOKENS (1 << 15)
#define SKIP_NEVER INT32_MAX

/* Go's binary.LittleEndian loads, whatever the host's byte order */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE32(v) __builtin_bswap32(v)
#define LE64(v) __builtin_bswap64(v)
#else
#define LE32(v) (v)
#define LE64(v) (v)
#endif

#define PRIME3 506832829u
#define PRIME4 2654435761u
#define PRIME5 889523592379ull
#define PRIME6 227718039650203ull
#define PRIME7 58295818150454627ull
#define PRIME8 0xcf1bbcdcb7a56463ull

/* ---- tables ---------------------------------------------------------------------------------------- */

static const uint8_t length_extra_bits[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                              3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint8_t length_base[32] = {0,  1,  2,  3,  4,  5,  6,  7,  8,   10,  12,  14,  16,  20, 24,
                                        28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255};
static const int8_t offset_extra_bits[32] = {0, 0, 0,  0,  1,  1,  2,  2,  3,  3,  4,  4,  5,  5,  6,  6,
                                             7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14};
static const uint32_t offset_base[32] = {0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0008, 0x000c,
                                         0x0010, 0x0018, 0x0020, 0x0030, 0x0040, 0x0060, 0x0080, 0x00c0,
                                         0x0100, 0x0180, 0x0200, 0x0300, 0x0400, 0x0600, 0x0800, 0x0c00,
                                         0x1000, 0x1800, 0x2000, 0x3000, 0x4000, 0x6000, 0x8000, 0xc000};
static const uint32_t codegen_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

static uint8_t length_codes[256];  /* length-3 -> length code */
static uint8_t length_codes1[256]; /* the same, plus one */
static uint32_t offset_codes[256]; /* offset-1 (< 256) -> offset code */
static uint32_t offset_codes14[256];
static uint32_t offset_combined[32];

/* A code: its length in the low 8 bits, the bit-reversed code above. */
typedef uint32_t hcode;
#define HC_LEN(h) ((uint8_t)(h))
#define HC_CODE64(h) ((uint64_t)((h) >> 8))

typedef struct {
  uint16_t literal, freq;
} literal_node;

typedef struct {
  hcode codes[LITERAL_COUNT + 3]; /* room for the 289 frequency slots the block writer hands over */
  int ncodes;
  int32_t bit_count[17];
  literal_node freqcache[LITERAL_COUNT + 1];
} henc;

static henc fixed_literal, fixed_offset, huff_offset;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static uint16_t reverse16(uint16_t v) {
  v = (uint16_t)(((v >> 1) & 0x5555) | ((v & 0x5555) << 1));
  v = (uint16_t)(((v >> 2) & 0x3333) | ((v & 0x3333) << 2));
  v = (uint16_t)(((v >> 4) & 0x0f0f) | ((v & 0x0f0f) << 4));
  return (uint16_t)((v >> 8) | (v << 8));
}
static uint16_t reverse_bits(uint16_t number, uint8_t bit_length) {
  return reverse16((uint16_t)(number << ((16 - bit_length) & 15)));
}
static hcode newhcode(uint16_t code, uint8_t length) { return (hcode)length | ((hcode)code << 8); }

static void henc_generate(henc *h, const uint16_t *freq, int nfreq, int32_t max_bits);

static void init_tables(void) {
  for (int code = 0; code < 29; code++)
    for (int l = length_base[code]; l < length_base[code] + (1 << length_extra_bits[code]) && l < 256; l++)
      length_codes[l] = (uint8_t)code;
  length_codes[255] = 28;
  for (int i = 0; i < 256; i++) length_codes1[i] = (uint8_t)(length_codes[i] + 1);
  for (int code = 0; code < 16; code++)
    for (uint32_t o = offset_base[code]; o < offset_base[code] + (1u << offset_extra_bits[code]) && o < 256; o++)
      offset_codes[o] = (uint32_t)code;
  for (int i = 0; i < 256; i++) offset_codes14[i] = offset_codes[i] + 14;
  for (int i = 0; i < 32; i++) {
    if (offset_extra_bits[i] == 0 || offset_base[i] > 0x006000) continue;
    offset_combined[i] = (uint32_t)offset_extra_bits[i] | (offset_base[i] << 8);
  }
  fixed_literal.ncodes = LITERAL_COUNT;
  for (uint16_t ch = 0; ch < LITERAL_COUNT; ch++) {
    uint16_t bits;
    uint8_t size;
    if (ch < 144) bits = ch + 48, size = 8;
    else if (ch < 256) bits = ch + 400 - 144, size = 9;
    else if (ch < 280) bits = ch - 256, size = 7;
    else bits = ch + 192 - 280, size = 8;
    fixed_literal.codes[ch] = newhcode(reverse_bits(bits, size), size);
  }
  fixed_offset.ncodes = 30;
  for (uint16_t ch = 0; ch < 30; ch++) fixed_offset.codes[ch] = newhcode(reverse_bits(ch, 5), 5);
  uint16_t freq[OFFSET_CODE_COUNT] = {1};
  huff_offset.ncodes = OFFSET_CODE_COUNT;
  henc_generate(&huff_offset, freq, OFFSET_CODE_COUNT, 15);
}

static inline uint32_t offset_code(uint32_t off) {
  if (off < 256) return offset_codes[(uint8_t)off];
  return offset_codes14[(uint8_t)(off >> 7)];
}

/* ---- tokens ---------------------------------------------------------------------------------------- */

typedef struct {
  uint16_t extra_hist[32];
  uint16_t off_hist[32];
  uint16_t lit_hist[256];
  int n_filled;
  uint16_t n; /* uint16 as in Go: it must hold maxStoreBlockSize */
  uint32_t tokens[MAX_STORE_BLOCK_SIZE + 1];
} tokens_t;

static void tokens_reset(tokens_t *t) {
  if (t->n == 0) return;
  t->n = 0;
  t->n_filled = 0;
  memset(t->lit_hist, 0, sizeof t->lit_hist);
  memset(t->extra_hist, 0, sizeof t->extra_hist);
  memset(t->off_hist, 0, sizeof t->off_hist);
}
static inline void add_literal(tokens_t *t, uint8_t lit) {
  t->tokens[t->n] = lit;
  t->lit_hist[lit]++;
  t->n++;
}
static inline void add_match(tokens_t *t, uint32_t xlength, uint32_t xoffset) {
  uint32_t oc = offset_code(xoffset);
  xoffset |= oc << 16;
  t->extra_hist[length_codes1[(uint8_t)xlength]]++;
  t->off_hist[oc & 31]++;
  t->tokens[t->n] = MATCH_TYPE | xlength << LENGTH_SHIFT | xoffset;
  t->n++;
}
static inline void add_match_long(tokens_t *t, int32_t xlength, uint32_t xoffset) {
  uint32_t oc = offset_code(xoffset);
  xoffset |= oc << 16;
  while (xlength > 0) {
    int32_t xl = xlength;
    if (xl > 258) xl = xl > 258 + BASE_MATCH_LENGTH ? 258 : 258 - BASE_MATCH_LENGTH;
    xlength -= xl;
    xl -= BASE_MATCH_LENGTH;
    t->extra_hist[length_codes1[(uint8_t)xl]]++;
    t->off_hist[oc & 31]++;
    t->tokens[t->n] = MATCH_TYPE | (uint32_t)xl << LENGTH_SHIFT | xoffset;
    t->n++;
  }
}
static inline void add_eob(tokens_t *t) {
  t->tokens[t->n] = END_BLOCK_MARKER;
  t->extra_hist[0]++;
  t->n++;
}

static float f32frombits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f32bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
/* The estimate is float32 throughout, as in Go (no fused multiply-add: built with -ffp-contract=off). */
static float m_fast_log2(float val) {
  int32_t ux = (int32_t)f32bits(val);
  float log2 = (float)(((ux >> 23) & 255) - 128);
  ux &= -0x7f800001;
  ux += 127 << 23;
  float uval = f32frombits((uint32_t)ux);
  log2 += ((-0.34484843f) * uval + 2.02466578f) * uval - 0.67487759f;
  return log2;
}
static float at_least_one(float v) {
  if (v < 1) return 1;
  if (v > 15) return 15;
  return v;
}
static int estimated_bits(const tokens_t *t) {
  float shannon = 0;
  int bits = 0, n_matches = 0;
  int total = (int)t->n + t->n_filled;
  if (total > 0) {
    float inv_total = 1.0f / (float)total;
    for (int i = 0; i < 256; i++) {
      uint16_t v = t->lit_hist[i];
      if (v > 0) {
        float n = (float)v;
        shannon += at_least_one(-m_fast_log2(n * inv_total)) * n;
      }
    }
    shannon += 15;
    for (int i = 0; i < LITERAL_COUNT - 256 - 1; i++) {
      uint16_t v = t->extra_hist[i + 1];
      if (v > 0) {
        float n = (float)v;
        shannon += at_least_one(-m_fast_log2(n * inv_total)) * n;
        bits += (int)length_extra_bits[i & 31] * (int)v;
        n_matches += (int)v;
      }
    }
  }
  if (n_matches > 0) {
    float inv_total = 1.0f / (float)n_matches;
    for (int i = 0; i < OFFSET_CODE_COUNT; i++) {
      uint16_t v = t->off_hist[i];
      if (v > 0) {
        float n = (float)v;
        shannon += at_least_one(-m_fast_log2(n * inv_total)) * n;
        bits += (int)offset_extra_bits[i & 31] * (int)v;
      }
    }
  }
  return (int)shannon + bits;
}

/* ---- Huffman codes ----------------------------------------------------------------------------------- */

/* (freq, literal) is a total order (literals are distinct), so any correct sort gives Go's order. */
static int cmp_by_freq(const void *a, const void *b) {
  const literal_node *x = a, *y = b;
  if (x->freq != y->freq) return x->freq < y->freq ? -1 : 1;
  return x->literal < y->literal ? -1 : x->literal > y->literal;
}
static int cmp_by_literal(const void *a, const void *b) {
  const literal_node *x = a, *y = b;
  return x->literal < y->literal ? -1 : x->literal > y->literal;
}

typedef struct {
  int32_t level, last_freq, next_char_freq, next_pair_freq, needed;
} level_info;

static int32_t *bit_counts(henc *h, literal_node *list, int32_t n, int32_t max_bits) {
  list[n] = (literal_node){UINT16_MAX, UINT16_MAX};
  if (max_bits > n - 1) max_bits = n - 1;
  level_info levels[17];
  int32_t leaf_counts[17][16];
  memset(levels, 0, sizeof levels);
  memset(leaf_counts, 0, sizeof leaf_counts);
  int32_t l2f = list[2].freq, l1f = list[1].freq, l0f = (int32_t)list[0].freq + (int32_t)list[1].freq;
  for (int32_t level = 1; level <= max_bits; level++) {
    levels[level] = (level_info){level, l1f, l2f, l0f, 0};
    leaf_counts[level][level] = 2;
    if (level == 1) levels[level].next_pair_freq = INT32_MAX;
  }
  levels[max_bits].needed = 2 * n - 4;
  uint32_t level = (uint32_t)max_bits;
  while (level < 16) {
    level_info *l = &levels[level];
    if (l->next_pair_freq == INT32_MAX && l->next_char_freq == INT32_MAX) {
      l->needed = 0;
      levels[level + 1].next_pair_freq = INT32_MAX;
      level++;
      continue;
    }
    int32_t prev_freq = l->last_freq;
    if (l->next_char_freq < l->next_pair_freq) {
      int32_t nn = leaf_counts[level][level] + 1;
      l->last_freq = l->next_char_freq;
      leaf_counts[level][level] = nn;
      literal_node e = list[nn];
      l->next_char_freq = e.literal < UINT16_MAX ? (int32_t)e.freq : INT32_MAX;
    } else {
      l->last_freq = l->next_pair_freq;
      int32_t save = leaf_counts[level][level];
      memcpy(leaf_counts[level], leaf_counts[level - 1], sizeof leaf_counts[level]);
      leaf_counts[level][level] = save;
      levels[l->level - 1].needed = 2;
    }
    if (--l->needed == 0) {
      if (l->level == max_bits) break;
      levels[l->level + 1].next_pair_freq = prev_freq + l->last_freq;
      level++;
    } else {
      while (levels[level - 1].needed > 0) level--;
    }
  }
  int32_t bits = 1;
  int32_t *counts = leaf_counts[max_bits];
  for (int32_t lv = max_bits; lv > 0; lv--) {
    h->bit_count[bits] = counts[lv] - counts[lv - 1];
    bits++;
  }
  return h->bit_count;
}

static void assign_encoding_and_size(henc *h, const int32_t *bit_count, int nbits, literal_node *list, int len) {
  uint16_t code = 0;
  for (int n = 0; n < nbits; n++) {
    int32_t bits = bit_count[n];
    code <<= 1;
    if (n == 0 || bits == 0) continue;
    literal_node *chunk = list + len - bits;
    qsort(chunk, (size_t)bits, sizeof *chunk, cmp_by_literal);
    for (int32_t i = 0; i < bits; i++) {
      h->codes[chunk[i].literal] = newhcode(reverse_bits(code, (uint8_t)n), (uint8_t)n);
      code++;
    }
    len -= bits;
  }
}

static void henc_generate(henc *h, const uint16_t *freq, int nfreq, int32_t max_bits) {
  literal_node *list = h->freqcache;
  int count = 0;
  for (int i = 0; i < nfreq; i++) {
    if (freq[i] != 0) list[count++] = (literal_node){(uint16_t)i, freq[i]};
    else h->codes[i] = 0;
  }
  list[count] = (literal_node){0, 0};
  if (count <= 2) {
    for (int i = 0; i < count; i++) h->codes[list[i].literal] = newhcode((uint16_t)i, 1);
    return;
  }
  qsort(list, (size_t)count, sizeof *list, cmp_by_freq);
  int32_t mb = max_bits > count - 1 ? count - 1 : max_bits;
  int32_t *bc = bit_counts(h, list, count, max_bits);
  assign_encoding_and_size(h, bc, mb + 1, list, count);
}

static int henc_bit_length(const henc *h, const uint16_t *freq, int nfreq) {
  int total = 0;
  for (int i = 0; i < nfreq; i++)
    if (freq[i] != 0) total += (int)freq[i] * (int)HC_LEN(h->codes[i]);
  return total;
}
static int henc_bit_length_raw(const henc *h, const uint8_t *b, size_t n) {
  int total = 0;
  for (size_t i = 0; i < n; i++) total += (int)HC_LEN(h->codes[b[i]]);
  return total;
}
static int henc_can_reuse_bits(const henc *h, const uint16_t *freq, int nfreq) {
  int total = 0;
  for (int i = 0; i < nfreq; i++) {
    if (freq[i] != 0) {
      hcode code = h->codes[i];
      if (code == 0) return INT32_MAX;
      total += (int)freq[i] * (int)HC_LEN(code);
    }
  }
  return total;
}

/* ---- the bit writer ----------------------------------------------------------------------------------- */

typedef struct {
  kf_out *out;
  uint64_t bits;
  unsigned nbits;
  bool last_huff_man;
  henc *literal_encoding, *tmp_lit_encoding;
  henc lit_a, lit_b, offset_encoding, codegen_encoding;
  int last_header;
  unsigned log_new_table_penalty;
  uint16_t literal_freq[LENGTH_CODES_START + 32];
  uint16_t offset_freq[32];
  uint16_t codegen_freq[CODEGEN_CODE_COUNT];
  uint8_t codegen[LITERAL_COUNT + OFFSET_CODE_COUNT + 1];
} hbw;

static void out_append(kf_out *o, const uint8_t *b, size_t n) {
  if (o->oom || n == 0) return;
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + n) cap *= 2;
    uint8_t *d = realloc(o->data, cap);
    if (!d) {
      o->oom = 1;
      return;
    }
    o->data = d;
    o->cap = cap;
  }
  memcpy(o->data + o->len, b, n);
  o->len += n;
}

static inline void write_out_bits(hbw *w) {
  kf_out *o = w->out;
  if (o->cap - o->len >= 8) { /* the common case: 8 bytes stored, 6 kept (little-endian) */
    uint64_t le = LE64(w->bits);
    memcpy(o->data + o->len, &le, 8);
    o->len += 6;
  } else {
    uint8_t b[6];
    for (int i = 0; i < 6; i++) b[i] = (uint8_t)(w->bits >> (8 * i));
    out_append(o, b, 6);
  }
  w->bits >>= 48;
  w->nbits -= 48;
}
static inline void write_bits(hbw *w, uint64_t b, unsigned nb) {
  w->bits |= b << (w->nbits & 63);
  w->nbits += nb;
  if (w->nbits >= 48) write_out_bits(w);
}
static inline void write_code(hbw *w, hcode c) { write_bits(w, HC_CODE64(c), HC_LEN(c)); }

static void hbw_reset(hbw *w, kf_out *out) {
  w->out = out;
  w->bits = 0;
  w->nbits = 0;
  w->last_header = 0;
  w->last_huff_man = false;
}

static void hbw_flush(hbw *w) {
  if (w->last_header > 0) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
  }
  uint8_t b[8];
  int n = 0;
  while (w->nbits != 0) {
    b[n++] = (uint8_t)w->bits;
    w->bits >>= 8;
    w->nbits = w->nbits > 8 ? w->nbits - 8 : 0;
  }
  w->bits = 0;
  out_append(w->out, b, (size_t)n);
}

static void hbw_write_bytes(hbw *w, const uint8_t *bytes, size_t len) {
  /* nbits is a multiple of 8 here: a stored header ends byte-aligned */
  uint8_t b[8];
  int n = 0;
  while (w->nbits != 0) {
    b[n++] = (uint8_t)w->bits;
    w->bits >>= 8;
    w->nbits -= 8;
  }
  out_append(w->out, b, (size_t)n);
  out_append(w->out, bytes, len);
}

static bool hbw_can_reuse(const hbw *w, const tokens_t *t) {
  for (int i = 0; i < OFFSET_CODE_COUNT; i++)
    if (t->off_hist[i] != 0 && w->offset_encoding.codes[i] == 0) return false;
  for (int i = 0; i < LITERAL_COUNT - 256; i++)
    if (t->extra_hist[i] != 0 && w->literal_encoding->codes[256 + i] == 0) return false;
  for (int i = 0; i < 256; i++)
    if (t->lit_hist[i] != 0 && w->literal_encoding->codes[i] == 0) return false;
  return true;
}

static void generate_codegen(hbw *w, int num_literals, int num_offsets, const henc *lit_enc, const henc *off_enc) {
  memset(w->codegen_freq, 0, sizeof w->codegen_freq);
  uint8_t *codegen = w->codegen;
  for (int i = 0; i < num_literals; i++) codegen[i] = HC_LEN(lit_enc->codes[i]);
  for (int i = 0; i < num_offsets; i++) codegen[num_literals + i] = HC_LEN(off_enc->codes[i]);
  codegen[num_literals + num_offsets] = BAD_CODE;
  uint8_t size = codegen[0];
  int count = 1;
  int out_index = 0;
  for (int in_index = 1; size != BAD_CODE; in_index++) {
    uint8_t next_size = codegen[in_index];
    if (next_size == size) {
      count++;
      continue;
    }
    if (size != 0) {
      codegen[out_index++] = size;
      w->codegen_freq[size]++;
      count--;
      while (count >= 3) {
        int n = 6;
        if (n > count) n = count;
        codegen[out_index++] = 16;
        codegen[out_index++] = (uint8_t)(n - 3);
        w->codegen_freq[16]++;
        count -= n;
      }
    } else {
      while (count >= 11) {
        int n = 138;
        if (n > count) n = count;
        codegen[out_index++] = 18;
        codegen[out_index++] = (uint8_t)(n - 11);
        w->codegen_freq[18]++;
        count -= n;
      }
      if (count >= 3) {
        codegen[out_index++] = 17;
        codegen[out_index++] = (uint8_t)(count - 3);
        w->codegen_freq[17]++;
        count = 0;
      }
    }
    count--;
    for (; count >= 0; count--) {
      codegen[out_index++] = size;
      w->codegen_freq[size]++;
    }
    size = next_size;
    count = 1;
  }
  codegen[out_index] = BAD_CODE;
}

static int codegens(const hbw *w) {
  int n = CODEGEN_CODE_COUNT;
  while (n > 4 && w->codegen_freq[codegen_order[n - 1]] == 0) n--;
  return n;
}
static int header_size(const hbw *w, int *num_codegens) {
  int n = codegens(w);
  if (num_codegens) *num_codegens = n;
  return 3 + 5 + 5 + 4 + (3 * n) + henc_bit_length(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT) +
         (int)w->codegen_freq[16] * 2 + (int)w->codegen_freq[17] * 3 + (int)w->codegen_freq[18] * 7;
}
static int dynamic_reuse_size(const hbw *w, const henc *lit_enc, const henc *off_enc) {
  return henc_bit_length(lit_enc, w->literal_freq, LENGTH_CODES_START + 32) +
         henc_bit_length(off_enc, w->offset_freq, 32);
}
static int dynamic_size(const hbw *w, const henc *lit_enc, const henc *off_enc, int extra_bits, int *num_codegens) {
  int header = header_size(w, num_codegens);
  return header + henc_bit_length(lit_enc, w->literal_freq, LENGTH_CODES_START + 32) +
         henc_bit_length(off_enc, w->offset_freq, 32) + extra_bits;
}
static int extra_bit_size(const hbw *w) {
  int total = 0;
  for (int i = 0; i < LITERAL_COUNT - 257; i++) total += (int)w->literal_freq[257 + i] * (int)length_extra_bits[i & 31];
  for (int i = 0; i < OFFSET_CODE_COUNT; i++) total += (int)w->offset_freq[i] * (int)offset_extra_bits[i & 31];
  return total;
}
static int fixed_size(const hbw *w, int extra_bits) {
  return 3 + henc_bit_length(&fixed_literal, w->literal_freq, LENGTH_CODES_START + 32) +
         henc_bit_length(&fixed_offset, w->offset_freq, 32) + extra_bits;
}
/* in == NULL is Go's nil slice: not storable (an empty slice is) */
static int stored_size(const uint8_t *in, size_t len, bool *storable) {
  *storable = false;
  if (!in) return 0;
  if (len <= MAX_STORE_BLOCK_SIZE) {
    *storable = true;
    return (int)(len + 5) * 8;
  }
  return 0;
}

static void write_dynamic_header(hbw *w, int num_literals, int num_offsets, int num_codegens, bool is_eof) {
  write_bits(w, is_eof ? 5 : 4, 3);
  write_bits(w, (uint64_t)(num_literals - 257), 5);
  write_bits(w, (uint64_t)(num_offsets - 1), 5);
  write_bits(w, (uint64_t)(num_codegens - 4), 4);
  for (int i = 0; i < num_codegens; i++) write_bits(w, HC_LEN(w->codegen_encoding.codes[codegen_order[i]]), 3);
  int i = 0;
  for (;;) {
    uint32_t code_word = w->codegen[i++];
    if (code_word == BAD_CODE) break;
    write_code(w, w->codegen_encoding.codes[code_word]);
    switch (code_word) {
      case 16:
        write_bits(w, w->codegen[i++], 2);
        break;
      case 17:
        write_bits(w, w->codegen[i++], 3);
        break;
      case 18:
        write_bits(w, w->codegen[i++], 7);
        break;
    }
  }
}

static void write_fixed_header(hbw *w, bool is_eof) {
  if (w->last_header > 0) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
  }
  write_bits(w, is_eof ? 3 : 2, 3);
}

static void write_stored_header(hbw *w, int length, bool is_eof) {
  if (w->last_header > 0) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
  }
  if (length == 0 && is_eof) {
    write_fixed_header(w, is_eof);
    write_bits(w, 0, 7);
    hbw_flush(w);
    return;
  }
  write_bits(w, is_eof ? 1 : 0, 3);
  hbw_flush(w);
  write_bits(w, (uint64_t)length, 16);
  write_bits(w, (uint16_t)~(uint16_t)length, 16);
}

static void index_tokens(hbw *w, const tokens_t *t, bool filled, int *num_literals, int *num_offsets) {
  memcpy(w->literal_freq, t->lit_hist, sizeof t->lit_hist);
  memcpy(w->literal_freq + 256, t->extra_hist, sizeof t->extra_hist);
  memcpy(w->offset_freq, t->off_hist, sizeof t->off_hist);
  *num_literals = 0;
  *num_offsets = 0;
  if (t->n == 0) return;
  if (filled) {
    *num_literals = MAX_NUM_LIT;
    *num_offsets = MAX_NUM_DIST;
    return;
  }
  int nl = LENGTH_CODES_START + 32;
  while (w->literal_freq[nl - 1] == 0) nl--;
  int no = 32;
  while (no > 0 && w->offset_freq[no - 1] == 0) no--;
  if (no == 0) {
    w->offset_freq[0] = 1;
    no = 1;
  }
  *num_literals = nl;
  *num_offsets = no;
}

static void hbw_generate(hbw *w) {
  henc_generate(w->literal_encoding, w->literal_freq, LITERAL_COUNT, 15);
  henc_generate(&w->offset_encoding, w->offset_freq, OFFSET_CODE_COUNT, 15);
}

static void write_tokens(hbw *w, const uint32_t *tokens, int n, const hcode *le_codes, const hcode *oe_codes) {
  if (n == 0) return;
  bool defer_eob = false;
  if (tokens[n - 1] == END_BLOCK_MARKER) {
    n--;
    defer_eob = true;
  }
  uint64_t bits = w->bits;
  unsigned nbits = w->nbits;
#define PUT(v, nb)                                  \
  do {                                              \
    bits |= (uint64_t)(v) << (nbits & 63);          \
    nbits += (nb);                                  \
    if (nbits >= 48) {                              \
      w->bits = bits;                               \
      w->nbits = nbits;                             \
      write_out_bits(w);                            \
      bits = w->bits;                               \
      nbits = w->nbits;                             \
    }                                               \
  } while (0)
  for (int i = 0; i < n; i++) {
    uint32_t t = tokens[i];
    if (t < 256) {
      hcode c = le_codes[t];
      PUT(HC_CODE64(c), HC_LEN(c));
      continue;
    }
    uint8_t length = (uint8_t)(t >> LENGTH_SHIFT);
    uint8_t lc = length_codes[length] & 31;
    hcode c = le_codes[LENGTH_CODES_START + lc];
    PUT(HC_CODE64(c), HC_LEN(c));
    if (lc >= 8) PUT((uint32_t)(uint8_t)(length - length_base[lc]), length_extra_bits[lc]);
    uint32_t offset = t & OFFSET_MASK;
    uint32_t oc = (offset >> 16) & 31;
    c = oe_codes[oc];
    PUT(HC_CODE64(c), HC_LEN(c));
    if (oc >= 4) {
      uint32_t comb = offset_combined[oc];
      PUT((offset - (comb >> 8)) & MATCH_OFFSET_ONLY_MASK, (uint8_t)comb);
    }
  }
#undef PUT
  w->bits = bits;
  w->nbits = nbits;
  if (defer_eob) write_code(w, le_codes[END_BLOCK_MARKER]);
}

static void write_block_dynamic(hbw *w, tokens_t *tokens, bool eof, const uint8_t *input, size_t input_len, bool sync) {
  sync = sync || eof;
  if (sync) add_eob(tokens);
  if ((w->last_huff_man || eof) && w->last_header > 0) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
    w->last_huff_man = false;
  }
  if (w->last_header > 0 && !hbw_can_reuse(w, tokens)) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
  }
  int num_literals, num_offsets;
  index_tokens(w, tokens, !sync, &num_literals, &num_offsets);
  int extra_bits = 0;
  bool storable;
  int ssize = stored_size(input, input_len, &storable);
  if (storable || w->last_header > 0) extra_bits = extra_bit_size(w);
  int size = 0;
  if (w->last_header > 0) {
    int new_size = w->last_header + estimated_bits(tokens);
    new_size += (int)HC_LEN(w->literal_encoding->codes[END_BLOCK_MARKER]) + (new_size >> w->log_new_table_penalty);
    int reuse_size = dynamic_reuse_size(w, w->literal_encoding, &w->offset_encoding) + extra_bits;
    if (new_size < reuse_size) {
      write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
      size = new_size;
      w->last_header = 0;
    } else {
      size = reuse_size;
    }
    if (tokens->n < MAX_PREDEFINED_TOKENS) {
      int pre_size = fixed_size(w, extra_bits) + 7;
      if (pre_size < size) {
        if (storable && ssize <= size) {
          write_stored_header(w, (int)input_len, eof);
          hbw_write_bytes(w, input, input_len);
          return;
        }
        write_fixed_header(w, eof);
        if (!sync) add_eob(tokens);
        write_tokens(w, tokens->tokens, tokens->n, fixed_literal.codes, fixed_offset.codes);
        return;
      }
    }
    if (storable && ssize <= size) {
      write_stored_header(w, (int)input_len, eof);
      hbw_write_bytes(w, input, input_len);
      return;
    }
  }
  if (w->last_header == 0) {
    w->literal_freq[END_BLOCK_MARKER] = 1;
    hbw_generate(w);
    generate_codegen(w, num_literals, num_offsets, w->literal_encoding, &w->offset_encoding);
    henc_generate(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT, 7);
    int num_codegens;
    size = dynamic_size(w, w->literal_encoding, &w->offset_encoding, extra_bits, &num_codegens);
    if (tokens->n < MAX_PREDEFINED_TOKENS) {
      int pre_size = fixed_size(w, extra_bits);
      if (pre_size <= size) {
        if (storable && ssize <= pre_size) {
          write_stored_header(w, (int)input_len, eof);
          hbw_write_bytes(w, input, input_len);
          return;
        }
        write_fixed_header(w, eof);
        if (!sync) add_eob(tokens);
        write_tokens(w, tokens->tokens, tokens->n, fixed_literal.codes, fixed_offset.codes);
        return;
      }
    }
    if (storable && ssize <= size) {
      write_stored_header(w, (int)input_len, eof);
      hbw_write_bytes(w, input, input_len);
      return;
    }
    write_dynamic_header(w, num_literals, num_offsets, num_codegens, eof);
    if (!sync) w->last_header = header_size(w, NULL);
    w->last_huff_man = false;
  }
  if (sync) w->last_header = 0;
  write_tokens(w, tokens->tokens, tokens->n, w->literal_encoding->codes, w->offset_encoding.codes);
}

static void write_block_huff(hbw *w, bool eof, const uint8_t *input, size_t input_len, bool sync) {
  memset(w->literal_freq, 0, sizeof w->literal_freq);
  if (!w->last_huff_man) memset(w->offset_freq, 0, sizeof w->offset_freq);
  enum { num_literals = END_BLOCK_MARKER + 1, num_offsets = 1, guess_header_size_bits = 70 * 8 };
  for (size_t i = 0; i < input_len; i++) w->literal_freq[input[i]]++;
  bool storable;
  int ssize = stored_size(input, input_len, &storable);
  if (storable && input_len > 1024) {
    double abs = 0, avg = (double)input_len / 256, max = (double)(input_len * 2);
    for (int i = 0; i < 256; i++) {
      double diff = (double)w->literal_freq[i] - avg;
      abs += diff * diff;
      if (abs > max) break;
    }
    if (abs < max) {
      write_stored_header(w, (int)input_len, eof);
      hbw_write_bytes(w, input, input_len);
      return;
    }
  }
  w->literal_freq[END_BLOCK_MARKER] = 1;
  henc_generate(w->tmp_lit_encoding, w->literal_freq, num_literals, 15);
  int est_bits = henc_can_reuse_bits(w->tmp_lit_encoding, w->literal_freq, num_literals);
  if (est_bits < INT32_MAX) {
    est_bits += w->last_header;
    if (w->last_header == 0) est_bits += guess_header_size_bits;
    est_bits += est_bits >> w->log_new_table_penalty;
  }
  if (storable && ssize <= est_bits) {
    write_stored_header(w, (int)input_len, eof);
    hbw_write_bytes(w, input, input_len);
    return;
  }
  if (w->last_header > 0) {
    int reuse_size = henc_can_reuse_bits(w->literal_encoding, w->literal_freq, 256);
    if (est_bits < reuse_size) {
      write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
      w->last_header = 0;
    }
  }
  if (w->last_header == 0) {
    henc *t = w->literal_encoding;
    w->literal_encoding = w->tmp_lit_encoding;
    w->tmp_lit_encoding = t;
    generate_codegen(w, num_literals, num_offsets, w->literal_encoding, &huff_offset);
    henc_generate(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT, 7);
    int num_codegens = codegens(w);
    write_dynamic_header(w, num_literals, num_offsets, num_codegens, eof);
    w->last_huff_man = true;
    w->last_header = header_size(w, NULL);
  }
  const hcode *encoding = w->literal_encoding->codes;
  for (size_t i = 0; i < input_len; i++) write_code(w, encoding[input[i]]);
  if (eof || sync) {
    write_code(w, w->literal_encoding->codes[END_BLOCK_MARKER]);
    w->last_header = 0;
    w->last_huff_man = false;
  }
}

/* ---- the fast match finders (levels 1-6) --------------------------------------------------------------- */

typedef struct {
  int32_t offset;
} table_entry;
typedef struct {
  table_entry cur, prev;
} table_entry_prev;

typedef struct {
  int level;
  uint8_t *hist; /* ALLOC_HISTORY bytes (+ slack for 8-byte loads never used past the end) */
  int32_t hist_len;
  int32_t cur;
  table_entry *table;       /* L1: TABLE_SIZE, L2: BTABLE_SIZE, L4-6: TABLE_SIZE */
  table_entry_prev *ptable; /* L3: 1<<16 */
  table_entry *btable;      /* L4 */
  table_entry_prev *bptable; /* L5, L6 */
} fast_enc;

static inline uint32_t load3232(const uint8_t *b, int32_t i) {
  uint32_t v;
  memcpy(&v, b + i, 4);
  return LE32(v);
}
static inline uint64_t load6432(const uint8_t *b, int32_t i) {
  uint64_t v;
  memcpy(&v, b + i, 8);
  return LE64(v);
}
static inline uint32_t hash7(uint64_t u, uint8_t h) { return (uint32_t)(((u << 8) * PRIME7) >> ((64 - h) & 63)); }
static inline uint32_t hash_len(uint64_t u, uint8_t length, uint8_t mls) {
  switch (mls) {
    case 3:
      return ((uint32_t)(u << 8) * PRIME3) >> (32 - length);
    case 5:
      return (uint32_t)(((u << 24) * PRIME5) >> (64 - length));
    case 6:
      return (uint32_t)(((u << 16) * PRIME6) >> (64 - length));
    case 7:
      return (uint32_t)(((u << 8) * PRIME7) >> (64 - length));
    case 8:
      return (uint32_t)((u * PRIME8) >> (64 - length));
    default:
      return ((uint32_t)u * PRIME4) >> (32 - length);
  }
}

/* matchLen(a, b): the common prefix of a (of length alen) and b (at least as long) */
static inline int match_len(const uint8_t *a, int alen, const uint8_t *b) {
  int checked = 0;
  while (alen >= 8) {
    uint64_t diff = load6432(a, 0) ^ load6432(b, 0);
    if (diff != 0) return checked + (__builtin_ctzll(diff) >> 3);
    checked += 8;
    a += 8;
    b += 8;
    alen -= 8;
  }
  for (int i = 0; i < alen; i++)
    if (a[i] != b[i]) return i + checked;
  return alen + checked;
}
static inline int32_t fe_matchlen(const fast_enc *e, int32_t s, int32_t t, const uint8_t *src) {
  int32_t s1 = s + MAX_MATCH_LENGTH - 4;
  if (s1 > e->hist_len) s1 = e->hist_len;
  return match_len(src + s, s1 - s, src + t);
}
static inline int32_t fe_matchlen_long(const fast_enc *e, int32_t s, int32_t t, const uint8_t *src) {
  return match_len(src + s, e->hist_len - s, src + t);
}

static int32_t fe_add_block(fast_enc *e, const uint8_t *src, int32_t n) {
  if (e->hist_len + n > ALLOC_HISTORY) {
    int32_t offset = e->hist_len - MAX_MATCH_OFFSET;
    memmove(e->hist, e->hist + offset, MAX_MATCH_OFFSET);
    e->cur += offset;
    e->hist_len = MAX_MATCH_OFFSET;
  }
  int32_t s = e->hist_len;
  memcpy(e->hist + e->hist_len, src, (size_t)n);
  e->hist_len += n;
  return s;
}

static void fe_reset(fast_enc *e) {
  if (e->cur <= BUFFER_RESET) e->cur += MAX_MATCH_OFFSET + e->hist_len;
  e->hist_len = 0;
}

/* The wraparound guard each level runs before encoding. */
static void fe_protect(fast_enc *e) {
  while (e->cur >= BUFFER_RESET) {
    size_t nt = e->level == 2 ? BTABLE_SIZE : TABLE_SIZE;
    if (e->hist_len == 0) {
      if (e->table) memset(e->table, 0, nt * sizeof *e->table);
      if (e->ptable) memset(e->ptable, 0, (1 << 16) * sizeof *e->ptable);
      if (e->btable) memset(e->btable, 0, TABLE_SIZE * sizeof *e->btable);
      if (e->bptable) memset(e->bptable, 0, TABLE_SIZE * sizeof *e->bptable);
      e->cur = MAX_MATCH_OFFSET;
      break;
    }
    int32_t min_off = e->cur + e->hist_len - MAX_MATCH_OFFSET;
#define SHIFT(v) ((v) <= min_off ? 0 : (v) - e->cur + MAX_MATCH_OFFSET)
    if (e->table)
      for (size_t i = 0; i < nt; i++) e->table[i].offset = SHIFT(e->table[i].offset);
    if (e->btable)
      for (size_t i = 0; i < TABLE_SIZE; i++) e->btable[i].offset = SHIFT(e->btable[i].offset);
    if (e->ptable)
      for (size_t i = 0; i < (1 << 16); i++) {
        e->ptable[i].cur.offset = SHIFT(e->ptable[i].cur.offset);
        e->ptable[i].prev.offset = SHIFT(e->ptable[i].prev.offset);
      }
    if (e->bptable)
      for (size_t i = 0; i < TABLE_SIZE; i++) {
        table_entry_prev v = e->bptable[i];
        if (v.cur.offset <= min_off) {
          v.cur.offset = 0;
          v.prev.offset = 0;
        } else {
          v.cur.offset = v.cur.offset - e->cur + MAX_MATCH_OFFSET;
          v.prev.offset = SHIFT(v.prev.offset);
        }
        e->bptable[i] = v;
      }
#undef SHIFT
    e->cur = MAX_MATCH_OFFSET;
  }
}

static void emit_literals(tokens_t *dst, const uint8_t *src, int32_t from, int32_t to) {
  for (int32_t i = from; i < to; i++) add_literal(dst, src[i]);
}

enum { INPUT_MARGIN = 12 - 1, MIN_NON_LITERAL_BLOCK_SIZE = 1 + 1 + INPUT_MARGIN };

static void encode_l1(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { hash_bytes = 5 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  for (;;) {
    enum { skip_log = 5, do_every = 2 };
    int32_t next_s = s;
    table_entry candidate;
    for (;;) {
      uint32_t next_hash = hash_len(cv, TABLE_BITS, hash_bytes);
      candidate = e->table[next_hash];
      next_s = s + do_every + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      uint64_t now = load6432(src, next_s);
      e->table[next_hash].offset = s + e->cur;
      next_hash = hash_len(now, TABLE_BITS, hash_bytes);
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) {
        e->table[next_hash].offset = next_s + e->cur;
        break;
      }
      cv = now;
      s = next_s;
      next_s++;
      candidate = e->table[next_hash];
      now >>= 8;
      e->table[next_hash].offset = s + e->cur;
      offset = s - (candidate.offset - e->cur);
      if (offset < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) {
        e->table[next_hash].offset = next_s + e->cur;
        break;
      }
      cv = now;
      s = next_s;
    }
    for (;;) {
      int32_t t = candidate.offset - e->cur;
      int32_t l = 4 + match_len(src + s + 4, src_len - (s + 4), src + t + 4);
      while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
        s--;
        t--;
        l++;
      }
      if (next_emit < s) emit_literals(dst, src, next_emit, s);
      add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
      s += l;
      next_emit = s;
      if (next_s >= s) s = next_s + 1;
      if (s >= s_limit) {
        if (s + l + 8 < src_len) {
          uint64_t cv2 = load6432(src, s);
          e->table[hash_len(cv2, TABLE_BITS, hash_bytes)].offset = s + e->cur;
        }
        goto emit_remainder;
      }
      uint64_t x = load6432(src, s - 2);
      int32_t o = e->cur + s - 2;
      uint32_t prev_hash = hash_len(x, TABLE_BITS, hash_bytes);
      e->table[prev_hash].offset = o;
      x >>= 16;
      uint32_t curr_hash = hash_len(x, TABLE_BITS, hash_bytes);
      candidate = e->table[curr_hash];
      e->table[curr_hash].offset = o + 2;
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset > MAX_MATCH_OFFSET || (uint32_t)x != load3232(src, candidate.offset - e->cur)) {
        cv = x >> 8;
        s++;
        break;
      }
    }
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static void encode_l2(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { hash_bytes = 5 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  for (;;) {
    enum { skip_log = 5, do_every = 2 };
    int32_t next_s = s;
    table_entry candidate;
    for (;;) {
      uint32_t next_hash = hash_len(cv, BTABLE_BITS, hash_bytes);
      s = next_s;
      next_s = s + do_every + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      candidate = e->table[next_hash];
      uint64_t now = load6432(src, next_s);
      e->table[next_hash].offset = s + e->cur;
      next_hash = hash_len(now, BTABLE_BITS, hash_bytes);
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) {
        e->table[next_hash].offset = next_s + e->cur;
        break;
      }
      cv = now;
      s = next_s;
      next_s++;
      candidate = e->table[next_hash];
      now >>= 8;
      e->table[next_hash].offset = s + e->cur;
      offset = s - (candidate.offset - e->cur);
      if (offset < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) break;
      cv = now;
    }
    for (;;) {
      int32_t t = candidate.offset - e->cur;
      int32_t l = fe_matchlen_long(e, s + 4, t + 4, src) + 4;
      while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
        s--;
        t--;
        l++;
      }
      if (next_emit < s) emit_literals(dst, src, next_emit, s);
      add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
      s += l;
      next_emit = s;
      if (next_s >= s) s = next_s + 1;
      if (s >= s_limit) {
        if (s + l + 8 < src_len) {
          uint64_t cv2 = load6432(src, s);
          e->table[hash_len(cv2, BTABLE_BITS, hash_bytes)].offset = s + e->cur;
        }
        goto emit_remainder;
      }
      for (int32_t i = s - l + 2; i < s - 5; i += 7) {
        uint64_t x = load6432(src, i);
        e->table[hash_len(x, BTABLE_BITS, hash_bytes)].offset = e->cur + i;
        x >>= 16;
        e->table[hash_len(x, BTABLE_BITS, hash_bytes)].offset = e->cur + i + 2;
        x >>= 16;
        e->table[hash_len(x, BTABLE_BITS, hash_bytes)].offset = e->cur + i + 4;
      }
      uint64_t x = load6432(src, s - 2);
      int32_t o = e->cur + s - 2;
      uint32_t prev_hash = hash_len(x, BTABLE_BITS, hash_bytes);
      uint32_t prev_hash2 = hash_len(x >> 8, BTABLE_BITS, hash_bytes);
      e->table[prev_hash].offset = o;
      e->table[prev_hash2].offset = o + 1;
      uint32_t curr_hash = hash_len(x >> 16, BTABLE_BITS, hash_bytes);
      candidate = e->table[curr_hash];
      e->table[curr_hash].offset = o + 2;
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset > MAX_MATCH_OFFSET || (uint32_t)(x >> 16) != load3232(src, candidate.offset - e->cur)) {
        cv = x >> 24;
        s++;
        break;
      }
    }
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static void encode_l3(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { table_bits = 16, hash_bytes = 5 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  table_entry_prev *tbl = e->ptable;
  for (;;) {
    enum { skip_log = 7 };
    int32_t next_s = s;
    table_entry candidate;
    for (;;) {
      uint32_t next_hash = hash_len(cv, table_bits, hash_bytes);
      s = next_s;
      next_s = s + 1 + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      table_entry_prev candidates = tbl[next_hash];
      uint64_t now = load6432(src, next_s);
      int32_t min_offset = e->cur + s - (MAX_MATCH_OFFSET - 4);
      tbl[next_hash] = (table_entry_prev){{s + e->cur}, candidates.cur};
      candidate = candidates.cur;
      if (candidate.offset < min_offset) {
        cv = now;
        continue;
      }
      if ((uint32_t)cv == load3232(src, candidate.offset - e->cur)) {
        if (candidates.prev.offset < min_offset || (uint32_t)cv != load3232(src, candidates.prev.offset - e->cur)) break;
        int32_t offset = s - (candidate.offset - e->cur);
        int32_t o2 = s - (candidates.prev.offset - e->cur);
        int l1 = match_len(src + s + 4, src_len - s - 4, src + s - offset + 4);
        int l2 = match_len(src + s + 4, src_len - s - 4, src + s - o2 + 4);
        if (l2 > l1) candidate = candidates.prev;
        break;
      } else {
        candidate = candidates.prev;
        if (candidate.offset > min_offset && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) break;
      }
      cv = now;
    }
    for (;;) {
      int32_t t = candidate.offset - e->cur;
      int32_t l = fe_matchlen_long(e, s + 4, t + 4, src) + 4;
      while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
        s--;
        t--;
        l++;
      }
      if (next_emit < s) emit_literals(dst, src, next_emit, s);
      add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
      s += l;
      next_emit = s;
      if (next_s >= s) s = next_s + 1;
      if (s >= s_limit) {
        t += l;
        if (t + 8 < src_len && t > 0) {
          cv = load6432(src, t);
          uint32_t nh = hash_len(cv, table_bits, hash_bytes);
          tbl[nh] = (table_entry_prev){{e->cur + t}, tbl[nh].cur};
        }
        goto emit_remainder;
      }
      for (int32_t i = s - l + 2; i < s - 5; i += 6) {
        uint32_t nh = hash_len(load6432(src, i), table_bits, hash_bytes);
        tbl[nh] = (table_entry_prev){{e->cur + i}, tbl[nh].cur};
      }
      uint64_t x = load6432(src, s - 2);
      uint32_t prev_hash = hash_len(x, table_bits, hash_bytes);
      tbl[prev_hash] = (table_entry_prev){{e->cur + s - 2}, tbl[prev_hash].cur};
      x >>= 8;
      prev_hash = hash_len(x, table_bits, hash_bytes);
      tbl[prev_hash] = (table_entry_prev){{e->cur + s - 1}, tbl[prev_hash].cur};
      x >>= 8;
      uint32_t curr_hash = hash_len(x, table_bits, hash_bytes);
      table_entry_prev candidates = tbl[curr_hash];
      cv = x;
      tbl[curr_hash] = (table_entry_prev){{s + e->cur}, candidates.cur};
      candidate = candidates.cur;
      int32_t min_offset = e->cur + s - (MAX_MATCH_OFFSET - 4);
      if (candidate.offset > min_offset) {
        if ((uint32_t)cv == load3232(src, candidate.offset - e->cur)) continue;
        candidate = candidates.prev;
        if (candidate.offset > min_offset && (uint32_t)cv == load3232(src, candidate.offset - e->cur)) continue;
      }
      cv = x >> 8;
      s++;
      break;
    }
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static void encode_l4(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { hash_short_bytes = 4 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  for (;;) {
    enum { skip_log = 6, do_every = 1 };
    int32_t next_s = s;
    int32_t t;
    for (;;) {
      uint32_t next_hash_s = hash_len(cv, TABLE_BITS, hash_short_bytes);
      uint32_t next_hash_l = hash7(cv, TABLE_BITS);
      s = next_s;
      next_s = s + do_every + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      table_entry s_candidate = e->table[next_hash_s];
      table_entry l_candidate = e->btable[next_hash_l];
      uint64_t next = load6432(src, next_s);
      table_entry entry = {s + e->cur};
      e->table[next_hash_s] = entry;
      e->btable[next_hash_l] = entry;
      t = l_candidate.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, l_candidate.offset - e->cur)) break;
      t = s_candidate.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, s_candidate.offset - e->cur)) {
        l_candidate = e->btable[hash7(next, TABLE_BITS)];
        int32_t l_off = next_s - (l_candidate.offset - e->cur);
        if (l_off < MAX_MATCH_OFFSET && load3232(src, l_candidate.offset - e->cur) == (uint32_t)next) {
          int l1 = match_len(src + s + 4, src_len - s - 4, src + t + 4);
          int l2 = match_len(src + next_s + 4, src_len - next_s - 4, src + next_s - l_off + 4);
          if (l2 > l1) {
            s = next_s;
            t = l_candidate.offset - e->cur;
          }
        }
        break;
      }
      cv = next;
    }
    int32_t l = fe_matchlen_long(e, s + 4, t + 4, src) + 4;
    while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
      s--;
      t--;
      l++;
    }
    if (next_emit < s) emit_literals(dst, src, next_emit, s);
    add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
    s += l;
    next_emit = s;
    if (next_s >= s) s = next_s + 1;
    if (s >= s_limit) {
      if (s + 8 < src_len) {
        uint64_t cv2 = load6432(src, s);
        e->table[hash_len(cv2, TABLE_BITS, hash_short_bytes)].offset = s + e->cur;
        e->btable[hash7(cv2, TABLE_BITS)].offset = s + e->cur;
      }
      goto emit_remainder;
    }
    {
      int32_t i = next_s;
      if (i < s - 1) {
        uint64_t cv2 = load6432(src, i);
        table_entry te = {i + e->cur}, te2 = {i + e->cur + 1};
        e->btable[hash7(cv2, TABLE_BITS)] = te;
        e->btable[hash7(cv2 >> 8, TABLE_BITS)] = te2;
        e->table[hash_len(cv2 >> 8, TABLE_BITS, hash_short_bytes)] = te2;
        i += 3;
        for (; i < s - 1; i += 3) {
          cv2 = load6432(src, i);
          te = (table_entry){i + e->cur};
          te2 = (table_entry){te.offset + 1};
          e->btable[hash7(cv2, TABLE_BITS)] = te;
          e->btable[hash7(cv2 >> 8, TABLE_BITS)] = te2;
          e->table[hash_len(cv2 >> 8, TABLE_BITS, hash_short_bytes)] = te2;
        }
      }
    }
    uint64_t x = load6432(src, s - 1);
    int32_t o = e->cur + s - 1;
    e->table[hash_len(x, TABLE_BITS, hash_short_bytes)].offset = o;
    e->btable[hash7(x, TABLE_BITS)].offset = o;
    cv = x >> 8;
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static inline void push_long(table_entry_prev *e, int32_t off) {
  e->prev = e->cur;
  e->cur.offset = off;
}

static void encode_l5(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { hash_short_bytes = 4 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  for (;;) {
    enum { skip_log = 6, do_every = 1 };
    int32_t next_s = s;
    int32_t l = 0, t = 0;
    for (;;) {
      uint32_t next_hash_s = hash_len(cv, TABLE_BITS, hash_short_bytes);
      uint32_t next_hash_l = hash7(cv, TABLE_BITS);
      s = next_s;
      next_s = s + do_every + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      table_entry s_candidate = e->table[next_hash_s];
      table_entry_prev l_candidate = e->bptable[next_hash_l];
      uint64_t next = load6432(src, next_s);
      int32_t entry = s + e->cur;
      e->table[next_hash_s].offset = entry;
      push_long(&e->bptable[next_hash_l], entry);
      next_hash_s = hash_len(next, TABLE_BITS, hash_short_bytes);
      next_hash_l = hash7(next, TABLE_BITS);
      t = l_candidate.cur.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET) {
        if ((uint32_t)cv == load3232(src, l_candidate.cur.offset - e->cur)) {
          e->table[next_hash_s].offset = next_s + e->cur;
          push_long(&e->bptable[next_hash_l], next_s + e->cur);
          int32_t t2 = l_candidate.prev.offset - e->cur;
          if (s - t2 < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, l_candidate.prev.offset - e->cur)) {
            l = fe_matchlen(e, s + 4, t + 4, src) + 4;
            int32_t ml1 = fe_matchlen(e, s + 4, t2 + 4, src) + 4;
            if (ml1 > l) {
              t = t2;
              l = ml1;
              break;
            }
          }
          break;
        }
        t = l_candidate.prev.offset - e->cur;
        if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, l_candidate.prev.offset - e->cur)) {
          e->table[next_hash_s].offset = next_s + e->cur;
          push_long(&e->bptable[next_hash_l], next_s + e->cur);
          break;
        }
      }
      t = s_candidate.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, s_candidate.offset - e->cur)) {
        l = fe_matchlen(e, s + 4, t + 4, src) + 4;
        l_candidate = e->bptable[next_hash_l];
        e->table[next_hash_s].offset = next_s + e->cur;
        push_long(&e->bptable[next_hash_l], next_s + e->cur);
        int32_t t2 = l_candidate.cur.offset - e->cur;
        if (next_s - t2 < MAX_MATCH_OFFSET) {
          if (load3232(src, l_candidate.cur.offset - e->cur) == (uint32_t)next) {
            int32_t ml = fe_matchlen(e, next_s + 4, t2 + 4, src) + 4;
            if (ml > l) {
              t = t2;
              s = next_s;
              l = ml;
              break;
            }
          }
          t2 = l_candidate.prev.offset - e->cur;
          if (next_s - t2 < MAX_MATCH_OFFSET && load3232(src, l_candidate.prev.offset - e->cur) == (uint32_t)next) {
            int32_t ml = fe_matchlen(e, next_s + 4, t2 + 4, src) + 4;
            if (ml > l) {
              t = t2;
              s = next_s;
              l = ml;
              break;
            }
          }
        }
        break;
      }
      cv = next;
    }
    if (l == 0) l = fe_matchlen_long(e, s + 4, t + 4, src) + 4;
    else if (l == MAX_MATCH_LENGTH) l += fe_matchlen_long(e, s + l, t + l, src);
    {
      int32_t s_at = s + l;
      if (l < 30 && s_at < s_limit) {
        enum { skip_beginning = 2 };
        int32_t e_long = e->bptable[hash7(load6432(src, s_at), TABLE_BITS)].cur.offset;
        int32_t t2 = e_long - e->cur - l + skip_beginning;
        int32_t s2 = s + skip_beginning;
        int32_t off = s2 - t2;
        if (t2 >= 0 && off < MAX_MATCH_OFFSET && off > 0) {
          int32_t l2 = fe_matchlen_long(e, s2, t2, src);
          if (l2 > l) {
            t = t2;
            l = l2;
            s = s2;
          }
        }
      }
    }
    while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
      s--;
      t--;
      l++;
    }
    if (next_emit < s) emit_literals(dst, src, next_emit, s);
    add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
    s += l;
    next_emit = s;
    if (next_s >= s) s = next_s + 1;
    if (s >= s_limit) goto emit_remainder;
    {
      enum { hash_every = 3 };
      int32_t i = s - l + 1;
      if (i < s - 1) {
        uint64_t cv2 = load6432(src, i);
        int32_t te = i + e->cur;
        e->table[hash_len(cv2, TABLE_BITS, hash_short_bytes)].offset = te;
        push_long(&e->bptable[hash7(cv2, TABLE_BITS)], te);
        cv2 >>= 8;
        te++;
        push_long(&e->bptable[hash7(cv2, TABLE_BITS)], te);
        cv2 >>= 8;
        te++;
        e->table[hash_len(cv2, TABLE_BITS, hash_short_bytes)].offset = te;
        i += 4;
        for (; i < s - 1; i += hash_every) {
          cv2 = load6432(src, i);
          int32_t t1 = i + e->cur;
          push_long(&e->bptable[hash7(cv2, TABLE_BITS)], t1);
          e->table[hash_len(cv2 >> 8, TABLE_BITS, hash_short_bytes)].offset = t1 + 1;
        }
      }
    }
    uint64_t x = load6432(src, s - 1);
    int32_t o = e->cur + s - 1;
    e->table[hash_len(x, TABLE_BITS, hash_short_bytes)].offset = o;
    push_long(&e->bptable[hash7(x, TABLE_BITS)], o);
    cv = x >> 8;
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static void encode_l6(fast_enc *e, tokens_t *dst, const uint8_t *in, int32_t n) {
  enum { hash_short_bytes = 4 };
  fe_protect(e);
  int32_t s = fe_add_block(e, in, n);
  if (n < MIN_NON_LITERAL_BLOCK_SIZE) {
    dst->n = (uint16_t)n;
    return;
  }
  const uint8_t *src = e->hist;
  int32_t src_len = e->hist_len;
  int32_t next_emit = s;
  int32_t s_limit = src_len - INPUT_MARGIN;
  uint64_t cv = load6432(src, s);
  int32_t repeat = 1;
  for (;;) {
    enum { skip_log = 7, do_every = 1 };
    int32_t next_s = s;
    int32_t l = 0, t = 0;
    for (;;) {
      uint32_t next_hash_s = hash_len(cv, TABLE_BITS, hash_short_bytes);
      uint32_t next_hash_l = hash7(cv, TABLE_BITS);
      s = next_s;
      next_s = s + do_every + ((s - next_emit) >> skip_log);
      if (next_s > s_limit) goto emit_remainder;
      table_entry s_candidate = e->table[next_hash_s];
      table_entry_prev l_candidate = e->bptable[next_hash_l];
      uint64_t next = load6432(src, next_s);
      int32_t entry = s + e->cur;
      e->table[next_hash_s].offset = entry;
      push_long(&e->bptable[next_hash_l], entry);
      next_hash_s = hash_len(next, TABLE_BITS, hash_short_bytes);
      next_hash_l = hash7(next, TABLE_BITS);
      t = l_candidate.cur.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET) {
        if ((uint32_t)cv == load3232(src, l_candidate.cur.offset - e->cur)) {
          e->table[next_hash_s].offset = next_s + e->cur;
          push_long(&e->bptable[next_hash_l], next_s + e->cur);
          int32_t t2 = l_candidate.prev.offset - e->cur;
          if (s - t2 < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, l_candidate.prev.offset - e->cur)) {
            l = fe_matchlen(e, s + 4, t + 4, src) + 4;
            int32_t ml1 = fe_matchlen(e, s + 4, t2 + 4, src) + 4;
            if (ml1 > l) {
              t = t2;
              l = ml1;
              break;
            }
          }
          break;
        }
        t = l_candidate.prev.offset - e->cur;
        if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, l_candidate.prev.offset - e->cur)) {
          e->table[next_hash_s].offset = next_s + e->cur;
          push_long(&e->bptable[next_hash_l], next_s + e->cur);
          break;
        }
      }
      t = s_candidate.offset - e->cur;
      if (s - t < MAX_MATCH_OFFSET && (uint32_t)cv == load3232(src, s_candidate.offset - e->cur)) {
        l = fe_matchlen(e, s + 4, t + 4, src) + 4;
        l_candidate = e->bptable[next_hash_l];
        e->table[next_hash_s].offset = next_s + e->cur;
        push_long(&e->bptable[next_hash_l], next_s + e->cur);
        enum { rep_off = 1 };
        int32_t t2 = s - repeat + rep_off;
        if (load3232(src, t2) == (uint32_t)(cv >> (8 * rep_off))) {
          int32_t ml = fe_matchlen(e, s + 4 + rep_off, t2 + 4, src) + 4;
          if (ml > l) {
            t = t2;
            l = ml;
            s += rep_off;
            break;
          }
        }
        t2 = l_candidate.cur.offset - e->cur;
        if (next_s - t2 < MAX_MATCH_OFFSET) {
          if (load3232(src, l_candidate.cur.offset - e->cur) == (uint32_t)next) {
            int32_t ml = fe_matchlen(e, next_s + 4, t2 + 4, src) + 4;
            if (ml > l) {
              t = t2;
              s = next_s;
              l = ml;
            }
          }
          t2 = l_candidate.prev.offset - e->cur;
          if (next_s - t2 < MAX_MATCH_OFFSET && load3232(src, l_candidate.prev.offset - e->cur) == (uint32_t)next) {
            int32_t ml = fe_matchlen(e, next_s + 4, t2 + 4, src) + 4;
            if (ml > l) {
              t = t2;
              s = next_s;
              l = ml;
              break;
            }
          }
        }
        break;
      }
      cv = next;
    }
    if (l == 0) l = fe_matchlen_long(e, s + 4, t + 4, src) + 4;
    else if (l == MAX_MATCH_LENGTH) l += fe_matchlen_long(e, s + l, t + l, src);
    {
      int32_t s_at = s + l;
      if (s_at < s_limit) {
        enum { skip_beginning = 2 };
        table_entry_prev *e_long = &e->bptable[hash7(load6432(src, s_at), TABLE_BITS)];
        int32_t t2 = e_long->cur.offset - e->cur - l + skip_beginning;
        int32_t s2 = s + skip_beginning;
        int32_t off = s2 - t2;
        if (off < MAX_MATCH_OFFSET) {
          if (off > 0 && t2 >= 0) {
            int32_t l2 = fe_matchlen_long(e, s2, t2, src);
            if (l2 > l) {
              t = t2;
              l = l2;
              s = s2;
            }
          }
          t2 = e_long->prev.offset - e->cur - l + skip_beginning;
          off = s2 - t2;
          if (off > 0 && off < MAX_MATCH_OFFSET && t2 >= 0) {
            int32_t l2 = fe_matchlen_long(e, s2, t2, src);
            if (l2 > l) {
              t = t2;
              l = l2;
              s = s2;
            }
          }
        }
      }
    }
    while (t > 0 && s > next_emit && src[t - 1] == src[s - 1]) {
      s--;
      t--;
      l++;
    }
    if (next_emit < s) emit_literals(dst, src, next_emit, s);
    add_match_long(dst, l, (uint32_t)(s - t - BASE_MATCH_OFFSET));
    repeat = s - t;
    s += l;
    next_emit = s;
    if (next_s >= s) s = next_s + 1;
    if (s >= s_limit) {
      for (int32_t i = next_s + 1; i < src_len - 8; i += 2) {
        uint64_t cv2 = load6432(src, i);
        e->table[hash_len(cv2, TABLE_BITS, hash_short_bytes)].offset = i + e->cur;
        push_long(&e->bptable[hash7(cv2, TABLE_BITS)], i + e->cur);
      }
      goto emit_remainder;
    }
    for (int32_t i = next_s + 1; i < s - 1; i += 2) {
      uint64_t cv2 = load6432(src, i);
      int32_t t1 = i + e->cur;
      table_entry_prev *l1 = &e->bptable[hash7(cv2, TABLE_BITS)];
      table_entry_prev *l2 = &e->bptable[hash7(cv2 >> 8, TABLE_BITS)];
      e->table[hash_len(cv2, TABLE_BITS, hash_short_bytes)].offset = t1;
      push_long(l1, t1);
      push_long(l2, t1 + 1);
    }
    cv = load6432(src, s);
  }
emit_remainder:
  if (next_emit < src_len) {
    if (dst->n == 0) return;
    emit_literals(dst, src, next_emit, src_len);
  }
}

static void fe_encode(fast_enc *e, tokens_t *dst, const uint8_t *src, int32_t n) {
  switch (e->level) {
    case 1:
      encode_l1(e, dst, src, n);
      break;
    case 2:
      encode_l2(e, dst, src, n);
      break;
    case 3:
      encode_l3(e, dst, src, n);
      break;
    case 4:
      encode_l4(e, dst, src, n);
      break;
    case 5:
      encode_l5(e, dst, src, n);
      break;
    default:
      encode_l6(e, dst, src, n);
      break;
  }
}

/* ---- the compressor --------------------------------------------------------------------------------- */

typedef struct {
  int good, lazy, nice, chain, fast_skip_hashing, level;
} compression_level;
static const compression_level levels[10] = {
    {0, 0, 0, 0, 0, 0},
    {0, 0, 0, 0, 0, 1},
    {0, 0, 0, 0, 0, 2},
    {0, 0, 0, 0, 0, 3},
    {0, 0, 0, 0, 0, 4},
    {0, 0, 0, 0, 0, 5},
    {0, 0, 0, 0, 0, 6},
    {8, 12, 16, 24, SKIP_NEVER, 7},
    {16, 30, 40, 64, SKIP_NEVER, 8},
    {32, 258, 258, 1024, SKIP_NEVER, 9},
};

typedef struct {
  int length, offset, max_insert_index, chain_head, hash_offset;
  uint16_t ii;
  int index;
  uint32_t hash_match[MAX_MATCH_LENGTH + MIN_MATCH_LENGTH];
  uint32_t hash_head[HASH_SIZE];
  uint32_t hash_prev[WINDOW_SIZE];
} advanced_state;

enum { MODE_STORE, MODE_HUFF, MODE_FAST, MODE_DEFLATE };

struct kf_ctx {
  int level; /* as given, -1 kept */
  int mode;
  compression_level cl;
  hbw w;
  uint8_t *window;
  int window_cap; /* len(d.window) */
  int window_end;
  int block_start;
  tokens_t tokens;
  fast_enc fast;
  advanced_state *state;
  henc *h; /* level 9's literal estimate */
  bool sync;
  bool byte_available;
};

int kf_level_valid(int level) { return level >= -2 && level <= 9; }

void kf_ctx_free(kf_ctx *c) {
  if (!c) return;
  free(c->window);
  free(c->fast.hist);
  free(c->fast.table);
  free(c->fast.ptable);
  free(c->fast.btable);
  free(c->fast.bptable);
  free(c->state);
  free(c->h);
  free(c);
}

kf_ctx *kf_ctx_new(int level) {
  pthread_once(&tables_once, init_tables);
  if (!kf_level_valid(level)) return NULL;
  kf_ctx *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->level = level;
  c->w.literal_encoding = &c->w.lit_a;
  c->w.tmp_lit_encoding = &c->w.lit_b;
  int lv = level == -1 ? 5 : level;
  bool ok = true;
  if (lv == 0) {
    c->mode = MODE_STORE;
    c->window_cap = MAX_STORE_BLOCK_SIZE;
  } else if (lv == -2) {
    c->mode = MODE_HUFF;
    c->w.log_new_table_penalty = 10;
    c->window_cap = 32 << 10;
  } else if (lv <= 6) {
    c->mode = MODE_FAST;
    c->w.log_new_table_penalty = 7;
    c->window_cap = MAX_STORE_BLOCK_SIZE;
    fast_enc *e = &c->fast;
    e->level = lv;
    ok = (e->hist = malloc(ALLOC_HISTORY + 16)) != NULL;
    if (lv == 1 || lv == 4 || lv == 5 || lv == 6) ok = ok && (e->table = malloc(TABLE_SIZE * sizeof *e->table));
    if (lv == 2) ok = ok && (e->table = malloc(BTABLE_SIZE * sizeof *e->table));
    if (lv == 3) ok = ok && (e->ptable = malloc((1 << 16) * sizeof *e->ptable));
    if (lv == 4) ok = ok && (e->btable = malloc(TABLE_SIZE * sizeof *e->btable));
    if (lv == 5 || lv == 6) ok = ok && (e->bptable = malloc(TABLE_SIZE * sizeof *e->bptable));
  } else {
    c->mode = MODE_DEFLATE;
    c->w.log_new_table_penalty = 8;
    c->cl = levels[lv];
    c->window_cap = 2 * WINDOW_SIZE;
    ok = (c->state = malloc(sizeof *c->state)) != NULL;
    if (ok && c->cl.chain > 100) ok = (c->h = calloc(1, sizeof *c->h)) != NULL;
  }
  ok = ok && (c->window = calloc(1, (size_t)c->window_cap + 16)) != NULL;
  if (!ok) {
    kf_ctx_free(c);
    return NULL;
  }
  return c;
}

/* The state flate.NewWriterDict(level, nil) followed by ResetDict leaves, whatever this context compressed
 * before (Go's pool hands out used compressors; what they keep is out of reach of the next block). */
static void ctx_fresh(kf_ctx *c, kf_out *out) {
  hbw_reset(&c->w, out);
  c->sync = false;
  c->byte_available = false;
  c->window_end = 0;
  c->block_start = 0;
  c->tokens.n = 1; /* forces the clear */
  tokens_reset(&c->tokens);
  if (c->mode == MODE_FAST) {
    fast_enc *e = &c->fast;
    size_t nt = e->level == 2 ? BTABLE_SIZE : TABLE_SIZE;
    if (e->table) memset(e->table, 0, nt * sizeof *e->table);
    if (e->ptable) memset(e->ptable, 0, (1 << 16) * sizeof *e->ptable);
    if (e->btable) memset(e->btable, 0, TABLE_SIZE * sizeof *e->btable);
    if (e->bptable) memset(e->bptable, 0, TABLE_SIZE * sizeof *e->bptable);
    e->hist_len = 0;
    e->cur = MAX_STORE_BLOCK_SIZE; /* newFastEnc */
    fe_reset(e);                   /* ResetDict -> reset */
  } else if (c->mode == MODE_DEFLATE) {
    advanced_state *s = c->state;
    memset(s->hash_head, 0, sizeof s->hash_head);
    memset(s->hash_prev, 0, sizeof s->hash_prev);
    s->chain_head = -1;
    s->hash_offset = 1;
    s->index = 0;
    s->length = MIN_MATCH_LENGTH - 1;
    s->offset = 0;
    s->ii = 0;
    s->max_insert_index = 0;
  }
}

static inline uint32_t hash4(const uint8_t *b) { return (load3232(b, 0) * PRIME4) >> (32 - HASH_BITS); }
static void bulk_hash4(const uint8_t *b, int len, uint32_t *dst) {
  if (len < 4) return;
  uint32_t hb = load3232(b, 0);
  dst[0] = (hb * PRIME4) >> (32 - HASH_BITS);
  int end = len - 4 + 1;
  for (int i = 1; i < end; i++) {
    hb = (hb >> 8) | (uint32_t)b[i + 3] << 24;
    dst[i] = (hb * PRIME4) >> (32 - HASH_BITS);
  }
}

static void fill_window(kf_ctx *c, const uint8_t *b, size_t n) {
  if (c->mode == MODE_STORE || c->mode == MODE_HUFF) return;
  if (c->mode == MODE_FAST) {
    if (n > MAX_MATCH_OFFSET) {
      b += n - MAX_MATCH_OFFSET;
      n = MAX_MATCH_OFFSET;
    }
    fe_encode(&c->fast, &c->tokens, b, (int32_t)n);
    tokens_reset(&c->tokens);
    return;
  }
  advanced_state *s = c->state;
  if (n > WINDOW_SIZE) {
    b += n - WINDOW_SIZE;
    n = WINDOW_SIZE;
  }
  memcpy(c->window + c->window_end, b, n);
  int nn = (int)n;
  int loops = (nn + 256 - MIN_MATCH_LENGTH) / 256;
  for (int j = 0; j < loops; j++) {
    int startindex = j * 256;
    int end = startindex + 256 + MIN_MATCH_LENGTH - 1;
    if (end > nn) end = nn;
    int dst_size = end - startindex - MIN_MATCH_LENGTH + 1;
    if (dst_size <= 0) continue;
    bulk_hash4(c->window + startindex, end - startindex, s->hash_match);
    for (int i = 0; i < dst_size; i++) {
      int di = i + startindex;
      uint32_t new_h = s->hash_match[i] & HASH_MASK;
      s->hash_prev[di & WINDOW_MASK] = s->hash_head[new_h];
      s->hash_head[new_h] = (uint32_t)(di + s->hash_offset);
    }
  }
  c->window_end += nn;
  s->index = nn;
}

static void write_stored_block(kf_ctx *c, const uint8_t *buf, size_t n) {
  write_stored_header(&c->w, (int)n, false);
  hbw_write_bytes(&c->w, buf, n);
}

static void store_fast(kf_ctx *c) {
  if (c->window_end < c->window_cap) {
    if (!c->sync) return;
    if (c->window_end < 128) {
      if (c->window_end == 0) return;
      if (c->window_end <= 32) {
        write_stored_block(c, c->window, (size_t)c->window_end);
      } else {
        write_block_huff(&c->w, false, c->window, (size_t)c->window_end, true);
      }
      tokens_reset(&c->tokens);
      c->window_end = 0;
      fe_reset(&c->fast);
      return;
    }
  }
  fe_encode(&c->fast, &c->tokens, c->window, c->window_end);
  if (c->tokens.n == 0) {
    write_stored_block(c, c->window, (size_t)c->window_end);
  } else if ((int)c->tokens.n > c->window_end - (c->window_end >> 4)) {
    write_block_huff(&c->w, false, c->window, (size_t)c->window_end, c->sync);
  } else {
    write_block_dynamic(&c->w, &c->tokens, false, c->window, (size_t)c->window_end, c->sync);
  }
  tokens_reset(&c->tokens);
  c->window_end = 0;
}

static void store_plain(kf_ctx *c) {
  if (c->window_end > 0 && (c->window_end == MAX_STORE_BLOCK_SIZE || c->sync)) {
    write_stored_block(c, c->window, (size_t)c->window_end);
    c->window_end = 0;
  }
}

static void store_huff(kf_ctx *c) {
  if ((c->window_end < c->window_cap && !c->sync) || c->window_end == 0) return;
  write_block_huff(&c->w, false, c->window, (size_t)c->window_end, c->sync);
  c->window_end = 0;
}

/* compressor.writeBlock: the tokens so far, over window[blockStart:index] */
static void deflate_write_block(kf_ctx *c, int index, bool eof) {
  if (index > 0 || eof) {
    const uint8_t *window = NULL;
    size_t wlen = 0;
    if (c->block_start <= index) {
      window = c->window + c->block_start;
      wlen = (size_t)(index - c->block_start);
    }
    c->block_start = index;
    write_block_dynamic(&c->w, &c->tokens, eof, window, wlen, c->sync);
  }
}

static void find_match(kf_ctx *c, int pos, int prev_head, int lookahead, int *out_length, int *out_offset, bool *ok) {
  advanced_state *st = c->state;
  int min_match_look = MAX_MATCH_LENGTH;
  if (lookahead < min_match_look) min_match_look = lookahead;
  const uint8_t *win = c->window;
  int win_len = pos + min_match_look;
  int nice = win_len - pos;
  if (c->cl.nice < nice) nice = c->cl.nice;
  int tries = c->cl.chain;
  int length = MIN_MATCH_LENGTH - 1;
  uint8_t w_end = win[pos + length];
  const uint8_t *w_pos = win + pos;
  int min_index = pos - WINDOW_SIZE;
  if (min_index < 0) min_index = 0;
  int offset = 0;
  *ok = false;
  if (c->cl.chain < 100) {
    for (int i = prev_head; tries > 0; tries--) {
      if (w_end == win[i + length]) {
        int n = match_len(win + i, min_match_look, w_pos);
        if (n > length) {
          length = n;
          offset = pos - i;
          *ok = true;
          if (n >= nice) break;
          w_end = win[pos + n];
        }
      }
      if (i <= min_index) break;
      i = (int)st->hash_prev[i & WINDOW_MASK] - st->hash_offset;
      if (i < min_index) break;
    }
    *out_length = length;
    *out_offset = offset;
    return;
  }
  enum { base_cost = 6 };
  int c_gain = 0;
  for (int i = prev_head; tries > 0; tries--) {
    if (w_end == win[i + length]) {
      int n = match_len(win + i, min_match_look, w_pos);
      if (n > length) {
        int new_gain = henc_bit_length_raw(c->h, w_pos, (size_t)n) -
                       (int)offset_extra_bits[offset_code((uint32_t)(pos - i))] - base_cost -
                       (int)length_extra_bits[length_codes[(n - 3) & 255]];
        if (new_gain > c_gain) {
          length = n;
          offset = pos - i;
          c_gain = new_gain;
          *ok = true;
          if (n >= nice) break;
          w_end = win[pos + n];
        }
      }
    }
    if (i <= min_index) break;
    i = (int)st->hash_prev[i & WINDOW_MASK] - st->hash_offset;
    if (i < min_index) break;
  }
  *out_length = length;
  *out_offset = offset;
}

static void fill_deflate(kf_ctx *c, const uint8_t **b, size_t *n) {
  advanced_state *s = c->state;
  if (s->index >= 2 * WINDOW_SIZE - (MIN_MATCH_LENGTH + MAX_MATCH_LENGTH)) {
    memcpy(c->window, c->window + WINDOW_SIZE, WINDOW_SIZE);
    s->index -= WINDOW_SIZE;
    c->window_end -= WINDOW_SIZE;
    if (c->block_start >= WINDOW_SIZE) c->block_start -= WINDOW_SIZE;
    else c->block_start = INT32_MAX;
    s->hash_offset += WINDOW_SIZE;
    if (s->hash_offset > MAX_HASH_OFFSET) {
      int delta = s->hash_offset - 1;
      s->hash_offset -= delta;
      s->chain_head -= delta;
      for (int i = 0; i < WINDOW_SIZE; i++)
        s->hash_prev[i] = (int)s->hash_prev[i] > delta ? (uint32_t)((int)s->hash_prev[i] - delta) : 0;
      for (int i = 0; i < HASH_SIZE; i++)
        s->hash_head[i] = (int)s->hash_head[i] > delta ? (uint32_t)((int)s->hash_head[i] - delta) : 0;
    }
  }
  size_t room = (size_t)(c->window_cap - c->window_end);
  size_t k = *n < room ? *n : room;
  memcpy(c->window + c->window_end, *b, k);
  c->window_end += (int)k;
  *b += k;
  *n -= k;
}

static void deflate_lazy(kf_ctx *c) {
  advanced_state *s = c->state;
  tokens_t *tk = &c->tokens;
  if (c->window_end - s->index < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH && !c->sync) return;
  if (c->window_end != s->index && c->cl.chain > 100) {
    uint16_t tmp[256] = {0};
    for (int i = s->index; i < c->window_end; i++) tmp[c->window[i]]++;
    henc_generate(c->h, tmp, 256, 15);
  }
  s->max_insert_index = c->window_end - (MIN_MATCH_LENGTH - 1);
  for (;;) {
    int lookahead = c->window_end - s->index;
    if (lookahead < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH) {
      if (!c->sync) return;
      if (lookahead == 0) {
        if (c->byte_available) {
          add_literal(tk, c->window[s->index - 1]);
          c->byte_available = false;
        }
        if (tk->n > 0) {
          deflate_write_block(c, s->index, false);
          tokens_reset(tk);
        }
        return;
      }
    }
    if (s->index < s->max_insert_index) {
      uint32_t hash = hash4(c->window + s->index);
      uint32_t ch = s->hash_head[hash];
      s->chain_head = (int)ch;
      s->hash_prev[s->index & WINDOW_MASK] = ch;
      s->hash_head[hash] = (uint32_t)(s->index + s->hash_offset);
    }
    int prev_length = s->length;
    int prev_offset = s->offset;
    s->length = MIN_MATCH_LENGTH - 1;
    s->offset = 0;
    int min_index = s->index - WINDOW_SIZE;
    if (min_index < 0) min_index = 0;
    if (s->chain_head - s->hash_offset >= min_index && lookahead > prev_length && prev_length < c->cl.lazy) {
      int nl, no;
      bool ok;
      find_match(c, s->index, s->chain_head - s->hash_offset, lookahead, &nl, &no, &ok);
      if (ok) {
        s->length = nl;
        s->offset = no;
      }
    }
    if (prev_length >= MIN_MATCH_LENGTH && s->length <= prev_length) {
      enum { check_off = 2 };
      int prev_index = s->index - 1;
      if (prev_index + prev_length + check_off < s->max_insert_index) {
        int end = lookahead;
        if (lookahead > MAX_MATCH_LENGTH) end = MAX_MATCH_LENGTH;
        end += prev_index;
        int idx = prev_index + prev_length - (4 - check_off);
        uint32_t h = hash4(c->window + idx);
        int ch2 = (int)s->hash_head[h] - s->hash_offset - prev_length + (4 - check_off);
        if (ch2 > min_index) {
          int length = match_len(c->window + prev_index, end - prev_index, c->window + ch2);
          if (length > prev_length) {
            prev_length = length;
            prev_offset = prev_index - ch2;
          }
        }
      }
      add_match(tk, (uint32_t)(prev_length - 3), (uint32_t)(prev_offset - MIN_OFFSET_SIZE));
      int new_index = s->index + prev_length - 1;
      int end = new_index;
      if (end > s->max_insert_index) end = s->max_insert_index;
      end += MIN_MATCH_LENGTH - 1;
      int startindex = s->index + 1;
      if (startindex > s->max_insert_index) startindex = s->max_insert_index;
      int dst_size = end - startindex - MIN_MATCH_LENGTH + 1;
      if (dst_size > 0) {
        bulk_hash4(c->window + startindex, end - startindex, s->hash_match);
        for (int i = 0; i < dst_size; i++) {
          int di = i + startindex;
          uint32_t new_h = s->hash_match[i] & HASH_MASK;
          s->hash_prev[di & WINDOW_MASK] = s->hash_head[new_h];
          s->hash_head[new_h] = (uint32_t)(di + s->hash_offset);
        }
      }
      s->index = new_index;
      c->byte_available = false;
      s->length = MIN_MATCH_LENGTH - 1;
      if (tk->n == MAX_FLATE_BLOCK_TOKENS) {
        deflate_write_block(c, s->index, false);
        tokens_reset(tk);
      }
      s->ii = 0;
    } else {
      if (s->length >= MIN_MATCH_LENGTH) s->ii = 0;
      if (c->byte_available) {
        s->ii++;
        add_literal(tk, c->window[s->index - 1]);
        if (tk->n == MAX_FLATE_BLOCK_TOKENS) {
          deflate_write_block(c, s->index, false);
          tokens_reset(tk);
        }
        s->index++;
        int n = (int)s->ii - c->cl.chain;
        if (n > 0) {
          n = 1 + (n >> 6);
          for (int j = 0; j < n; j++) {
            if (s->index >= c->window_end - 1) break;
            add_literal(tk, c->window[s->index - 1]);
            if (tk->n == MAX_FLATE_BLOCK_TOKENS) {
              deflate_write_block(c, s->index, false);
              tokens_reset(tk);
            }
            if (s->index < s->max_insert_index) {
              uint32_t h = hash4(c->window + s->index);
              uint32_t ch = s->hash_head[h];
              s->chain_head = (int)ch;
              s->hash_prev[s->index & WINDOW_MASK] = ch;
              s->hash_head[h] = (uint32_t)(s->index + s->hash_offset);
            }
            s->index++;
          }
          add_literal(tk, c->window[s->index - 1]);
          c->byte_available = false;
          if (tk->n == MAX_FLATE_BLOCK_TOKENS) {
            deflate_write_block(c, s->index, false);
            tokens_reset(tk);
          }
        }
      } else {
        s->index++;
        c->byte_available = true;
      }
    }
  }
}

static void step(kf_ctx *c) {
  switch (c->mode) {
    case MODE_STORE:
      store_plain(c);
      break;
    case MODE_HUFF:
      store_huff(c);
      break;
    case MODE_FAST:
      store_fast(c);
      break;
    default:
      deflate_lazy(c);
      break;
  }
}

static void compressor_write(kf_ctx *c, const uint8_t *b, size_t n) {
  while (n > 0) {
    if (c->window_end == c->window_cap || c->sync) step(c);
    if (c->mode == MODE_DEFLATE) {
      fill_deflate(c, &b, &n);
    } else {
      size_t room = (size_t)(c->window_cap - c->window_end);
      size_t k = n < room ? n : room;
      memcpy(c->window + c->window_end, b, k);
      c->window_end += (int)k;
      b += k;
      n -= k;
    }
  }
}

static void sync_flush(kf_ctx *c) {
  c->sync = true;
  step(c);
  write_stored_header(&c->w, 0, false);
  hbw_flush(&c->w);
  c->sync = false;
}

static void compressor_close(kf_ctx *c) {
  c->sync = true;
  step(c);
  write_stored_header(&c->w, 0, true);
  hbw_flush(&c->w);
}

int kf_block(kf_ctx *c, const uint8_t *dict, size_t dict_len, const uint8_t *in, size_t n, int last, kf_out *out) {
  ctx_fresh(c, out);
  if (dict && dict_len) fill_window(c, dict, dict_len);
  compressor_write(c, in, n);
  sync_flush(c);
  if (last) compressor_close(c);
  return out->oom ? -1 : 0;
}

void kf_out_free(kf_out *out) {
  free(out->data);
  out->data = NULL;
  out->len = out->cap = 0;
}
