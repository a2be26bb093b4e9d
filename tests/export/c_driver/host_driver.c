/* Host driver for a generated model (name "mgrade"): streams int8 inputs
 * from stdin through mgrade_step and writes every output to stdout.
 *
 * stdin:  int32 steps, int32 reset_every (0: never), then steps * calls
 *         of MGRADE_INPUT_SIZE int8 values (one call per line of input).
 * stdout: MGRADE_OUTPUT_SIZE int8 values per call, then the final state.
 */
#include <stdio.h>
#include <stdint.h>

#include "mgrade.h"

int main(void) {
  static mgrade_state state;
  int8_t x[MGRADE_INPUT_SIZE], y[MGRADE_OUTPUT_SIZE];
  int32_t header[2];
  int32_t call;
  if (fread(header, sizeof header, 1, stdin) != 1) return 2;
  mgrade_reset(&state);
  for (call = 0; call < header[0]; ++call) {
    if (header[1] > 0 && call > 0 && call % header[1] == 0) {
      mgrade_reset(&state);
    }
    if (fread(x, 1, sizeof x, stdin) != sizeof x) return 3;
    mgrade_step(&state, x, y);
    if (fwrite(y, 1, sizeof y, stdout) != sizeof y) return 4;
  }
  if (fwrite(&state, 1, sizeof state, stdout) != sizeof state) return 5;
  return 0;
}
