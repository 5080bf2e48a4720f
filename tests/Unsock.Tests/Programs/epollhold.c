/* A program that holds its epoll set while its registered sockets are swapped: a second thread's epoll_wait
 * copies an event into a page that faults into a userfaultfd nobody serves, so the kernel keeps the epoll's
 * mutex until the program lets go. Every epoll_ctl on that set (ours, moving its registrations) waits as long.
 * Binds 127.0.0.1:PORT, registers COUNT sockets with its epoll set, holds the set ("held"), connects them all
 * (each reported as "connect I: ok|error"; one after the other, or all at once from COUNT threads with
 * "together"), prints "attacker-done", and lets go once RELEASE exists.
 * usage: epollhold PORT COUNT RELEASE [together] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ep;
static void *page;
static int c[64];
static struct sockaddr_in a;

static void *connect_one(void *arg) {
    int i = (int)(long)arg;
    int r = connect(c[i], (struct sockaddr *)&a, sizeof a);
    printf("connect %d: %s\n", i, r == 0 || errno == EINPROGRESS ? "ok" : strerror(errno));
    fflush(stdout);
    return NULL;
}

static void die(const char *what) { printf("error %s: %s\n", what, strerror(errno)); fflush(stdout); exit(2); }

static void *waiter(void *arg) {
    (void)arg;
    epoll_wait(ep, (struct epoll_event *)page, 1, -1); /* faults while it copies the eventfd's event */
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: epollhold PORT COUNT RELEASE [together]\n"); return 2; }
    int together = argc == 5 && strcmp(argv[4], "together") == 0;
    int count = atoi(argv[2]);
    if (count < 1 || count > 64) { fprintf(stderr, "COUNT: 1..64\n"); return 2; }
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    if (listen(l, 128) != 0) die("listen");

    ep = epoll_create1(0);
    for (int i = 0; i < count; i++) {
        c[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = 0x7000 + i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i], &ev) != 0) die("epoll_ctl");
    }
    int e = eventfd(1, 0); /* always ready: epoll_wait has an event to copy at once */
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x99 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != 0) die("epoll_ctl eventfd");

    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = { .api = UFFD_API };
    if (ioctl(uffd, UFFDIO_API, &api) != 0) die("UFFDIO_API");
    long ps = sysconf(_SC_PAGESIZE);
    page = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) die("mmap");
    struct uffdio_register reg = { .range = { (unsigned long)page, ps }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("UFFDIO_REGISTER");

    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    struct uffd_msg msg;
    if (read(uffd, &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) die("read userfaultfd");
    printf("held\n");
    fflush(stdout);

    pthread_t connectors[64];
    for (int i = 0; i < count; i++) {
        if (together) pthread_create(&connectors[i], NULL, connect_one, (void *)(long)i);
        else connect_one((void *)(long)i);
    }
    if (together) for (int i = 0; i < count; i++) pthread_join(connectors[i], NULL);
    printf("attacker-done\n");
    fflush(stdout);

    while (access(argv[3], F_OK) != 0) usleep(20000);
    struct uffdio_zeropage zp = { .range = { (unsigned long)page, ps } };
    if (ioctl(uffd, UFFDIO_ZEROPAGE, &zp) != 0) die("UFFDIO_ZEROPAGE");
    pthread_join(t, NULL);
    printf("released\n");
    return 0;
}
