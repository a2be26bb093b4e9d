#!/bin/bash
# build_sizes.sh CFG [WITH_NN] -> $TFLM_BUILD/sizes/<cfg>/sizes.elf, then runs it (QEMU for Cortex-M):
# sizeof/alignof of the interpreter structs, OpData and builtin parameters of one TFLM build,
# the constants behind measure/estimate.py. WITH_NN (any value) adds the CMSIS-NN OpData.
set -e
CFG=$1; NN=$2
. "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
. "$TFLM_BUILD/flags/$CFG.env"
D=$HERE/sizes; B=$TFLM_BUILD/sizes/$CFG; mkdir -p $B
KS="tanh rsqrt concat sqdiff"; DEF=""
[ -n "$NN" ] && KS="$KS nn_fc nn_dw nn_add" && DEF="-DWITH_NN"
OBJS=""
for k in $KS; do $CXX $CXXFLAGS -O2 -w $INCLUDES -c $D/k_$k.cc -o $B/k_$k.o; OBJS="$OBJS $B/k_$k.o"; done
$CXX $CXXFLAGS -O2 -w $DEF $INCLUDES -c $D/sizes.cc -o $B/sizes.o
case $CFG in
  host)
    $CXX $CXXFLAGS -Wl,--gc-sections $B/sizes.o $OBJS $LIB -lm -o $B/sizes.elf
    $B/sizes.elf ;;
  *)
    $CC $CCFLAGS -O2 -c $HERE/measure/startup.c -o $B/startup.o
    $CXX $CXXFLAGS -nostartfiles --specs=rdimon.specs -T $HERE/measure/link.ld -Wl,--gc-sections $B/startup.o $B/sizes.o $OBJS $LIB -lm -o $B/sizes.elf
    case $CFG in m4*) BOARD=mps2-an386 ;; *) BOARD=mps3-an547 ;; esac
    qemu-system-arm -M $BOARD -nographic -monitor none -semihosting-config enable=on,target=native -kernel $B/sizes.elf ;;
esac
