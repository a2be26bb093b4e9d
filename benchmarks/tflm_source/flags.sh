#!/bin/bash
# flags.sh CFG... (host m4 m4nn m55 m55nn)
# Writes $TFLM_BUILD/flags/<cfg>.env: the compiler, flags, includes and library of one TFLM build,
# as TFLite Micro's Makefile reports them (make print-*); nothing is compiled.
set -e
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
need_src
cd "$TFLM_SRC"
mkdir -p "$TFLM_BUILD/flags"
ARM="TARGET=cortex_m_generic TOOLCHAIN=gcc TARGET_TOOLCHAIN_ROOT=$ARM_TOOLCHAIN_ROOT"
for cfg in "$@"; do
  case $cfg in
    host)  A="" ;;
    m4)    A="$ARM TARGET_ARCH=cortex-m4" ;;
    m4nn)  A="$ARM TARGET_ARCH=cortex-m4 OPTIMIZED_KERNEL_DIR=cmsis_nn" ;;
    m55)   A="$ARM TARGET_ARCH=cortex-m55" ;;
    m55nn) A="$ARM TARGET_ARCH=cortex-m55 OPTIMIZED_KERNEL_DIR=cmsis_nn" ;;
    *) echo "unknown config $cfg" >&2; exit 1 ;;
  esac
  M="make -s -f tensorflow/lite/micro/tools/make/Makefile $A"
  get() { $M print-$1 2>/dev/null | head -1 | sed "s/^$1=//"; }
  T=$TFLM_SRC
  INC=$(get INCLUDES | sed 's/"//g' | sed "s# -I# -I$T/#g; s#^-I\.#-I$T#")
  {
    echo "CXX='$(get CXX)'"
    echo "CC='$(get CC)'"
    echo "CXXFLAGS='$(get CXXFLAGS | sed 's/ -MD / /; s/ -DCMSIS_DEVICE[^ ]*//; s/ -D"ARMCM[^ ]*//') '"
    echo "CCFLAGS='$(get CCFLAGS | sed 's/ -MD / /; s/ -DCMSIS_DEVICE[^ ]*//; s/ -D"ARMCM[^ ]*//') '"
    echo "INCLUDES='$INC'"
    echo "LIB='$T/$(get MICROLITE_LIB_PATH)'"
  } > "$TFLM_BUILD/flags/$cfg.env"
  echo "== $cfg"; cut -c1-200 "$TFLM_BUILD/flags/$cfg.env"
done
