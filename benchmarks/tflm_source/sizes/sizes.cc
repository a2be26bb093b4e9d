#include <stdio.h>
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_allocation_info.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/sub.h"
#include "tensorflow/lite/micro/kernels/mul.h"
#include "tensorflow/lite/micro/kernels/logistic.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/kernels/quantize.h"
#include "tensorflow/lite/micro/kernels/strided_slice.h"
#include "tensorflow/lite/core/c/builtin_op_data.h"
#ifdef __arm__
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#endif
#define K(n) extern "C" unsigned sz_##n(void); extern "C" unsigned al_##n(void);
K(tanh) K(rsqrt) K(concat) K(sqdiff)
#ifdef WITH_NN
K(nn_fc) K(nn_dw) K(nn_add)
#endif
#define P(name, T) printf("%-44s %4u %2u\n", name, (unsigned)sizeof(T), (unsigned)alignof(T))
#define F(name, f) printf("%-44s %4u %2u\n", name, sz_##f(), al_##f())
int main(void) {
  printf("%-44s %4s %2s\n", "struct", "size", "al");
  P("TfLiteEvalTensor", TfLiteEvalTensor);
  P("NodeAndRegistration", tflite::NodeAndRegistration);
  P("  TfLiteNode", TfLiteNode);
  P("  TFLMRegistration", TFLMRegistration);
  P("TfLiteTensor", TfLiteTensor);
  P("TfLiteAffineQuantization", TfLiteAffineQuantization);
  P("TfLiteIntArray (header)", TfLiteIntArray);
  P("TfLiteFloatArray (header)", TfLiteFloatArray);
  P("SubgraphAllocations", tflite::SubgraphAllocations);
  P("AllocationInfo", tflite::AllocationInfo);
  printf("%-44s %4u\n", "GreedyMemoryPlanner::per_buffer_size()", (unsigned)tflite::GreedyMemoryPlanner::per_buffer_size());
  P("GreedyMemoryPlanner (object)", tflite::GreedyMemoryPlanner);
  P("ScratchBufferRequest", tflite::internal::ScratchBufferRequest);
  P("ScratchBufferHandle", tflite::ScratchBufferHandle);
  P("MicroAllocator (object)", tflite::MicroAllocator);
  P("MicroInterpreter (object, static storage)", tflite::MicroInterpreter);
  P("OpData FULLY_CONNECTED (OpDataFullyConnected)", tflite::OpDataFullyConnected);
  P("OpData DEPTHWISE_CONV_2D (OpDataConv)", tflite::OpDataConv);
  P("OpData ADD (OpDataAdd)", tflite::OpDataAdd);
  P("OpData SUB (OpDataSub)", tflite::OpDataSub);
  P("OpData MUL (OpDataMul)", tflite::OpDataMul);
  P("OpData LOGISTIC (OpDataLogistic)", tflite::OpDataLogistic);
  F("OpData TANH (tanh.cc OpData)", tanh);
  P("OpData MEAN (OpDataReduce)", tflite::OpDataReduce);
  F("OpData RSQRT (OpDataAbsRsqrt)", rsqrt);
  F("OpData CONCATENATION (concatenation.cc)", concat);
  P("OpData STRIDED_SLICE (StridedSliceParams)", tflite::StridedSliceParams);
  P("OpData QUANTIZE (OpDataQuantizeReference)", tflite::OpDataQuantizeReference);
  F("OpData SQUARED_DIFFERENCE (OpData)", sqdiff);
#ifdef WITH_NN
  F("CMSIS-NN OpData FULLY_CONNECTED", nn_fc);
  F("CMSIS-NN OpData DEPTHWISE_CONV_2D", nn_dw);
  F("CMSIS-NN OpData ADD", nn_add);
#endif
  P("params TfLiteFullyConnectedParams", TfLiteFullyConnectedParams);
  P("params TfLiteDepthwiseConvParams", TfLiteDepthwiseConvParams);
  P("params TfLiteAddParams", TfLiteAddParams);
  P("params TfLiteSubParams", TfLiteSubParams);
  P("params TfLiteMulParams", TfLiteMulParams);
  P("params TfLiteReducerParams", TfLiteReducerParams);
  P("params TfLiteConcatenationParams", TfLiteConcatenationParams);
  P("params TfLiteStridedSliceParams", TfLiteStridedSliceParams);
  P("params TfLiteReshapeParams", TfLiteReshapeParams);
  P("params TfLiteGatherParams", TfLiteGatherParams);
  fflush(stdout);
  return 0;
}
