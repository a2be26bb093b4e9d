#include "tensorflow/lite/micro/kernels/cmsis_nn/fully_connected.cc"
extern "C" unsigned sz_nn_fc(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_nn_fc(void) { return alignof(tflite::OpData); }
