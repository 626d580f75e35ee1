/*
 * sdvmchild: the smallest child process for the Kernel-tagged Pester tests (tests/Pester/KernelVm.Tests.ps1)
 * when the full test target (sdtarget) is not built. It speaks the subset of sdtarget's line protocol
 * those tests use, so either program can serve them:
 *   start                          prints "READY <pid> <pagesize>"
 *   map <pages> anon rw            mmap private anonymous read-write pages (no transparent huge pages,
 *                                  so a write dirties one page, not 512); prints "OK <hexaddr>"
 *   write <hexaddr> <page> [count] increments one byte of each page; prints "OK"
 *   read <hexaddr> <page> [count]  reads one byte of each page; prints "OK"
 *   quit, or end of input          exits 0
 * Any other line prints "ERR <what>".
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char line[256], what[16], kind[16], prot[16];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY %d %ld\n", (int)getpid(), page);
    while (fgets(line, sizeof line, stdin)) {
        unsigned long addr, first, count = 1, pages;
        if (sscanf(line, "map %lu %15s %15s", &pages, kind, prot) == 3) {
            if (strcmp(kind, "anon") != 0 || strcmp(prot, "rw") != 0) { printf("ERR only anon rw\n"); continue; }
            void *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            madvise(p, pages * page, MADV_NOHUGEPAGE);
            printf("OK %lx\n", (unsigned long)p);
        } else if (sscanf(line, "%15s %lx %lu %lu", what, &addr, &first, &count) >= 3
                   && (strcmp(what, "write") == 0 || strcmp(what, "read") == 0)) {
            volatile char *p = (volatile char *)addr + first * page;
            for (unsigned long i = 0; i < count; i++, p += page) {
                if (what[0] == 'w') *p = (char)(*p + 1);
                else (void)*p;
            }
            printf("OK\n");
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        } else {
            printf("ERR unknown command\n");
        }
    }
    return 0;
}
