/*
 * exotarget: memory of unusual kinds (round 32): files truncated and grown back under MAP_SHARED and MAP_PRIVATE
 * mappings, private and shared mappings of /dev/zero, MADV_WIPEONFORK and MADV_DONTFORK across a fork, mseal(2) of every
 * mapping. The process reads its own memory (SIGBUS caught: a page past the end of its file) so that a restore can be
 * compared with what it holds. Line protocol on stdin; prints "READY <pid> <pagesize>", then one line per command,
 * "OK ..." or "ERR <text>".
 *
 *   file <path> <pages> <shared|private> <byte>  creates the file (O_EXCL), pages long, every byte set to byte (decimal),
 *                                    and maps it whole (no THP), keeping its descriptor          -> OK <hexaddr>
 *   devzero <pages> <shared|private> <byte>  maps /dev/zero, every byte set to byte              -> OK <hexaddr>
 *   anon <pages> <byte>              private anonymous rw mapping (no THP), every byte set       -> OK <hexaddr>
 *   fill <hexaddr> <page> <count> <byte>  every byte of the pages set to byte (decimal)          -> OK
 *   truncate <hexaddr> <bytes>       ftruncate(2) of the file mapped at hexaddr (by its descriptor) -> OK <errno or 0>
 *   pwrite <hexaddr> <page> <count> <byte>  pwrite(2) of byte over those pages of the file mapped at hexaddr -> OK <errno or 0>
 *   madvise <hexaddr> <page> <count> <advice>  madvise (advice decimal)                          -> OK <errno or 0>
 *   mprotect <hexaddr> <page> <count> <prot>   mprotect (prot decimal)                           -> OK <errno or 0>
 *   sealall                          mseal(2) of every mapping of this process but [vsyscall]   -> OK <sealed count>
 *   dump <hexaddr> <pages> <path>    writes the pages, read by this process, to a new file (0600); a page whose read
 *                                    faults (SIGBUS, SIGSEGV) is written as zeros               -> OK <pages that faulted>
 *   forkserve                        fork(2): the child takes over the commands, this process waits for it -> OK <childpid>, from it
 *   exit                             exits (the forked child: this process takes the commands back, and answers nothing)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* mseal(2) (Linux 6.10; the same number on every architecture): older headers lack it. */
#define SYS_MSEAL 462
#define MAX_FILES 16

static long ps;
static struct { unsigned char *base; size_t len; int fd; } files[MAX_FILES];
static int nfiles;
static sigjmp_buf fault_jump;

static void on_fault(int sig) { siglongjmp(fault_jump, sig); }

static unsigned char *hexaddr(const char *s) { return (unsigned char *)(uintptr_t)strtoull(s, NULL, 16); }

static int file_of(unsigned char *p)
{
    for (int i = 0; i < nfiles; i++)
        if (p >= files[i].base && p < files[i].base + files[i].len) return files[i].fd;
    return -1;
}

static void keep(unsigned char *p, size_t len, int fd)
{
    if (nfiles < MAX_FILES) { files[nfiles].base = p; files[nfiles].len = len; files[nfiles].fd = fd; nfiles++; }
}

/* Maps the descriptor (or anonymous memory where fd is -1), without THP, every byte set to fill. */
static unsigned char *map_filled(int fd, long pages, int shared, int fill)
{
    int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | (fd < 0 ? MAP_ANONYMOUS : 0);
    unsigned char *p = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, pages * ps, MADV_NOHUGEPAGE);
    memset(p, fill, pages * ps);
    return p;
}

/* Every mapping of this process, from /proc/self/maps, sealed (but [vsyscall], which has no VMA). */
static int seal_all(int *failed)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int sealed = 0;
    *failed = 0;
    if (!f) { *failed = errno; return 0; }
    /* Read every line first: sealing does not change the maps, but reading and sealing at once would read a changing file. */
    unsigned long lo[512], hi[512];
    int n = 0;
    while (n < 512 && fgets(line, sizeof line, f))
        if (!strstr(line, "[vsyscall]") && sscanf(line, "%lx-%lx", &lo[n], &hi[n]) == 2) n++;
    fclose(f);
    for (int i = 0; i < n; i++) {
        if (syscall(SYS_MSEAL, lo[i], hi[i] - lo[i], 0UL)) *failed = errno; else sealed++;
    }
    return sealed;
}

int main(void)
{
    ps = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Unbuffered: a forked child that takes the commands over must not read past its own last line ("exit"). */
    setvbuf(stdin, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    printf("READY %d %ld\n", (int)getpid(), ps);
    char line[4096], cmd[32], a1[1024], a2[64], a3[1024], a4[64];
    while (fgets(line, sizeof line, stdin)) {
        a1[0] = a2[0] = a3[0] = a4[0] = 0;
        int n = sscanf(line, "%31s %1023s %63s %1023s %63s", cmd, a1, a2, a3, a4);
        if (n < 1) continue;
        if (!strcmp(cmd, "file") && n >= 5) {
            long pages = strtol(a2, NULL, 10);
            int fd = open(a1, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0) { printf("ERR open %d\n", errno); continue; }
            if (ftruncate(fd, pages * ps)) { printf("ERR ftruncate %d\n", errno); close(fd); continue; }
            unsigned char *p = map_filled(fd, pages, !strcmp(a3, "shared"), (int)strtol(a4, NULL, 10));
            if (!p) { printf("ERR mmap %d\n", errno); close(fd); continue; }
            keep(p, pages * ps, fd);
            printf("OK %lx\n", (unsigned long)p);
        } else if (!strcmp(cmd, "devzero") && n >= 4) {
            long pages = strtol(a1, NULL, 10);
            int fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
            if (fd < 0) { printf("ERR open %d\n", errno); continue; }
            unsigned char *p = map_filled(fd, pages, !strcmp(a2, "shared"), (int)strtol(a3, NULL, 10));
            int e = errno;
            close(fd);
            if (!p) { printf("ERR mmap %d\n", e); continue; }
            printf("OK %lx\n", (unsigned long)p);
        } else if (!strcmp(cmd, "anon") && n >= 3) {
            unsigned char *p = map_filled(-1, strtol(a1, NULL, 10), 0, (int)strtol(a2, NULL, 10));
            if (!p) { printf("ERR mmap %d\n", errno); continue; }
            printf("OK %lx\n", (unsigned long)p);
        } else if (!strcmp(cmd, "fill") && n >= 5) {
            memset(hexaddr(a1) + strtol(a2, NULL, 10) * ps, (int)strtol(a4, NULL, 10), strtol(a3, NULL, 10) * ps);
            printf("OK\n");
        } else if (!strcmp(cmd, "truncate") && n >= 3) {
            int fd = file_of(hexaddr(a1));
            if (fd < 0) { printf("ERR no file there\n"); continue; }
            printf("OK %d\n", ftruncate(fd, strtoll(a2, NULL, 10)) ? errno : 0);
        } else if (!strcmp(cmd, "pwrite") && n >= 5) {
            unsigned char *p = hexaddr(a1);
            int fd = file_of(p);
            if (fd < 0) { printf("ERR no file there\n"); continue; }
            long first = strtol(a2, NULL, 10), count = strtol(a3, NULL, 10);
            unsigned char *buf = malloc(ps);
            memset(buf, (int)strtol(a4, NULL, 10), ps);
            int err = 0;
            off_t base = 0;
            for (int k = 0; k < nfiles; k++)
                if (files[k].fd == fd) base = (off_t)(p - files[k].base);
            for (long i = 0; i < count && !err; i++)
                if (pwrite(fd, buf, ps, base + (first + i) * ps) != ps) err = errno ? errno : EIO;
            free(buf);
            printf("OK %d\n", err);
        } else if (!strcmp(cmd, "madvise") && n >= 5) {
            printf("OK %d\n", madvise(hexaddr(a1) + strtol(a2, NULL, 10) * ps, strtol(a3, NULL, 10) * ps, (int)strtol(a4, NULL, 10)) ? errno : 0);
        } else if (!strcmp(cmd, "mprotect") && n >= 5) {
            printf("OK %d\n", mprotect(hexaddr(a1) + strtol(a2, NULL, 10) * ps, strtol(a3, NULL, 10) * ps, (int)strtol(a4, NULL, 10)) ? errno : 0);
        } else if (!strcmp(cmd, "sealall")) {
            int failed;
            int sealed = seal_all(&failed);
            if (failed) printf("ERR mseal %d\n", failed); else printf("OK %d\n", sealed);
        } else if (!strcmp(cmd, "dump") && n >= 4) {
            unsigned char *p = hexaddr(a1);
            long pages = strtol(a2, NULL, 10), faulted = 0;
            int out = open(a3, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (out < 0) { printf("ERR open %d\n", errno); continue; }
            unsigned char *page = malloc(ps);
            int err = 0;
            for (volatile long i = 0; i < pages && !err; i++) {
                if (sigsetjmp(fault_jump, 1) == 0) memcpy(page, p + i * ps, ps);
                else { memset(page, 0, ps); faulted++; }
                if (write(out, page, ps) != ps) err = errno ? errno : EIO;
            }
            free(page);
            close(out);
            if (err) printf("ERR write %d\n", err); else printf("OK %ld\n", faulted);
        } else if (!strcmp(cmd, "forkserve")) {
            fflush(stdout);
            pid_t child = fork();
            if (child < 0) { printf("ERR fork %d\n", errno); continue; }
            if (child == 0) { printf("OK %d\n", (int)getpid()); continue; }
            int status;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) { }
        } else if (!strcmp(cmd, "exit")) {
            return 0;
        } else {
            printf("ERR unknown command\n");
        }
    }
    return 0;
}
