/* CrabPot benchmark load: tight syscall loops and a paced openat flood.
 *
 *   crabpot-bench-syscalls open    N               openat+close of a file, N times
 *   crabpot-bench-syscalls exec    N TRUE_PATH     fork+execve(TRUE_PATH)+wait, N times
 *   crabpot-bench-syscalls connect N PORT          socket+connect(127.0.0.1:PORT)+close, N times
 *   crabpot-bench-syscalls udp     N PORT          sendto(127.0.0.1:PORT) of 64 bytes from one
 *                                                  UDP socket, N times (one packet each: the
 *                                                  per-packet egress hook's cost)
 *   crabpot-bench-syscalls flood   SECONDS RATE    openat of a missing file paced at RATE/s (0: flat out)
 *
 * Loops print "ns_per_call <float>"; flood prints "calls <n> seconds <float>".
 * Built static so the same binary runs on the host and in the FROM-scratch test image. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_close(void) {
    int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* One openat per event and nothing else: the cheapest way to fill the ring buffer. Under
 * /proc, so that the kernel's open filter (which keeps ordinary opens out) passes it. */
static int open_missing(void) {
    int fd = openat(AT_FDCWD, "/proc/crabpot-bench-missing", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    return 0;
}

static int exec_true(const char *path) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char *argv[] = {(char *)path, NULL};
        char *envp[] = {NULL};
        execve(path, argv, envp);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return 0;
}

static int connect_closed(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *)&addr, sizeof addr); /* refused: that is the point */
    close(fd);
    return 0;
}

static int udp_fd = -1;

static int udp_send(int port) {
    if (udp_fd < 0) udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (udp_fd < 0) return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char payload[64] = {0};
    /* An ICMP port unreachable may fail a later send with ECONNREFUSED: only the packet counts. */
    sendto(udp_fd, payload, sizeof payload, 0, (struct sockaddr *)&addr, sizeof addr);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: crabpot-bench-syscalls open|exec|connect|udp N [ARG] | flood SECONDS RATE\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    const char *op = argv[1];
    if (strcmp(op, "flood") == 0) {
        if (argc < 4) return usage();
        double seconds = atof(argv[2]);
        double rate = atof(argv[3]);
        double start = now(), end = start + seconds;
        long calls = 0;
        for (;;) {
            double t = now();
            if (t >= end) break;
            /* Batches of 64 keep the clock reads off the hot path. */
            long due = rate > 0 ? (long)((t - start) * rate) : calls + 64;
            while (calls < due) {
                for (int i = 0; i < 64 && calls < due; i++, calls++)
                    open_missing();
            }
            if (rate > 0 && calls >= due) {
                struct timespec pause = {0, 50000};
                nanosleep(&pause, NULL);
            }
        }
        printf("calls %ld seconds %.6f\n", calls, now() - start);
        return 0;
    }
    long n = atol(argv[2]);
    if (n <= 0) return usage();
    double start = now();
    for (long i = 0; i < n; i++) {
        int rc;
        if (strcmp(op, "open") == 0) rc = open_close();
        else if (strcmp(op, "exec") == 0) rc = argc > 3 ? exec_true(argv[3]) : (usage(), -1);
        else if (strcmp(op, "connect") == 0) rc = argc > 3 ? connect_closed(atoi(argv[3])) : (usage(), -1);
        else if (strcmp(op, "udp") == 0) rc = argc > 3 ? udp_send(atoi(argv[3])) : (usage(), -1);
        else return usage();
        if (rc != 0) { perror(op); return 1; }
    }
    printf("ns_per_call %.1f\n", (now() - start) * 1e9 / n);
    return 0;
}
