# Sourced by the scripts here: the paths they use, from the environment.
#   TFLM_SRC            tflite-micro checkout at 90b983c2 (required by build_libs.sh and flags.sh)
#   TFLM_BUILD          this tool's outputs: flags/, runs/, libinsnmark.so (default: build/ next to this file)
#   ARM_TOOLCHAIN_ROOT  directory of arm-none-eabi-gcc, with a trailing slash (default /usr/bin/)
#   PYTHON              Python with keras_mgrade installed (default: python3 on PATH); its directory is
#                       put first on PATH, so the TFLite Micro Makefile's helper scripts run with it too
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TFLM_BUILD=${TFLM_BUILD:-$HERE/build}
mkdir -p "$TFLM_BUILD"
TFLM_BUILD=$(cd "$TFLM_BUILD" && pwd)
export TFLM_BUILD
ARM_TOOLCHAIN_ROOT=${ARM_TOOLCHAIN_ROOT:-/usr/bin/}
PYTHON=${PYTHON:-python3}
export PATH="$(dirname "$(command -v "$PYTHON")"):$PATH"
need_src() {
  if [ -z "$TFLM_SRC" ] || [ ! -f "$TFLM_SRC/tensorflow/lite/micro/tools/make/Makefile" ]; then
    echo "TFLM_SRC must name a tflite-micro checkout (see README.md)" >&2; exit 1
  fi
  TFLM_SRC=$(cd "$TFLM_SRC" && pwd)
}
