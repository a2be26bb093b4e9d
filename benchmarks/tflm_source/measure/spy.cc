// Analysis only: where the arena goes at the planning peak (a planner that reports what it is given).
#include <stdio.h>
#include <new>
#include "input_data.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
alignas(16) static uint8_t g_arena[256 * 1024];
static tflite::SingleArenaBufferAllocator* g_sab;
struct Spy : public tflite::GreedyMemoryPlanner {
  int n = 0;
  void operator delete(void*) {}
  TfLiteStatus Init(unsigned char* b, int size) override {
    printf("plan: tail %u, head+temp %u, remaining %d\n", (unsigned)g_sab->GetPersistentUsedBytes(),
           (unsigned)g_sab->GetNonPersistentUsedBytes(), size);
    return tflite::GreedyMemoryPlanner::Init(b, size);
  }
  TfLiteStatus AddBuffer(int size, int f, int l, int off) override { ++n; return tflite::GreedyMemoryPlanner::AddBuffer(size, f, l, off); }
  TfLiteStatus AddBuffer(int size, int f, int l) override { ++n; return tflite::GreedyMemoryPlanner::AddBuffer(size, f, l); }
};
alignas(16) static uint8_t g_spy[sizeof(Spy)];
alignas(16) static uint8_t g_ip[sizeof(tflite::MicroInterpreter)];
alignas(16) static uint8_t g_res[sizeof(ModelOpResolver)];
int main(void) {
  auto* res = new (g_res) ModelOpResolver(); RegisterModelOps(*res);
  g_sab = tflite::SingleArenaBufferAllocator::Create(g_arena, sizeof(g_arena));
  size_t t0 = g_sab->GetPersistentUsedBytes();
  Spy* spy = new (g_spy) Spy();
  auto* alloc = tflite::MicroAllocator::Create(g_sab, spy);
  tflite::MicroResourceVariables* vars = nullptr;
  if (MEASURE_NUM_VARIABLES) vars = tflite::MicroResourceVariables::Create(alloc, MEASURE_NUM_VARIABLES);
  auto* ip = new (g_ip) tflite::MicroInterpreter(tflite::GetModel(g_model_data), *res, alloc, vars);
  printf("sab object %u, before AllocateTensors tail %u\n", (unsigned)t0, (unsigned)g_sab->GetPersistentUsedBytes());
  if (ip->AllocateTensors() != kTfLiteOk) { printf("alloc failed\n"); return 1; }
  printf("buffers planned %d, head %u\n", spy->n, (unsigned)spy->GetMaximumMemorySize());
  printf("final: tail %u, head %u, used %u\n", (unsigned)g_sab->GetPersistentUsedBytes(),
         (unsigned)g_sab->GetNonPersistentUsedBytes(), (unsigned)ip->arena_used_bytes());
  fflush(stdout);
  return 0;
}
