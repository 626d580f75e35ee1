/*
 * regionset: a process with many large private anonymous mappings (MAP_NORESERVE), each its own VMA.
 *
 *   regionset <count> <bytes>
 *
 * Reserves count * (bytes + one page) with PROT_NONE and makes each piece of <bytes> readable and writable, the page
 * after it staying PROT_NONE (so that the pieces never merge into one VMA). The first page of each piece is written
 * (value 1). Prints "READY <first> <stride>" (hex start of piece 0, bytes from one piece to the next), then serves
 * lines from stdin:
 *   write <piece> <page> <value>   writes <value> into the first byte of that page; answers OK
 *   quit                           exits
 * Failures print "FAIL <what> <errno>" and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: regionset <count> <bytes>\n");
        return 2;
    }
    unsigned long count = strtoul(argv[1], NULL, 0), bytes = strtoul(argv[2], NULL, 0);
    unsigned long page = (unsigned long)sysconf(_SC_PAGESIZE), stride = bytes + page;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *base = mmap(NULL, count * stride, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        printf("FAIL mmap %d\n", errno);
        return 1;
    }
    for (unsigned long i = 0; i < count; i++) {
        char *piece = base + i * stride;
        if (mprotect(piece, bytes, PROT_READ | PROT_WRITE) != 0) {
            printf("FAIL mprotect %d\n", errno);
            return 1;
        }
        piece[0] = 1;
    }
    printf("READY %lx %lx\n", (unsigned long)base, stride);
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long piece, at, value;
        if (sscanf(line, "write %lu %lu %lu", &piece, &at, &value) == 3 && piece < count && at * page < bytes) {
            base[piece * stride + at * page] = (char)value;
            printf("OK\n");
        } else if (!strncmp(line, "quit", 4)) {
            return 0;
        } else {
            printf("FAIL command %d\n", EINVAL);
        }
    }
    return 0;
}
