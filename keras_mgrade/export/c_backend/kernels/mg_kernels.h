/* Integer kernels of the keras_mgrade C backend: TFLite Micro's reference
 * int8 arithmetic (double-rounding requantization), in C99.
 *
 * The generator pastes the sections a model uses into the model's .c file,
 * so every function is static and two models linked into one firmware do
 * not clash. Each kernel has a portable loop and, behind the compiler's
 * feature macros, an Arm path: __ARM_FEATURE_SIMD32 (Cortex-M4/M7/M33:
 * SMLAD, SXTB16) and __ARM_FEATURE_MVE (Cortex-M55/M85: Helium). All
 * paths compute the same integers.
 *
 * Requantization is tflite::MultiplyByQuantizedMultiplier:
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^left, m),
 *                       right)
 * For |x * 2^left| < 2^30 (checked at generation time, "fast" below)
 * the high multiply is one SMMULR of 2x, and the rounding division
 * (halves away from zero) is (v + (v < 0 ? -1 : 0) + 2^(e-1)) >> e.
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
#define MG_ALIGN4 __attribute__((aligned(4)))
#define MG_INLINE static inline __attribute__((always_inline))
#define MG_KERNEL static __attribute__((noinline))
#else
#define MG_ALIGN4
#define MG_INLINE static inline
#define MG_KERNEL static
#endif

/* Kernel variants: a generated model defines these to 0 when none of its
 * operators needs them (the code is then left out). */
#ifndef MG_EXACT
#define MG_EXACT 1 /* requantization without the 2^30 bound */
#endif
#ifndef MG_FC_ROWS
#define MG_FC_ROWS 1 /* FULLY_CONNECTED weights not in 4-row blocks */
#endif
#ifndef MG_RQ_PAIRS
#define MG_RQ_PAIRS 1 /* per-channel requantization that does not pack */
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

MG_INLINE int8_t mg_clamp8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

MG_INLINE uint32_t mg_load32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

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

/* tflite::MultiplyByQuantizedMultiplier, any int32 input. */
MG_INLINE int32_t mg_mbqm(int32_t x, int32_t mult, int left, int right) {
  return mg_rdbpot(mg_srdhm((int32_t)((uint32_t)x << left), mult), right);
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

/* RoundingDivideByPOT(x, e) for |x| < 2^30, e >= 0, with the sign
 * correction `mask` (-1 when e > 0, else 0) and `round` (2^(e-1) or 0)
 * computed once per loop. */
MG_INLINE int32_t mg_rshift(int32_t x, int32_t mask, int32_t round, int e) {
  return (x + ((x >> 31) & mask) + round) >> e;
}

/* v + zp saturated to int8. */
MG_INLINE int8_t mg_sat8(int32_t v, int32_t zp) {
#if defined(MG_SIMD32)
  return (int8_t)__ssat(v + zp, 8);
#else
  return mg_clamp8(v + zp, -128, 127);
#endif
}

/* Requantization with a right shift (shift < 0) to the whole int8 range. */
MG_INLINE int8_t mg_rq_right(int32_t acc, int32_t m, int shift, int32_t zp) {
  const int32_t v = mg_smmulr(acc * 2, m);
  return mg_sat8((v + (v >> 31) + (1 << (-shift - 1))) >> -shift, zp);
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

#if defined(MG_MVE)
/* Four packed per-channel requantizations (fast path), zero point and
 * clamp. */
MG_INLINE int32x4_t mg_requant_q(int32x4_t acc, const uint32_t *rq, int base,
                                 int32_t zp, int32_t lo, int32_t hi) {
  const uint32x4_t packed = vld1q_u32(rq);
  const int32x4_t mult = vreinterpretq_s32_u32(
      vorrq_n_u32(vbicq_n_u32(packed, 0xC0000000u), 0x40000000u));
  const int32x4_t s =
      vaddq_n_s32(vreinterpretq_s32_u32(vshrq_n_u32(packed, 30)), base);
  const int32x4_t neg_right = vminq_s32(s, vdupq_n_s32(0));
  int32x4_t v = vshlq_s32(acc, vmaxq_s32(s, vdupq_n_s32(0)));
  v = vqrdmulhq_s32(v, mult);
  v = vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), vshrq_n_s32(neg_right, 31)));
  v = vaddq_n_s32(vrshlq_s32(v, neg_right), zp);
  return vmaxq_s32(vminq_s32(v, vdupq_n_s32(hi)), vdupq_n_s32(lo));
}
#endif

#if defined(MG_MVE)
/* Saturation to [-128, 127]. */
MG_INLINE int32x4_t mg_sat8_q(int32x4_t v) {
  return vshrq_n_s32(vqshlq_n_s32(v, 24), 24);
}

/* mg_requant_q when every shift is a right shift and the range is the
 * whole int8 range. */
MG_INLINE int32x4_t mg_requant_right_q(int32x4_t acc, const uint32_t *rq,
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
#endif

/* MultiplyByQuantizedMultiplier for |x * 2^shift| < 2^30. */
MG_INLINE int32_t mg_mbqm_fast(int32_t x, int32_t mult, int shift) {
  int32_t v;
  if (shift > 0) x = (int32_t)((uint32_t)x << shift);
  v = mg_smmulr(x * 2, mult);
  if (shift < 0) v = (v + (v >> 31) + (1 << (-shift - 1))) >> -shift;
  return v;
}
/* @end */

/* @section fc */
/* FULLY_CONNECTED with per-channel int8 weights. The input zero point is
 * folded into `bias` at generation time (bias - zp_in * sum of the row).
 * Weights are row-major, or with `blocked` in blocks of 4 rows x 16
 * columns ([rows / 4][cols / 16][4][16], then [4][cols % 16] for the last
 * columns of each group of rows, then the last rows % 4 rows row-major)
 * so that every path reads them in order. One accumulator feeds one or two requantized outputs: two
 * TFLite operators on the same input, weights and bias that differ only
 * in output quantization (the candidate activation of MinGRU). */
typedef struct {
  const int8_t *weights;
  const int32_t *bias;
  const uint32_t *rq[2]; /* per row, see mg_rq_mult */
  int16_t rows;
  int16_t cols;
  int16_t batches;
  int8_t outputs;
  int8_t blocked;
  int8_t exact64; /* accumulators may reach 2^30: generic requantization */
  int8_t rq_base[2];
  int8_t right_only[2]; /* all shifts right (>= 1), activation = int8 range */
  int8_t out_zp[2];
  int8_t act_min[2];
  int8_t act_max[2];
} mg_fc_params;
/* @end */

/* @section dwconv */
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
  int8_t window; /* one output, window = whole input: channel loop */
  int8_t exact64;
  int8_t right_only; /* all shifts right, activation = int8 range */
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
#define MG_EW_HEAD     \
  const mg_bcast *shape; \
  int16_t n
typedef struct {
  MG_EW_HEAD;
} mg_ew;
/* @end */

/* @section add */
/* ADD and SUB (int8, TFLite's left shift of 20), with the operands
 * reordered at generation time: `big` is the input with the larger scale,
 * whose rescaled value is exactly (big - zp) * 2^19 (multiplier 1/2), and
 * raw = sign_big * that + sign_small * RoundingDivideByPOT(
 *   SaturatingRoundingDoublingHighMul((small - zp) * 2^20, m_small), e_small).
 * `fast`: the output shift is at least 1, zp_out * 2^e_out fits and the
 * activation range is the whole int8 range. */
typedef struct {
  MG_EW_HEAD;
  int16_t off_big; /* -zero point */
  int32_t m_small, m_out;
  int16_t off_small;
  int8_t e_small, e_out;
  int8_t sign_big, sign_small;
  int8_t out_zp, act_min, act_max;
  int8_t fast;
} mg_add_params;
/* @end */

/* @section mul */
/* MUL (int8). `fast`: |(a - zp_a)(b - zp_b)| * 2^left < 2^30, the shift
 * right is at least 1, zp_out * 2^e fits and the activation range is the
 * whole int8 range. */
typedef struct {
  MG_EW_HEAD;
  int16_t off1;
  int32_t mult;
  int16_t off2;
  int8_t shift; /* TFLite shift: > 0 left, < 0 right */
  int8_t out_zp, act_min, act_max;
  int8_t fast;
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

/* @section lut_range */
/* A table stored only over the inputs [lo, lo + count) where its value
 * changes; inputs below read entry 0, inputs above the last entry. */
typedef struct {
  const int8_t *table;
  int16_t n;
  int16_t lo;
  int16_t last; /* count - 1 */
} mg_lut_range_params;
/* @end */

/* @section mean */
/* MEAN and SUM over `count` elements `inner` apart, for each of
 * `outer` x `inner` outputs. */
typedef struct {
  mg_requant rq;
  int32_t zp_sum; /* zp_in * count */
  int16_t outer, count, inner;
  int8_t out_zp;
} mg_mean_params;
/* @end */
