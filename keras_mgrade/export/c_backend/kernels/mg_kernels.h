/* Integer kernels of the keras_mgrade C backend: TFLite Micro's reference
 * int8 semantics (double-rounding requantization), plain C99.
 *
 * The generator pastes the parts a model uses into the model's .c file, so
 * every function here is static: two models linked into one firmware do
 * not clash. Faster paths for Arm cores sit behind __ARM_FEATURE_DSP
 * (Cortex-M4/M7/M33: SMLAD) and __ARM_FEATURE_MVE (Cortex-M55/M85:
 * Helium); they compute the same integers.
 *
 * Requantization, as tflite::MultiplyByQuantizedMultiplier:
 *   y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2^ls, m), rs)
 * with ls = max(shift, 0) and rs = max(-shift, 0).
 */
/* @section core */
#include <stdint.h>
#include <stddef.h>

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>
#define MG_MVE 1
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MG_DSP 1
#endif

/* Right shifts of negative values must be arithmetic (GCC, Clang, Arm
 * Compiler and IAR all do so); refuse to compile otherwise. */
typedef char mg_arithmetic_shift_check[((-8 >> 1) == -4) ? 1 : -1];

#define MG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A requantization: multiplier and the left and right shifts. */
typedef struct {
  int32_t mult;
  int8_t left;
  int8_t right;
} mg_requant;

static inline int8_t mg_clamp8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b + 2^30) >> 31. */
static inline int32_t mg_srdhm(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: halves away from zero. */
static inline int32_t mg_rdbpot(int32_t x, int e) {
  const int32_t mask = (int32_t)((1u << e) - 1u);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0);
  return (x >> e) + (remainder > threshold);
}

/* tflite::MultiplyByQuantizedMultiplier for int32 x. */
static inline int32_t mg_mbqm(int32_t x, int32_t mult, int left, int right) {
  return mg_rdbpot(mg_srdhm((int32_t)((uint32_t)x << left), mult), right);
}
/* @end */

/* @section fc */
/* FULLY_CONNECTED, per-channel int8 weights [rows][cols]. The input
 * offset is folded into `bias` at generation time:
 * bias[r] = b[r] - zp_in * sum_c w[r][c]. One accumulator, one or two
 * requantized outputs (TFLite files with two FULLY_CONNECTED ops on the
 * same input and weights differ only in the output requantization). */
typedef struct {
  const int8_t *weights;
  const int32_t *bias;
  const mg_requant *rq[2];
  int16_t rows;
  int16_t cols;
  int16_t batches;
  int8_t outputs;
  int8_t out_zp[2];
  int8_t act_min[2];
  int8_t act_max[2];
} mg_fc_params;
/* @end */

/* @section dwconv */
/* DEPTHWISE_CONV_2D, NHWC, batch 1, per-channel int8 weights
 * [1][kh][kw][channels]; input offset folded into `bias`
 * (only for VALID padding, where every tap reads the input). */
typedef struct {
  const int8_t *weights;
  const int32_t *bias;
  const mg_requant *rq;
  int16_t in_h, in_w, in_c;
  int16_t out_h, out_w;
  int16_t k_h, k_w;
  int8_t mult;           /* depth multiplier */
  int8_t stride_h, stride_w;
  int8_t dil_h, dil_w;
  int8_t pad_top, pad_left;
  int8_t folded;         /* 1: input offset folded into bias */
  int16_t in_offset;     /* -zp_in, used when not folded */
  int8_t out_zp, act_min, act_max;
} mg_dwconv_params;
/* @end */

/* @section add */
/* ADD and SUB (int8, TFLite's left_shift = 20 path). Broadcasting as
 * outer x inner loops with per-input strides (0: broadcast). */
typedef struct {
  mg_requant rq1, rq2, rq_out;
  int16_t off1, off2;     /* -zero points */
  int8_t out_zp, act_min, act_max;
  int8_t subtract;
} mg_add_params;
/* @end */

/* @section mul */
/* MUL (int8). */
typedef struct {
  mg_requant rq;
  int16_t off1, off2;
  int8_t out_zp, act_min, act_max;
} mg_mul_params;
/* @end */

/* @section sqdiff */
/* SQUARED_DIFFERENCE (int8, left_shift = 7). */
typedef struct {
  mg_requant rq1, rq2, rq_out;
  int16_t off1, off2;
  int8_t out_zp;
} mg_sqdiff_params;
/* @end */

/* @section broadcast */
/* The iteration space of a broadcasting elementwise op: `outer` blocks of
 * `inner` elements; each operand advances by its inner and outer stride. */
typedef struct {
  int16_t outer, inner;
  int16_t a_inner, a_outer;
  int16_t b_inner, b_outer;
} mg_bcast;
/* @end */

/* @section mean */
/* MEAN and SUM over `count` elements `stride` apart, for each of
 * `outer` x `inner` outputs. */
typedef struct {
  mg_requant rq;
  int32_t zp_sum;         /* zp_in * count */
  int16_t outer, count, inner;
  int8_t out_zp;
} mg_mean_params;
/* @end */
