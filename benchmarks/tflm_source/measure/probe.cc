// Probe: smallest working arena (exact bisection), arena_used_bytes(), the
// recording allocator's breakdown, and a T-step stream hashing all outputs.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <new>

#include "input_data.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#ifdef __arm__
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#endif

#ifndef PROBE_MAX
#define PROBE_MAX (256 * 1024)
#endif

alignas(16) static uint8_t g_arena[PROBE_MAX];
alignas(16) static uint8_t g_ip_storage[sizeof(tflite::RecordingMicroInterpreter)];
alignas(16) static uint8_t g_res_storage[sizeof(ModelOpResolver)];
static ModelOpResolver* g_resolver;
static const tflite::Model* g_model;
static bool g_quiet = true;

#ifdef __arm__
static void Log(const char* s) {
  if (!g_quiet) { fputs(s, stdout); }
}
#endif

static tflite::MicroInterpreter* Build(size_t size) {
  tflite::MicroAllocator* alloc = tflite::MicroAllocator::Create(g_arena, size);
  if (alloc == nullptr) return nullptr;
  tflite::MicroResourceVariables* vars = nullptr;
  if (MEASURE_NUM_VARIABLES > 0) {
    vars = tflite::MicroResourceVariables::Create(alloc, MEASURE_NUM_VARIABLES);
    if (vars == nullptr) return nullptr;
  }
  auto* ip = new (g_ip_storage) tflite::MicroInterpreter(g_model, *g_resolver, alloc, vars);
  if (ip->AllocateTensors() != kTfLiteOk) { ip->~MicroInterpreter(); return nullptr; }
  return ip;
}

static bool Runs(size_t size) {
  tflite::MicroInterpreter* ip = Build(size);
  if (ip == nullptr) return false;
  for (size_t i = 0; i < ip->inputs_size(); ++i) memset(ip->input(i)->data.raw, 0, ip->input(i)->bytes);
  bool ok = ip->Invoke() == kTfLiteOk;
  ip->~MicroInterpreter();
  return ok;
}

static uint32_t Fnv(uint32_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

int main(void) {
#ifdef __arm__
  RegisterDebugLogCallback(Log);
#endif
  g_model = tflite::GetModel(g_model_data);
  g_resolver = new (g_res_storage) ModelOpResolver();
  if (RegisterModelOps(*g_resolver) != kTfLiteOk) { printf("register failed\n"); return 1; }
  printf("sizeof MicroInterpreter %u\n", (unsigned)sizeof(tflite::MicroInterpreter));
  size_t lo = 0, hi = PROBE_MAX;
  if (!Runs(hi)) { printf("does not run in %u bytes\n", (unsigned)hi); return 2; }
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (Runs(mid)) hi = mid; else lo = mid;
  }
  printf("smallest_arena %u\n", (unsigned)hi);
  tflite::MicroInterpreter* ip = Build(hi);
  printf("arena_used_bytes %u\n", (unsigned)ip->arena_used_bytes());
  // Zero state (zero points), stream, hash all outputs of each step.
  for (size_t i = 1; i < ip->inputs_size(); ++i) {
    TfLiteTensor* s = ip->input(i);
    memset(s->data.raw, s->type == kTfLiteInt8 ? s->params.zero_point : 0, s->bytes);
  }
  for (int t = 0; t < MEASURE_STEPS; ++t) {
    memcpy(ip->input(0)->data.raw, kInput + t * MEASURE_IN_BYTES, MEASURE_IN_BYTES);
    if (ip->Invoke() != kTfLiteOk) { printf("invoke failed at %d\n", t); return 3; }
    uint32_t h = 0x811C9DC5u;
    for (size_t i = 0; i < ip->outputs_size(); ++i)
      h = Fnv(h, (const uint8_t*)ip->output(i)->data.raw, ip->output(i)->bytes);
    printf("H %d %08x\n", t, (unsigned)h);
    {  // stage first: an output may occupy a dead input's bytes
      static uint8_t stage[65536]; size_t off = 0;
      for (size_t i = 1; i < ip->inputs_size(); ++i) { memcpy(stage + off, ip->output(i)->data.raw, ip->input(i)->bytes); off += ip->input(i)->bytes; }
      off = 0;
      for (size_t i = 1; i < ip->inputs_size(); ++i) { memcpy(ip->input(i)->data.raw, stage + off, ip->input(i)->bytes); off += ip->input(i)->bytes; }
    }
  }
  ip->~MicroInterpreter();
  // Recording allocator breakdown (its own bookkeeping lives in the arena too).
  g_quiet = false;
  tflite::RecordingMicroAllocator* ralloc = tflite::RecordingMicroAllocator::Create(g_arena, PROBE_MAX);
  tflite::MicroResourceVariables* rvars = nullptr;
  if (MEASURE_NUM_VARIABLES > 0) rvars = tflite::MicroResourceVariables::Create(ralloc, MEASURE_NUM_VARIABLES);
  auto* rip = new (g_ip_storage) tflite::RecordingMicroInterpreter(g_model, *g_resolver, ralloc, rvars);
  if (rip->AllocateTensors() == kTfLiteOk) rip->GetMicroAllocator().PrintAllocations();
  fflush(stdout);
  return 0;
}
