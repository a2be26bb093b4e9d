#include "tensorflow/lite/micro/kernels/elementwise.cc"
extern "C" unsigned sz_rsqrt(void) { return sizeof(tflite::OpDataAbsRsqrt); }
extern "C" unsigned al_rsqrt(void) { return alignof(tflite::OpDataAbsRsqrt); }
