/* wftarget: a small process for the workflow tests (Watch-DirtyPage, memory images, pre-copy).
   stdin commands, one per line; each answers one line:
     map <pages>                      anonymous rw mapping (4 KiB pages, no THP) -> OK <hexaddr>
     fill <hexaddr> <pages> <seed>    every byte of the pages from a PRNG (never an all-zero page) -> OK
     write <hexaddr> <index> [count]  8 new bytes at the start of each page -> OK
     same <hexaddr> <index> [count]   rewrite the first byte of each page with its own value -> OK
     zero <hexaddr> <index> [count]   MADV_DONTNEED (the pages read as zeros again) -> OK
     hot <hexaddr> <index> <count> <usec>  a thread writes the pages in a loop, usec between sweeps -> OK
     cold                             stop that thread -> OK
     after <hexaddr> <index> <ms>     a thread writes the page once, ms from now -> OK
     churn <n>                        n threads start short-lived threads back to back (each exits at once); 0 stops them -> OK
     spawn <n>                        n threads run /bin/true with posix_spawn back to back (clone CLONE_VM|CLONE_VFORK: a
                                      process sharing this one's memory until it execs, its spawner waiting in vfork
                                      meanwhile), each waited for; 0 stops them -> OK
     exit
   Starts with "READY <pid> <pagesize>". Run as "wftarget spawn" it reads no commands: its only thread runs /bin/true with
   posix_spawn back to back, each waited for, until killed (a single-threaded program whose one thread is in vfork often). */
#define _GNU_SOURCE
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static long ps;
static volatile int hot_run;
static pthread_t hot_thread;
static unsigned char *hot_base;
static long hot_first, hot_count, hot_usec;
static uint64_t counter = 1;
#define MAX_CHURN 16
static volatile int churn_run;
static long churn_count;
static pthread_t churn_threads[MAX_CHURN];

static void *short_lived(void *arg) { return arg; }
/* Created detached: pthread_detach after pthread_create reads the thread's descriptor after marking it detached, and a
   freeze that stops this thread between the two lets the short-lived thread free it and another thread's exit unmap it
   (glibc's stack cache): a SIGSEGV in pthread_detach, seen here. */
static void *churn_loop(void *arg) {
    (void)arg;
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    while (churn_run) {
        pthread_t t;
        pthread_create(&t, &detached, short_lived, NULL);
    }
    pthread_attr_destroy(&detached);
    return NULL;
}

static volatile int spawn_run;
static long spawn_count;
static pthread_t spawn_threads[MAX_CHURN];
extern char **environ;

static void *spawn_loop(void *arg) {
    (void)arg;
    char *argv[] = { "true", NULL };
    while (spawn_run) {
        pid_t child;
        if (posix_spawn(&child, "/bin/true", NULL, NULL, argv, environ) == 0) waitpid(child, NULL, 0);
    }
    return NULL;
}

/* Stops the threads running fn (joined), then starts n (at most MAX_CHURN) anew. */
static void loops(volatile int *run, long *count, pthread_t *threads, void *(*fn)(void *), long n) {
    if (*run) { *run = 0; for (long i = 0; i < *count; i++) pthread_join(threads[i], NULL); }
    *count = 0;
    if (n > MAX_CHURN) n = MAX_CHURN;
    if (n > 0) *run = 1;
    for (; *count < n; (*count)++) pthread_create(&threads[*count], NULL, fn, NULL);
}

static void *hot_loop(void *arg) {
    (void)arg;
    uint64_t v = 1u << 20;
    while (hot_run) {
        for (long i = 0; i < hot_count; i++) *(volatile uint64_t *)(hot_base + (hot_first + i) * ps) = ++v;
        if (hot_usec) usleep(hot_usec);
    }
    return NULL;
}

struct later { unsigned char *page; long ms; };
static void *after_thread(void *arg) {
    struct later *l = arg;
    usleep(l->ms * 1000);
    *(volatile uint64_t *)l->page = 0xA5A5A5A5A5A5A5A5ull ^ (uint64_t)l->ms;
    free(l);
    return NULL;
}

int main(int argc, char **argv) {
    char line[256];
    ps = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY %d %ld\n", getpid(), ps);
    if (argc > 1 && !strcmp(argv[1], "spawn")) { spawn_run = 1; spawn_loop(NULL); return 0; }
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16];
        unsigned long long a = 0;
        long x = 0, y = 1, z = 0;
        int n = sscanf(line, "%15s %llx %ld %ld %ld", cmd, &a, &x, &y, &z);
        if (n < 1) continue;
        unsigned char *p = (unsigned char *)(uintptr_t)a;
        if (!strcmp(cmd, "map")) {
            long pages = (long)a; /* parsed as hex by the format above: reparse as decimal */
            sscanf(line, "%*s %ld", &pages);
            void *m = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) { printf("ERR mmap\n"); continue; }
            madvise(m, pages * ps, MADV_NOHUGEPAGE);
            printf("OK %llx\n", (unsigned long long)(uintptr_t)m);
        } else if (!strcmp(cmd, "fill")) {
            uint64_t s = (uint64_t)y * 0x9E3779B97F4A7C15ull + 1;
            for (long i = 0; i < x; i++) {
                uint64_t *q = (uint64_t *)(p + i * ps);
                for (long k = 0; k < ps / 8; k++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; q[k] = s; }
                q[0] |= 1;
            }
            printf("OK\n");
        } else if (!strcmp(cmd, "write")) {
            if (n < 4) y = 1;
            for (long i = 0; i < y; i++) *(uint64_t *)(p + (x + i) * ps) = (++counter) * 0x100000001b3ull;
            printf("OK\n");
        } else if (!strcmp(cmd, "same")) {
            if (n < 4) y = 1;
            for (long i = 0; i < y; i++) { volatile unsigned char *b = p + (x + i) * ps; *b = *b; }
            printf("OK\n");
        } else if (!strcmp(cmd, "zero")) {
            if (n < 4) y = 1;
            madvise(p + x * ps, y * ps, MADV_DONTNEED);
            printf("OK\n");
        } else if (!strcmp(cmd, "hot")) {
            if (hot_run) { hot_run = 0; pthread_join(hot_thread, NULL); }
            hot_base = p; hot_first = x; hot_count = y; hot_usec = z; hot_run = 1;
            pthread_create(&hot_thread, NULL, hot_loop, NULL);
            printf("OK\n");
        } else if (!strcmp(cmd, "cold")) {
            if (hot_run) { hot_run = 0; pthread_join(hot_thread, NULL); }
            printf("OK\n");
        } else if (!strcmp(cmd, "after")) {
            struct later *l = malloc(sizeof *l);
            pthread_t t;
            l->page = p + x * ps; l->ms = y;
            pthread_create(&t, NULL, after_thread, l);
            pthread_detach(t);
            printf("OK\n");
        } else if (!strcmp(cmd, "churn") || !strcmp(cmd, "spawn")) {
            long n = (long)a; /* parsed as hex by the format above: reparse as decimal */
            sscanf(line, "%*s %ld", &n);
            if (!strcmp(cmd, "churn")) loops(&churn_run, &churn_count, churn_threads, churn_loop, n);
            else loops(&spawn_run, &spawn_count, spawn_threads, spawn_loop, n);
            printf("OK\n");
        } else if (!strcmp(cmd, "exit")) {
            break;
        } else printf("ERR %s\n", cmd);
    }
    if (hot_run) { hot_run = 0; pthread_join(hot_thread, NULL); }
    loops(&churn_run, &churn_count, churn_threads, churn_loop, 0);
    loops(&spawn_run, &spawn_count, spawn_threads, spawn_loop, 0);
    return 0;
}
