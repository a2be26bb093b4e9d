/* Kernels of the keras_mgrade C backend (see mg_kernels.h). Sections
 * between "@section NAME" and "@end" are pasted into generated models. */
#include "mg_kernels.h"

/* @section copy */
static void mg_copy(int8_t *dst, const int8_t *src, int n) {
  int i;
  if (dst == src) return;
  if (dst < src || dst >= src + n) {
    for (i = 0; i < n; ++i) dst[i] = src[i];
  } else {
    for (i = n - 1; i >= 0; --i) dst[i] = src[i];
  }
}
/* @end */

/* @section gather */
/* dst[i] = src[index[i]]: data movement with no long contiguous runs. */
static void mg_gather(int8_t *dst, const int8_t *src, const uint16_t *index,
                      int n) {
  int i;
  for (i = 0; i < n; ++i) dst[i] = src[index[i]];
}
/* @end */

/* @section lut */
/* A unary int8 function (or a fused chain of them) as a 256-entry table
 * indexed by the input's bit pattern. */
static void mg_lut(const int8_t *table, const int8_t *x, int8_t *y, int n) {
  int i;
  for (i = 0; i < n; ++i) y[i] = table[(uint8_t)x[i]];
}
/* @end */

/* @section fill */
static void mg_fill(int8_t *dst, int8_t value, int n) {
  int i;
  for (i = 0; i < n; ++i) dst[i] = value;
}
/* @end */

/* @section fc */
static int32_t mg_dot(const int8_t *w, const int8_t *x, int n) {
  int32_t acc = 0;
  int i = 0;
#if defined(MG_MVE)
  for (; i + 16 <= n; i += 16) {
    acc = vmladavaq_s8(acc, vld1q_s8(w + i), vld1q_s8(x + i));
  }
  if (i < n) {
    mve_pred16_t p = vctp8q((uint32_t)(n - i));
    acc = vmladavaq_p_s8(acc, vld1q_z_s8(w + i, p), vld1q_z_s8(x + i, p), p);
    i = n;
  }
#endif
  for (; i < n; ++i) acc += (int32_t)w[i] * x[i];
  return acc;
}

static void mg_fc_store(const mg_fc_params *p, int k, int r, int32_t acc,
                        int8_t *y) {
  const mg_requant *q = &p->rq[k][r];
  int32_t v = mg_mbqm(acc, q->mult, q->left, q->right) + p->out_zp[k];
  y[r] = mg_clamp8(v, p->act_min[k], p->act_max[k]);
}

static void mg_fully_connected(const mg_fc_params *p, const int8_t *x, int8_t *y0,
                               int8_t *y1) {
  int b, r;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *w = p->weights;
    for (r = 0; r < p->rows; ++r, w += p->cols) {
      int32_t acc = mg_dot(w, x, p->cols);
      if (p->bias) acc += p->bias[r];
      mg_fc_store(p, 0, r, acc, y0);
      if (p->outputs > 1) mg_fc_store(p, 1, r, acc, y1);
    }
    x += p->cols;
    y0 += p->rows;
    if (y1) y1 += p->rows;
  }
}
/* @end */

/* @section dwconv */
static void mg_depthwise_conv(const mg_dwconv_params *p, const int8_t *x,
                              int8_t *y) {
  const int out_c = p->in_c * p->mult;
  int oy, ox, ic, m, ky, kx;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      for (ic = 0; ic < p->in_c; ++ic) {
        for (m = 0; m < p->mult; ++m) {
          const int oc = ic * p->mult + m;
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
          acc = mg_mbqm(acc, p->rq[oc].mult, p->rq[oc].left, p->rq[oc].right);
          y[(oy * p->out_w + ox) * out_c + oc] =
              mg_clamp8(acc + p->out_zp, p->act_min, p->act_max);
        }
      }
    }
  }
}
/* @end */

/* @section add */
static int8_t mg_add_one(const mg_add_params *p, int8_t a, int8_t b) {
  const int32_t sa = mg_mbqm((a + p->off1) * (1 << 20), p->rq1.mult,
                             p->rq1.left, p->rq1.right);
  const int32_t sb = mg_mbqm((b + p->off2) * (1 << 20), p->rq2.mult,
                             p->rq2.left, p->rq2.right);
  const int32_t raw = p->subtract ? sa - sb : sa + sb;
  const int32_t v = mg_mbqm(raw, p->rq_out.mult, p->rq_out.left,
                            p->rq_out.right) + p->out_zp;
  return mg_clamp8(v, p->act_min, p->act_max);
}

static void mg_add_bcast(const mg_add_params *p, const mg_bcast *s, const int8_t *a,
                         const int8_t *b, int8_t *y) {
  int o, i;
  for (o = 0; o < s->outer; ++o) {
    const int8_t *pa = a + o * s->a_outer;
    const int8_t *pb = b + o * s->b_outer;
    for (i = 0; i < s->inner; ++i) {
      *y++ = mg_add_one(p, pa[i * s->a_inner], pb[i * s->b_inner]);
    }
  }
}
/* @end */

/* @section mul */
static int8_t mg_mul_one(const mg_mul_params *p, int8_t a, int8_t b) {
  const int32_t prod = (a + p->off1) * (b + p->off2);
  const int32_t v = mg_mbqm(prod, p->rq.mult, p->rq.left, p->rq.right);
  return mg_clamp8(v + p->out_zp, p->act_min, p->act_max);
}

static void mg_mul_bcast(const mg_mul_params *p, const mg_bcast *s, const int8_t *a,
                         const int8_t *b, int8_t *y) {
  int o, i;
  for (o = 0; o < s->outer; ++o) {
    const int8_t *pa = a + o * s->a_outer;
    const int8_t *pb = b + o * s->b_outer;
    for (i = 0; i < s->inner; ++i) {
      *y++ = mg_mul_one(p, pa[i * s->a_inner], pb[i * s->b_inner]);
    }
  }
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

static void mg_sqdiff_bcast(const mg_sqdiff_params *p, const mg_bcast *s,
                            const int8_t *a, const int8_t *b, int8_t *y) {
  int o, i;
  for (o = 0; o < s->outer; ++o) {
    const int8_t *pa = a + o * s->a_outer;
    const int8_t *pb = b + o * s->b_outer;
    for (i = 0; i < s->inner; ++i) {
      *y++ = mg_sqdiff_one(p, pa[i * s->a_inner], pb[i * s->b_inner]);
    }
  }
}
/* @end */

/* @section minmax */
/* MINIMUM (sign = 1) and MAXIMUM (sign = -1) on raw int8 values. */
static void mg_minmax_bcast(int sign, const mg_bcast *s, const int8_t *a,
                            const int8_t *b, int8_t *y) {
  int o, i;
  for (o = 0; o < s->outer; ++o) {
    const int8_t *pa = a + o * s->a_outer;
    const int8_t *pb = b + o * s->b_outer;
    for (i = 0; i < s->inner; ++i) {
      const int8_t va = pa[i * s->a_inner], vb = pb[i * s->b_inner];
      *y++ = (sign * va <= sign * vb) ? va : vb;
    }
  }
}
/* @end */

/* @section mean */
static void mg_reduce(const mg_mean_params *p, const int8_t *x, int8_t *y) {
  int o, i, k;
  for (o = 0; o < p->outer; ++o) {
    for (i = 0; i < p->inner; ++i) {
      const int8_t *px = x + o * p->count * p->inner + i;
      int32_t sum = 0;
      for (k = 0; k < p->count; ++k) sum += px[k * p->inner];
      sum = mg_mbqm(sum - p->zp_sum, p->rq.mult, p->rq.left, p->rq.right);
      *y++ = mg_clamp8(sum + p->out_zp, -128, 127);
    }
  }
}
/* @end */
