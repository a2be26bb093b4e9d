/* Integer kernels of the keras_mgrade C backend: TFLite Micro's reference
 * int8 arithmetic (double-rounding requantization), in C99.
 *
 * The generator pastes the sections a model uses into the model's .c file,
 * so every function is static and two models linked into one firmware do
 * not clash. Each kernel has a portable loop and, behind the compiler's
 * feature macros, an Arm path: __ARM_FEATURE_SIMD32 (Cortex-M4/M7/M33:
 * SMLAD, SXTB16, SSAT) and __ARM_FEATURE_MVE (Cortex-M55/M85: Helium).
 * All paths compute the same integers.
 *
 * Requantization is tflite::MultiplyByQuantizedMultiplier:
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, m),
 *                       right)
 * For |x * 2^left| < 2^30 (checked at generation time: the "fast" paths)
 * the high multiply is one SMMULR of 2x, and the rounding division
 * (halves away from zero) is (v + (v < 0 ? -1 : 0) + 2^(e-1)) >> e, into
 * which the output zero point folds as zp * 2^e.
 */
/* @section core */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
#define MG_MVE 1
#endif
#if defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32
#include <arm_acle.h>
#define MG_SIMD32 1
#endif
#if defined(__GNUC__) || defined(__clang__)
#define MG_INLINE static inline __attribute__((always_inline))
#define MG_KERNEL static __attribute__((noinline))
/* int8 constant arrays start on a word: the Cortex-M4 kernels read weights
 * with LDRD, which faults on unaligned addresses. */
#define MG_ALIGNED __attribute__((aligned(4)))
#else
#define MG_INLINE static inline
#define MG_KERNEL static
#define MG_ALIGNED
#endif

/* Kernel variants: a generated model defines these to 0 when none of its
 * operators needs them (the code is then left out). */
#ifndef MG_EXACT
#define MG_EXACT 1 /* requantization without the 2^30 bound */
#endif
#ifndef MG_FC_ROWS
#define MG_FC_ROWS 1 /* FULLY_CONNECTED rows outside 4-row blocks */
#endif
#ifndef MG_RQ_PAIRS
#define MG_RQ_PAIRS 1 /* per-channel requantization that does not pack */
#endif
#ifndef MG_FC_UNPACK
#define MG_FC_UNPACK 8 /* words of the widest unpacked FULLY_CONNECTED input */
#endif
#ifndef MG_BCAST
#define MG_BCAST 1 /* elementwise operators that broadcast */
#endif
#ifndef MG_WINDOW_TAIL
#define MG_WINDOW_TAIL 1 /* window convolutions with channels % 4 != 0 */
#endif
#ifndef MG_CHANNELS_MAX
#define MG_CHANNELS_MAX 64 /* outputs of the largest FC or window */
#endif

/* Right shifts of negative values must be arithmetic (GCC, Clang, Arm
 * Compiler and IAR all do so); refuse to compile otherwise. */
typedef char mg_arithmetic_shift_check[((-8 >> 1) == -4) ? 1 : -1];

/* A scalar requantization: multiplier, left and right shift. */
typedef struct {
  int32_t mult;
  int8_t left;
  int8_t right;
} mg_requant;

MG_INLINE int32_t mg_clamp(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

MG_INLINE uint32_t mg_load32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

MG_INLINE void mg_store32(int8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* v saturated to [-128, 127]. */
MG_INLINE int32_t mg_ssat8(int32_t v) {
#if defined(MG_SIMD32)
  return __ssat(v, 8);
#else
  return mg_clamp(v, -128, 127);
#endif
}

MG_INLINE int8_t mg_sat8(int32_t v) { return (int8_t)mg_ssat8(v); }

/* v / 2 (rounded down) saturated to [-128, 127]: one SSAT on Arm. */
MG_INLINE int32_t mg_ssat8_half(int32_t v) {
#if defined(MG_SIMD32)
  int32_t r;
  __asm("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(v));
  return r;
#else
  return mg_clamp(v >> 1, -128, 127);
#endif
}

MG_INLINE int8_t mg_sat8_half(int32_t v) { return (int8_t)mg_ssat8_half(v); }

#if defined(MG_SIMD32)
/* SXTB16 of the value rotated by 8: the odd bytes, sign-extended. */
MG_INLINE int32_t mg_sxtb16_ror8(uint32_t v) {
  int32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul, any int32 input. */
MG_INLINE int32_t mg_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT, any int32 input. */
MG_INLINE int32_t mg_rdbpot(int32_t x, int e) {
  const int32_t mask = (int32_t)((1u << e) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0);
  return (x >> e) + (remainder > threshold);
}

/* tflite::MultiplyByQuantizedMultiplier, any int32 input; `shift` > 0 is
 * a left shift, < 0 a right shift. */
MG_INLINE int32_t mg_mbqm(int32_t x, int32_t mult, int shift) {
  const int left = shift > 0 ? shift : 0;
  return mg_rdbpot(mg_srdhm((int32_t)((uint32_t)x << left), mult),
                   shift > 0 ? 0 : -shift);
}

/* (a * b + 2^31) >> 32, i.e. SaturatingRoundingDoublingHighMul(a / 2, b)
 * for even a with |a| < 2^31. */
MG_INLINE int32_t mg_smmulr(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  int32_t r;
  __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* The fast requantization of x (|x| < 2^30) by m, right shift e >= 1,
 * plus a zero point: x2 = 2x, rz = 2^(e-1) + zp * 2^e. Unsaturated. */
MG_INLINE int32_t mg_rq(int32_t x2, int32_t m, int e, int32_t rz) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  /* With m >= 0 the sign of x2 may stand for the sign of v: they differ
   * only when v = 0, and then subtracting 1 does not change the result
   * (e >= 1). SMMLAR adds the rest: (t * 2^32 + x2 * m + 2^31) >> 32. */
  int32_t r;
  __asm("smmlar %0, %1, %2, %3"
        : "=r"(r)
        : "r"(x2), "r"(m), "r"(rz + (x2 >> 31)));
  return r >> e;
#else
  const int32_t v = mg_smmulr(x2, m);
  return (v + (v >> 31) + rz) >> e;
#endif
}

/* Per-channel requantization, packed in 32 bits per channel: the
 * multiplier lies in [2^30, 2^31), so its low 30 bits suffice; the top two
 * bits hold shift - base (0 to 3), `base` being the operator's smallest
 * shift. Operators whose channels do not pack (a zero multiplier, shifts
 * spread over more than 4 values) have base MG_RQ_WIDE and store
 * (multiplier, shift) pairs. */
#define MG_RQ_WIDE 127

MG_INLINE int32_t mg_rq_mult(const uint32_t *rq, int base, int c) {
#if MG_RQ_PAIRS
  if (base == MG_RQ_WIDE) return (int32_t)rq[2 * c];
#endif
  (void)base;
  return (int32_t)((rq[c] & 0x3FFFFFFFu) | 0x40000000u);
}

MG_INLINE int mg_rq_shift(const uint32_t *rq, int base, int c) {
#if MG_RQ_PAIRS
  if (base == MG_RQ_WIDE) return (int32_t)rq[2 * c + 1];
#endif
  return base + (int)(rq[c] >> 30);
}

/* The fast path of a packed channel whose shift is a right shift: with
 * k = -base - 1, the channel's right shift is e = k + 1 - (w >> 30) >= 1.
 * Returns 2 * (requantized + zp) + 1 rounded down to an even or odd
 * integer whose half (rounded down) is the result: RoundingDivideByPOT(v,
 * e) = ((v - (v < 0)) >> (e - 1)) + 1) >> 1, and zp2 = 2 * zp + 1. */
MG_INLINE int32_t mg_rq_channel(int32_t acc, uint32_t w, int k, int32_t zp2) {
  const int32_t m = (int32_t)((w & 0x3FFFFFFFu) | 0x40000000u);
  const int32_t v = mg_smmulr(acc * 2, m);
  return ((v + (v >> 31)) >> (k - (int)(w >> 30))) + zp2;
}

/* A channel's requantization, any accumulator and shift, clamped. */
MG_INLINE int32_t mg_rq_exact(int32_t acc, const uint32_t *rq, int base,
                              int c, int32_t zp, int32_t lo, int32_t hi) {
  const int32_t v =
      mg_mbqm(acc, mg_rq_mult(rq, base, c), mg_rq_shift(rq, base, c)) + zp;
  return mg_clamp(v, lo, hi);
}

#if defined(MG_MVE)
/* Saturation to [-128, 127]. */
MG_INLINE int32x4_t mg_sat8_q(int32x4_t v) {
  return vshrq_n_s32(vqshlq_n_s32(v, 24), 24);
}

/* Four packed channels with right shifts (fast path), plus zero point,
 * saturated. */
MG_INLINE int32x4_t mg_rq_channel_q(int32x4_t acc, const uint32_t *rq,
                                    int base, int32_t zp) {
  const uint32x4_t packed = vld1q_u32(rq);
  const int32x4_t mult = vreinterpretq_s32_u32(
      vorrq_n_u32(vbicq_n_u32(packed, 0xC0000000u), 0x40000000u));
  const int32x4_t neg_right =
      vaddq_n_s32(vreinterpretq_s32_u32(vshrq_n_u32(packed, 30)), base);
  int32x4_t v = vqrdmulhq_s32(acc, mult);
  v = vrshlq_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), neg_right);
  return mg_sat8_q(vaddq_n_s32(v, zp));
}

/* mg_rq on four lanes, from x (not 2x): e >= 1, rz as in mg_rq. */
MG_INLINE int32x4_t mg_rq_q(int32x4_t x, int32_t m, int e, int32_t rz) {
  const int32x4_t v = vqrdmulhq_n_s32(x, m);
  return vshlq_r_s32(vaddq_n_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), rz), -e);
}
#endif
/* @end */

/* @section lut */
/* A unary int8 operator (or a fused group of them) as a table over the
 * inputs [lo, lo + last] where it changes, in input order; inputs below
 * read entry 0, inputs above the last entry. */
typedef struct {
  const int8_t *table;
  int16_t n;
  int16_t lo;
  int16_t last;
} mg_lut_params;
/* @end */

/* @section requant */
/* The per-channel requantization of FULLY_CONNECTED and of the window
 * convolution, and an optional unary operator after it (a 256-entry table
 * in input order). `fast`: every shift is a right shift, the accumulators
 * stay below 2^30 and the activation range is the whole int8 range. */
typedef struct {
  const uint32_t *rq;  /* per channel, see mg_rq_mult */
  const int8_t *table; /* NULL: no unary operator */
  int8_t base;         /* see mg_rq_mult */
  int8_t fast;
  int8_t zp, act_min, act_max;
} mg_channels_q;
/* @end */

/* @section fc */
/* FULLY_CONNECTED with per-channel int8 weights. The input zero point is
 * folded into `bias` at generation time (bias - zp_in * sum of the row).
 * Weights are in blocks of 4 rows x 16 columns ([rows / 4][cols / 16][4]
 * [16]), then the last columns of each group of rows ([rows / 4][4][cols %
 * 16]), then the last rows % 4 rows row-major. */
typedef struct {
  const int8_t *weights;
  const int32_t *bias; /* NULL: no bias */
  mg_channels_q q;
  int16_t rows;
  int16_t cols;
  int16_t batches;
} mg_fc_params;
/* @end */

/* @section window */
/* DEPTHWISE_CONV_2D with one output position whose window is the whole
 * input (depth multiplier 1, no padding): y[c] = bias[c] + sum over taps t
 * of x[t][c] * w[t][c]. The input is the concatenation of a FIFO state
 * (its `split` rows) and fresh rows; the kernel may also write the next
 * FIFO (the window's last `split` rows) over the old one as it reads it.
 * Weights: [channels / 4][taps][4], then [taps][channels % 4]. */
typedef struct {
  const int8_t *weights;
  const int32_t *bias; /* folded input zero point */
  mg_channels_q q;
  int16_t channels, taps, split;
} mg_window_params;
/* @end */

/* @section dwconv_general */
/* DEPTHWISE_CONV_2D, NHWC, batch 1, per-channel int8 weights
 * [1][k_h][k_w][channels]. With `folded`, every tap reads the input (no
 * padding) and the input zero point is folded into `bias`. */
typedef struct {
  const int8_t *weights;
  const int32_t *bias;
  const uint32_t *rq; /* per channel, see mg_rq_mult */
  int16_t in_h, in_w, in_c;
  int16_t out_h, out_w;
  int16_t k_h, k_w;
  int16_t in_offset; /* -zp_in, used when not folded */
  int8_t mult_depth;
  int8_t stride_h, stride_w;
  int8_t dil_h, dil_w;
  int8_t pad_top, pad_left;
  int8_t folded;
  int8_t rq_base;
  int8_t out_zp, act_min, act_max;
} mg_dwconv_params;
/* @end */

/* @section bcast */
/* The iteration of a broadcasting elementwise operator: `outer` blocks of
 * `inner` elements; each operand advances by its strides (0: broadcast). */
typedef struct {
  int16_t outer, inner;
  int16_t a_inner, a_outer;
  int16_t b_inner, b_outer;
} mg_bcast;

/* The first members of every elementwise operator's parameters: for
 * broadcasting operators the iteration (else NULL), and the element count.
 * The parameter structs start with MG_EW_HEAD and are read through a
 * `const mg_ew *` by mg_elementwise. */
#define MG_EW_HEAD       \
  const mg_bcast *shape; \
  int16_t n
typedef struct {
  MG_EW_HEAD;
} mg_ew;
/* @end */

/* @section add_math */
/* ADD and SUB (int8, TFLite's left shift of 20), with the operands
 * reordered at generation time: `big` is the input with the larger scale,
 * whose rescaled value is exactly (big - zp) * 2^19 (multiplier 1/2), and
 * raw = sign_big * that + sign_small * RoundingDivideByPOT(
 *   SaturatingRoundingDoublingHighMul((small - zp) * 2^20, m_small), e_small).
 * `fast`: both shifts are at least 1, zp_out * 2^e_out fits and the
 * activation range is the whole int8 range. */
typedef struct {
  int32_t m_small, m_out;
  int16_t off_big, off_small; /* -zero points */
  int8_t sign_big, sign_small;
  int8_t e_small, e_out;
  int8_t out_zp, act_min, act_max;
  int8_t fast;
} mg_add_q;
/* @end */

/* @section add */
typedef struct {
  MG_EW_HEAD;
  mg_add_q q;
} mg_add_params;
/* @end */

/* @section mul_math */
/* MUL (int8). `fast`: |(a - zp_a)(b - zp_b)| * 2^left < 2^30, the shift
 * right is at least 1, zp_out * 2^e fits and the activation range is the
 * whole int8 range. */
typedef struct {
  int32_t mult;
  int16_t off1, off2;
  int8_t shift; /* TFLite shift: > 0 left, < 0 right */
  int8_t out_zp, act_min, act_max;
  int8_t fast;
} mg_mul_q;
/* @end */

/* @section mul */
typedef struct {
  MG_EW_HEAD;
  mg_mul_q q;
} mg_mul_params;
/* @end */

/* @section sqdiff */
/* SQUARED_DIFFERENCE (int8, left shift 7). */
typedef struct {
  MG_EW_HEAD;
  mg_requant rq1, rq2, rq_out;
  int16_t off1, off2;
  int8_t out_zp;
} mg_sqdiff_params;
/* @end */

/* @section minmax */
/* MINIMUM (sign 1) and MAXIMUM (sign -1) of raw int8 values. */
typedef struct {
  MG_EW_HEAD;
  int8_t sign;
} mg_minmax_params;
/* @end */

/* @section mean_math */
/* MEAN and SUM: the requantization of sum - zp_in * count. */
typedef struct {
  mg_requant rq;
  int32_t zp_sum; /* zp_in * count */
  int8_t out_zp;
} mg_mean_q;
/* @end */

/* @section mean */
/* MEAN and SUM over `count` elements `inner` apart, for each of
 * `outer` x `inner` outputs. */
typedef struct {
  mg_mean_q q;
  int16_t outer, count, inner;
} mg_mean_params;
/* @end */

/* @section norm */
/* A normalization over n elements, TFLite's operators fused: with
 * `centered` (layer norm) d = SUB(x, MEAN(x)), else (RMS norm) d = x;
 * then y = MUL(d, RSQRT(MEAN(MUL(d, d)))), every operator rounded to int8
 * as TFLite rounds it. x is SUB's big operand. */
typedef struct {
  const int8_t *rsqrt; /* RSQRT table, 256 entries in input order */
  int16_t n;
  int8_t centered;
  mg_mean_q mean;
  mg_add_q sub;
  mg_mul_q square;
  mg_mean_q var;
  mg_mul_q scale;
} mg_norm_params;
/* @end */
