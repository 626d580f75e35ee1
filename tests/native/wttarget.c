/*
 * wttarget: a target for write tracking by syscall injection (Enable-WriteTracking), driven through a
 * line protocol on stdin: the main thread sits in read() on that pipe between commands, so every
 * injection while it waits interrupts a read() that must be restarted with the data intact.
 *
 * Prints "READY <pid> <pagesize>", then answers each command with one line, "OK ..." or "ERR <text>".
 *
 *   map <pages>                      private anonymous rw region between PROT_NONE guards -> OK <hexaddr>
 *   write <hexaddr> <page> [count]   one byte into each page (value from a counter)        -> OK <count>
 *   pattern <hexaddr> <pages> <seed> <n>  write n random pages (xorshift from seed, repeats allowed)
 *                                    -> OK <the distinct page indexes written, ascending, comma-separated or ->
 *   timedwrite <hexaddr> <page> <count>  one byte into each of count pages, timed  -> OK <ns>
 *   sum                              FNV-1a of every region this target mapped              -> OK <hex>
 *   threads <n>                      start n threads spinning in user space (counters)      -> OK <n>
 *   spins                            the sum of the spinning threads' counters               -> OK <count>
 *   sleep <ms>                       clock_nanosleep CLOCK_MONOTONIC, relative
 *                                    -> OK <rc> <errno> <slept_ns>  (slept_ns from CLOCK_MONOTONIC)
 *   futex <ms>                       FUTEX_WAIT on a word nobody wakes, relative timeout
 *                                    -> OK <rc> <errno> <waited_ns>
 *   seccomp                          install a filter: userfaultfd fails with EPERM           -> OK
 *   seccompkill <nr> [arg1]          install a filter that kills the process on syscall nr (decimal), or only when
 *                                    the low 32 bits of its second argument are arg1 (decimal)  -> OK
 *   traced                           fork a child that is ptraced by this process and waits  -> OK <childpid>
 *   fds                              open descriptors (/proc/self/fd)                          -> OK <count>
 *   closefd <fd>                     close(fd), as a daemon closing its descriptors would      -> OK <rc>
 *   ownuffd <hexaddr> <pages>        a userfaultfd of its own (the module's flags and features),
 *                                    MODE_WP registration of the range                         -> OK <fd>
 *   crunch <ms>                      the main thread computes in registers (two identical runs of a mixing
 *                                    loop per round, compared) until SIGUSR1 or ms elapse -> OK <rounds> <mismatches>
 *                                    (a register or flag an injection failed to restore shows as a mismatch)
 *   missinguffd <hexaddr> <pages>    a userfaultfd of its own registering the range in MISSING mode, never served
 *                                    (a fault on a page dropped there waits for good)         -> OK <fd>
 *   unmapvdso                        munmap the vDSO (and the vvar pages), as some sandboxes do: injection must put its
 *                                    trampoline after another image (the commands that read clocks then fail) -> OK
 *   seccomperrno <nr>                install a filter that fails syscall nr with EPERM (SECCOMP_RET_ERRNO)  -> OK
 *   seccompip <nr> <mask> <value>    install a filter that kills the process on syscall nr when the low 32 bits of the
 *                                    address it returns to (seccomp_data.instruction_pointer), ANDed with mask, are
 *                                    value (decimal)                                             -> OK
 *   ppoll <ms>                       SIGUSR1 handled (counted), mask {SIGUSR2}; ppoll(no fds, ms, empty mask), as an
 *                                    event loop waits for descriptors and signals at once
 *                                    -> OK <rc> <errno> <SIGUSR1 handled> <SIGUSR2 still blocked after: 1|0>
 *   tsyncarm <nr>                    a thread that waits for SIGUSR2 (blocked in every thread), then installs, for
 *                                    every thread at once (SECCOMP_FILTER_FLAG_TSYNC), a filter that kills the
 *                                    process on syscall nr, as a program locking itself down after its start -> OK <tid>
 *   mainexit                         another thread takes over the commands, then the main thread calls pthread_exit
 *                                    (a live process whose main thread is a zombie)                 -> OK
 *   mprotect <hexaddr> <pages> <prot>  mprotect(prot decimal: 1 read, 3 read+write)              -> OK <rc>
 *   madvise <hexaddr> <page> <count> <advice>  madvise(advice decimal: 4 DONTNEED, 8 FREE, 9 REMOVE)   -> OK <rc>
 *   mremap <hexaddr> <pages>         moves the region (MREMAP_MAYMOVE|MREMAP_FIXED) to a fresh address; the region list
 *                                    follows it                                                 -> OK <newhexaddr>
 *   readinto <hexaddr> <page> <count> <path>  read(2) of count pages of the file into the pages (the kernel's
 *                                    copy_to_user writes them)                                  -> OK <bytes>
 *   uringreg <hexaddr> <page> <count>  an io_uring with those pages registered as its fixed buffer (pinned) -> OK <fd>
 *   uringread <path>                 IORING_OP_READ_FIXED of the file into the whole fixed buffer: the kernel writes
 *                                    the pinned pages through its own mapping                  -> OK <bytes>
 *   uringclose                       unmaps the rings of uringreg's io_uring and closes it: once the kernel frees it, its buffer
 *                                    is unregistered (unpinned) and nothing in /proc tells of it    -> OK <rc>
 *   aioread <hexaddr> <page> <count> <path>  legacy AIO (io_setup once, then io_submit IOCB_CMD_PREAD) of count pages of the
 *                                    file, opened O_DIRECT, into the pages: the kernel pins them now and writes them when the
 *                                    read completes, through its own mapping                        -> OK <submitted>
 *   aiowait                          io_getevents for that read (then closes its file)               -> OK <result>
 *   aioclose                         io_destroy of the AIO context (its [aio] ring mapping goes)    -> OK <rc>
 *   xskrecv <hexaddr> <page> <count> in a network namespace of its own, an AF_XDP socket (copy mode, lo queue 0) whose umem
 *                                    is those pages (pinned now) and an XDP program sending every packet lo receives to it:
 *                                    the kernel copies each into a umem frame through its own mapping   -> OK <fd>
 *   xsksend <n>                      n UDP packets to 127.0.0.1 (that namespace's lo)  -> OK <packets the ring received in all>
 *   xskclose                         unmaps the socket's rings and closes it                            -> OK <rc>
 *   vmwritefrom <hexaddr> <pid> <count> <path>  process_vm_writev of count pages into process pid at hexaddr, from a
 *                                    MAP_PRIVATE mapping of the file (not read yet: the copy faults each source page in while
 *                                    the destination pages are pinned)                                 -> OK <bytes>
 *   fork                             a child (PR_SET_PDEATHSIG) that sleeps in pause()          -> OK <childpid>
 *   exec <path>                      execv(path) with no arguments: the pid runs another program -> (no answer: the new
 *                                    program's own output)
 *   uffdunreg <hexaddr> <pages> <fd> UFFDIO_UNREGISTER of the range through descriptor fd (the write tracking's, say), as a
 *                                    program with a userfaultfd monitor of its own might                -> OK <rc> <errno>
 *   dumpable <0|1>                   prctl(PR_SET_DUMPABLE), as a program holding secrets does          -> OK <rc>
 *   ownreset <hexaddr> <pages>       PAGEMAP_SCAN of /proc/self/pagemap with WP_MATCHING | CHECK_WPASYNC over the range: a program's
 *                                    own get-and-reset of the written pages of a range its own userfaultfd registered (ownuffd)
 *                                    -> OK <written pages it took> or ERR pagemap_scan <errno>
 *   scanprobe                        whether the kernel has PAGEMAP_SCAN (6.7): a plain scan of its stack's page -> OK 1, OK 0 <errno>
 *   churn <hexaddr> <pages>          a thread that, until "churn 0", starts short-lived threads 16 at a time, each
 *                                    writing one byte into the next page of the range (in turn) and exiting, all joined
 *                                    before the next 16 start: threads created and gone all the time   -> OK
 *   churn 0                          stops it                                        -> OK <threads started>
 *   setuid <uid>                     setresuid(uid, uid, uid) (decimal), then PR_SET_DUMPABLE 1, as a daemon dropping
 *                                    privileges to serve a user does: /proc/PID becomes that user's  -> OK <rc>
 *   vfork <ms>                       answers OK, then the thread serving commands calls vfork(); the child sleeps ms
 *                                    (or until killed) and exits, the thread waiting in vfork (state D) meanwhile; the
 *                                    next command is read once the child is reaped                   -> OK
 *   oddmaps                          memory of unusual kinds, each filled: a MAP_GROWSDOWN mapping of 4 pages (the top of a
 *                                    2048-page hole, room past the stack guard gap to grow down), 8 mlock'd pages, 8 pages of a
 *                                    memfd sealed against shrinking and growing (MAP_SHARED rw), and 4 pages of a memfd sealed
 *                                    F_SEAL_FUTURE_WRITE after it was mapped MAP_SHARED rw
 *                                    -> OK <growsdown hexaddr> <mlock hexaddr> <sealed hexaddr> <futurewrite hexaddr> <mlock rc>
 *   oddwrite                         grows the MAP_GROWSDOWN mapping by 2 pages (writing both), writes page 3 of the mlock'd
 *                                    pages, page 5 of the sealed memfd through the mapping and page 6 with pwrite(2), and page 1
 *                                    of the F_SEAL_FUTURE_WRITE memfd through its mapping                -> OK <growsdown hexaddr>
 *   sleepers <n>                     n threads (64 KiB stacks) that each write a byte on their stack and sleep 20 ms, over and
 *                                    over: a process of thousands of threads                       -> OK <threads started>
 *   exit [code]                      answers OK, then exits with code (decimal, 0 when none)
 *   uringnommap <hexaddr> <page> <pages>  an io_uring whose rings live in this process's own memory (IORING_SETUP_NO_MMAP,
 *                                    NO_SQARRAY, 8 SQEs, 512 CQEs): the SQEs in page <page>, the rings (the SQ and CQ heads and
 *                                    tails, then the CQEs) from page <page>+1; the kernel writes the CQEs through its own
 *                                    mapping of the pinned pages                    -> OK <fd> <ring bytes>
 *   uringnop <count>                 count IORING_OP_NOPs submitted one by one on that ring, each completion consumed (the
 *                                    CQ head moved): the kernel writes count CQEs, in turn round the ring  -> OK <CQ tail>
 *   sud <allow|block|bad|none|unreadable>  syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH) for the thread serving commands: a
 *                                    SIGSYS handler counting dispatches, syscalls from libc's code let through, every other
 *                                    one dispatched while the selector byte says block (1), or always with none (no
 *                                    selector); bad sets the byte to 2, for which the kernel kills the process at such a
 *                                    syscall, as it does (SIGSEGV) with unreadable: the selector in a PROT_NONE page
 *                                    -> OK <selector hexaddr>
 *   sudprobe                         whether the kernel tells a tracer a thread's dispatch (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG,
 *                                    6.2), asked of a traced child -> OK 1, OK 0 <errno>
 *   sudsel <allow|block|bad>         sets the selector byte                                       -> OK
 *   sudoff                           selector allow, then PR_SYS_DISPATCH_OFF                     -> OK <rc>
 *   sudcall                          getpid from this program's own code (outside libc): dispatched while the selector
 *                                    says block (SIGSYS, the handler counts it; a SIGSYS left at its default kills)
 *                                    -> OK <SIGSYS dispatches handled so far>
 *   attrs                            what a process keeps of itself: FNV-1a of every signal's disposition, the signal mask,
 *                                    the alternate signal stack, every rlimit, the personality, PR_GET_MDWE, PR_GET_PDEATHSIG,
 *                                    PR_GET_CHILD_SUBREAPER, dumpable and no_new_privs; the open descriptors; the signals
 *                                    its handlers ran (hostile's SIGSEGV, SIGTRAP, SIGSYS, SIGBUS, SIGUSR1)
 *                                    -> OK <hex> <descriptors> <signals handled>
 *   seccompret <nr> <hexaction> [notify]  a filter answering syscall nr with a SECCOMP_RET_ value (hex: 30000 TRAP, 50001
 *                                    ERRNO EPERM, 7ff00000 TRACE, 0 KILL_THREAD, 7fc00000 USER_NOTIF); notify: with a listener
 *                                    (SECCOMP_FILTER_FLAG_NEW_LISTENER) nobody answers, so such a call waits for good  -> OK
 *   hostile <what> [arg]             restricts itself (round 24): mdwe (PR_SET_MDWE REFUSE_EXEC_GAIN), personality <hex>,
 *                                    mlockall <flags>, rlimit <resource> <soft> (setrlimit, hard kept), handlers (SA_ONSTACK
 *                                    handlers counting SIGSEGV SIGTRAP SIGSYS SIGBUS SIGUSR1 on a sigaltstack), blockall (every
 *                                    signal blocked), reaper (PR_SET_CHILD_SUBREAPER and PR_SET_PDEATHSIG SIGUSR1), landlock
 *                                    (no file access at all; signal and abstract socket scopes)  -> OK <rc> or ERR <errno>
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS 64
#define MAX_THREADS 16

static long page_size;
static struct { unsigned char *base; long pages; } regions[MAX_REGIONS];
static int region_count;
static unsigned char counter;
static volatile unsigned long spins[MAX_THREADS * 16];
static int thread_count;
/* The io_uring of uringreg / uringread: its rings and the registered (pinned) buffer. */
/* The AF_XDP socket of xskrecv: its umem (this process's own memory, pinned), fill ring and receive ring. */
static struct { int fd; unsigned char *rx, *fill; size_t rx_bytes, fill_bytes; struct xdp_mmap_offsets off; unsigned entries; } xsk = { -1, NULL, NULL, 0, 0, { { 0 } }, 0 };

static long bpf_call(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof *attr); }

/* In a network namespace of its own (so no other traffic is touched): loopback up, an AF_XDP socket in copy mode on its
 * queue 0 whose umem is pages [page, page+count) of the region at a, every frame given to the fill ring, and an XDP
 * program (generic, skb mode) redirecting every packet lo receives to it. Returns NULL or what failed. */
static const char *xsk_setup(unsigned long a, unsigned long page, unsigned long count)
{
    static char why[96];
    if (unshare(CLONE_NEWNET) < 0) { snprintf(why, sizeof why, "unshare %d", errno); return why; }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
    if (s < 0 || ioctl(s, SIOCSIFFLAGS, &ifr) < 0) { snprintf(why, sizeof why, "lo up %d", errno); return why; }
    close(s);
    int fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) { snprintf(why, sizeof why, "socket AF_XDP %d", errno); return why; }
    struct xdp_umem_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.addr = a + page * page_size; reg.len = count * page_size; reg.chunk_size = (unsigned)page_size;
    unsigned entries = 4;
    while (entries < count) entries <<= 1;
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) < 0) { snprintf(why, sizeof why, "XDP_UMEM_REG %d", errno); return why; }
    if (setsockopt(fd, SOL_XDP, XDP_UMEM_FILL_RING, &entries, sizeof entries) < 0 || setsockopt(fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &entries, sizeof entries) < 0
        || setsockopt(fd, SOL_XDP, XDP_RX_RING, &entries, sizeof entries) < 0) { snprintf(why, sizeof why, "rings %d", errno); return why; }
    socklen_t ol = sizeof xsk.off;
    if (getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, &xsk.off, &ol) < 0) { snprintf(why, sizeof why, "XDP_MMAP_OFFSETS %d", errno); return why; }
    xsk.fill_bytes = xsk.off.fr.desc + entries * sizeof(uint64_t);
    xsk.rx_bytes = xsk.off.rx.desc + entries * sizeof(struct xdp_desc);
    unsigned char *fill = xsk.fill = mmap(NULL, xsk.fill_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, XDP_UMEM_PGOFF_FILL_RING);
    xsk.rx = mmap(NULL, xsk.rx_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, XDP_PGOFF_RX_RING);
    if (fill == MAP_FAILED || xsk.rx == MAP_FAILED) { snprintf(why, sizeof why, "ring mmap %d", errno); return why; }
    uint64_t *frames = (uint64_t *)(fill + xsk.off.fr.desc);
    for (unsigned long i = 0; i < count; i++) frames[i] = i * page_size;
    __atomic_store_n((uint32_t *)(fill + xsk.off.fr.producer), (uint32_t)count, __ATOMIC_RELEASE);
    struct sockaddr_xdp sx;
    memset(&sx, 0, sizeof sx);
    sx.sxdp_family = AF_XDP; sx.sxdp_ifindex = if_nametoindex("lo"); sx.sxdp_queue_id = 0; sx.sxdp_flags = XDP_COPY;
    if (bind(fd, (struct sockaddr *)&sx, sizeof sx) < 0) { snprintf(why, sizeof why, "bind %d", errno); return why; }
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_XSKMAP; attr.key_size = 4; attr.value_size = 4; attr.max_entries = 1;
    int map = (int)bpf_call(BPF_MAP_CREATE, &attr);
    if (map < 0) { snprintf(why, sizeof why, "BPF_MAP_CREATE %d", errno); return why; }
    uint32_t key = 0, value = (uint32_t)fd;
    memset(&attr, 0, sizeof attr);
    attr.map_fd = (uint32_t)map; attr.key = (uint64_t)(unsigned long)&key; attr.value = (uint64_t)(unsigned long)&value;
    if (bpf_call(BPF_MAP_UPDATE_ELEM, &attr) < 0) { snprintf(why, sizeof why, "BPF_MAP_UPDATE_ELEM %d", errno); return why; }
    /* r1 = map; r2 = 0 (key); r3 = XDP_PASS (the action where the key has no socket); return bpf_redirect_map(r1, r2, r3) */
    struct bpf_insn prog[] = {
        { BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map }, { 0, 0, 0, 0, 0 },
        { BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, 0 },
        { BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS },
        { BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map },
        { BPF_JMP | BPF_EXIT, 0, 0, 0, 0 },
    };
    static const char license[] = "GPL";
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_XDP; attr.insns = (uint64_t)(unsigned long)prog; attr.insn_cnt = sizeof prog / sizeof prog[0];
    attr.license = (uint64_t)(unsigned long)license;
    int pfd = (int)bpf_call(BPF_PROG_LOAD, &attr);
    if (pfd < 0) { snprintf(why, sizeof why, "BPF_PROG_LOAD %d", errno); return why; }
    memset(&attr, 0, sizeof attr);
    attr.link_create.prog_fd = (uint32_t)pfd; attr.link_create.target_ifindex = sx.sxdp_ifindex; attr.link_create.attach_type = BPF_XDP;
    attr.link_create.flags = XDP_FLAGS_SKB_MODE;
    if (bpf_call(BPF_LINK_CREATE, &attr) < 0) { snprintf(why, sizeof why, "BPF_LINK_CREATE %d", errno); return why; }
    xsk.fd = fd; xsk.entries = entries;
    return NULL;
}

/* The legacy AIO context of aioread / aiowait / aioclose, and the file its read is from. */
static struct { aio_context_t ctx; int fd; } aio = { 0, -1 };

static struct { int fd; unsigned char *sq, *cq; struct io_uring_sqe *sqes; struct io_uring_params prm; void *buf; size_t len, sqsz, cqsz; } uring;

static void reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *spin(void *arg)
{
    volatile unsigned long *c = &spins[(long)arg * 16];
    for (;;) (*c)++;
    return NULL;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

static void pattern(unsigned char *base, long pages, unsigned long seed, long n)
{
    long *hit = malloc(sizeof(long) * (n > 0 ? n : 1));
    unsigned long x = seed ? seed : 88172645463325252UL;
    for (long i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        hit[i] = (long)(x % (unsigned long)pages);
        base[hit[i] * page_size + (long)(x >> 32) % page_size] = ++counter;
    }
    qsort(hit, n, sizeof(long), cmp_long);
    size_t cap = 16 + (size_t)n * 21, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    for (long i = 0; i < n; i++) {
        if (i > 0 && hit[i] == hit[i - 1]) continue;
        len += snprintf(out + len, cap - len, len ? ",%ld" : "%ld", hit[i]);
    }
    reply("OK %s", len ? out : "-");
    free(out);
    free(hit);
}

/* A filter that kills the process (SECCOMP_RET_KILL_PROCESS) on syscall nr, or only when its second argument's
 * low 32 bits are arg1 (an ioctl request), as systemd's SystemCallFilter= kills by default. */
#define CHURN_BATCH 16 /* threads started at once by each round of churn, then joined */
static struct { unsigned char *base; long pages; volatile int stop; unsigned long started; pthread_t driver; int running; } churn;

static void *churn_one(void *arg)
{
    unsigned long k = (unsigned long)arg;
    churn.base[(long)(k % (unsigned long)churn.pages) * page_size + 1] = (unsigned char)(k + 1);
    return NULL;
}

static void *churn_loop(void *arg)
{
    (void)arg;
    while (!churn.stop) {
        pthread_t t[CHURN_BATCH];
        int made = 0;
        for (; made < CHURN_BATCH; made++)
            if (pthread_create(&t[made], NULL, churn_one, (void *)(churn.started + (unsigned long)made))) break;
        for (int i = 0; i < made; i++) pthread_join(t[i], NULL);
        churn.started += (unsigned long)made;
    }
    return NULL;
}

static int install_seccomp_kill(long nr, long arg1, int with_arg)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)arg1, 0, with_arg ? 1 : 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* Kills on syscall nr issued from where (instruction_pointer & mask) == value: a filter that looks at where a
 * call comes from, as sandboxes that pin syscalls to their own code do. */
static int install_seccomp_ip(long nr, unsigned mask, unsigned value)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mask),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static long tsync_nr;
static volatile pid_t tsync_tid;
static void *tsync_arm(void *arg)
{
    sigset_t set;
    int sig;
    (void)arg;
    tsync_tid = (pid_t)syscall(SYS_gettid);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigwait(&set, &sig);
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)tsync_nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    return NULL;
}

static volatile sig_atomic_t usr1_handled;
static void count_usr1(int sig) { (void)sig; usr1_handled++; }

static int install_seccomp_ret(long nr, unsigned action, int listener)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof f / sizeof f[0], f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, listener ? 1UL << 3 /* NEW_LISTENER */ : 0UL, &prog);
    return rc < 0 ? -1 : 0; /* the listener, never read, stays open */
}

static int install_seccomp(long nr)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* The userfaultfd ABI (include/uapi/linux/userfaultfd.h), spelled out for older headers. */
struct uffd_api_arg { uint64_t api, features, ioctls; };
struct uffd_register_arg { uint64_t start, len, mode, ioctls; };

/* A userfaultfd made by the target itself, looking like the module's: same flags and features. */
static int own_uffd(unsigned long addr, unsigned long pages, int missing)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
    if (fd < 0) return -1;
    struct uffd_api_arg api = { .api = 0xAA, .features = missing ? 0 : (1ULL << 15) | (1ULL << 13) /* WP_ASYNC | WP_UNPOPULATED */ };
    struct uffd_register_arg reg = { .start = addr, .len = pages * (unsigned long)page_size, .mode = missing ? 1ULL << 0 /* MODE_MISSING */ : 1ULL << 1 /* MODE_WP */ };
    if (ioctl(fd, 0xC018AA3FUL /* UFFDIO_API */, &api) < 0 || ioctl(fd, 0xC020AA00UL /* UFFDIO_REGISTER */, &reg) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Many live values and a flag-dependent step: a clobbered register or flag changes the result. */
static unsigned long long __attribute__((noinline)) mix(unsigned long long seed, long steps)
{
    unsigned long long a = seed | 1, b = seed ^ 0x9e3779b97f4a7c15ULL, c = ~seed, d = seed * 3, e = 7, f = 11, g = 13, h = 17;
    for (long i = 0; i < steps; i++) {
        a ^= a << 13; a ^= a >> 7; a ^= a << 17;
        b += a; c ^= b; d += c < a; e = e * 6364136223846793005ULL + d; f ^= e >> 3; g += f | 1; h ^= g + (unsigned long long)i;
    }
    return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h;
}

static volatile sig_atomic_t crunch_stop;
static void on_usr1(int sig) { (void)sig; crunch_stop = 1; }

/* oddmaps / oddwrite: memory of unusual kinds (round 13). */
static struct { unsigned char *gd, *ml, *mf, *fw; int mfd; } odd;

/* The io_uring of uringnommap / uringnop, whose rings are this process's own memory. Newer uapi names, by number: older
 * headers lack them (the user_addr fields are resv2 there). */
#define IORING_SETUP_NO_MMAP_ (1U << 14)
#define IORING_SETUP_NO_SQARRAY_ (1U << 16)
static struct { int fd; unsigned char *rings; struct io_uring_sqe *sqes; struct io_uring_params prm; } nommap = { -1, NULL, NULL, { 0 } };

static void *sleeper(void *arg)
{
    unsigned char stackbyte[64];
    struct timespec ts = { 0, 20 * 1000000L };
    for (unsigned long n = (unsigned long)arg;; n++) {
        stackbyte[n % 64] = (unsigned char)n;
        __asm__ volatile("" : : "r"(stackbyte) : "memory"); /* the write is kept */
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* sud / attrs / hostile (round 24): process attributes that restrict the process itself. */
#define PR_SET_MDWE_ 65
#define PR_GET_MDWE_ 66
static volatile char sud_selector;
static volatile sig_atomic_t handled_signals;
static volatile sig_atomic_t sud_dispatched;
static void on_sud(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; sud_dispatched++; handled_signals++; }
static void on_hostile(int sig) { (void)sig; handled_signals++; }

static char selector_byte(const char *line) { return strstr(line, "block") ? 1 : strstr(line, "bad") ? 2 : 0; }

static int libc_text(unsigned long *start, unsigned long *end)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char buf[512];
    unsigned long at = (unsigned long)&read, s, e;
    char perm[8];
    if (!f) return -1;
    while (fgets(buf, sizeof buf, f))
        if (sscanf(buf, "%lx-%lx %7s", &s, &e, perm) == 3 && at >= s && at < e) { *start = s; *end = e; fclose(f); return 0; }
    fclose(f);
    return -1;
}

static unsigned long long fnv(unsigned long long h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) { h ^= ((const unsigned char *)p)[i]; h *= 0x100000001b3ULL; }
    return h;
}

static unsigned long long attrs_hash(void)
{
    unsigned long long h = 0xcbf29ce484222325ULL;
    for (int sig = 1; sig < 65; sig++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa)) continue;
        h = fnv(h, &sa.sa_handler, sizeof sa.sa_handler);
        h = fnv(h, &sa.sa_flags, sizeof sa.sa_flags);
        h = fnv(h, &sa.sa_mask, 8); /* the kernel's sigset: glibc's is larger, the rest not filled */
    }
    sigset_t mask;
    memset(&mask, 0, sizeof mask);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    h = fnv(h, &mask, 8);
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    sigaltstack(NULL, &ss);
    h = fnv(h, &ss.ss_sp, sizeof ss.ss_sp);
    h = fnv(h, &ss.ss_size, sizeof ss.ss_size);
    h = fnv(h, &ss.ss_flags, sizeof ss.ss_flags);
    for (int r = 0; r < RLIM_NLIMITS; r++) { struct rlimit rl; getrlimit(r, &rl); h = fnv(h, &rl, sizeof rl); }
    long v[6] = { personality(0xffffffff), prctl(PR_GET_MDWE_, 0, 0, 0, 0), 0, 0, prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    int pd = 0, re = 0;
    prctl(PR_GET_PDEATHSIG, &pd, 0, 0, 0);
    prctl(PR_GET_CHILD_SUBREAPER, &re, 0, 0, 0);
    v[2] = pd; v[3] = re;
    return fnv(h, v, sizeof v);
}

/* Landlock (include/uapi/linux/landlock.h), by number for older headers: every file access of ABI 1-5 handled, no rule. */
struct landlock_ruleset_attr_ { uint64_t handled_access_fs, handled_access_net, scoped; };
static long landlock_self(void)
{
    long abi = syscall(444 /* landlock_create_ruleset */, NULL, 0, 1UL /* LANDLOCK_CREATE_RULESET_VERSION */);
    if (abi < 0) return -1;
    struct landlock_ruleset_attr_ attr = { .handled_access_fs = (1ULL << 13) - 1, .handled_access_net = 0, .scoped = abi >= 6 ? 3 : 0 };
    size_t size = abi >= 6 ? sizeof attr : abi >= 4 ? 16 : 8;
    int fd = (int)syscall(444, &attr, size, 0);
    if (fd < 0) return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(446 /* landlock_restrict_self */, fd, 0)) { int e = errno; close(fd); errno = e; return -1; }
    close(fd);
    return abi;
}

static long hostile(const char *what, const char *arg)
{
    if (!strcmp(what, "mdwe")) return prctl(PR_SET_MDWE_, 1UL /* PR_MDWE_REFUSE_EXEC_GAIN */, 0, 0, 0);
    if (!strcmp(what, "personality")) return personality(strtoul(arg, NULL, 16));
    if (!strcmp(what, "mlockall")) return mlockall((int)strtol(arg, NULL, 10));
    if (!strcmp(what, "rlimit")) {
        int r = 0; unsigned long soft = 0; struct rlimit rl;
        if (sscanf(arg, "%d %lu", &r, &soft) != 2 || getrlimit(r, &rl)) { errno = EINVAL; return -1; }
        rl.rlim_cur = soft;
        return setrlimit(r, &rl);
    }
    if (!strcmp(what, "handlers")) {
        static char alt[1 << 16];
        stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0 };
        if (sigaltstack(&ss, NULL)) return -1;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_hostile;
        sa.sa_flags = SA_ONSTACK | SA_RESTART;
        int sigs[] = { SIGSEGV, SIGTRAP, SIGSYS, SIGBUS, SIGUSR1 };
        for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) if (sigaction(sigs[i], &sa, NULL)) return -1;
        return 0;
    }
    if (!strcmp(what, "blockall")) { sigset_t all; sigfillset(&all); return pthread_sigmask(SIG_SETMASK, &all, NULL) ? -1 : 0; }
    if (!strcmp(what, "reaper")) return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) || prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0) ? -1 : 0;
    if (!strcmp(what, "landlock")) return landlock_self();
    errno = EINVAL;
    return -1;
}

/* The command loop: the main thread's, or another thread's once the main thread has left (mainexit). */
static void *serve(void *arg)
{
    char line[256], cmd[32];
    (void)arg;
    while (fgets(line, sizeof line, stdin)) {
        unsigned long a = 0, b = 0, c = 0, d = 0;
        int n = sscanf(line, "%31s %lx %lu %lu %lu", cmd, &a, &b, &c, &d);
        if (n < 1) continue;
        if (!strcmp(cmd, "map")) {
            long pages = strtol(line + 4, NULL, 10);
            if (pages <= 0 || region_count == MAX_REGIONS) { reply("ERR bad map"); continue; }
            unsigned char *g = mmap(NULL, (pages + 2) * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (g == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            unsigned char *p = g + page_size;
            mprotect(p, pages * page_size, PROT_READ | PROT_WRITE);
            madvise(p, pages * page_size, MADV_NOHUGEPAGE);
            regions[region_count].base = p;
            regions[region_count++].pages = pages;
            reply("OK %lx", (unsigned long)p);
        } else if (!strcmp(cmd, "write") && n >= 3) {
            unsigned long count = n >= 4 ? c : 1;
            for (unsigned long i = 0; i < count; i++) ((unsigned char *)a)[(b + i) * page_size] = ++counter;
            reply("OK %lu", count);
        } else if (!strcmp(cmd, "timedwrite") && n >= 4) {
            long long start = now_ns();
            for (unsigned long i = 0; i < c; i++) ((volatile unsigned char *)a)[(b + i) * page_size] = ++counter;
            reply("OK %lld", now_ns() - start);
        } else if (!strcmp(cmd, "pattern") && n >= 5) {
            pattern((unsigned char *)a, (long)b, c, (long)d);
        } else if (!strcmp(cmd, "sum")) {
            unsigned long long h = 1469598103934665603ULL;
            for (int r = 0; r < region_count; r++)
                for (long i = 0; i < regions[r].pages * page_size; i++) { h ^= regions[r].base[i]; h *= 1099511628211ULL; }
            reply("OK %llx", h);
        } else if (!strcmp(cmd, "threads")) {
            long want = strtol(line + 8, NULL, 10);
            long started = 0;
            for (; started < want && thread_count < MAX_THREADS; started++) {
                pthread_t t;
                if (pthread_create(&t, NULL, spin, (void *)(long)thread_count)) break;
                thread_count++;
            }
            reply("OK %ld", started);
        } else if (!strcmp(cmd, "spins")) {
            unsigned long s = 0;
            for (int i = 0; i < thread_count; i++) s += spins[i * 16];
            reply("OK %lu", s);
        } else if (!strcmp(cmd, "sleep")) {
            long ms = strtol(line + 6, NULL, 10);
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
            long long start = now_ns();
            int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &t, NULL);
            reply("OK %d %d %lld", rc, rc, now_ns() - start);
        } else if (!strcmp(cmd, "futex")) {
            static int word;
            long ms = strtol(line + 6, NULL, 10);
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
            long long start = now_ns();
            long rc = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &t, NULL, 0);
            int e = rc < 0 ? errno : 0;
            reply("OK %ld %d %lld", rc, e, now_ns() - start);
        } else if (!strcmp(cmd, "seccomp")) {
            if (install_seccomp(__NR_userfaultfd)) reply("ERR seccomp %d", errno); else reply("OK");
        } else if (!strcmp(cmd, "unmapvdso")) {
            FILE *maps = fopen("/proc/self/maps", "r");
            char m[512];
            int gone = 0;
            while (maps && fgets(m, sizeof m, maps)) {
                unsigned long lo, hi;
                if ((strstr(m, "[vdso]") || strstr(m, "[vvar")) && sscanf(m, "%lx-%lx", &lo, &hi) == 2 && !munmap((void *)lo, hi - lo)) gone++;
            }
            if (maps) fclose(maps);
            if (gone) reply("OK %d", gone); else reply("ERR no vdso");
        } else if (!strcmp(cmd, "seccomperrno")) {
            if (install_seccomp(strtol(line + 13, NULL, 10))) reply("ERR seccomp %d", errno); else reply("OK");
        } else if (!strcmp(cmd, "seccompkill")) {
            long nr = 0, arg1 = 0;
            int got = sscanf(line, "%*s %ld %ld", &nr, &arg1);
            if (got < 1 || install_seccomp_kill(nr, arg1, got >= 2)) reply("ERR seccomp %d", errno); else reply("OK");
        } else if (!strcmp(cmd, "traced")) {
            pid_t child = fork();
            if (child == 0) {
                ptrace(PTRACE_TRACEME, 0, NULL, NULL);
                for (;;) pause();
            }
            reply(child > 0 ? "OK %d" : "ERR fork %d", child > 0 ? child : errno);
        } else if (!strcmp(cmd, "fds")) {
            reply("OK %d", count_fds());
        } else if (!strcmp(cmd, "closefd") && n >= 2) {
            reply("OK %d", close((int)strtol(line + 8, NULL, 10)));
        } else if (!strcmp(cmd, "ownuffd") && n >= 3) {
            int fd = own_uffd(a, b, 0);
            if (fd < 0) reply("ERR userfaultfd %d", errno); else reply("OK %d", fd);
        } else if (!strcmp(cmd, "crunch")) {
            long long end = now_ns() + strtol(line + 7, NULL, 10) * 1000000LL;
            unsigned long rounds = 0, mismatches = 0;
            crunch_stop = 0;
            signal(SIGUSR1, on_usr1);
            while (!crunch_stop && now_ns() < end) {
                if (mix(rounds, 20000) != mix(rounds, 20000)) mismatches++;
                rounds++;
            }
            reply("OK %lu %lu", rounds, mismatches);
        } else if (!strcmp(cmd, "missinguffd") && n >= 3) {
            int fd = own_uffd(a, b, 1);
            if (fd < 0) reply("ERR userfaultfd %d", errno); else reply("OK %d", fd);
        } else if (!strcmp(cmd, "seccompip")) {
            long nr = 0;
            unsigned mask = 0, value = 0;
            if (sscanf(line, "%*s %ld %u %u", &nr, &mask, &value) != 3 || install_seccomp_ip(nr, mask, value)) reply("ERR seccomp %d", errno); else reply("OK");
        } else if (!strcmp(cmd, "ppoll")) {
            long ms = strtol(line + 6, NULL, 10);
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
            sigset_t usr2, empty, old, after;
            sigemptyset(&usr2);
            sigaddset(&usr2, SIGUSR2);
            sigemptyset(&empty);
            usr1_handled = 0;
            signal(SIGUSR1, count_usr1);
            sigprocmask(SIG_SETMASK, &usr2, &old);
            int rc = ppoll(NULL, 0, &t, &empty);
            int e = rc < 0 ? errno : 0;
            sigprocmask(SIG_SETMASK, &old, &after);
            reply("OK %d %d %d %d", rc, e, (int)usr1_handled, sigismember(&after, SIGUSR2));
        } else if (!strcmp(cmd, "tsyncarm")) {
            sigset_t usr2;
            pthread_t th;
            sigemptyset(&usr2);
            sigaddset(&usr2, SIGUSR2);
            pthread_sigmask(SIG_BLOCK, &usr2, NULL);
            tsync_nr = strtol(line + 9, NULL, 10);
            tsync_tid = 0;
            if (pthread_create(&th, NULL, tsync_arm, NULL)) { reply("ERR pthread"); continue; }
            while (!tsync_tid) sched_yield();
            reply("OK %d", (int)tsync_tid);
        } else if (!strcmp(cmd, "exit")) {
            reply("OK");
            exit(n >= 2 ? (int)strtol(line + 5, NULL, 10) : 0);
        } else if (!strcmp(cmd, "mainexit")) {
            pthread_t th;
            if (pthread_create(&th, NULL, serve, NULL)) { reply("ERR pthread"); continue; }
            reply("OK");
            pthread_exit(NULL); /* the main thread leaves, a zombie until the process ends; another serves */
        } else if (!strcmp(cmd, "mprotect") && n >= 4) {
            reply("OK %d", mprotect((void *)a, b * page_size, (int)c));
        } else if (!strcmp(cmd, "madvise") && n >= 5) {
            reply("OK %d", madvise((unsigned char *)a + b * page_size, c * page_size, (int)d) ? errno : 0);
        } else if (!strcmp(cmd, "mremap") && n >= 3) {
            unsigned char *dst = mmap(NULL, (b + 2) * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (dst == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            unsigned char *moved = mremap((void *)a, b * page_size, b * page_size, MREMAP_MAYMOVE | MREMAP_FIXED, dst + page_size);
            if (moved == MAP_FAILED) { reply("ERR mremap %d", errno); continue; }
            for (int r = 0; r < region_count; r++) if (regions[r].base == (unsigned char *)a) regions[r].base = moved;
            reply("OK %lx", (unsigned long)moved);
        } else if (!strcmp(cmd, "readinto") && n >= 4) {
            char path[200];
            if (sscanf(line, "%*s %*s %*s %*s %199s", path) != 1) { reply("ERR path"); continue; }
            int f = open(path, O_RDONLY | O_CLOEXEC);
            if (f < 0) { reply("ERR open %d", errno); continue; }
            long got = 0, want = (long)c * page_size;
            while (got < want) { ssize_t r = read(f, (unsigned char *)a + b * page_size + got, want - got); if (r <= 0) break; got += r; }
            close(f);
            reply("OK %ld", got);
        } else if (!strcmp(cmd, "uringreg") && n >= 4) {
            struct io_uring_params prm;
            memset(&prm, 0, sizeof prm);
            int fd = (int)syscall(__NR_io_uring_setup, 4, &prm);
            if (fd < 0) { reply("ERR io_uring_setup %d", errno); continue; }
            struct iovec iov = { (unsigned char *)a + b * page_size, c * page_size };
            if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) { reply("ERR register %d", errno); close(fd); continue; }
            size_t sqsz = prm.sq_off.array + prm.sq_entries * sizeof(unsigned), cqsz = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
            unsigned char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
            unsigned char *cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
            struct io_uring_sqe *sqes = mmap(NULL, prm.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
            if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) { reply("ERR ring mmap %d", errno); close(fd); continue; }
            uring.fd = fd; uring.sq = sq; uring.cq = cq; uring.sqes = sqes; uring.prm = prm; uring.buf = iov.iov_base; uring.len = iov.iov_len; uring.sqsz = sqsz; uring.cqsz = cqsz;
            reply("OK %d", fd);
        } else if (!strcmp(cmd, "uringread")) {
            char path[200];
            if (!uring.sq || sscanf(line, "%*s %199s", path) != 1) { reply("ERR no ring or path"); continue; }
            int f = open(path, O_RDONLY | O_CLOEXEC);
            if (f < 0) { reply("ERR open %d", errno); continue; }
            unsigned *tail = (unsigned *)(uring.sq + uring.prm.sq_off.tail), mask = *(unsigned *)(uring.sq + uring.prm.sq_off.ring_mask);
            unsigned idx = *tail & mask;
            struct io_uring_sqe *e = &uring.sqes[idx];
            memset(e, 0, sizeof *e);
            e->opcode = IORING_OP_READ_FIXED; e->fd = f; e->addr = (unsigned long)uring.buf; e->len = (unsigned)uring.len; e->buf_index = 0;
            ((unsigned *)(uring.sq + uring.prm.sq_off.array))[idx] = idx;
            __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
            long r = syscall(__NR_io_uring_enter, uring.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0);
            if (r < 0) { reply("ERR enter %d", errno); close(f); continue; }
            unsigned *head = (unsigned *)(uring.cq + uring.prm.cq_off.head), cmask = *(unsigned *)(uring.cq + uring.prm.cq_off.ring_mask);
            struct io_uring_cqe *cqe = &((struct io_uring_cqe *)(uring.cq + uring.prm.cq_off.cqes))[*head & cmask];
            int res = cqe->res;
            __atomic_store_n(head, *head + 1, __ATOMIC_RELEASE);
            close(f);
            reply("OK %d", res);
        } else if (!strcmp(cmd, "uringclose")) {
            if (!uring.sq) { reply("ERR no ring"); continue; }
            int rc = munmap(uring.sq, uring.sqsz) | munmap(uring.cq, uring.cqsz) | munmap(uring.sqes, uring.prm.sq_entries * sizeof(struct io_uring_sqe)) | close(uring.fd);
            memset(&uring, 0, sizeof uring);
            reply("OK %d", rc);
        } else if (!strcmp(cmd, "aioread") && n >= 4) {
            char path[200];
            if (sscanf(line, "%*s %*s %*s %*s %199s", path) != 1) { reply("ERR path"); continue; }
            if (!aio.ctx && syscall(__NR_io_setup, 4, &aio.ctx) < 0) { reply("ERR io_setup %d", errno); aio.ctx = 0; continue; }
            int f = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
            if (f < 0) { reply("ERR open %d", errno); continue; }
            struct iocb cb;
            memset(&cb, 0, sizeof cb);
            cb.aio_lio_opcode = IOCB_CMD_PREAD; cb.aio_fildes = (uint32_t)f;
            cb.aio_buf = (uint64_t)(unsigned long)((unsigned char *)a + b * page_size); cb.aio_nbytes = (uint64_t)c * page_size;
            struct iocb *list[1] = { &cb };
            long r = syscall(__NR_io_submit, aio.ctx, 1, list);
            if (r != 1) { reply("ERR io_submit %ld %d", r, errno); close(f); continue; }
            aio.fd = f;
            reply("OK %ld", r);
        } else if (!strcmp(cmd, "aiowait")) {
            struct io_event ev;
            long r = aio.ctx ? syscall(__NR_io_getevents, aio.ctx, 1, 1, &ev, NULL) : -1;
            if (r != 1) { reply("ERR io_getevents %ld %d", r, errno); continue; }
            if (aio.fd >= 0) { close(aio.fd); aio.fd = -1; }
            reply("OK %lld", (long long)ev.res);
        } else if (!strcmp(cmd, "aioclose")) {
            long r = aio.ctx ? syscall(__NR_io_destroy, aio.ctx) : -1;
            aio.ctx = 0;
            reply("OK %ld", r);
        } else if (!strcmp(cmd, "xskrecv") && n >= 4) {
            const char *why = xsk.fd < 0 ? xsk_setup(a, b, c) : "already set up";
            if (why) reply("ERR %s", why); else reply("OK %d", xsk.fd);
        } else if (!strcmp(cmd, "xskclose")) {
            if (xsk.fd < 0) { reply("ERR no socket"); continue; }
            int rc = munmap(xsk.fill, xsk.fill_bytes) | munmap(xsk.rx, xsk.rx_bytes) | close(xsk.fd);
            xsk.fill = xsk.rx = NULL;
            reply("OK %d", rc);
        } else if (!strcmp(cmd, "xsksend") && n >= 2) {
            long want = strtol(line + 8, NULL, 10);
            int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in to;
            memset(&to, 0, sizeof to);
            to.sin_family = AF_INET; to.sin_port = htons(9); to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            unsigned char payload[1024];
            for (unsigned i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)(0xC3 ^ i);
            for (long i = 0; i < want; i++) sendto(s, payload, sizeof payload, 0, (struct sockaddr *)&to, sizeof to);
            close(s);
            reply("OK %u", xsk.rx ? __atomic_load_n((uint32_t *)(xsk.rx + xsk.off.rx.producer), __ATOMIC_ACQUIRE) : 0);
        } else if (!strcmp(cmd, "vmwritefrom") && n >= 4) {
            char path[200];
            if (sscanf(line, "%*s %*s %*s %*s %199s", path) != 1) { reply("ERR path"); continue; }
            int f = open(path, O_RDONLY | O_CLOEXEC);
            if (f < 0) { reply("ERR open %d", errno); continue; }
            unsigned char *src = mmap(NULL, c * page_size, PROT_READ, MAP_PRIVATE, f, 0);
            close(f);
            if (src == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            struct iovec local = { src, c * page_size }, remote = { (void *)a, c * page_size };
            ssize_t r = process_vm_writev((pid_t)b, &local, 1, &remote, 1, 0);
            munmap(src, c * page_size);
            reply(r < 0 ? "ERR process_vm_writev %d" : "OK %ld", r < 0 ? errno : (int)r);
        } else if (!strcmp(cmd, "fork")) {
            pid_t child = fork();
            if (child == 0) { prctl(PR_SET_PDEATHSIG, SIGKILL); for (;;) pause(); }
            reply(child > 0 ? "OK %d" : "ERR fork %d", child > 0 ? child : errno);
        } else if (!strcmp(cmd, "exec")) {
            char path[200];
            if (sscanf(line, "%*s %199s", path) != 1) { reply("ERR path"); continue; }
            char *argv[] = { path, NULL };
            execv(path, argv);
            reply("ERR exec %d", errno);
        } else if (!strcmp(cmd, "uffdunreg") && n >= 4) {
            uint64_t range[2] = { a, b * (unsigned long)page_size }; /* struct uffdio_range */
            int rc = ioctl((int)c, 0x8010AA01UL /* UFFDIO_UNREGISTER */, range);
            reply("OK %d %d", rc, rc ? errno : 0);
        } else if (!strcmp(cmd, "dumpable")) {
            reply("OK %d", prctl(PR_SET_DUMPABLE, strtol(line + 9, NULL, 10), 0, 0, 0));
        } else if (!strcmp(cmd, "ownreset") && n >= 3) {
            /* struct pm_scan_arg and struct page_region (include/uapi/linux/fs.h, Linux 6.7), spelled out for older headers */
            uint64_t vec[3 * 64], arg[12] = { 96, 1 /* PM_SCAN_WP_MATCHING */ | 2 /* PM_SCAN_CHECK_WPASYNC */, a, a + b * (unsigned long)page_size,
                                             0, (uint64_t)(uintptr_t)vec, 64, 0, 0, 2 /* PAGE_IS_WRITTEN */, 0, 2 };
            int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
            long got = pm < 0 ? -1 : ioctl(pm, 0xC0606610UL /* PAGEMAP_SCAN */, arg);
            int e = errno;
            if (pm >= 0) close(pm);
            if (got < 0) { reply("ERR pagemap_scan %d", e); continue; }
            unsigned long pages = 0;
            for (long i = 0; i < got; i++) pages += (vec[3 * i + 1] - vec[3 * i]) / (unsigned long)page_size;
            reply("OK %lu", pages);
        } else if (!strcmp(cmd, "scanprobe")) {
            /* Whether this kernel has PAGEMAP_SCAN (Linux 6.7): one plain scan of the page of this stack. "OK 1", or "OK 0 ERRNO". */
            uint64_t vec[3], here = (uint64_t)(uintptr_t)&vec & ~((uint64_t)page_size - 1);
            uint64_t arg[12] = { 96, 0, here, here + (uint64_t)page_size, 0, (uint64_t)(uintptr_t)vec, 1, 0, 0, 0, 0, 8 /* PAGE_IS_PRESENT */ };
            int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
            long got = pm < 0 ? -1 : ioctl(pm, 0xC0606610UL /* PAGEMAP_SCAN */, arg);
            int e = errno;
            if (pm >= 0) close(pm);
            if (got >= 0) reply("OK 1"); else reply("OK 0 %d", e);
        } else if (!strcmp(cmd, "churn") && n >= 2) {
            if (a == 0) {
                if (!churn.running) { reply("ERR not churning"); continue; }
                churn.stop = 1;
                pthread_join(churn.driver, NULL);
                churn.running = 0;
                reply("OK %lu", churn.started);
                continue;
            }
            if (churn.running || n < 3) { reply("ERR churning already or no range"); continue; }
            churn.base = (unsigned char *)a; churn.pages = (long)b; churn.stop = 0; churn.started = 0;
            if (pthread_create(&churn.driver, NULL, churn_loop, NULL)) { reply("ERR pthread"); continue; }
            churn.running = 1;
            reply("OK");
        } else if (!strcmp(cmd, "setuid") && n >= 2) {
            uid_t uid = (uid_t)strtoul(line + 7, NULL, 10);
            int rc = setresuid(uid, uid, uid);
            if (!rc) rc = prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
            reply("OK %d", rc);
        } else if (!strcmp(cmd, "oddmaps")) {
            odd.ml = mmap(NULL, 8 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            odd.mfd = memfd_create("r13sealed", MFD_ALLOW_SEALING);
            int fwfd = memfd_create("r13futurewrite", MFD_ALLOW_SEALING);
            if (odd.ml == MAP_FAILED || odd.mfd < 0 || fwfd < 0 ||
                ftruncate(odd.mfd, 8 * page_size) || ftruncate(fwfd, 4 * page_size)) { reply("ERR setup %d", errno); continue; }
            odd.mf = mmap(NULL, 8 * page_size, PROT_READ | PROT_WRITE, MAP_SHARED, odd.mfd, 0);
            odd.fw = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fwfd, 0);
            if (odd.mf == MAP_FAILED || odd.fw == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            /* Last, so that no mapping above lands in the hole below it (mmap places new mappings top-down). */
            long hole = 2048;
            unsigned char *gap = mmap(NULL, hole * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (gap == MAP_FAILED) { reply("ERR mmap %d", errno); continue; }
            munmap(gap, hole * page_size);
            odd.gd = mmap(gap + (hole - 4) * page_size, 4 * page_size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_FIXED, -1, 0);
            if (odd.gd == MAP_FAILED) { reply("ERR growsdown %d", errno); continue; }
            memset(odd.gd, 0x11, 4 * page_size);
            memset(odd.ml, 0x22, 8 * page_size);
            int lr = mlock(odd.ml, 8 * page_size) ? errno : 0;
            memset(odd.mf, 0x33, 8 * page_size);
            memset(odd.fw, 0x44, 4 * page_size);
            int sealed = fcntl(odd.mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) ||
                         fcntl(fwfd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE);
            close(fwfd);
            if (sealed) { reply("ERR seal %d", errno); continue; }
            reply("OK %lx %lx %lx %lx %d", (unsigned long)odd.gd, (unsigned long)odd.ml, (unsigned long)odd.mf, (unsigned long)odd.fw, lr);
        } else if (!strcmp(cmd, "oddwrite")) {
            static unsigned char round;
            round++;
            volatile unsigned char *below = odd.gd - 2 * page_size;
            below[0] = (unsigned char)(0x55 + round);
            below[page_size] = (unsigned char)(0x56 + round);
            odd.gd = (unsigned char *)below;
            odd.ml[3 * page_size] = (unsigned char)(0x66 + round);
            odd.mf[5 * page_size] = (unsigned char)(0x77 + round);
            unsigned char b = (unsigned char)(0x99 + round);
            if (pwrite(odd.mfd, &b, 1, 6 * page_size) != 1) { reply("ERR pwrite %d", errno); continue; }
            odd.fw[page_size] = (unsigned char)(0x78 + round);
            reply("OK %lx", (unsigned long)odd.gd);
        } else if (!strcmp(cmd, "sleepers") && n >= 2) {
            long want = strtol(line + 9, NULL, 10), made = 0;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setstacksize(&attr, 64 * 1024);
            for (; made < want; made++) {
                pthread_t th;
                if (pthread_create(&th, &attr, sleeper, (void *)made)) break;
                pthread_detach(th);
            }
            pthread_attr_destroy(&attr);
            reply("OK %ld", made);
        } else if (!strcmp(cmd, "sud") && n >= 1) {
            unsigned long ls, le;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_sud;
            sa.sa_flags = SA_SIGINFO | SA_RESTART;
            sud_selector = selector_byte(line);
            unsigned long sel = strstr(line, "none") ? 0UL : (unsigned long)&sud_selector;
            if (strstr(line, "unreadable")) {
                void *p = mmap(NULL, page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                sel = p == MAP_FAILED ? 0UL : (unsigned long)p;
            }
            if (libc_text(&ls, &le) || sigaction(SIGSYS, &sa, NULL)
                || prctl(PR_SET_SYSCALL_USER_DISPATCH, 1UL /* ON */, ls, le - ls, sel)) { reply("ERR sud %d", errno); continue; }
            reply("OK %lx", sel);
        } else if (!strcmp(cmd, "sudprobe")) {
            /* Whether this kernel tells a tracer a thread's syscall user dispatch (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG,
               0x4211, Linux 6.2): asked of a child of this target stopped under its trace. "OK 1", or "OK 0 ERRNO". */
            unsigned long long cfg[4];
            pid_t c = fork();
            if (c == 0) { ptrace(PTRACE_TRACEME, 0, 0, 0); raise(SIGSTOP); _exit(0); }
            int st = 0;
            if (c < 0 || waitpid(c, &st, __WALL) != c || !WIFSTOPPED(st)) { reply("ERR sudprobe %d", errno); if (c > 0) { kill(c, SIGKILL); waitpid(c, &st, __WALL); } continue; }
            long rc = ptrace((enum __ptrace_request)0x4211, c, (void *)sizeof cfg, cfg);
            int e = errno;
            kill(c, SIGKILL);
            while (waitpid(c, &st, __WALL) == c && !WIFEXITED(st) && !WIFSIGNALED(st)) { }
            if (rc == 0) reply("OK 1"); else reply("OK 0 %d", e);
        } else if (!strcmp(cmd, "sudsel")) {
            sud_selector = selector_byte(line);
            reply("OK");
        } else if (!strcmp(cmd, "sudoff")) {
            sud_selector = 0;
            reply("OK %d", prctl(PR_SET_SYSCALL_USER_DISPATCH, 0UL, 0UL, 0UL, 0UL));
        } else if (!strcmp(cmd, "seccompret")) {
            long nr = 0; unsigned action = 0;
            if (sscanf(line, "%*s %ld %x", &nr, &action) != 2 || install_seccomp_ret(nr, action, strstr(line, "notify") != NULL)) reply("ERR seccomp %d", errno); else reply("OK");
        } else if (!strcmp(cmd, "sudcall")) {
            long nr = SYS_getpid;
            __asm__ volatile("syscall" : "+a"(nr) : : "rcx", "r11", "memory");
            reply("OK %d", (int)sud_dispatched);
        } else if (!strcmp(cmd, "attrs")) {
            reply("OK %llx %d %d", attrs_hash(), count_fds(), (int)handled_signals);
        } else if (!strcmp(cmd, "hostile")) {
            char what[32] = "", *arg = line;
            sscanf(line, "%*s %31s", what);
            arg = strstr(line, what) + strlen(what);
            long rc = hostile(what, arg);
            if (rc < 0) reply("ERR %d", errno); else reply("OK %ld", rc);
        } else if (!strcmp(cmd, "vfork") && n >= 2) {
            long ms = strtol(line + 6, NULL, 10);
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            reply("OK");
            pid_t child = vfork();
            if (child == 0) { syscall(SYS_nanosleep, &ts, NULL); _exit(0); }
            if (child > 0) waitpid(child, NULL, 0);
        } else if (!strcmp(cmd, "uringnommap") && n >= 4) {
            struct io_uring_params prm;
            memset(&prm, 0, sizeof prm);
            unsigned char *base = (unsigned char *)a + b * page_size;
            prm.flags = IORING_SETUP_NO_MMAP_ | IORING_SETUP_NO_SQARRAY_ | IORING_SETUP_CQSIZE;
            prm.cq_entries = 512;
            prm.sq_off.resv2 = (unsigned long)base;                /* sq_off.user_addr: the SQEs */
            prm.cq_off.resv2 = (unsigned long)(base + page_size);  /* cq_off.user_addr: the rings */
            unsigned long ring_bytes = 0;
            int fd = (int)syscall(__NR_io_uring_setup, 8, &prm);
            if (fd < 0) { reply("ERR io_uring_setup %d", errno); continue; }
            ring_bytes = prm.cq_off.cqes + prm.cq_entries * sizeof(struct io_uring_cqe);
            if (ring_bytes > (c - 1) * page_size) { close(fd); reply("ERR rings need %lu bytes", ring_bytes); continue; }
            nommap.fd = fd; nommap.rings = base + page_size; nommap.sqes = (struct io_uring_sqe *)base; nommap.prm = prm;
            reply("OK %d %lu", fd, ring_bytes);
        } else if (!strcmp(cmd, "uringnop") && n >= 2) {
            if (nommap.fd < 0) { reply("ERR no ring"); continue; }
            long want = strtol(line + 8, NULL, 10), done = 0;
            unsigned *tail = (unsigned *)(nommap.rings + nommap.prm.sq_off.tail), mask = *(unsigned *)(nommap.rings + nommap.prm.sq_off.ring_mask);
            unsigned *chead = (unsigned *)(nommap.rings + nommap.prm.cq_off.head), *ctail = (unsigned *)(nommap.rings + nommap.prm.cq_off.tail);
            for (; done < want; done++) {
                struct io_uring_sqe *e = &nommap.sqes[*tail & mask];
                memset(e, 0, sizeof *e);
                e->opcode = IORING_OP_NOP; e->user_data = 0x5000 + (unsigned long)done;
                __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
                if (syscall(__NR_io_uring_enter, nommap.fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) break;
                __atomic_store_n(chead, __atomic_load_n(ctail, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
            }
            if (done < want) reply("ERR enter %d", errno); else reply("OK %u", __atomic_load_n(ctail, __ATOMIC_ACQUIRE));
        } else {
            reply("ERR unknown command");
        }
    }
    exit(0);
}

int main(void)
{
    page_size = sysconf(_SC_PAGESIZE);
    signal(SIGPIPE, SIG_IGN);
    reply("READY %d %ld", getpid(), page_size);
    serve(NULL);
    return 0;
}
