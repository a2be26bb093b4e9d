#!/bin/bash
# build_prog.sh CFG RUNDIR KIND OUT [HARNESS.cc] [ARENA_BYTES]
#   KIND=probe: probe.cc (bisection, recording breakdown, full-output hashes)
#   KIND=fw:    fw.cc + HARNESS with -DMGRADE_ARENA_BYTES=ARENA (omit ARENA: the harness default)
# Reads $TFLM_BUILD/flags/CFG.env (flags.sh).
set -e
CFG=$1; RUN=$2; KIND=$3; OUT=$4; HARNESS=$5; ARENA=$6
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
MD=$HERE/measure
. "$TFLM_BUILD/flags/$CFG.env"
OPT="${OPT_APP:--O2} -Wno-unused-variable -Wno-missing-field-initializers"
B=$RUN/$CFG; mkdir -p $B
if [ ! -f $B/model_data.o -o $RUN/model_data.cc -nt $B/model_data.o ]; then
  $CXX $CXXFLAGS $OPT $INCLUDES -I$RUN -c $RUN/model_data.cc -o $B/model_data.o
fi
if [ $CFG = host ]; then
  STARTUP=""; LINK="-Wl,--gc-sections"
else
  [ -f $B/startup.o ] || $CC $CCFLAGS -O2 -c $MD/startup.c -o $B/startup.o
  STARTUP=$B/startup.o; LINK="-nostartfiles ${SPECS:---specs=nano.specs} --specs=rdimon.specs -T $MD/link.ld -Wl,--gc-sections"
fi
if [ $KIND = probe ]; then
  $CXX $CXXFLAGS $OPT $INCLUDES -I$RUN -c $MD/probe.cc -o $B/probe.o
  OBJS="$B/probe.o"
else
  D=""; [ -n "$ARENA" ] && D="-DMGRADE_ARENA_BYTES=$ARENA"
  $CXX $CXXFLAGS $OPT $INCLUDES -I$RUN $D -c $HARNESS -o $B/harness_$$.o
  $CXX $CXXFLAGS $OPT $INCLUDES -I$RUN -c $MD/fw.cc -o $B/fw.o
  OBJS="$B/fw.o $B/harness_$$.o"
fi
$CXX $CXXFLAGS $OPT $LINK -Wl,-Map=$OUT.map $STARTUP $OBJS $B/model_data.o $LIB -lm -o $OUT
rm -f $B/harness_$$.o
