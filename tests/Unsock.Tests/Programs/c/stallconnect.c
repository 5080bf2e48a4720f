// A program that stalls the supervisor thread serving its connect: the sockaddr lies on a page registered
// with userfaultfd, so the supervisor's read of it waits in the kernel until this program serves the fault,
// which it does only once RELEASE exists. Usage: stallconnect HOST PORT RELEASE
// Prints "faulted" once the supervisor is stuck, then "connect returned R errno E" at the end.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *page;

static void *connector(void *arg)
{
    (void)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int r = connect(s, (struct sockaddr *)page, sizeof(struct sockaddr_in));
    printf("connect returned %d errno %d\n", r, r < 0 ? errno : 0);
    fflush(stdout);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) { fprintf(stderr, "usage: stallconnect HOST PORT RELEASE\n"); return 2; }
    long size = sysconf(_SC_PAGESIZE);
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (uffd < 0) { perror("userfaultfd"); return 1; }
    struct uffdio_api api = { .api = UFFD_API };
    if (ioctl(uffd, UFFDIO_API, &api) < 0) { perror("UFFDIO_API"); return 1; }
    page = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = { .range = { .start = (unsigned long)page, .len = size }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (page == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) { perror("UFFDIO_REGISTER"); return 1; }

    pthread_t t;
    pthread_create(&t, NULL, connector, NULL);
    struct pollfd p = { .fd = uffd, .events = POLLIN };
    if (poll(&p, 1, 60000) != 1) { fprintf(stderr, "nobody read the address\n"); return 1; }
    struct uffd_msg msg;
    if (read(uffd, &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) { fprintf(stderr, "unexpected uffd message\n"); return 1; }
    printf("faulted\n");
    fflush(stdout);
    while (access(argv[3], F_OK) != 0) usleep(20000);

    char *content = aligned_alloc(size, size);
    memset(content, 0, size);
    struct sockaddr_in *sin = (struct sockaddr_in *)content;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &sin->sin_addr);
    struct uffdio_copy copy = { .dst = (unsigned long)page, .src = (unsigned long)content, .len = size };
    if (ioctl(uffd, UFFDIO_COPY, &copy) < 0) { perror("UFFDIO_COPY"); return 1; }
    pthread_join(t, NULL);
    return 0;
}
