// An attacker on the supervisor's closes: it holds an epoll set (epoll_wait copying out into a userfaultfd page
// nobody serves keeps the set's mutex) that a socket is registered in, blocks a connect on that socket into a
// full backlog (the supervisor parks it with its copy of the socket), and closes its own fd meanwhile: the
// supervisor's copy is then the socket's last reference, and closing it waits for the held set.
// Then: a second blocking connect (answered by the supervisor's poller at its SO_SNDTIMEO), and a flood of
// getsockname calls (each one a copy for the supervisor to close, behind the stuck one) until they fail.
// Writing the release file serves the page: the set is let go and the program exits 0.
// usage: closehold PORT RELEASE-FILE FLOOD-COUNT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int ep, c1;
static void *page;

static void *waiter(void *x) { epoll_wait(ep, page, 1, -1); printf("released\n"); fflush(stdout); return NULL; }
static void *closer(void *x) { usleep(300000); close(c1); printf("closed c1\n"); fflush(stdout); return NULL; }

static int blocking_client(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 1, 0 };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return s;
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: closehold PORT RELEASE-FILE FLOOD-COUNT\n"); return 2; }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 0)) { perror("bind/listen"); return 2; }
    // Fill the backlog: later blocking connects wait for room.
    for (int i = 0; i < 4; i++) { int x = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); connect(x, (void *)&a, sizeof a); }
    ep = epoll_create1(0);
    c1 = blocking_client();
    struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = 1 };
    epoll_ctl(ep, EPOLL_CTL_ADD, c1, &ev);
    int e = eventfd(1, 0);
    ev.events = EPOLLIN;
    epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
    struct uffdio_api api = { .api = UFFD_API };
    if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) { perror("userfaultfd"); return 2; }
    long ps = sysconf(_SC_PAGESIZE);
    page = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = { .range = { (unsigned long)page, ps }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("UFFDIO_REGISTER"); return 2; }
    pthread_t tw, tc;
    pthread_create(&tw, NULL, waiter, NULL);
    struct uffd_msg msg;
    if (read(uffd, &msg, sizeof msg) != sizeof msg) { perror("read uffd"); return 2; }
    printf("held\n"); fflush(stdout);
    pthread_create(&tc, NULL, closer, NULL);
    int r = connect(c1, (void *)&a, sizeof a);
    printf("c1 connect: %s\n", r == 0 ? "ok" : strerror(errno)); fflush(stdout);
    int c2 = blocking_client();
    r = connect(c2, (void *)&a, sizeof a);
    printf("c2 connect: %s\n", r == 0 ? "ok" : strerror(errno)); fflush(stdout);
    // Until a few calls failed (the supervisor let go of this program), at most FLOOD-COUNT calls or 20 s.
    int n = atoi(argv[3]), ok = 0, failed = 0, last = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < n && failed < 10; i++)
    {
        if (i % 100 == 99)
        {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > 20) break;
            usleep(1000);
        }
        struct sockaddr_in name; socklen_t len = sizeof name;
        if (getsockname(c2, (void *)&name, &len) == 0) ok++;
        else { failed++; last = errno; }
    }
    printf("flood: %d ok, %d failed (last %s)\n", ok, failed, failed ? strerror(last) : "-"); fflush(stdout);
    struct stat st;
    while (stat(argv[2], &st) != 0) usleep(20000);
    struct uffdio_zeropage zero = { .range = { (unsigned long)page, ps } };
    ioctl(uffd, UFFDIO_ZEROPAGE, &zero);
    pthread_join(tw, NULL);
    _exit(0);
}
