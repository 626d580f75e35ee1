/*
 * mmtarget: one memory under several pids, and threads that cannot be traced (round 31). Line protocol on stdin; prints
 * "READY <pid> <pagesize>", then one line per command, "OK ..." or "ERR <text>".
 *
 *   map <pages>                      private anonymous rw region (no THP) between PROT_NONE guards -> OK <hexaddr>
 *   fill <hexaddr> <page> <count> <byte>  byte (decimal) into every byte of count pages from page     -> OK
 *   twin <files>                     a process sharing this one's memory (clone CLONE_VM without CLONE_THREAD, a pid of
 *                                    its own; with files 1 also CLONE_FILES: one descriptor table) that waits for work
 *                                    (PR_SET_PDEATHSIG)                                           -> OK <pid>
 *   twinfill <hexaddr> <page> <count> <byte>  the twin does fill, waited for                        -> OK
 *   twinexit                         the twin exits, waited for                                    -> OK <status>
 *   uringwait <hexaddr> <page>       an io_uring read of one page from a pipe nobody wrote into the page, forced to an
 *                                    io_uring worker thread (IOSQE_ASYNC): the worker (iou-wrk-PID, a thread no ptrace may
 *                                    attach to) waits in the pipe's read                          -> OK <worker tid or 0>
 *   uringfeed <byte>                 a page of byte (decimal) into the pipe: the worker's read completes, writing the page
 *                                    of this process's memory; the completion is waited for       -> OK <res>
 *   vfork <ms>                       answers OK, then vfork(): the child sleeps ms and exits, this thread waiting in vfork
 *                                    (state D) meanwhile; the next command is read once the child is reaped  -> OK
 *   exit                             exits
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_STACK (256 * 1024)

static long page_size;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* The work the twin is given: a fill, or exit; the twin and this process see the same memory. */
static struct { volatile int cmd; unsigned char *at; long count; int byte; volatile int done; } work;
static pid_t twin;
static int twin_pipe[2];

static int twin_main(void *unused)
{
    (void)unused;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c;
    for (;;) {
        if (read(twin_pipe[0], &c, 1) != 1) _exit(2);
        if (c == 'x') _exit(0);
        memset(work.at, work.byte, work.count * page_size);
        __atomic_store_n(&work.done, 1, __ATOMIC_RELEASE);
    }
}

static struct { int fd; unsigned char *sq, *cq; struct io_uring_sqe *sqes; struct io_uring_params prm; int pipe[2]; } ring;

static int find_worker(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        char path[300], name[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f) && !strncmp(name, "iou-wrk-", 8)) found = atoi(e->d_name);
        fclose(f);
    }
    closedir(d);
    return found;
}

int main(void)
{
    page_size = sysconf(_SC_PAGESIZE);
    reply("READY %d %ld", getpid(), page_size);
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = "";
        unsigned long a = 0;
        long b = 0, c = 0, d = 0;
        int n = sscanf(line, "%31s %lx %ld %ld %ld", cmd, &a, &b, &c, &d);
        if (n < 1) continue;
        if (!strcmp(cmd, "map") && n >= 2) {
            long pages = (long)a; /* read as hex: small counts only */
            if (sscanf(line, "%*s %ld", &pages) != 1 || pages <= 0) { reply("ERR pages"); continue; }
            unsigned char *g = mmap(NULL, (pages + 2) * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (g == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            unsigned char *r = g + page_size;
            if (mprotect(r, pages * page_size, PROT_READ | PROT_WRITE) < 0) { reply("ERR mprotect %d", errno); continue; }
            madvise(r, pages * page_size, MADV_NOHUGEPAGE);
            reply("OK %lx", (unsigned long)r);
        } else if (!strcmp(cmd, "fill") && n >= 5) {
            memset((unsigned char *)a + b * page_size, (int)d, c * page_size);
            reply("OK");
        } else if (!strcmp(cmd, "twin")) {
            if (twin) { reply("ERR twin already"); continue; }
            int files = (n >= 2 && a == 1);
            if (pipe2(twin_pipe, O_CLOEXEC) < 0) { reply("ERR pipe %d", errno); continue; }
            char *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (stack == MAP_FAILED) { reply("ERR stack %d", errno); continue; }
            twin = clone(twin_main, stack + CHILD_STACK, CLONE_VM | (files ? CLONE_FILES : 0) | SIGCHLD, NULL);
            if (twin < 0) { reply("ERR clone %d", errno); twin = 0; continue; }
            reply("OK %d", twin);
        } else if (!strcmp(cmd, "twinfill") && n >= 5) {
            if (!twin) { reply("ERR no twin"); continue; }
            work.at = (unsigned char *)a + b * page_size; work.count = c; work.byte = (int)d;
            __atomic_store_n(&work.done, 0, __ATOMIC_RELEASE);
            if (write(twin_pipe[1], "f", 1) != 1) { reply("ERR pipe write %d", errno); continue; }
            while (!__atomic_load_n(&work.done, __ATOMIC_ACQUIRE)) usleep(100);
            reply("OK");
        } else if (!strcmp(cmd, "twinexit")) {
            if (!twin) { reply("ERR no twin"); continue; }
            int status = 0;
            if (write(twin_pipe[1], "x", 1) != 1) { reply("ERR pipe write %d", errno); continue; }
            waitpid(twin, &status, __WALL);
            close(twin_pipe[0]); close(twin_pipe[1]);
            twin = 0;
            reply("OK %d", status);
        } else if (!strcmp(cmd, "uringwait") && n >= 3) {
            if (ring.sq) { reply("ERR ring already"); continue; }
            struct io_uring_params prm;
            memset(&prm, 0, sizeof prm);
            int fd = (int)syscall(__NR_io_uring_setup, 4, &prm);
            if (fd < 0) { reply("ERR io_uring_setup %d", errno); continue; }
            if (pipe2(ring.pipe, O_CLOEXEC) < 0) { reply("ERR pipe %d", errno); close(fd); continue; }
            size_t sqsz = prm.sq_off.array + prm.sq_entries * sizeof(unsigned), cqsz = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
            unsigned char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
            unsigned char *cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
            struct io_uring_sqe *sqes = mmap(NULL, prm.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
            if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) { reply("ERR ring mmap %d", errno); close(fd); continue; }
            ring.fd = fd; ring.sq = sq; ring.cq = cq; ring.sqes = sqes; ring.prm = prm;
            unsigned *tail = (unsigned *)(sq + prm.sq_off.tail), mask = *(unsigned *)(sq + prm.sq_off.ring_mask);
            unsigned idx = *tail & mask;
            struct io_uring_sqe *e = &sqes[idx];
            memset(e, 0, sizeof *e);
            e->opcode = IORING_OP_READ; e->fd = ring.pipe[0]; e->addr = a + b * page_size; e->len = (unsigned)page_size;
            e->flags = IOSQE_ASYNC; e->off = (unsigned long long)-1;
            ((unsigned *)(sq + prm.sq_off.array))[idx] = idx;
            __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
            if (syscall(__NR_io_uring_enter, fd, 1, 0, 0, NULL, 0) < 0) { reply("ERR enter %d", errno); continue; }
            int worker = 0;
            for (int i = 0; i < 2000 && !(worker = find_worker()); i++) usleep(1000);
            reply("OK %d", worker);
        } else if (!strcmp(cmd, "uringfeed") && n >= 2) {
            if (!ring.sq) { reply("ERR no ring"); continue; }
            int byte = 0;
            sscanf(line, "%*s %d", &byte);
            unsigned char *buf = malloc(page_size);
            memset(buf, byte, page_size);
            ssize_t w = write(ring.pipe[1], buf, page_size);
            free(buf);
            if (w != page_size) { reply("ERR pipe write %d", errno); continue; }
            if (syscall(__NR_io_uring_enter, ring.fd, 0, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) { reply("ERR enter %d", errno); continue; }
            unsigned *head = (unsigned *)(ring.cq + ring.prm.cq_off.head), cmask = *(unsigned *)(ring.cq + ring.prm.cq_off.ring_mask);
            struct io_uring_cqe *cqe = &((struct io_uring_cqe *)(ring.cq + ring.prm.cq_off.cqes))[*head & cmask];
            int res = cqe->res;
            __atomic_store_n(head, *head + 1, __ATOMIC_RELEASE);
            reply("OK %d", res);
        } else if (!strcmp(cmd, "vfork") && n >= 2) {
            long ms = 0;
            sscanf(line, "%*s %ld", &ms);
            reply("OK");
            pid_t child = vfork();
            if (child == 0) {
                struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
                nanosleep(&ts, NULL);
                _exit(0);
            }
            if (child > 0) waitpid(child, NULL, 0);
        } else if (!strcmp(cmd, "exit")) {
            reply("OK");
            return 0;
        } else {
            reply("ERR unknown %s", cmd);
        }
    }
    return 0;
}
