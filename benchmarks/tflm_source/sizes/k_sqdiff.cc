#include "tensorflow/lite/micro/kernels/squared_difference.cc"
extern "C" unsigned sz_sqdiff(void) { return sizeof(tflite::OpData); }
extern "C" unsigned al_sqdiff(void) { return alignof(tflite::OpData); }
