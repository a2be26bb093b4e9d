#include "tensorflow/lite/micro/kernels/tanh.cc"
extern "C" unsigned sz_tanh(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_tanh(void) { return alignof(tflite::OpData); }
