/* FULLY_CONNECTED and the per-channel requantization (see mg_kernels.h). */
#include "mg_kernels.h"

/* @section requant */
/* y[c] for the accumulators acc[0 ... n): requantized, through the table
 * when there is one. */
static void mg_requantize(const mg_channels_q *q, const int32_t *acc, int n,
                          int8_t *y) {
  const int8_t *table = q->table ? q->table + 128 : NULL;
  int c = 0;
#if MG_EXACT
  if (!q->fast) {
    for (; c < n; ++c) {
      const int32_t v = mg_rq_exact(acc[c], q->rq, q->base, c, q->zp,
                                    q->act_min, q->act_max);
      y[c] = table ? table[v] : (int8_t)v;
    }
    return;
  }
#endif
#if defined(MG_MVE)
  for (; c + 4 <= n; c += 4) {
    int32x4_t v = mg_rq_channel_q(vldrwq_s32(acc + c), q->rq + c, q->base,
                                  q->zp);
    if (table) {
      v = vldrbq_gather_offset_s32(q->table,
                                   vreinterpretq_u32_s32(vaddq_n_s32(v, 128)));
    }
    vstrbq_s32(y + c, v);
  }
#endif
  {
    const int k = -q->base - 1;
    const int32_t zp2 = 2 * q->zp + 1;
    const uint32_t *rq = q->rq;
#if defined(MG_SIMD32) && !defined(MG_MVE)
    if (n - c >= 2) { /* pairs of channels in assembly: mg_rq_channel */
      const int32_t *a = acc + c, *const end = acc + c + ((n - c) & ~1);
      const uint32_t *w = rq + c;
      int8_t *o = y + c;
      int32_t a0, a1, w0, w1, m;
#define MG_RQ_ONE(A, W, LOOKUP)                        \
  "lsl %[" A "], %[" A "], #1\n\t"                     \
  "bic %[m], %[" W "], #0xC0000000\n\t"                \
  "orr %[m], %[m], #0x40000000\n\t"                    \
  "sub %[" W "], %[k], %[" W "], lsr #30\n\t"          \
  "smmulr %[" A "], %[" A "], %[m]\n\t"                \
  "add %[" A "], %[" A "], %[" A "], asr #31\n\t"      \
  "asr %[" A "], %[" A "], %[" W "]\n\t"               \
  "add %[" A "], %[" A "], %[zp2]\n\t"                 \
  "ssat %[" A "], #8, %[" A "], asr #1\n\t" LOOKUP     \
  "strb %[" A "], [%[o]], #1\n\t"
#define MG_RQ_PAIRS_ASM(LOOKUP0, LOOKUP1)                                \
  __asm volatile("1:\n\t"                                              \
                 "ldrd %[a0], %[a1], [%[a]], #8\n\t"                   \
                 "ldrd %[w0], %[w1], [%[w]], #8\n\t"                   \
                 MG_RQ_ONE("a0", "w0", LOOKUP0)                         \
                 MG_RQ_ONE("a1", "w1", LOOKUP1)                         \
                 "cmp %[a], %[end]\n\t"                                \
                 "bne 1b\n\t"                                          \
                 : [a0] "=&r"(a0), [a1] "=&r"(a1), [w0] "=&r"(w0),      \
                   [w1] "=&r"(w1), [m] "=&r"(m), [a] "+r"(a),           \
                   [w] "+r"(w), [o] "+r"(o)                             \
                 : [end] "r"(end), [k] "r"(k), [zp2] "r"(zp2),          \
                   [tab] "r"(table)                                     \
                 : "memory", "cc")
      if (table) {
        MG_RQ_PAIRS_ASM("ldrsb %[a0], [%[tab], %[a0]]\n\t",
                        "ldrsb %[a1], [%[tab], %[a1]]\n\t");
      } else {
        MG_RQ_PAIRS_ASM("", "");
      }
      c += (n - c) & ~1;
    }
#endif
    if (table) {
      for (; c < n; ++c) {
        y[c] = table[mg_ssat8_half(mg_rq_channel(acc[c], rq[c], k, zp2))];
      }
    } else {
      for (; c < n; ++c) {
        y[c] = (int8_t)mg_ssat8_half(mg_rq_channel(acc[c], rq[c], k, zp2));
      }
    }
  }
}
/* @end */

/* @section fc */
#if defined(MG_SIMD32) && !defined(MG_MVE)
#define MG_FC_SMLAD 1
/* Row k (weights at offset OFF) of a 4 x 8 block: one LDRD of 8 weights,
 * four SXTB16 and four SMLAD against the unpacked input x0..x3. */
#define MG_DOT_ROW(A, OFF)                      \
  "ldrd %[t], %[v], [%[w], #" OFF "]\n\t"       \
  "sxtb16 %[u], %[t]\n\t"                       \
  "smlad %[" A "], %[u], %[x0], %[" A "]\n\t"   \
  "sxtb16 %[t], %[t], ror #8\n\t"               \
  "smlad %[" A "], %[t], %[x1], %[" A "]\n\t"   \
  "sxtb16 %[u], %[v]\n\t"                       \
  "smlad %[" A "], %[u], %[x2], %[" A "]\n\t"   \
  "sxtb16 %[v], %[v], ror #8\n\t"               \
  "smlad %[" A "], %[v], %[x3], %[" A "]\n\t"
/* 4 rows x 8 columns from column J of a [4][16] weight block, the input
 * unpacked beforehand (mg_fc_unpack): 38 instructions for 32 MACs. In
 * assembly, since the compiler's scheduling spills registers. */
#define MG_DOT4X8(J)                                           \
  "ldrd %[x0], %[x1], [%[xs], #2*" #J "]\n\t"                  \
  "ldrd %[x2], %[x3], [%[xs], #2*" #J "+8]\n\t"                \
  MG_DOT_ROW("a0", #J) MG_DOT_ROW("a1", "16+" #J)              \
  MG_DOT_ROW("a2", "32+" #J) MG_DOT_ROW("a3", "48+" #J)
/* x[0..n), n a multiple of 16, as sign-extended halfword pairs: for the
 * bytes x0..x3 the words (x0, x2) and (x1, x3), which SMLAD pairs with
 * SXTB16 of a weight word and of the word rotated by 8. */
static void mg_fc_unpack(uint32_t *xs, const int8_t *x, int n) {
  int c;
  for (c = 0; c < n; c += 8, xs += 4) {
    const uint32_t v = mg_load32(x + c), u = mg_load32(x + c + 4);
    xs[0] = (uint32_t)__sxtb16(v);
    xs[1] = (uint32_t)mg_sxtb16_ror8(v);
    xs[2] = (uint32_t)__sxtb16(u);
    xs[3] = (uint32_t)mg_sxtb16_ror8(u);
  }
}
#endif

/* Accumulators of 4 rows. */
typedef struct {
  int32_t a0, a1, a2, a3;
} mg_fc_acc;

/* The accumulators of 4 rows over 16-column blocks of weights w, then
 * the remaining columns (weights wt), from the bias; returns them, w and
 * wt advanced. */
MG_INLINE mg_fc_acc mg_fc_dot4(const mg_fc_params *p, const int8_t *x,
                               const uint32_t *xs, const int8_t **weights,
                               const int8_t **tails, int r) {
  const int8_t *w = *weights, *wt = *tails;
  const int full = p->cols & ~15, tail = p->cols & 15;
  mg_fc_acc a = {0, 0, 0, 0};
  int c, j;
  (void)xs;
  if (p->bias) {
    a.a0 = p->bias[r], a.a1 = p->bias[r + 1];
    a.a2 = p->bias[r + 2], a.a3 = p->bias[r + 3];
  }
  for (c = 0; c < full; c += 16, w += 64) {
#if defined(MG_MVE)
    const int8x16_t xv = vld1q_s8(x + c);
    a.a0 = vmladavaq_s8(a.a0, vld1q_s8(w), xv);
    a.a1 = vmladavaq_s8(a.a1, vld1q_s8(w + 16), xv);
    a.a2 = vmladavaq_s8(a.a2, vld1q_s8(w + 32), xv);
    a.a3 = vmladavaq_s8(a.a3, vld1q_s8(w + 48), xv);
#else
    for (j = 0; j < 16; ++j) {
      a.a0 += (int32_t)w[j] * x[c + j];
      a.a1 += (int32_t)w[16 + j] * x[c + j];
      a.a2 += (int32_t)w[32 + j] * x[c + j];
      a.a3 += (int32_t)w[48 + j] * x[c + j];
    }
#endif
  }
  for (j = 0; j < tail; ++j) { /* the last cols % 16 columns: [4][tail] */
    const int32_t v = x[full + j];
    a.a0 += wt[j] * v;
    a.a1 += wt[tail + j] * v;
    a.a2 += wt[2 * tail + j] * v;
    a.a3 += wt[3 * tail + j] * v;
  }
  *weights = w;
  *tails = wt + 4 * tail;
  return a;
}

#if defined(MG_FC_SMLAD)
/* acc[0 ... rows4) = bias + the first `full` columns (a multiple of 16)
 * of every block of 4 rows, the loop over the blocks in assembly too (the
 * pointers that do not fit in registers stay on the stack). */
static void mg_fc_blocks(const int32_t *bias, const int8_t *w,
                         const uint32_t *xs, int full, int rows4,
                         int32_t *acc) {
  const int32_t *const acc_end = acc + rows4;
  const uint32_t *const end = xs + full / 2;
  const uint32_t *xp;
  mg_fc_acc a;
  uint32_t x0, x1, x2, x3, t, v, u;
  __asm volatile("2:\n\t"
        "ldr %[u], %[bias]\n\t"
        "ldrd %[a0], %[a1], [%[u]]\n\t"
        "ldrd %[a2], %[a3], [%[u], #8]\n\t"
        "adds %[u], #16\n\t"
        "str %[u], %[bias]\n\t"
        "ldr %[xs], %[xs0]\n\t"
        "1:\n\t" MG_DOT4X8(0) MG_DOT4X8(8)
        "adds %[xs], #32\n\t"
        "adds %[w], #64\n\t"
        "ldr %[u], %[end]\n\t"
        "cmp %[xs], %[u]\n\t"
        "bne 1b\n\t"
        "ldr %[u], %[acc]\n\t"
        "strd %[a0], %[a1], [%[u]]\n\t"
        "strd %[a2], %[a3], [%[u], #8]\n\t"
        "adds %[u], #16\n\t"
        "str %[u], %[acc]\n\t"
        "ldr %[t], %[acc_end]\n\t"
        "cmp %[u], %[t]\n\t"
        "bne 2b\n\t"
        : [a0] "=&r"(a.a0), [a1] "=&r"(a.a1), [a2] "=&r"(a.a2),
          [a3] "=&r"(a.a3), [x0] "=&r"(x0), [x1] "=&r"(x1),
          [x2] "=&r"(x2), [x3] "=&r"(x3), [t] "=&r"(t), [v] "=&r"(v),
          [u] "=&r"(u), [xs] "=&r"(xp), [w] "+r"(w), [bias] "+m"(bias),
          [acc] "+m"(acc)
        : [end] "m"(end), [acc_end] "m"(acc_end), [xs0] "m"(xs)
        : "memory", "cc");
}

/* acc[r] = from[r] + the last `tail` columns of every block of 4 rows
 * (weights w, [rows4 / 4][4][tail]; from: NULL for 0). */
static void mg_fc_tails(const int8_t *w, const int8_t *x, int cols,
                        int rows4, const int32_t *from, int32_t *acc) {
  const int full = cols & ~15, tail = cols & 15;
  int r, j;
  for (r = 0; r < rows4; r += 4) {
    const int8_t *wt = w + r * tail;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (from) {
      a0 = from[r], a1 = from[r + 1], a2 = from[r + 2], a3 = from[r + 3];
    }
    for (j = 0; j < tail; ++j) {
      const int32_t v = x[full + j];
      a0 += wt[j] * v;
      a1 += wt[tail + j] * v;
      a2 += wt[2 * tail + j] * v;
      a3 += wt[3 * tail + j] * v;
    }
    acc[r] = a0, acc[r + 1] = a1, acc[r + 2] = a2, acc[r + 3] = a3;
  }
}
#endif

/* Phase 1: the accumulator of every row, 4 rows at a time, then the last
 * rows % 4 rows row-major. */
static void mg_fc_accumulate(const mg_fc_params *p, const int8_t *x,
                             const uint32_t *xs, int32_t *acc) {
  const int8_t *w = p->weights;
  int r = 0;
#if defined(MG_FC_SMLAD)
  const int rows4 = p->rows & ~3, full = p->cols & ~15;
  if (rows4) {
    const int32_t *bias = p->bias;
    if (full) {
      if (bias == NULL) { /* the blocks start from acc = 0 */
        volatile int32_t *zero = acc; /* not a memset call */
        for (r = 0; r < rows4; ++r) zero[r] = 0;
        bias = acc;
      }
      mg_fc_blocks(bias, w, xs, full, rows4, acc);
      bias = acc;
    }
    if (p->cols & 15) {
      mg_fc_tails(w + rows4 * full, x, p->cols, rows4, bias, acc);
    }
    r = rows4;
    w += rows4 * p->cols;
  }
#else
  const int8_t *wt = w + (p->rows & ~3) * (p->cols & ~15);
  for (; r + 4 <= p->rows; r += 4) {
    const mg_fc_acc a = mg_fc_dot4(p, x, xs, &w, &wt, r);
    acc[r] = a.a0, acc[r + 1] = a.a1, acc[r + 2] = a.a2, acc[r + 3] = a.a3;
  }
  w = wt;
#endif
#if MG_FC_ROWS
  for (; r < p->rows; ++r, w += p->cols) {
    int32_t a = p->bias ? p->bias[r] : 0;
    int c;
    for (c = 0; c < p->cols; ++c) a += (int32_t)w[c] * x[c];
    acc[r] = a;
  }
#endif
}

MG_KERNEL void mg_fully_connected(const mg_fc_params *params, const int8_t *x,
                                  int8_t *y) {
  /* A local copy: int8_t stores could alias the parameters otherwise,
   * and the compiler would reload them after every output byte. */
  const mg_fc_params local = *params, *p = &local;
  int32_t acc[MG_CHANNELS_MAX];
  uint32_t *xs = NULL;
  int b;
#if defined(MG_FC_SMLAD)
  uint32_t unpacked[MG_FC_UNPACK];
  xs = unpacked;
#endif
  for (b = 0; b < p->batches; ++b, x += p->cols, y += p->rows) {
#if defined(MG_FC_SMLAD)
    mg_fc_unpack(xs, x, p->cols & ~15);
#endif
    mg_fc_accumulate(p, x, xs, acc);
    mg_requantize(&p->q, acc, p->rows, y);
  }
}
/* @end */
