// Firmware-like program around the project's harness: setup, T steps with
// instruction marks around each mgrade_step, reset check, y printed in hex.
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "input_data.h"

extern "C" int mgrade_setup(void);
extern "C" int mgrade_step(const int8_t* x, int8_t* y);
extern "C" int mgrade_reset(void);
extern "C" size_t mgrade_arena_used_bytes(void) __attribute__((weak));
#if defined(__arm__)
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
static void Log(const char* s) { write(1, s, strlen(s)); }
#endif

extern "C" __attribute__((noinline, used)) void prof_mark(void) { __asm volatile("" ::: "memory"); }

static uint8_t g_y[MEASURE_STEPS * MEASURE_OUT_BYTES];

static void Put(const char* s) { write(1, s, strlen(s)); }
static void PutU(const char* k, unsigned v) {
  char b[16]; int n = 0;
  do { b[n++] = '0' + v % 10; v /= 10; } while (v);
  Put(k);
  char r[16]; for (int i = 0; i < n; ++i) r[i] = b[n - 1 - i]; r[n] = 0;
  Put(r); Put("\n");
}

int main(void) {
#if defined(__arm__)
  RegisterDebugLogCallback(Log);
#endif
  {  // before setup: both must refuse (4), not crash
    uint8_t y0[MEASURE_OUT_BYTES];
    PutU("step_before_setup ", (unsigned)mgrade_step((const int8_t*)kInput, (int8_t*)y0));
    PutU("reset_before_setup ", (unsigned)mgrade_reset());
  }
  int rc = mgrade_setup();
  PutU("setup ", rc);
  if (rc != 0) {
    uint8_t y0[MEASURE_OUT_BYTES];
    PutU("step_after_failed_setup ", (unsigned)mgrade_step((const int8_t*)kInput, (int8_t*)y0));
    return 10 + rc;
  }
  PutU("setup_again ", (unsigned)mgrade_setup());
  if (mgrade_arena_used_bytes) PutU("arena_used_bytes ", (unsigned)mgrade_arena_used_bytes());
  for (int t = 0; t < MEASURE_STEPS; ++t) {
    prof_mark();
    rc = mgrade_step((const int8_t*)&kInput[t * MEASURE_IN_BYTES], (int8_t*)&g_y[t * MEASURE_OUT_BYTES]);
    prof_mark();
    if (rc != 0) { PutU("step failed ", rc); return 20 + rc; }
  }
  // Reset check: after mgrade_reset() the first steps repeat exactly.
  rc = mgrade_reset();
  int same = rc == 0;
  for (int t = 0; t < 3 && t < MEASURE_STEPS; ++t) {
    uint8_t y[MEASURE_OUT_BYTES];
    if (mgrade_step((const int8_t*)&kInput[t * MEASURE_IN_BYTES], (int8_t*)y) != 0) same = 0;
    if (memcmp(y, &g_y[t * MEASURE_OUT_BYTES], MEASURE_OUT_BYTES) != 0) same = 0;
  }
  PutU("reset_repeats ", same);
  static const char hx[] = "0123456789abcdef";
  for (int t = 0; t < MEASURE_STEPS; ++t) {
    char line[2 * MEASURE_OUT_BYTES + 4]; int n = 0;
    line[n++] = 'Y'; line[n++] = ' ';
    for (int i = 0; i < MEASURE_OUT_BYTES; ++i) {
      uint8_t b = g_y[t * MEASURE_OUT_BYTES + i];
      line[n++] = hx[b >> 4]; line[n++] = hx[b & 15];
    }
    line[n++] = '\n';
    write(1, line, n);
  }
  return same ? 0 : 30;
}
