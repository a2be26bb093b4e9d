/* Firmware driver for a generated model on an emulated Cortex-M.
 *
 * Build with -DMG_NAME=<name> -DMG_NAME_UPPER=<NAME> -include <name>.h
 * and a "mg_inputs.h" defining MG_CALLS, MG_RESET_EVERY (0: never),
 * `static const int8_t mg_inputs[MG_CALLS * <NAME>_INPUT_SIZE]` and,
 * optionally, `mg_states` (MG_STATES defined): a state per call that
 * replaces the state before the call (to test single operators).
 *
 * Phase 1 (silent): paints the free stack, runs every call between two
 * calls of prof_mark() (an instruction-counting QEMU plugin reports the
 * instructions in between), then finds the deepest stack word touched.
 * Phase 2: runs the same calls again and prints every output and the
 * final state in hex (semihosting), then "stack <bytes>".
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mg_inputs.h"

#define MG_CAT_(a, b) a##b
#define MG_CAT(a, b) MG_CAT_(a, b)
#define MG_API(suffix) MG_CAT(MG_NAME, suffix)
#define MG_CONST(suffix) MG_CAT(MG_NAME_UPPER, suffix)

#define MG_PAINT 0xA5A5A5A5u

extern uint32_t _ebss;

static MG_API(_state) state;
static int8_t y[MG_CONST(_OUTPUT_SIZE)];

__attribute__((noinline)) void prof_mark(void) { __asm volatile(""); }

static const int8_t *input(int32_t call) {
#ifdef MG_STATES
  memcpy(&state, mg_states + (int32_t)sizeof state * call, sizeof state);
#endif
  return mg_inputs + (int32_t)MG_CONST(_INPUT_SIZE) * call;
}

__attribute__((noinline)) static void run_silent(void) {
  int32_t call;
  MG_API(_reset)(&state);
  prof_mark();
  for (call = 0; call < MG_CALLS; ++call) {
    if (MG_RESET_EVERY > 0 && call > 0 && call % MG_RESET_EVERY == 0) {
      MG_API(_reset)(&state);
    }
    MG_API(_step)(&state, input(call), y);
  }
  prof_mark();
}

static void print_hex(const char *label, const int8_t *data, int n) {
  int i;
  printf("%s ", label);
  for (i = 0; i < n; ++i) printf("%02x", (unsigned)(uint8_t)data[i]);
  printf("\n");
}

int main(void) {
  uint32_t sp;
  uint32_t *word;
  int32_t call;
  __asm volatile("mov %0, sp" : "=r"(sp));
  for (word = &_ebss + 4; word < (uint32_t *)(sp - 64); ++word) {
    *word = MG_PAINT;
  }
  run_silent();
  for (word = &_ebss + 4; *word == MG_PAINT; ++word) {
  }
  MG_API(_reset)(&state);
  for (call = 0; call < MG_CALLS; ++call) {
    if (MG_RESET_EVERY > 0 && call > 0 && call % MG_RESET_EVERY == 0) {
      MG_API(_reset)(&state);
    }
    MG_API(_step)(&state, input(call), y);
    print_hex("y", y, (int)sizeof y);
  }
  print_hex("state", (const int8_t *)&state, (int)sizeof state);
  printf("stack %lu\n", (unsigned long)(sp - (uint32_t)(uintptr_t)word));
  return 0;
}
