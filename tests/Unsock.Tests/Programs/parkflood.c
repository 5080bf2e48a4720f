/* Opens N blocking TCP connects at once, each on its own thread, into a backlog that never has room:
 * every one of them waits in the supervisor. Prints how many returned and with which errno, twice a second. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in target;
static atomic_int returned, timedout, other;

static void *connector(void *arg)
{
    (void)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { atomic_fetch_add(&other, 1); return NULL; }
    int r = connect(fd, (struct sockaddr *)&target, sizeof target);
    atomic_fetch_add(&returned, 1);
    if (r < 0 && errno == ETIMEDOUT) atomic_fetch_add(&timedout, 1);
    else if (r < 0) atomic_fetch_add(&other, 1);
    pause(); /* keep the socket */
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: parkflood HOST PORT N\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &target.sin_addr);
    int n = atoi(argv[3]);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, connector, NULL) != 0) { fprintf(stderr, "pthread_create failed at %d\n", i); return 1; }
    }
    printf("started %d\n", n);
    fflush(stdout);
    for (;;) {
        printf("returned %d timedout %d other %d\n", atomic_load(&returned), atomic_load(&timedout), atomic_load(&other));
        fflush(stdout);
        usleep(500 * 1000);
    }
}
