/* Bare-metal start-up for QEMU mps2-an386 / mps3-an547 (vectors, .data/.bss, semihosting, C/C++ init arrays). */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
void Reset_Handler(void) {
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;   /* CPACR: enable CP10/CP11 (FPU, MVE) */
  __asm volatile("dsb\n isb");
  uint32_t *s = &_sidata, *d = &_sdata;
  while (d < &_edata) *d++ = *s++;
  for (d = &_sbss; d < &_ebss;) *d++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}
void _init(void) {} void _fini(void) {}               /* crti/crtn stubs (-nostartfiles) */
void Fault_Handler(void) { _exit(128); }             /* any fault -> exit status 128 */
__attribute__((section(".vectors"), used))
void (*const vectors[16])(void) = { (void (*)(void))&_estack, Reset_Handler,
  Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler };
