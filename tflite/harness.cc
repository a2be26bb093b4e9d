// TFLite Micro harness for a keras_mgrade streaming model (state "io").
//
// Build it with the TFLite Micro sources (or X-CUBE-AI's TFLite Micro
// runtime) and the files `keras-mgrade export --out DIR` writes:
// model_data.h/.cc (the flatbuffer) and model_ops.h (its op resolver).
//
// Contract of the file: input 0 is x_t, inputs 1..k the states; output 0 is
// y_t, outputs 1..k the new states in the same order. In int8 every state's
// input and output have the same scale and zero point, so after each invoke
// the output bytes are copied to the input unchanged.

#include <cstdint>
#include <cstring>

#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// Set from the report's "arena_bytes" (measured) plus a margin.
constexpr size_t kArenaSize = 64 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];

tflite::MicroInterpreter* g_interpreter = nullptr;

}  // namespace

// Call once at start-up. Returns 0 on success.
extern "C" int mgrade_setup() {
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return 1;
  const tflite::Model* model = tflite::GetModel(g_model_data);
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena,
                                              kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 2;
  g_interpreter = &interpreter;
  // Zero (initial) state: a real 0.0 is the zero point in int8.
  for (size_t i = 1; i < interpreter.inputs_size(); ++i) {
    TfLiteTensor* s = interpreter.input(i);
    const int8_t zero = static_cast<int8_t>(s->params.zero_point);
    if (s->type == kTfLiteInt8) {
      memset(s->data.int8, zero, s->bytes);
    } else {
      memset(s->data.raw, 0, s->bytes);
    }
  }
  return 0;
}

// Restores the initial state (e.g. at the start of a new stream).
extern "C" void mgrade_reset() {
  for (size_t i = 1; i < g_interpreter->inputs_size(); ++i) {
    TfLiteTensor* s = g_interpreter->input(i);
    const int8_t zero = static_cast<int8_t>(s->params.zero_point);
    if (s->type == kTfLiteInt8) {
      memset(s->data.int8, zero, s->bytes);
    } else {
      memset(s->data.raw, 0, s->bytes);
    }
  }
}

// One sample: x (already quantized with input 0's scale and zero point,
// input(0)->bytes long) in, y (output(0)->bytes long) out. Returns 0 on
// success.
extern "C" int mgrade_step(const int8_t* x, int8_t* y) {
  TfLiteTensor* input = g_interpreter->input(0);
  memcpy(input->data.raw, x, input->bytes);
  if (g_interpreter->Invoke() != kTfLiteOk) return 1;
  memcpy(y, g_interpreter->output(0)->data.raw, g_interpreter->output(0)->bytes);
  // Feed the new states back: identical quantization, so a plain copy.
  for (size_t i = 1; i < g_interpreter->inputs_size(); ++i) {
    memcpy(g_interpreter->input(i)->data.raw,
           g_interpreter->output(i)->data.raw, g_interpreter->input(i)->bytes);
  }
  return 0;
}
