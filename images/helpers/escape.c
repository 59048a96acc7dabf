/* crabpot-escape MODE ...: leaving the guarded cgroup, egress that is not connect/sendmsg,
 * and mounts in a new mount namespace, for tests/escape.rs. Static, shipped in the test
 * image as /bin/crabpot-escape.
 *
 *   cgroup-move DIR MODE [ARG...]   write our pid to DIR/cgroup.procs, then run MODE
 *   exec PATH ARGV0 [ARG...]        execv PATH (e.g. after cgroup-move)
 *   move-other DIR MODE [ARG...]    fork a child, move it to DIR (we write its pid), let it
 *                                   run MODE; exit with its status (128+signal if killed)
 *   connect4 IPV4 PORT              TCP connect, send "escape\n", close
 *   http-get IPV4 PORT PATH         HTTP/1.0 GET, print the response body's first line
 *   ping IPV4                       ICMP echo through a ping socket (SOCK_DGRAM), 1 s for
 *                                   the reply
 *   raw-ping IPV4                   ICMP echo through a raw socket (SOCK_RAW)
 *   udp IPV4 PORT                   one UDP datagram
 *   benign                          fork, exec our own binary for an http-get of loopback
 *                                   :18789/health, then ping and UDP to loopback
 *   mountns TARGET                  unshare a mount namespace, fork a child that keeps it
 *                                   (prints "child PID", sleeps), mount tmpfs on TARGET
 *
 * Exit 0 when the call worked; 1 with "MODE: strerror" on stderr otherwise. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(int argc, char **argv);

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    return 1;
}

static int move_pid(const char *dir, pid_t pid) {
    char path[512];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    int fd = open(path, O_WRONLY);
    if (fd < 0) return fail("open cgroup.procs");
    char text[32];
    int n = snprintf(text, sizeof text, "%d\n", (int)pid);
    if (write(fd, text, (size_t)n) != n) return fail("write cgroup.procs");
    close(fd);
    return 0;
}

static int address(const char *ip, int port, struct sockaddr_in *sin) {
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int do_connect4(const char *ip, int port) {
    struct sockaddr_in sin;
    if (address(ip, port, &sin) != 0) return fail("address");
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0) return fail("socket");
    if (connect(sock, (struct sockaddr *)&sin, sizeof sin) != 0) return fail("connect");
    if (write(sock, "escape\n", 7) != 7) return fail("write");
    close(sock);
    printf("connected to %s:%d\n", ip, port);
    return 0;
}

static int do_http_get(const char *ip, int port, const char *path) {
    struct sockaddr_in sin;
    if (address(ip, port, &sin) != 0) return fail("address");
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0) return fail("socket");
    if (connect(sock, (struct sockaddr *)&sin, sizeof sin) != 0) return fail("connect");
    char request[256];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\n\r\n", path);
    if (write(sock, request, (size_t)n) != n) return fail("write");
    char reply[4096];
    size_t have = 0;
    ssize_t got;
    while (have < sizeof reply - 1 && (got = read(sock, reply + have, sizeof reply - 1 - have)) > 0)
        have += (size_t)got;
    reply[have] = 0;
    close(sock);
    char *body = strstr(reply, "\r\n\r\n");
    if (!body) {
        errno = EPROTO;
        return fail("http reply");
    }
    printf("%s", body + 4);
    return 0;
}

static unsigned short checksum(const void *data, size_t len) {
    const unsigned short *words = data;
    unsigned long sum = 0;
    for (; len > 1; len -= 2) sum += *words++;
    if (len) sum += *(const unsigned char *)words;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

/* One echo request through `sock` (ping or raw), then wait 1 s for any reply. */
static int echo(int sock, const char *ip, const char *mode) {
    struct sockaddr_in sin;
    if (address(ip, 0, &sin) != 0) return fail("address");
    struct icmphdr request;
    memset(&request, 0, sizeof request);
    request.type = ICMP_ECHO;
    request.un.echo.id = htons(0x4242);
    request.un.echo.sequence = htons(1);
    request.checksum = checksum(&request, sizeof request);
    if (sendto(sock, &request, sizeof request, 0, (struct sockaddr *)&sin, sizeof sin) < 0)
        return fail("sendto");
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    if (poll(&pfd, 1, 1000) != 1) {
        fprintf(stderr, "%s: no reply from %s\n", mode, ip);
        return 1;
    }
    printf("%s: reply from %s\n", mode, ip);
    return 0;
}

static int do_ping(const char *ip, int type) {
    int sock = socket(AF_INET, type, IPPROTO_ICMP);
    if (sock < 0) return fail("socket");
    return echo(sock, ip, type == SOCK_RAW ? "raw-ping" : "ping");
}

static int do_udp(const char *ip, int port) {
    struct sockaddr_in sin;
    if (address(ip, port, &sin) != 0) return fail("address");
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    if (sock < 0) return fail("socket");
    if (sendto(sock, "escape", 6, 0, (struct sockaddr *)&sin, sizeof sin) < 0)
        return fail("sendto");
    printf("sent to %s:%d\n", ip, port);
    return 0;
}

static int wait_status(pid_t child) {
    int status;
    if (waitpid(child, &status, 0) < 0) return fail("waitpid");
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int do_move_other(const char *dir, int argc, char **argv) {
    int gate[2];
    if (pipe(gate) != 0) return fail("pipe");
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        char byte;
        close(gate[1]);
        /* Returns when the parent writes or dies. */
        if (read(gate[0], &byte, 1) < 0) return fail("read");
        return run(argc, argv);
    }
    close(gate[0]);
    if (move_pid(dir, child) != 0) return 1;
    if (write(gate[1], "x", 1) != 1) return fail("write");
    return wait_status(child);
}

static int do_benign(void) {
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        char *args[] = {"crabpot-escape", "http-get", "127.0.0.1", "18789", "/health", NULL};
        execv("/proc/self/exe", args);
        _exit(fail("execv"));
    }
    if (wait_status(child) != 0) return 1;
    if (do_ping("127.0.0.1", SOCK_DGRAM) != 0) return 1;
    return do_udp("127.0.0.1", 9);
}

static int do_mountns(const char *target) {
    if (unshare(CLONE_NEWNS) != 0) return fail("unshare");
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        sleep(60);
        _exit(0);
    }
    printf("child %d\n", (int)child);
    fflush(stdout);
    /* The tracepoint kills us at this call; the mount completes first, in the namespace the
     * child keeps. */
    if (mount("none", target, "tmpfs", 0, NULL) != 0) return fail("mount");
    printf("mounted %s\n", target);
    return 0;
}

static int run(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *mode = argv[0];
    if (!strcmp(mode, "cgroup-move") && argc >= 3) {
        if (move_pid(argv[1], getpid()) != 0) return 1;
        return run(argc - 2, argv + 2);
    }
    if (!strcmp(mode, "exec") && argc >= 3) {
        execv(argv[1], argv + 2);
        return fail("execv");
    }
    if (!strcmp(mode, "move-other") && argc >= 3) return do_move_other(argv[1], argc - 2, argv + 2);
    if (!strcmp(mode, "connect4") && argc == 3) return do_connect4(argv[1], atoi(argv[2]));
    if (!strcmp(mode, "http-get") && argc == 4) return do_http_get(argv[1], atoi(argv[2]), argv[3]);
    if (!strcmp(mode, "ping")) return do_ping(argv[1], SOCK_DGRAM);
    if (!strcmp(mode, "raw-ping")) return do_ping(argv[1], SOCK_RAW);
    if (!strcmp(mode, "udp") && argc == 3) return do_udp(argv[1], atoi(argv[2]));
    if (!strcmp(mode, "mountns")) return do_mountns(argv[1]);
    fprintf(stderr, "unknown mode or wrong arguments: %s\n", mode);
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "benign")) return do_benign();
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE ARGS... (see the source)\n", argv[0]);
        return 2;
    }
    return run(argc - 1, argv + 1);
}
