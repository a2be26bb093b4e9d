#include "tensorflow/lite/micro/kernels/cmsis_nn/add.cc"
extern "C" unsigned sz_nn_add(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_nn_add(void) { return alignof(tflite::OpData); }
