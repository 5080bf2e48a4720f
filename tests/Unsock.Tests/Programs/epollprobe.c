/* Sockets registered with epoll before connect/bind, as nginx and Netty do. Run under the launcher with
 * 127.0.0.1:PORT redirected: every check must see its events on the swapped socket. Prints "ok NAME" or
 * "FAIL NAME: why" per check, then "done"; exits 1 if any check failed.
 * usage: epollprobe PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in target;
static int listener, listener_ep, failures;

#define FAIL(name, ...) do { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; return; } while (0)

/* Waits up to ms for one event; returns the count (0 on timeout) and the event. */
static int wait_one(int ep, int ms, struct epoll_event *ev) {
    int n;
    do n = epoll_wait(ep, ev, 1, ms); while (n < 0 && errno == EINTR);
    return n;
}

static int add(int ep, int fd, unsigned events, unsigned long long data) {
    struct epoll_event ev = { .events = events, .data.u64 = data };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* A client registered before connect, connected; the server end accepted through the listener's epoll
 * (which was registered before bind). */
static int connect_registered(int ep, unsigned events, unsigned long long data, int *server) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (add(ep, c, events, data) != 0) { perror("add"); exit(2); }
    if (connect(c, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) { perror("connect"); exit(2); }
    struct epoll_event ev;
    if (wait_one(listener_ep, 5000, &ev) != 1 || ev.data.u64 != 0x4c) { printf("FAIL listener: no EPOLLIN on the listener registered before bind\n"); exit(1); }
    *server = accept(listener, NULL, NULL);
    if (*server < 0) { perror("accept"); exit(2); }
    return c;
}

static void level_triggered(void) {
    int ep = epoll_create1(0), s;
    int c = connect_registered(ep, EPOLLIN | EPOLLOUT, 0x1111, &s);
    struct epoll_event ev;
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x1111 || !(ev.events & EPOLLOUT)) FAIL("level", "no EPOLLOUT with data 0x1111 after connect");
    struct epoll_event mod = { .events = EPOLLIN, .data.u64 = 0x1112 };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c, &mod) != 0) FAIL("level", "EPOLL_CTL_MOD after connect: %s", strerror(errno));
    write(s, "x", 1);
    for (int i = 0; i < 2; i++) /* level-triggered: reported again while unread */
        if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x1112 || !(ev.events & EPOLLIN)) FAIL("level", "EPOLLIN #%d missing", i + 1);
    if (epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL) != 0) FAIL("level", "EPOLL_CTL_DEL after connect: %s", strerror(errno));
    if (wait_one(ep, 100, &ev) != 0) FAIL("level", "events after EPOLL_CTL_DEL");
    if (add(ep, c, EPOLLIN, 0x1113) != 0) FAIL("level", "EPOLL_CTL_ADD after DEL: %s", strerror(errno));
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x1113) FAIL("level", "no event after adding again");
    close(c); close(s); close(ep);
    printf("ok level\n");
}

static void edge_triggered(void) {
    int ep = epoll_create1(0), s;
    int c = connect_registered(ep, EPOLLIN | EPOLLOUT | EPOLLET, 0x2222, &s);
    struct epoll_event ev;
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x2222 || !(ev.events & EPOLLOUT)) FAIL("edge", "no EPOLLOUT after connect");
    if (wait_one(ep, 100, &ev) != 0) FAIL("edge", "EPOLLOUT reported twice for one edge");
    write(s, "y", 1);
    if (wait_one(ep, 5000, &ev) != 1 || !(ev.events & EPOLLIN)) FAIL("edge", "no EPOLLIN edge");
    if (wait_one(ep, 100, &ev) != 0) FAIL("edge", "EPOLLIN reported twice for one edge");
    char b;
    if (read(c, &b, 1) != 1 || b != 'y') FAIL("edge", "read the wrong data");
    close(c); close(s); close(ep);
    printf("ok edge\n");
}

static void one_shot(void) {
    int ep = epoll_create1(0), s;
    int c = connect_registered(ep, EPOLLIN | EPOLLONESHOT, 0x3333, &s);
    struct epoll_event ev;
    write(s, "z", 1);
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x3333) FAIL("oneshot", "no event");
    if (wait_one(ep, 100, &ev) != 0) FAIL("oneshot", "fired again before being re-armed");
    struct epoll_event mod = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x3334 };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c, &mod) != 0) FAIL("oneshot", "re-arm: %s", strerror(errno));
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x3334) FAIL("oneshot", "no event after re-arming");
    close(c); close(s); close(ep);
    printf("ok oneshot\n");
}

static void two_sets(void) {
    int ep1 = epoll_create1(0), ep2 = epoll_create1(0), s;
    struct epoll_event ev;
    /* The same socket in two sets, both before connect. */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    add(ep1, c, EPOLLIN, 0x4451);
    add(ep2, c, EPOLLIN, 0x4452);
    if (connect(c, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) FAIL("two-sets", "connect: %s", strerror(errno));
    if (wait_one(listener_ep, 5000, &ev) != 1) FAIL("two-sets", "listener");
    s = accept(listener, NULL, NULL);
    write(s, "v", 1);
    if (wait_one(ep1, 5000, &ev) != 1 || ev.data.u64 != 0x4451) FAIL("two-sets", "no event in set 1");
    if (wait_one(ep2, 5000, &ev) != 1 || ev.data.u64 != 0x4452) FAIL("two-sets", "no event in set 2");
    if (epoll_ctl(ep2, EPOLL_CTL_DEL, c, NULL) != 0) FAIL("two-sets", "DEL from set 2: %s", strerror(errno));
    if (wait_one(ep1, 5000, &ev) != 1) FAIL("two-sets", "set 1 lost its entry when set 2 dropped it");
    close(c); close(s); close(ep1); close(ep2);
    printf("ok two-sets\n");
}

/* A hostile layout: the set already holds another file under the number the new socket gets (registered,
 * dup'ed away, closed: epoll keeps such entries). Only the new socket's entry may move. */
static void shared_number(void) {
    int ep = epoll_create1(0), s;
    int first = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    add(ep, first, EPOLLIN | EPOLLOUT, 0x5551);
    int kept = dup(first);
    close(first);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c != first) FAIL("shared-number", "the new socket did not get the freed number");
    add(ep, c, EPOLLIN, 0x5552);
    if (connect(c, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) FAIL("shared-number", "connect: %s", strerror(errno));
    struct epoll_event ev;
    if (wait_one(listener_ep, 5000, &ev) != 1) FAIL("shared-number", "listener");
    s = accept(listener, NULL, NULL);
    write(s, "u", 1);
    struct epoll_event evs[4];
    int n, seen_old = 0, seen_new = 0;
    for (int round = 0; round < 20 && !(seen_old && seen_new); round++) {
        n = epoll_wait(ep, evs, 4, 250);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == 0x5551) seen_old = 1;
            if (evs[i].data.u64 == 0x5552 && (evs[i].events & EPOLLIN)) seen_new = 1;
        }
    }
    if (!seen_new) FAIL("shared-number", "no EPOLLIN for the new socket");
    if (!seen_old) FAIL("shared-number", "the other file's entry under the same number is gone");
    if (epoll_ctl(ep, EPOLL_CTL_DEL, c, NULL) != 0) FAIL("shared-number", "DEL of the new socket: %s", strerror(errno));
    close(c); close(s); close(kept); close(ep);
    printf("ok shared-number\n");
}

/* A crowded set: the socket's entry sits among a thousand others, so the set's fdinfo runs to some 85 KB. */
static void crowded(void) {
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < 2100) { lim.rlim_cur = lim.rlim_max < 2100 ? lim.rlim_max : 2100; setrlimit(RLIMIT_NOFILE, &lim); }
    int ep = epoll_create1(0), s, pipes[1000][2];
    for (int i = 0; i < 1000; i++) {
        if (pipe(pipes[i]) != 0) FAIL("crowded", "pipe: %s", strerror(errno));
        add(ep, pipes[i][0], EPOLLIN, 0x10000 + i);
    }
    int c = connect_registered(ep, EPOLLIN | EPOLLOUT, 0x6666, &s);
    struct epoll_event ev;
    if (wait_one(ep, 5000, &ev) != 1 || ev.data.u64 != 0x6666 || !(ev.events & EPOLLOUT)) FAIL("crowded", "no EPOLLOUT with data 0x6666 after connect");
    for (int i = 0; i < 1000; i++) { close(pipes[i][0]); close(pipes[i][1]); }
    close(c); close(s); close(ep);
    printf("ok crowded\n");
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: epollprobe PORT\n"); return 2; }
    setvbuf(stdout, NULL, _IOLBF, 0);
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[1]));
    inet_pton(AF_INET, "127.0.0.1", &target.sin_addr);
    listener_ep = epoll_create1(0);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    add(listener_ep, listener, EPOLLIN, 0x4c); /* before bind */
    if (bind(listener, (struct sockaddr *)&target, sizeof target) != 0 || listen(listener, 16) != 0) { perror("bind/listen"); return 2; }
    level_triggered();
    edge_triggered();
    one_shot();
    two_sets();
    shared_number();
    crowded();
    printf("done\n");
    return failures ? 1 : 0;
}
