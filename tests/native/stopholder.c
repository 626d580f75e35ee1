/* Round 35 (Stops): a debugger-like holder for tests. Usage: stopholder PID seize|attach
 * seize: PTRACE_SEIZE, then PTRACE_INTERRUPT (the stop a debugger's "interrupt" makes); attach: PTRACE_ATTACH (a SIGSTOP stop).
 * later: attaches only when told, with a line "seize" or "attach" on stdin ("HELD ..." or "ERR <errno>").
 * Waits for the stop, prints "HELD <tracer pid>", then answers lines on stdin:
 *   state  -> "STATE <letter> <waitpid status, or - where none came since the last look>"  (the tracee's /proc state letter)
 *   detach -> PTRACE_DETACH with no signal, "DETACHED <0 or errno>"
 * and detaches at end of input. Nothing else: it never resumes the tracee before "detach". */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* Attaches (seize or attach) and waits for the stop: 0, or the errno (printed as "ERR"). */
static int hold(pid_t pid, int seize)
{
    if (seize ? ptrace(PTRACE_SEIZE, pid, 0, 0) != 0 || ptrace(PTRACE_INTERRUPT, pid, 0, 0) != 0
              : ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) {
        int e = errno;
        printf("ERR %d\n", e);
        return e;
    }
    int status = 0;
    if (waitpid(pid, &status, __WALL) != pid) { int e = errno; printf("ERR wait %d\n", e); return e; }
    printf("HELD %d\n", (int)getpid());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: stopholder PID seize|attach|later\n"); return 2; }
    pid_t pid = (pid_t)atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int held = 0;
    if (strcmp(argv[2], "later") != 0) {
        if (hold(pid, strcmp(argv[2], "seize") == 0) != 0) return 1;
        held = 1;
    }
    char line[64];
    int detached = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (!held && (strncmp(line, "seize", 5) == 0 || strncmp(line, "attach", 6) == 0)) {
            held = hold(pid, line[0] == 's') == 0;
            continue;
        }
        if (strncmp(line, "state", 5) == 0) {
            int st = 0;
            pid_t got = waitpid(pid, &st, __WALL | WNOHANG);
            if (got == pid) printf("STATE %c 0x%x\n", state_of(pid), st);
            else printf("STATE %c -\n", state_of(pid));
        } else if (strncmp(line, "detach", 6) == 0) {
            int rc = ptrace(PTRACE_DETACH, pid, 0, 0) == 0 ? 0 : errno;
            detached = 1;
            printf("DETACHED %d\n", rc);
        }
    }
    if (held && !detached) ptrace(PTRACE_DETACH, pid, 0, 0);
    return 0;
}
