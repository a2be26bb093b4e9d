#!/bin/bash
# build_libs.sh CFG... (host m4 m4nn m55 m55nn)
# Builds libtensorflow-microlite.a for host, M4, M55 (reference and CMSIS-NN), sequentially, -j2,
# with TFLite Micro's own Makefile; the libraries land in $TFLM_SRC/gen/<target>/lib/.
set -e
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_src
cd "$TFLM_SRC"
M="make -f tensorflow/lite/micro/tools/make/Makefile -j${JOBS:-2}"
ARM="TARGET=cortex_m_generic TOOLCHAIN=gcc TARGET_TOOLCHAIN_ROOT=$ARM_TOOLCHAIN_ROOT"
for cfg in "$@"; do
  case $cfg in
    host) $M microlite ;;
    m4)   $M $ARM TARGET_ARCH=cortex-m4  microlite ;;
    m4nn) $M $ARM TARGET_ARCH=cortex-m4  OPTIMIZED_KERNEL_DIR=cmsis_nn microlite ;;
    m55)  $M $ARM TARGET_ARCH=cortex-m55 microlite ;;
    m55nn) $M $ARM TARGET_ARCH=cortex-m55 OPTIMIZED_KERNEL_DIR=cmsis_nn microlite ;;
    *) echo "unknown config $cfg" >&2; exit 1 ;;
  esac
  echo "== built $cfg"
done
