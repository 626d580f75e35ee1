/* fighttarget: a process whose memory fights back (issue 13, round 31): pages served by a userfaultfd that no
   descriptor of the process names, pages that vanish between the pagemap walk and the read.
   stdin commands, one per line; each answers one line:
     map <pages> <path>                   anonymous private rw mapping (no THP), every page filled (seed 3, the first byte
                                          odd: never an all-zero page), its bytes also written to the file <path> -> OK <hexaddr>
     shm <pages> <path>                   as map, of a memfd mapped MAP_SHARED -> OK <hexaddr>
     hide <hexaddr> <pages> <how> <minor> registers the pages with a userfaultfd in MISSING mode (minor 1: MINOR mode, of
                                          memory mapped by shm) that nobody serves, then
                                          keeps it where /proc/PID/fd does not show it: how 0 in flight (sent over a
                                          socketpair of this process and never received), 1 in a child that sleeps,
                                          2 kept open here (as earlier rounds did); the child unmaps its
                                          copy of the pages -> OK <0|1 user-mode-only>, or ERR hide <errno>
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
#include <time.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

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
    struct uffdio_api api = { .api = UFFD_API, .features = minor ? UFFD_FEATURE_MINOR_SHMEM : 0 };
    if (ioctl(fd, UFFDIO_API, &api)) return -1;
    struct uffdio_register reg = { .range = { (uintptr_t)p, (uint64_t)(pages * ps) }, .mode = minor ? UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING };
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
        } else {
            printf("ERR unknown\n");
        }
    }
    return 0;
}
