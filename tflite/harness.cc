// TFLite Micro harness for a keras_mgrade streaming model (state "io").
//
// API (identical in harness.cc and harness_variables.cc; all return 0 on
// success):
//   int mgrade_setup(void);
//       Builds the interpreter in the arena and sets the zero state. Call
//       once at start-up; calling it again after success does nothing.
//       1: an op could not be registered, 2: the model's schema version is
//       not supported, 3: AllocateTensors failed (arena too small: raise
//       MGRADE_ARENA_BYTES), 6: the state buffers overlap in a cycle and
//       MGRADE_STATE_STAGING_BYTES is smaller than the state (see below).
//   int mgrade_step(const int8_t* x, int8_t* y);
//       One sample: x (quantized with input 0's scale and zero point,
//       input(0)->bytes long) in, y (output(0)->bytes long) out.
//       4: mgrade_setup() has not succeeded, 5: Invoke failed.
//   int mgrade_reset(void);
//       Restores the zero state (start of a new stream). 4: not set up.
//   size_t mgrade_arena_used_bytes(void);
//       Bytes of the arena in use after setup (0 before). Not the
//       smallest working MGRADE_ARENA_BYTES: AllocateTensors needs more
//       while it plans the memory (quickstart on Cortex-M4: 12,452 B in
//       use, 17,552 B needed).
//
// Arena: MGRADE_ARENA_BYTES (define it on the command line, e.g.
// -DMGRADE_ARENA_BYTES=24576, from the export report's arena estimate plus
// a margin). The default fits the quickstart int8 file with a margin: its
// smallest working arena is 17,552 B on Cortex-M4 and M55 with the
// reference kernels, 18,024 B with CMSIS-NN on M4, 22,104 B with CMSIS-NN
// on M55 (default 28 KiB) and 22,736 B on a 64-bit host (default 32 KiB).
// mgrade_setup() returns 3 when the arena is too small.
//
// No static constructors or destructors: the resolver and the interpreter
// are built with placement new in static storage, so the file links
// bare-metal with -nostartfiles (no __dso_handle, no __cxa_atexit, no
// __cxa_guard_*) and needs no C++ runtime start-up.
//
// Contract of the file: input 0 is x_t, inputs 1..k the states; output 0 is
// y_t, outputs 1..k the new states in the same order. In int8 every state's
// input and output have the same scale and zero point, so after each invoke
// the output bytes are copied to the input unchanged.
//
// Order of those copies: TFLite Micro's memory planner gives a graph input's
// bytes to later tensors once its last reader has run, so a new state (or
// y_t) may lie on top of another state's input. Copying in input order can
// then overwrite a new state before it is copied. mgrade_setup() orders the
// copies so that each output is read before its bytes are written; if the
// overlaps form a cycle, the states are copied through a staging buffer of
// MGRADE_STATE_STAGING_BYTES (default 0), and setup returns 6 when that is
// smaller than the model's state bytes.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef MGRADE_ARENA_BYTES
#if UINTPTR_MAX > 0xFFFFFFFFu
#define MGRADE_ARENA_BYTES (32 * 1024)  // 64-bit host
#else
#define MGRADE_ARENA_BYTES (28 * 1024)  // 32-bit MCU
#endif
#endif

namespace {

alignas(16) uint8_t g_arena[MGRADE_ARENA_BYTES];
alignas(ModelOpResolver) uint8_t g_resolver_storage[sizeof(ModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t
    g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter* g_interpreter = nullptr;  // non-null once set up

#ifndef MGRADE_STATE_STAGING_BYTES
#define MGRADE_STATE_STAGING_BYTES 0
#endif
#ifndef MGRADE_MAX_STATES
#define MGRADE_MAX_STATES 32
#endif
#if MGRADE_STATE_STAGING_BYTES > 0
alignas(16) uint8_t g_staging[MGRADE_STATE_STAGING_BYTES];
#endif
size_t g_copy_order[MGRADE_MAX_STATES];  // input indices, in copy order
size_t g_num_states = 0;
bool g_use_staging = false;

bool Overlap(const TfLiteTensor* a, const TfLiteTensor* b) {
  const uint8_t* pa = reinterpret_cast<const uint8_t*>(a->data.raw);
  const uint8_t* pb = reinterpret_cast<const uint8_t*>(b->data.raw);
  return pa < pb + b->bytes && pb < pa + a->bytes;
}

// Copy i writes input(i) and reads output(i). Copy j must come before copy
// i when output(j) overlaps input(i). Kahn's algorithm; false on a cycle.
bool PlanCopies(tflite::MicroInterpreter* ip) {
  const size_t n = ip->inputs_size() - 1;
  bool done[MGRADE_MAX_STATES] = {};
  for (size_t placed = 0; placed < n; ++placed) {
    size_t pick = n;
    for (size_t i = 0; i < n && pick == n; ++i) {
      if (done[i]) continue;
      bool ready = true;
      for (size_t j = 0; j < n && ready; ++j) {
        if (j != i && !done[j] &&
            Overlap(ip->output(j + 1), ip->input(i + 1))) {
          ready = false;
        }
      }
      if (ready) pick = i;
    }
    if (pick == n) return false;
    done[pick] = true;
    g_copy_order[placed] = pick + 1;
  }
  return true;
}

void SetZeroState() {
  // A real 0.0 is the zero point in int8; 0 otherwise (float, int16).
  for (size_t i = 1; i < g_interpreter->inputs_size(); ++i) {
    TfLiteTensor* s = g_interpreter->input(i);
    const int zero = s->type == kTfLiteInt8 ? s->params.zero_point : 0;
    memset(s->data.raw, zero, s->bytes);
  }
}

}  // namespace

extern "C" int mgrade_setup(void) {
  if (g_interpreter != nullptr) return 0;
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 2;
  ModelOpResolver* resolver = new (g_resolver_storage) ModelOpResolver();
  if (RegisterModelOps(*resolver) != kTfLiteOk) return 1;
  tflite::MicroInterpreter* interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, *resolver, g_arena, sizeof(g_arena));
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    interpreter->~MicroInterpreter();  // a later call may retry cleanly
    return 3;
  }
  const size_t states = interpreter->inputs_size() - 1;
  size_t state_bytes = 0;
  for (size_t i = 1; i <= states; ++i) state_bytes += interpreter->input(i)->bytes;
  g_use_staging = states > MGRADE_MAX_STATES || !PlanCopies(interpreter);
  if (g_use_staging && state_bytes > MGRADE_STATE_STAGING_BYTES) {
    interpreter->~MicroInterpreter();
    return 6;
  }
  g_num_states = states;
  g_interpreter = interpreter;
  SetZeroState();
  return 0;
}

extern "C" int mgrade_reset(void) {
  if (g_interpreter == nullptr) return 4;
  SetZeroState();
  return 0;
}

extern "C" int mgrade_step(const int8_t* x, int8_t* y) {
  if (g_interpreter == nullptr) return 4;
  TfLiteTensor* input = g_interpreter->input(0);
  memcpy(input->data.raw, x, input->bytes);
  if (g_interpreter->Invoke() != kTfLiteOk) return 5;
  const TfLiteTensor* output = g_interpreter->output(0);
  memcpy(y, output->data.raw, output->bytes);
  // Feed the new states back: identical quantization, so a plain copy, in
  // the order planned at setup (memmove: an output may share its input).
#if MGRADE_STATE_STAGING_BYTES > 0
  if (g_use_staging) {
    size_t offset = 0;
    for (size_t i = 1; i <= g_num_states; ++i) {
      const size_t n = g_interpreter->input(i)->bytes;
      memcpy(g_staging + offset, g_interpreter->output(i)->data.raw, n);
      offset += n;
    }
    offset = 0;
    for (size_t i = 1; i <= g_num_states; ++i) {
      const size_t n = g_interpreter->input(i)->bytes;
      memcpy(g_interpreter->input(i)->data.raw, g_staging + offset, n);
      offset += n;
    }
    return 0;
  }
#endif
  for (size_t k = 0; k < g_num_states; ++k) {
    const size_t i = g_copy_order[k];
    memmove(g_interpreter->input(i)->data.raw,
            g_interpreter->output(i)->data.raw, g_interpreter->input(i)->bytes);
  }
  return 0;
}

extern "C" size_t mgrade_arena_used_bytes(void) {
  return g_interpreter == nullptr ? 0 : g_interpreter->arena_used_bytes();
}
