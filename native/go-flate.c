/* Go 1.19 compress/flate, ported to C for byte-exact output (see go-flate.h). The structure, names and
 * every decision follow the Go sources so that a reader can check one against the other; the only
 * liberties are ones that cannot change a bit of output (docs/go-flate.md): the bit writer appends to
 * one growable buffer instead of a 248-byte one, the hash tables hold 16-bit window positions (slid
 * with the window) instead of 32-bit stream positions, a chain candidate is measured only when the 4
 * bytes ending at the best length so far match (Go checks the last one), match lengths are compared 8
 * bytes at a time, and sorts use qsort (both of Go's orders are total: frequency then literal, and
 * literal). Beyond Go: writes need not be followed, and restart points (go-flate.h). */
#include "go-flate.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* deflate.go */
#define NO_COMPRESSION 0
#define BEST_SPEED 1
#define HUFFMAN_ONLY (-2)
#define DEFAULT_COMPRESSION (-1)
#define WINDOW_SIZE (1 << 15)
#define WINDOW_MASK (WINDOW_SIZE - 1)
#define BASE_MATCH_LENGTH 3
#define MIN_MATCH_LENGTH 4
#define MAX_MATCH_LENGTH 258
#define BASE_MATCH_OFFSET 1
#define MAX_MATCH_OFFSET (1 << 15)
#define MAX_FLATE_BLOCK_TOKENS (1 << 14)
#define MAX_STORE_BLOCK_SIZE 65535
#define HASH_BITS 17
#define HASH_SIZE (1 << HASH_BITS)
#define HASH_MASK ((1 << HASH_BITS) - 1)
#define SKIP_NEVER INT32_MAX
#define HASHMUL 0x1e35a7bdu

/* token.go */
#define LENGTH_SHIFT 22
#define OFFSET_MASK ((1u << LENGTH_SHIFT) - 1)
#define MATCH_TYPE (1u << 30)

/* huffman_bit_writer.go, huffman_code.go */
#define MAX_NUM_LIT 286
#define OFFSET_CODE_COUNT 30
#define END_BLOCK_MARKER 256
#define LENGTH_CODES_START 257
#define CODEGEN_CODE_COUNT 19
#define BAD_CODE 255
#define MAX_BITS_LIMIT 16

/* deflatefast.go */
#define TABLE_BITS 14
#define TABLE_SIZE (1 << TABLE_BITS)
#define TABLE_MASK (TABLE_SIZE - 1)
#define TABLE_SHIFT (32 - TABLE_BITS)
#define BUFFER_RESET (INT32_MAX - MAX_STORE_BLOCK_SIZE * 2)
#define INPUT_MARGIN (16 - 1)
#define MIN_NON_LITERAL_BLOCK_SIZE (1 + 1 + INPUT_MARGIN)

/* The most one block can add to the output: 16384 tokens of at most 48 bits, or 65535 literals of at
 * most 15 bits, or a stored block, plus a dynamic header. Reserved before each block. */
#define BLOCK_OUTPUT_MAX (160 * 1024)

typedef uint32_t token;

static const uint8_t length_codes[256] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  8,  9,  9,  10, 10, 11, 11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14,
    14, 14, 15, 15, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17, 18, 18, 18, 18,
    18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20,
    20, 20, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 21, 22, 22, 22, 22, 22, 22, 22, 22,
    22, 22, 22, 22, 22, 22, 22, 22, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 23, 24, 24,
    24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24,
    24, 24, 24, 24, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 25,
    25, 25, 25, 25, 25, 25, 25, 25, 25, 25, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26,
    26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27,
    27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 28,
};

static const uint8_t offset_codes[256] = {
    0,  1,  2,  3,  4,  4,  5,  5,  6,  6,  6,  6,  7,  7,  7,  7,  8,  8,  8,  8,  8,  8,  8,  8,  9,  9,
    9,  9,  9,  9,  9,  9,  10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
};

static const int8_t length_extra_bits[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                             2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint32_t length_base[29] = {0,  1,  2,  3,  4,  5,  6,   7,   8,   10,  12,  14,  16,  20, 24,
                                         28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255};
static const int8_t offset_extra_bits[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                             6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint32_t offset_base[30] = {0x000000, 0x000001, 0x000002, 0x000003, 0x000004, 0x000006, 0x000008, 0x00000c,
                                         0x000010, 0x000018, 0x000020, 0x000030, 0x000040, 0x000060, 0x000080, 0x0000c0,
                                         0x000100, 0x000180, 0x000200, 0x000300, 0x000400, 0x000600, 0x000800, 0x000c00,
                                         0x001000, 0x001800, 0x002000, 0x003000, 0x004000, 0x006000};
static const uint32_t codegen_order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

static inline token literal_token(uint32_t lit) { return lit; }
static inline token match_token(uint32_t xlength, uint32_t xoffset) {
  return MATCH_TYPE + (xlength << LENGTH_SHIFT) + xoffset;
}
static inline uint32_t token_length(token t) { return (t - MATCH_TYPE) >> LENGTH_SHIFT; }
static inline uint32_t token_offset(token t) { return t & OFFSET_MASK; }
static inline uint32_t offset_code(uint32_t off) {
  if (off < 256) return offset_codes[off];
  if (off >> 7 < 256) return offset_codes[off >> 7] + 14u;
  return offset_codes[off >> 14] + 28u;
}

/* ---- huffman_code.go ---- */

typedef struct {
  uint16_t code, len;
} hcode;

typedef struct {
  uint16_t literal;
  int32_t freq;
} literal_node;

typedef struct {
  int32_t level, last_freq, next_char_freq, next_pair_freq, needed;
} level_info;

typedef struct {
  hcode codes[MAX_NUM_LIT];
  literal_node freqcache[MAX_NUM_LIT + 1];
  int32_t bit_count[17];
} huffman_encoder;

static uint16_t reverse_bits(uint16_t number, unsigned bit_length) {
  uint16_t v = (uint16_t)(number << (16 - bit_length)), r = 0;
  for (int i = 0; i < 16; i++) r = (uint16_t)((r << 1) | ((v >> i) & 1));
  return r;
}

static void fixed_literal_encoding(huffman_encoder *h) {
  for (uint16_t ch = 0; ch < MAX_NUM_LIT; ch++) {
    uint16_t bits, size;
    if (ch < 144) {
      bits = ch + 48;
      size = 8;
    } else if (ch < 256) {
      bits = ch + 400 - 144;
      size = 9;
    } else if (ch < 280) {
      bits = ch - 256;
      size = 7;
    } else {
      bits = ch + 192 - 280;
      size = 8;
    }
    h->codes[ch] = (hcode){reverse_bits(bits, size), size};
  }
}

static void fixed_offset_encoding(huffman_encoder *h) {
  for (uint16_t ch = 0; ch < 30; ch++) h->codes[ch] = (hcode){reverse_bits(ch, 5), 5};
}

static int bit_length(const huffman_encoder *h, const int32_t *freq, int n) {
  int total = 0;
  for (int i = 0; i < n; i++)
    if (freq[i] != 0) total += (int)freq[i] * (int)h->codes[i].len;
  return total;
}

static int by_freq(const void *a, const void *b) {
  const literal_node *x = a, *y = b;
  if (x->freq == y->freq) return (int)x->literal - (int)y->literal;
  return x->freq < y->freq ? -1 : 1;
}

static int by_literal(const void *a, const void *b) {
  return (int)((const literal_node *)a)->literal - (int)((const literal_node *)b)->literal;
}

/* The number of literals assigned to each bit size in the Huffman encoding (package-merge, as Go
 * does it); returns the (possibly lowered) maxBits, the counts being h->bit_count[0..maxBits]. */
static int32_t bit_counts(huffman_encoder *h, literal_node *list, int32_t n, int32_t max_bits) {
  list[n] = (literal_node){UINT16_MAX, INT32_MAX};
  if (max_bits > n - 1) max_bits = n - 1;
  level_info levels[MAX_BITS_LIMIT + 1];
  int32_t leaf_counts[MAX_BITS_LIMIT][MAX_BITS_LIMIT];
  memset(levels, 0, sizeof levels);
  memset(leaf_counts, 0, sizeof leaf_counts);
  for (int32_t level = 1; level <= max_bits; level++) {
    levels[level] = (level_info){level, list[1].freq, list[2].freq, list[0].freq + list[1].freq, 0};
    leaf_counts[level][level] = 2;
    if (level == 1) levels[level].next_pair_freq = INT32_MAX;
  }
  levels[max_bits].needed = 2 * n - 4;
  int32_t level = max_bits;
  for (;;) {
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
      l->next_char_freq = list[nn].freq;
    } else {
      l->last_freq = l->next_pair_freq;
      memcpy(leaf_counts[level], leaf_counts[level - 1], (size_t)level * sizeof(int32_t));
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
  int bits = 1;
  int32_t *counts = leaf_counts[max_bits];
  for (int32_t lv = max_bits; lv > 0; lv--) {
    h->bit_count[bits] = counts[lv] - counts[lv - 1];
    bits++;
  }
  return max_bits;
}

static void assign_encoding_and_size(huffman_encoder *h, int32_t max_bits, literal_node *list, int32_t len) {
  uint16_t code = 0;
  for (int32_t n = 0; n <= max_bits; n++) {
    int32_t bits = h->bit_count[n];
    code <<= 1;
    if (n == 0 || bits == 0) continue;
    literal_node *chunk = list + len - bits;
    qsort(chunk, (size_t)bits, sizeof *chunk, by_literal);
    for (int32_t i = 0; i < bits; i++) {
      h->codes[chunk[i].literal] = (hcode){reverse_bits(code, (unsigned)n), (uint16_t)n};
      code++;
    }
    len -= bits;
  }
}

static void generate(huffman_encoder *h, const int32_t *freq, int nfreq, int32_t max_bits) {
  literal_node *list = h->freqcache;
  int32_t count = 0;
  for (int i = 0; i < nfreq; i++) {
    if (freq[i] != 0)
      list[count++] = (literal_node){(uint16_t)i, freq[i]};
    else
      h->codes[i].len = 0;
  }
  if (count <= 2) {
    for (int32_t i = 0; i < count; i++) h->codes[list[i].literal] = (hcode){(uint16_t)i, 1};
    return;
  }
  qsort(list, (size_t)count, sizeof *list, by_freq);
  int32_t mb = bit_counts(h, list, count, max_bits);
  assign_encoding_and_size(h, mb, list, count);
}

/* Encodings every encoder shares, made once. */
static huffman_encoder fixed_literal, fixed_offset, huff_offset;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void make_tables(void) {
  fixed_literal_encoding(&fixed_literal);
  fixed_offset_encoding(&fixed_offset);
  int32_t offset_freq[OFFSET_CODE_COUNT] = {1};
  generate(&huff_offset, offset_freq, OFFSET_CODE_COUNT, 15);
}

/* ---- huffman_bit_writer.go ---- */

typedef struct {
  uint64_t bits;
  unsigned nbits;
  uint8_t *out; /* output not yet taken */
  size_t out_len, out_cap;
  bool oom;
  int32_t codegen_freq[CODEGEN_CODE_COUNT];
  int32_t literal_freq[MAX_NUM_LIT];
  int32_t offset_freq[OFFSET_CODE_COUNT];
  uint8_t codegen[MAX_NUM_LIT + OFFSET_CODE_COUNT + 1];
  huffman_encoder literal_encoding, offset_encoding, codegen_encoding;
} bit_writer;

/* Room for `more` bytes (and 8 of slack for the 8-byte stores below). */
static bool reserve(bit_writer *w, size_t more) {
  if (w->oom) return false;
  size_t want = w->out_len + more + 8;
  if (want <= w->out_cap) return true;
  size_t cap = w->out_cap ? w->out_cap : 1 << 16;
  while (cap < want) cap *= 2;
  uint8_t *grown = realloc(w->out, cap);
  if (!grown) {
    w->oom = true;
    return false;
  }
  w->out = grown;
  w->out_cap = cap;
  return true;
}

/* 48 bits out at once, as Go does (the bytes are the same whichever way they are grouped). */
static inline void emit48(bit_writer *w) {
  uint64_t bits = w->bits;
  w->bits >>= 48;
  w->nbits -= 48;
  memcpy(w->out + w->out_len, &bits, 8); /* little-endian hosts only (x86-64, arm64) */
  w->out_len += 6;
}

static inline void write_bits(bit_writer *w, int32_t b, unsigned nb) {
  w->bits |= (uint64_t)(uint32_t)b << w->nbits;
  w->nbits += nb;
  if (w->nbits >= 48) emit48(w);
}

static inline void write_code(bit_writer *w, hcode c) {
  w->bits |= (uint64_t)c.code << w->nbits;
  w->nbits += c.len;
  if (w->nbits >= 48) emit48(w);
}

static void bw_flush(bit_writer *w) {
  while (w->nbits != 0) {
    w->out[w->out_len++] = (uint8_t)w->bits;
    w->bits >>= 8;
    if (w->nbits > 8)
      w->nbits -= 8;
    else
      w->nbits = 0;
  }
  w->bits = 0;
}

/* Only after a stored header, so the bits end on a byte. */
static void write_bytes(bit_writer *w, const uint8_t *bytes, size_t n) {
  while (w->nbits != 0) {
    w->out[w->out_len++] = (uint8_t)w->bits;
    w->bits >>= 8;
    w->nbits -= 8;
  }
  memcpy(w->out + w->out_len, bytes, n);
  w->out_len += n;
}

static void generate_codegen(bit_writer *w, int num_literals, int num_offsets, const huffman_encoder *lit_enc,
                             const huffman_encoder *off_enc) {
  memset(w->codegen_freq, 0, sizeof w->codegen_freq);
  uint8_t *codegen = w->codegen;
  for (int i = 0; i < num_literals; i++) codegen[i] = (uint8_t)lit_enc->codes[i].len;
  for (int i = 0; i < num_offsets; i++) codegen[num_literals + i] = (uint8_t)off_enc->codes[i].len;
  codegen[num_literals + num_offsets] = BAD_CODE;
  uint8_t size = codegen[0];
  int count = 1, out_index = 0;
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

static int dynamic_size(bit_writer *w, const huffman_encoder *lit_enc, const huffman_encoder *off_enc, int extra_bits,
                        int *num_codegens) {
  int nc = CODEGEN_CODE_COUNT;
  while (nc > 4 && w->codegen_freq[codegen_order[nc - 1]] == 0) nc--;
  int header = 3 + 5 + 5 + 4 + (3 * nc) + bit_length(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT) +
               (int)w->codegen_freq[16] * 2 + (int)w->codegen_freq[17] * 3 + (int)w->codegen_freq[18] * 7;
  *num_codegens = nc;
  return header + bit_length(lit_enc, w->literal_freq, MAX_NUM_LIT) +
         bit_length(off_enc, w->offset_freq, OFFSET_CODE_COUNT) + extra_bits;
}

static int fixed_size(bit_writer *w, int extra_bits) {
  return 3 + bit_length(&fixed_literal, w->literal_freq, MAX_NUM_LIT) +
         bit_length(&fixed_offset, w->offset_freq, OFFSET_CODE_COUNT) + extra_bits;
}

/* Go's storedSize: `in` NULL stands for Go's nil slice (no stored block possible). */
static bool stored_size(const uint8_t *in, size_t len, int *size) {
  if (!in) return false;
  if (len <= MAX_STORE_BLOCK_SIZE) {
    *size = (int)(len + 5) * 8;
    return true;
  }
  return false;
}

static void write_dynamic_header(bit_writer *w, int num_literals, int num_offsets, int num_codegens, bool is_eof) {
  write_bits(w, is_eof ? 5 : 4, 3);
  write_bits(w, num_literals - 257, 5);
  write_bits(w, num_offsets - 1, 5);
  write_bits(w, num_codegens - 4, 4);
  for (int i = 0; i < num_codegens; i++) write_bits(w, w->codegen_encoding.codes[codegen_order[i]].len, 3);
  for (int i = 0;;) {
    int code_word = w->codegen[i++];
    if (code_word == BAD_CODE) break;
    write_code(w, w->codegen_encoding.codes[code_word]);
    switch (code_word) {
      case 16: write_bits(w, w->codegen[i++], 2); break;
      case 17: write_bits(w, w->codegen[i++], 3); break;
      case 18: write_bits(w, w->codegen[i++], 7); break;
    }
  }
}

static void write_stored_header(bit_writer *w, int length, bool is_eof) {
  write_bits(w, is_eof ? 1 : 0, 3);
  bw_flush(w);
  write_bits(w, length, 16);
  write_bits(w, (uint16_t)~(uint16_t)length, 16);
}

static void write_fixed_header(bit_writer *w, bool is_eof) { write_bits(w, is_eof ? 3 : 2, 3); }

static void index_tokens(bit_writer *w, const token *tokens, size_t n, int *num_literals, int *num_offsets) {
  memset(w->literal_freq, 0, sizeof w->literal_freq);
  memset(w->offset_freq, 0, sizeof w->offset_freq);
  for (size_t i = 0; i < n; i++) {
    token t = tokens[i];
    if (t < MATCH_TYPE) {
      w->literal_freq[t]++;
      continue;
    }
    w->literal_freq[LENGTH_CODES_START + length_codes[token_length(t)]]++;
    w->offset_freq[offset_code(token_offset(t))]++;
  }
  int nl = MAX_NUM_LIT;
  while (w->literal_freq[nl - 1] == 0) nl--;
  int no = OFFSET_CODE_COUNT;
  while (no > 0 && w->offset_freq[no - 1] == 0) no--;
  if (no == 0) {
    w->offset_freq[0] = 1;
    no = 1;
  }
  generate(&w->literal_encoding, w->literal_freq, MAX_NUM_LIT, 15);
  generate(&w->offset_encoding, w->offset_freq, OFFSET_CODE_COUNT, 15);
  *num_literals = nl;
  *num_offsets = no;
}

static void write_tokens(bit_writer *w, const token *tokens, size_t n, const hcode *le_codes, const hcode *oe_codes) {
  /* The bit accumulator lives in registers through the loop. */
  uint64_t bits = w->bits;
  unsigned nbits = w->nbits;
  uint8_t *out = w->out + w->out_len;
#define PUT(code, len)                   \
  do {                                   \
    bits |= (uint64_t)(code) << nbits;   \
    nbits += (len);                      \
    if (nbits >= 48) {                   \
      memcpy(out, &bits, 8);             \
      out += 6;                          \
      bits >>= 48;                       \
      nbits -= 48;                       \
    }                                    \
  } while (0)
  for (size_t i = 0; i < n; i++) {
    token t = tokens[i];
    if (t < MATCH_TYPE) {
      PUT(le_codes[t].code, le_codes[t].len);
      continue;
    }
    uint32_t length = token_length(t);
    uint32_t lc = length_codes[length];
    PUT(le_codes[lc + LENGTH_CODES_START].code, le_codes[lc + LENGTH_CODES_START].len);
    unsigned extra_length_bits = (unsigned)length_extra_bits[lc];
    if (extra_length_bits > 0) PUT(length - length_base[lc], extra_length_bits);
    uint32_t offset = token_offset(t);
    uint32_t oc = offset_code(offset);
    PUT(oe_codes[oc].code, oe_codes[oc].len);
    unsigned extra_offset_bits = (unsigned)offset_extra_bits[oc];
    if (extra_offset_bits > 0) PUT(offset - offset_base[oc], extra_offset_bits);
  }
#undef PUT
  w->bits = bits;
  w->nbits = nbits;
  w->out_len = (size_t)(out - w->out);
}

/* tokens has room for one more (the end-of-block marker, as Go's append). `input` NULL: Go's nil. */
static void write_block(bit_writer *w, token *tokens, size_t n, bool eof, const uint8_t *input, size_t input_len) {
  if (!reserve(w, BLOCK_OUTPUT_MAX)) return;
  tokens[n++] = END_BLOCK_MARKER;
  int num_literals, num_offsets;
  index_tokens(w, tokens, n, &num_literals, &num_offsets);
  int extra_bits = 0, stored = 0;
  bool storable = stored_size(input, input_len, &stored);
  if (storable) {
    for (int lc = LENGTH_CODES_START + 8; lc < num_literals; lc++)
      extra_bits += (int)w->literal_freq[lc] * (int)length_extra_bits[lc - LENGTH_CODES_START];
    for (int oc = 4; oc < num_offsets; oc++) extra_bits += (int)w->offset_freq[oc] * (int)offset_extra_bits[oc];
  }
  const huffman_encoder *literal_encoding = &fixed_literal, *offset_encoding = &fixed_offset;
  int size = fixed_size(w, extra_bits), num_codegens;
  generate_codegen(w, num_literals, num_offsets, &w->literal_encoding, &w->offset_encoding);
  generate(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT, 7);
  int dyn = dynamic_size(w, &w->literal_encoding, &w->offset_encoding, extra_bits, &num_codegens);
  if (dyn < size) {
    size = dyn;
    literal_encoding = &w->literal_encoding;
    offset_encoding = &w->offset_encoding;
  }
  if (storable && stored < size) {
    write_stored_header(w, (int)input_len, eof);
    write_bytes(w, input, input_len);
    return;
  }
  if (literal_encoding == &fixed_literal)
    write_fixed_header(w, eof);
  else
    write_dynamic_header(w, num_literals, num_offsets, num_codegens, eof);
  write_tokens(w, tokens, n, literal_encoding->codes, offset_encoding->codes);
}

static void write_block_dynamic(bit_writer *w, token *tokens, size_t n, bool eof, const uint8_t *input,
                                size_t input_len) {
  if (!reserve(w, BLOCK_OUTPUT_MAX)) return;
  tokens[n++] = END_BLOCK_MARKER;
  int num_literals, num_offsets, num_codegens, ssize;
  index_tokens(w, tokens, n, &num_literals, &num_offsets);
  generate_codegen(w, num_literals, num_offsets, &w->literal_encoding, &w->offset_encoding);
  generate(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT, 7);
  int size = dynamic_size(w, &w->literal_encoding, &w->offset_encoding, 0, &num_codegens);
  if (stored_size(input, input_len, &ssize) && ssize < (size + (size >> 4))) {
    write_stored_header(w, (int)input_len, eof);
    write_bytes(w, input, input_len);
    return;
  }
  write_dynamic_header(w, num_literals, num_offsets, num_codegens, eof);
  write_tokens(w, tokens, n, w->literal_encoding.codes, w->offset_encoding.codes);
}

static void write_block_huff(bit_writer *w, bool eof, const uint8_t *input, size_t len) {
  if (!reserve(w, BLOCK_OUTPUT_MAX)) return;
  memset(w->literal_freq, 0, sizeof w->literal_freq);
  for (size_t i = 0; i < len; i++) w->literal_freq[input[i]]++;
  w->literal_freq[END_BLOCK_MARKER] = 1;
  const int num_literals = END_BLOCK_MARKER + 1, num_offsets = 1;
  w->offset_freq[0] = 1;
  generate(&w->literal_encoding, w->literal_freq, MAX_NUM_LIT, 15);
  int num_codegens, ssize;
  generate_codegen(w, num_literals, num_offsets, &w->literal_encoding, &huff_offset);
  generate(&w->codegen_encoding, w->codegen_freq, CODEGEN_CODE_COUNT, 7);
  int size = dynamic_size(w, &w->literal_encoding, &huff_offset, 0, &num_codegens);
  if (stored_size(input, len, &ssize) && ssize < (size + (size >> 4))) {
    write_stored_header(w, (int)len, eof);
    write_bytes(w, input, len);
    return;
  }
  write_dynamic_header(w, num_literals, num_offsets, num_codegens, eof);
  const hcode *encoding = w->literal_encoding.codes;
  uint64_t bits = w->bits;
  unsigned nbits = w->nbits;
  uint8_t *out = w->out + w->out_len;
  for (size_t i = 0; i < len; i++) {
    hcode c = encoding[input[i]];
    bits |= (uint64_t)c.code << nbits;
    nbits += c.len;
    if (nbits < 48) continue;
    memcpy(out, &bits, 8);
    out += 6;
    bits >>= 48;
    nbits -= 48;
  }
  w->bits = bits;
  w->nbits = nbits;
  w->out_len = (size_t)(out - w->out);
  write_code(w, encoding[END_BLOCK_MARKER]);
}

/* ---- deflatefast.go ---- */

typedef struct {
  uint32_t val;
  int32_t offset;
} table_entry;

typedef struct {
  table_entry table[TABLE_SIZE];
  uint8_t prev[MAX_STORE_BLOCK_SIZE];
  int32_t prev_len;
  int32_t cur;
} deflate_fast;

static inline uint32_t load32(const uint8_t *b, int32_t i) {
  uint32_t v;
  memcpy(&v, b + i, 4);
  return v;
}
static inline uint64_t load64(const uint8_t *b, int32_t i) {
  uint64_t v;
  memcpy(&v, b + i, 8);
  return v;
}
static inline uint32_t fast_hash(uint32_t u) { return (u * HASHMUL) >> TABLE_SHIFT; }

static void shift_offsets(deflate_fast *e) {
  if (e->prev_len == 0) {
    memset(e->table, 0, sizeof e->table);
    e->cur = MAX_MATCH_OFFSET + 1;
    return;
  }
  for (int i = 0; i < TABLE_SIZE; i++) {
    int32_t v = e->table[i].offset - e->cur + MAX_MATCH_OFFSET + 1;
    if (v < 0) v = 0;
    e->table[i].offset = v;
  }
  e->cur = MAX_MATCH_OFFSET + 1;
}

static void fast_reset(deflate_fast *e) {
  e->prev_len = 0;
  e->cur += MAX_MATCH_OFFSET;
  if (e->cur >= BUFFER_RESET) shift_offsets(e);
}

static inline size_t common_prefix(const uint8_t *a, const uint8_t *b, size_t max);

static int32_t fast_match_len(const deflate_fast *e, int32_t s, int32_t t, const uint8_t *src, int32_t src_len) {
  int32_t s1 = s + MAX_MATCH_LENGTH - 4;
  if (s1 > src_len) s1 = src_len;
  if (t >= 0) return (int32_t)common_prefix(src + s, src + t, (size_t)(s1 - s));
  int32_t tp = e->prev_len + t;
  if (tp < 0) return 0;
  int32_t alen = s1 - s, blen = e->prev_len - tp;
  if (blen > alen) blen = alen;
  int32_t n = (int32_t)common_prefix(src + s, e->prev + tp, (size_t)blen);
  if (n < blen) return n;
  if (s + n == s1) return n;
  return n + (int32_t)common_prefix(src + s + n, src, (size_t)(s1 - s - n));
}

/* Appends the tokens for src to dst (room for src_len + 1 tokens); returns how many it wrote. */
static size_t fast_encode(deflate_fast *e, token *dst, const uint8_t *src, int32_t src_len) {
  size_t nd = 0;
  if (e->cur >= BUFFER_RESET) shift_offsets(e);
  if (src_len < MIN_NON_LITERAL_BLOCK_SIZE) {
    e->cur += MAX_STORE_BLOCK_SIZE;
    e->prev_len = 0;
    for (int32_t i = 0; i < src_len; i++) dst[nd++] = literal_token(src[i]);
    return nd;
  }
  int32_t s_limit = src_len - INPUT_MARGIN;
  int32_t next_emit = 0, s = 0;
  uint32_t cv = load32(src, s);
  uint32_t next_hash = fast_hash(cv);
  for (;;) {
    int32_t skip = 32, next_s = s;
    table_entry candidate;
    for (;;) {
      s = next_s;
      int32_t bytes_between = skip >> 5;
      next_s = s + bytes_between;
      skip += bytes_between;
      if (next_s > s_limit) goto emit_remainder;
      candidate = e->table[next_hash & TABLE_MASK];
      uint32_t now = load32(src, next_s);
      e->table[next_hash & TABLE_MASK] = (table_entry){cv, s + e->cur};
      next_hash = fast_hash(now);
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset > MAX_MATCH_OFFSET || cv != candidate.val) {
        cv = now;
        continue;
      }
      break;
    }
    for (int32_t i = next_emit; i < s; i++) dst[nd++] = literal_token(src[i]);
    for (;;) {
      s += 4;
      int32_t t = candidate.offset - e->cur + 4;
      int32_t l = fast_match_len(e, s, t, src, src_len);
      dst[nd++] = match_token((uint32_t)(l + 4 - BASE_MATCH_LENGTH), (uint32_t)(s - t - BASE_MATCH_OFFSET));
      s += l;
      next_emit = s;
      if (s >= s_limit) goto emit_remainder;
      uint64_t x = load64(src, s - 1);
      uint32_t prev_hash = fast_hash((uint32_t)x);
      e->table[prev_hash & TABLE_MASK] = (table_entry){(uint32_t)x, e->cur + s - 1};
      x >>= 8;
      uint32_t curr_hash = fast_hash((uint32_t)x);
      candidate = e->table[curr_hash & TABLE_MASK];
      e->table[curr_hash & TABLE_MASK] = (table_entry){(uint32_t)x, e->cur + s};
      int32_t offset = s - (candidate.offset - e->cur);
      if (offset > MAX_MATCH_OFFSET || (uint32_t)x != candidate.val) {
        cv = (uint32_t)(x >> 8);
        next_hash = fast_hash(cv);
        s++;
        break;
      }
    }
  }
emit_remainder:
  for (int32_t i = next_emit; i < src_len; i++) dst[nd++] = literal_token(src[i]);
  e->cur += src_len;
  e->prev_len = src_len;
  memcpy(e->prev, src, (size_t)src_len);
  return nd;
}

/* ---- deflate.go ---- */

typedef enum { STEP_STORE, STEP_STORE_HUFF, STEP_SPEED, STEP_DEFLATE } step_kind;

struct goflate {
  int level, good, lazy, nice, chain, fast_skip_hashing;
  step_kind kind;
  bit_writer w;
  bool sync;
  deflate_fast *best_speed;

  int chain_head;
  int hash_offset;
  int index;
  uint8_t *window;
  int window_len; /* len(d.window) */
  int window_end;
  int block_start;
  bool byte_available;

  token *tokens;
  size_t ntokens;

  int length, offset, max_insert_index;
  /* Positions + 1 in the window (0: none), where Go keeps stream positions + hashOffset in uint32s:
   * tables half the size stay in cache better, and a slide subtracts 32768 from each entry (zeroing
   * those that slid out) instead. The two forms answer every bounds check in findMatch and deflate()
   * alike: an entry that slid out reads as "none" here and as a negative index in Go, and Go's rebase
   * of hashOffset every 16 MiB changes no decision. So hash_offset is 1 throughout. */
  uint16_t *hash_head; /* [HASH_SIZE] */
  uint16_t *hash_prev; /* [WINDOW_SIZE] */

  /* Not Go's: how writes reach the window, and the restart points (see go-flate.h). */
  bool follow_writes;
  bool record_restarts, restart_due, rebuild_hash;
  uint64_t base;        /* stream offset of window[0] */
  uint64_t taken_bits;  /* output bits handed out before w.out, plus a resumed encoder's start */
  goflate_restart *restarts;
  size_t nrestarts, restarts_cap;
};

static const int levels[10][6] = {
    {0, 0, 0, 0, 0, 0},      {1, 0, 0, 0, 0, 0},         {2, 4, 0, 16, 8, 5},         {3, 4, 0, 32, 32, 6},
    {4, 4, 4, 16, 16, SKIP_NEVER},   {5, 8, 16, 32, 32, SKIP_NEVER},   {6, 8, 16, 128, 128, SKIP_NEVER},
    {7, 8, 32, 128, 256, SKIP_NEVER}, {8, 32, 128, 258, 1024, SKIP_NEVER}, {9, 32, 258, 258, 4096, SKIP_NEVER},
};

static inline uint32_t hash4(const uint8_t *b) {
  return (((uint32_t)b[3] | (uint32_t)b[2] << 8 | (uint32_t)b[1] << 16 | (uint32_t)b[0] << 24) * HASHMUL) >>
         (32 - HASH_BITS);
}

/* The length of the common prefix of a and b, at most max. Both may be read up to 8 bytes past max
 * (the window has that slack). */
static inline size_t common_prefix(const uint8_t *a, const uint8_t *b, size_t max) {
  size_t i = 0;
  while (i + 8 <= max) {
    uint64_t x, y;
    memcpy(&x, a + i, 8);
    memcpy(&y, b + i, 8);
    uint64_t d = x ^ y;
    if (d) return i + ((size_t)__builtin_ctzll(d) >> 3);
    i += 8;
  }
  while (i < max && a[i] == b[i]) i++;
  return i;
}

static void slide_hash(goflate *d) {
  for (int i = 0; i < HASH_SIZE; i++) {
    uint16_t v = d->hash_head[i];
    d->hash_head[i] = v > WINDOW_SIZE ? (uint16_t)(v - WINDOW_SIZE) : 0;
  }
  for (int i = 0; i < WINDOW_SIZE; i++) {
    uint16_t v = d->hash_prev[i];
    d->hash_prev[i] = v > WINDOW_SIZE ? (uint16_t)(v - WINDOW_SIZE) : 0;
  }
  d->chain_head = d->chain_head > WINDOW_SIZE ? d->chain_head - WINDOW_SIZE : 0;
}

static int fill_deflate(goflate *d, const uint8_t *b, size_t len) {
  if (d->index >= 2 * WINDOW_SIZE - (MIN_MATCH_LENGTH + MAX_MATCH_LENGTH)) {
    memmove(d->window, d->window + WINDOW_SIZE, WINDOW_SIZE);
    d->base += WINDOW_SIZE;
    d->index -= WINDOW_SIZE;
    d->window_end -= WINDOW_SIZE;
    if (d->block_start >= WINDOW_SIZE)
      d->block_start -= WINDOW_SIZE;
    else
      d->block_start = INT32_MAX;
    slide_hash(d);
  }
  size_t n = (size_t)(d->window_len - d->window_end);
  if (n > len) n = len;
  memcpy(d->window + d->window_end, b, n);
  d->window_end += (int)n;
  return (int)n;
}

static void deflate_write_block(goflate *d, int index) {
  if (index > 0) {
    const uint8_t *window = NULL;
    size_t wlen = 0;
    if (d->block_start <= index) {
      window = d->window + d->block_start;
      wlen = (size_t)(index - d->block_start);
    }
    d->block_start = index;
    write_block(&d->w, d->tokens, d->ntokens, false, window, wlen);
  }
}

static void write_stored_block(goflate *d, const uint8_t *buf, size_t len) {
  if (!reserve(&d->w, len + 16)) return;
  write_stored_header(&d->w, (int)len, false);
  write_bytes(&d->w, buf, len);
}

static bool find_match(goflate *d, int pos, int prev_head, int prev_length, int lookahead, int *length_out,
                       int *offset_out) {
  int min_match_look = MAX_MATCH_LENGTH;
  if (lookahead < min_match_look) min_match_look = lookahead;
  const uint8_t *win = d->window; /* win[0 : pos+min_match_look] */
  const uint16_t *hash_prev = d->hash_prev;
  int win_len = pos + min_match_look;
  int nice = win_len - pos;
  if (d->nice < nice) nice = d->nice;
  int tries = d->chain;
  int length = prev_length, offset = 0;
  bool ok = false;
  if (length >= d->good) tries >>= 2;
  /* Go compares the byte at `length` (wEnd) before measuring a candidate; comparing the four bytes
   * that end there is as exact a filter (a longer match needs all of them equal) and passes fewer. */
  const uint8_t *w_pos = win + pos;
  uint32_t w_end = load32(w_pos, length - 3);
  int min_index = pos - WINDOW_SIZE;
  int lowest = min_index < 0 ? 0 : min_index;
  for (int i = prev_head; tries > 0; tries--) {
    if (w_end == load32(win + i, length - 3)) {
      int n = (int)common_prefix(win + i, w_pos, (size_t)min_match_look);
      if (n > length && (n > MIN_MATCH_LENGTH || pos - i <= 4096)) {
        length = n;
        offset = pos - i;
        ok = true;
        if (n >= nice) break;
        w_end = load32(w_pos, n - 3);
      }
    }
    if (i == min_index) break;
    i = (int)hash_prev[i & WINDOW_MASK] - 1; /* hash_offset */
    if (i < lowest) break;
  }
  *length_out = length;
  *offset_out = offset;
  return ok;
}

/* The state the loop of deflate() carries from one position to the next, at a block boundary: what a
 * second encoder needs to go on from there (goflate_resume). */
static void record_restart(goflate *d) {
  d->restart_due = false;
  if (d->nrestarts == d->restarts_cap) {
    size_t cap = d->restarts_cap ? 2 * d->restarts_cap : 64;
    goflate_restart *grown = realloc(d->restarts, cap * sizeof *grown);
    if (!grown) {
      d->w.oom = true;
      return;
    }
    d->restarts = grown;
    d->restarts_cap = cap;
  }
  d->restarts[d->nrestarts++] = (goflate_restart){
      .input = d->base + (uint64_t)d->index,
      .base = d->base,
      .block_start = d->base + (uint64_t)d->block_start,
      .out_bit = d->taken_bits + 8 * (uint64_t)d->w.out_len + d->w.nbits,
      .length = d->length,
      .offset = d->offset,
      .byte_available = d->byte_available,
  };
}

/* A resumed encoder's hash chains: at levels 4..9 every position before the search position was
 * inserted, in order, and only the last 32 KiB of them can be reached (findMatch stops below
 * pos - windowSize), so inserting those again from the window gives chains that find exactly the
 * matches the first encoder's chains found. */
static void rebuild_hash(goflate *d) {
  d->rebuild_hash = false;
  int from = d->index - WINDOW_SIZE;
  if (from < 0) from = 0;
  for (int index = from; index < d->index; index++) {
    uint32_t hash = hash4(d->window + index);
    uint16_t *hh = &d->hash_head[hash & HASH_MASK];
    d->hash_prev[index & WINDOW_MASK] = *hh;
    *hh = (uint16_t)(index + d->hash_offset);
  }
}

static void step_deflate(goflate *d) {
  if (d->window_end - d->index < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH && !d->sync) return;
  d->max_insert_index = d->window_end - (MIN_MATCH_LENGTH - 1);
  const bool lazy_levels = d->fast_skip_hashing == SKIP_NEVER;
  if (d->rebuild_hash) rebuild_hash(d);
  for (;;) {
    if (d->restart_due) record_restart(d);
    int lookahead = d->window_end - d->index;
    if (lookahead < MIN_MATCH_LENGTH + MAX_MATCH_LENGTH) {
      if (!d->sync) break;
      if (lookahead == 0) {
        if (d->byte_available) {
          d->tokens[d->ntokens++] = literal_token(d->window[d->index - 1]);
          d->byte_available = false;
        }
        if (d->ntokens > 0) {
          deflate_write_block(d, d->index);
          d->ntokens = 0;
        }
        break;
      }
    }
    if (d->index < d->max_insert_index) {
      uint32_t hash = hash4(d->window + d->index);
      uint16_t *hh = &d->hash_head[hash & HASH_MASK];
      d->chain_head = (int)*hh;
      d->hash_prev[d->index & WINDOW_MASK] = (uint16_t)d->chain_head;
      *hh = (uint16_t)(d->index + d->hash_offset);
    }
    int prev_length = d->length, prev_offset = d->offset;
    d->length = MIN_MATCH_LENGTH - 1;
    d->offset = 0;
    int min_index = d->index - WINDOW_SIZE;
    if (min_index < 0) min_index = 0;

    if (d->chain_head - d->hash_offset >= min_index &&
        ((!lazy_levels && lookahead > MIN_MATCH_LENGTH - 1) ||
         (lazy_levels && lookahead > prev_length && prev_length < d->lazy))) {
      int new_length, new_offset;
      if (find_match(d, d->index, d->chain_head - d->hash_offset, MIN_MATCH_LENGTH - 1, lookahead, &new_length,
                     &new_offset)) {
        d->length = new_length;
        d->offset = new_offset;
      }
    }
    if ((!lazy_levels && d->length >= MIN_MATCH_LENGTH) ||
        (lazy_levels && prev_length >= MIN_MATCH_LENGTH && d->length <= prev_length)) {
      if (!lazy_levels)
        d->tokens[d->ntokens++] =
            match_token((uint32_t)(d->length - BASE_MATCH_LENGTH), (uint32_t)(d->offset - BASE_MATCH_OFFSET));
      else
        d->tokens[d->ntokens++] =
            match_token((uint32_t)(prev_length - BASE_MATCH_LENGTH), (uint32_t)(prev_offset - BASE_MATCH_OFFSET));
      if (d->length <= d->fast_skip_hashing) {
        int new_index = !lazy_levels ? d->index + d->length : d->index + prev_length - 1;
        int index = d->index;
        for (index++; index < new_index; index++) {
          if (index < d->max_insert_index) {
            uint32_t hash = hash4(d->window + index);
            uint16_t *hh = &d->hash_head[hash & HASH_MASK];
            d->hash_prev[index & WINDOW_MASK] = *hh;
            *hh = (uint16_t)(index + d->hash_offset);
          }
        }
        d->index = index;
        if (lazy_levels) {
          d->byte_available = false;
          d->length = MIN_MATCH_LENGTH - 1;
        }
      } else {
        d->index += d->length;
      }
      if (d->ntokens == MAX_FLATE_BLOCK_TOKENS) {
        deflate_write_block(d, d->index);
        d->ntokens = 0;
        d->restart_due = d->record_restarts && !d->sync;
      }
    } else {
      if (!lazy_levels || d->byte_available) {
        int i = !lazy_levels ? d->index : d->index - 1;
        d->tokens[d->ntokens++] = literal_token(d->window[i]);
        if (d->ntokens == MAX_FLATE_BLOCK_TOKENS) {
          deflate_write_block(d, i + 1);
          d->ntokens = 0;
          d->restart_due = d->record_restarts && !d->sync;
        }
      }
      d->index++;
      if (lazy_levels) d->byte_available = true;
    }
  }
}

static int fill_store(goflate *d, const uint8_t *b, size_t len) {
  size_t n = (size_t)(d->window_len - d->window_end);
  if (n > len) n = len;
  memcpy(d->window + d->window_end, b, n);
  d->window_end += (int)n;
  return (int)n;
}

static void step_store(goflate *d) {
  if (d->window_end > 0 && (d->window_end == MAX_STORE_BLOCK_SIZE || d->sync)) {
    write_stored_block(d, d->window, (size_t)d->window_end);
    d->window_end = 0;
  }
}

static void step_store_huff(goflate *d) {
  if ((d->window_end < d->window_len && !d->sync) || d->window_end == 0) return;
  write_block_huff(&d->w, false, d->window, (size_t)d->window_end);
  d->window_end = 0;
}

static void step_speed(goflate *d) {
  if (d->window_end < MAX_STORE_BLOCK_SIZE) {
    if (!d->sync) return;
    if (d->window_end < 128) {
      if (d->window_end == 0) return;
      if (d->window_end <= 16)
        write_stored_block(d, d->window, (size_t)d->window_end);
      else
        write_block_huff(&d->w, false, d->window, (size_t)d->window_end);
      d->window_end = 0;
      fast_reset(d->best_speed);
      return;
    }
  }
  d->ntokens = fast_encode(d->best_speed, d->tokens, d->window, d->window_end);
  if ((int)d->ntokens > d->window_end - (d->window_end >> 4))
    write_block_huff(&d->w, false, d->window, (size_t)d->window_end);
  else
    write_block_dynamic(&d->w, d->tokens, d->ntokens, false, d->window, (size_t)d->window_end);
  d->window_end = 0;
}

static void step(goflate *d) {
  switch (d->kind) {
    case STEP_STORE: step_store(d); break;
    case STEP_STORE_HUFF: step_store_huff(d); break;
    case STEP_SPEED: step_speed(d); break;
    case STEP_DEFLATE: step_deflate(d); break;
  }
}

static int fill(goflate *d, const uint8_t *b, size_t len) {
  return d->kind == STEP_DEFLATE ? fill_deflate(d, b, len) : fill_store(d, b, len);
}

goflate *goflate_new(int level, int follow_writes, int record_restarts, int *bad_level) {
  *bad_level = 0;
  if (level < -2 || level > 9 || (record_restarts && ((level >= -2 && level < 4 && level != -1) || follow_writes))) {
    *bad_level = 1;
    return NULL;
  }
  pthread_once(&tables_once, make_tables);
  goflate *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  size_t window_alloc;
  if (level == NO_COMPRESSION || level == HUFFMAN_ONLY || level == BEST_SPEED) {
    d->kind = level == NO_COMPRESSION ? STEP_STORE : level == HUFFMAN_ONLY ? STEP_STORE_HUFF : STEP_SPEED;
    d->window_len = MAX_STORE_BLOCK_SIZE;
    window_alloc = MAX_STORE_BLOCK_SIZE + 16;
    if (level == BEST_SPEED) {
      memcpy(&d->level, levels[1], sizeof levels[1]);
      d->best_speed = calloc(1, sizeof *d->best_speed);
      d->tokens = malloc((MAX_STORE_BLOCK_SIZE + 2) * sizeof(token));
      if (!d->best_speed || !d->tokens) goto oom;
      d->best_speed->cur = MAX_STORE_BLOCK_SIZE;
    }
  } else {
    if (level == DEFAULT_COMPRESSION) level = 6;
    memcpy(&d->level, levels[level], sizeof levels[level]);
    d->kind = STEP_DEFLATE;
    d->window_len = 2 * WINDOW_SIZE;
    window_alloc = 2 * WINDOW_SIZE + 16;
    d->hash_head = calloc(HASH_SIZE, sizeof(uint16_t));
    d->hash_prev = calloc(WINDOW_SIZE, sizeof(uint16_t));
    d->tokens = malloc((MAX_FLATE_BLOCK_TOKENS + 2) * sizeof(token));
    if (!d->hash_head || !d->hash_prev || !d->tokens) goto oom;
    d->hash_offset = 1;
    d->length = MIN_MATCH_LENGTH - 1;
    d->chain_head = 0;
  }
  /* zeroed: the 8-byte compares may look past the data, never past the allocation */
  d->window = calloc(1, window_alloc);
  if (!d->window) goto oom;
  d->follow_writes = follow_writes;
  d->record_restarts = record_restarts;
  return d;
oom:
  goflate_free(d);
  return NULL;
}

void goflate_free(goflate *d) {
  if (!d) return;
  free(d->window);
  free(d->hash_head);
  free(d->hash_prev);
  free(d->tokens);
  free(d->best_speed);
  free(d->restarts);
  free(d->w.out);
  free(d);
}

int goflate_write(goflate *d, const uint8_t *b, size_t len) {
  while (len > 0) {
    /* Go steps before every fill; stepping only on a full window gives what one large Write gives. */
    if (d->follow_writes || d->window_end == d->window_len) step(d);
    size_t n = (size_t)fill(d, b, len);
    b += n;
    len -= n;
    if (d->w.oom) return -1;
  }
  return 0;
}

int goflate_close(goflate *d) {
  d->sync = true;
  step(d);
  if (!reserve(&d->w, 16)) return -1;
  write_stored_header(&d->w, 0, true);
  bw_flush(&d->w);
  return d->w.oom ? -1 : 0;
}

const uint8_t *goflate_take_output(goflate *d, size_t *len) {
  *len = d->w.out_len;
  d->taken_bits += 8 * (uint64_t)d->w.out_len;
  d->w.out_len = 0;
  return d->w.out;
}

const goflate_restart *goflate_take_restarts(goflate *d, size_t *count) {
  *count = d->nrestarts;
  d->nrestarts = 0;
  return d->restarts;
}

static uint64_t out_bits(const goflate *d) { return d->taken_bits + 8 * (uint64_t)d->w.out_len + d->w.nbits; }

int goflate_segment(int level, const goflate_restart *r, uint64_t end_bit, const uint8_t *input, size_t len,
                    int input_ends, uint8_t **out, size_t *out_len) {
  int bad;
  *out = NULL;
  *out_len = 0;
  if (level == -1) level = 6;
  if (level < 4 || level > 9) return -3;
  if (r->input < r->base || r->input - r->base > len) return -2;
  goflate *d = goflate_new(level, 0, 0, &bad);
  if (!d) return bad ? -3 : -1;
  d->base = r->base;
  d->index = (int)(r->input - r->base);
  d->block_start = (int)(r->block_start - r->base);
  /* A point noted at the end of a step, where the next fill slides the window first: slide now. */
  if (d->index >= 2 * WINDOW_SIZE - (MIN_MATCH_LENGTH + MAX_MATCH_LENGTH)) {
    d->base += WINDOW_SIZE;
    d->index -= WINDOW_SIZE;
    if (d->block_start != INT32_MAX)
      d->block_start = d->block_start >= WINDOW_SIZE ? d->block_start - WINDOW_SIZE : INT32_MAX;
  }
  d->length = r->length;
  d->offset = r->offset;
  d->byte_available = r->byte_available != 0;
  d->w.nbits = (unsigned)(r->out_bit % 8);
  d->taken_bits = r->out_bit - r->out_bit % 8;
  d->rebuild_hash = true;
  int rc = 0;
  /* Fill the window first (Go's writer holds its first 64 KiB before it searches), then feed 32 KiB at
   * a time until the segment's last block is out. */
  size_t at = (size_t)(d->base - r->base);
  while (out_bits(d) < end_bit) {
    if (at == len) {
      if (!input_ends) {
        rc = -2;
        break;
      }
      if (goflate_close(d) != 0) rc = -1;
      break;
    }
    size_t n = len - at < WINDOW_SIZE ? len - at : WINDOW_SIZE;
    if (goflate_write(d, input + at, n) != 0) {
      rc = -1;
      break;
    }
    at += n;
  }
  if (rc == 0) {
    if (!reserve(&d->w, 16)) {
      rc = -1;
    } else {
      uint64_t end = end_bit < out_bits(d) ? end_bit : out_bits(d);
      bw_flush(&d->w);
      size_t n = (size_t)((end + 7) / 8 - d->taken_bits / 8);
      d->w.out[0] &= (uint8_t)(0xff << (r->out_bit % 8));
      if (end % 8) d->w.out[n - 1] &= (uint8_t)(0xff >> (8 - end % 8));
      *out = d->w.out;
      *out_len = n;
      d->w.out = NULL;
    }
  }
  goflate_free(d);
  return rc;
}
