/* QEMU TCG plugin (plugin API version 1, QEMU 7.x): counts executed guest
 * instructions and prints the count between consecutive executions of the
 * instruction at address mark=ADDR (a marker function), then the total.
 * Output goes to QEMU's log: run with "-d plugin".
 *
 *   gcc -shared -fPIC -O2 -o libinsn_count.so insn_count.c
 *   qemu-system-arm ... -plugin ./libinsn_count.so,mark=0x1234 -d plugin
 *
 * Debian's QEMU ships no qemu-plugin.h, so the few API functions used are
 * declared here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t plugin_id;
struct qemu_plugin_tb;
struct qemu_plugin_insn;

void qemu_plugin_register_vcpu_tb_trans_cb(
    plugin_id id, void (*cb)(plugin_id, struct qemu_plugin_tb *));
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(
    const struct qemu_plugin_tb *tb, size_t index);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_cb(
    struct qemu_plugin_insn *insn, void (*cb)(unsigned int, void *),
    int flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_inline(
    struct qemu_plugin_insn *insn, int op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(plugin_id id,
                                    void (*cb)(plugin_id, void *),
                                    void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;
static uint64_t at_last_mark;
static uint64_t mark_address = ~(uint64_t)0;
static uint64_t marks;

static void on_mark(unsigned int vcpu, void *userdata) {
  char line[80];
  (void)vcpu;
  (void)userdata;
  snprintf(line, sizeof line, "mark %llu: +%llu insns\n",
           (unsigned long long)marks++,
           (unsigned long long)(executed - at_last_mark));
  qemu_plugin_outs(line);
  at_last_mark = executed;
}

static void on_translate(plugin_id id, struct qemu_plugin_tb *tb) {
  size_t i;
  (void)id;
  for (i = 0; i < qemu_plugin_tb_n_insns(tb); ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    if (qemu_plugin_insn_vaddr(insn) == mark_address) {
      /* The callback runs before the inline add of this instruction. */
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, 0, NULL);
    }
    /* op 0: QEMU_PLUGIN_INLINE_ADD_U64 */
    qemu_plugin_register_vcpu_insn_exec_inline(insn, 0, &executed, 1);
  }
}

static void on_exit_(plugin_id id, void *userdata) {
  char line[64];
  (void)id;
  (void)userdata;
  snprintf(line, sizeof line, "total: %llu insns\n",
           (unsigned long long)executed);
  qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(
    plugin_id id, const void *info, int argc, char **argv) {
  int i;
  (void)info;
  for (i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "mark=", 5) == 0) {
      mark_address = strtoull(argv[i] + 5, NULL, 0);
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
  return 0;
}
