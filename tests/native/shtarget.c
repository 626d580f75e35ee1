/*
 * shtarget: a target whose memory others change behind the tracker's back (round 15): a process sharing its memory
 * (clone with CLONE_VM, no CLONE_THREAD: a pid of its own), and an io_uring holding its pages as registered buffers
 * in another process. Line protocol on stdin; prints "READY <pid> <pagesize>", then one line per command, "OK ..." or
 * "ERR <text>".
 *
 *   map <pages>                      private anonymous rw region (no THP) between PROT_NONE guards -> OK <hexaddr>
 *   fill <hexaddr> <pages> <byte>    every byte of the pages set to byte (decimal)              -> OK
 *   sweeper <hexaddr> <pages>        a process sharing this one's memory (CLONE_VM) that sweeps the region until told to
 *                                    stop: sweep n (1, 2, ...) writes n as 8 bytes at the start of each page in turn,
 *                                    then counts the sweep                                       -> OK <pid>
 *   sweeps                           the sweeps that process finished                            -> OK <count>
 *   sweepstop                        stops it and waits for it                                  -> OK <sweeps>
 *   tracesweeper                     this process seizes the sweeper with ptrace (PTRACE_SEIZE: it runs on) -> OK <errno or 0>
 *   sibwrite <hexaddr> <page> <count> <byte>  a process sharing this one's memory (CLONE_VM) writes byte (decimal) into
 *                                    the first byte of each page and exits, waited for           -> OK <pid>
 *   ringaway <hexaddr> <page> <count> [vm]  an io_uring with those pages registered as its fixed buffer (pinned), given
 *                                    to a forked helper process (PR_SET_PDEATHSIG), as SCM_RIGHTS would, or with "vm" to a
 *                                    helper sharing this one's memory (CLONE_VM), which maps its rings there; this process
 *                                    then closes its own descriptor, so it holds no io_uring     -> OK <helperpid>
 *   ringread <path>                  the helper reads the file into the whole buffer with IORING_OP_READ_FIXED: the
 *                                    kernel writes this process's pinned pages through its own mapping -> OK <bytes>
 *   poke <hexaddr> <page> <count> <byte>  byte (decimal) into the first byte of each page           -> OK
 *   madvise <hexaddr> <page> <count> <advice>  madvise (advice decimal: 21 PAGEOUT, 102 GUARD_INSTALL) -> OK <errno or 0>
 *   seal <hexaddr> <pages>           mseal(2) of the pages (Linux 6.10)                           -> OK <errno or 0>
 *   sealexec                         mseal(2) of every executable mapping of this process (but [vsyscall], no VMA) -> OK <count>
 *   droppable <pages>                an anonymous rw mapping the kernel may drop (MAP_DROPPABLE, Linux 6.11) -> OK <hexaddr>
 *   dontunmap <hexaddr> <pages>      mremap(MREMAP_MAYMOVE | MREMAP_DONTUNMAP): the pages move to a new address, the old
 *                                    range stays mapped and empty                                 -> OK <newhexaddr>
 *   pbufinc <hexaddr> <page> <bufpage>  an io_uring with a provided-buffer ring in page <page> of the region, consumed
 *                                    incrementally (IOU_PBUF_RING_INC, Linux 6.12), holding one buffer: page <bufpage> -> OK <fd>
 *   pbufread <path> <bytes>          IORING_OP_READ of bytes of the file into a buffer of that ring: the kernel advances the
 *                                    ring entry's addr and len itself                            -> OK <bytes read>
 *   kcmp <pid>                       kcmp(this process, pid, KCMP_VM): 0 where pid shares its memory  -> OK <rc>
 *   vforkserve                       a vfork child (clone CLONE_VM | CLONE_VFORK, a stack of its own) takes over the
 *                                    commands, this process asleep in clone until it exits       -> OK <childpid>, from it
 *   exit                             exits (the vfork child: this process takes the commands back, and answers nothing)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_STACK (256 * 1024)
/* mseal(2) (Linux 6.10; the same number on every architecture) and MAP_DROPPABLE (Linux 6.11): older headers lack them. */
#define SYS_MSEAL 462
#define MAP_DROPPABLE_ 0x08
/* IOU_PBUF_RING_INC (Linux 6.12): buffers of a provided-buffer ring consumed in part, the kernel advancing the entry. */
#define IOU_PBUF_RING_INC_ 2
#define PBUF_GROUP 1
/* MREMAP_DONTUNMAP (Linux 5.7). */
#define MREMAP_DONTUNMAP_ 4


static long ps;
static pid_t main_pid;

/* The sweeping process and what it shares with this one (the same memory: plain variables). */
static struct { unsigned char *base; long pages; volatile int stop; volatile unsigned long sweeps; pid_t pid; } sweep;
static struct { unsigned char *base; long count; unsigned char value; } once;

/* The io_uring of pbufinc / pbufread. */
static struct ring *pbuf;

/* The helper holding the io_uring: commands go down one pipe, answers come up another. */
static struct { pid_t pid; int down, up; } ring_helper = { 0, -1, -1 };

static int sweeper(void *arg)
{
    (void)arg;
    for (unsigned long n = 1; !sweep.stop; n++) {
        for (long p = 0; p < sweep.pages && !sweep.stop; p++) *(volatile uint64_t *)(sweep.base + p * ps) = n;
        __atomic_store_n(&sweep.sweeps, n, __ATOMIC_RELEASE);
    }
    return 0;
}

static int writer(void *arg)
{
    (void)arg;
    for (long p = 0; p < once.count; p++) ((volatile unsigned char *)once.base)[p * ps] = once.value;
    return 0;
}

/* A process sharing this one's memory (CLONE_VM without CLONE_THREAD: its own pid), on a stack of its own. */
static pid_t share_clone(int (*fn)(void *))
{
    unsigned char *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stack == MAP_FAILED) return -1;
    return clone(fn, stack + CHILD_STACK, CLONE_VM | SIGCHLD, NULL);
}

/* The io_uring's rings, mapped by the helper only. */
struct ring { int fd; unsigned char *sq, *cq; struct io_uring_sqe *sqes; struct io_uring_params prm; };

static int ring_setup(struct ring *r)
{
    memset(r, 0, sizeof *r);
    r->fd = (int)syscall(__NR_io_uring_setup, 4, &r->prm);
    return r->fd < 0 ? -1 : 0;
}

static int ring_map(struct ring *r)
{
    size_t sqsz = r->prm.sq_off.array + r->prm.sq_entries * sizeof(unsigned), cqsz = r->prm.cq_off.cqes + r->prm.cq_entries * sizeof(struct io_uring_cqe);
    r->sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    r->cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, r->prm.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    return r->sq == MAP_FAILED || r->cq == MAP_FAILED || r->sqes == MAP_FAILED ? -1 : 0;
}

/* One READ_FIXED of path into buffer 0 (address addr, len bytes); the bytes read or -errno. */
static long ring_read(struct ring *r, const char *path, unsigned long addr, unsigned len)
{
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return -errno;
    unsigned *tail = (unsigned *)(r->sq + r->prm.sq_off.tail), mask = *(unsigned *)(r->sq + r->prm.sq_off.ring_mask);
    unsigned idx = *tail & mask;
    struct io_uring_sqe *e = &r->sqes[idx];
    memset(e, 0, sizeof *e);
    e->opcode = IORING_OP_READ_FIXED; e->fd = f; e->addr = addr; e->len = len; e->buf_index = 0;
    ((unsigned *)(r->sq + r->prm.sq_off.array))[idx] = idx;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    long rc = syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    close(f);
    if (rc < 0) return -errno;
    unsigned *chead = (unsigned *)(r->cq + r->prm.cq_off.head), cmask = *(unsigned *)(r->cq + r->prm.cq_off.ring_mask);
    struct io_uring_cqe *cqe = (struct io_uring_cqe *)(r->cq + r->prm.cq_off.cqes) + (*chead & cmask);
    long res = cqe->res;
    __atomic_store_n(chead, *chead + 1, __ATOMIC_RELEASE);
    return res;
}

/* What the helper serves: the ring it was given, the buffer, and its pipes. */
static struct { struct ring r; unsigned long addr; unsigned len; int down, up; } ring_job;

/* The helper (a forked process, or one sharing this one's memory): maps the ring it was given, then serves
   "read <path>" lines until its pipe closes. read(2), not stdio: a helper sharing the memory must not touch the heap. */
static int ring_serve(void *arg)
{
    (void)arg;
    char msg[64], line[256], path[200];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (ring_map(&ring_job.r)) { snprintf(msg, sizeof msg, "ERR ring mmap %d\n", errno); (void)!write(ring_job.up, msg, strlen(msg)); return 1; }
    (void)!write(ring_job.up, "OK\n", 3);
    ssize_t n;
    while ((n = read(ring_job.down, line, sizeof line - 1)) > 0) {
        line[n] = 0;
        if (sscanf(line, "read %199s", path) != 1) continue;
        long got = ring_read(&ring_job.r, path, ring_job.addr, ring_job.len);
        snprintf(msg, sizeof msg, got < 0 ? "ERR read %ld\n" : "OK %ld\n", got < 0 ? -got : got);
        (void)!write(ring_job.up, msg, strlen(msg));
    }
    return 0;
}

/* A line from the helper, as the reply. */
static void relay(void)
{
    char msg[64];
    ssize_t n = read(ring_helper.up, msg, sizeof msg - 1);
    if (n <= 0) { printf("ERR helper gone\n"); return; }
    msg[n] = 0;
    fputs(msg, stdout);
}

/* The command loop: of this process, or of its vfork child (vforkserve), which shares its memory while it sleeps. */
static int serve(void *arg)
{
    (void)arg;
    char line[512], cmd[32], word[200];
    if (getpid() != main_pid) printf("OK %d\n", getpid());
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long a = 0;
        long b = 0, c = 0, d = 0;
        word[0] = 0;
        int n = sscanf(line, "%31s %llx %ld %ld %ld", cmd, &a, &b, &c, &d);
        if (n < 1) continue;
        unsigned char *p = (unsigned char *)(uintptr_t)a;
        if (!strcmp(cmd, "map") && n >= 2) {
            long pages = (long)strtol(line + 4, NULL, 10);
            unsigned char *r = mmap(NULL, (pages + 2) * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (r == MAP_FAILED || mprotect(r + ps, pages * ps, PROT_READ | PROT_WRITE)) { printf("ERR mmap %d\n", errno); continue; }
            madvise(r + ps, pages * ps, MADV_NOHUGEPAGE);
            printf("OK %lx\n", (unsigned long)(r + ps));
        } else if (!strcmp(cmd, "fill") && n >= 4) {
            memset(p, (int)c, (size_t)b * ps);
            printf("OK\n");
        } else if (!strcmp(cmd, "sweeper") && n >= 3) {
            if (sweep.pid > 0) { printf("ERR sweeping already\n"); continue; }
            sweep.base = p; sweep.pages = b; sweep.stop = 0; sweep.sweeps = 0;
            sweep.pid = share_clone(sweeper);
            if (sweep.pid < 0) { sweep.pid = 0; printf("ERR clone %d\n", errno); continue; }
            while (!__atomic_load_n(&sweep.sweeps, __ATOMIC_ACQUIRE)) sched_yield();
            printf("OK %d\n", sweep.pid);
        } else if (!strcmp(cmd, "sweeps")) {
            printf("OK %lu\n", __atomic_load_n(&sweep.sweeps, __ATOMIC_ACQUIRE));
        } else if (!strcmp(cmd, "sweepstop")) {
            if (sweep.pid <= 0) { printf("ERR no sweeper\n"); continue; }
            sweep.stop = 1;
            waitpid(sweep.pid, NULL, __WALL);
            sweep.pid = 0;
            printf("OK %lu\n", __atomic_load_n(&sweep.sweeps, __ATOMIC_ACQUIRE));
        } else if (!strcmp(cmd, "tracesweeper")) {
            /* This process becomes the sweeper's tracer (PTRACE_SEIZE: it runs on, untouched). */
            if (sweep.pid <= 0) { printf("ERR no sweeper\n"); continue; }
            printf("OK %d\n", ptrace(PTRACE_SEIZE, sweep.pid, NULL, NULL) ? errno : 0);
        } else if (!strcmp(cmd, "sibwrite") && n >= 5) {
            once.base = p + b * ps; once.count = c; once.value = (unsigned char)d;
            pid_t w = share_clone(writer);
            if (w < 0) { printf("ERR clone %d\n", errno); continue; }
            waitpid(w, NULL, __WALL);
            printf("OK %d\n", w);
        } else if (!strcmp(cmd, "ringaway") && n >= 4) {
            int shared = sscanf(line, "%*s %*s %*s %*s %199s", word) == 1 && !strcmp(word, "vm");
            struct iovec iov = { p + b * ps, (size_t)c * ps };
            if (ring_helper.pid > 0) { printf("ERR ring given away already\n"); continue; }
            if (ring_setup(&ring_job.r)) { printf("ERR io_uring_setup %d\n", errno); continue; }
            int fd = ring_job.r.fd, down[2], up[2];
            if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) { printf("ERR register %d\n", errno); close(fd); continue; }
            if (pipe2(down, O_CLOEXEC) || pipe2(up, O_CLOEXEC)) { printf("ERR pipe %d\n", errno); close(fd); continue; }
            ring_job.addr = (unsigned long)iov.iov_base; ring_job.len = (unsigned)iov.iov_len; ring_job.down = down[0]; ring_job.up = up[1];
            pid_t h = shared ? share_clone(ring_serve) : fork();
            if (h == 0) _exit(ring_serve(NULL)); /* the forked helper */
            close(fd); close(down[0]); close(up[1]);
            if (h < 0) { printf("ERR fork %d\n", errno); close(down[1]); close(up[0]); continue; }
            ring_helper.pid = h; ring_helper.down = down[1]; ring_helper.up = up[0];
            char msg[64];
            ssize_t got = read(ring_helper.up, msg, sizeof msg - 1);
            if (got <= 0 || strncmp(msg, "OK", 2)) { msg[got > 0 ? got : 0] = 0; printf("%s", got > 0 ? msg : "ERR helper gone\n"); continue; }
            printf("OK %d\n", h);
        } else if (!strcmp(cmd, "ringread")) {
            if (ring_helper.pid <= 0 || sscanf(line, "%*s %199s", word) != 1) { printf("ERR no ring or path\n"); continue; }
            dprintf(ring_helper.down, "read %s\n", word);
            relay();
        } else if (!strcmp(cmd, "vforkserve")) {
            unsigned char *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            pid_t v = stack == MAP_FAILED ? -1 : clone(serve, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
            if (v < 0) { printf("ERR clone %d\n", errno); continue; }
            waitpid(v, NULL, __WALL);
        } else if (!strcmp(cmd, "dontunmap") && n >= 3) {
            /* The pages move to a new mapping; the old range stays mapped, empty (reads as zeros). */
            void *moved = mremap(p, (size_t)b * ps, (size_t)b * ps, MREMAP_MAYMOVE | MREMAP_DONTUNMAP_, NULL);
            if (moved == MAP_FAILED) printf("ERR mremap %d\n", errno); else printf("OK %lx\n", (unsigned long)moved);
        } else if (!strcmp(cmd, "pbufinc") && n >= 4) {
            /* A provided-buffer ring in this process's own memory (page b of the region), consumed incrementally
               (IOU_PBUF_RING_INC), with one buffer: page c. */
            static struct ring pr;
            struct io_uring_buf_reg reg;
            memset(&reg, 0, sizeof reg);
            struct io_uring_buf *e = (struct io_uring_buf *)(p + b * ps);
            e->addr = (unsigned long)(p + c * ps); e->len = (unsigned)ps; e->bid = 0;
            reg.ring_addr = (unsigned long)e; reg.ring_entries = 1; reg.bgid = PBUF_GROUP; reg.pad = IOU_PBUF_RING_INC_; /* the flags field (older headers call it pad) */
            if (ring_setup(&pr) || ring_map(&pr)) { printf("ERR io_uring %d\n", errno); continue; }
            if (syscall(__NR_io_uring_register, pr.fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) { printf("ERR register %d\n", errno); close(pr.fd); continue; }
            __atomic_store_n(&((struct io_uring_buf_ring *)e)->tail, 1, __ATOMIC_RELEASE);
            pbuf = &pr;
            printf("OK %d\n", pr.fd);
        } else if (!strcmp(cmd, "pbufread")) {
            /* IORING_OP_READ of <bytes> of <path> into a buffer the kernel picks from the ring: it then advances the
               ring entry's addr and len itself (through its own mapping of the pinned ring). */
            long bytes = 0;
            if (!pbuf || sscanf(line, "%*s %199s %ld", word, &bytes) != 2) { printf("ERR no ring or path\n"); continue; }
            int f = open(word, O_RDONLY | O_CLOEXEC);
            if (f < 0) { printf("ERR open %d\n", errno); continue; }
            unsigned *tail = (unsigned *)(pbuf->sq + pbuf->prm.sq_off.tail), mask = *(unsigned *)(pbuf->sq + pbuf->prm.sq_off.ring_mask);
            unsigned idx = *tail & mask;
            struct io_uring_sqe *q = &pbuf->sqes[idx];
            memset(q, 0, sizeof *q);
            q->opcode = IORING_OP_READ; q->fd = f; q->len = (unsigned)bytes; q->flags = IOSQE_BUFFER_SELECT; q->buf_group = PBUF_GROUP;
            ((unsigned *)(pbuf->sq + pbuf->prm.sq_off.array))[idx] = idx;
            __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
            long rc = syscall(__NR_io_uring_enter, pbuf->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
            close(f);
            if (rc < 0) { printf("ERR enter %d\n", errno); continue; }
            unsigned *chead = (unsigned *)(pbuf->cq + pbuf->prm.cq_off.head), cmask = *(unsigned *)(pbuf->cq + pbuf->prm.cq_off.ring_mask);
            struct io_uring_cqe *cqe = (struct io_uring_cqe *)(pbuf->cq + pbuf->prm.cq_off.cqes) + (*chead & cmask);
            long res = cqe->res;
            __atomic_store_n(chead, *chead + 1, __ATOMIC_RELEASE);
            if (res < 0) printf("ERR read %ld\n", -res); else printf("OK %ld\n", res);
        } else if (!strcmp(cmd, "kcmp") && n >= 2) {
            long rc = syscall(SYS_kcmp, getpid(), (pid_t)strtol(line + 5, NULL, 10), KCMP_VM, 0, 0);
            if (rc < 0) printf("ERR kcmp %d\n", errno); else printf("OK %ld\n", rc);
        } else if (!strcmp(cmd, "poke") && n >= 5) {
            for (long i = 0; i < c; i++) p[(b + i) * ps] = (unsigned char)d;
            printf("OK\n");
        } else if (!strcmp(cmd, "madvise") && n >= 5) {
            printf("OK %d\n", madvise(p + b * ps, (size_t)c * ps, (int)d) ? errno : 0);
        } else if (!strcmp(cmd, "seal") && n >= 3) {
            printf("OK %d\n", syscall(SYS_MSEAL, p, (size_t)b * ps, 0UL) ? errno : 0);
        } else if (!strcmp(cmd, "sealexec")) {
            /* Every executable mapping of this process sealed: its program, libc, the vDSO. */
            FILE *maps = fopen("/proc/self/maps", "r");
            unsigned long lo, hi;
            char perms[8], mline[4096];
            int sealed = 0, failed = 0;
            while (maps && fgets(mline, sizeof mline, maps)) {
                if (sscanf(mline, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[2] != 'x' || strstr(mline, "[vsyscall]")) continue;
                if (syscall(SYS_MSEAL, lo, hi - lo, 0UL)) failed = errno; else sealed++;
            }
            if (maps) fclose(maps);
            if (failed) printf("ERR mseal %d\n", failed); else printf("OK %d\n", sealed);
        } else if (!strcmp(cmd, "droppable") && n >= 2) {
            long pages = (long)strtol(line + 10, NULL, 10);
            unsigned char *r = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_DROPPABLE_ | MAP_ANONYMOUS, -1, 0);
            if (r == MAP_FAILED) { printf("ERR mmap %d\n", errno); continue; }
            printf("OK %lx\n", (unsigned long)r);
        } else if (!strcmp(cmd, "exit")) {
            if (getpid() != main_pid) { fflush(stdout); _exit(0); }
            if (sweep.pid > 0) { sweep.stop = 1; waitpid(sweep.pid, NULL, __WALL); }
            exit(0);
        } else {
            printf("ERR unknown command\n");
        }
    }
    return 0;
}

int main(void)
{
    ps = sysconf(_SC_PAGESIZE);
    main_pid = getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    printf("READY %d %ld\n", main_pid, ps);
    return serve(NULL);
}
