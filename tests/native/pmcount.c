/*
 * pmcount: the C baseline of the page-map bench (tests/Bench.ps1), doing what the kernel's page-types
 * tool does for an address range of one process, and a sparse or dense target to read.
 *
 *   pmcount count <pid> <hexstart> <bytes> [filter] [ranges] [chunk=<bytes>]
 *       preads /proc/PID/pagemap over the range in chunks (default 64 KiB, as page-types) into one
 *       buffer and counts the entries that pass the filter:
 *         all        every entry
 *         present    bit 63
 *         softdirty  bit 55
 *         swapped    bit 62
 *         exclusive  bit 56
 *         written    present and not userfaultfd write-protected (bit 57 clear): what pread can say of
 *                    "written" in a region registered for uffd-wp
 *       With "ranges" it also counts runs of contiguous passing pages whose flag bits (55-63) are equal.
 *       Prints "<pages scanned> <pages passing> <ranges>" and exits 0.
 *   pmcount hold <bytes> <stride> [dense]
 *       maps <bytes> of private anonymous memory (MAP_NORESERVE, so sizes past RAM map; MADV_NOHUGEPAGE,
 *       so a write faults in one 4 KiB page), writes one byte into every <stride>-th page (dense: every
 *       page), prints "READY <pid> <hexaddr>" and waits until its standard input closes; a line "write <page>"
 *       adds one to the first byte of that page of the region and answers "OK".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PM_ENTRY_BYTES 8
#define PM_SOFT_DIRTY (1ULL << 55)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_UFFD_WP (1ULL << 57)
#define PM_SWAPPED (1ULL << 62)
#define PM_PRESENT (1ULL << 63)
#define PM_FLAG_SHIFT 55
#define DEFAULT_CHUNK_BYTES (64 * 1024)

enum filter { F_ALL, F_PRESENT, F_SOFTDIRTY, F_SWAPPED, F_EXCLUSIVE, F_WRITTEN };

static int usage(void)
{
    fprintf(stderr, "usage: pmcount count <pid> <hexstart> <bytes> [all|present|softdirty|swapped|exclusive|written] [ranges] [chunk=<bytes>]\n"
                    "       pmcount hold <bytes> <stride> [dense]\n");
    return 2;
}

static int passes(uint64_t e, enum filter f)
{
    switch (f) {
    case F_PRESENT: return (e & PM_PRESENT) != 0;
    case F_SOFTDIRTY: return (e & PM_SOFT_DIRTY) != 0;
    case F_SWAPPED: return (e & PM_SWAPPED) != 0;
    case F_EXCLUSIVE: return (e & PM_EXCLUSIVE) != 0;
    case F_WRITTEN: return (e & PM_PRESENT) && !(e & PM_UFFD_WP);
    default: return 1;
    }
}

static int count(int argc, char **argv)
{
    if (argc < 5) return usage();
    int pid = atoi(argv[2]);
    uint64_t start = strtoull(argv[3], NULL, 16), bytes = strtoull(argv[4], NULL, 10);
    enum filter f = F_ALL;
    int ranges = 0;
    size_t chunk = DEFAULT_CHUNK_BYTES;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "all")) f = F_ALL;
        else if (!strcmp(argv[i], "present")) f = F_PRESENT;
        else if (!strcmp(argv[i], "softdirty")) f = F_SOFTDIRTY;
        else if (!strcmp(argv[i], "swapped")) f = F_SWAPPED;
        else if (!strcmp(argv[i], "exclusive")) f = F_EXCLUSIVE;
        else if (!strcmp(argv[i], "written")) f = F_WRITTEN;
        else if (!strcmp(argv[i], "ranges")) ranges = 1;
        else if (!strncmp(argv[i], "chunk=", 6)) chunk = strtoull(argv[i] + 6, NULL, 10) / PM_ENTRY_BYTES * PM_ENTRY_BYTES;
        else return usage();
    }
    long page_size = sysconf(_SC_PAGESIZE);
    if (chunk == 0 || start % page_size || bytes % page_size) return usage();
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { fprintf(stderr, "open %s: %s\n", path, strerror(errno)); return 1; }
    uint64_t *buf = malloc(chunk);
    if (!buf) { fprintf(stderr, "out of memory\n"); return 1; }
    uint64_t page = start / page_size, end = page + bytes / page_size;
    uint64_t scanned = 0, passing = 0, runs = 0;
    uint64_t run_next = UINT64_MAX, run_flags = 0; /* the page that would extend the open run, and its flags */
    while (page < end) {
        uint64_t want = end - page;
        if (want > chunk / PM_ENTRY_BYTES) want = chunk / PM_ENTRY_BYTES;
        ssize_t got = pread(fd, buf, want * PM_ENTRY_BYTES, (off_t)(page * PM_ENTRY_BYTES));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { fprintf(stderr, "pread %s: %s\n", path, strerror(errno)); return 1; }
        if (got == 0) break;
        uint64_t n = (uint64_t)got / PM_ENTRY_BYTES;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t e = buf[i];
            if (!passes(e, f)) continue;
            passing++;
            if (ranges) {
                uint64_t flags = e >> PM_FLAG_SHIFT;
                if (page + i != run_next || flags != run_flags) { runs++; run_flags = flags; }
                run_next = page + i + 1;
            }
        }
        scanned += n;
        page += n;
    }
    printf("%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", scanned, passing, runs);
    free(buf);
    close(fd);
    return 0;
}

static int hold(int argc, char **argv)
{
    if (argc < 4) return usage();
    uint64_t bytes = strtoull(argv[2], NULL, 10), stride = strtoull(argv[3], NULL, 10);
    int dense = argc > 4 && !strcmp(argv[4], "dense");
    long page_size = sysconf(_SC_PAGESIZE);
    if (bytes == 0 || bytes % page_size || stride == 0) return usage();
    unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { fprintf(stderr, "mmap: %s\n", strerror(errno)); return 1; }
    if (madvise(p, bytes, MADV_NOHUGEPAGE) < 0 && errno != EINVAL) { fprintf(stderr, "madvise: %s\n", strerror(errno)); return 1; }
    uint64_t pages = bytes / page_size, step = dense ? 1 : stride;
    for (uint64_t i = 0; i < pages; i += step) p[i * page_size] = 1;
    printf("READY %d %lx\n", (int)getpid(), (unsigned long)(uintptr_t)p);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        uint64_t at;
        if (sscanf(line, "write %" SCNu64, &at) == 1 && at < pages) { p[at * page_size]++; printf("OK\n"); fflush(stdout); }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    if (!strcmp(argv[1], "count")) return count(argc, argv);
    if (!strcmp(argv[1], "hold")) return hold(argc, argv);
    return usage();
}
