/* crabpot-evade MODE ...: what a hostile container does to slip past the agent, for the
 * evasion tests (tests/evasion.rs). Static, shipped in the test image; busybox cannot issue
 * these syscalls itself.
 *
 *   exec PATH ARGV0 [ARG...]        execve PATH with a chosen argv[0]
 *   execveat PATH ARGV0 [ARG...]    execveat(fd, "", AT_EMPTY_PATH) of PATH opened O_CLOEXEC
 *   memfd PATH ARGV0 [ARG...]       copy PATH into a memfd_create file, then fexecve it
 *   rename NAME SECONDS             prctl(PR_SET_NAME, NAME), then sleep
 *   open PATH                       open PATH with the legacy open(2) (x86_64)
 *   openat2 PATH                    open PATH with openat2(AT_FDCWD)
 *   openat DIR PATH                 open PATH relative to a dirfd of DIR
 *   uring-connect IPV4 PORT         TCP connect through io_uring (IORING_OP_CONNECT)
 *   connect6 IPV6 PORT              TCP connect of an AF_INET6 socket (e.g. ::ffff:a.b.c.d)
 *
 * Exit 0 when the call worked; 1 with "MODE: strerror" on stderr otherwise. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int fail(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    return 1;
}

static int do_memfd(const char *path, char **argv) {
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) return fail("open");
    int mfd = memfd_create("innocent", MFD_CLOEXEC);
    if (mfd < 0) return fail("memfd_create");
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0)
        if (write(mfd, buf, (size_t)n) != n) return fail("write");
    if (n < 0) return fail("read");
    close(src);
    fexecve(mfd, argv, environ);
    return fail("fexecve");
}

static int do_execveat(const char *path, char **argv) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("open");
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    return fail("execveat");
}

static int do_openat2(const char *path) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY;
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    if (fd < 0) return fail("openat2");
    printf("opened %s\n", path);
    return 0;
}

static int do_open(const char *path) {
#ifdef SYS_open
    int fd = (int)syscall(SYS_open, path, O_RDONLY, 0);
#else
    int fd = -1;
    errno = ENOSYS;
#endif
    if (fd < 0) return fail("open");
    printf("opened %s\n", path);
    return 0;
}

static int do_openat(const char *dir, const char *path) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return fail("open dir");
    int fd = openat(dfd, path, O_RDONLY);
    if (fd < 0) return fail("openat");
    printf("opened %s\n", path);
    return 0;
}

static int do_uring_connect(const char *ip, int port) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) return fail("inet_pton");
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    if (sock < 0) return fail("socket");

    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (ring < 0) return fail("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(0, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    char *cq = mmap(0, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe),
                                     PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) return fail("mmap");

    unsigned *sq_tail = (unsigned *)(sq + p.sq_off.tail);
    unsigned *sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    unsigned *sq_array = (unsigned *)(sq + p.sq_off.array);
    unsigned index = *sq_tail & *sq_mask;
    struct io_uring_sqe *sqe = &sqes[index];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_CONNECT;
    sqe->fd = sock;
    sqe->addr = (unsigned long)&sin;
    sqe->off = sizeof sin; /* addrlen */
    sq_array[index] = index;
    __atomic_store_n(sq_tail, *sq_tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return fail("io_uring_enter");

    unsigned *cq_head = (unsigned *)(cq + p.cq_off.head);
    unsigned *cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    int res = cqes[*cq_head & *cq_mask].res;
    __atomic_store_n(cq_head, *cq_head + 1, __ATOMIC_RELEASE);
    if (res < 0) {
        errno = -res;
        return fail("io_uring connect");
    }
    printf("connected to %s:%d through io_uring\n", ip, port);
    return 0;
}

static int do_connect6(const char *ip, int port) {
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons((unsigned short)port);
    if (inet_pton(AF_INET6, ip, &sin6.sin6_addr) != 1) return fail("inet_pton");
    int sock = socket(AF_INET6, SOCK_STREAM, 0);
    if (sock < 0) return fail("socket");
    if (connect(sock, (struct sockaddr *)&sin6, sizeof sin6) != 0) return fail("connect6");
    printf("connected to [%s]:%d\n", ip, port);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE ARGS... (see the source)\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "exec") && argc >= 4) {
        execv(argv[2], &argv[3]);
        return fail("execve");
    }
    if (!strcmp(mode, "execveat") && argc >= 4) return do_execveat(argv[2], &argv[3]);
    if (!strcmp(mode, "memfd") && argc >= 4) return do_memfd(argv[2], &argv[3]);
    if (!strcmp(mode, "rename") && argc == 4) {
        if (prctl(PR_SET_NAME, argv[2], 0, 0, 0) != 0) return fail("prctl");
        sleep((unsigned)atoi(argv[3]));
        return 0;
    }
    if (!strcmp(mode, "open")) return do_open(argv[2]);
    if (!strcmp(mode, "openat2")) return do_openat2(argv[2]);
    if (!strcmp(mode, "openat") && argc == 4) return do_openat(argv[2], argv[3]);
    if (!strcmp(mode, "uring-connect") && argc == 4)
        return do_uring_connect(argv[2], atoi(argv[3]));
    if (!strcmp(mode, "connect6") && argc == 4) return do_connect6(argv[2], atoi(argv[3]));
    fprintf(stderr, "unknown mode or wrong arguments: %s\n", mode);
    return 2;
}
