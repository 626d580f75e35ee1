/*
 * sdtarget: a test target process whose memory a test controls through a line protocol.
 *
 * Prints "READY <pid> <pagesize>" first, then answers each command on stdin with one line,
 * "OK ..." or "ERR <text>", flushed. Addresses are hex (with or without 0x); page indexes and
 * counts are decimal.
 *
 *   map <pages> [anon|shared|file <path>] [rw|ro|none]   -> OK <hexaddr>
 *       anon: MAP_PRIVATE|MAP_ANONYMOUS; shared: MAP_SHARED|MAP_ANONYMOUS;
 *       file: the file is created or extended to the size and mapped MAP_SHARED (writes reach it);
 *       private: the same file mapped MAP_PRIVATE (a write copies the page; an unwritten page shows the file).
 *       A path with spaces: quote it with double quotes ("a b/c"). Each mapping sits between two
 *       PROT_NONE guard pages (its own VMA, never merged with a neighbour unless it is "none" itself),
 *       with MADV_NOHUGEPAGE: a touch faults in exactly one page whatever the THP mode.
 *   mapat <hexaddr> <pages> [fixed]   private anonymous read-write pages with the address as a hint (fixed:
 *                   MAP_FIXED_NOREPLACE), no guard pages, MADV_NOHUGEPAGE: where the kernel put them  -> OK <hexaddr>
 *                   (a hint above 2^47 maps there only on a kernel with 5-level paging)
 *   write <hexaddr> <pageindex> [count [stride]]  one byte into each page   -> OK <count>
 *   read <hexaddr> <pageindex> [count [stride]]   one byte from each page   -> OK <sum of bytes>
 *       stride (default 1): touch pages index, index+stride, ... (count pages in all)
 *   unmap <hexaddr> <pages>                                                   -> OK
 *   mprotect <hexaddr> <pages> rw|ro|none                                     -> OK
 *   mapthp <units>  units * 2 MiB of private anonymous read-write memory, 2 MiB-aligned, between PROT_NONE guard
 *                   pages, THP left to the mode and to madvise (no MADV_NOHUGEPAGE)              -> OK <hexaddr>
 *   madvise <hexaddr> <pages> dontneed|hugepage|nohugepage|collapse                 -> OK (collapse: ERR <errno name>)
 *   pwrite <path> <pageindex> <byte>   one byte written into the file at that page, with pwrite(2)   -> OK
 *   truncate <path> <pages>   ftruncate(2) the file to that many pages (a page of a mapping past the end: SIGBUS) -> OK
 *   unlink <path>                                                             -> OK
 *   fork            the child sleeps until killed                             -> OK <childpid>
 *   forkexit        the child exits at once and is not reaped (a zombie)       -> OK <childpid>
 *   reap <pid>      waitpid on a child                                        -> OK <status>
 *   ping                                                                      -> OK <pid>
 *   clock           clock_gettime through the vDSO (maps the [vvar] pages)    -> OK <seconds>
 *   exit            answers OK, then exits 0
 *   storm <hexaddr> <pages> <prefix> <ms>   for ms milliseconds, over and over: a new file <prefix>-<n> (n counts
 *                   up from 0, never reused) mapped MAP_SHARED|MAP_FIXED over the pages and every page read (present,
 *                   file), then a private anonymous mapping MAP_FIXED over them and every page written (present,
 *                   exclusive), the file unlinked; ends anonymous    -> OK <rounds>
 *                   (the pages must be a mapping of "map", between its guard pages)
 *   exec <usec> <path> [args...]   answers OK, sleeps usec microseconds, then execv(path, [path, args...]);
 *                   on failure the process exits 127
 * Anything else -> ERR unknown command. End of input exits too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long page_size;

static void reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

#define MAX_ARGS 8

/* Splits a line into words; "double quoted" words may hold spaces. Returns the count, -1 on a bad quote. */
static int split(char *line, char **argv)
{
    int argc = 0;
    char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        if (argc == MAX_ARGS) return -1;
        if (*p == '"') {
            char *end = strchr(++p, '"');
            if (!end) return -1;
            *end = '\0';
            argv[argc++] = p;
            p = end + 1;
        } else {
            argv[argc++] = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
            if (*p) *p++ = '\0';
        }
    }
    return argc;
}

static int parse_u64(const char *s, int base, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int parse_prot(const char *s, int *prot)
{
    if (!strcmp(s, "rw")) *prot = PROT_READ | PROT_WRITE;
    else if (!strcmp(s, "ro")) *prot = PROT_READ;
    else if (!strcmp(s, "none")) *prot = PROT_NONE;
    else return -1;
    return 0;
}

/* addr + page range (+ stride), checked for overflow. */
static int range(char **argv, int argc, int first, unsigned char **base, uint64_t *index, uint64_t *count, uint64_t *stride)
{
    uint64_t a;
    if (argc <= first + 1 || argc > first + 4 || parse_u64(argv[first], 16, &a) || parse_u64(argv[first + 1], 10, index)) return -1;
    *count = 1;
    *stride = 1;
    if (argc > first + 2 && parse_u64(argv[first + 2], 10, count)) return -1;
    if (argc > first + 3 && parse_u64(argv[first + 3], 10, stride)) return -1;
    if (*count == 0 || *stride == 0) return -1;
    uint64_t limit = UINT64_MAX / page_size;
    if (*index > limit || *stride > limit / *count || *index + (*count - 1) * *stride > limit) return -1;
    *base = (unsigned char *)(uintptr_t)a;
    return 0;
}

static void cmd_map(int argc, char **argv)
{
    uint64_t pages;
    if (argc < 2 || parse_u64(argv[1], 10, &pages) || pages == 0 || pages > (1ULL << 40) / page_size) {
        reply("ERR usage: map <pages> [anon|shared|file <path>|private <path>] [rw|ro|none]");
        return;
    }
    size_t len = (size_t)pages * page_size;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS, prot = PROT_READ | PROT_WRITE, fd = -1, i = 2;
    if (i < argc && !strcmp(argv[i], "anon")) i++;
    else if (i < argc && !strcmp(argv[i], "shared")) { flags = MAP_SHARED | MAP_ANONYMOUS; i++; }
    else if (i < argc && (!strcmp(argv[i], "file") || !strcmp(argv[i], "private"))) {
        if (i + 1 >= argc) { reply("ERR map %s needs a path", argv[i]); return; }
        fd = open(argv[i + 1], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) { reply("ERR open %s: %s", argv[i + 1], strerror(errno)); return; }
        struct stat st;
        if (fstat(fd, &st) < 0) { reply("ERR fstat: %s", strerror(errno)); close(fd); return; }
        if ((uint64_t)st.st_size < len && ftruncate(fd, (off_t)len) < 0) {
            reply("ERR ftruncate: %s", strerror(errno));
            close(fd);
            return;
        }
        flags = strcmp(argv[i], "private") ? MAP_SHARED : MAP_PRIVATE;
        i += 2;
    }
    if (i < argc && parse_prot(argv[i++], &prot)) { reply("ERR bad protection (rw|ro|none)"); if (fd >= 0) close(fd); return; }
    if (i < argc) { reply("ERR too many arguments"); if (fd >= 0) close(fd); return; }
    /* Reserve a PROT_NONE guard page on each side, so the new VMA never merges with a neighbour and
       Get-MemoryMapping shows exactly the pages asked for. */
    unsigned char *reserve = mmap(NULL, len + 2 * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve == MAP_FAILED) { reply("ERR mmap (reserve): %s", strerror(errno)); if (fd >= 0) close(fd); return; }
    void *p = mmap(reserve + page_size, len, prot, flags | MAP_FIXED, fd, 0);
    int e = errno;
    if (fd >= 0) close(fd);
    if (p == MAP_FAILED) { munmap(reserve, len + 2 * page_size); reply("ERR mmap: %s", strerror(e)); return; }
    /* One touch faults in one page whatever the THP mode (always, madvise, never, or mTHP sizes): the
       tests count pages. EINVAL: a kernel without THP, nothing to keep out. */
    if (madvise(p, len, MADV_NOHUGEPAGE) < 0 && errno != EINVAL) {
        e = errno;
        munmap(reserve, len + 2 * page_size);
        reply("ERR madvise(MADV_NOHUGEPAGE): %s", strerror(e));
        return;
    }
    reply("OK %lx", (unsigned long)(uintptr_t)p);
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static void cmd_mapat(int argc, char **argv)
{
    uint64_t a, pages;
    if (argc < 3 || argc > 4 || parse_u64(argv[1], 16, &a) || parse_u64(argv[2], 10, &pages) || pages == 0
        || pages > (1ULL << 40) / page_size || (argc == 4 && strcmp(argv[3], "fixed"))) {
        reply("ERR usage: mapat <hexaddr> <pages> [fixed]");
        return;
    }
    size_t len = (size_t)pages * page_size;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (argc == 4 ? MAP_FIXED_NOREPLACE : 0);
    void *p = mmap((void *)(uintptr_t)a, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) { reply("ERR mmap: %s", strerror(errno)); return; }
    if (madvise(p, len, MADV_NOHUGEPAGE) < 0 && errno != EINVAL) {
        int e = errno;
        munmap(p, len);
        reply("ERR madvise(MADV_NOHUGEPAGE): %s", strerror(e));
        return;
    }
    reply("OK %lx", (unsigned long)(uintptr_t)p);
}

static void cmd_access(int argc, char **argv, int write)
{
    unsigned char *base;
    uint64_t index, count, stride;
    if (range(argv, argc, 1, &base, &index, &count, &stride)) {
        reply("ERR usage: %s <hexaddr> <pageindex> [count [stride]]", argv[0]);
        return;
    }
    /* Check the pages are mapped with the access wanted, so a bad address answers ERR instead of SIGSEGV. */
    unsigned char *start = base + index * page_size;
    size_t len = ((count - 1) * stride + 1) * page_size;
    int need = write ? PROT_WRITE : PROT_READ;
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps) { reply("ERR /proc/self/maps: %s", strerror(errno)); return; }
    uintptr_t cur = (uintptr_t)start, end = (uintptr_t)start + len;
    char line[4096];
    while (cur < end && fgets(line, sizeof line, maps)) {
        unsigned long s, t;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &s, &t, perms) != 3) continue;
        if (cur >= s && cur < t) {
            int have = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0);
            if ((have & need) != need) break;
            cur = t;
        }
    }
    fclose(maps);
    if (cur < end) {
        reply("ERR 0x%lx is not mapped %s", (unsigned long)cur, write ? "writable" : "readable");
        return;
    }
    if (write) {
        for (uint64_t i = 0; i < count; i++) start[i * stride * page_size] = (unsigned char)(1 + (i & 0x7f));
        reply("OK %llu", (unsigned long long)count);
    } else {
        unsigned long long sum = 0;
        for (uint64_t i = 0; i < count; i++) sum += ((volatile unsigned char *)start)[i * stride * page_size];
        reply("OK %llu", sum);
    }
}

static void cmd_unmap(int argc, char **argv)
{
    uint64_t a, pages;
    if (argc != 3 || parse_u64(argv[1], 16, &a) || parse_u64(argv[2], 10, &pages)) { reply("ERR usage: unmap <hexaddr> <pages>"); return; }
    if (munmap((void *)(uintptr_t)a, pages * page_size) < 0) { reply("ERR munmap: %s", strerror(errno)); return; }
    reply("OK");
}

static void cmd_mprotect(int argc, char **argv)
{
    uint64_t a, pages;
    int prot;
    if (argc != 4 || parse_u64(argv[1], 16, &a) || parse_u64(argv[2], 10, &pages) || parse_prot(argv[3], &prot)) {
        reply("ERR usage: mprotect <hexaddr> <pages> rw|ro|none");
        return;
    }
    if (mprotect((void *)(uintptr_t)a, pages * page_size, prot) < 0) { reply("ERR mprotect: %s", strerror(errno)); return; }
    reply("OK");
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

static void cmd_madvise(int argc, char **argv)
{
    static const struct { const char *name; int advice; } advices[] = {
        { "dontneed", MADV_DONTNEED }, { "hugepage", MADV_HUGEPAGE }, { "nohugepage", MADV_NOHUGEPAGE }, { "collapse", MADV_COLLAPSE },
    };
    uint64_t a, pages;
    int advice = -1;
    if (argc == 4)
        for (size_t k = 0; k < sizeof advices / sizeof advices[0]; k++)
            if (!strcmp(argv[3], advices[k].name)) advice = advices[k].advice;
    if (advice < 0 || parse_u64(argv[1], 16, &a) || parse_u64(argv[2], 10, &pages)) {
        reply("ERR usage: madvise <hexaddr> <pages> dontneed|hugepage|nohugepage|collapse");
        return;
    }
    if (madvise((void *)(uintptr_t)a, pages * page_size, advice) < 0) {
        int e = errno;
        reply("ERR %s: %s", e == EINVAL ? "EINVAL" : e == EAGAIN ? "EAGAIN" : e == ENOMEM ? "ENOMEM" : "errno", strerror(e));
        return;
    }
    reply("OK");
}

#define HUGE_BYTES (2UL << 20)

static void cmd_mapthp(int argc, char **argv)
{
    uint64_t units;
    if (argc != 2 || parse_u64(argv[1], 10, &units) || units == 0 || units > 64) { reply("ERR usage: mapthp <units (1-64)>"); return; }
    size_t len = (size_t)units * HUGE_BYTES;
    /* A PROT_NONE reserve one huge page larger on each side: the aligned mapping inside keeps guards around it. */
    unsigned char *reserve = mmap(NULL, len + 2 * HUGE_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve == MAP_FAILED) { reply("ERR mmap (reserve): %s", strerror(errno)); return; }
    unsigned char *p = (unsigned char *)(((uintptr_t)reserve + HUGE_BYTES) & ~(HUGE_BYTES - 1));
    if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
        int e = errno;
        munmap(reserve, len + 2 * HUGE_BYTES);
        reply("ERR mmap: %s", strerror(e));
        return;
    }
    reply("OK %lx", (unsigned long)(uintptr_t)p);
}

static void cmd_pwrite(int argc, char **argv)
{
    uint64_t index, value;
    if (argc != 4 || parse_u64(argv[2], 10, &index) || parse_u64(argv[3], 10, &value) || value > 255) {
        reply("ERR usage: pwrite <path> <pageindex> <byte>");
        return;
    }
    int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
    if (fd < 0) { reply("ERR open %s: %s", argv[1], strerror(errno)); return; }
    unsigned char b = (unsigned char)value;
    ssize_t n = pwrite(fd, &b, 1, (off_t)(index * page_size));
    int e = errno;
    close(fd);
    if (n != 1) { reply("ERR pwrite: %s", n < 0 ? strerror(e) : "short write"); return; }
    reply("OK");
}

static void cmd_fork(int exit_at_once)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { reply("ERR fork: %s", strerror(errno)); return; }
    if (pid == 0) {
        if (exit_at_once) _exit(0);
        /* Die with the parent, so a killed test never leaves a sleeping child behind. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) _exit(0);
        /* Say nothing: stdout belongs to the parent. */
        for (;;) pause();
    }
    if (exit_at_once) {
        /* Wait until the child is a zombie, so the answer means it. */
        siginfo_t si;
        if (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) < 0) { reply("ERR waitid: %s", strerror(errno)); return; }
    }
    reply("OK %d", (int)pid);
}

static void cmd_reap(int argc, char **argv)
{
    uint64_t pid;
    int status;
    if (argc != 2 || parse_u64(argv[1], 10, &pid)) { reply("ERR usage: reap <pid>"); return; }
    if (waitpid((pid_t)pid, &status, 0) < 0) { reply("ERR waitpid: %s", strerror(errno)); return; }
    reply("OK %d", status);
}

static void cmd_storm(int argc, char **argv)
{
    uint64_t a, pages, ms;
    if (argc != 5 || parse_u64(argv[1], 16, &a) || parse_u64(argv[2], 10, &pages) || parse_u64(argv[4], 10, &ms) || pages == 0) {
        reply("ERR usage: storm <hexaddr> <pages> <prefix> <ms>");
        return;
    }
    char *base = (char *)(uintptr_t)a;
    size_t len = pages * page_size;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t rounds = 0;
    char path[4096];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000 + (uint64_t)((t.tv_nsec - t0.tv_nsec) / 1000000) >= ms) break;
        snprintf(path, sizeof path, "%s-%llu", argv[3], (unsigned long long)rounds);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)len) < 0) { reply("ERR storm %s: %s", path, strerror(errno)); return; }
        char *p = mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) { reply("ERR storm mmap: %s", strerror(errno)); return; }
        volatile char sum = 0;
        for (size_t i = 0; i < len; i += page_size) sum += p[i];
        p = mmap(base, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p == MAP_FAILED) { reply("ERR storm mmap: %s", strerror(errno)); return; }
        madvise(p, len, MADV_NOHUGEPAGE);
        for (size_t i = 0; i < len; i += page_size) p[i] = 1;
        unlink(path);
        rounds++;
    }
    reply("OK %llu", (unsigned long long)rounds);
}

static void cmd_exec(int argc, char **argv)
{
    uint64_t usec;
    if (argc < 3 || parse_u64(argv[1], 10, &usec)) { reply("ERR usage: exec <usec> <path> [args...]"); return; }
    reply("OK");
    usleep((useconds_t)usec);
    execv(argv[2], argv + 2);
    _exit(127);
}

int main(void)
{
    page_size = sysconf(_SC_PAGESIZE);
    /* The children of "fork" are killed with us; ignore SIGPIPE so a closed stdout ends us via EOF handling. */
    signal(SIGPIPE, SIG_IGN);
    reply("READY %d %ld", (int)getpid(), page_size);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) >= 0) {
        char *argv[MAX_ARGS + 1] = {0};
        int argc = split(line, argv);
        if (argc < 0) { reply("ERR bad quoting or too many words"); continue; }
        if (argc == 0) { reply("ERR empty command"); continue; }
        const char *c = argv[0];
        if (!strcmp(c, "map")) cmd_map(argc, argv);
        else if (!strcmp(c, "mapat")) cmd_mapat(argc, argv);
        else if (!strcmp(c, "write")) cmd_access(argc, argv, 1);
        else if (!strcmp(c, "read")) cmd_access(argc, argv, 0);
        else if (!strcmp(c, "unmap")) cmd_unmap(argc, argv);
        else if (!strcmp(c, "mprotect")) cmd_mprotect(argc, argv);
        else if (!strcmp(c, "madvise")) cmd_madvise(argc, argv);
        else if (!strcmp(c, "mapthp")) cmd_mapthp(argc, argv);
        else if (!strcmp(c, "pwrite")) cmd_pwrite(argc, argv);
        else if (!strcmp(c, "truncate")) {
            uint64_t pages;
            if (argc != 3 || parse_u64(argv[2], 10, &pages)) reply("ERR usage: truncate <path> <pages>");
            else if (truncate(argv[1], (off_t)(pages * page_size)) < 0) reply("ERR truncate %s: %s", argv[1], strerror(errno));
            else reply("OK");
        }
        else if (!strcmp(c, "unlink")) {
            if (argc != 2) reply("ERR usage: unlink <path>");
            else if (unlink(argv[1]) < 0) reply("ERR unlink %s: %s", argv[1], strerror(errno));
            else reply("OK");
        }
        else if (!strcmp(c, "fork")) cmd_fork(0);
        else if (!strcmp(c, "forkexit")) cmd_fork(1);
        else if (!strcmp(c, "reap")) cmd_reap(argc, argv);
        else if (!strcmp(c, "ping")) reply("OK %d", (int)getpid());
        else if (!strcmp(c, "clock")) {
            struct timespec ts;
            if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0) reply("ERR clock_gettime: %s", strerror(errno));
            else reply("OK %lld", (long long)ts.tv_sec);
        }
        else if (!strcmp(c, "exit")) { reply("OK"); break; }
        else if (!strcmp(c, "storm")) cmd_storm(argc, argv);
        else if (!strcmp(c, "exec")) cmd_exec(argc, argv);
        else reply("ERR unknown command: %s", c);
    }
    free(line);
    return 0;
}
