/* fighttarget: a process whose memory fights back (issue 13, round 31): pages served by a userfaultfd that no
   descriptor of the process names, pages that vanish between the pagemap walk and the read.
   stdin commands, one per line; each answers one line:
     map <pages> <path>                   anonymous private rw mapping (no THP), every page filled (seed 3, the first byte
                                          odd: never an all-zero page), its bytes also written to the file <path> -> OK <hexaddr>
     shm <pages> <path>                   as map, of a memfd mapped MAP_SHARED -> OK <hexaddr>
     hide <hexaddr> <pages> <how> <minor> registers the pages with a userfaultfd in MISSING mode (minor 1: MINOR mode, of
                                          memory mapped by shm; minor 2: async write-protect, WP_ASYNC, as a garbage
                                          collector tracking its own writes does, round 32) that nobody serves, then
                                          keeps it where /proc/PID/fd does not show it: how 0 in flight (sent over a
                                          socketpair of this process and never received), 1 in a child that sleeps,
                                          2 kept open here (as earlier rounds did); the child unmaps its
                                          copy of the pages -> OK <0|1 user-mode-only>, or ERR hide <errno>
   Round 32, a process that tracks its own writes:
     fill <hexaddr> <page> <byte>         every byte of page <page> (from 0) set to <byte> (decimal) -> OK
     written <hexaddr> <pages>            PAGEMAP_SCAN of /proc/self/pagemap, WP_MATCHING | CHECK_WPASYNC, mask = return =
                                          WRITTEN: collects and re-protects the written pages -> OK <count>, or ERR written <errno>
     uffds                                the descriptors of /proc/self/fd that are a userfaultfd -> OK <fd>...
     uffd <op> <fd> <hexaddr> <pages>     op wp: UFFDIO_WRITEPROTECT MODE_WP, op unreg: UFFDIO_UNREGISTER of the pages through
                                          descriptor <fd> -> OK, or ERR uffd <errno>
     fork                                 a child that keeps a copy of everything and sleeps until this process ends -> OK <pid>
     dump <hexaddr> <pages> <path>        the pages' bytes now, written to the file <path> -> OK
     keepexec <fd>                        descriptor <fd> made to survive exec (close-on-exec off), then this program exec'd
                                          again: it starts anew with "READY <pid> <pagesize>", or says ERR keepexec <errno>
     drop <hexaddr> <pages> <micros>      a thread drops the pages (MADV_DONTNEED) one by one from the last down, one each
                                          <micros> microseconds, then ends -> OK
     left <hexaddr> <pages>               how many of the pages are still present (mincore) -> OK <count>
   Starts with "READY <pid> <pagesize>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
/* Linux 6.7 (older headers lack them): userfaultfd async write-protect, and PAGEMAP_SCAN (include/uapi/linux/fs.h), whose
   argument is twelve 64-bit fields (size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
   category_mask, category_anyof_mask, return_mask) and whose output is (start, end, categories) triples. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
enum { SCAN_SIZE, SCAN_FLAGS, SCAN_START, SCAN_END, SCAN_WALK_END, SCAN_VEC, SCAN_VEC_LEN, SCAN_MAX_PAGES, SCAN_INVERTED,
       SCAN_MASK, SCAN_ANYOF, SCAN_RETURN, SCAN_FIELDS };
#define SCAN_IOCTL _IOWR('f', 16, uint64_t[SCAN_FIELDS])
#define SCAN_WP_MATCHING 1ULL
#define SCAN_CHECK_WPASYNC 2ULL
#define SCAN_WRITTEN 2ULL

static long ps;

static uint64_t next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int send_fd(int sock, int fd) {
    char dummy = 'u';
    struct iovec iov = { .iov_base = &dummy, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int hide(unsigned char *p, long pages, int how, int minor, int *usermode) {
    *usermode = 0;
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { *usermode = 1; fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY); }
    if (fd < 0) return -1;
    struct uffdio_api api = { .api = UFFD_API, .features = minor == 2 ? UFFD_FEATURE_WP_ASYNC : minor ? UFFD_FEATURE_MINOR_SHMEM : 0 };
    if (ioctl(fd, UFFDIO_API, &api)) return -1;
    struct uffdio_register reg = { .range = { (uintptr_t)p, (uint64_t)(pages * ps) },
                                   .mode = minor == 2 ? UFFDIO_REGISTER_MODE_WP : minor ? UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(fd, UFFDIO_REGISTER, &reg)) return -1;
    if (how == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv)) return -1;
        if (send_fd(sv[0], fd)) return -1;
        close(fd); /* sv[0] and sv[1] stay open: the message, and the userfaultfd with it, stay in flight */
    } else if (how == 1) {
        pid_t child = fork();
        if (child < 0) return -1;
        if (child == 0) {
            /* holds the userfaultfd alone, never reads it, and ends with this process */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            /* its copy of the pages goes: they stay the parent's alone (a page shared copy-on-write is read otherwise) */
            munmap(p, pages * ps);
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0); dup2(null, 1); dup2(null, 2);
            for (;;) pause();
        }
        close(fd);
    }
    return 0;
}

/* The written pages of [p, p + pages) of this process, collected and write-protected again; -1 on failure. */
static long written(int pagemap, unsigned char *p, long pages) {
    uint64_t out[3 * 256], arg[SCAN_FIELDS];
    long count = 0;
    uint64_t at = (uintptr_t)p, end = (uintptr_t)p + (uint64_t)(pages * ps);
    while (at < end) {
        memset(arg, 0, sizeof arg);
        arg[SCAN_SIZE] = sizeof arg; arg[SCAN_FLAGS] = SCAN_WP_MATCHING | SCAN_CHECK_WPASYNC; arg[SCAN_START] = at; arg[SCAN_END] = end;
        arg[SCAN_VEC] = (uintptr_t)out; arg[SCAN_VEC_LEN] = 256; arg[SCAN_MASK] = arg[SCAN_RETURN] = SCAN_WRITTEN;
        long n = ioctl(pagemap, SCAN_IOCTL, arg);
        if (n < 0) return -1;
        for (long i = 0; i < n; i++) count += (long)((out[3 * i + 1] - out[3 * i]) / (uint64_t)ps);
        if (arg[SCAN_WALK_END] <= at) break;
        at = arg[SCAN_WALK_END];
    }
    return count;
}

static void print_uffds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char link[300], target[128];
    printf("OK");
    while (d && (e = readdir(d))) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = e->d_name[0] == '.' ? -1 : readlink(link, target, sizeof target - 1);
        if (n < 0) continue;
        target[n] = 0;
        if (strstr(target, "userfaultfd")) printf(" %s", e->d_name);
    }
    if (d) closedir(d);
    printf("\n");
}

struct dropper { unsigned char *p; long pages; long micros; };

static void *drop_pages(void *arg) {
    struct dropper *d = arg;
    struct timespec pause_for = { 0, d->micros * 1000 };
    for (long i = d->pages - 1; i >= 0; i--) {
        madvise(d->p + i * ps, ps, MADV_DONTNEED);
        if (d->micros) nanosleep(&pause_for, NULL);
    }
    free(d);
    return NULL;
}

int main(void) {
    ps = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    fprintf(stdout, "READY %d %ld\n", (int)getpid(), ps);
    char line[512], cmd[32], path[256];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long a = 0;
        long x = 0, y = 0, z = 0;
        if (sscanf(line, "%31s", cmd) != 1) continue;
        if ((!strcmp(cmd, "map") || !strcmp(cmd, "shm")) && sscanf(line, "%*s %ld %255s", &x, path) == 2) {
            int shared = !strcmp(cmd, "shm"), mfd = -1;
            if (shared && ((mfd = memfd_create("fight", MFD_CLOEXEC)) < 0 || ftruncate(mfd, x * ps))) { printf("ERR shm %d\n", errno); continue; }
            unsigned char *p = mmap(NULL, x * ps, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS, mfd, 0);
            if (mfd >= 0) close(mfd);
            if (p == MAP_FAILED) { printf("ERR map %d\n", errno); continue; }
            madvise(p, x * ps, MADV_NOHUGEPAGE);
            uint64_t seed = 3;
            for (long i = 0; i < x * ps; i += 8) { uint64_t v = next(&seed); memcpy(p + i, &v, 8); }
            for (long i = 0; i < x; i++) p[i * ps] |= 1;
            int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (out < 0 || write(out, p, x * ps) != x * ps) { printf("ERR map %d\n", errno); if (out >= 0) close(out); continue; }
            close(out);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)p);
        } else if (!strcmp(cmd, "hide") && sscanf(line, "%*s %llx %ld %ld %ld", &a, &x, &y, &z) == 4) {
            int usermode;
            if (hide((unsigned char *)(uintptr_t)a, x, (int)y, (int)z, &usermode)) printf("ERR hide %d\n", errno);
            else printf("OK %d\n", usermode);
        } else if (!strcmp(cmd, "drop") && sscanf(line, "%*s %llx %ld %ld", &a, &x, &y) == 3) {
            struct dropper *d = malloc(sizeof *d);
            d->p = (unsigned char *)(uintptr_t)a; d->pages = x; d->micros = y;
            pthread_t t;
            if (pthread_create(&t, NULL, drop_pages, d)) { printf("ERR drop %d\n", errno); continue; }
            pthread_detach(t);
            printf("OK\n");
        } else if (!strcmp(cmd, "left") && sscanf(line, "%*s %llx %ld", &a, &x) == 2) {
            unsigned char *vec = malloc(x);
            long n = 0;
            if (mincore((void *)(uintptr_t)a, x * ps, vec)) { printf("ERR left %d\n", errno); free(vec); continue; }
            for (long i = 0; i < x; i++) n += vec[i] & 1;
            free(vec);
            printf("OK %ld\n", n);
        } else if (!strcmp(cmd, "fill") && sscanf(line, "%*s %llx %ld %ld", &a, &x, &y) == 3) {
            memset((unsigned char *)(uintptr_t)a + x * ps, (int)y, (size_t)ps);
            printf("OK\n");
        } else if (!strcmp(cmd, "written") && sscanf(line, "%*s %llx %ld", &a, &x) == 2) {
            long n = written(pagemap, (unsigned char *)(uintptr_t)a, x);
            if (n < 0) printf("ERR written %d\n", errno);
            else printf("OK %ld\n", n);
        } else if (!strcmp(cmd, "uffds")) {
            print_uffds();
        } else if (!strcmp(cmd, "uffd") && sscanf(line, "%*s %31s %ld %llx %ld", path, &z, &a, &x) == 4) {
            struct uffdio_writeprotect w = { .range = { a, (uint64_t)(x * ps) }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
            int r = !strcmp(path, "wp") ? ioctl((int)z, UFFDIO_WRITEPROTECT, &w) : ioctl((int)z, UFFDIO_UNREGISTER, &w.range);
            if (r) printf("ERR uffd %d\n", errno);
            else printf("OK\n");
        } else if (!strcmp(cmd, "fork")) {
            pid_t child = fork();
            if (child == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                for (;;) pause();
            }
            if (child < 0) printf("ERR fork %d\n", errno);
            else printf("OK %d\n", (int)child);
        } else if (!strcmp(cmd, "keepexec") && sscanf(line, "%*s %ld", &z) == 1) {
            if (fcntl((int)z, F_SETFD, 0) == 0) execl("/proc/self/exe", "fighttarget", (char *)NULL);
            printf("ERR keepexec %d\n", errno);
        } else if (!strcmp(cmd, "dump") && sscanf(line, "%*s %llx %ld %255s", &a, &x, path) == 3) {
            int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            long n = out < 0 ? -1 : (long)write(out, (void *)(uintptr_t)a, (size_t)(x * ps));
            if (out >= 0) close(out);
            if (n != x * ps) printf("ERR dump %d\n", errno);
            else printf("OK\n");
        } else {
            printf("ERR unknown\n");
        }
    }
    return 0;
}
