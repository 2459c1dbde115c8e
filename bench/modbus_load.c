/* Saturating Modbus TCP load for bench_modbus: cheap enough that, on a small machine, the
 * requests per second measure the server rather than the client.
 *
 *   modbus_load PORT CLIENTS SECONDS DEPTH [RATE]
 *
 * Opens CLIENTS connections to 127.0.0.1:PORT; client i reads the 125 holding registers of
 * meter block i + 1 (address 125 * (i + 1), unit 1). Without RATE (or 0) it keeps DEPTH
 * requests in flight: a new request goes out as soon as an answer comes in. With RATE (depth
 * 1) each client asks RATE times a second, the clients' turns spread over one period, the way
 * PLCs poll on a cycle; an answer that comes after the next turn was due is followed by the
 * next request at once, as in bench/modbus_load.py. Every answer is checked (transaction id in
 * order, protocol 0, length, unit, function 3, byte count 250); a wrong one counts as an error,
 * and an answer whose MBAP header cannot be followed ends that connection. After SECONDS no new
 * request is sent and the ones in flight are awaited (for at most 2 s more). Prints one JSON
 * line, as bench/modbus_load.py does: requests, errors, seconds, rate, p50_ms, p99_ms, max_ms.
 * One thread, epoll, no allocation on the request path beyond the growing latency array.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define REGISTERS 125
#define ANSWER_SIZE (7 + 2 + 2 * REGISTERS) /* MBAP, function, byte count, data */
#define REQUEST_SIZE 12
#define MAX_DEPTH 64
#define BUFFER_SIZE 65536
#define GRACE_NS 2000000000ULL

struct client {
    int fd;
    int open;
    uint16_t address;
    uint16_t next_tid;             /* of the next request sent */
    uint16_t expected_tid;         /* of the oldest request in flight */
    int in_flight;
    uint64_t sent_at[MAX_DEPTH];   /* ring, indexed by tid % MAX_DEPTH */
    uint64_t next_at;              /* paced: when the next request is due */
    unsigned char buffer[BUFFER_SIZE];
    size_t filled;
};

static uint64_t *latencies;
static size_t latency_count, latency_capacity;
static long errors;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void record(uint64_t ns) {
    if (latency_count == latency_capacity) {
        latency_capacity = latency_capacity ? 2 * latency_capacity : 1 << 16;
        latencies = realloc(latencies, latency_capacity * sizeof *latencies);
        if (!latencies) {
            perror("realloc");
            exit(1);
        }
    }
    latencies[latency_count++] = ns;
}

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

static void close_client(struct client *c) {
    if (c->open) {
        close(c->fd);
        c->open = 0;
        c->in_flight = 0;
    }
}

/* Send `count` new requests in one write; a short write is a failure of the test itself. */
static void send_requests(struct client *c, int count) {
    unsigned char out[MAX_DEPTH * REQUEST_SIZE];
    uint64_t at = now_ns();
    for (int i = 0; i < count; i++) {
        unsigned char *p = out + i * REQUEST_SIZE;
        uint16_t tid = c->next_tid++;
        put16(p, tid);
        put16(p + 2, 0);
        put16(p + 4, 6);
        p[6] = 1;
        p[7] = 3;
        put16(p + 8, c->address);
        put16(p + 10, REGISTERS);
        c->sent_at[tid % MAX_DEPTH] = at;
    }
    size_t size = (size_t)count * REQUEST_SIZE, done = 0;
    while (done < size) {
        ssize_t n = write(c->fd, out + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* a few requests never fill a socket buffer: the server is gone */
            errors++;
            close_client(c);
            return;
        }
        done += (size_t)n;
    }
    c->in_flight += count;
}

/* Read what arrived, check every complete answer; returns how many answers were taken. */
static int receive_answers(struct client *c, uint64_t at) {
    ssize_t n = read(c->fd, c->buffer + c->filled, BUFFER_SIZE - c->filled);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        if (c->in_flight)
            errors += c->in_flight;
        close_client(c);
        return 0;
    }
    c->filled += (size_t)n;
    size_t used = 0;
    int answers = 0;
    while (c->filled - used >= 7) {
        unsigned char *p = c->buffer + used;
        unsigned length = get16(p + 4);
        if (get16(p + 2) != 0 || length < 3 || length > 254) {
            errors += c->in_flight;
            close_client(c);
            return answers;
        }
        if (c->filled - used < 6 + length)
            break;
        unsigned tid = get16(p);
        if (tid != c->expected_tid || length != ANSWER_SIZE - 6 || p[6] != 1 || p[7] != 3
            || p[8] != 2 * REGISTERS)
            errors++;
        else
            record(at - c->sent_at[tid % MAX_DEPTH]);
        c->expected_tid++;
        c->in_flight--;
        answers++;
        used += 6 + length;
    }
    memmove(c->buffer, c->buffer + used, c->filled - used);
    c->filled -= used;
    return answers;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pick_ms(double q) {
    size_t i = (size_t)(q * (double)latency_count);
    if (i >= latency_count)
        i = latency_count - 1;
    return (double)latencies[i] / 1e6;
}

/* Paced: arm the timer for the earliest client that waits for its turn (none: disarmed). */
static void arm(int timer, struct client *all, int clients, uint64_t stop) {
    uint64_t due = 0;
    for (int i = 0; i < clients; i++)
        if (all[i].open && !all[i].in_flight && all[i].next_at < stop
            && (!due || all[i].next_at < due))
            due = all[i].next_at;
    struct itimerspec when = {0};
    if (due) {
        when.it_value.tv_sec = (time_t)(due / 1000000000ULL);
        when.it_value.tv_nsec = (long)(due % 1000000000ULL);
    }
    timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s PORT CLIENTS SECONDS DEPTH [RATE]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), clients = atoi(argv[2]), depth = atoi(argv[4]);
    double seconds = atof(argv[3]), rate = argc == 6 ? atof(argv[5]) : 0;
    if (port <= 0 || port > 65535 || clients < 1 || clients > 523 || depth < 1
        || depth > MAX_DEPTH || !(seconds > 0) || !(rate >= 0) || (rate > 0 && depth != 1)) {
        fprintf(stderr, "bad arguments: 1-65535 port, 1-523 clients, depth 1-%d, seconds > 0,"
                        " rate >= 0 (paced: depth 1)\n", MAX_DEPTH);
        return 2;
    }
    struct client *all = calloc((size_t)clients, sizeof *all);
    int poll = epoll_create1(0);
    int timer = timerfd_create(CLOCK_MONOTONIC, 0);
    if (!all || poll < 0 || timer < 0) {
        perror("setup");
        return 1;
    }
    struct epoll_event timer_event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(poll, EPOLL_CTL_ADD, timer, &timer_event);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < clients; i++) {
        struct client *c = &all[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (c->fd < 0 || setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0
            || connect(c->fd, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("connect");
            return 1;
        }
        c->open = 1;
        c->address = (uint16_t)(REGISTERS * (i + 1));
        struct epoll_event event = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(poll, EPOLL_CTL_ADD, c->fd, &event);
    }
    uint64_t start = now_ns();
    uint64_t stop = start + (uint64_t)(seconds * 1e9);
    /* paced clients start spread over one period, as PLCs polling on their own cycles */
    uint64_t period = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    for (int i = 0; i < clients; i++) {
        all[i].next_at = start + period * (uint64_t)i / (uint64_t)clients;
        if (!period)
            send_requests(&all[i], depth);
    }
    uint64_t last = start;
    struct epoll_event events[64];
    for (;;) {
        if (period)
            arm(timer, all, clients, stop);
        uint64_t at = now_ns();
        int waiting = 0;
        for (int i = 0; i < clients; i++)
            waiting += all[i].in_flight;
        if ((at >= stop && !waiting) || at >= stop + GRACE_NS)
            break;
        int ready = epoll_wait(poll, events, 64, 100);
        at = now_ns();
        for (int e = 0; e < ready; e++) {
            struct client *c = events[e].data.ptr;
            if (!c) { /* the pacing timer: every client whose turn it is asks */
                uint64_t expirations;
                if (read(timer, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
                    perror("timer");
                for (int i = 0; i < clients; i++) {
                    struct client *due = &all[i];
                    if (due->open && !due->in_flight && due->next_at <= at && at < stop) {
                        due->next_at += period;
                        send_requests(due, 1);
                    }
                }
                continue;
            }
            int answers = receive_answers(c, at);
            if (answers)
                last = at;
            if (!answers || !c->open || at >= stop)
                continue;
            if (!period) {
                send_requests(c, answers);
            } else if (c->next_at <= at) { /* late: its turn came while it waited */
                c->next_at += period;
                send_requests(c, 1);
            }
        }
    }
    for (int i = 0; i < clients; i++) {
        errors += all[i].in_flight; /* never answered within the grace time */
        close_client(&all[i]);
    }
    double elapsed = (double)(last - start) / 1e9;
    if (!latency_count) {
        printf("{\"requests\": 0, \"errors\": %ld, \"seconds\": %.3f, \"rate\": 0.0, "
               "\"p50_ms\": NaN, \"p99_ms\": NaN, \"max_ms\": NaN}\n",
               errors, elapsed);
        return 0;
    }
    qsort(latencies, latency_count, sizeof *latencies, compare);
    printf("{\"requests\": %zu, \"errors\": %ld, \"seconds\": %.3f, \"rate\": %.1f, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n",
           latency_count, errors, elapsed, (double)latency_count / elapsed, pick_ms(0.50),
           pick_ms(0.99), (double)latencies[latency_count - 1] / 1e6);
    return 0;
}
