/* The floor: receive + send only (no SRTP, no logic), epoll + recvmmsg(32) + sendmmsg per 8. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/resource.h>
#include <time.h>
#define RXB 32
#define TXB 8
static volatile int stop = 0;
static void on_sig(int s) { stop = 1; }
int main(int argc, char **argv) {
    int port = atoi(argv[1]);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int rcv = 4 << 20; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(fd, (void *)&a, sizeof a)) { perror("bind"); return 1; }
    signal(SIGTERM, on_sig); signal(SIGINT, on_sig);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    static uint8_t rx[RXB][1500], tx[TXB][1500];
    static struct mmsghdr rm[RXB], tm[TXB];
    static struct iovec ri[RXB], ti[TXB];
    static struct sockaddr_in ra[RXB], ta[TXB];
    unsigned long long pkts = 0, wakes = 0, rcalls = 0, scalls = 0;
    printf("ready\n"); fflush(stdout);
    while (!stop) {
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, 200);
        if (n <= 0) continue;
        wakes++;
        int tn = 0;
        for (int b = 0; b < 4; b++) {
            for (int i = 0; i < RXB; i++) {
                ri[i].iov_base = rx[i]; ri[i].iov_len = 1500;
                rm[i].msg_hdr = (struct msghdr){.msg_name = &ra[i], .msg_namelen = sizeof ra[i], .msg_iov = &ri[i], .msg_iovlen = 1};
            }
            int got = recvmmsg(fd, rm, RXB, MSG_DONTWAIT, NULL);
            rcalls++;
            if (got <= 0) break;
            for (int i = 0; i < got; i++) {
                int len = rm[i].msg_len;
                if (len < 2) continue;
                memcpy(tx[tn], rx[i], len);   /* stands for decrypt + re-encrypt's copy */
                ta[tn] = ra[i];
                ta[tn].sin_port = htons((uint16_t)(rx[i][0] << 8 | rx[i][1]));
                ti[tn].iov_base = tx[tn]; ti[tn].iov_len = len;
                tm[tn].msg_hdr = (struct msghdr){.msg_name = &ta[tn], .msg_namelen = sizeof ta[tn], .msg_iov = &ti[tn], .msg_iovlen = 1};
                tn++; pkts++;
                if (tn == TXB) { sendmmsg(fd, tm, tn, 0); scalls++; tn = 0; }
            }
            if (got < RXB) break;
        }
        if (tn) { sendmmsg(fd, tm, tn, 0); scalls++; }
    }
    struct rusage u; getrusage(RUSAGE_SELF, &u);
    double us = u.ru_utime.tv_sec * 1e6 + u.ru_utime.tv_usec, ss = u.ru_stime.tv_sec * 1e6 + u.ru_stime.tv_usec;
    printf("packets %llu wakes %llu recvmmsg %llu sendmmsg %llu user_us %.0f sys_us %.0f\n", pkts, wakes, rcalls, scalls, us, ss);
    return 0;
}
