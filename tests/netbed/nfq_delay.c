/* nfq_delay: constant delay for the packets an NFQUEUE rule hands it, for kernels without
 * netem (the bed's shaping.py builds it with gcc and starts one per delayed node).
 *
 *   nfq_delay -q QUEUE -d MICROSECONDS
 *
 * It binds the queue in the network namespace it runs in, asks the kernel for packet metadata
 * only (no payload copies), and gives each packet an ACCEPT verdict DELAY after it arrived.
 * The delay is constant, so packets leave in the order they came, and one batch verdict
 * ("everything up to id N") releases every packet that is due. It prints "bound" once the
 * queue is served, runs at SCHED_FIFO so a loaded machine does not stretch the delay, and
 * exits on SIGTERM. Kernel headers only: no libnetfilter_queue. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOTS (1u << 18) /* packets waiting at once; beyond that they pass at once */

struct waiting { uint32_t id; int64_t due_ns; };
static struct waiting pending[SLOTS];
static uint32_t first, next; /* pending[first..next) wait, oldest first */
static int sock;
static uint16_t queue_num;
static uint32_t seq;
static volatile sig_atomic_t stopping;

static int64_t clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) { perror(what); exit(1); }

/* A netfilter-queue message: netlink header, nfgenmsg, then attributes via add_attr. */
static struct nlmsghdr *new_msg(char *buf, size_t size, int type) {
    memset(buf, 0, size);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    h->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    h->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
    h->nlmsg_flags = NLM_F_REQUEST;
    h->nlmsg_seq = ++seq;
    struct nfgenmsg *g = NLMSG_DATA(h);
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(queue_num);
    return h;
}

static void add_attr(struct nlmsghdr *h, int type, const void *data, int len) {
    struct nlattr *a = (struct nlattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
    a->nla_type = type;
    a->nla_len = NLA_HDRLEN + len;
    memcpy((char *)a + NLA_HDRLEN, data, len);
    h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void send_msg(struct nlmsghdr *h) {
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(sock, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        die("nfq_delay: sendto");
}

/* Sends a configuration message and waits for the kernel's acknowledgement. */
static void configure(struct nlmsghdr *h, const char *what) {
    char buf[4096];
    h->nlmsg_flags |= NLM_F_ACK;
    send_msg(h);
    for (;;) {
        ssize_t n = recv(sock, buf, sizeof buf, 0);
        if (n < 0) die("nfq_delay: waiting for the kernel's answer");
        for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, n); r = NLMSG_NEXT(r, n)) {
            if (r->nlmsg_type != NLMSG_ERROR || r->nlmsg_seq != h->nlmsg_seq) continue;
            int err = ((struct nlmsgerr *)NLMSG_DATA(r))->error;
            if (err) { fprintf(stderr, "nfq_delay: %s: %s\n", what, strerror(-err)); exit(1); }
            return;
        }
    }
}

static void accept_up_to(uint32_t id) {
    char buf[64];
    struct nlmsghdr *h = new_msg(buf, sizeof buf, NFQNL_MSG_VERDICT_BATCH);
    struct nfqnl_msg_verdict_hdr v = {.verdict = htonl(NF_ACCEPT), .id = htonl(id)};
    add_attr(h, NFQA_VERDICT_HDR, &v, sizeof v);
    send_msg(h);
}

/* The packet id in one NFQNL_MSG_PACKET message, or 0 when it has none. */
static uint32_t packet_id(struct nlmsghdr *h) {
    int left = h->nlmsg_len - NLMSG_LENGTH(sizeof(struct nfgenmsg));
    struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
    for (; left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= left;
         left -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len)))
        if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR)
            return ntohl(((struct nfqnl_msg_packet_hdr *)((char *)a + NLA_HDRLEN))->packet_id);
    return 0;
}

static void on_term(int sig) { (void)sig; stopping = 1; }

static void setup(void) {
    struct sched_param rt = {.sched_priority = 10};
    if (sched_setscheduler(0, SCHED_FIFO, &rt) < 0)
        perror("nfq_delay: no SCHED_FIFO, delays may run late under load");
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within 1 us of the due time, not 50 us */
    mlockall(MCL_CURRENT | MCL_FUTURE);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    sock = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
    if (sock < 0) die("nfq_delay: netlink socket");
    int bufsize = 8 << 20, one = 1;
    if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize) < 0)
        setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    setsockopt(sock, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    struct sockaddr_nl me = {.nl_family = AF_NETLINK};
    if (bind(sock, (struct sockaddr *)&me, sizeof me) < 0) die("nfq_delay: bind");

    char buf[256];
    struct nlmsghdr *h = new_msg(buf, sizeof buf, NFQNL_MSG_CONFIG);
    struct nfqnl_msg_config_cmd bind_cmd = {.command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET)};
    add_attr(h, NFQA_CFG_CMD, &bind_cmd, sizeof bind_cmd);
    configure(h, "binding the queue");
    h = new_msg(buf, sizeof buf, NFQNL_MSG_CONFIG);
    struct nfqnl_msg_config_params meta = {.copy_range = 0, .copy_mode = NFQNL_COPY_META};
    add_attr(h, NFQA_CFG_PARAMS, &meta, sizeof meta);
    uint32_t maxlen = htonl(SLOTS), gso = htonl(NFQA_CFG_F_GSO); /* whole GSO packets: fewer messages */
    add_attr(h, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
    add_attr(h, NFQA_CFG_FLAGS, &gso, sizeof gso);
    add_attr(h, NFQA_CFG_MASK, &gso, sizeof gso);
    configure(h, "setting metadata-only copies");
}

int main(int argc, char **argv) {
    long delay_us = -1;
    for (int c; (c = getopt(argc, argv, "q:d:")) != -1;) {
        if (c == 'q') queue_num = (uint16_t)atoi(optarg);
        else if (c == 'd') delay_us = atol(optarg);
    }
    if (delay_us < 0) { fprintf(stderr, "usage: nfq_delay -q QUEUE -d MICROSECONDS\n"); return 2; }
    setup();
    fprintf(stderr, "nfq_delay: queue %u bound, delay %ld us\n", queue_num, delay_us);

    static char buf[1 << 16];
    const int64_t delay_ns = delay_us * 1000LL;
    while (!stopping) {
        struct timespec wait, *timeout = NULL;
        if (first != next) {
            int64_t ns = pending[first % SLOTS].due_ns - clock_ns();
            if (ns < 0) ns = 0;
            wait.tv_sec = ns / 1000000000LL;
            wait.tv_nsec = ns % 1000000000LL;
            timeout = &wait;
        }
        struct pollfd p = {.fd = sock, .events = POLLIN};
        if (ppoll(&p, 1, timeout, NULL) < 0 && errno != EINTR) die("nfq_delay: ppoll");
        ssize_t n;
        while ((n = recv(sock, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
            int64_t due = clock_ns() + delay_ns;
            for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) continue;
                uint32_t id = packet_id(h);
                if (!id) continue;
                if (next - first == SLOTS) { accept_up_to(pending[(next - 1) % SLOTS].id); first = next; }
                pending[next % SLOTS] = (struct waiting){id, due};
                next++;
            }
        }
        int64_t now = clock_ns();
        uint32_t last = 0;
        while (first != next && pending[first % SLOTS].due_ns <= now) last = pending[first++ % SLOTS].id;
        if (last) accept_up_to(last);
    }
    return 0;
}
