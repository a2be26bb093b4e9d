// TFLite Micro harness for a keras_mgrade streaming model (state
// "variables": `keras-mgrade export --state variables`).
//
// API (identical in harness.cc and harness_variables.cc; all return 0 on
// success):
//   int mgrade_setup(void);
//       Builds the interpreter in the arena (the states start at zero).
//       Call once at start-up; calling it again after success does nothing.
//       1: an op could not be registered, 2: the model's schema version is
//       not supported or the resource variables could not be created,
//       3: AllocateTensors failed (arena too small: raise
//       MGRADE_ARENA_BYTES).
//   int mgrade_step(const int8_t* x, int8_t* y);
//       One sample: x (quantized with input 0's scale and zero point,
//       input(0)->bytes long) in, y (output(0)->bytes long) out.
//       4: mgrade_setup() has not succeeded, 5: Invoke failed.
//   int mgrade_reset(void);
//       Restores the zero state (start of a new stream): calls
//       MicroInterpreter::Reset(). 4: not set up, 5: Reset failed.
//   size_t mgrade_arena_used_bytes(void);
//       Bytes of the arena in use after setup (0 before). Not the
//       smallest working MGRADE_ARENA_BYTES: AllocateTensors needs more
//       while it plans the memory (quickstart on Cortex-M4: 12,452 B in
//       use, 17,552 B needed).
//
// Arena: MGRADE_ARENA_BYTES (define it on the command line from the export
// report's arena estimate plus a margin). The variables live in the arena
// (persistent part). The default fits the quickstart int8 variables file
// with a margin: its smallest working arena is 23,824 B on Cortex-M4 and
// M55 with the reference kernels, 24,384 B with CMSIS-NN on M4, 27,152 B
// with CMSIS-NN on M55 (default 32 KiB) and 31,288 B on a 64-bit host
// (default 36 KiB). mgrade_setup() returns 3 when the arena is too small.
//
// No static constructors or destructors: the resolver and the interpreter
// are built with placement new in static storage, so the file links
// bare-metal with -nostartfiles (no __dso_handle, no __cxa_atexit, no
// __cxa_guard_*) and needs no C++ runtime start-up.
//
// Contract of the file: one input x_t, one output y_t. The states live in
// TFLite Micro resource variables: each invoke reads them and writes the
// new states back, so there is nothing to copy. They start at zero (the
// zero point in int8) and Reset() sets them to zero again. model_ops.h
// registers VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE and CALL_ONCE and
// defines kModelNumVariables.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef MGRADE_ARENA_BYTES
#if UINTPTR_MAX > 0xFFFFFFFFu
#define MGRADE_ARENA_BYTES (36 * 1024)  // 64-bit host
#else
#define MGRADE_ARENA_BYTES (32 * 1024)  // 32-bit MCU
#endif
#endif

namespace {

alignas(16) uint8_t g_arena[MGRADE_ARENA_BYTES];
alignas(ModelOpResolver) uint8_t g_resolver_storage[sizeof(ModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t
    g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter* g_interpreter = nullptr;  // non-null once set up

}  // namespace

extern "C" int mgrade_setup(void) {
  if (g_interpreter != nullptr) return 0;
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 2;
  ModelOpResolver* resolver = new (g_resolver_storage) ModelOpResolver();
  if (RegisterModelOps(*resolver) != kTfLiteOk) return 1;
  // The allocator and the variables live in the arena (no static objects).
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(g_arena, sizeof(g_arena));
  if (allocator == nullptr) return 2;
  // One variable per state (the report's "variables").
  tflite::MicroResourceVariables* variables =
      tflite::MicroResourceVariables::Create(allocator, kModelNumVariables);
  if (variables == nullptr) return 2;
  tflite::MicroInterpreter* interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, *resolver, allocator, variables);
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    interpreter->~MicroInterpreter();  // a later call may retry cleanly
    return 3;
  }
  g_interpreter = interpreter;
  return 0;
}

extern "C" int mgrade_reset(void) {
  if (g_interpreter == nullptr) return 4;
  return g_interpreter->Reset() == kTfLiteOk ? 0 : 5;
}

extern "C" int mgrade_step(const int8_t* x, int8_t* y) {
  if (g_interpreter == nullptr) return 4;
  TfLiteTensor* input = g_interpreter->input(0);
  memcpy(input->data.raw, x, input->bytes);
  if (g_interpreter->Invoke() != kTfLiteOk) return 5;
  const TfLiteTensor* output = g_interpreter->output(0);
  memcpy(y, output->data.raw, output->bytes);
  return 0;
}

extern "C" size_t mgrade_arena_used_bytes(void) {
  return g_interpreter == nullptr ? 0 : g_interpreter->arena_used_bytes();
}
