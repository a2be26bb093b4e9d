/* Host driver for a generated model named "mgrade": streams int8 inputs
 * from stdin through mgrade_step and writes every output to stdout.
 *
 * stdin:  int32 calls, int32 mode, then per call MGRADE_INPUT_SIZE int8
 *         values (mode -1: followed by sizeof(mgrade_state) bytes that
 *         replace the state before the call; mode > 0: reset the state
 *         every `mode` calls; mode 0: never reset).
 * stdout: MGRADE_OUTPUT_SIZE int8 values per call, then the final state.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    if (header[1] < 0 && fread(&state, 1, sizeof state, stdin) != sizeof state) {
      return 3;
    }
    mgrade_step(&state, x, y);
    if (fwrite(y, 1, sizeof y, stdout) != sizeof y) return 4;
  }
  if (fwrite(&state, 1, sizeof state, stdout) != sizeof state) return 5;
  return 0;
}
