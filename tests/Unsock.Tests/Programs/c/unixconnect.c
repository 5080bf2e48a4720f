// Connects to the AF_UNIX path given (built static, to run in an empty chroot). Prints "connected" or "errno N".
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: unixconnect PATH\n"); return 2; }
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    strncpy(sun.sun_path, argv[1], sizeof sun.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&sun, sizeof sun) == 0) printf("connected\n");
    else printf("errno %d\n", errno);
    return 0;
}
