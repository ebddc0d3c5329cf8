/* hdx bench: the ingest benchmark (DESIGN "Performance model", BASELINES "How hdx is judged").
 * K mutual-TLS MLLP connections send ~1 KB ORU^R01 messages (the sim generator, padded with NTE
 * segments to --size), each keeping --inflight N messages outstanding (1: waiting for each ACK
 * before the next; more: pipelined, the ACKs matched in order by MSA-2), and the ACK latency
 * (send to ACK, per message) is measured after a warmup. Machines of
 * one kind differ from day to day, so the same run also measures this disk's fsync rate and
 * one core's AES-256-GCM and SHA-256 speed, and reports the result as a ratio to them.
 * Connections are set up with the blocking cli_connect, then handed to libevent
 * (bufferevent_openssl) in a few client threads: K = 64 or 1,000 connections then cost a
 * handful of OS threads, not one spinning thread each. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/sim.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/mllp.h"

#define BENCH_DEVICE "bench"
#define BENCH_MSG_MAX 2048
#define BENCH_INFLIGHT_MAX 256
#define BENCH_SIZE_MAX (1u << 20)
#define BENCH_NTE_MAX 60000 /* hdxd parses with a 65,536-byte field limit */
#define BENCH_ACK_MAX 65536
#define BENCH_TICK_MS 20
#define BENCH_DRAIN_NS 10000000000LL /* how long the last ACKs may take after the run */
#define BENCH_SERVER_WAIT_NS 30000000000LL
#define BENCH_CONNECT_TIMEOUT_MS 10000

/* An HDR-like log-linear histogram of latencies in ns: exact below 256 ns, then 128 linear
 * buckets per power of two, so any percentile is within 0.4% of the true sample. */
#define HIST_SUB_BITS 8
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_LEN ((64 - HIST_SUB_BITS + 2) * (HIST_SUB / 2))

static const char bench_usage[] =
    "usage: hdx bench -d DIR [--to HOST:PORT] [--connections K] [--seconds S] [--rate R]\n"
    "                 [--inflight N] [--size BYTES] [--patients P] [--warmup S]\n"
    "                 [--threads T]\n"
    "\n"
    "Measures durable HL7 ingest over mutual TLS. Without --to it starts its own hdxd (the\n"
    "one installed beside this hdx) on DIR, an initialised data directory, with its MLLP and\n"
    "subscriber listeners on free loopback ports and its log in DIR/bench-hdxd.log, and stops\n"
    "it with SIGTERM at the end. The device \"bench\" is enrolled in DIR if it is not yet.\n"
    "K connections (TCP_NODELAY) with that device's certificate each send ~1 KB ORU^R01\n"
    "vital-sign messages (as hdx sim does, every MSH-10 unique), or with --size messages of\n"
    "BYTES each (the same ORU^R01 followed by NTE segments of filler text, at most 60,000\n"
    "bytes each, so it stays valid for hdxd's field limit). Each connection keeps N messages\n"
    "outstanding (--inflight, default 1: it waits for each ACK before sending the next; with\n"
    "N > 1 it pipelines, sending a new message as each ACK comes back, and the ACKs must come in\n"
    "order: the oldest outstanding message's MSH-10 in MSA-2). Closed loop, or with --rate an\n"
    "open loop at R messages per second in total, spread over the connections (never more than\n"
    "N outstanding per connection; the output says whether the target rate was held). Latency\n"
    "runs from each message's send to its complete ACK frame and is counted after the warmup;\n"
    "every ACK must be AA for its message.\n"
    "Messages larger than DIR's mllp.max_message are refused by hdxd: without --to, bench then\n"
    "starts hdxd with -o mllp.max_message=BYTES; with --to, start it so yourself.\n"
    "In the same run it measures DIR's disk (1 KiB pwrite + fdatasync for 1 s) and one core's\n"
    "AES-256-GCM and SHA-256 speed on 1 KiB (OpenSSL EVP, 0.3 s each).\n"
    "\n"
    "  -d DIR            data directory (hdx.conf, ca.pem, devices/)\n"
    "  --to HOST:PORT    benchmark a running hdxd of DIR instead of starting one\n"
    "  --connections K   concurrent connections, 1-65535 (default 64)\n"
    "  --seconds S       measured duration after the warmup (default 10)\n"
    "  --rate R          total target rate in messages per second (default: closed loop)\n"
    "  --inflight N      messages outstanding per connection, 1-256 (default 1)\n"
    "  --size BYTES      HL7 payload bytes per message, up to 1048576 (default: the plain\n"
    "                    ~1 KB ORU^R01, no padding; smaller than that: no padding)\n"
    "  --patients P      spread the messages over P patients, 1-1000000, the connections\n"
    "                    taking turns through them (default: one patient per connection)\n"
    "  --warmup S        seconds sent but not measured, first (default 1)\n"
    "  --threads T       client event-loop threads, 1-64 (default 1)\n"
    "\n"
    "Output: human-readable lines, then a last line of key=value pairs:\n"
    "  msgs_per_s=N p50_ms=N p99_ms=N p999_ms=N server_rss_mib=N|na fsync_per_s=N\n"
    "  ratio_to_fsync=N inflight=N size=N mb_per_s=N connections=K client_cores=N\n"
    "server_rss_mib is the peak resident size (VmHWM) of the hdxd it started; na with --to.\n"
    "size is the mean HL7 payload of the messages sent (MLLP framing not counted); mb_per_s\n"
    "is the payload of the measured ACKed messages per second, in 10^6 bytes; client_cores\n"
    "is the CPU this process used over the run, in cores.\n"
    "Exit status: 0 when every message was acknowledged AA; 1 when any message failed, none\n"
    "was acknowledged, the run was interrupted or the setup failed; 2 usage error.\n";

static volatile sig_atomic_t bench_interrupted;

struct bench_opts {
    const char *dir, *to;
    double conns, seconds, rate, warmup, threads, inflight, size, patients;
};

struct hist {
    uint64_t n[HIST_LEN];
    uint64_t count, max;
};

struct bench_totals {
    uint64_t sent, acked, measured, aa, ae, ar;
    uint64_t bad;     /* ACKs not for this message, unparseable, or garbage on the wire */
    uint64_t lost;    /* messages whose ACK never came */
    uint64_t dropped; /* connections that ended before the run did */
    uint64_t behind;  /* --rate: sends more than one interval after their scheduled time */
    uint64_t sent_bytes, measured_bytes; /* HL7 payload bytes */
};

/* One message in flight on a connection. */
struct bslot {
    int64_t sent_ns;
    uint32_t len; /* payload bytes */
    char ctl[SIM_CONTROL_ID_LEN + 1];
};

struct bthread;

struct bconn {
    struct bthread *t;
    struct cli_conn conn; /* the socket and SSL; the bufferevent only borrows them */
    struct bufferevent *bev;
    struct event *due_timer; /* --rate: fires at the next scheduled send */
    unsigned index;
    unsigned outstanding, head; /* a ring of --inflight slots; head is the oldest in flight */
    int closed;
    uint64_t seq;
    int64_t due_ns;
    struct bslot *slots;
    struct sim_patient pat;
    struct sim_vitals vit;
};

struct bench {
    struct bench_opts o;
    char to[160], ca[HDX_PATH_MAX], cert[HDX_PATH_MAX], key[HDX_PATH_MAX], log[HDX_PATH_MAX];
    uint32_t run_tag;
    unsigned nconns, inflight;
    size_t pad_to, frame_cap, max_message; /* payload bytes; 0: no padding */
    char *filler;                          /* BENCH_NTE_MAX bytes of NTE-3 text */
    int64_t t_start, t_measure, t_end;     /* CLOCK_MONOTONIC ns */
    int64_t interval_ns;                   /* --rate: between two sends of one connection */
    pid_t server;
    double fsync_per_s, aes_per_s, sha_per_s, rss_mib;
    double client_cores, server_cores; /* CPU used over the run, in cores; server < 0: unknown */
};

struct bthread {
    struct bench *b;
    pthread_t tid;
    struct event_base *base;
    struct event *tick;
    struct bconn *conns;
    struct evbuffer *batch; /* the messages one turn of a connection sends, written at once */
    unsigned nconns, open;
    int64_t stopped_ns; /* when this thread stopped sending (interrupt or end) */
    struct bench_totals tot;
    struct hist hist;
};

static void on_stop_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU seconds (user + system) used so far by process pid, or by this process when pid is 0;
 * -1 when unknown. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long ut = 0, st = 0;
    if (!pid) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    }
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---------- latency histogram ---------- */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS + 1;
    return shift * (HIST_SUB / 2) + (unsigned)(v >> shift);
}

/* The middle of bucket idx: the inverse of hist_index, within half a bucket. */
static uint64_t hist_value(unsigned idx)
{
    if (idx < HIST_SUB) return idx;
    unsigned shift = idx / (HIST_SUB / 2) - 1;
    uint64_t lo = (uint64_t)(idx - shift * (HIST_SUB / 2)) << shift;
    return lo + ((1ULL << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->n[hist_index(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_LEN; i++)
        dst->n[i] += src->n[i];
    dst->count += src->count;
    if (src->max > dst->max) dst->max = src->max;
}

static double hist_quantile_ms(const struct hist *h, double q)
{
    if (!h->count) return 0;
    double want = q * (double)h->count; /* rounded up by hand: hdx does not link libm */
    uint64_t rank = (uint64_t)want, seen = 0;
    if ((double)rank < want) rank++;
    for (unsigned i = 0; i < HIST_LEN; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return (double)(v < h->max ? v : h->max) / 1e6;
        }
    }
    return (double)h->max / 1e6;
}

/* ---------- the machine's own limits ---------- */

/* 1 KiB overwritten in place and flushed, like pg_test_fsync: the cost of one durable commit
 * on DIR's filesystem, with no file growth to flush as well. */
static double measure_fsync(const char *dir)
{
    char path[HDX_PATH_MAX], block[1024];
    int n = snprintf(block, sizeof(block), "%s/.bench-fsync-", dir);
    if (n < 0 || (size_t)n >= sizeof(block)) return 0;
    int fd = hdx_mkstemp(block, path, sizeof(path));
    if (fd < 0) return 0;
    unlink(path); /* nothing is left behind, even if we are killed */
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < 64; i++)
        if (pwrite(fd, block, sizeof(block), (off_t)i * 1024) != (ssize_t)sizeof(block))
            return close(fd), 0;
    if (fsync(fd) != 0) return close(fd), 0;
    uint64_t count = 0;
    int64_t t0 = now_ns(), t = t0;
    while (t - t0 < 1000000000LL) {
        if (pwrite(fd, block, sizeof(block), (off_t)(count % 64) * 1024) !=
                (ssize_t)sizeof(block) ||
            fdatasync(fd) != 0)
            return close(fd), 0;
        count++;
        t = now_ns();
    }
    close(fd);
    return (double)count * 1e9 / (double)(t - t0);
}

/* Seals 1 KiB records with one key and a fresh IV each, as the store encrypts records. */
static double measure_aes_gcm(void)
{
    unsigned char key[32], iv[12] = {0}, in[1024], out[1024 + 16], tag[16];
    int len;
    uint64_t count = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER *aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!ctx || !aes || RAND_bytes(key, sizeof(key)) != 1 ||
        EVP_EncryptInit_ex2(ctx, aes, key, NULL, NULL) != 1)
        goto out;
    memset(in, 'a', sizeof(in));
    int64_t t0 = now_ns(), t = t0;
    while (t - t0 < 300000000LL) {
        for (int i = 0; i < 256; i++, count++) {
            memcpy(iv, &count, sizeof(count));
            if (EVP_EncryptInit_ex2(ctx, NULL, NULL, iv, NULL) != 1 ||
                EVP_EncryptUpdate(ctx, out, &len, in, sizeof(in)) != 1 ||
                EVP_EncryptFinal_ex(ctx, out + len, &len) != 1 ||
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag) != 1) {
                count = 0;
                goto out;
            }
        }
        t = now_ns();
    }
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_free(aes);
    EVP_CIPHER_CTX_free(ctx);
    return (double)count * 1e9 / (double)(t - t0);
out:
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_free(aes);
    EVP_CIPHER_CTX_free(ctx);
    return 0;
}

static double measure_sha256(void)
{
    unsigned char in[1024], md[32];
    uint64_t count = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
    double rate = 0;
    memset(in, 'a', sizeof(in));
    int64_t t0 = now_ns(), t = t0;
    while (ctx && sha && t - t0 < 300000000LL) {
        for (int i = 0; i < 256; i++, count++)
            if (EVP_DigestInit_ex2(ctx, sha, NULL) != 1 ||
                EVP_DigestUpdate(ctx, in, sizeof(in)) != 1 ||
                EVP_DigestFinal_ex(ctx, md, NULL) != 1)
                goto out;
        t = now_ns();
    }
    rate = t > t0 ? (double)count * 1e9 / (double)(t - t0) : 0;
out:
    EVP_MD_free(sha);
    EVP_MD_CTX_free(ctx);
    return rate;
}

/* ---------- the hdxd under test ---------- */

/* Two free loopback ports, both held until both are known so they differ. */
static int free_ports(int *p1, int *p2)
{
    int fds[2] = {-1, -1}, *ports[2] = {p1, p2}, rc = 0;
    for (int i = 0; i < 2; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            rc = -1;
            break;
        }
        *ports[i] = ntohs(sa.sin_port);
    }
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) close(fds[i]);
    return rc;
}

/* The hdxd beside this hdx, so a build tree benchmarks its own daemon. */
static int hdxd_path(char *out, size_t cap)
{
    char self[HDX_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return -1;
    self[n] = '\0';
    if (hdx_path(out, cap, dirname(self), "hdxd") != 0 || access(out, X_OK) != 0) return -1;
    return 0;
}

/* 1 once the log says the listeners are open, 0 not yet, -1 if hdxd died. */
static int server_ready(struct bench *b)
{
    int status;
    if (waitpid(b->server, &status, WNOHANG) == b->server) {
        b->server = 0;
        return -1;
    }
    uint8_t *log = NULL;
    size_t len = 0;
    int ready = hdx_read_file(b->log, 64u << 20, &log, &len) == HDX_OK &&
                strstr((const char *)log, "event=listening") != NULL;
    free(log);
    return ready;
}

static pid_t server_spawn(const char *exe, char *const *args, int logfd)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* child: only async-signal-safe calls until exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* if bench dies, its server must not linger */
    setpgid(0, 0); /* a Ctrl-C at the terminal reaches bench, which then stops hdxd in order */
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    execv(exe, args);
    _exit(127);
}

static int server_start(struct bench *b)
{
    char exe[HDX_PATH_MAX], conf[HDX_PATH_MAX], mllp[64], sub[64], maxmsg[64];
    int p1, p2;
    if (hdxd_path(exe, sizeof(exe)) != 0 || free_ports(&p1, &p2) != 0 ||
        hdx_path(conf, sizeof(conf), b->o.dir, "hdx.conf") != 0 ||
        hdx_path(b->log, sizeof(b->log), b->o.dir, "bench-hdxd.log") != 0) {
        fprintf(stderr, "hdx bench: cannot find hdxd beside hdx, or no free port\n");
        return -1;
    }
    snprintf(mllp, sizeof(mllp), "mllp.listen=127.0.0.1:%d", p1);
    snprintf(sub, sizeof(sub), "sub.listen=127.0.0.1:%d", p2);
    snprintf(b->to, sizeof(b->to), "127.0.0.1:%d", p1);
    char o[] = "-o", c[] = "-c", legacy[] = "legacy.listen=", name[] = "hdxd";
    char *args[] = {name, c, conf, o, mllp, o, sub, o, legacy, NULL, NULL, NULL};
    if (b->pad_to > b->max_message) { /* --size above DIR's limit: raise it for this run */
        snprintf(maxmsg, sizeof(maxmsg), "mllp.max_message=%zu", b->pad_to);
        args[9] = o;
        args[10] = maxmsg;
    }
    int logfd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        fprintf(stderr, "hdx bench: cannot create %s\n", b->log);
        return -1;
    }
    int64_t t0 = now_ns();
    b->server = server_spawn(exe, args, logfd);
    close(logfd);
    if (b->server < 0) {
        b->server = 0;
        fprintf(stderr, "hdx bench: cannot start %s\n", exe);
        return -1;
    }
    int ready = 0;
    while (!ready && !bench_interrupted && now_ns() - t0 < BENCH_SERVER_WAIT_NS) {
        usleep(10000);
        ready = server_ready(b);
    }
    if (ready != 1) {
        fprintf(stderr, "hdx bench: %s; see %s\n",
                bench_interrupted ? "interrupted" : "hdxd did not start", b->log);
        return -1;
    }
    printf("bench: started hdxd pid=%d mllp=%s in %.2f s, log %s\n", (int)b->server, b->to,
           (double)(now_ns() - t0) / 1e9, b->log);
    return 0;
}

/* VmHWM: the peak resident set of the whole run, read while hdxd still runs. */
static double server_peak_rss_mib(pid_t pid)
{
    char path[64], line[256];
    double kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

static void server_stop(struct bench *b)
{
    int status = 0;
    if (!b->server) return;
    b->rss_mib = server_peak_rss_mib(b->server);
    kill(b->server, SIGTERM);
    int64_t t0 = now_ns();
    pid_t r;
    while ((r = waitpid(b->server, &status, WNOHANG)) == 0 && now_ns() - t0 < 20000000000LL)
        usleep(10000);
    if (r == 0) {
        fprintf(stderr, "hdx bench: hdxd did not stop within 20 s; killing it\n");
        kill(b->server, SIGKILL);
        waitpid(b->server, &status, 0);
    } else if (r > 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        fprintf(stderr, "hdx bench: hdxd ended with status %d; see %s\n", status, b->log);
    }
    b->server = 0;
}

/* ---------- the client connections ---------- */

/* Stops a connection's callbacks; it is freed after the loop, never inside its own callback. */
static void conn_finish(struct bconn *c)
{
    if (c->closed) return;
    c->closed = 1;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (c->due_timer) evtimer_del(c->due_timer);
    if (--c->t->open == 0) event_base_loopexit(c->t->base, NULL);
}

/* The ORU^R01 of the next message, padded to --size with NTE segments, MLLP-framed into
 * frame[0, cap); returns the frame length, or 0 if it does not fit. */
static size_t conn_build(struct bconn *c, struct bslot *slot, uint8_t *frame, size_t cap)
{
    struct bench *b = c->t->b;
    char *msg = (char *)frame + 1;
    if (cap < 4) return 0;
    sim_vitals_step(&c->vit);
    sim_control_id(slot->ctl, b->run_tag, c->index, ++c->seq);
    if (b->o.patients) /* --patients: the connections take turns through them */
        sim_patient_init(&c->pat, 1 + (unsigned)(((c->index - 1) + (c->seq - 1) * b->nconns) %
                                                 (uint64_t)b->o.patients));
    size_t n = sim_oru_build(msg, cap - 3, &c->vit, &c->pat, BENCH_DEVICE, slot->ctl, hdx_now_us());
    if (!n) return 0;
    for (unsigned k = 1; n < b->pad_to; k++) {
        char head[32];
        int h = snprintf(head, sizeof(head), "NTE|%u|L|", k);
        size_t want = b->pad_to - n, room = cap - 3 - n;
        if (want < (size_t)h + 2 || room < (size_t)h + 2) break; /* too little left for one */
        size_t text = want - (size_t)h - 1;
        if (text > BENCH_NTE_MAX) text = BENCH_NTE_MAX;
        if (text > room - (size_t)h - 1) text = room - (size_t)h - 1;
        memcpy(msg + n, head, (size_t)h);
        memcpy(msg + n + h, b->filler, text);
        n += (size_t)h + text;
        msg[n++] = '\r';
    }
    frame[0] = MLLP_SB;
    frame[n + 1] = MLLP_EB;
    frame[n + 2] = MLLP_CR;
    slot->len = (uint32_t)n;
    return n + 3;
}

/* Queues one new message into the thread's batch; -1 on failure. */
static int conn_queue(struct bconn *c)
{
    struct bthread *t = c->t;
    struct bench *b = t->b;
    struct bslot *slot = &c->slots[(c->head + c->outstanding) % b->inflight];
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(t->batch, (ev_ssize_t)b->frame_cap, &v, 1) != 1) return -1;
    size_t len = conn_build(c, slot, v.iov_base, v.iov_len);
    if (!len) return -1;
    v.iov_len = len;
    slot->sent_ns = now_ns();
    if (evbuffer_commit_space(t->batch, &v, 1) != 0) return -1;
    c->outstanding++;
    t->tot.sent++;
    t->tot.sent_bytes += slot->len;
    return 0;
}

/* Sends what the connection may send now: up to --inflight outstanding, and with --rate only
 * what is due (else the timer is armed for the next due time). All of it goes out in one
 * bufferevent write, so N pipelined messages cost one TLS record batch, not N. */
static void conn_pump(struct bconn *c, int64_t now)
{
    struct bthread *t = c->t;
    struct bench *b = t->b;
    int64_t interval = b->interval_ns;
    while (!c->closed && c->outstanding < b->inflight) {
        if (t->stopped_ns) {
            if (!c->outstanding) conn_finish(c);
            break;
        }
        if (interval) {
            if (c->due_ns > now) {
                struct timeval tv = {(time_t)((c->due_ns - now) / 1000000000),
                                     (suseconds_t)((c->due_ns - now) % 1000000000 / 1000)};
                evtimer_add(c->due_timer, &tv);
                break;
            }
            if (now - c->due_ns > interval) t->tot.behind++;
            c->due_ns += interval;
        }
        if (conn_queue(c) != 0) {
            t->tot.dropped++;
            t->tot.lost += c->outstanding;
            c->outstanding = 0;
            conn_finish(c);
        }
    }
    size_t len = evbuffer_get_length(t->batch);
    if (!len) return;
    if (c->closed) {
        evbuffer_drain(t->batch, len);
        return;
    }
    if (len <= 262144) evbuffer_pullup(t->batch, -1); /* one chain: one SSL_write */
    if (bufferevent_write_buffer(c->bev, t->batch) != 0) {
        evbuffer_drain(t->batch, evbuffer_get_length(t->batch));
        t->tot.dropped++;
        t->tot.lost += c->outstanding;
        c->outstanding = 0;
        conn_finish(c);
    }
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
    struct bconn *c = arg;
    if (!c->closed) conn_pump(c, now_ns());
}

/* The ACK of the oldest message in flight (ACKs come in order). */
static void conn_acked(struct bconn *c, enum sim_ack a, int64_t now)
{
    struct bthread *t = c->t;
    struct bench *b = t->b;
    struct bslot *slot = &c->slots[c->head];
    c->head = (c->head + 1) % b->inflight;
    c->outstanding--;
    t->tot.acked++;
    if (a == SIM_ACK_BAD) { /* out of step with the server: nothing after it can be trusted */
        t->tot.bad++;
        t->tot.dropped++;
        t->tot.lost += c->outstanding;
        c->outstanding = 0;
        conn_finish(c);
        return;
    }
    if (a == SIM_ACK_AA)
        t->tot.aa++;
    else if (a == SIM_ACK_AE)
        t->tot.ae++;
    else
        t->tot.ar++;
    if (now >= b->t_measure && now < b->t_end && !bench_interrupted) {
        t->tot.measured++;
        t->tot.measured_bytes += slot->len;
        hist_add(&t->hist, (uint64_t)(now - slot->sent_ns));
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct bconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    while (!c->closed && (len = evbuffer_get_length(in)) > 0) {
        size_t want = len < BENCH_ACK_MAX ? len : BENCH_ACK_MAX;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want); /* ACKs are small */
        struct mllp_scan sc;
        if (!p) {
            c->t->tot.dropped++;
            c->t->tot.lost += c->outstanding;
            c->outstanding = 0;
            conn_finish(c);
            return;
        }
        size_t resume = 0;
        enum mllp_status st = mllp_scan(p, want, BENCH_ACK_MAX, &resume, &sc);
        if (st == MLLP_NEED_MORE && want < BENCH_ACK_MAX) break;
        if (st != MLLP_FRAME || !c->outstanding) {
            c->t->tot.bad++;
            c->t->tot.dropped++;
            c->t->tot.lost += c->outstanding;
            c->outstanding = 0;
            conn_finish(c);
            return;
        }
        int64_t now = now_ns();
        enum sim_ack a = sim_ack_check(p + sc.payload_off, sc.payload_len, c->slots[c->head].ctl);
        evbuffer_drain(in, sc.consumed);
        conn_acked(c, a, now);
    }
    if (!c->closed) conn_pump(c, now_ns());
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct bconn *c = arg;
    if (c->closed || !(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) return;
    c->t->tot.lost += c->outstanding;
    c->outstanding = 0;
    c->t->tot.dropped++;
    conn_finish(c);
}

/* Ends the run: no new sends after t_end, then BENCH_DRAIN_NS for the last ACKs. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bthread *t = arg;
    int64_t now = now_ns();
    if (!t->stopped_ns && (now >= t->b->t_end || bench_interrupted)) t->stopped_ns = now;
    if (!t->stopped_ns) return;
    int drained = now - t->stopped_ns > BENCH_DRAIN_NS;
    for (unsigned i = 0; i < t->nconns; i++) {
        struct bconn *c = &t->conns[i];
        if (c->closed || (c->outstanding && !drained)) continue;
        t->tot.lost += c->outstanding;
        c->outstanding = 0;
        conn_finish(c);
    }
}

static void *thread_main(void *arg)
{
    struct bthread *t = arg;
    int64_t now = now_ns();
    for (unsigned i = 0; i < t->nconns; i++)
        conn_pump(&t->conns[i], now);
    if (t->open) event_base_dispatch(t->base);
    return NULL;
}

static int conn_open(struct bench *b, struct bthread *t, unsigned index)
{
    struct bconn *c = &t->conns[t->nconns];
    char why[256];
    int one = 1;
    if (cli_connect(b->to, b->ca, b->cert, b->key, 0, BENCH_CONNECT_TIMEOUT_MS, &c->conn, why,
                    sizeof(why)) != 0) {
        fprintf(stderr, "hdx bench: connection %u: %s\n", index, why);
        return -1;
    }
    t->nconns++; /* from here on, thread cleanup frees c->conn */
    setsockopt(c->conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    evutil_make_socket_nonblocking(c->conn.fd);
    /* options 0: the bufferevent must not close the socket or free the SSL, so their owner
     * stays c->conn whether or not the call succeeds */
    c->bev =
        bufferevent_openssl_socket_new(t->base, c->conn.fd, c->conn.ssl, BUFFEREVENT_SSL_OPEN, 0);
    if (b->interval_ns) c->due_timer = evtimer_new(t->base, on_due, c);
    c->slots = calloc(b->inflight, sizeof(*c->slots));
    if (!c->bev || (b->interval_ns && !c->due_timer) || !c->slots) {
        fprintf(stderr, "hdx bench: out of memory for connection %u\n", index);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->t = t;
    c->index = index;
    sim_patient_init(&c->pat, index);
    sim_vitals_init(&c->vit, index);
    t->open++;
    return 0;
}

static int thread_init(struct bthread *t, struct bench *b, unsigned cap)
{
    struct event_config *cfg = event_config_new();
    struct timeval tick = {0, BENCH_TICK_MS * 1000};
    t->b = b;
    if (!cfg) return -1;
    /* one base per thread, touched by that thread only: no locks; precise timers for --rate */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_PRECISE_TIMER);
    t->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    t->conns = calloc(cap, sizeof(*t->conns));
    if (!t->base || !t->conns) return -1;
    for (unsigned i = 0; i < cap; i++)
        t->conns[i].conn.fd = -1;
    t->tick = event_new(t->base, -1, EV_PERSIST, on_tick, t);
    t->batch = evbuffer_new();
    return t->tick && t->batch && event_add(t->tick, &tick) == 0 ? 0 : -1;
}

static void thread_free(struct bthread *t)
{
    for (unsigned i = 0; t->conns && i < t->nconns; i++) {
        struct bconn *c = &t->conns[i];
        if (c->due_timer) event_free(c->due_timer);
        if (c->bev) bufferevent_free(c->bev);
        cli_disconnect(&c->conn);
        free(c->slots);
    }
    free(t->conns);
    if (t->batch) evbuffer_free(t->batch);
    if (t->tick) event_free(t->tick);
    if (t->base) event_base_free(t->base);
}

/* ---------- the run ---------- */

static int bench_connect(struct bench *b, struct bthread *th, unsigned nth)
{
    int64_t t0 = now_ns();
    for (unsigned i = 0; i < b->nconns; i++)
        if (bench_interrupted || conn_open(b, &th[i % nth], i + 1) != 0) return -1;
    printf("bench: %u connections as device %s (TLS, client certificate) in %.2f s\n", b->nconns,
           BENCH_DEVICE, (double)(now_ns() - t0) / 1e9);
    return 0;
}

static void bench_threads(struct bench *b, struct bthread *th, unsigned nth)
{
    unsigned started = 0;
    b->t_start = now_ns();
    b->t_measure = b->t_start + (int64_t)(b->o.warmup * 1e9);
    b->t_end = b->t_measure + (int64_t)(b->o.seconds * 1e9);
    /* --rate: stagger the connections over one interval, so the load is smooth from the start */
    for (unsigned i = 0; i < nth; i++)
        for (unsigned j = 0; j < th[i].nconns; j++)
            th[i].conns[j].due_ns =
                b->t_start + b->interval_ns * (int64_t)(th[i].conns[j].index - 1) / b->nconns;
    printf("bench: %s, %u in flight per connection, warmup %.3g s, measuring %.3g s, %u client "
           "thread%s\n",
           b->interval_ns    ? "open loop"
           : b->inflight > 1 ? "closed loop (pipelined: a new message for each ACK)"
                             : "closed loop (each connection waits for its ACK)",
           b->inflight, b->o.warmup, b->o.seconds, nth, nth > 1 ? "s" : "");
    fflush(stdout);
    double client0 = cpu_seconds(0), server0 = b->server ? cpu_seconds(b->server) : -1;
    for (; started < nth; started++)
        if (pthread_create(&th[started].tid, NULL, thread_main, &th[started]) != 0) {
            fprintf(stderr, "hdx bench: cannot start client thread\n");
            bench_interrupted = 1; /* the started ones stop at their next tick */
            break;
        }
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i].tid, NULL);
    double wall = (double)(now_ns() - b->t_start) / 1e9;
    double server1 = b->server ? cpu_seconds(b->server) : -1;
    b->client_cores = (cpu_seconds(0) - client0) / wall;
    b->server_cores = server0 >= 0 && server1 >= 0 ? (server1 - server0) / wall : -1;
}

static void totals_add(struct bench_totals *a, const struct bench_totals *b)
{
    a->sent += b->sent;
    a->acked += b->acked;
    a->measured += b->measured;
    a->aa += b->aa;
    a->ae += b->ae;
    a->ar += b->ar;
    a->bad += b->bad;
    a->lost += b->lost;
    a->dropped += b->dropped;
    a->behind += b->behind;
    a->sent_bytes += b->sent_bytes;
    a->measured_bytes += b->measured_bytes;
}

static void report_rate(const struct bench *b, const struct bench_totals *tot, double rate)
{
    if (!b->interval_ns) return;
    int held = rate >= 0.97 * b->o.rate;
    printf("bench: target %.1f msgs/s %s: achieved %.1f msgs/s; %.2f%% of sends were more than "
           "one interval (%.3f ms) late\n",
           b->o.rate, held ? "held" : "NOT held", rate,
           tot->sent ? 100.0 * (double)tot->behind / (double)tot->sent : 0.0,
           (double)b->interval_ns / 1e6);
}

/* Sums what the threads counted; the end of the measured window is earlier if interrupted. */
static int64_t bench_collect(const struct bench *b, const struct bthread *th, unsigned nth,
                             struct bench_totals *tot, struct hist *h)
{
    int64_t end = b->t_end;
    for (unsigned i = 0; i < nth; i++) {
        totals_add(tot, &th[i].tot);
        hist_merge(h, &th[i].hist);
        if (bench_interrupted && th[i].stopped_ns && th[i].stopped_ns < end) end = th[i].stopped_ns;
    }
    return end;
}

/* Prints the summary and the key=value line that must come last; returns the exit status. */
static int bench_report(const struct bench *b, const struct bench_totals *t, const struct hist *h,
                        int64_t end)
{
    struct bench_totals tot = *t;
    double secs = (double)(end - b->t_measure) / 1e9;
    double rate = secs > 0 ? (double)tot.measured / secs : 0;
    uint64_t failed = tot.ae + tot.ar + tot.bad + tot.lost;
    printf("bench: sent=%llu acked=%llu aa=%llu ae=%llu ar=%llu bad=%llu lost=%llu "
           "dropped_connections=%llu measured=%llu in %.3f s\n",
           (unsigned long long)tot.sent, (unsigned long long)tot.acked, (unsigned long long)tot.aa,
           (unsigned long long)tot.ae, (unsigned long long)tot.ar, (unsigned long long)tot.bad,
           (unsigned long long)tot.lost, (unsigned long long)tot.dropped,
           (unsigned long long)tot.measured, secs);
    printf("bench: ACK latency ms p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f\n",
           hist_quantile_ms(h, 0.5), hist_quantile_ms(h, 0.9), hist_quantile_ms(h, 0.99),
           hist_quantile_ms(h, 0.999), (double)h->max / 1e6);
    report_rate(b, &tot, rate);
    if (b->server_cores >= 0)
        printf("bench: CPU over the run: client %.2f cores, hdxd %.2f cores (machine: %ld)\n",
               b->client_cores, b->server_cores, sysconf(_SC_NPROCESSORS_ONLN));
    else
        printf("bench: CPU over the run: client %.2f cores\n", b->client_cores);
    char rss[32] = "na";
    if (b->rss_mib >= 0 && !b->o.to) snprintf(rss, sizeof(rss), "%.1f", b->rss_mib);
    printf("bench: ratios: %.3f x the fsync rate, %.4f x one core's AES-256-GCM rate, %.4f x "
           "its SHA-256 rate\n",
           b->fsync_per_s > 0 ? rate / b->fsync_per_s : 0,
           b->aes_per_s > 0 ? rate / b->aes_per_s : 0, b->sha_per_s > 0 ? rate / b->sha_per_s : 0);
    if (bench_interrupted) fprintf(stderr, "hdx bench: interrupted\n");
    if (failed || tot.dropped)
        fprintf(stderr, "hdx bench: %llu messages failed, %llu connections dropped\n",
                (unsigned long long)failed, (unsigned long long)tot.dropped);
    double size = tot.sent ? (double)tot.sent_bytes / (double)tot.sent : 0;
    double mbps = secs > 0 ? (double)tot.measured_bytes / secs / 1e6 : 0;
    printf("bench: %.1f msgs/s, %.1f MB/s of HL7 payload (%.0f bytes per message)\n", rate, mbps,
           size);
    printf("msgs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f server_rss_mib=%s "
           "fsync_per_s=%.1f ratio_to_fsync=%.3f inflight=%u size=%.0f mb_per_s=%.2f "
           "connections=%u client_cores=%.2f\n",
           rate, hist_quantile_ms(h, 0.5), hist_quantile_ms(h, 0.99), hist_quantile_ms(h, 0.999),
           rss, b->fsync_per_s, b->fsync_per_s > 0 ? rate / b->fsync_per_s : 0, b->inflight, size,
           mbps, b->nconns, b->client_cores);
    return failed || tot.dropped || !tot.aa || bench_interrupted ? 1 : 0;
}

/* ---------- setup ---------- */

static void bench_limits(struct bench *b)
{
    b->fsync_per_s = measure_fsync(b->o.dir);
    if (b->fsync_per_s > 0)
        printf("bench: disk fsync_per_s=%.1f (%.3f ms per 1 KiB pwrite+fdatasync in %s)\n",
               b->fsync_per_s, 1e3 / b->fsync_per_s, b->o.dir);
    else
        fprintf(stderr, "hdx bench: cannot measure the fsync rate in %s\n", b->o.dir);
    b->aes_per_s = measure_aes_gcm();
    b->sha_per_s = measure_sha256();
    printf("bench: one core aes256gcm_1k_per_s=%.0f (%.0f MB/s) sha256_1k_per_s=%.0f (%.0f MB/s)\n",
           b->aes_per_s, b->aes_per_s * 1024 / 1e6, b->sha_per_s, b->sha_per_s * 1024 / 1e6);
    fflush(stdout);
}

static int bench_prepare(struct bench *b)
{
    struct hdx_conf conf;
    char path[HDX_PATH_MAX], err[512] = "path too long";
    hdx_conf_defaults(&conf);
    if (hdx_path(path, sizeof(path), b->o.dir, "hdx.conf") ||
        hdx_conf_load(&conf, path, err, sizeof(err)) != HDX_OK ||
        hdx_path(b->ca, sizeof(b->ca), b->o.dir, "ca.pem")) {
        fprintf(stderr, "hdx bench: %s is not an hdx data directory (%s)\n", b->o.dir, err);
        return -1;
    }
    int rc = sim_enrol(b->o.dir, BENCH_DEVICE, "device", b->cert, b->key, sizeof(b->cert));
    if (rc < 0) return -1;
    if (rc == 1) printf("bench: enrolled device %s (%s)\n", BENCH_DEVICE, b->cert);
    b->run_tag = sim_run_tag();
    b->nconns = (unsigned)b->o.conns;
    b->inflight = (unsigned)b->o.inflight;
    b->max_message = conf.mllp_max_message;
    b->pad_to = (size_t)b->o.size;
    b->frame_cap = (b->pad_to > BENCH_MSG_MAX ? b->pad_to + 64 : BENCH_MSG_MAX) + 3;
    if (b->pad_to) {
        if (!(b->filler = malloc(BENCH_NTE_MAX))) return -1;
        for (size_t i = 0; i < BENCH_NTE_MAX; i++) /* text with no HL7 delimiter in it */
            b->filler[i] = i % 64 == 63 ? ' ' : (char)('A' + (i * 7) % 26);
    }
    if (b->o.to && b->pad_to > b->max_message)
        fprintf(stderr,
                "hdx bench: warning: --size %zu is above %s's mllp.max_message (%zu); the hdxd "
                "at %s must run with -o mllp.max_message=%zu\n",
                b->pad_to, b->o.dir, b->max_message, b->o.to, b->pad_to);
    b->interval_ns = b->o.rate > 0 ? (int64_t)(1e9 * b->nconns / b->o.rate) : 0;
    b->rss_mib = -1;
    if (b->o.to) snprintf(b->to, sizeof(b->to), "%s", b->o.to);
    return 0;
}

static int bench_main(struct bench *b)
{
    unsigned nth = (unsigned)b->o.threads;
    struct bthread *th = NULL;
    struct bench_totals tot = {0};
    struct hist *h = calloc(1, sizeof(*h));
    int64_t end = 0;
    int rc = 1, ran = 0;
    if (nth > b->nconns) nth = b->nconns;
    bench_limits(b);
    if (!h || (!b->o.to && server_start(b) != 0) || !(th = calloc(nth, sizeof(*th)))) goto out;
    for (unsigned i = 0; i < nth; i++)
        if (thread_init(&th[i], b, (b->nconns + nth - 1) / nth) != 0) goto out;
    if (bench_connect(b, th, nth) != 0) goto out;
    bench_threads(b, th, nth);
    end = bench_collect(b, th, nth, &tot, h);
    ran = 1;
out:
    for (unsigned i = 0; th && i < nth; i++) /* closes the connections before the server stops */
        thread_free(&th[i]);
    free(th);
    server_stop(b);
    if (ran) rc = bench_report(b, &tot, h, end);
    free(h);
    return rc;
}

static int bench_parse(int argc, char **argv, struct bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double *num = NULL, lo = 0, hi = 0;
        if (!strcmp(a, "--help")) return fputs(bench_usage, stdout), 1;
        if (!strcmp(a, "-d"))
            o->dir = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--to"))
            o->to = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--connections"))
            num = &o->conns, lo = 1, hi = 65535; /* 4 hex digits of MSH-10 */
        else if (!strcmp(a, "--seconds"))
            num = &o->seconds, lo = 0.1, hi = 1e6;
        else if (!strcmp(a, "--rate"))
            num = &o->rate, lo = 0.1, hi = 1e8;
        else if (!strcmp(a, "--warmup"))
            num = &o->warmup, lo = 0, hi = 1e6;
        else if (!strcmp(a, "--threads"))
            num = &o->threads, lo = 1, hi = 64;
        else if (!strcmp(a, "--inflight"))
            num = &o->inflight, lo = 1, hi = BENCH_INFLIGHT_MAX;
        else if (!strcmp(a, "--size"))
            num = &o->size, lo = 0, hi = BENCH_SIZE_MAX;
        else if (!strcmp(a, "--patients"))
            num = &o->patients, lo = 1, hi = 1e6;
        else
            return -1;
        if (num && sim_parse_number(a, cli_arg(argc, argv, &i), lo, hi, num) != 0) return -1;
    }
    if (!o->dir || o->conns != (unsigned)o->conns || o->threads != (unsigned)o->threads ||
        o->inflight != (unsigned)o->inflight || o->size != (size_t)o->size ||
        o->patients != (unsigned)o->patients)
        return -1;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    struct sigaction sa, old_int, old_term;
    if (!b) return 1;
    b->o = (struct bench_opts){NULL, NULL, 64, 10, 0, 1, 1, 1, 0, 0};
    int rc = bench_parse(argc, argv, &b->o);
    if (rc) {
        free(b);
        return rc > 0 ? 0 : (fputs(bench_usage, stderr), 2);
    }
    rc = 1;
    if (bench_prepare(b) == 0) {
        /* SIGINT/SIGTERM end the run early but still stop the server and print the figures */
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        bench_interrupted = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        rc = bench_main(b);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    free(b->filler);
    free(b);
    return rc;
}
