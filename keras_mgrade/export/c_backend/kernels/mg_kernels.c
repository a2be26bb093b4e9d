/* Kernels of the keras_mgrade C backend (see mg_kernels.h): data
 * movement and tables. The code between "@section NAME" and "@end" is
 * pasted into generated models; mg_fc.c, mg_window.c and
 * mg_elementwise.c hold the arithmetic kernels. */
#include "mg_kernels.h"

/* @section copy */
MG_KERNEL void mg_copy(int8_t *dst, const int8_t *src, int n) {
  int i = 0;
  if (dst == src) return;
  if (dst < src || dst >= src + n) {
    for (; i + 8 <= n; i += 8) {
      const uint32_t v0 = mg_load32(src + i), v1 = mg_load32(src + i + 4);
      mg_store32(dst + i, v0);
      mg_store32(dst + i + 4, v1);
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
MG_KERNEL void mg_lut(const mg_lut_params *p, const int8_t *x, int8_t *y) {
  const int8_t *table = p->table;
  const int n = p->n, lo = p->lo, last = p->last;
  int i = 0;
#if defined(MG_MVE)
  for (; i + 8 <= n; i += 8) {
    int16x8_t k = vsubq_n_s16(vldrbq_s16(x + i), (int16_t)lo);
    k = vminq_s16(vmaxq_s16(k, vdupq_n_s16(0)), vdupq_n_s16((int16_t)last));
    vstrbq_s16(y + i,
               vldrbq_gather_offset_s16(table, vreinterpretq_u16_s16(k)));
  }
#endif
  for (; i < n; ++i) y[i] = table[mg_clamp(x[i] - lo, 0, last)];
}
/* @end */

/* @section fill */
MG_KERNEL void mg_fill(int8_t *dst, int8_t value, int n) {
  volatile int8_t *d = dst; /* a plain loop would become a memset call */
  int i;
  for (i = 0; i < n; ++i) d[i] = value;
}
/* @end */
