// Java's close-to-cancel: a thread waits in a blocking connect (the listener's backlog is full) while
// another thread closes that fd and opens a regular file, which gets the same number. When the connect
// finally goes through, the regular file must still be there. Usage: fdreuse PORT FILE
// Prints JSON: {"reused": same number?, "connect_errno": E, "file_survived": true|false}
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static atomic_int waitingFd = -1, connectErrno = -1, attempts;

static void *connector(void *arg)
{
    (void)arg;
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        atomic_store(&waitingFd, s);
        atomic_fetch_add(&attempts, 1);
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
            atomic_store(&connectErrno, errno);
            return NULL;
        }
        struct stat st;
        // Connected: keep it open (it fills the backlog) unless the fd was taken away meanwhile.
        if (fstat(s, &st) == 0 && !S_ISSOCK(st.st_mode)) { atomic_store(&connectErrno, 0); return NULL; }
    }
}

static void sleepMs(int ms) { struct timespec t = { ms / 1000, (ms % 1000) * 1000000L }; nanosleep(&t, NULL); }

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: fdreuse PORT FILE\n"); return 2; }
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 0) != 0) { perror("listen"); return 1; }
    pthread_t t;
    pthread_create(&t, NULL, connector, NULL);
    // Wait until the connector stops making progress: its connect waits for room in the backlog.
    int last = -1;
    for (int i = 0; i < 100; i++) {
        sleepMs(300);
        int now = atomic_load(&attempts);
        if (now == last) break;
        last = now;
    }
    int fd = atomic_load(&waitingFd);
    close(fd);
    int file = open(argv[2], O_RDONLY);
    // Room in the backlog: the waiting connect can go through now.
    fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 8; i++) {
        int a = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (a >= 0) close(a);
        sleepMs(50);
    }
    for (int i = 0; i < 200 && atomic_load(&connectErrno) == -1; i++) sleepMs(50);
    char buf[64] = {0};
    struct stat st;
    int survived = fstat(file, &st) == 0 && S_ISREG(st.st_mode) && pread(file, buf, sizeof buf - 1, 0) > 0 && strncmp(buf, "regular", 7) == 0;
    printf("{\"reused\": %s, \"connect_errno\": %d, \"file_survived\": %s}\n", file == fd ? "true" : "false",
           atomic_load(&connectErrno), survived ? "true" : "false");
    fflush(stdout);
    _exit(0);
}
