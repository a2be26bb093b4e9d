#include "tensorflow/lite/micro/kernels/cmsis_nn/depthwise_conv.cc"
extern "C" unsigned sz_nn_dw(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_nn_dw(void) { return alignof(tflite::OpData); }
