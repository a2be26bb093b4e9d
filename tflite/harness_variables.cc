// TFLite Micro harness for a keras_mgrade streaming model (state
// "variables": `keras-mgrade export --state variables`).
//
// Build it with the TFLite Micro sources (or X-CUBE-AI's TFLite Micro
// runtime) and the files `keras-mgrade export --out DIR` writes:
// model_data.h/.cc (the flatbuffer) and model_ops.h (its op resolver,
// including VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE and CALL_ONCE, and
// kModelNumVariables).
//
// Contract of the file: one input x_t, one output y_t. The states live in
// TFLite Micro resource variables (persistent arena memory): each invoke
// reads them and writes the new states back, so there is nothing to copy.
// They start at zero (the zero point in int8) and Reset() sets them to
// zero again.

#include <cstdint>
#include <cstring>

#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// Set from the report's "arena_bytes" (measured, variables included) plus
// a margin.
constexpr size_t kArenaSize = 64 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];

tflite::MicroInterpreter* g_interpreter = nullptr;

}  // namespace

// Call once at start-up. Returns 0 on success.
extern "C" int mgrade_setup() {
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return 1;
  const tflite::Model* model = tflite::GetModel(g_model_data);
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(g_arena, kArenaSize);
  if (allocator == nullptr) return 2;
  // One variable per state (the report's "variables").
  tflite::MicroResourceVariables* variables =
      tflite::MicroResourceVariables::Create(allocator, kModelNumVariables);
  if (variables == nullptr) return 2;
  static tflite::MicroInterpreter interpreter(model, resolver, allocator,
                                              variables);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 3;
  g_interpreter = &interpreter;
  return 0;
}

// Restores the initial (zero) state, e.g. at the start of a new stream.
// Returns 0 on success.
extern "C" int mgrade_reset() {
  return g_interpreter->Reset() == kTfLiteOk ? 0 : 1;
}

// One sample: x (already quantized with input 0's scale and zero point,
// input(0)->bytes long) in, y (output(0)->bytes long) out. Returns 0 on
// success.
extern "C" int mgrade_step(const int8_t* x, int8_t* y) {
  TfLiteTensor* input = g_interpreter->input(0);
  memcpy(input->data.raw, x, input->bytes);
  if (g_interpreter->Invoke() != kTfLiteOk) return 1;
  TfLiteTensor* output = g_interpreter->output(0);
  memcpy(y, output->data.raw, output->bytes);
  return 0;
}
