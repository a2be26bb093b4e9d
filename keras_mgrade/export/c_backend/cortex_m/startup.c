/* Minimal bare-metal start-up for the QEMU MPS2/MPS3 boards: vector table,
 * .data/.bss initialisation, semihosting I/O (newlib rdimon), exit status
 * passed to QEMU. A fault exits with status 128. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void) {
  uint32_t *src = &_sidata;
  uint32_t *dst = &_sdata;
  /* CPACR: full access to CP10/CP11 (FPU and, on Cortex-M55, MVE). */
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
  __asm volatile("dsb\n\tisb");
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  initialise_monitor_handles();
  exit(main());
}

/* Stubs for crti/crtn (linked with -nostartfiles). */
void _init(void) {}
void _fini(void) {}

void Fault_Handler(void) { _exit(128); }

__attribute__((section(".vectors"), used))
void (*const mg_vectors[16])(void) = {
    (void (*)(void))&_estack, Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler,
};
