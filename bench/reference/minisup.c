/*
 * The floor the engine is measured against (bench scenario 1): a minimal seccomp supervisor that traps connect
 * only and swaps every AF_INET connect for an AF_UNIX one to a fixed path, with the 9 syscalls the swap needs
 * (poll, RECV, process_vm_readv, ID_VALID, socket, connect, ADDFD, close, SEND) and SYNC_WAKE_UP as the engine
 * sets it. No policy, no identity, no option copies, no epoll moves, no stall protection: not a product, a floor.
 *
 * usage: minisup UNIX_PATH PROGRAM [ARGS...]   (exit status: the program's)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

static int filtered_listener(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof f / sizeof f[0], f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -1;
    return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static int send_fd(int channel, int fd)
{
    char byte = 0, control[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { &byte, 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(channel, &msg, 0) == 1 ? 0 : -1;
}

static int receive_fd(int channel)
{
    char byte, control[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &byte, 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
    if (recvmsg(channel, &msg, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: minisup UNIX_PATH PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sockaddr_un target = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof target.sun_path) {
        fprintf(stderr, "minisup: %s: path too long\n", argv[1]);
        return 2;
    }
    strcpy(target.sun_path, argv[1]);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) { perror("minisup: socketpair"); return 125; }
    pid_t child = fork();
    if (child < 0) { perror("minisup: fork"); return 125; }
    if (child == 0) {
        int listener = filtered_listener();
        if (listener < 0 || send_fd(pair[1], listener) < 0) { perror("minisup: seccomp"); _exit(125); }
        close(listener);
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    close(pair[1]);
    int listener = receive_fd(pair[0]);
    if (listener < 0) { waitpid(child, NULL, 0); return 125; }
    __u64 flags = SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, &flags);

    for (;;) {
        struct pollfd p = { listener, POLLIN, 0 };
        if (poll(&p, 1, -1) < 0) continue;
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) break;
        struct seccomp_notif req;
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) continue;
        struct seccomp_notif_resp resp = { .id = req.id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE };
        struct sockaddr_in sa;
        size_t len = req.data.args[2] < sizeof sa ? req.data.args[2] : sizeof sa;
        struct iovec local = { &sa, len }, remote = { (void *)req.data.args[1], len };
        if (len >= sizeof sa.sin_family && process_vm_readv(req.pid, &local, 1, &remote, 1, 0) == (ssize_t)len
            && sa.sin_family == AF_INET && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) {
            resp.flags = 0;
            int unix_socket = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (connect(unix_socket, (struct sockaddr *)&target, sizeof target) < 0) {
                resp.error = -errno;
            } else {
                struct seccomp_notif_addfd add = { .id = req.id, .flags = SECCOMP_ADDFD_FLAG_SETFD, .srcfd = unix_socket,
                                                   .newfd = (__u32)req.data.args[0] };
                if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0) resp.error = -errno;
            }
            close(unix_socket);
        }
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
