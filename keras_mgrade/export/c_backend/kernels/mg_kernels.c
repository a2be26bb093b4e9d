/* Kernels of the keras_mgrade C backend (see mg_kernels.h). The code
 * between "@section NAME" and "@end" is pasted into generated models. */
#include "mg_kernels.h"

/* @section copy */
MG_KERNEL void mg_copy(int8_t *dst, const int8_t *src, int n) {
  int i = 0;
  if (dst == src) return;
  if (dst < src || dst >= src + n) {
#if defined(MG_MVE)
    for (; i + 16 <= n; i += 16) vst1q_s8(dst + i, vld1q_s8(src + i));
#else
    for (; i + 16 <= n; i += 16) {
      uint32_t v[4];
      memcpy(v, src + i, 16);
      memcpy(dst + i, v, 16);
    }
#endif
    for (; i + 4 <= n; i += 4) {
      const uint32_t v = mg_load32(src + i);
      memcpy(dst + i, &v, 4);
    }
    for (; i < n; ++i) dst[i] = src[i];
  } else {
    for (i = n - 1; i >= 0; --i) dst[i] = src[i];
  }
}
/* @end */

/* @section gather */
/* dst[i] = src[index[i]]: data movement with no long contiguous runs. */
MG_KERNEL void mg_gather(int8_t *dst, const int8_t *src, const uint16_t *index,
                      int n) {
  int i;
  for (i = 0; i < n; ++i) dst[i] = src[index[i]];
}
/* @end */

/* @section lut */
/* A unary int8 function (or a fused chain of them) as a table indexed by
 * the input's bit pattern: y = table[(uint8_t)x]. */
MG_KERNEL void mg_lut(const int8_t *table, const int8_t *x, int8_t *y, int n) {
  int i = 0;
#if defined(MG_MVE)
  for (; i + 16 <= n; i += 16) {
    const uint8x16_t index = vld1q_u8((const uint8_t *)x + i);
    vst1q_s8(y + i, vldrbq_gather_offset_s8(table, index));
  }
#endif
  for (; i < n; ++i) y[i] = table[(uint8_t)x[i]];
}
/* @end */

/* @section lut_range */
MG_KERNEL void mg_lut_range(const mg_lut_range_params *p, const int8_t *x,
                            int8_t *y) {
  const int8_t *table = p->table;
  const int n = p->n, lo = p->lo, last = p->last;
  int i = 0;
#if defined(MG_MVE)
  for (; i + 16 <= n; i += 16) {
    int16x8_t b = vldrbq_s16(x + i), t = vldrbq_s16(x + i + 8);
    b = vminq_s16(vmaxq_s16(vsubq_n_s16(b, lo), vdupq_n_s16(0)),
                  vdupq_n_s16(last));
    t = vminq_s16(vmaxq_s16(vsubq_n_s16(t, lo), vdupq_n_s16(0)),
                  vdupq_n_s16(last));
    vstrbq_s16(y + i, vldrbq_gather_offset_s16(table, vreinterpretq_u16_s16(b)));
    vstrbq_s16(y + i + 8,
               vldrbq_gather_offset_s16(table, vreinterpretq_u16_s16(t)));
  }
#endif
  for (; i < n; ++i) {
    int k = x[i] - lo;
    k = k < 0 ? 0 : (k > last ? last : k);
    y[i] = table[k];
  }
}
/* @end */

/* @section fill */
MG_KERNEL void mg_fill(int8_t *dst, int8_t value, int n) {
  volatile int8_t *d = dst; /* a plain loop would become a memset call */
  int i;
  for (i = 0; i < n; ++i) d[i] = value;
}
/* @end */

/* @section fc */
#if defined(MG_SIMD32) && !defined(MG_MVE)
/* 4 rows x 4 columns: x unpacked once (even and odd bytes), then per row
 * one load, two SXTB16 and two SMLAD. In assembly, since the compiler's
 * scheduling of the unrolled loop spills registers. */
#define MG_DOT4X4(J)                                   \
  "ldr %[xh], [%[x], #" #J "]\n\t"                      \
  "sxtb16 %[xl], %[xh]\n\t"                             \
  "sxtb16 %[xh], %[xh], ror #8\n\t"                     \
  "ldr %[t], [%[w], #" #J "]\n\t"                       \
  "sxtb16 %[u], %[t]\n\t"                               \
  "smlad %[a0], %[u], %[xl], %[a0]\n\t"                 \
  "sxtb16 %[t], %[t], ror #8\n\t"                       \
  "smlad %[a0], %[t], %[xh], %[a0]\n\t"                 \
  "ldr %[t], [%[w], #16+" #J "]\n\t"                    \
  "sxtb16 %[u], %[t]\n\t"                               \
  "smlad %[a1], %[u], %[xl], %[a1]\n\t"                 \
  "sxtb16 %[t], %[t], ror #8\n\t"                       \
  "smlad %[a1], %[t], %[xh], %[a1]\n\t"                 \
  "ldr %[t], [%[w], #32+" #J "]\n\t"                    \
  "sxtb16 %[u], %[t]\n\t"                               \
  "smlad %[a2], %[u], %[xl], %[a2]\n\t"                 \
  "sxtb16 %[t], %[t], ror #8\n\t"                       \
  "smlad %[a2], %[t], %[xh], %[a2]\n\t"                 \
  "ldr %[t], [%[w], #48+" #J "]\n\t"                    \
  "sxtb16 %[u], %[t]\n\t"                               \
  "smlad %[a3], %[u], %[xl], %[a3]\n\t"                 \
  "sxtb16 %[t], %[t], ror #8\n\t"                       \
  "smlad %[a3], %[t], %[xh], %[a3]\n\t"
#endif

MG_INLINE int8_t mg_fc_out(const mg_fc_params *p, int k, int r, int32_t acc) {
  const int32_t m = mg_rq_mult(p->rq[k], p->rq_base[k], r);
  const int s = mg_rq_shift(p->rq[k], p->rq_base[k], r);
  int32_t v;
#if MG_EXACT
  if (p->exact64) {
    v = mg_mbqm(acc, m, s > 0 ? s : 0, s > 0 ? 0 : -s) + p->out_zp[k];
    return mg_clamp8(v, p->act_min[k], p->act_max[k]);
  }
#endif
  if (p->right_only[k]) return mg_rq_right(acc, m, s, p->out_zp[k]);
  v = mg_mbqm_fast(acc, m, s) + p->out_zp[k];
  return mg_clamp8(v, p->act_min[k], p->act_max[k]);
}

/* Blocked weights: 4 rows at a time over 16-column blocks, then the
 * remaining columns. */
static void mg_fc_blocked(const mg_fc_params *params, const int8_t *x,
                          int8_t *y0, int8_t *y1) {
  /* A local copy: int8_t stores could alias the parameters otherwise,
   * and the compiler would reload them after every output byte. */
  const mg_fc_params local = *params, *p = &local;
  const int8_t *w = p->weights;
  const int full = p->cols & ~15, tail = p->cols & 15;
  int r, c, k;
  for (r = 0; r + 4 <= p->rows; r += 4) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (p->bias) {
      a0 = p->bias[r], a1 = p->bias[r + 1];
      a2 = p->bias[r + 2], a3 = p->bias[r + 3];
    }
    for (c = 0; c < full; c += 16, w += 64) {
#if defined(MG_MVE)
      const int8x16_t xv = vld1q_s8(x + c);
      a0 = vmladavaq_s8(a0, vld1q_s8(w), xv);
      a1 = vmladavaq_s8(a1, vld1q_s8(w + 16), xv);
      a2 = vmladavaq_s8(a2, vld1q_s8(w + 32), xv);
      a3 = vmladavaq_s8(a3, vld1q_s8(w + 48), xv);
#elif defined(MG_SIMD32) && defined(__OPTIMIZE_SIZE__)
      int j; /* half the code of the unrolled block below */
      for (j = 0; j < 16; j += 8) {
        uint32_t xl, xh, t, u;
        __asm(MG_DOT4X4(0) MG_DOT4X4(4)
              : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                [xl] "=&r"(xl), [xh] "=&r"(xh), [t] "=&r"(t), [u] "=&r"(u)
              : [x] "r"(x + c + j), [w] "r"(w + j)); /* reads inputs only */
      }
#elif defined(MG_SIMD32)
      uint32_t xl, xh, t, u;
      __asm(MG_DOT4X4(0) MG_DOT4X4(4) MG_DOT4X4(8) MG_DOT4X4(12)
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
              [xl] "=&r"(xl), [xh] "=&r"(xh), [t] "=&r"(t), [u] "=&r"(u)
            : [x] "r"(x + c), [w] "r"(w)); /* reads kernel inputs only */
#else
      int j;
      for (j = 0; j < 16; ++j) {
        a0 += (int32_t)w[j] * x[c + j];
        a1 += (int32_t)w[16 + j] * x[c + j];
        a2 += (int32_t)w[32 + j] * x[c + j];
        a3 += (int32_t)w[48 + j] * x[c + j];
      }
#endif
    }
    if (tail) { /* the last cols % 16 columns: [4][tail] */
#if defined(MG_MVE)
      const mve_pred16_t q = vctp8q((uint32_t)tail);
      const int8x16_t xv = vld1q_z_s8(x + full, q);
      a0 = vmladavaq_p_s8(a0, vld1q_z_s8(w, q), xv, q);
      a1 = vmladavaq_p_s8(a1, vld1q_z_s8(w + tail, q), xv, q);
      a2 = vmladavaq_p_s8(a2, vld1q_z_s8(w + 2 * tail, q), xv, q);
      a3 = vmladavaq_p_s8(a3, vld1q_z_s8(w + 3 * tail, q), xv, q);
#else
      int j;
      for (j = 0; j < tail; ++j) {
        const int32_t v = x[full + j];
        a0 += w[j] * v;
        a1 += w[tail + j] * v;
        a2 += w[2 * tail + j] * v;
        a3 += w[3 * tail + j] * v;
      }
#endif
      w += 4 * tail;
    }
    for (k = 0; k < p->outputs; ++k) {
      int8_t *y = (k ? y1 : y0) + r;
#if defined(MG_MVE)
      if (!(MG_EXACT && p->exact64) && p->rq_base[k] != MG_RQ_WIDE) {
        int32x4_t acc = vdupq_n_s32(a0);
        acc = vsetq_lane_s32(a1, acc, 1);
        acc = vsetq_lane_s32(a2, acc, 2);
        acc = vsetq_lane_s32(a3, acc, 3);
        vstrbq_s32(y, p->right_only[k]
                          ? mg_requant_right_q(acc, p->rq[k] + r,
                                               p->rq_base[k], p->out_zp[k])
                          : mg_requant_q(acc, p->rq[k] + r, p->rq_base[k],
                                         p->out_zp[k], p->act_min[k],
                                         p->act_max[k]));
        continue;
      }
#endif
      if (p->right_only[k] && !(MG_EXACT && p->exact64)) {
        const uint32_t *rq = p->rq[k];
        const int base = p->rq_base[k], zp = p->out_zp[k];
        y[0] = mg_rq_right(a0, mg_rq_mult(rq, base, r),
                           mg_rq_shift(rq, base, r), zp);
        y[1] = mg_rq_right(a1, mg_rq_mult(rq, base, r + 1),
                           mg_rq_shift(rq, base, r + 1), zp);
        y[2] = mg_rq_right(a2, mg_rq_mult(rq, base, r + 2),
                           mg_rq_shift(rq, base, r + 2), zp);
        y[3] = mg_rq_right(a3, mg_rq_mult(rq, base, r + 3),
                           mg_rq_shift(rq, base, r + 3), zp);
        continue;
      }
      y[0] = mg_fc_out(p, k, r, a0);
      y[1] = mg_fc_out(p, k, r + 1, a1);
      y[2] = mg_fc_out(p, k, r + 2, a2);
      y[3] = mg_fc_out(p, k, r + 3, a3);
    }
  }
}

#if MG_FC_ROWS
/* Row-major weights (from row r0 on), one row at a time. */
static void mg_fc_rows(const mg_fc_params *p, int r0, const int8_t *x,
                       int8_t *y0, int8_t *y1) {
  const int8_t *w = p->weights + r0 * p->cols;
  int r, c, k;
  for (r = r0; r < p->rows; ++r, w += p->cols) {
    int32_t acc = p->bias ? p->bias[r] : 0;
    for (c = 0; c < p->cols; ++c) acc += (int32_t)w[c] * x[c];
    for (k = 0; k < p->outputs; ++k) (k ? y1 : y0)[r] = mg_fc_out(p, k, r, acc);
  }
}
#endif

MG_KERNEL void mg_fully_connected(const mg_fc_params *p, const int8_t *x,
                                  int8_t *y0, int8_t *y1) {
  int b;
  for (b = 0; b < p->batches; ++b) {
#if MG_FC_ROWS
    if (!p->blocked) {
      mg_fc_rows(p, 0, x, y0, y1);
    } else
#endif
    {
      mg_fc_blocked(p, x, y0, y1);
#if MG_FC_ROWS
      if (p->rows & 3) mg_fc_rows(p, p->rows & ~3, x, y0, y1);
#endif
    }
    x += p->cols;
    y0 += p->rows;
    if (y1) y1 += p->rows;
  }
}
/* @end */

/* @section dwconv */
static int8_t mg_dwconv_out(const mg_dwconv_params *p, int c, int32_t acc) {
  const int32_t m = mg_rq_mult(p->rq, p->rq_base, c);
  const int s = mg_rq_shift(p->rq, p->rq_base, c);
  if (p->right_only) return mg_rq_right(acc, m, s, p->out_zp);
  const int32_t v =
      MG_EXACT && p->exact64
          ? mg_mbqm(acc, m, s > 0 ? s : 0, s > 0 ? 0 : -s)
          : mg_mbqm_fast(acc, m, s);
  return mg_clamp8(v + p->out_zp, p->act_min, p->act_max);
}

/* @end */

/* @section dwconv_window */
/* One output position whose window is the whole input (`window`: k_h ==
 * in_h, k_w == in_w, depth multiplier 1, folded): for each channel c,
 * bias[c] + sum over taps t of x[t][c] * w[t][c]. */
MG_KERNEL void mg_dwconv_window(const mg_dwconv_params *params,
                                const int8_t *x, int8_t *y) {
  const mg_dwconv_params local = *params, *p = &local; /* see mg_fc_blocked */
  const int channels = p->in_c, taps = p->k_h * p->k_w;
  int c = 0, t;
#if defined(MG_MVE)
  /* 16 channels per pass: four accumulator vectors. */
  for (; c + 16 <= channels; c += 16) {
    int32x4_t a0 = vldrwq_s32(p->bias + c), a1 = vldrwq_s32(p->bias + c + 4);
    int32x4_t a2 = vldrwq_s32(p->bias + c + 8);
    int32x4_t a3 = vldrwq_s32(p->bias + c + 12);
    const int8_t *px = x + c, *pw = p->weights + c;
    int j;
    for (t = 0; t < taps; ++t, px += channels, pw += channels) {
      a0 = vaddq_s32(a0, vmulq_s32(vldrbq_s32(px), vldrbq_s32(pw)));
      a1 = vaddq_s32(a1, vmulq_s32(vldrbq_s32(px + 4), vldrbq_s32(pw + 4)));
      a2 = vaddq_s32(a2, vmulq_s32(vldrbq_s32(px + 8), vldrbq_s32(pw + 8)));
      a3 = vaddq_s32(a3, vmulq_s32(vldrbq_s32(px + 12), vldrbq_s32(pw + 12)));
    }
    for (j = 0; j < 4; ++j) {
      const int32x4_t a = j == 0 ? a0 : j == 1 ? a1 : j == 2 ? a2 : a3;
      const int k = c + 4 * j;
      if (!(MG_EXACT && p->exact64) && p->rq_base != MG_RQ_WIDE) {
        vstrbq_s32(y + k, p->right_only
                              ? mg_requant_right_q(a, p->rq + k, p->rq_base,
                                                   p->out_zp)
                              : mg_requant_q(a, p->rq + k, p->rq_base,
                                             p->out_zp, p->act_min,
                                             p->act_max));
        continue;
      }
      y[k] = mg_dwconv_out(p, k, vgetq_lane_s32(a, 0));
      y[k + 1] = mg_dwconv_out(p, k + 1, vgetq_lane_s32(a, 1));
      y[k + 2] = mg_dwconv_out(p, k + 2, vgetq_lane_s32(a, 2));
      y[k + 3] = mg_dwconv_out(p, k + 3, vgetq_lane_s32(a, 3));
    }
  }
#elif defined(MG_SIMD32)
  for (; c + 4 <= channels; c += 4) {
    int32_t a0 = p->bias[c], a1 = p->bias[c + 1];
    int32_t a2 = p->bias[c + 2], a3 = p->bias[c + 3];
    const int8_t *px = x + c, *pw = p->weights + c;
    for (t = 0; t < taps; ++t, px += channels, pw += channels) {
      const uint32_t xv = mg_load32(px), wv = mg_load32(pw);
      const int32_t xl = __sxtb16(xv), xh = mg_sxtb16_ror8(xv);
      const int32_t wl = __sxtb16(wv), wh = mg_sxtb16_ror8(wv);
      a0 = __smlabb(xl, wl, a0);
      a2 = __smlatt(xl, wl, a2);
      a1 = __smlabb(xh, wh, a1);
      a3 = __smlatt(xh, wh, a3);
    }
    y[c] = mg_dwconv_out(p, c, a0);
    y[c + 1] = mg_dwconv_out(p, c + 1, a1);
    y[c + 2] = mg_dwconv_out(p, c + 2, a2);
    y[c + 3] = mg_dwconv_out(p, c + 3, a3);
  }
#endif
  for (; c < channels; ++c) {
    int32_t a = p->bias[c];
    for (t = 0; t < taps; ++t) {
      a += (int32_t)x[t * channels + c] * p->weights[t * channels + c];
    }
    y[c] = mg_dwconv_out(p, c, a);
  }
}

/* @end */

/* @section dwconv_general */
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

/* @section bcast */
typedef void (*mg_run)(const void *p, const int8_t *a, int sa, const int8_t *b,
                       int sb, int8_t *y, int n);

/* Runs an elementwise operator over its (possibly broadcast) shape. */
static void mg_elementwise(const mg_ew *e, mg_run run, const int8_t *a,
                           const int8_t *b, int8_t *y) {
  const mg_bcast *s = e->shape;
  int o;
  if (s == NULL) {
    run(e, a, 1, b, 1, y, e->n);
    return;
  }
  for (o = 0; o < s->outer; ++o) {
    run(e, a + o * s->a_outer, s->a_inner, b + o * s->b_outer, s->b_inner,
        y + o * s->inner, s->inner);
  }
}
/* @end */

/* @section add */
#define MG_ADD_CHUNK 32

#if MG_EXACT
/* The generic path: any shifts and activation range. */
static void mg_add_exact(const mg_add_params *p, const int8_t *big, int sb,
                         const int8_t *small, int ss, int8_t *y, int n) {
  int i;
  for (i = 0; i < n; ++i, big += sb, small += ss) {
    const int32_t vb = (*big + p->off_big) * (1 << 19); /* exact */
    const int32_t vs = mg_mbqm((*small + p->off_small) * (1 << 20),
                               p->m_small, 0, p->e_small);
    const int32_t raw = p->sign_big * vb + p->sign_small * vs;
    const int32_t v = mg_mbqm(raw, p->m_out, 0, p->e_out) + p->out_zp;
    y[i] = mg_clamp8(v, p->act_min, p->act_max);
  }
}
#endif

#if defined(MG_MVE)
/* ADD/SUB on 4 lanes at a time. Parameters are read into locals first:
 * int8_t stores may alias the parameter struct. */
static int mg_add_mve(const mg_add_params *p, const int8_t *big, int sb,
                      const int8_t *small, int ss, int8_t *y, int n) {
  const int32_t kb = p->sign_big * (1 << 19), cb = kb * p->off_big;
  const int32_t cs = p->off_small * (1 << 20), ms = p->m_small;
  const int32_t es = p->e_small, ks = es > 0, sign = p->sign_small;
  const int32_t mo = p->m_out, eo = p->e_out, zp = p->out_zp;
  int32x4_t s0 = vdupq_n_s32(*small);
  int i = 0;
#define MG_ADD_SMALL_Q(v)                                              \
  v = vqrdmulhq_n_s32(vaddq_n_s32(vshlq_n_s32(v, 20), cs), ms);         \
  v = vrshlq_n_s32(vmlaq_n_s32(v, vshrq_n_s32(v, 31), ks), -es)
#define MG_ADD_OUT_Q(v, b)                                             \
  v = vmlaq_n_s32(vaddq_n_s32(vmulq_n_s32(b, kb), cb), v, sign);       \
  v = vqrdmulhq_n_s32(v, mo);                                          \
  v = vrshlq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -eo);             \
  vstrbq_s32(y + i, mg_sat8_q(vaddq_n_s32(v, zp)))
  if (sb != 1) return 0; /* a broadcast big operand: scalar code */
  if (ss) {
    for (; i + 4 <= n; i += 4) {
      int32x4_t v = vldrbq_s32(small + i);
      MG_ADD_SMALL_Q(v);
      MG_ADD_OUT_Q(v, vldrbq_s32(big + i));
    }
    return i;
  }
  MG_ADD_SMALL_Q(s0);
  for (; i + 4 <= n; i += 4) {
    int32x4_t v = s0;
    MG_ADD_OUT_Q(v, vldrbq_s32(big + i));
  }
  return i;
#undef MG_ADD_SMALL_Q
#undef MG_ADD_OUT_Q
}
#endif

/* n elements, operands advancing by sb and ss (0 or 1): the rescaled
 * small input for a chunk first, then the sum and the output. */
/* Scalar ADD/SUB of elements i... n: the rescaled small operand of a
 * chunk first (fewer live registers), then the sum and the output. */
static void mg_add_scalar(const mg_add_params *p, const int8_t *big, int sb,
                          const int8_t *small, int ss, int8_t *y, int i,
                          int n) {
  int32_t t[MG_ADD_CHUNK];
  const int32_t ms = p->m_small, cs = p->off_small * (1 << 21);
  const int es = p->e_small;
  const int32_t ks = es ? -1 : 0, rs = es ? 1 << (es - 1) : 0;
  const int32_t kb = p->sign_big * (1 << 20), mo = p->m_out;
  const int eo = p->e_out;
  const int32_t ro = (1 << (eo - 1)) + p->out_zp * (1 << eo);
  int32_t cb = kb * p->off_big;
  int j, m;
  if (ss == 0) { /* a broadcast small operand: rescaled once */
    const int32_t v = mg_rshift(mg_smmulr(*small * (1 << 21) + cs, ms), ks,
                                rs, es);
    cb += p->sign_small > 0 ? 2 * v : -2 * v;
    for (; i < n; ++i, big += sb) {
      const int32_t w = mg_smmulr(*big * kb + cb, mo);
      y[i] = mg_sat8((w + (w >> 31) + ro) >> eo, 0);
    }
    return;
  }
  for (; i < n; i += MG_ADD_CHUNK) {
    m = n - i < MG_ADD_CHUNK ? n - i : MG_ADD_CHUNK;
    for (j = 0; j < m; ++j, small += ss) {
      const int32_t v = mg_rshift(mg_smmulr(*small * (1 << 21) + cs, ms), ks,
                                  rs, es);
      t[j] = p->sign_small > 0 ? 2 * v : -2 * v;
    }
    for (j = 0; j < m; ++j, big += sb) {
      const int32_t v = mg_smmulr(*big * kb + cb + t[j], mo);
      y[i + j] = mg_sat8((v + (v >> 31) + ro) >> eo, 0);
    }
  }
}

static void mg_add_run(const void *params, const int8_t *big, int sb,
                       const int8_t *small, int ss, int8_t *y, int n) {
  const mg_add_params *p = (const mg_add_params *)params;
  int i = 0;
#if MG_EXACT
  if (!p->fast) {
    mg_add_exact(p, big, sb, small, ss, y, n);
    return;
  }
#endif
#if defined(MG_MVE)
  i = mg_add_mve(p, big, sb, small, ss, y, n);
  if (i == n) return;
#endif
  mg_add_scalar(p, big + i * sb, sb, small + i * ss, ss, y, i, n);
}

/* ADD / SUB of the (big, small) operands. */
MG_KERNEL void mg_add(const mg_add_params *p, const int8_t *big,
                   const int8_t *small, int8_t *y) {
  mg_elementwise((const mg_ew *)p, mg_add_run, big, small, y);
}
/* @end */

/* @section mul */
static void mg_mul_run(const void *params, const int8_t *a, int sa,
                       const int8_t *b, int sb, int8_t *y, int n) {
  const mg_mul_params *p = (const mg_mul_params *)params;
  const int32_t m = p->mult, o1 = p->off1, o2 = p->off2;
  const int left = p->shift > 0 ? p->shift : 0;
  const int e = p->shift < 0 ? -p->shift : 0;
  int i = 0;
  if (MG_EXACT && !p->fast) {
    for (; i < n; ++i, a += sa, b += sb) {
      const int32_t v = mg_mbqm((*a + o1) * (*b + o2), m, left, e);
      y[i] = mg_clamp8(v + p->out_zp, p->act_min, p->act_max);
    }
    return;
  }
  {
    const int32_t r = (1 << (e - 1)) + p->out_zp * (1 << e);
    const int l1 = left + 1;
#if defined(MG_MVE)
    const int32_t zp = p->out_zp;
    if (sa == 1) { /* b full or broadcast (then a multiplier per call) */
      const int32_t b0 = *b + o2;
      for (; i + 4 <= n; i += 4) {
        const int32x4_t va = vaddq_n_s32(vldrbq_s32(a + i), o1);
        int32x4_t v = sb ? vmulq_s32(va, vaddq_n_s32(vldrbq_s32(b + i), o2))
                         : vmulq_n_s32(va, b0);
        v = vqrdmulhq_n_s32(vshlq_r_s32(v, left), m);
        v = vrshlq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -e);
        vstrbq_s32(y + i, mg_sat8_q(vaddq_n_s32(v, zp)));
      }
    }
    a += i * sa, b += i * sb;
#endif
    for (; i < n; ++i, a += sa, b += sb) {
      const int32_t v = mg_smmulr(((*a + o1) * (*b + o2)) << l1, m);
      y[i] = mg_sat8((v + (v >> 31) + r) >> e, 0);
    }
  }
}

MG_KERNEL void mg_mul(const mg_mul_params *p, const int8_t *a, const int8_t *b,
                   int8_t *y) {
  mg_elementwise((const mg_ew *)p, mg_mul_run, a, b, y);
}
/* @end */

/* @section sqdiff */
static int8_t mg_sqdiff_one(const mg_sqdiff_params *p, int8_t a, int8_t b) {
  const int32_t sa = mg_mbqm((a + p->off1) * (1 << 7), p->rq1.mult,
                             p->rq1.left, p->rq1.right);
  const int32_t sb = mg_mbqm((b + p->off2) * (1 << 7), p->rq2.mult,
                             p->rq2.left, p->rq2.right);
  const int32_t d = sa - sb;
  const int32_t v = mg_mbqm(d * d, p->rq_out.mult, p->rq_out.left,
                            p->rq_out.right) + p->out_zp;
  return mg_clamp8(v, -128, 127);
}

static void mg_sqdiff_run(const void *params, const int8_t *a, int sa,
                          const int8_t *b, int sb, int8_t *y, int n) {
  const mg_sqdiff_params *p = (const mg_sqdiff_params *)params;
  int i;
  for (i = 0; i < n; ++i, a += sa, b += sb) y[i] = mg_sqdiff_one(p, *a, *b);
}

MG_KERNEL void mg_sqdiff(const mg_sqdiff_params *p, const int8_t *a,
                      const int8_t *b, int8_t *y) {
  mg_elementwise((const mg_ew *)p, mg_sqdiff_run, a, b, y);
}
/* @end */

/* @section minmax */
static void mg_minmax_run(const void *params, const int8_t *a, int sa,
                          const int8_t *b, int sb, int8_t *y, int n) {
  const int sign = ((const mg_minmax_params *)params)->sign;
  int i;
  for (i = 0; i < n; ++i, a += sa, b += sb) {
    y[i] = (sign * *a <= sign * *b) ? *a : *b;
  }
}

MG_KERNEL void mg_minmax(const mg_minmax_params *p, const int8_t *a,
                      const int8_t *b, int8_t *y) {
  mg_elementwise((const mg_ew *)p, mg_minmax_run, a, b, y);
}
/* @end */

/* @section mean */
MG_KERNEL void mg_reduce(const mg_mean_params *p, const int8_t *x, int8_t *y) {
  int o, i, k;
  for (o = 0; o < p->outer; ++o) {
    for (i = 0; i < p->inner; ++i) {
      const int8_t *px = x + o * p->count * p->inner + i;
      int32_t sum = 0;
      k = 0;
#if defined(MG_MVE)
      if (p->inner == 1) {
        for (; k + 16 <= p->count; k += 16) sum = vaddvaq_s8(sum, vld1q_s8(px + k));
      }
#elif defined(MG_SIMD32)
      if (p->inner == 1) {
        for (; k + 4 <= p->count; k += 4) {
          const uint32_t v = mg_load32(px + k);
          sum = __smlad(__sxtb16(v), 0x00010001, sum);
          sum = __smlad(mg_sxtb16_ror8(v), 0x00010001, sum);
        }
      }
#endif
      for (; k < p->count; ++k) sum += px[k * p->inner];
      sum = mg_mbqm(sum - p->zp_sum, p->rq.mult, p->rq.left, p->rq.right);
      *y++ = mg_clamp8(sum + p->out_zp, -128, 127);
    }
  }
}
/* @end */
