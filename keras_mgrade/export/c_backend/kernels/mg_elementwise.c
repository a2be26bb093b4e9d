/* Elementwise operators, reductions and the fused normalization (see
 * mg_kernels.h). */
#include "mg_kernels.h"

/* @section bcast */
typedef void (*mg_run)(const void *q, const int8_t *a, int sa,
                       const int8_t *b, int sb, int8_t *y, int n);

/* Runs an elementwise operator (constants `q`) over its shape. */
static void mg_elementwise(const mg_ew *e, const void *q, mg_run run,
                           const int8_t *a, const int8_t *b, int8_t *y) {
#if MG_BCAST
  const mg_bcast *s = e->shape;
  int o;
  if (s != NULL) {
    for (o = 0; o < s->outer; ++o) {
      run(q, a + o * s->a_outer, s->a_inner, b + o * s->b_outer,
          s->b_inner, y + o * s->inner, s->inner);
    }
    return;
  }
#endif
  run(q, a, 1, b, 1, y, e->n);
}
/* @end */

/* @section add_math */
/* The fast path's constants: the small operand's rescaling
 * mg_rq(small * 2^21 + cs, ms, es, rs) times ks (+-2), the big operand's
 * big * kb + cb, the output's mg_rq(..., mo, eo, ro). */
typedef struct {
  int32_t cs, ms, rs, ks, kb, cb, mo, ro;
  int es, eo;
} mg_add_k;

MG_INLINE mg_add_k mg_add_consts(const mg_add_q *q) {
  mg_add_k k;
  k.cs = q->off_small * (1 << 21);
  k.ms = q->m_small;
  k.es = q->e_small;
  k.rs = 1 << (q->e_small - 1);
  k.ks = 2 * q->sign_small;
  k.kb = q->sign_big * (1 << 20);
  k.cb = k.kb * q->off_big;
  k.mo = q->m_out;
  k.eo = q->e_out;
  k.ro = (1 << (q->e_out - 1)) + q->out_zp * (1 << q->e_out);
  return k;
}

/* The small operand's part of the sum, times 2. */
MG_INLINE int32_t mg_add_small(const mg_add_k *k, int32_t small) {
  return k->ks * mg_rq(small * (1 << 21) + k->cs, k->ms, k->es, k->rs);
}

/* The output (unsaturated) from the big operand and the small part. */
MG_INLINE int32_t mg_add_out(const mg_add_k *k, int32_t big, int32_t part) {
  return mg_rq(big * k->kb + k->cb + part, k->mo, k->eo, k->ro);
}

#if MG_EXACT
/* One ADD/SUB, any shifts and activation range. */
MG_INLINE int8_t mg_add_exact(const mg_add_q *q, int32_t big, int32_t small) {
  const int32_t vb = q->sign_big * (big + q->off_big) * (1 << 19);
  const int32_t vs =
      mg_mbqm((small + q->off_small) * (1 << 20), q->m_small, -q->e_small);
  const int32_t raw = vb + q->sign_small * vs;
  const int32_t v = mg_mbqm(raw, q->m_out, -q->e_out) + q->out_zp;
  return (int8_t)mg_clamp(v, q->act_min, q->act_max);
}
#endif
/* @end */

/* @section add */
#if defined(MG_MVE)
/* The fast path on 4 lanes, big operand not broadcast; returns the
 * elements done. */
static int mg_add_mve(const mg_add_q *q, const int8_t *big,
                      const int8_t *small, int ss, int8_t *y, int n) {
  /* Locals: the int8 stores could alias the constants otherwise. */
  const int32_t kb = q->sign_big * (1 << 19), cb = kb * q->off_big;
  const int32_t sign = q->sign_small, off = q->off_small * (1 << 20);
  const int32_t ms = q->m_small, mo = q->m_out;
  const int es = q->e_small, eo = q->e_out;
  const int32_t ro = (1 << (eo - 1)) + q->out_zp * (1 << eo);
  const int32x4_t scale = vdupq_n_s32(1 << 20);
  int32x4_t s = vdupq_n_s32(*small);
  int i;
  for (i = 0; i + 4 <= n; i += 4) {
    int32x4_t v;
    if (ss) s = vldrbq_s32(small + i);
    /* the small part: RoundingDivideByPOT(SRDHM(.., ms), es), rounded
     * half up after the sign fix */
    v = vqrdmulhq_n_s32(vmlasq_n_s32(s, scale, off), ms);
    v = vrshlq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), -es);
    v = vmlaq_n_s32(vmulq_n_s32(v, sign), vldrbq_s32(big + i), kb);
    v = mg_rq_q(vaddq_n_s32(v, cb), mo, eo, ro);
    vstrbq_s32(y + i, mg_sat8_q(v));
  }
  return i;
}
#endif

#if defined(MG_SIMD32) && !defined(MG_MVE)
#define MG_ADD_ASM 1
/* The fast path on contiguous operands (n >= 1), mg_add_small and
 * mg_add_out in assembly (mg_rq with SMMLAR): 17 instructions an element,
 * the two rounding constants read from the stack. */
static void mg_add_dsp(const mg_add_k *constants, const int8_t *big,
                       const int8_t *small, int8_t *y, int n) {
  const mg_add_k k = *constants;
  int32_t t0, t1;
  __asm volatile("1:\n\t"
        "ldrsb %[t0], [%[ps]], #1\n\t"
        "add %[t0], %[cs], %[t0], lsl #21\n\t"
        "ldr %[t1], %[rs]\n\t"
        "add %[t1], %[t1], %[t0], asr #31\n\t"
        "smmlar %[t0], %[t0], %[ms], %[t1]\n\t"
        "asr %[t0], %[t0], %[es]\n\t"
        "ldrsb %[t1], [%[pb]], #1\n\t"
        "mla %[t1], %[t1], %[kb], %[cb]\n\t"
        "mla %[t0], %[t0], %[ks], %[t1]\n\t"
        "ldr %[t1], %[ro]\n\t"
        "add %[t1], %[t1], %[t0], asr #31\n\t"
        "smmlar %[t0], %[t0], %[mo], %[t1]\n\t"
        "asr %[t0], %[t0], %[eo]\n\t"
        "ssat %[t0], #8, %[t0]\n\t"
        "strb %[t0], [%[py]], #1\n\t"
        "subs %[n], #1\n\t"
        "bne 1b\n\t"
        : [t0] "=&r"(t0), [t1] "=&r"(t1), [pb] "+r"(big), [ps] "+r"(small),
          [py] "+r"(y), [n] "+r"(n)
        : [cs] "r"(k.cs), [ms] "r"(k.ms), [es] "r"(k.es), [kb] "r"(k.kb),
          [cb] "r"(k.cb), [ks] "r"(k.ks), [mo] "r"(k.mo), [eo] "r"(k.eo),
          [rs] "m"(k.rs), [ro] "m"(k.ro)
        : "memory", "cc");
}
#endif

static void mg_add_run(const void *constants, const int8_t *big, int sb,
                       const int8_t *small, int ss, int8_t *y, int n) {
  const mg_add_q *q = (const mg_add_q *)constants;
  int i = 0;
  (void)sb, (void)ss; /* unused without MG_BCAST */
#if MG_EXACT
  if (!q->fast) {
    for (; i < n; ++i, big += sb, small += ss) {
      y[i] = mg_add_exact(q, *big, *small);
    }
    return;
  }
#endif
  {
    const mg_add_k k = mg_add_consts(q);
#if defined(MG_MVE)
    if (sb == 1 && ss <= 1) i = mg_add_mve(q, big, small, ss, y, n);
#endif
#if MG_BCAST
    if (ss == 0) { /* a broadcast small operand: its part once */
      const int32_t part = mg_add_small(&k, *small);
      for (; i < n; ++i) y[i] = mg_sat8(mg_add_out(&k, big[i * sb], part));
    } else if (sb != 1 || ss != 1) {
      for (; i < n; ++i) {
        y[i] = mg_sat8(
            mg_add_out(&k, big[i * sb], mg_add_small(&k, small[i * ss])));
      }
    } else
#endif
    { /* both operands contiguous */
#if defined(MG_ADD_ASM)
      if (n > i) mg_add_dsp(&k, big + i, small + i, y + i, n - i);
#else
      for (; i < n; ++i) {
        y[i] = mg_sat8(mg_add_out(&k, big[i], mg_add_small(&k, small[i])));
      }
#endif
    }
  }
}

/* ADD / SUB of the (big, small) operands. */
MG_KERNEL void mg_add(const mg_add_params *p, const int8_t *big,
                      const int8_t *small, int8_t *y) {
  mg_elementwise((const mg_ew *)p, &p->q, mg_add_run, big, small, y);
}
/* @end */

/* @section mul_math */
/* The fast path's constants: mg_rq(((a + o1) * (b + o2)) << l1, m, e, r). */
typedef struct {
  int32_t o1, o2, m, r;
  int l1, e;
} mg_mul_k;

MG_INLINE mg_mul_k mg_mul_consts(const mg_mul_q *q) {
  mg_mul_k k;
  k.o1 = q->off1;
  k.o2 = q->off2;
  k.m = q->mult;
  k.l1 = (q->shift > 0 ? q->shift : 0) + 1;
  k.e = q->shift < 0 ? -q->shift : 0;
  k.r = (1 << (k.e - 1)) + q->out_zp * (1 << k.e);
  return k;
}

/* One fast MUL, unsaturated. */
MG_INLINE int32_t mg_mul_fast(const mg_mul_k *k, int32_t a, int32_t b) {
  return mg_rq(((a + k->o1) * (b + k->o2)) << k->l1, k->m, k->e, k->r);
}

MG_INLINE void mg_mul_run(const void *constants, const int8_t *a, int sa,
                       const int8_t *b, int sb, int8_t *y, int n) {
  const mg_mul_q *q = (const mg_mul_q *)constants;
  int i = 0;
#if MG_EXACT
  if (!q->fast) {
    for (; i < n; ++i, a += sa, b += sb) {
      const int32_t v =
          mg_mbqm((*a + q->off1) * (*b + q->off2), q->mult, q->shift);
      y[i] = (int8_t)mg_clamp(v + q->out_zp, q->act_min, q->act_max);
    }
    return;
  }
#endif
  {
    const mg_mul_k k = mg_mul_consts(q);
#if defined(MG_MVE)
    if (sa == 1 && sb <= 1) { /* b full or broadcast */
      const int32_t b0 = *b + k.o2;
      for (; i + 4 <= n; i += 4) {
        const int32x4_t va = vaddq_n_s32(vldrbq_s32(a + i), k.o1);
        int32x4_t v = sb ? vmulq_s32(va, vaddq_n_s32(vldrbq_s32(b + i), k.o2))
                         : vmulq_n_s32(va, b0);
        v = mg_rq_q(vshlq_r_s32(v, k.l1 - 1), k.m, k.e, k.r);
        vstrbq_s32(y + i, mg_sat8_q(v));
      }
    }
    a += i * sa, b += i * sb;
#endif
    for (; i < n; ++i, a += sa, b += sb) {
      y[i] = mg_sat8(mg_mul_fast(&k, *a, *b));
    }
  }
}

/* @end */

/* @section mul */
MG_KERNEL void mg_mul(const mg_mul_params *p, const int8_t *a,
                      const int8_t *b, int8_t *y) {
  mg_elementwise((const mg_ew *)p, &p->q, mg_mul_run, a, b, y);
}
/* @end */

/* @section sqdiff */
static int8_t mg_sqdiff_one(const mg_sqdiff_params *p, int8_t a, int8_t b) {
  const int32_t sa = mg_mbqm((a + p->off1) * (1 << 7), p->rq1.mult,
                             p->rq1.left - p->rq1.right);
  const int32_t sb = mg_mbqm((b + p->off2) * (1 << 7), p->rq2.mult,
                             p->rq2.left - p->rq2.right);
  const int32_t d = sa - sb;
  const int32_t v = mg_mbqm(d * d, p->rq_out.mult,
                            p->rq_out.left - p->rq_out.right);
  return mg_sat8(v + p->out_zp);
}

static void mg_sqdiff_run(const void *params, const int8_t *a, int sa,
                          const int8_t *b, int sb, int8_t *y, int n) {
  const mg_sqdiff_params *p = (const mg_sqdiff_params *)params;
  int i;
  for (i = 0; i < n; ++i, a += sa, b += sb) y[i] = mg_sqdiff_one(p, *a, *b);
}

MG_KERNEL void mg_sqdiff(const mg_sqdiff_params *p, const int8_t *a,
                         const int8_t *b, int8_t *y) {
  mg_elementwise((const mg_ew *)p, p, mg_sqdiff_run, a, b, y);
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
  mg_elementwise((const mg_ew *)p, p, mg_minmax_run, a, b, y);
}
/* @end */

/* @section mean_math */
/* The sum of n contiguous int8 values. */
static int32_t mg_sum8(const int8_t *x, int n) {
  int32_t sum = 0;
  int k = 0;
#if defined(MG_MVE)
  for (; k + 16 <= n; k += 16) sum = vaddvaq_s8(sum, vld1q_s8(x + k));
#elif defined(MG_SIMD32)
  uint32_t biased = 0; /* USADA8 sums unsigned bytes: x ^ 0x80 is x + 128 */
  for (; k + 4 <= n; k += 4) {
    biased = __usada8(mg_load32(x + k) ^ 0x80808080u, 0, biased);
  }
  sum = (int32_t)biased - 128 * k;
#endif
  for (; k < n; ++k) sum += x[k];
  return sum;
}

/* MEAN or SUM of a sum: requantized, plus zero point, saturated. */
MG_INLINE int8_t mg_mean_one(const mg_mean_q *q, int32_t sum) {
  const int32_t v = mg_mbqm(sum - q->zp_sum, q->rq.mult,
                            q->rq.left - q->rq.right);
  return mg_sat8(v + q->out_zp);
}

/* @end */

/* @section mean */
MG_KERNEL void mg_reduce(const mg_mean_params *p, const int8_t *x,
                         int8_t *y) {
  int o, i, k;
  for (o = 0; o < p->outer; ++o) {
    for (i = 0; i < p->inner; ++i) {
      const int8_t *px = x + o * p->count * p->inner + i;
      int32_t sum = 0;
      if (p->inner == 1) {
        sum = mg_sum8(px, p->count);
      } else {
        for (k = 0; k < p->count; ++k) sum += px[k * p->inner];
      }
      *y++ = mg_mean_one(&p->q, sum);
    }
  }
}
/* @end */

/* @section norm */
MG_KERNEL void mg_norm(const mg_norm_params *p, const int8_t *x, int8_t *y) {
  const mg_mul_k sq = mg_mul_consts(&p->square);
  const int n = p->n;
  const int8_t *d = x;
  int32_t sum = 0, v, t;
  int8_t r;
  int i;
  if (p->centered) { /* d = SUB(x, MEAN(x)) into y; x is SUB's big operand,
                        its sign 1, the mean's part a constant */
    const mg_add_k k = mg_add_consts(&p->sub);
    const int32_t mean = mg_mean_one(&p->mean, mg_sum8(x, n));
    const int32_t c = k.cb + mg_add_small(&k, mean);
    for (i = 0; i < n; ++i) {
      v = mg_ssat8(mg_rq(x[i] * (1 << 20) + c, k.mo, k.eo, k.ro));
      y[i] = (int8_t)v;
      t = v + sq.o1;
      sum += mg_ssat8(mg_rq((t * t) << sq.l1, sq.m, sq.e, sq.r));
    }
    d = y;
  } else {
    for (i = 0; i < n; ++i) {
      t = x[i] + sq.o1;
      sum += mg_ssat8(mg_rq((t * t) << sq.l1, sq.m, sq.e, sq.r));
    }
  }
  r = p->rsqrt[128 + mg_mean_one(&p->var, sum)];
  mg_mul_run(&p->scale, d, 1, &r, 0, y, n);
}
/* @end */
