/*
 * compat32: a 32-bit (i386) program, for the cases of processes that write tracking cannot inject into
 * (tests/Pester/Security.Round26.Lead.Tests.ps1, which builds it with cc -m32 -nostdlib -static and skips where the
 * compiler or the kernel cannot). No C library: the i386 syscall ABI (int $0x80; number in eax, arguments in ebx, ecx,
 * edx). It writes a byte into each of PAGES pages of its .bss, says "READY", then waits in read(0) until its input
 * closes, and exits.
 */
#define SYS_EXIT 1
#define SYS_READ 3
#define SYS_WRITE 4
#define PAGES 4
#define PAGE 4096

static volatile char pages[PAGES][PAGE] __attribute__((aligned(PAGE)));

static long syscall3(long number, long a, long b, long c)
{
    long result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(number), "b"(a), "c"(b), "d"(c) : "memory");
    return result;
}

void _start(void)
{
    static const char ready[] = "READY\n";
    char c;
    for (int i = 0; i < PAGES; i++) pages[i][0] = (char)(i + 1);
    syscall3(SYS_WRITE, 1, (long)ready, sizeof ready - 1);
    while (syscall3(SYS_READ, 0, (long)&c, 1) > 0) { }
    syscall3(SYS_EXIT, 0, 0, 0);
    for (;;) { }
}
