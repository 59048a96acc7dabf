/* crabpot-ptrace-attach PID: PTRACE_ATTACH to PID, then detach. Exit 0 when the attach
 * worked, 1 with the error otherwise. Shipped (static) in the test image, since busybox
 * has no strace. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PID\n", argv[0]);
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) != 0) {
        fprintf(stderr, "ptrace attach %d: %s\n", pid, strerror(errno));
        return 1;
    }
    waitpid(pid, NULL, 0);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    printf("attached to %d\n", pid);
    return 0;
}
