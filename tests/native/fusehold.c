/*
 * fusehold: a FUSE file system of one read-only file, "f" (1 MiB), opened for direct I/O (FOPEN_DIRECT_IO), whose reads it
 * can hold: the kernel has pinned the reader's pages by then and copies the reply into them through its own mapping, so a
 * test can make such a write come whenever it likes (round 19: legacy AIO in flight across a tracker's reset). It speaks
 * the FUSE protocol on /dev/fuse itself (no libfuse); mounting needs CAP_SYS_ADMIN (root), or fusermount where installed.
 *
 *   fusehold <mountpoint>   mounts, prints "READY", then serves; commands on stdin, one a line:
 *     hold                  reads that arrive from now on wait (each printed as "READ <offset> <size>")
 *     go                    answers the reads waiting (then answers at once, until the next hold) -> "GO <answered>"
 *   EOF on stdin unmounts (lazily) and exits. Byte i of the file is ((i >> 12) * 29 + (i & 0xff) + 1) & 0xff.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_SIZE (1UL << 20)
#define ROOT_NODE 1
#define FILE_NODE 2
#define MAX_HELD 64
#define BUFFER_BYTES (FUSE_MIN_READ_BUFFER + (1 << 20))

static int fuse_fd;
static unsigned char buffer[BUFFER_BYTES], reply_data[sizeof(struct fuse_out_header) + (1 << 20)];
static struct { uint64_t unique, offset; uint32_t size; } held[MAX_HELD];
static int held_count, holding;

static void answer(uint64_t unique, int error, const void *body, size_t size)
{
    struct fuse_out_header *h = (struct fuse_out_header *)reply_data;
    h->len = sizeof *h + (error ? 0 : size);
    h->error = error;
    h->unique = unique;
    if (!error && size) memmove(reply_data + sizeof *h, body, size);
    if (write(fuse_fd, reply_data, h->len) < 0 && errno != ENOENT) perror("fusehold: write");
}

static void attributes(uint64_t node, struct fuse_attr *a)
{
    memset(a, 0, sizeof *a);
    a->ino = node;
    a->nlink = node == ROOT_NODE ? 2 : 1;
    a->mode = node == ROOT_NODE ? (S_IFDIR | 0755) : (S_IFREG | 0444);
    a->size = node == ROOT_NODE ? 0 : FILE_SIZE;
    a->blocks = a->size / 512;
    a->blksize = 4096;
}

static void answer_read(uint64_t unique, uint64_t offset, uint32_t size)
{
    if (offset >= FILE_SIZE) size = 0;
    else if (offset + size > FILE_SIZE) size = (uint32_t)(FILE_SIZE - offset);
    if (size > (1 << 20)) size = 1 << 20;
    unsigned char *data = reply_data + sizeof(struct fuse_out_header);
    for (uint32_t i = 0; i < size; i++) { uint64_t at = offset + i; data[i] = (unsigned char)(((at >> 12) * 29 + (at & 0xff) + 1) & 0xff); }
    answer(unique, 0, data, size);
}

static void serve_one(void)
{
    ssize_t n = read(fuse_fd, buffer, sizeof buffer);
    if (n < 0) { if (errno == EINTR || errno == EAGAIN || errno == ENOENT) return; perror("fusehold: read"); exit(1); }
    if ((size_t)n < sizeof(struct fuse_in_header)) return;
    struct fuse_in_header *in = (struct fuse_in_header *)buffer;
    void *arg = buffer + sizeof *in;
    switch (in->opcode) {
    case FUSE_INIT: {
        struct fuse_init_in *i = arg;
        struct fuse_init_out o;
        memset(&o, 0, sizeof o);
        o.major = FUSE_KERNEL_VERSION;
        o.minor = i->minor < FUSE_KERNEL_MINOR_VERSION ? i->minor : FUSE_KERNEL_MINOR_VERSION;
        o.max_readahead = i->max_readahead;
        o.flags = FUSE_ASYNC_DIO & i->flags;
        o.max_write = 1 << 17;
        o.max_background = 16;
        answer(in->unique, 0, &o, sizeof o);
        break;
    }
    case FUSE_LOOKUP: {
        if (in->nodeid != ROOT_NODE || strcmp((char *)arg, "f")) { answer(in->unique, -ENOENT, NULL, 0); break; }
        struct fuse_entry_out e;
        memset(&e, 0, sizeof e);
        e.nodeid = FILE_NODE;
        e.generation = 1;
        attributes(FILE_NODE, &e.attr);
        answer(in->unique, 0, &e, sizeof e);
        break;
    }
    case FUSE_GETATTR: {
        struct fuse_attr_out a;
        memset(&a, 0, sizeof a);
        attributes(in->nodeid, &a.attr);
        answer(in->unique, 0, &a, sizeof a);
        break;
    }
    case FUSE_OPEN: {
        struct fuse_open_out o;
        memset(&o, 0, sizeof o);
        o.fh = 1;
        o.open_flags = FOPEN_DIRECT_IO;
        answer(in->unique, in->nodeid == FILE_NODE ? 0 : -EISDIR, &o, sizeof o);
        break;
    }
    case FUSE_READ: {
        struct fuse_read_in *r = arg;
        if (holding && held_count < MAX_HELD) {
            held[held_count].unique = in->unique; held[held_count].offset = r->offset; held[held_count].size = r->size;
            held_count++;
            printf("READ %llu %u\n", (unsigned long long)r->offset, r->size);
        } else answer_read(in->unique, r->offset, r->size);
        break;
    }
    case FUSE_FLUSH: case FUSE_RELEASE: case FUSE_RELEASEDIR:
        answer(in->unique, 0, NULL, 0);
        break;
    case FUSE_FORGET: case FUSE_BATCH_FORGET: case FUSE_INTERRUPT:
        break; /* no answer */
    case FUSE_DESTROY:
        answer(in->unique, 0, NULL, 0);
        exit(0);
    default:
        answer(in->unique, -ENOSYS, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: fusehold <mountpoint>\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fuse_fd < 0) { printf("ERR open /dev/fuse %d\n", errno); return 1; }
    char options[128];
    snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other", fuse_fd, getuid(), getgid());
    if (mount("fusehold", argv[1], "fuse.fusehold", MS_NOSUID | MS_NODEV, options) < 0) { printf("ERR mount %d\n", errno); return 1; }
    printf("READY\n");
    char line[64];
    for (;;) {
        struct pollfd p[2] = { { fuse_fd, POLLIN, 0 }, { 0, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; break; }
        if (p[0].revents & (POLLERR | POLLHUP)) break;
        if (p[0].revents & POLLIN) serve_one();
        if (p[1].revents & (POLLIN | POLLHUP)) {
            if (!fgets(line, sizeof line, stdin)) break;
            if (!strncmp(line, "hold", 4)) { holding = 1; printf("OK\n"); }
            else if (!strncmp(line, "go", 2)) {
                int answered = held_count;
                for (int i = 0; i < held_count; i++) answer_read(held[i].unique, held[i].offset, held[i].size);
                held_count = 0; holding = 0;
                printf("GO %d\n", answered);
            } else printf("ERR unknown command\n");
        }
    }
    umount2(argv[1], MNT_DETACH);
    return 0;
}
