// sendmmsg/recvmmsg with msg_name, as DNS resolvers and QUIC stacks batch them. A server socket bound to
// HOST:PORT and an unbound client in one process: the client sends three datagrams in one sendmmsg, the
// server takes them with one recvmmsg (checking each sender's name) and answers all three with one
// sendmmsg to those names; the client takes the answers with one recvmmsg. With REJECTED_PORT, a sendmmsg
// whose second message goes there: how many went, and how many reached the server.
// Usage: dgrammmsg HOST PORT [REJECTED_PORT]. Prints one line of results (no ports, so that runs compare).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_storage make(int family, const char *host, int port, socklen_t *len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, host, &a->sin6_addr);
        *len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, host, &a->sin_addr);
        *len = sizeof *a;
    }
    return ss;
}

#define N 3

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: dgrammmsg HOST PORT [REJECTED_PORT]\n"); return 2; }
    int family = strchr(argv[1], ':') ? AF_INET6 : AF_INET;
    socklen_t slen, clen, dlen;
    struct sockaddr_storage server = make(family, argv[1], atoi(argv[2]), &dlen);
    int srv = socket(family, SOCK_DGRAM, 0), cli = socket(family, SOCK_DGRAM, 0);
    if (srv < 0 || cli < 0) { perror("socket"); return 1; }
    if (bind(srv, (struct sockaddr *)&server, dlen) < 0) { perror("bind"); return 1; }

    struct mmsghdr msgs[N];
    struct iovec iovs[N];
    char out[N][8], in[N][64];
    struct sockaddr_storage names[N];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N; i++) {
        snprintf(out[i], sizeof out[i], "m%d", i);
        iovs[i] = (struct iovec){ out[i], strlen(out[i]) };
        msgs[i].msg_hdr = (struct msghdr){ .msg_name = &server, .msg_namelen = dlen, .msg_iov = &iovs[i], .msg_iovlen = 1 };
    }
    int sent = sendmmsg(cli, msgs, N, 0);
    if (sent < 0) { perror("sendmmsg"); return 1; }
    struct sockaddr_storage self;
    clen = sizeof self;
    getsockname(cli, (struct sockaddr *)&self, &clen);

    // The server: one recvmmsg for all three, senders named.
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N; i++) {
        iovs[i] = (struct iovec){ in[i], sizeof in[i] };
        msgs[i].msg_hdr = (struct msghdr){ .msg_name = &names[i], .msg_namelen = sizeof names[i], .msg_iov = &iovs[i], .msg_iovlen = 1 };
    }
    int received = recvmmsg(srv, msgs, N, 0, NULL);
    if (received < 0) { perror("recvmmsg"); return 1; }
    printf("sent %d received %d data", sent, received);
    int fromClient = 0, namelenOk = 0;
    for (int i = 0; i < received; i++) {
        printf("%c%.*s", i ? ',' : ' ', (int)msgs[i].msg_len, in[i]);
        // Family and port (the first four bytes of both sockaddrs): an unbound UDP client's getsockname says
        // 0.0.0.0 or :: where the server sees the source address routing picked.
        fromClient += msgs[i].msg_hdr.msg_namelen == clen && memcmp(&names[i], &self, 4) == 0;
        namelenOk += msgs[i].msg_hdr.msg_namelen == clen;
    }
    printf(" senders_are_client %d namelen_ok %d", fromClient, namelenOk);

    // Answers to the names the server got, in one sendmmsg.
    for (int i = 0; i < received; i++) {
        snprintf(out[i], sizeof out[i], "r%d", i);
        iovs[i] = (struct iovec){ out[i], strlen(out[i]) };
        msgs[i].msg_hdr = (struct msghdr){ .msg_name = &names[i], .msg_namelen = msgs[i].msg_hdr.msg_namelen, .msg_iov = &iovs[i], .msg_iovlen = 1 };
    }
    int answered = sendmmsg(srv, msgs, received, 0);
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N; i++) {
        iovs[i] = (struct iovec){ in[i], sizeof in[i] };
        msgs[i].msg_hdr = (struct msghdr){ .msg_name = &names[i], .msg_namelen = sizeof names[i], .msg_iov = &iovs[i], .msg_iovlen = 1 };
    }
    int replies = recvmmsg(cli, msgs, answered > 0 ? answered : 1, 0, NULL);
    slen = sizeof self;
    getsockname(srv, (struct sockaddr *)&self, &slen);
    int fromServer = 0;
    printf(" answered %d replies %d data", answered, replies);
    for (int i = 0; i < replies; i++) {
        printf("%c%.*s", i ? ',' : ' ', (int)msgs[i].msg_len, in[i]);
        fromServer += msgs[i].msg_hdr.msg_namelen == slen && memcmp(&names[i], &server, slen) == 0;
    }
    printf(" replies_from_server %d\n", fromServer);

    if (argc > 3) {
        struct sockaddr_storage rejected = make(family, argv[1], atoi(argv[3]), &dlen);
        memset(msgs, 0, sizeof msgs);
        iovs[0] = (struct iovec){ "p0", 2 };
        iovs[1] = (struct iovec){ "p1", 2 };
        msgs[0].msg_hdr = (struct msghdr){ .msg_name = &server, .msg_namelen = dlen, .msg_iov = &iovs[0], .msg_iovlen = 1 };
        msgs[1].msg_hdr = (struct msghdr){ .msg_name = &rejected, .msg_namelen = dlen, .msg_iov = &iovs[1], .msg_iovlen = 1 };
        int partial = sendmmsg(cli, msgs, 2, 0);
        int err = partial < 0 ? errno : 0;
        int got = 0;
        char buf[64];
        while (recv(srv, buf, sizeof buf, MSG_DONTWAIT) >= 0) got++;
        // And a second sendmmsg that starts with the rejected message: the rule's errno.
        int first = sendmmsg(cli, &msgs[1], 1, 0);
        printf("partial sent %d errno %d server_got %d rejected_first %d errno %s\n", partial, err, got, first,
               first < 0 ? strerrorname_np(errno) : "none");
    }
    return 0;
}
