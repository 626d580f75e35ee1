/*
 * exectarget: a process that runs another program under the same pid again and again, each time from a thread
 * that is not the thread group leader (round 16: a target whose memory and threads change under the module).
 *
 *   exectarget <generation> <last> <threads> <usec>
 *
 * Each generation maps 64 private anonymous pages, writes a byte of its generation into each, and starts <threads>
 * threads (at least 1) that write those pages over and over. It prints "GEN <generation> <pid>" (flushed; the pipe
 * is inherited across exec). Until <generation> is <last>, after <usec> microseconds the last thread started calls
 * execv of this program with the next generation: the kernel kills the other threads and the caller takes over the
 * pid (its thread id becomes the pid). Generation <last> runs its threads until stdin ends, then exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { Pages = 64, MaxThreads = 64 };

static volatile unsigned char *region;
static long page_size;
static long generation, last, usec;
static char *self;

static void *writer(void *arg)
{
    uintptr_t index = (uintptr_t)arg;
    for (unsigned long n = index;; n++)
        region[(n % Pages) * page_size] = (unsigned char)generation;
    return NULL;
}

static void *execer(void *arg)
{
    (void)arg;
    usleep((useconds_t)usec);
    char gen[32], lastArg[32], threads[32], delay[32];
    snprintf(gen, sizeof gen, "%ld", generation + 1);
    snprintf(lastArg, sizeof lastArg, "%ld", last);
    snprintf(threads, sizeof threads, "%ld", (long)(uintptr_t)arg);
    snprintf(delay, sizeof delay, "%ld", usec);
    char *argv[] = { self, gen, lastArg, threads, delay, NULL };
    execv(self, argv);
    _exit(127);
}

int main(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: exectarget <generation> <last> <threads> <usec>\n"); return 2; }
    self = argv[0];
    generation = atol(argv[1]);
    last = atol(argv[2]);
    long threads = atol(argv[3]);
    usec = atol(argv[4]);
    if (threads < 1) threads = 1;
    if (threads > MaxThreads) threads = MaxThreads;
    page_size = sysconf(_SC_PAGESIZE);
    region = mmap(NULL, Pages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) { perror("mmap"); return 1; }
    madvise((void *)region, Pages * page_size, MADV_NOHUGEPAGE);
    for (long i = 0; i < Pages; i++) region[i * page_size] = (unsigned char)generation;
    pthread_t t;
    for (long i = 0; i + 1 < threads; i++) pthread_create(&t, NULL, writer, (void *)(uintptr_t)i);
    printf("GEN %ld %d\n", generation, (int)getpid());
    fflush(stdout);
    if (generation < last)
    {
        pthread_create(&t, NULL, execer, (void *)(uintptr_t)threads);
        for (;;) pause();
    }
    pthread_create(&t, NULL, writer, (void *)(uintptr_t)threads);
    char buf[256];
    while (fgets(buf, sizeof buf, stdin)) { }
    return 0;
}
