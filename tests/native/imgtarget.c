/* imgtarget: a process for the memory-image attack tests (issue 13, rounds 5 and 6): memory that changes without a
   write through this process's own page tables, and protection changes after writes.
   stdin commands, one per line; each answers one line:
     map <pages>                          anonymous private rw mapping (no THP) -> OK <hexaddr>
     shm <pages>                          a memfd of that size mapped MAP_SHARED rw -> OK <hexaddr> <fd>
     file <path> <pages>                  the file (created, sized) mapped MAP_PRIVATE read-only, not touched -> OK <hexaddr>
     fill <hexaddr> <pages> <seed>        every byte of the pages from a PRNG (never an all-zero page) -> OK
     write <hexaddr> <index> [count]      8 new bytes at the start of each page -> OK
     touch <hexaddr> <index> [count]      reads one byte of each page (a read fault) -> OK
     pwrite <fd> <index> [count]          write(2) of a new page at each index of the memfd (not through the mapping) -> OK
     protect <hexaddr> <pages> <prot>     mprotect: prot 0 none, 1 read, 3 read+write -> OK
     guard <hexaddr> <index> [count]      MADV_GUARD_INSTALL (Linux 6.15+: the pages become guard markers) -> OK
   Round 6 (memory that cannot be read plainly, mappings moved or replaced):
     uffd <hexaddr> <pages>               registers the pages with a userfaultfd in MISSING and WP mode that nobody
                                          serves (UFFD_USER_MODE_ONLY where the caller may not have more) and
                                          write-protects them all (WP_UNPOPULATED: unpopulated pages get a marker,
                                          which pagemap shows as swapped) -> OK <0|1 user-mode-only>
     dontneed <hexaddr> <index> [count]   MADV_DONTNEED of the pages -> OK
     secret <pages>                       memfd_secret mapped MAP_SHARED rw, filled (seed 7) -> OK <hexaddr>, or ERR secret <errno>
     grow <hexaddr> <pages> <newpages>    mremap MREMAP_MAYMOVE to the new size -> OK <hexaddr>
     fixed <hexaddr> <pages>              a new anonymous mapping MAP_FIXED over the pages (zeros) -> OK
     deleted <path> <pages>               the file (created, filled, seed 11) mapped MAP_PRIVATE rw, read, then unlinked -> OK <hexaddr>
   Round 9 (pages that change with no write by the process):
     free <hexaddr> <index> [count]       MADV_FREE of the pages (lazily freed: reclaim may drop them) -> OK
     pageout <hexaddr> <index> [count]    MADV_PAGEOUT of the pages (reclaims them now: lazily freed ones are dropped) -> OK
     hugetlb <pages>                      MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB rw of that many default huge pages -> OK <hexaddr> <hugepagesize>, or ERR hugetlb <errno>
   Round 10 (files another process truncates, extends or rewrites):
     mapfile <path> <pages> <shared>      the file (created if missing, its size kept) mapped rw, MAP_SHARED (1) or
                                          MAP_PRIVATE (0), its descriptor closed -> OK <hexaddr>
     mapkeep <path> <pages> <shared>      as mapfile, its descriptor kept open (round 26) -> OK <hexaddr> <fd, hex>
   Round 15 (resource limits):
     stripes <hexaddr> <pages>            mprotect every other page read-only: one mapping per page -> OK
   Round 17 (file and shared memory between saves):
     madvise <hexaddr> <index> <count> <advice>  madvise(2) of the pages with that advice (decimal) -> OK, or ERR madvise <errno>
     move <hexaddr> <pages>               mremap MREMAP_MAYMOVE|MREMAP_FIXED to a new place (the old one freed) -> OK <hexaddr>
     memfd <pages> <shared>               a memfd that allows seals, of that size, filled (seed 5) through a MAP_SHARED mapping,
                                          then mapped MAP_SHARED (1) or MAP_PRIVATE (0) rw -> OK <hexaddr> <fd, hex>
     seal <fd> <seals>                    fcntl F_ADD_SEALS with that mask (decimal) -> OK, or ERR seal <errno>
     mapat <path> <pages> <shared> <pageoffset>  as mapfile, at that page offset of the file -> OK <hexaddr>
     close <fd>                           close(2) of the descriptor (hex, as memfd answers it) -> OK
   Round 19 (mappings moved onto others, memfds truncated and regrown):
     moveto <hexaddr> <pages> <hexto>     mremap MREMAP_MAYMOVE|MREMAP_FIXED onto <hexto>, replacing what is mapped there -> OK, or ERR mremap <errno>
     trunc <fd> <pages>                   ftruncate(2) of the descriptor (hex) to that size -> OK, or ERR ftruncate <errno>
   Round 20 (memory of a file whose reads its server can hold):
     mapprivate <path> <pages>            the file opened read-only and mapped MAP_PRIVATE rw (a copy-on-write view of it: a
                                          page dropped reads the file again), not touched -> OK <hexaddr>, or ERR <what> <errno>
     dropcache <path>                     posix_fadvise POSIX_FADV_DONTNEED of the whole file: its clean pages mapped by no one
                                          leave the page cache (the next read of one asks the file system) -> OK <rc>
   Round 21 (memory kinds and mapping states between the images of a chain):
     mapx <pages> <flags>                 anonymous private rw mapping with extra mmap flags (decimal: MAP_NORESERVE 16384,
                                          MAP_LOCKED 8192, MAP_GROWSDOWN 256, MAP_SHARED 1 replaces MAP_PRIVATE), no THP -> OK <hexaddr>, or ERR mmap <errno>
     thp <hugepages>                      anonymous private rw mapping aligned to 2 MiB, MADV_HUGEPAGE -> OK <hexaddr>, or ERR <what> <errno>
     childwrite <hexaddr> <index> [count] a forked child writes 8 new bytes at the start of each page, then exits -> OK
     unmap <hexaddr> <index> [count]      munmap(2) of the pages -> OK, or ERR munmap <errno>
     lock <hexaddr> <index> [count]       mlock(2) of the pages -> OK, or ERR mlock <errno>
     resize <hexaddr> <pages> <newpages>  mremap without MREMAP_MAYMOVE (in place, or not at all) -> OK, or ERR mremap <errno>
     stride <hexaddr> <first> <count> <step>  8 new bytes at the start of <count> pages, every <step>th from <first> -> OK
     fixedfile <hexaddr> <pages> <shared> <path>  the file (created if missing, its size kept) mapped rw MAP_FIXED over the
                                          pages, MAP_SHARED (1) or MAP_PRIVATE (0), its descriptor closed -> OK, or ERR <what> <errno>
     perf <pages>                         a perf_event of this process (task clock, user only, sampling) with a ring of 1 + <pages>
                                          pages mapped MAP_SHARED rw (Linux 6.14+ maps it with remap_pfn_range) -> OK <hexaddr>, or ERR perf <errno>
     protect also takes prot 2 (PROT_WRITE only).
   Round 22 (special mappings: device and kernel-written memory, rings, guard regions):
     spin <ms>                            runs in user mode for that long (a perf ring's sampling event fires) -> OK
     perfhead <hexaddr>                   the data_head of the perf ring mapped there (what the kernel wrote) -> OK <decimal>
     uprobe                               a perf uprobe on this program's own probed() (CAP_PERFMON), then calls it: the
                                          kernel maps its [uprobes] page (VM_IO) to run the probed instruction -> OK, or ERR <what> <errno>
     sysvshm <pages> <rmid>               a System V segment attached rw, filled (seed 13), removed (IPC_RMID) while attached
                                          when <rmid> is 1 -> OK <hexaddr> <shmid>, or ERR <what> <errno>
     mseal <hexaddr> <pages>              mseal(2) of the pages (Linux 6.10): they can no longer be unmapped, moved or
                                          reprotected -> OK, or ERR mseal <errno>
     kvm <pages>                          a KVM guest whose memory is an anonymous private mapping of that many pages (no THP),
                                          its vCPU's run structure mapped MAP_SHARED (/dev/kvm) -> OK <hexmemory> <hexrun>, or ERR <what> <errno>
     kvmrun <index> <count>               the guest (real mode) writes 8 new bytes at the start of <count> pages of its memory
                                          from <index>, through its own page tables (EPT), not this process's -> OK <first value, hex>
     packet <frames>                      an AF_PACKET socket (CAP_NET_RAW) with a TPACKET_V2 receive ring of that many 4 KiB
                                          frames, bound to lo (brought up where it is down), the ring mapped MAP_SHARED -> OK <hexaddr>, or ERR <what> <errno>
     packetsend <count>                   sends that many UDP datagrams to a socket of its own on 127.0.0.1 and waits (2 s at
                                          most) until the kernel copied each into the ring as lo received it -> OK <frames filled>
     packetstatus <index>                 tp_status and tp_len of that ring frame as the process reads it -> OK <status> <len>
   Round 23 (mappings the module's write tracking leaves unregistered):
     uffdwp <hexaddr> <pages>             registers the pages with a userfaultfd of this process as the module's write tracking
                                          did before round 23 (WP_ASYNC | WP_UNPOPULATED, MODE_WP only), and write-protects them
                                          all: a write resolves itself, and a dropped page of a file or shmem mapping leaves a
                                          uffd-wp marker -> OK <0|1 user-mode-only>, or ERR uffdwp <errno>
   Round 23 (memory that ends with the process, not mapped in it):
     hugememfd <hugepages>                a memfd of huge pages (MFD_HUGETLB) that allows seals, filled (seed 5) through a MAP_SHARED
                                          mapping, then mapped again MAP_SHARED rw, not touched -> OK <hexaddr> <fd, hex> <hugepagesize, hex>, or ERR <what> <errno>
     name <hexaddr> <pages> <name>        prctl PR_SET_VMA_ANON_NAME of the pages (Linux 5.17; a MAP_SHARED|MAP_ANONYMOUS mapping
                                          shows as [anon_shmem:<name>] from 6.2) -> OK, or ERR prctl <errno>
   Round 24 (live counts):
     forkhold                             forks a child that only waits, and dies with this process (its pages stay shared
                                          copy-on-write with this process until one of them writes) -> OK <pid>
     forkend                              kills and reaps that child -> OK
     exit
   Starts with "READY <pid> <pagesize>". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/perf_event.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <time.h>

/* MADV_GUARD_INSTALL, by number: older headers lack it. */
#define MADV_GUARD_INSTALL_ 102

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* Linux 6.4; older headers lack it */
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static long ps;
static uint64_t counter = 1;
/* The child forkhold started (0: none). */
static pid_t held = 0;

/* splitmix64: the pages' bytes for "fill" and "pwrite" (the first byte of each page made odd: never an all-zero page). */
static uint64_t next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill(unsigned char *p, long pages, uint64_t seed) {
    for (long i = 0; i < pages * ps; i += 8) { uint64_t v = next(&seed); memcpy(p + i, &v, 8); }
    for (long i = 0; i < pages; i++) p[i * ps] |= 1;
}

/* A userfaultfd in MISSING mode over the range, never read: a fault there waits until the descriptor closes. */
static int uffd_register(unsigned char *p, long pages, int *usermode) {
    *usermode = 0;
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { *usermode = 1; fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY); }
    if (fd < 0) return -1;
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_UNPOPULATED };
    if (ioctl(fd, UFFDIO_API, &api)) return -1;
    struct uffdio_register reg = { .range = { (uintptr_t)p, (uint64_t)(pages * ps) }, .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };
    if (ioctl(fd, UFFDIO_REGISTER, &reg)) return -1;
    /* Write-protected, unpopulated pages get a marker that pagemap shows as swapped: a read of one faults (MISSING). */
    struct uffdio_writeprotect wp = { .range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
    return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) ? -1 : 0;
}


#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* Linux 6.7; older headers lack it */
#endif

/* "uffdwp": async write-protect of the range with a userfaultfd of this process (never read: no fault waits). */
static int uffd_register_wp(unsigned char *p, long pages, int *usermode) {
    *usermode = 0;
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { *usermode = 1; fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY); }
    if (fd < 0) return -1;
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
    if (ioctl(fd, UFFDIO_API, &api)) return -1;
    struct uffdio_register reg = { .range = { (uintptr_t)p, (uint64_t)(pages * ps) }, .mode = UFFDIO_REGISTER_MODE_WP };
    if (ioctl(fd, UFFDIO_REGISTER, &reg)) return -1;
    struct uffdio_writeprotect wp = { .range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
    return ioctl(fd, UFFDIO_WRITEPROTECT, &wp) ? -1 : 0;
}

/* Round 22: the function "uprobe" probes (not inlined: its first instruction is where the probe sits). */
__attribute__((noinline, used)) int probed(int x) { return x * 3 + 1; }

/* The offset of probed() in this program's file: its address less the start of the mapping of the file that holds it. */
static long probed_offset(char *path, size_t size) {
    FILE *m = fopen("/proc/self/maps", "r");
    char l[4352];
    uintptr_t at = (uintptr_t)&probed;
    long off = -1;
    while (m && fgets(l, sizeof l, m)) {
        unsigned long lo, hi, fo;
        char p[4097] = "";
        if (sscanf(l, "%lx-%lx %*s %lx %*s %*s %4096s", &lo, &hi, &fo, p) >= 3 && at >= lo && at < hi) {
            off = (long)(at - lo + fo);
            snprintf(path, size, "%s", p);
            break;
        }
    }
    if (m) fclose(m);
    return off;
}

/* The KVM guest of "kvm": its memory, vCPU and run structure. */
static struct { int vm, vcpu; unsigned char *mem; struct kvm_run *run; long pages; } kvm = { -1, -1, NULL, NULL, 0 };
/* The ring of "packet", of frames of this size. */
#define PACKET_FRAME 4096
static struct { int fd, sink; unsigned char *ring; long frames; struct sockaddr_in to; } packet = { -1, -1, NULL, 0, { 0 } };

/* The frames of the packet ring that hold a packet for the process (TP_STATUS_USER). */
static long packet_frames(void) {
    long n = 0;
    for (long i = 0; i < packet.frames; i++)
        if (__atomic_load_n(&((struct tpacket2_hdr *)(packet.ring + i * PACKET_FRAME))->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) n++;
    return n;
}

int main(void) {
    static char line[4352];
    ps = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    fprintf(stdout, "READY %d %ld\n", (int)getpid(), ps);
    for (;;) {
        if (!fgets(line, sizeof line, stdin)) break;
        char cmd[16] = "";
        unsigned long long a = 0;
        long x = 0, y = 1;
        if (sscanf(line, "%15s %llx %ld %ld", cmd, &a, &x, &y) < 1) continue;
        unsigned char *p = (unsigned char *)(uintptr_t)a;
        if (!strcmp(cmd, "map")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            madvise(m, pages * ps, MADV_NOHUGEPAGE);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "shm")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            int fd = memfd_create("imgtarget-shm", MFD_CLOEXEC);
            if (fd < 0 || ftruncate(fd, pages * ps) != 0) { printf("ERR memfd\n"); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            printf("OK %llx %x\n", (unsigned long long)(uintptr_t)m, fd); /* the fd in hex, as pwrite reads it */
        } else if (!strcmp(cmd, "file")) {
            char path[4097];
            long pages = 0;
            if (sscanf(line, "%*s %4096s %ld", path, &pages) != 2) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0 || ftruncate(fd, pages * ps) != 0) { printf("ERR open\n"); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ, MAP_PRIVATE, fd, 0);
            close(fd);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "fill")) {
            fill(p, x, (uint64_t)y);
            printf("OK\n");
        } else if (!strcmp(cmd, "write")) {
            for (long i = 0; i < y; i++) { uint64_t v = ++counter * 0x100000001B3ull; memcpy(p + (x + i) * ps, &v, 8); }
            printf("OK\n");
        } else if (!strcmp(cmd, "touch")) {
            volatile unsigned char sink = 0;
            for (long i = 0; i < y; i++) sink ^= *(volatile unsigned char *)(p + (x + i) * ps);
            (void)sink;
            printf("OK\n");
        } else if (!strcmp(cmd, "pwrite")) {
            /* "pwrite <fd> <index> [count]": the first number is read as hex above; fds here are small, so the same. */
            unsigned char *page = malloc(ps);
            int ok = 1;
            for (long i = 0; i < y && ok; i++) {
                fill(page, 1, ++counter);
                ok = pwrite((int)a, page, ps, (x + i) * ps) == ps;
            }
            free(page);
            printf(ok ? "OK\n" : "ERR pwrite\n");
        } else if (!strcmp(cmd, "protect")) {
            int prot = y == 0 ? PROT_NONE : y == 1 ? PROT_READ : y == 2 ? PROT_WRITE : PROT_READ | PROT_WRITE;
            printf(mprotect(p, x * ps, prot) == 0 ? "OK\n" : "ERR mprotect\n");
        } else if (!strcmp(cmd, "guard")) {
            printf(madvise(p + x * ps, y * ps, MADV_GUARD_INSTALL_) == 0 ? "OK\n" : "ERR madvise\n");
        } else if (!strcmp(cmd, "uffd")) {
            int usermode;
            if (uffd_register(p, x, &usermode)) printf("ERR uffd %d\n", errno);
            else printf("OK %d\n", usermode);
        } else if (!strcmp(cmd, "uffdwp")) {
            int usermode;
            if (uffd_register_wp(p, x, &usermode)) printf("ERR uffdwp %d\n", errno);
            else printf("OK %d\n", usermode);
        } else if (!strcmp(cmd, "dontneed")) {
            printf(madvise(p + x * ps, y * ps, MADV_DONTNEED) == 0 ? "OK\n" : "ERR madvise\n");
        } else if (!strcmp(cmd, "secret")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            int fd = (int)syscall(447 /* memfd_secret */, 0);
            if (fd < 0) { printf("ERR secret %d\n", errno); continue; }
            if (ftruncate(fd, pages * ps)) { printf("ERR secret %d\n", errno); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) { printf("ERR secret %d\n", errno); continue; }
            fill(m, pages, 7);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "grow")) {
            void *m = mremap(p, x * ps, y * ps, MREMAP_MAYMOVE);
            if (m == MAP_FAILED) { printf("ERR mremap\n"); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "fixed")) {
            void *m = mmap(p, x * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            madvise(m, x * ps, MADV_NOHUGEPAGE);
            printf("OK\n");
        } else if (!strcmp(cmd, "deleted")) {
            char path[4097];
            long pages = 0;
            if (sscanf(line, "%*s %4096s %ld", path, &pages) != 2) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0 || ftruncate(fd, pages * ps)) { printf("ERR open\n"); continue; }
            unsigned char *f = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (f == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            fill(f, pages, 11);
            munmap(f, pages * ps);
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
            close(fd);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            volatile unsigned char sum = 0;
            for (long i = 0; i < pages; i++) sum += ((unsigned char *)m)[i * ps];
            unlink(path);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "free")) {
            printf(madvise(p + x * ps, y * ps, MADV_FREE) == 0 ? "OK\n" : "ERR madvise\n");
        } else if (!strcmp(cmd, "pageout")) {
            printf(madvise(p + x * ps, y * ps, MADV_PAGEOUT) == 0 ? "OK\n" : "ERR madvise\n");
        } else if (!strcmp(cmd, "hugetlb")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            long huge = 0;
            FILE *mi = fopen("/proc/meminfo", "r");
            char l[256];
            while (mi && fgets(l, sizeof l, mi)) if (sscanf(l, "Hugepagesize: %ld kB", &huge) == 1) break;
            if (mi) fclose(mi);
            if (huge <= 0) { printf("ERR hugetlb %d\n", ENOENT); continue; }
            void *m = mmap(NULL, pages * huge * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
            if (m == MAP_FAILED) { printf("ERR hugetlb %d\n", errno); continue; }
            printf("OK %llx %lx\n", (unsigned long long)(uintptr_t)m, huge * 1024);
        } else if (!strcmp(cmd, "mapprivate")) {
            char path[4097];
            long pages = 0;
            if (sscanf(line, "%*s %4096s %ld", path, &pages) != 2) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) { printf("ERR open %d\n", errno); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
            int e = errno;
            close(fd);
            if (m == MAP_FAILED) { printf("ERR mmap %d\n", e); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "dropcache")) {
            char path[4097];
            if (sscanf(line, "%*s %4096s", path) != 1) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) { printf("ERR open %d\n", errno); continue; }
            int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
            printf("OK %d\n", rc);
        } else if (!strcmp(cmd, "mapfile") || !strcmp(cmd, "mapkeep")) {
            char path[4097];
            long pages = 0, shared = 0;
            if (sscanf(line, "%*s %4096s %ld %ld", path, &pages, &shared) != 3) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) { printf("ERR open\n"); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
            int keep = !strcmp(cmd, "mapkeep");
            if (!keep) close(fd);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            if (keep) printf("OK %llx %x\n", (unsigned long long)(uintptr_t)m, fd);
            else printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "madvise")) {
            long advice = -1;
            if (sscanf(line, "%*s %*x %*d %*d %ld", &advice) != 1) { printf("ERR usage\n"); continue; }
            if (madvise(p + x * ps, y * ps, (int)advice) == 0) printf("OK\n"); else printf("ERR madvise %d\n", errno);
        } else if (!strcmp(cmd, "move")) {
            void *to = mmap(NULL, x * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (to == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            void *m = mremap(p, x * ps, x * ps, MREMAP_MAYMOVE | MREMAP_FIXED, to);
            if (m == MAP_FAILED) { printf("ERR mremap %d\n", errno); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "moveto")) {
            /* "moveto <from> <pages> <to>": mremap(MREMAP_FIXED) of the pages at <from> onto <to>, replacing what is mapped there. */
            unsigned long long to = 0;
            if (sscanf(line, "%*s %*x %*d %llx", &to) != 1) { printf("ERR usage\n"); continue; }
            void *m = mremap(p, x * ps, x * ps, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)(uintptr_t)to);
            printf(m == MAP_FAILED ? "ERR mremap %d\n" : "OK\n", errno);
        } else if (!strcmp(cmd, "trunc")) {
            /* "trunc <fd> <pages>": ftruncate of a descriptor the target holds (the fd in hex, as pwrite reads it). */
            printf(ftruncate((int)a, x * ps) == 0 ? "OK\n" : "ERR ftruncate %d\n", errno);
        } else if (!strcmp(cmd, "memfd")) {
            long pages = 0, shared = 0;
            if (sscanf(line, "%*s %ld %ld", &pages, &shared) != 2) { printf("ERR usage\n"); continue; }
            int fd = memfd_create("imgtarget-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
            if (fd < 0 || ftruncate(fd, pages * ps) != 0) { printf("ERR memfd\n"); continue; }
            unsigned char *f = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (f == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            fill(f, pages, 5);
            munmap(f, pages * ps);
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            printf("OK %llx %x\n", (unsigned long long)(uintptr_t)m, fd);
        } else if (!strcmp(cmd, "close")) {
            printf(close((int)a) == 0 ? "OK\n" : "ERR close %d\n", errno);
        } else if (!strcmp(cmd, "seal")) {
            { int rc = fcntl((int)a, F_ADD_SEALS, (int)x); printf(rc == 0 ? "OK\n" : "ERR seal %d\n", errno); }
        } else if (!strcmp(cmd, "mapat")) {
            char path[4097];
            long pages = 0, shared = 0, offset = 0;
            if (sscanf(line, "%*s %4096s %ld %ld %ld", path, &pages, &shared, &offset) != 4) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) { printf("ERR open\n"); continue; }
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, offset * ps);
            close(fd);
            if (m == MAP_FAILED) { printf("ERR mmap %d\n", errno); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "mapx")) {
            long pages = 0, flags = 0;
            if (sscanf(line, "%*s %ld %ld", &pages, &flags) != 2) { printf("ERR usage\n"); continue; }
            int kind = (flags & MAP_SHARED) ? MAP_SHARED : MAP_PRIVATE;
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, kind | MAP_ANONYMOUS | (int)(flags & ~(long)MAP_SHARED), -1, 0);
            if (m == MAP_FAILED) { printf("ERR mmap %d\n", errno); continue; }
            madvise(m, pages * ps, MADV_NOHUGEPAGE);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "thp")) {
            long huge = 0;
            sscanf(line, "%*s %ld", &huge);
            size_t len = (size_t)huge << 21;
            unsigned char *m = mmap(NULL, len + (2ul << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) { printf("ERR mmap %d\n", errno); continue; }
            unsigned char *al = (unsigned char *)(((uintptr_t)m + (2ul << 20) - 1) & ~((2ul << 20) - 1));
            if (al > m) munmap(m, al - m);
            munmap(al + len, (m + len + (2ul << 20)) - (al + len));
            if (madvise(al, len, MADV_HUGEPAGE)) { printf("ERR madvise %d\n", errno); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)al);
        } else if (!strcmp(cmd, "childwrite")) {
            pid_t c = fork();
            if (c == 0) {
                for (long i = 0; i < y; i++) { uint64_t v = (counter + 1 + i) * 0x100000001B3ull ^ 0xC41Dull; memcpy(p + (x + i) * ps, &v, 8); }
                _exit(0);
            }
            counter += y;
            int st = 0;
            if (c < 0 || waitpid(c, &st, 0) != c) { printf("ERR fork %d\n", errno); continue; }
            printf("OK\n");
        } else if (!strcmp(cmd, "forkhold")) {
            if (held > 0) { printf("ERR held\n"); continue; }
            pid_t c = fork();
            if (c == 0) { prctl(PR_SET_PDEATHSIG, SIGKILL); for (;;) pause(); } /* (it ends with this process) */
            if (c < 0) { printf("ERR fork %d\n", errno); continue; }
            held = c;
            printf("OK %d\n", (int)c);
        } else if (!strcmp(cmd, "forkend")) {
            int st = 0;
            if (held <= 0 || kill(held, SIGKILL) != 0 || waitpid(held, &st, 0) != held) { printf("ERR forkend %d\n", errno); continue; }
            held = 0;
            printf("OK\n");
        } else if (!strcmp(cmd, "stride")) {
            long step = 1;
            if (sscanf(line, "%*s %*x %*d %*d %ld", &step) != 1 || step < 1) { printf("ERR usage\n"); continue; }
            for (long i = 0; i < y; i++) { uint64_t v = ++counter * 0x100000001B3ull; memcpy(p + (x + i * step) * ps, &v, 8); }
            printf("OK\n");
        } else if (!strcmp(cmd, "fixedfile")) {
            char path[4097];
            long shared = 0;
            if (sscanf(line, "%*s %*x %*d %ld %4096s", &shared, path) != 2) { printf("ERR usage\n"); continue; }
            int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0) { printf("ERR open %d\n", errno); continue; }
            void *m = mmap(p, x * ps, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd, 0);
            int e = errno;
            close(fd);
            if (m == MAP_FAILED) printf("ERR mmap %d\n", e); else printf("OK\n");
        } else if (!strcmp(cmd, "perf")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            struct perf_event_attr pa = { .type = PERF_TYPE_SOFTWARE, .size = sizeof pa, .config = PERF_COUNT_SW_TASK_CLOCK,
                                          .sample_period = 100000, .sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID,
                                          .exclude_kernel = 1, .exclude_hv = 1 };
            int fd = (int)syscall(SYS_perf_event_open, &pa, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
            if (fd < 0) { printf("ERR perf %d\n", errno); continue; }
            void *m = mmap(NULL, (pages + 1) * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) { printf("ERR perf %d\n", errno); continue; }
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "unmap")) {
            printf(munmap(p + x * ps, y * ps) == 0 ? "OK\n" : "ERR munmap %d\n", errno);
        } else if (!strcmp(cmd, "lock")) {
            printf(mlock(p + x * ps, y * ps) == 0 ? "OK\n" : "ERR mlock %d\n", errno);
        } else if (!strcmp(cmd, "resize")) {
            void *m = mremap(p, x * ps, y * ps, 0);
            printf(m == MAP_FAILED ? "ERR mremap %d\n" : "OK\n", errno);
        } else if (!strcmp(cmd, "hugememfd")) {
            long huge = 0, count = 0;
            sscanf(line, "%*s %ld", &count);
            FILE *mi = fopen("/proc/meminfo", "r");
            char l[256];
            while (mi && fgets(l, sizeof l, mi)) if (sscanf(l, "Hugepagesize: %ld kB", &huge) == 1) break;
            if (mi) fclose(mi);
            if (huge <= 0) { printf("ERR hugepagesize %d\n", ENOENT); continue; }
            size_t len = (size_t)count * (size_t)huge * 1024;
            int fd = memfd_create("imgtarget-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
            if (fd < 0) { printf("ERR memfd %d\n", errno); continue; }
            if (ftruncate(fd, (off_t)len)) { printf("ERR ftruncate %d\n", errno); close(fd); continue; }
            unsigned char *f = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (f == MAP_FAILED) { printf("ERR mmap %d\n", errno); close(fd); continue; }
            if (madvise(f, len, MADV_POPULATE_WRITE)) { printf("ERR populate %d\n", errno); munmap(f, len); close(fd); continue; }
            fill(f, (long)(len / ps), 5);
            munmap(f, len);
            void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED) { printf("ERR mmap %d\n", errno); close(fd); continue; }
            printf("OK %llx %x %lx\n", (unsigned long long)(uintptr_t)m, fd, huge * 1024);
        } else if (!strcmp(cmd, "name")) {
            char name[64];
            if (sscanf(line, "%*s %*x %*d %63s", name) != 1) { printf("ERR usage\n"); continue; }
            int rc = prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, (unsigned long)(x * ps), (unsigned long)name);
            printf(rc == 0 ? "OK\n" : "ERR prctl %d\n", errno);
        } else if (!strcmp(cmd, "exit")) {
            printf("OK\n");
            return 0;
        } else if (!strcmp(cmd, "stripes")) {
            long i = 1;
            while (i < x && mprotect(p + i * ps, ps, PROT_READ) == 0) i += 2;
            printf(i < x ? "ERR mprotect %d\n" : "OK\n", errno);
        } else if (!strcmp(cmd, "spin")) {
            long ms = 0;
            sscanf(line, "%*s %ld", &ms);
            struct timespec t0, t;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            volatile uint64_t sink = 0;
            do {
                for (int i = 0; i < 100000; i++) sink += (uint64_t)i * 7;
                clock_gettime(CLOCK_MONOTONIC, &t);
            } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
            printf("OK\n");
        } else if (!strcmp(cmd, "perfhead")) {
            struct perf_event_mmap_page *h = (struct perf_event_mmap_page *)p;
            printf("OK %llu\n", (unsigned long long)__atomic_load_n(&h->data_head, __ATOMIC_ACQUIRE));
        } else if (!strcmp(cmd, "uprobe")) {
            char path[4097];
            long off = probed_offset(path, sizeof path);
            FILE *tf = fopen("/sys/bus/event_source/devices/uprobe/type", "r");
            int type = -1;
            if (!tf || fscanf(tf, "%d", &type) != 1) { printf("ERR uprobe-type %d\n", errno); if (tf) fclose(tf); continue; }
            fclose(tf);
            if (off < 0) { printf("ERR uprobe-offset 0\n"); continue; }
            struct perf_event_attr pa = { .type = (unsigned)type, .size = sizeof pa, .config1 = (uint64_t)(uintptr_t)path, .config2 = (uint64_t)off };
            int fd = (int)syscall(SYS_perf_event_open, &pa, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
            if (fd < 0) { printf("ERR uprobe %d\n", errno); continue; }
            volatile int r = probed((int)counter);
            (void)r;
            printf("OK\n");
        } else if (!strcmp(cmd, "sysvshm")) {
            long pages = 0, rmid = 0;
            if (sscanf(line, "%*s %ld %ld", &pages, &rmid) != 2) { printf("ERR usage\n"); continue; }
            int id = shmget(IPC_PRIVATE, (size_t)(pages * ps), IPC_CREAT | 0600);
            if (id < 0) { printf("ERR shmget %d\n", errno); continue; }
            unsigned char *m = shmat(id, NULL, 0);
            if (m == (void *)-1) { printf("ERR shmat %d\n", errno); shmctl(id, IPC_RMID, NULL); continue; }
            fill(m, pages, 13);
            if (rmid && shmctl(id, IPC_RMID, NULL)) { printf("ERR shmctl %d\n", errno); continue; }
            printf("OK %llx %d\n", (unsigned long long)(uintptr_t)m, id);
        } else if (!strcmp(cmd, "mseal")) {
            printf(syscall(462 /* mseal */, p, x * ps, 0) == 0 ? "OK\n" : "ERR mseal %d\n", errno);
        } else if (!strcmp(cmd, "kvm")) {
            long pages = 0;
            sscanf(line, "%*s %ld", &pages);
            if (kvm.vm >= 0) { printf("ERR kvm-twice 0\n"); continue; }
            if (pages < 1 || pages > 15) { printf("ERR usage\n"); continue; }
            int k = open("/dev/kvm", O_RDWR | O_CLOEXEC);
            if (k < 0) { printf("ERR open-kvm %d\n", errno); continue; }
            int vm = ioctl(k, KVM_CREATE_VM, 0);
            if (vm < 0) { printf("ERR create-vm %d\n", errno); close(k); continue; }
            /* Page 0 holds the guest's code at 0x800: mov [bx], eax; hlt (real mode, DS 0), after the 8 bytes a write puts at 0. */
            unsigned char *mem = mmap(NULL, (size_t)(pages + 1) * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (mem == MAP_FAILED) { printf("ERR mmap %d\n", errno); continue; }
            madvise(mem, (size_t)(pages + 1) * ps, MADV_NOHUGEPAGE);
            static const unsigned char code[] = { 0x66, 0x89, 0x07, 0x66, 0x89, 0x57, 0x04, 0xf4 }; /* mov [bx], eax; mov [bx+4], edx; hlt */
            memcpy(mem + 0x800, code, sizeof code);
            struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = (uint64_t)(pages + 1) * ps, .userspace_addr = (uintptr_t)mem };
            if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region)) { printf("ERR region %d\n", errno); continue; }
            int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
            if (vcpu < 0) { printf("ERR vcpu %d\n", errno); continue; }
            int size = ioctl(k, KVM_GET_VCPU_MMAP_SIZE, 0);
            struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
            if (run == MAP_FAILED) { printf("ERR mmap-run %d\n", errno); continue; }
            struct kvm_sregs sr;
            if (ioctl(vcpu, KVM_GET_SREGS, &sr)) { printf("ERR sregs %d\n", errno); continue; }
            sr.cs.base = 0; sr.cs.selector = 0; sr.ds.base = 0; sr.ds.selector = 0;
            if (ioctl(vcpu, KVM_SET_SREGS, &sr)) { printf("ERR sregs %d\n", errno); continue; }
            kvm.vm = vm; kvm.vcpu = vcpu; kvm.mem = mem; kvm.run = run; kvm.pages = pages;
            /* The guest's memory the tests look at starts a page in (page 0 holds the code). */
            printf("OK %llx %llx\n", (unsigned long long)(uintptr_t)(mem + ps), (unsigned long long)(uintptr_t)run);
        } else if (!strcmp(cmd, "kvmrun")) {
            long index = 0, count = 1;
            if (sscanf(line, "%*s %ld %ld", &index, &count) != 2 || kvm.vcpu < 0 || index < 0 || index + count > kvm.pages) { printf("ERR usage\n"); continue; }
            uint64_t first = 0;
            int ok = 1;
            for (long i = 0; i < count && ok; i++) {
                uint64_t v = ++counter * 0x100000001B3ull ^ 0x6B766Dull;
                if (i == 0) first = v;
                struct kvm_regs r = { .rip = 0x800, .rflags = 2, .rbx = (uint64_t)(index + 1 + i) * (uint64_t)ps, .rax = v & 0xffffffffu, .rdx = v >> 32 };
                if (ioctl(kvm.vcpu, KVM_SET_REGS, &r) || ioctl(kvm.vcpu, KVM_RUN, 0) || kvm.run->exit_reason != KVM_EXIT_HLT) ok = 0;
            }
            if (ok) printf("OK %llx\n", (unsigned long long)first); else printf("ERR run %d %d\n", errno, kvm.run->exit_reason);
        } else if (!strcmp(cmd, "packet")) {
            long frames = 0;
            sscanf(line, "%*s %ld", &frames);
            /* lo up (in a network namespace of its own it starts down; where it is up already, or may not be changed, as it is) */
            int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct ifreq ifr = { 0 };
            strcpy(ifr.ifr_name, "lo");
            if (ctl >= 0 && ioctl(ctl, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) { ifr.ifr_flags |= IFF_UP; ioctl(ctl, SIOCSIFFLAGS, &ifr); }
            if (ctl >= 0) close(ctl);
            int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
            if (fd < 0) { printf("ERR socket %d\n", errno); continue; }
            int v = TPACKET_V2;
            if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v)) { printf("ERR version %d\n", errno); close(fd); continue; }
            struct tpacket_req req = { .tp_block_size = PACKET_FRAME, .tp_block_nr = (unsigned)frames, .tp_frame_size = PACKET_FRAME, .tp_frame_nr = (unsigned)frames };
            if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) { printf("ERR ring %d\n", errno); close(fd); continue; }
            unsigned char *ring = mmap(NULL, (size_t)frames * PACKET_FRAME, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (ring == MAP_FAILED) { printf("ERR mmap %d\n", errno); close(fd); continue; }
            struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = (int)if_nametoindex("lo") };
            if (bind(fd, (struct sockaddr *)&ll, sizeof ll)) { printf("ERR bind %d\n", errno); continue; }
            /* A UDP socket the datagrams go to (none is refused: no ICMP reply, whose rate the kernel limits, joins the ring). */
            int sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = { htonl(INADDR_LOOPBACK) } };
            socklen_t tl = sizeof to;
            if (sink < 0 || bind(sink, (struct sockaddr *)&to, sizeof to) || getsockname(sink, (struct sockaddr *)&to, &tl)) { printf("ERR sink %d\n", errno); continue; }
            packet.fd = fd; packet.sink = sink; packet.ring = ring; packet.frames = frames; packet.to = to;
            printf("OK %llx\n", (unsigned long long)(uintptr_t)ring);
        } else if (!strcmp(cmd, "packetsend")) {
            long count = 0;
            sscanf(line, "%*s %ld", &count);
            if (!packet.ring) { printf("ERR usage\n"); continue; }
            long before = packet_frames();
            int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            int ok = s >= 0;
            for (long i = 0; i < count && ok; i++) {
                uint64_t msg[8];
                for (int j = 0; j < 8; j++) msg[j] = ++counter * 0x100000001B3ull;
                ok = sendto(s, msg, sizeof msg, 0, (struct sockaddr *)&packet.to, sizeof packet.to) == (ssize_t)sizeof msg;
            }
            if (s >= 0) close(s);
            if (!ok) { printf("ERR send %d\n", errno); continue; }
            /* The ring (bound to ETH_P_IP, not ETH_P_ALL) gets each datagram as lo receives it: wait (2 s at most) until the kernel put them there. */
            struct timespec t0, t;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            long now;
            do {
                now = packet_frames();
                clock_gettime(CLOCK_MONOTONIC, &t);
            } while (now < before + count && now < packet.frames && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
            printf("OK %ld\n", now);
        } else if (!strcmp(cmd, "packetstatus")) {
            long index = 0;
            sscanf(line, "%*s %ld", &index);
            if (!packet.ring || index < 0 || index >= packet.frames) { printf("ERR usage\n"); continue; }
            struct tpacket2_hdr *h = (struct tpacket2_hdr *)(packet.ring + index * PACKET_FRAME);
            printf("OK %u %u\n", __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE), h->tp_len);
        } else printf("ERR unknown\n");
    }
    return 0;
}
