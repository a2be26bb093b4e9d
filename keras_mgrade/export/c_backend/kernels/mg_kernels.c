/* Kernels of the keras_mgrade C backend (see mg_kernels.h). The code
 * between "@section NAME" and "@end" is pasted into generated models. */
#include "mg_kernels.h"

/* @section copy */
MG_KERNEL void mg_copy(int8_t *dst, const int8_t *src, int n) {
  int i = 0;
  if (dst == src) return;
  if (dst < src || dst >= src + n) {
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

/* @section fill */
MG_KERNEL void mg_fill(int8_t *dst, int8_t value, int n) {
  volatile int8_t *d = dst; /* a plain loop would become a memset call */
  int i;
  for (i = 0; i < n; ++i) d[i] = value;
}
/* @end */

/* @section fc */
#if MG_FC_ROWS
/* Row-major dot product of one weight row with x. */
static int32_t mg_dot(const int8_t *w, const int8_t *x, int n) {
  int32_t acc = 0;
  int i;
  for (i = 0; i < n; ++i) acc += (int32_t)w[i] * x[i];
  return acc;
}
#endif

/* Four rows of a blocked weight matrix ([cols / 16][4][16]) times x. */
static void mg_dot4(const int8_t *w, const int8_t *x, int cols,
                    int32_t *acc) {
  int c;
#if defined(MG_MVE)
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  for (c = 0; c < cols; c += 16, w += 64) {
    const int8x16_t xv = vld1q_s8(x + c);
    a0 = vmladavaq_s8(a0, vld1q_s8(w), xv);
    a1 = vmladavaq_s8(a1, vld1q_s8(w + 16), xv);
    a2 = vmladavaq_s8(a2, vld1q_s8(w + 32), xv);
    a3 = vmladavaq_s8(a3, vld1q_s8(w + 48), xv);
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
#elif defined(MG_SIMD32)
  /* Per 4 columns: x unpacked once (SXTB16 of the even and odd bytes),
   * then for each row one load, two SXTB16 and two dual MACs (SMLAD).
   * Written in assembly: the compiler's scheduling spills registers. */
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  for (c = 0; c < cols; c += 16, w += 64) {
    int j;
    for (j = 0; j < 16; j += 4) {
      uint32_t xl, xh, t, u;
      __asm(
          "ldr %[xh], [%[x]]\n\t"
          "sxtb16 %[xl], %[xh]\n\t"
          "sxtb16 %[xh], %[xh], ror #8\n\t"
          "ldr %[t], [%[w]]\n\t"
          "sxtb16 %[u], %[t]\n\t"
          "smlad %[a0], %[u], %[xl], %[a0]\n\t"
          "sxtb16 %[t], %[t], ror #8\n\t"
          "smlad %[a0], %[t], %[xh], %[a0]\n\t"
          "ldr %[t], [%[w], #16]\n\t"
          "sxtb16 %[u], %[t]\n\t"
          "smlad %[a1], %[u], %[xl], %[a1]\n\t"
          "sxtb16 %[t], %[t], ror #8\n\t"
          "smlad %[a1], %[t], %[xh], %[a1]\n\t"
          "ldr %[t], [%[w], #32]\n\t"
          "sxtb16 %[u], %[t]\n\t"
          "smlad %[a2], %[u], %[xl], %[a2]\n\t"
          "sxtb16 %[t], %[t], ror #8\n\t"
          "smlad %[a2], %[t], %[xh], %[a2]\n\t"
          "ldr %[t], [%[w], #48]\n\t"
          "sxtb16 %[u], %[t]\n\t"
          "smlad %[a3], %[u], %[xl], %[a3]\n\t"
          "sxtb16 %[t], %[t], ror #8\n\t"
          "smlad %[a3], %[t], %[xh], %[a3]"
          : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
            [xl] "=&r"(xl), [xh] "=&r"(xh), [t] "=&r"(t), [u] "=&r"(u)
          : [x] "r"(x + c + j), [w] "r"(w + j)
          : "memory");
    }
  }
  acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
#else
  int k, j;
  for (c = 0; c < cols; c += 16, w += 64) {
    for (k = 0; k < 4; ++k) {
      for (j = 0; j < 16; ++j) acc[k] += (int32_t)w[16 * k + j] * x[c + j];
    }
  }
#endif
}

/* Requantizes n accumulators (rows r0...) into output k. */
MG_INLINE void mg_fc_requant(const mg_fc_params *p, int k, const int32_t *acc,
                             int r0, int n, int8_t *y) {
  const int32_t *mult = p->mult[k] + r0;
  const int8_t *shift = p->shift[k] + r0;
  const int32_t zp = p->out_zp[k], lo = p->act_min[k], hi = p->act_max[k];
  int i = 0;
  y += r0;
  if (MG_EXACT && p->exact64) {
    for (; i < n; ++i) {
      const int s = shift[i];
      const int32_t v =
          mg_mbqm(acc[i], mult[i], s > 0 ? s : 0, s > 0 ? 0 : -s);
      y[i] = mg_clamp8(v + zp, lo, hi);
    }
    return;
  }
#if defined(MG_MVE)
  if (n == 4) {
    const int32x4_t s = vldrbq_s32(shift);
    const int32x4_t neg_right = vminq_s32(s, vdupq_n_s32(0));
    int32x4_t v = vshlq_s32(vld1q_s32(acc), vmaxq_s32(s, vdupq_n_s32(0)));
    v = vqrdmulhq_s32(v, vld1q_s32(mult));
    v = vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), vshrq_n_s32(neg_right, 31)));
    v = vaddq_n_s32(vrshlq_s32(v, neg_right), zp);
    v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(hi)), vdupq_n_s32(lo));
    vstrbq_s32(y, v);
    return;
  }
#endif
  if (p->right_only[k]) {
    /* Right shifts only (e >= 1) and the whole int8 range. */
    for (; i < n; ++i) {
      const int e = -shift[i];
      const int32_t v = mg_smmulr(acc[i] * 2, mult[i]);
      y[i] = mg_sat8((v + (v >> 31) + ((1 << e) >> 1)) >> e, zp);
    }
    return;
  }
  for (; i < n; ++i) {
    y[i] = mg_clamp8(mg_mbqm_fast(acc[i], mult[i], shift[i]) + zp, lo, hi);
  }
}

MG_KERNEL void mg_fully_connected(const mg_fc_params *p, const int8_t *x,
                               int8_t *y0, int8_t *y1) {
  int b, r, k;
  int32_t acc[4];
  for (b = 0; b < p->batches; ++b) {
    for (r = 0; r < p->rows; r += 4) {
      const int n = p->rows - r < 4 ? p->rows - r : 4;
      for (k = 0; k < n; ++k) acc[k] = p->bias ? p->bias[r + k] : 0;
      if (!MG_FC_ROWS || p->blocked) {
        mg_dot4(p->weights + r * p->cols, x, p->cols, acc);
      }
#if MG_FC_ROWS
      else {
        for (k = 0; k < n; ++k) {
          acc[k] += mg_dot(p->weights + (r + k) * p->cols, x, p->cols);
        }
      }
#endif
      mg_fc_requant(p, 0, acc, r, n, y0);
      if (p->outputs > 1) mg_fc_requant(p, 1, acc, r, n, y1);
    }
    x += p->cols;
    y0 += p->rows;
    if (y1) y1 += p->rows;
  }
}
/* @end */

/* @section dwconv */
static int8_t mg_dwconv_out(const mg_dwconv_params *p, int c, int32_t acc) {
  const int s = p->shift[c];
  const int32_t v =
      MG_EXACT && p->exact64
          ? mg_mbqm(acc, p->mult[c], s > 0 ? s : 0, s > 0 ? 0 : -s)
          : mg_mbqm_fast(acc, p->mult[c], s);
  return mg_clamp8(v + p->out_zp, p->act_min, p->act_max);
}

/* @end */

/* @section dwconv_window */
/* One output position whose window is the whole input (`window`: k_h ==
 * in_h, k_w == in_w, depth multiplier 1, folded): for each channel c,
 * bias[c] + sum over taps t of x[t][c] * w[t][c]. */
MG_KERNEL void mg_dwconv_window(const mg_dwconv_params *p, const int8_t *x,
                             int8_t *y) {
  const int channels = p->in_c, taps = p->k_h * p->k_w;
  int c = 0, t;
#if defined(MG_MVE)
  for (; c + 4 <= channels; c += 4) {
    int32x4_t a = vldrwq_s32(p->bias + c);
    for (t = 0; t < taps; ++t) {
      const int32x4_t xv = vldrbq_s32(x + t * channels + c);
      const int32x4_t wv = vldrbq_s32(p->weights + t * channels + c);
      a = vaddq_s32(a, vmulq_s32(xv, wv));
    }
    y[c] = mg_dwconv_out(p, c, vgetq_lane_s32(a, 0));
    y[c + 1] = mg_dwconv_out(p, c + 1, vgetq_lane_s32(a, 1));
    y[c + 2] = mg_dwconv_out(p, c + 2, vgetq_lane_s32(a, 2));
    y[c + 3] = mg_dwconv_out(p, c + 3, vgetq_lane_s32(a, 3));
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
#define MG_ADD_CHUNK 16

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
/* RoundingDivideByPOT on 4 lanes: `mask` is -1 for e > 0, `neg_e` = -e. */
MG_INLINE int32x4_t mg_rdbpot_q(int32x4_t v, int32_t mask, int32x4_t neg_e) {
  v = vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), vdupq_n_s32(mask)));
  return vrshlq_s32(v, neg_e);
}

static int mg_add_mve(const mg_add_params *p, const int8_t *big, int sb,
                      const int8_t *small, int ss, int8_t *y, int n) {
  const int32x4_t neg_es = vdupq_n_s32(-p->e_small);
  const int32x4_t neg_eo = vdupq_n_s32(-p->e_out);
  const int32_t ks = p->e_small ? -1 : 0;
  const int32_t kb = p->sign_big * (1 << 19), cb = kb * p->off_big;
  const int32_t cs = p->off_small * (1 << 20);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const int32x4_t b = sb ? vldrbq_s32(big + i) : vdupq_n_s32(*big);
    const int32x4_t s = ss ? vldrbq_s32(small + i) : vdupq_n_s32(*small);
    int32x4_t v = vaddq_n_s32(vshlq_n_s32(s, 20), cs);
    v = mg_rdbpot_q(vqrdmulhq_n_s32(v, p->m_small), ks, neg_es);
    v = p->sign_small > 0 ? v : vnegq_s32(v);
    v = vaddq_s32(v, vaddq_n_s32(vmulq_n_s32(b, kb), cb));
    v = mg_rdbpot_q(vqrdmulhq_n_s32(v, p->m_out), -1, neg_eo);
    v = vaddq_n_s32(v, p->out_zp);
    v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(127)), vdupq_n_s32(-128));
    vstrbq_s32(y + i, v);
  }
  return i;
}
#endif

/* n elements, operands advancing by sb and ss (0 or 1): the rescaled
 * small input for a chunk first, then the sum and the output. */
static void mg_add_run(const void *params, const int8_t *big, int sb,
                       const int8_t *small, int ss, int8_t *y, int n) {
  const mg_add_params *p = (const mg_add_params *)params;
  int32_t t[MG_ADD_CHUNK];
  const int32_t ms = p->m_small, cs = p->off_small * (1 << 21);
  const int es = p->e_small;
  const int32_t ks = es ? -1 : 0, rs = es ? 1 << (es - 1) : 0;
  const int32_t kb = p->sign_big * (1 << 20), cb = kb * p->off_big;
  const int32_t mo = p->m_out;
  const int eo = p->e_out;
  const int32_t ro = (1 << (eo - 1)) + p->out_zp * (1 << eo);
  int i, j, m;
#if MG_EXACT
  if (!p->fast) {
    mg_add_exact(p, big, sb, small, ss, y, n);
    return;
  }
#endif
#if defined(MG_MVE)
  i = mg_add_mve(p, big, sb, small, ss, y, n);
  big += i * sb, small += i * ss, y += i, n -= i;
#endif
  for (i = 0; i < n; i += MG_ADD_CHUNK) {
    m = n - i < MG_ADD_CHUNK ? n - i : MG_ADD_CHUNK;
    for (j = 0; j < m; ++j, small += ss) {
      const int32_t v = mg_rshift(mg_smmulr(*small * (1 << 21) + cs, ms), ks,
                                  rs, es);
      t[j] = p->sign_small > 0 ? 2 * v : -2 * v;
    }
    for (j = 0; j < m; ++j, big += sb) {
      const int32_t raw2 = *big * kb + cb + t[j];
      const int32_t v = mg_smmulr(raw2, mo);
      y[i + j] = mg_clamp8((v + (v >> 31) + ro) >> eo, -128, 127);
    }
  }
}

/* ADD / SUB of the (big, small) operands. */
MG_KERNEL void mg_add(const mg_add_params *p, const int8_t *big,
                   const int8_t *small, int8_t *y) {
  mg_elementwise(&p->ew, mg_add_run, big, small, y);
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
    const int32x4_t neg_e = vdupq_n_s32(-e);
    for (; i + 4 <= n; i += 4) {
      const int32x4_t va = sa ? vldrbq_s32(a + i) : vdupq_n_s32(*a);
      const int32x4_t vb = sb ? vldrbq_s32(b + i) : vdupq_n_s32(*b);
      int32x4_t v = vmulq_s32(vaddq_n_s32(va, o1), vaddq_n_s32(vb, o2));
      v = vqrdmulhq_n_s32(vshlq_s32(v, vdupq_n_s32(left)), m);
      v = vaddq_s32(v, vshrq_n_s32(v, 31));
      v = vshlq_s32(vaddq_n_s32(v, r), neg_e);
      v = vmaxq_s32(vminq_s32(v, vdupq_n_s32(127)), vdupq_n_s32(-128));
      vstrbq_s32(y + i, v);
    }
    a += i * sa, b += i * sb;
#endif
    for (; i < n; ++i, a += sa, b += sb) {
      const int32_t v = mg_smmulr(((*a + o1) * (*b + o2)) << l1, m);
      y[i] = mg_clamp8((v + (v >> 31) + r) >> e, -128, 127);
    }
  }
}

MG_KERNEL void mg_mul(const mg_mul_params *p, const int8_t *a, const int8_t *b,
                   int8_t *y) {
  mg_elementwise(&p->ew, mg_mul_run, a, b, y);
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
  mg_elementwise(&p->ew, mg_sqdiff_run, a, b, y);
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
  mg_elementwise(&p->ew, mg_minmax_run, a, b, y);
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
#endif
      for (; k < p->count; ++k) sum += px[k * p->inner];
      sum = mg_mbqm(sum - p->zp_sum, p->rq.mult, p->rq.left, p->rq.right);
      *y++ = mg_clamp8(sum + p->out_zp, -128, 127);
    }
  }
}
/* @end */
