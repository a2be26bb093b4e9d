/* DEPTHWISE_CONV_2D (see mg_kernels.h). */
#include "mg_kernels.h"

/* @section window */
/* Accumulators of 4 channels. */
#if defined(MG_MVE)
typedef int32x4_t mg_acc4;
#else
typedef struct {
  int32_t a0, a1, a2, a3;
} mg_acc4;
#endif

/* One row of 4 channels: the 4 input bytes xv times 4 weights. */
MG_INLINE mg_acc4 mg_window_row(mg_acc4 a, uint32_t xv, const int8_t *w) {
#if defined(MG_MVE)
  int8_t x[4];
  mg_store32(x, xv);
  return vaddq_s32(a, vmulq_s32(vldrbq_s32(x), vldrbq_s32(w)));
#elif defined(MG_SIMD32)
  const uint32_t wv = mg_load32(w);
  const int32_t xl = __sxtb16(xv), xh = mg_sxtb16_ror8(xv);
  const int32_t wl = __sxtb16(wv), wh = mg_sxtb16_ror8(wv);
  a.a0 = __smlabb(xl, wl, a.a0);
  a.a2 = __smlatt(xl, wl, a.a2);
  a.a1 = __smlabb(xh, wh, a.a1);
  a.a3 = __smlatt(xh, wh, a.a3);
  return a;
#else
  int8_t x[4];
  mg_store32(x, xv);
  a.a0 += (int32_t)x[0] * w[0];
  a.a1 += (int32_t)x[1] * w[1];
  a.a2 += (int32_t)x[2] * w[2];
  a.a3 += (int32_t)x[3] * w[3];
  return a;
#endif
}

#if defined(MG_SIMD32) && !defined(MG_MVE)
#define MG_WINDOW_ASM 1
/* One row of 4 channels on Cortex-M4: input word T, weight word W. */
#define MG_WINDOW_MAC(T, W)                  \
  "sxtb16 %[u], %[" T "]\n\t"                \
  "sxtb16 %[v], %[" W "]\n\t"                \
  "smlabb %[a0], %[u], %[v], %[a0]\n\t"      \
  "smlatt %[a2], %[u], %[v], %[a2]\n\t"      \
  "sxtb16 %[u], %[" T "], ror #8\n\t"        \
  "sxtb16 %[v], %[" W "], ror #8\n\t"        \
  "smlabb %[a1], %[u], %[v], %[a1]\n\t"      \
  "smlatt %[a3], %[u], %[v], %[a3]\n\t"
#define MG_WINDOW_OPERANDS                                          \
  : [a0] "+r"(a.a0), [a1] "+r"(a.a1), [a2] "+r"(a.a2),              \
    [a3] "+r"(a.a3), [p] "+r"(p), [w] "+r"(w), [t0] "=&r"(t0),      \
    [t1] "=&r"(t1), [wv] "=&r"(wv), [u] "=&r"(u), [v] "=&r"(v)      \
  : [s] "r"(stride), [end] "r"(end)                                 \
  : "memory", "cc"
#endif

/* `pairs` pairs of rows, `stride` bytes apart from x; with `copy`, the
 * rows after x, each also copied to the row before it (the FIFO shift). */
MG_INLINE mg_acc4 mg_window_pairs(mg_acc4 a, const int8_t *x, int stride,
                                  const int8_t *w, int pairs, int copy) {
#if defined(MG_WINDOW_ASM)
  uint32_t t0, t1, wv, u, v;
  const int8_t *p = x;
  const int8_t *end = w + 8 * pairs;
  if (pairs == 0) return a;
  if (copy) {
    __asm("1:\n\t"
          "ldr %[t0], [%[p], %[s]]\n\t"
          "ldr %[t1], [%[p], %[s], lsl #1]\n\t"
          "str %[t0], [%[p]]\n\t"
          "str %[t1], [%[p], %[s]]\n\t"
          "ldr %[wv], [%[w]], #4\n\t" MG_WINDOW_MAC("t0", "wv")
          "ldr %[wv], [%[w]], #4\n\t" MG_WINDOW_MAC("t1", "wv")
          "add %[p], %[p], %[s], lsl #1\n\t"
          "cmp %[w], %[end]\n\t"
          "bne 1b\n\t" MG_WINDOW_OPERANDS);
  } else {
    __asm("1:\n\t"
          "ldr %[t0], [%[p]]\n\t"
          "ldr %[t1], [%[p], %[s]]\n\t"
          "ldr %[wv], [%[w]], #4\n\t" MG_WINDOW_MAC("t0", "wv")
          "ldr %[wv], [%[w]], #4\n\t" MG_WINDOW_MAC("t1", "wv")
          "add %[p], %[p], %[s], lsl #1\n\t"
          "cmp %[w], %[end]\n\t"
          "bne 1b\n\t" MG_WINDOW_OPERANDS);
  }
#else
  int8_t *to = (int8_t *)x; /* written only with `copy` (the FIFO) */
  int k;
  for (k = 0; k < 2 * pairs; ++k, w += 4) {
    const uint32_t xv = mg_load32(x + (k + copy) * stride);
    if (copy) mg_store32(to + k * stride, xv);
    a = mg_window_row(a, xv, w);
  }
#endif
  return a;
}

/* n rows (see mg_window_pairs), the last odd one in C. */
MG_INLINE mg_acc4 mg_window_rows(mg_acc4 a, const int8_t *x, int stride,
                                 const int8_t *w, int n, int copy) {
  const int even = n & ~1;
  a = mg_window_pairs(a, x, stride, w, n >> 1, copy);
  if (n & 1) {
    const uint32_t xv = mg_load32(x + (even + copy) * stride);
    if (copy) mg_store32((int8_t *)x + even * stride, xv);
    a = mg_window_row(a, xv, w + 4 * even);
  }
  return a;
}

/* The accumulators of channels c ... c + 3 (see mg_dwconv_window). */
MG_INLINE mg_acc4 mg_window_group(const mg_window_params *p, int c,
                                  const int8_t *fifo, const int8_t *fresh,
                                  int8_t *next) {
  const int ch = p->channels, taps = p->taps, split = p->split;
  const int8_t *w = p->weights + c * taps;
  mg_acc4 a;
  int t;
#if defined(MG_MVE)
  a = vldrwq_s32(p->bias + c);
#else
  a.a0 = p->bias[c], a.a1 = p->bias[c + 1];
  a.a2 = p->bias[c + 2], a.a3 = p->bias[c + 3];
#endif
  if (next) { /* row 0 dropped, rows 1... moved up, the fresh row last */
    const uint32_t xv = mg_load32(fresh + c);
    a = mg_window_row(a, mg_load32(fifo + c), w);
    a = mg_window_rows(a, next + c, ch, w + 4, split - 1, 1);
    mg_store32(next + c + (split - 1) * ch, xv);
    return mg_window_row(a, xv, w + 4 * split);
  }
  a = mg_window_rows(a, fifo + c, ch, w, split, 0);
  for (t = split; t < taps; ++t) {
    a = mg_window_row(a, mg_load32(fresh + (t - split) * ch + c), w + 4 * t);
  }
  return a;
}

#if MG_WINDOW_TAIL
/* The accumulators of the last channels % 4 channels, weights [taps]
 * [channels % 4]. */
static void mg_window_tail(const mg_window_params *p, const int8_t *fifo,
                           const int8_t *fresh, int8_t *next, int32_t *acc) {
  const int ch = p->channels, rest = ch & 3, drop = p->taps - p->split;
  int c, t;
  for (c = ch - rest; c < ch; ++c) {
    const int8_t *w = p->weights + (ch - rest) * p->taps + (c - (ch - rest));
    int32_t a = p->bias[c];
    for (t = 0; t < p->taps; ++t, w += rest) {
      const int8_t v = t < p->split ? fifo[t * ch + c]
                                    : fresh[(t - p->split) * ch + c];
      a += (int32_t)v * *w;
      if (next && t >= drop) next[(t - drop) * ch + c] = v;
    }
    acc[c] = a;
  }
}
#endif

/* y = the window's convolution; the window is the FIFO's `split` rows
 * then the rows of `fresh`. With `next` (NULL or the FIFO itself, one
 * fresh row), the FIFO becomes the window's last `split` rows, written in
 * place: each row is read before the row it is copied to is overwritten.
 */
#if defined(MG_MVE)
/* n rows, `stride` bytes apart from x, of channels c ... c + 3 (weights
 * w, 4 per row) and, with `two`, of c + 4 ... c + 7 (weights w2). */
MG_INLINE void mg_window_mve_rows(int32x4_t *a0, int32x4_t *a1,
                                  const int8_t *x, int stride,
                                  const int8_t *w, const int8_t *w2, int n,
                                  int two) {
  int32x4_t s0 = *a0, s1 = *a1;
  int t;
  if (two) {
    for (t = 0; t < n; ++t, x += stride, w += 4, w2 += 4) {
      s0 = vaddq_s32(s0, vmulq_s32(vldrbq_s32(x), vldrbq_s32(w)));
      s1 = vaddq_s32(s1, vmulq_s32(vldrbq_s32(x + 4), vldrbq_s32(w2)));
    }
  } else {
    for (t = 0; t < n; ++t, x += stride, w += 4) {
      s0 = vaddq_s32(s0, vmulq_s32(vldrbq_s32(x), vldrbq_s32(w)));
    }
  }
  *a0 = s0, *a1 = s1;
}

/* dst[0 ... n) = src[0 ... n), dst <= src or the two apart. */
MG_INLINE void mg_copy_forward_mve(int8_t *dst, const int8_t *src, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) vst1q_s8(dst + i, vld1q_s8(src + i));
  if (i < n) {
    const mve_pred16_t m = vctp8q((uint32_t)(n - i));
    vst1q_p_s8(dst + i, vld1q_z_s8(src + i, m), m);
  }
}

/* The accumulators of the channels in groups of 4 (8 at a time), then,
 * with `next`, the FIFO shifted by one row (16 bytes at a time: each
 * chunk is read before the bytes below it are written). */
static void mg_window_mve(const mg_window_params *p, const int8_t *fifo,
                          const int8_t *fresh, int8_t *next, int32_t *acc) {
  const int ch = p->channels, taps = p->taps, split = p->split;
  const int full = ch & ~3;
  int c, n;
  for (c = 0; c < full; c += 8) {
    const int two = c + 8 <= full;
    const int8_t *w = p->weights + c * taps, *w2 = w + 4 * taps;
    int32x4_t a0 = vldrwq_s32(p->bias + c), a1 = a0;
    if (two) a1 = vldrwq_s32(p->bias + c + 4);
    mg_window_mve_rows(&a0, &a1, fifo + c, ch, w, w2, split, two);
    mg_window_mve_rows(&a0, &a1, fresh + c, ch, w + 4 * split,
                       w2 + 4 * split, taps - split, two);
    vstrwq_s32(acc + c, a0);
    if (two) vstrwq_s32(acc + c + 4, a1);
  }
  if (next) {
    n = (split - 1) * ch;
    mg_copy_forward_mve(next, fifo + ch, n);
    mg_copy_forward_mve(next + n, fresh, ch);
  }
}
#endif

MG_KERNEL void mg_dwconv_window(const mg_window_params *params,
                                const int8_t *fifo, const int8_t *fresh,
                                int8_t *y, int8_t *next) {
  const mg_window_params local = *params, *p = &local; /* see mg_fc */
  int32_t acc[MG_CHANNELS_MAX];
  int c = 0;
#if defined(MG_MVE)
#if MG_WINDOW_TAIL
  mg_window_tail(p, fifo, fresh, NULL, acc); /* before the shift */
#endif
  mg_window_mve(p, fifo, fresh, next, acc);
  c = p->channels;
#endif
  for (; c + 4 <= p->channels; c += 4) {
    const mg_acc4 a = mg_window_group(p, c, fifo, fresh, next);
#if defined(MG_MVE)
    vstrwq_s32(acc + c, a);
#else
    acc[c] = a.a0, acc[c + 1] = a.a1, acc[c + 2] = a.a2, acc[c + 3] = a.a3;
#endif
  }
#if MG_WINDOW_TAIL && !defined(MG_MVE)
  mg_window_tail(p, fifo, fresh, next, acc);
#endif
  mg_requantize(&p->q, acc, p->channels, y);
}

/* @end */

/* @section dwconv_general */
static int8_t mg_dwconv_out(const mg_dwconv_params *p, int c, int32_t acc) {
  const int32_t v = mg_mbqm(acc, mg_rq_mult(p->rq, p->rq_base, c),
                            mg_rq_shift(p->rq, p->rq_base, c));
  return (int8_t)mg_clamp(v + p->out_zp, p->act_min, p->act_max);
}

/* The general case, in TFLite's loop order (padding taps skipped). */
MG_KERNEL void mg_dwconv_general(const mg_dwconv_params *p, const int8_t *x,
                                 int8_t *y) {
  const int out_c = p->in_c * p->mult_depth;
  int oy, ox, ic, m, ky, kx;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      for (ic = 0; ic < p->in_c; ++ic) {
        for (m = 0; m < p->mult_depth; ++m) {
          const int oc = ic * p->mult_depth + m;
          int32_t acc = p->bias ? p->bias[oc] : 0;
          for (ky = 0; ky < p->k_h; ++ky) {
            const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
              const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
              int32_t v;
              if (ix < 0 || ix >= p->in_w) continue;
              v = x[(iy * p->in_w + ix) * p->in_c + ic];
              if (!p->folded) v += p->in_offset;
              acc += v * p->weights[(ky * p->k_w + kx) * out_c + oc];
            }
          }
          y[(oy * p->out_w + ox) * out_c + oc] = mg_dwconv_out(p, oc, acc);
        }
      }
    }
  }
}
/* @end */
