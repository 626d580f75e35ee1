/*
 * sdscenario: runs SoftDirty scenarios on real memory and prints the pagemap entries of the scenario's
 * pages at each checkpoint, so the emulator's print of the same scenario can be compared line by line.
 *
 * Input (stdin): scenarios, one operation a line, page numbers relative to the scenario's window:
 *   scenario <name>                 start; the window is reserved PROT_NONE (<pages> from "reserve")
 *   reserve <pages>                 the window size (first line after "scenario")
 *   map <page> <count> <prot> <kind>   mmap MAP_FIXED; prot none|r|rw|rwx; kind anon|shared|file|filepriv|huge
 *                                   (huge: anon, then madvise MADV_HUGEPAGE: THP in "madvise" mode too)
 *   unmap <page> <count>            munmap
 *   mremap <page> <count> <newpage> mremap MAYMOVE|FIXED to newpage, same size
 *   mprotect <page> <count> <prot>  mprotect
 *   read <page> <count>             read one byte of each page
 *   write <page> <count>            increment one byte of each page
 *   clear <type>                    write <type> (1-5) to /proc/self/clear_refs
 *   dontneed <page> <count>         madvise MADV_DONTNEED
 *   wipeonfork|keeponfork|dontfork|dofork <page> <count>   madvise MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTFORK,
 *                                   MADV_DOFORK (what a later fork gives the child of the range)
 *   seal <page> <count>             mseal(2) of the range (ENOSYS before 6.10)
 *   truncate <pages>                ftruncate the backing file of "file"/"filepriv" mappings to <pages> pages
 *                                   (pages of a mapping past the new end are unmapped and fault SIGBUS, printed SEGV)
 *   fork                            fork; the child becomes the current process, the parent waits
 *   switch                          make the other process (parent/child) current
 *   check                           print the window's pagemap entries of the current process
 *   scan                            PAGEMAP_SCAN of the window, no masks, return mask 0x1FF: print the regions
 *   uffdwp <page> <count>           userfaultfd (one per process, made at first use, WP_ASYNC|WP_UNPOPULATED):
 *                                   UFFDIO_REGISTER MODE_WP, then UFFDIO_WRITEPROTECT MODE_WP of the range
 *   written                         PAGEMAP_SCAN WP_MATCHING|CHECK_WPASYNC, mask = return = WRITTEN over the
 *                                   window (get-and-reset): print the regions
 *   neighbour                       map, write and unmap the last page of the window's last page-table range
 *                                   (outside the window): a page table shared with the window's pages
 *   fill <page> <count> <byte>      memset each page to <byte> (a write of the whole page)
 *   ksm <page> <count>              madvise MADV_MERGEABLE, then wait until ksmd has finished 3 more full scans
 *                                   (a page is merged at its second scan): EAGAIN where /sys/kernel/mm/ksm/run is
 *                                   not 1, ENOENT without KSM, ETIMEDOUT after 120 s
 *   unmerge <page> <count>          madvise MADV_UNMERGEABLE
 *   split <page> <count>            split the THPs of the range (debugfs split_huge_pages "<pid>,<start>,<end>",
 *                                   the folio split the kernel makes under memory pressure; debugfs is mounted
 *                                   where it is not): ENOENT where the file is missing
 *   migrate <page> <count> <node>   move_pages of the range's pages to NUMA node <node> (MPOL_MF_MOVE): the first
 *                                   page's failure (its status) is printed as the op's errno, EIO for a page left
 *                                   on another node
 *   pageout <page> <count>          madvise MADV_PAGEOUT (anonymous pages go to swap only where the guest has swap:
 *                                   tests/vm/matrix.sh SOFTDIRTY_MATRIX_SWAP)
 *   cold <page> <count>             madvise MADV_COLD
 *   free <page> <count>             madvise MADV_FREE
 *   swapoff                         swapoff of the guest's swap device (/dev/zram0): every swapped page comes back
 *   swapon                          swapon of it again
 *   reclaim                         memory.reclaim of 1 GiB in this process's cgroup v2 (matrix-init puts sdscenario in one of
 *                                   its own with swap): LRU reclaim, which takes pages a fork shares too; EAGAIN (less
 *                                   reclaimed than asked) is not reported
 *   truth                           print the pages this process really wrote since its last "clear 4" (the
 *                                   runner's own record: a write that did not fault, moved along by mremap,
 *                                   forgotten by map and unmap of the page): "truth <n> <who>", then one
 *                                   line per run of such pages "<first page> <end page>"
 *   end                             finish the scenario (children are ended)
 * Output: "scenario <name>", per op failure "op <n> <errno-name>" or "op <n> SEGV", per check
 * "check <n> <who>" (n: the op's number, counting from 1 at "reserve"; who: self, parent or child)
 * then one line per page "<page> <hex entry without PFN/swap bits>", per scan "scan <n> <who>" or
 * "written <n> <who>" then one line per region "<first page> <end page> <hex categories>", then "end".
 * A forked child does not use its parent's userfaultfd (it would register the parent's memory): it
 * makes its own at its first uffdwp.
 * Each scenario runs in its own forked process, so one scenario cannot disturb the next.
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
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/swap.h>

#define FRAME_MASK ((1ULL << 55) - 1) /* PFN or swap type/offset: not compared */
#define MAX_LINE 256

static long page_size;

/* The bytes one last-level page table maps: a page of 8-byte entries (2 MiB of 4 KiB pages, 32 MiB of 16 KiB). */
static size_t table_span(void) { return (size_t)page_size * (size_t)(page_size / 8); }
static char *window;      /* start of the scenario window */
static long window_pages;
static size_t window_span; /* the window rounded up to whole 2 MiB ranges */
static int file_fd = -1;  /* backing file of "file"/"filepriv" mappings */
static sigjmp_buf segv_jump;
static int op_number;

/* PAGEMAP_SCAN and userfaultfd ABI (include/uapi/linux/fs.h, userfaultfd.h), spelled out so that the
 * program builds with older headers too. */
#define PAGEMAP_SCAN_IOCTL 0xC0606610UL
#define PM_SCAN_WP_MATCHING (1ULL << 0)
#define PM_SCAN_CHECK_WPASYNC (1ULL << 1)
#define PAGE_IS_WRITTEN (1ULL << 1)
#define PAGE_CATEGORIES 0x1FFULL
struct scan_arg { uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages,
                  category_inverted, category_mask, category_anyof_mask, return_mask; };
struct scan_region { uint64_t start, end, categories; };
#define UFFD_API_VERSION 0xAAULL
#define UFFD_USER_MODE_ONLY_FLAG 1
#define UFFDIO_API_IOCTL 0xC018AA3FUL
#define UFFDIO_REGISTER_IOCTL 0xC020AA00UL
#define UFFDIO_WRITEPROTECT_IOCTL 0xC018AA06UL
#define UFFD_FEATURE_WP_UNPOPULATED_BIT (1ULL << 13)
#define UFFD_FEATURE_WP_ASYNC_BIT (1ULL << 15)
#define UFFD_REGISTER_MODE_WP (1ULL << 1)
#define UFFD_WRITEPROTECT_MODE_WP (1ULL << 0)
struct uffd_api_arg { uint64_t api, features, ioctls; };
struct uffd_register_arg { uint64_t start, len, mode, ioctls; };
struct uffd_writeprotect_arg { uint64_t start, len, mode; };

static int uffd = -1;     /* this process's userfaultfd, made at the first uffdwp */
static unsigned char truth_written[4096]; /* pages this process wrote since its last "clear 4" ("truth") */

/* The truth record of [p, p + c) within the window: cleared, or moved to q. */
static void truth_clear(long p, long c)
{
    for (long i = p; i < p + c; i++) if (i >= 0 && i < 4096) truth_written[i] = 0;
}

static int page_mapped(long i)
{
    unsigned char v;
    return mincore(window + i * page_size, page_size, &v) == 0 || errno != ENOMEM;
}

/* After an mremap of [p, p + c) to q: the record follows each page that moved, one mapped before
 * (was_mapped) and, unless the call succeeded, unmapped after (a move of several VMAs may stop half-way). */
static void truth_move(long p, long c, long q, const unsigned char *was_mapped, int done)
{
    unsigned char was[4096], moved[4096];
    for (long i = 0; i < c; i++) {
        was[i] = p + i >= 0 && p + i < 4096 ? truth_written[p + i] : 0;
        moved[i] = was_mapped[i] && (done || !page_mapped(p + i));
    }
    for (long i = 0; i < c; i++) if (moved[i] && p + i >= 0 && p + i < 4096) truth_written[p + i] = 0;
    for (long i = 0; i < c; i++) if (moved[i] && q + i >= 0 && q + i < 4096) truth_written[q + i] = was[i];
}

static void print_truth(const char *who)
{
    printf("truth %d %s\n", op_number, who);
    long n = window_pages < 4096 ? window_pages : 4096;
    for (long i = 0; i < n;) {
        if (!truth_written[i]) { i++; continue; }
        long j = i;
        while (j < n && truth_written[j]) j++;
        printf("%ld %ld\n", i, j);
        i = j;
    }
}

static void on_segv(int sig) { (void)sig; siglongjmp(segv_jump, 1); }

static const char *errno_name(int e)
{
    switch (e) {
    case EINVAL: return "EINVAL"; case ENOMEM: return "ENOMEM"; case EFAULT: return "EFAULT";
    case EACCES: return "EACCES"; case EPERM: return "EPERM"; case EAGAIN: return "EAGAIN";
    case EBUSY: return "EBUSY"; case ENOENT: return "ENOENT"; case ENOTTY: return "ENOTTY";
    case ESRCH: return "ESRCH"; case EEXIST: return "EEXIST"; case EBADF: return "EBADF";
    case ENOSPC: return "ENOSPC"; case ENOSYS: return "ENOSYS"; case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINTR: return "EINTR"; case EIO: return "EIO"; case ETIMEDOUT: return "ETIMEDOUT"; default: return "EOTHER";
    }
}

static int parse_prot(const char *s)
{
    if (!strcmp(s, "none")) return PROT_NONE;
    if (!strcmp(s, "r")) return PROT_READ;
    if (!strcmp(s, "rw")) return PROT_READ | PROT_WRITE;
    if (!strcmp(s, "rwx")) return PROT_READ | PROT_WRITE | PROT_EXEC;
    return -1;
}

static void check(const char *who)
{
    uint64_t entries[4096];
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) { printf("error pagemap %s\n", strerror(errno)); return; }
    long n = window_pages < 4096 ? window_pages : 4096;
    ssize_t got = pread(fd, entries, n * 8, (off_t)((uintptr_t)window / page_size) * 8);
    close(fd);
    printf("check %d %s\n", op_number, who);
    for (long i = 0; i < got / 8; i++) {
        uint64_t e = entries[i];
        printf("%ld %016llx\n", i, (unsigned long long)(e & ~FRAME_MASK));
    }
}

/* PAGEMAP_SCAN over the window; prints "<verb> <n> <who>" and the regions, or returns -1 with errno. */
static int scan(const char *verb, const char *who, uint64_t flags, uint64_t mask, uint64_t return_mask)
{
    static struct scan_region regions[4096];
    struct scan_arg arg = {
        .size = sizeof arg, .flags = flags, .start = (uintptr_t)window,
        .end = (uintptr_t)window + window_pages * page_size, .vec = (uintptr_t)regions,
        .vec_len = window_pages < 4096 ? (window_pages > 0 ? window_pages : 1) : 4096,
        .category_mask = mask, .return_mask = return_mask,
    };
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) return -1;
    int n = ioctl(fd, PAGEMAP_SCAN_IOCTL, &arg);
    int e = errno;
    close(fd);
    errno = e;
    if (n < 0) return -1;
    printf("%s %d %s\n", verb, op_number, who);
    for (int i = 0; i < n; i++)
        printf("%ld %ld %llx\n", (long)((regions[i].start - (uintptr_t)window) / page_size),
               (long)((regions[i].end - (uintptr_t)window) / page_size), (unsigned long long)regions[i].categories);
    return 0;
}

/* userfaultfd async write-protect of a range: register (MODE_WP), then write-protect it. */
static int uffd_write_protect(char *addr, size_t len)
{
    if (uffd < 0) {
        /* UFFD_USER_MODE_ONLY, as the module's probe: allowed to unprivileged users even with
         * vm.unprivileged_userfaultfd=0, and enough here (only user-mode faults are tracked). */
        int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY_FLAG);
        if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK); /* before 5.11 */
        if (fd < 0) return -1;
        struct uffd_api_arg api = { .api = UFFD_API_VERSION, .features = UFFD_FEATURE_WP_ASYNC_BIT | UFFD_FEATURE_WP_UNPOPULATED_BIT };
        if (ioctl(fd, UFFDIO_API_IOCTL, &api) < 0) { int e = errno; close(fd); errno = e; return -1; }
        uffd = fd;
    }
    struct uffd_register_arg reg = { .start = (uintptr_t)addr, .len = len, .mode = UFFD_REGISTER_MODE_WP };
    if (ioctl(uffd, UFFDIO_REGISTER_IOCTL, &reg) < 0) return -1;
    struct uffd_writeprotect_arg wp = { .start = (uintptr_t)addr, .len = len, .mode = UFFD_WRITEPROTECT_MODE_WP };
    return ioctl(uffd, UFFDIO_WRITEPROTECT_IOCTL, &wp);
}

static long read_long(const char *path)
{
    char text[32] = "";
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    return n > 0 ? atol(text) : -1;
}

/* MADV_MERGEABLE, then 3 more full scans of ksmd: a page is compared at one scan and merged at the next. */
static int ksm_merge(char *addr, size_t len)
{
    long run = read_long("/sys/kernel/mm/ksm/run");
    if (run < 0) { errno = ENOENT; return -1; }
    if (madvise(addr, len, MADV_MERGEABLE) < 0) return -1;
    if (run != 1) { errno = EAGAIN; return -1; }
    long start = read_long("/sys/kernel/mm/ksm/full_scans");
    for (int waited = 0; waited < 120000; waited++) {
        if (read_long("/sys/kernel/mm/ksm/full_scans") >= start + 3) return 0;
        usleep(1000);
    }
    errno = ETIMEDOUT;
    return -1;
}

/* move_pages(2) of [addr, addr + len) to a node; the first per-page failure becomes errno. */
static int migrate_range(char *addr, long count, int node)
{
    static void *pages[4096];
    static int nodes[4096], status[4096];
    if (count > 4096) count = 4096;
    for (long i = 0; i < count; i++) { pages[i] = addr + i * page_size; nodes[i] = node; status[i] = 0; }
    if (syscall(SYS_move_pages, 0, (unsigned long)count, pages, nodes, status, 2 /* MPOL_MF_MOVE */) < 0) return -1;
    for (long i = 0; i < count; i++) {
        if (status[i] < 0) { errno = -status[i]; return -1; }
        if (status[i] != node) { errno = EIO; return -1; }   /* not moved there */
    }
    return 0;
}

/* The folio split of the THPs in a range, through debugfs (root). */
static int split_range(char *addr, size_t len)
{
    const char *path = "/sys/kernel/debug/split_huge_pages";
    if (access(path, F_OK) < 0) mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    char text[96];
    int n = snprintf(text, sizeof text, "%d,0x%lx,0x%lx", (int)getpid(), (unsigned long)(uintptr_t)addr,
                     (unsigned long)(uintptr_t)(addr + len));
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    errno = e;
    return w < 0 ? -1 : 0;
}

/* memory.reclaim of this process's cgroup v2 ("0::/PATH" of /proc/self/cgroup, under /sys/fs/cgroup). */
static int cgroup_reclaim(void)
{
    char line[256], path[512];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    path[0] = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) { line[strcspn(line, "\n")] = 0; snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.reclaim", line + 3); }
    fclose(f);
    if (!path[0]) { errno = ENOENT; return -1; }
    int fd = open(path, O_WRONLY);
    if (fd < 0) return -1;
    ssize_t w = write(fd, "1G", 2);
    int e = errno;
    close(fd);
    if (w < 0 && e == EAGAIN) return 0;
    errno = e;
    return w < 0 ? -1 : 0;
}

static int clear_refs(int type)
{
    char text[4];
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) return -1;
    snprintf(text, sizeof text, "%d", type);
    ssize_t w = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return w < 0 ? -1 : 0;
}

/* Runs one operation in this process; prints failures. Returns 1 for "fork", 2 for "end", 0 otherwise. */
static int run_op(char *line, const char *who)
{
    char op[32], a[32] = "", b[32] = "";
    long p = 0, c = 0, q = 0;
    int fields = sscanf(line, "%31s %ld %ld %31s %31s", op, &p, &c, a, b);
    op_number++;
    if (fields < 1) return 0;
    char *addr = window + p * page_size;
    size_t len = (size_t)c * page_size;
    int rc = 0;
    if (!strcmp(op, "map")) {
        int prot = parse_prot(a), flags = MAP_FIXED, fd = -1;
        off_t off = 0;
        if (!strcmp(b, "anon")) flags |= MAP_PRIVATE | MAP_ANONYMOUS;
        else if (!strcmp(b, "shared")) flags |= MAP_SHARED | MAP_ANONYMOUS;
        else if (!strcmp(b, "file")) { flags |= MAP_SHARED; fd = file_fd; off = p * page_size; }
        else if (!strcmp(b, "filepriv")) { flags |= MAP_PRIVATE; fd = file_fd; off = p * page_size; }
        else if (!strcmp(b, "huge")) flags |= MAP_PRIVATE | MAP_ANONYMOUS;
        rc = mmap(addr, len, prot, flags, fd, off) == MAP_FAILED ? -1 : 0;
        if (rc == 0 && !strcmp(b, "huge")) rc = madvise(addr, len, MADV_HUGEPAGE);
        if (rc == 0) truth_clear(p, c);
    } else if (!strcmp(op, "unmap")) {
        rc = munmap(addr, len);
        if (rc == 0) truth_clear(p, c);
    } else if (!strcmp(op, "mremap")) {
        sscanf(line, "%*s %*d %*d %ld", &q);
        unsigned char was_mapped[4096];
        for (long i = 0; i < c && i < 4096; i++) was_mapped[i] = (unsigned char)page_mapped(p + i);
        rc = mremap(addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, window + q * page_size) == MAP_FAILED ? -1 : 0;
        int e = errno;
        truth_move(p, c, q, was_mapped, rc == 0);
        errno = e;
    } else if (!strcmp(op, "mprotect")) {
        sscanf(line, "%*s %*d %*d %31s", a);
        rc = mprotect(addr, len, parse_prot(a));
    } else if (!strcmp(op, "read") || !strcmp(op, "write")) {
        int writing = op[0] == 'w';
        if (sigsetjmp(segv_jump, 1)) { printf("op %d SEGV\n", op_number); return 0; }
        for (long i = 0; i < c; i++) {
            volatile char *byte = (volatile char *)(addr + i * page_size);
            if (writing) { (*byte)++; if (p + i >= 0 && p + i < 4096) truth_written[p + i] = 1; } else (void)*byte;
        }
    } else if (!strcmp(op, "fill")) {
        int value = atoi(a);
        if (sigsetjmp(segv_jump, 1)) { printf("op %d SEGV\n", op_number); return 0; }
        for (long i = 0; i < c; i++) {
            memset(addr + i * page_size, value, page_size);
            if (p + i >= 0 && p + i < 4096) truth_written[p + i] = 1;
        }
    } else if (!strcmp(op, "ksm")) {
        rc = ksm_merge(addr, len);
    } else if (!strcmp(op, "unmerge")) {
        rc = madvise(addr, len, MADV_UNMERGEABLE);
    } else if (!strcmp(op, "migrate")) {
        rc = migrate_range(addr, c, atoi(a));
    } else if (!strcmp(op, "split")) {
        rc = split_range(addr, len);
    } else if (!strcmp(op, "neighbour")) {
        /* A page table shared with the window: map, write and unmap the last page of the window's last
         * page-table range (2 MiB of 4 KiB pages; outside the window). The table stays while a mapping is left in that range. */
        char *near = window + window_span - page_size;
        if (near < window + window_pages * page_size) { errno = EINVAL; rc = -1; }
        else if (mmap(near, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED) rc = -1;
        else { *(volatile char *)near = 1; rc = munmap(near, page_size); }
    } else if (!strcmp(op, "clear")) {
        rc = clear_refs((int)p);
        if (rc == 0 && p == 4) truth_clear(0, 4096);
    } else if (!strcmp(op, "pageout")) {
        rc = madvise(addr, len, 21 /* MADV_PAGEOUT */);
    } else if (!strcmp(op, "free")) {
        rc = madvise(addr, len, 8 /* MADV_FREE */);
    } else if (!strcmp(op, "cold")) {
        rc = madvise(addr, len, 20 /* MADV_COLD */);
    } else if (!strcmp(op, "swapoff")) {
        rc = swapoff("/dev/zram0");
    } else if (!strcmp(op, "reclaim")) {
        rc = cgroup_reclaim();
    } else if (!strcmp(op, "swapon")) {
        rc = swapon("/dev/zram0", 0);
    } else if (!strcmp(op, "dontneed")) {
        rc = madvise(addr, len, MADV_DONTNEED);
    } else if (!strcmp(op, "wipeonfork")) {
        rc = madvise(addr, len, 18 /* MADV_WIPEONFORK */);
    } else if (!strcmp(op, "keeponfork")) {
        rc = madvise(addr, len, 19 /* MADV_KEEPONFORK */);
    } else if (!strcmp(op, "dontfork")) {
        rc = madvise(addr, len, MADV_DONTFORK);
    } else if (!strcmp(op, "dofork")) {
        rc = madvise(addr, len, MADV_DOFORK);
    } else if (!strcmp(op, "seal")) {
        rc = (int)syscall(462 /* mseal, the same number on every architecture */, addr, len, 0UL);
    } else if (!strcmp(op, "truncate")) {
        rc = ftruncate(file_fd, (off_t)p * page_size);
    } else if (!strcmp(op, "check")) {
        check(who);
    } else if (!strcmp(op, "scan")) {
        rc = scan("scan", who, 0, 0, PAGE_CATEGORIES);
    } else if (!strcmp(op, "written")) {
        rc = scan("written", who, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN, PAGE_IS_WRITTEN);
    } else if (!strcmp(op, "uffdwp")) {
        rc = uffd_write_protect(addr, len);
    } else if (!strcmp(op, "fork")) {
        return 1;
    } else if (!strcmp(op, "end")) {
        return 2;
    } else if (!strcmp(op, "truth")) {
        print_truth(who);
    } else {
        printf("op %d unknown %s\n", op_number, op);
    }
    if (rc < 0) printf("op %d %s\n", op_number, errno_name(errno));
    fflush(stdout);
    return 0;
}

/* A forked child runs the ops its parent forwards over a socket, answering one byte each. */
static void child_loop(int sock)
{
    char line[MAX_LINE];
    for (;;) {
        ssize_t n = read(sock, line, sizeof line - 1);
        if (n <= 0) _exit(0);
        line[n] = 0;
        /* "<op number> <op>": numbers stay those of the whole scenario. */
        char *op = strchr(line, ' ');
        if (!op) _exit(1);
        op_number = atoi(line) - 1;
        int r = run_op(op + 1, "child");
        if (r == 2) _exit(0);
        if (r == 1) printf("op %d NESTEDFORK\n", op_number);
        fflush(stdout);
        if (write(sock, "k", 1) != 1) _exit(1);
    }
}

#define MAX_OPS 4096
static char ops[MAX_OPS][MAX_LINE];
static int op_count;

static void run_scenario(const char *name)
{
    char *line;
    int child_sock = -1, current_is_child = 0;
    pid_t child = -1;
    printf("scenario %s\n", name);
    op_number = 0;
    for (int k = 0; k < op_count; k++) {
        line = ops[k];
        if (!strncmp(line, "reserve", 7)) {
            window_pages = atol(line + 8);
            /* The window starts aligned to a page table's span (2 MiB of 4 KiB pages, as the emulator's does; 32 MiB
             * of 16 KiB pages, where a 2 MiB alignment put a THP range astride two page tables): what a fault maps around the
             * faulting page (fault-around, 64 KiB aligned) then depends on the scenario alone, not on ASLR.
             * It has its page-table ranges to itself: the reservation covers them all, so no other
             * mapping of this program (libc's TLS, say) shares a page table with the window. Whether a page
             * table exists changes what PAGEMAP_SCAN reports for never-touched pages; the "neighbour" op
             * makes one on purpose. */
            size_t want = window_pages * page_size, align = table_span();
            size_t span = (want + align - 1) & ~(align - 1);
            char *raw = mmap(NULL, span + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            window = MAP_FAILED;
            if (raw != MAP_FAILED) {
                char *aligned = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
                if (aligned > raw) munmap(raw, aligned - raw);
                if (raw + span + align > aligned + want) munmap(aligned + want, raw + span + align - (aligned + want));
                window = aligned;
                window_span = span;
            }
            /* The backing file lives in $TMPDIR (else /tmp), where the test kit probes its file system: on tmpfs a
             * fault maps around only cached pages, on a disk file system readahead caches the window first. */
            const char *tmp = getenv("TMPDIR");
            char path[4096];
            snprintf(path, sizeof path, "%s/sdscenario-XXXXXX", tmp && *tmp ? tmp : "/tmp");
            file_fd = mkstemp(path);
            if (file_fd >= 0) unlink(path);
            if (window == MAP_FAILED || file_fd < 0 || ftruncate(file_fd, window_pages * page_size) < 0) {
                printf("error setup %s\n", strerror(errno));
                return;
            }
            op_number++;
            continue;
        }
        if (current_is_child && strncmp(line, "switch", 6) && strncmp(line, "end", 3)) {
            char ack, numbered[MAX_LINE + 16];
            op_number++;
            int len = snprintf(numbered, sizeof numbered, "%d %s", op_number, line);
            fflush(stdout);
            if (write(child_sock, numbered, len) < 0 || read(child_sock, &ack, 1) != 1) printf("error child gone\n");
            continue;
        }
        if (!strncmp(line, "switch", 6)) {
            op_number++;
            if (child > 0) current_is_child = !current_is_child;
            continue;
        }
        int r = run_op(line, child > 0 ? "parent" : "self");
        if (r == 2) break;
        if (r == 1) {
            int sv[2];
            if (child > 0 || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) { printf("op %d NESTEDFORK\n", op_number); continue; }
            fflush(stdout);
            child = fork();
            if (child == 0) {
                close(sv[0]);
                if (uffd >= 0) { close(uffd); uffd = -1; }   /* the parent's context: not this process's */
                child_loop(sv[1]);
            }
            close(sv[1]);
            child_sock = sv[0];
            current_is_child = 1;
        }
    }
    if (child > 0) { close(child_sock); waitpid(child, NULL, 0); }
    printf("end\n");
    fflush(stdout);
}

int main(void)
{
    char line[MAX_LINE];
    page_size = sysconf(_SC_PAGESIZE);
    /* SDSCENARIO_UID: drop root first (the kernel matrix runs a guest as an unprivileged user this way). */
    const char *uid = getenv("SDSCENARIO_UID");
    if (uid && *uid && (setgroups(0, NULL) < 0 || setgid((gid_t)atoi(uid)) < 0 || setuid((uid_t)atoi(uid)) < 0
                        || prctl(PR_SET_DUMPABLE, 1) < 0)) {
        /* A change of credentials without exec leaves the process non-dumpable: its /proc/self/pagemap would be
         * root's, EACCES to itself. Dumpable again, as after an exec. */
        perror("sdscenario: SDSCENARIO_UID");
        return 1;
    }
    struct sigaction sa = { .sa_handler = on_segv };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "scenario ", 9)) continue;
        line[strcspn(line, "\n")] = 0;
        /* Read the whole scenario first: the process that runs it must not share stdin's buffer. */
        op_count = 0;
        while (op_count < MAX_OPS && fgets(ops[op_count], MAX_LINE, stdin)) {
            if (!strncmp(ops[op_count], "end", 3)) { op_count++; break; }
            op_count++;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) { run_scenario(line + 9); fflush(stdout); _exit(0); }
        int status;
        waitpid(pid, &status, 0);
    }
    return 0;
}
