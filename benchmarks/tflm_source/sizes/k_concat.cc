#include "tensorflow/lite/micro/kernels/concatenation.cc"
extern "C" unsigned sz_concat(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_concat(void) { return alignof(tflite::OpData); }
