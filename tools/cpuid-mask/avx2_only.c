/*
 * LD_PRELOAD shim: the process and its children see, through CPUID, a CPU
 * with AVX2 and FMA but no AVX-512, no VNNI, no BF16 and no AMX (the
 * instruction sets of an AMD EPYC Milan), so ONNX Runtime, OpenVINO and
 * PyTorch pick the kernels they would pick on such a CPU. It measures the
 * AVX2 route on a machine that has more (engines/BENCHMARK.md, "AVX2 kernels
 * on an AMX machine"); memory, caches and clocks stay this machine's, so its
 * figures are a proxy, not an AVX2-only CPU.
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, flag cpuid_fault
 * in /proc/cpuinfo) turns every CPUID instruction into a SIGSEGV; the handler
 * runs the real CPUID with faulting briefly off, clears the feature bits
 * and steps over the instruction. Faulting is per thread, inherited by new
 * threads and processes, and reset by exec, where LD_PRELOAD sets it again.
 * Whatever ran CPUID before this constructor (the dynamic loader choosing
 * libc's memcpy) saw the real CPU. The handler must stay SIGSEGV's: a library
 * that installs its own later (Python's faulthandler, gst-launch's crash
 * handler) ends the emulation, and the next CPUID kills the process. Rust's
 * standard library sees a handler there and leaves it, skipping its
 * stack-overflow message.
 *
 * Build: cc -O2 -shared -fPIC -o avx2_only.so avx2_only.c
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static int cpuid_enabled(int on) { return (int)syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void mask(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf == 7 && sub == 0) {
        /* AVX-512 F DQ IFMA PF ER CD BW VL */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* AVX-512 VBMI VBMI2, GFNI, AVX-512 VNNI BITALG VPOPCNTDQ */
        *c &= ~(BIT(1) | BIT(6) | BIT(8) | BIT(11) | BIT(12) | BIT(14));
        /* AVX-512 4VNNIW 4FMAPS VP2INTERSECT, AMX-BF16, AVX-512 FP16, AMX-TILE, AMX-INT8 */
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* AVX-VNNI, AVX-512 BF16, AMX-FP16, AVX-IFMA */
        *a &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        /* AVX-VNNI-INT8, AVX-NE-CONVERT, AMX-COMPLEX, AVX-VNNI-INT16, AVX10 */
        *d &= ~(BIT(4) | BIT(5) | BIT(8) | BIT(10) | BIT(19));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        /* AMX tile and TMUL descriptions, AVX10 */
        *a = *b = *c = *d = 0;
    }
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    /* A faulting CPUID comes from the kernel (SI_KERNEL) at a 0f a2. Anything
     * else (a real fault, a SIGSEGV sent by kill) gets the default action. */
    if (info->si_code != SI_KERNEL || ip[0] != 0x0f || ip[1] != 0xa2) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    int saved = errno;
    uint32_t leaf = (uint32_t)r[REG_RAX], sub = (uint32_t)r[REG_RCX];
    uint32_t a, b, c, d;
    cpuid_enabled(1);
    __cpuid_count(leaf, sub, a, b, c, d);
    cpuid_enabled(0);
    errno = saved;
    mask(leaf, sub, &a, &b, &c, &d);
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void start(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    /* nothing else runs on this thread while CPUID is briefly real */
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || cpuid_enabled(0) != 0) {
        fprintf(stderr,
                "avx2_only: this kernel or CPU has no CPUID faulting (no cpuid_fault in "
                "/proc/cpuinfo); refusing to run with the real CPU's instruction sets\n");
        _exit(3);
    }
}
