/* hdx sim: a fleet of simulated bedside monitors streaming vital signs over MLLP/TLS, and the
 * ORU^R01 generator that hdx bench shares (sim.h).
 * One thread per monitor, each with its own blocking TLS connection (cli_connect), as real
 * monitors have: a monitor sleeps on a condition variable between messages, so at the default
 * rate the fleet costs next to no CPU, and a stop wakes every monitor at once. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/sim.h"
#include "core/err.h"
#include "core/util.h"
#include "proto/hl7.h"
#include "proto/mllp.h"

#define SIM_MSG_MAX 2048
#define SIM_ACKBUF 16384
#define SIM_IO_TIMEOUT_MS 10000
#define SIM_BACKOFF_MIN_MS 250
#define SIM_BACKOFF_MAX_MS 8000
#define SIM_REPORT_US 5000000

/* ---------- the generator ---------- */

struct vital_def {
    const char *loinc, *name, *unit;
    const char *range;       /* reference range, OBX-7 */
    double norm_lo, norm_hi; /* the same range: values outside it are flagged L or H (OBX-8) */
    double lo, hi;           /* hard bounds of the walk */
    double base_lo, base_hi; /* where a patient's resting value is drawn from */
    double step;             /* typical change per message */
    int decimals;            /* 0 or 1 */
};

static const struct vital_def vitals[SIM_NVITALS] = {
    [SIM_HR] = {"8867-4", "Heart rate", "/min", "60-100", 60, 100, 50, 130, 64, 92, 1.5, 0},
    [SIM_SPO2] = {"59408-5", "SaO2 % BldA PulseOx", "%", "95-100", 95, 100, 88, 100, 94, 99, 0.4,
                  0},
    [SIM_SYS] = {"8480-6", "BP sys", "mm[Hg]", "90-140", 90, 140, 90, 170, 105, 140, 2, 0},
    [SIM_DIA] = {"8462-4", "BP dias", "mm[Hg]", "60-90", 60, 90, 50, 100, 62, 85, 1.5, 0},
    [SIM_RR] = {"9279-1", "Resp rate", "/min", "12-20", 12, 20, 8, 30, 12, 19, 0.6, 0},
    [SIM_TEMP] = {"8310-5", "Body temperature", "Cel", "36.1-37.8", 36.1, 37.8, 35.5, 39.5, 36.4,
                  37.5, 0.04, 1},
};

/* Invented names only: the simulator must never emit anything that could be real PHI. */
static const char *const families[] = {
    "Avery", "Brooks", "Castillo", "Dunmore",   "Ekwueme", "Falk",   "Garrow",   "Halloran",
    "Ibsen", "Jarvik", "Kestrel",  "Lindqvist", "Moravec", "Nakano", "Oyelaran", "Pell"};
static const char *const given_f[] = {"Ada", "Beatrix", "Clio", "Dagny", "Esme", "Freya", "Greta"};
static const char *const given_m[] = {"Anton", "Bram",  "Caspar", "Dario",
                                      "Emil",  "Felix", "Gideon"};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64*: fast, and plenty for synthetic vitals */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

void sim_patient_init(struct sim_patient *p, unsigned index)
{
    memset(p, 0, sizeof(*p));
    p->sex = index % 2 ? 'F' : 'M';
    const char *const *given = p->sex == 'F' ? given_f : given_m;
    snprintf(p->mrn, sizeof(p->mrn), "SIM-%u", 10000 + index);
    snprintf(p->family, sizeof(p->family), "%s", families[(index * 7) % HDX_ARRAY_LEN(families)]);
    snprintf(p->given, sizeof(p->given), "%s", given[(index / 2) % HDX_ARRAY_LEN(given_f)]);
    snprintf(p->dob, sizeof(p->dob), "%04u%02u%02u", 1940 + (index * 13) % 60, 1 + (index * 5) % 12,
             1 + (index * 11) % 28);
    snprintf(p->bed, sizeof(p->bed), "ICU-%02u", index % 100);
    snprintf(p->visit, sizeof(p->visit), "V%u", 50000 + index);
    p->house = 1 + (index * 37) % 240;
    p->zip = 1000 + (index * 7919) % 89000;
}

void sim_vitals_init(struct sim_vitals *v, uint64_t seed)
{
    /* splitmix64 spreads nearby seeds (monitor 1, 2, 3...) far apart */
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    v->rng = (z ^ (z >> 31)) | 1;
    for (int i = 0; i < SIM_NVITALS; i++) {
        const struct vital_def *d = &vitals[i];
        v->base[i] = d->base_lo + (d->base_hi - d->base_lo) * rng_unit(&v->rng);
        v->val[i] = v->base[i];
    }
}

void sim_vitals_step(struct sim_vitals *v)
{
    for (int i = 0; i < SIM_NVITALS; i++) {
        const struct vital_def *d = &vitals[i];
        /* the sum of three uniforms is a cheap bell curve; the pull towards the resting
         * value keeps the walk from sticking to a bound */
        double noise = (rng_unit(&v->rng) + rng_unit(&v->rng) + rng_unit(&v->rng) - 1.5) * 2;
        double x = v->val[i] + d->step * noise + 0.05 * (v->base[i] - v->val[i]);
        v->val[i] = x < d->lo ? d->lo : x > d->hi ? d->hi : x;
    }
    /* a diastolic pressure above the systolic one would be an impossible value */
    if (v->val[SIM_DIA] > v->val[SIM_SYS] - 20)
        v->val[SIM_DIA] =
            v->val[SIM_SYS] - 20 < vitals[SIM_DIA].lo ? vitals[SIM_DIA].lo : v->val[SIM_SYS] - 20;
}

uint32_t sim_run_tag(void)
{
    uint64_t s = (uint64_t)hdx_now_us() ^ ((uint64_t)getpid() << 40);
    return (uint32_t)(rng_next(&s) >> 32);
}

void sim_control_id(char *out, uint32_t run_tag, unsigned index, uint64_t seq)
{
    snprintf(out, SIM_CONTROL_ID_LEN + 1, "%08X%04X%08X", run_tag, index & 0xFFFFu,
             (unsigned)(seq & 0xFFFFFFFFu));
}

struct wbuf {
    char *p;
    size_t cap, len;
    int over;
};

__attribute__((format(printf, 2, 3))) static void wput(struct wbuf *w, const char *fmt, ...)
{
    va_list ap;
    if (w->over) return;
    va_start(ap, fmt);
    int n = vsnprintf(w->p + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len)
        w->over = 1;
    else
        w->len += (size_t)n;
}

/* Appends strings up to a NULL: the OBX segments are most of a message, and plain copies cost
 * a third of what vsnprintf does, which matters when bench builds 50,000 messages a second. */
__attribute__((sentinel)) static void wcat(struct wbuf *w, ...)
{
    va_list ap;
    va_start(ap, w);
    for (const char *s; !w->over && (s = va_arg(ap, const char *)) != NULL;) {
        size_t n = strlen(s);
        if (n >= w->cap - w->len)
            w->over = 1;
        else {
            memcpy(w->p + w->len, s, n + 1);
            w->len += n;
        }
    }
    va_end(ap);
}

/* HL7 DTM, always UTC so the receiver needs no local zone: MSH-7 (when the message was made)
 * to the millisecond, observation times to the second as monitors report them. */
static void hl7_time(int64_t time_us, int with_ms, char *out, size_t cap)
{
    time_t s = (time_t)(time_us / 1000000);
    struct tm tm;
    char ms[8] = "";
    gmtime_r(&s, &tm);
    if (with_ms) snprintf(ms, sizeof(ms), ".%03d", (int)(time_us / 1000 % 1000));
    snprintf(out, cap, "%04d%02d%02d%02d%02d%02d%s+0000", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void put_obx(struct wbuf *w, int i, const struct sim_vitals *v, const char *ts,
                    const char *device)
{
    const struct vital_def *d = &vitals[i];
    char num[24];
    /* round to the precision sent first, so the flag agrees with the value a reader sees */
    long scaled = (long)(v->val[i] * (d->decimals ? 10 : 1) + 0.5);
    double shown = d->decimals ? (double)scaled / 10 : (double)scaled;
    if (d->decimals)
        snprintf(num, sizeof(num), "%ld.%ld", scaled / 10, scaled % 10);
    else
        snprintf(num, sizeof(num), "%ld", scaled);
    const char *flag = shown < d->norm_lo ? "L" : shown > d->norm_hi ? "H" : "N";
    char set_id[2] = {(char)('1' + i), '\0'}; /* SIM_NVITALS < 10 */
    wcat(w, "OBX|", set_id, "|NM|", d->loinc, "^", d->name, "^LN||", num, "|", d->unit, "^",
         d->unit, "^UCUM|", d->range, "|", flag, "|||F|||", ts, "||||", device, "\r", (char *)NULL);
}

size_t sim_oru_build(char *out, size_t cap, const struct sim_vitals *v, const struct sim_patient *p,
                     const char *device, const char *control_id, int64_t time_us)
{
    static const struct hl7_delims dl = {'|', '^', '~', '\\', '&', 0};
    char ts[96], obs[96], dev[200], ctl[200];
    struct wbuf w = {out, cap, 0, cap == 0};
    /* the caller's names reach the message escaped, so no delimiter can shift a field */
    if (hl7_escape(&dl, device, dev, sizeof(dev)) < 0 ||
        hl7_escape(&dl, control_id, ctl, sizeof(ctl)) < 0)
        return 0;
    hl7_time(time_us, 1, ts, sizeof(ts));
    hl7_time(time_us, 0, obs, sizeof(obs));
    wput(&w,
         "MSH|^~\\&|%s|HDXSIM|HDX|HOSPITAL|%s||ORU^R01^ORU_R01|%s|P|2.5.1||||||UNICODE UTF-8|||"
         "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO\r",
         dev, ts, ctl);
    wput(&w,
         "PID|1||%s^^^HDXSIM^MR||%s^%s^^^^^L||%s|%c|||"
         "%u Harbour Road^^Springfield^^%05u^USA|||||||%s\r",
         p->mrn, p->family, p->given, p->dob, p->sex, p->house, p->zip, p->visit);
    wput(&w, "PV1|1|I|ICU^^%s^HDXSIM||||4711^Okonjo^Maren^^^Dr|||MED|||||||||%s\r", p->bed,
         p->visit);
    wput(&w, "OBR|1|%s||182777000^Monitoring of patient^SCT|||%s||||||||||||||||||F\r", ctl, obs);
    for (int i = 0; i < SIM_NVITALS; i++)
        put_obx(&w, i, v, obs, dev);
    return w.over ? 0 : w.len;
}

enum sim_ack sim_ack_check(const uint8_t *ack, size_t len, const char *control_id)
{
    struct hl7_msg m;
    struct hl7_error e;
    struct hl7_view v;
    char code[4] = "", id[200] = "";
    enum sim_ack r = SIM_ACK_BAD;
    memset(&m, 0, sizeof(m));
    if (hl7_parse(ack, len, NULL, &m, &e) != 0) return SIM_ACK_BAD;
    if (hl7_get(&m, "MSA", 1, 1, 1, 0, 0, &v) == 0 &&
        hl7_unescape(&m, v, code, sizeof(code)) >= 0) {
        if (hl7_get(&m, "MSA", 1, 2, 1, 0, 0, &v) != 0 || hl7_unescape(&m, v, id, sizeof(id)) < 0)
            id[0] = '\0';
        /* a refusal may not echo our id (the message may not have parsed); an AA must */
        if (!strcmp(code, "AE") || !strcmp(code, "AR"))
            r = code[1] == 'E' ? SIM_ACK_AE : SIM_ACK_AR;
        else if (!strcmp(code, "AA") && !strcmp(id, control_id))
            r = SIM_ACK_AA;
    }
    hl7_msg_free(&m);
    return r;
}

int sim_enrol(const char *dir, const char *name, const char *role, char *cert, char *key,
              size_t cap)
{
    int n1 = snprintf(cert, cap, "%s/devices/%s.pem", dir, name);
    int n2 = snprintf(key, cap, "%s/devices/%s.key", dir, name);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= cap || (size_t)n2 >= cap) {
        fprintf(stderr, "hdx: path too long for device %s\n", name);
        return -1;
    }
    if (access(cert, F_OK) == 0) return 0;
    /* exactly what `hdx device add` does; cmd_device wants mutable strings */
    char a0[] = "device", a1[] = "add", a3[] = "-d", a5[] = "--role", nm[128], d[HDX_PATH_MAX],
         r[32];
    snprintf(nm, sizeof(nm), "%s", name);
    snprintf(d, sizeof(d), "%s", dir);
    snprintf(r, sizeof(r), "%s", role);
    char *argv[] = {a0, a1, nm, a3, d, a5, r, NULL};
    /* its cert=/key= lines would only clutter our output: silence stdout, keep stderr */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && devnull >= 0) dup2(devnull, STDOUT_FILENO);
    int rc = cmd_device(7, argv);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, STDOUT_FILENO);
        close(saved);
    }
    if (devnull >= 0) close(devnull);
    return rc == 0 ? 1 : -1;
}

int sim_parse_number(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "hdx: %s must be a number from %g to %g\n", opt, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---------- the fleet ---------- */

static const char sim_usage[] =
    "usage: hdx sim -d DIR [--monitors N] [--rate R] [--seconds S] [--to HOST:PORT]\n"
    "               [--prefix NAME] [--quiet]\n"
    "\n"
    "Simulates a fleet of bedside monitors. Monitor i is the device PREFIX-NN (monitor-01,\n"
    "monitor-02, ...); when DIR/devices/PREFIX-NN.pem does not exist it is enrolled first, as\n"
    "`hdx device add PREFIX-NN -d DIR` does. Each monitor keeps its own MLLP connection with\n"
    "mutual TLS and streams HL7 v2.5.1 ORU^R01 messages for its synthetic patient (MRN\n"
    "SIM-100NN, bed ICU-NN): heart rate, SpO2, systolic and diastolic pressure, respiratory\n"
    "rate and temperature, with LOINC codes and UCUM units, as bounded random walks. Like a\n"
    "real device it waits for each ACK before the next message; after a lost connection it\n"
    "reconnects with backoff and resends the unacknowledged message (hdxd recognises the\n"
    "duplicate by its MSH-10). Every name and value is invented.\n"
    "\n"
    "  -d DIR           data directory (hdx.conf, ca.pem, devices/)\n"
    "  --monitors N     number of monitors, 1-1000 (default 8)\n"
    "  --rate R         messages per second for the whole fleet (default 8)\n"
    "  --seconds S      stop after S seconds (default 0: run until SIGINT or SIGTERM)\n"
    "  --to HOST:PORT   where hdxd listens (default: mllp.listen of DIR/hdx.conf)\n"
    "  --prefix NAME    device name prefix (default monitor)\n"
    "  --quiet          no progress line every 5 seconds, only the final line\n"
    "\n"
    "Output: every 5 s and at the end one line with sent= (new messages), acked= (ACKs\n"
    "received), errors= (AE, AR, unusable ACKs and failed exchanges), aa=, ae=, ar=,\n"
    "resent= and reconnects=.\n"
    "Exit status: 0 clean stop (--seconds elapsed, SIGINT or SIGTERM) after at least one\n"
    "acknowledged message; 1 setup failure, or no message acknowledged; 2 usage error.\n";

struct fleet {
    const char *to, *ca;
    unsigned n;
    int64_t interval_us; /* between two messages of one monitor */
    uint32_t run_tag;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on stop, so no monitor sleeps through it */
    int stop;
    atomic_uint_fast64_t sent, acked, aa, ae, ar, errors, resent, reconnects;
    atomic_uint connected;
};

struct monitor {
    struct fleet *f;
    pthread_t tid;
    unsigned index;
    char name[96], cert[HDX_PATH_MAX], key[HDX_PATH_MAX];
    struct sim_patient pat;
    struct sim_vitals vit;
    struct cli_conn conn;
    int connected, ever_connected;
    int pending; /* frame holds a message still waiting for its ACK: resend it, not a new one */
    int backoff_ms;
    int outage_logged; /* one stderr line per outage, not one per attempt */
    uint64_t seq;
    char ctl[SIM_CONTROL_ID_LEN + 1];
    uint8_t frame[SIM_MSG_MAX + 3];
    size_t frame_len;
    uint8_t in[SIM_ACKBUF];
    size_t have;
};

/* Sleeps until the monotonic time due_us; returns 1 as soon as the fleet is stopping. */
static int fleet_sleep_until(struct fleet *f, int64_t due_us)
{
    struct timespec ts = {(time_t)(due_us / 1000000), (long)(due_us % 1000000) * 1000};
    pthread_mutex_lock(&f->mu);
    while (!f->stop && pthread_cond_timedwait(&f->cv, &f->mu, &ts) != ETIMEDOUT)
        ;
    int stop = f->stop;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

/* Exponential backoff with jitter, so a restarted hdxd is not hit by the whole fleet at once. */
static int64_t monitor_backoff_us(struct monitor *m)
{
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : SIM_BACKOFF_MIN_MS;
    if (m->backoff_ms > SIM_BACKOFF_MAX_MS) m->backoff_ms = SIM_BACKOFF_MAX_MS;
    return (int64_t)(m->backoff_ms * 1000.0 * (0.75 + 0.5 * rng_unit(&m->vit.rng)));
}

static void monitor_disconnect(struct monitor *m)
{
    if (!m->connected) return;
    cli_disconnect(&m->conn);
    m->connected = 0;
    atomic_fetch_sub(&m->f->connected, 1);
}

static int monitor_connect(struct monitor *m)
{
    char why[256];
    if (cli_connect(m->f->to, m->f->ca, m->cert, m->key, 0, SIM_IO_TIMEOUT_MS, &m->conn, why,
                    sizeof(why)) != 0) {
        if (!m->outage_logged)
            fprintf(stderr, "hdx sim: %s: %s; retrying with backoff\n", m->name, why);
        m->outage_logged = 1;
        return -1;
    }
    m->connected = 1;
    m->have = 0;
    atomic_fetch_add(&m->f->connected, 1);
    if (m->ever_connected) atomic_fetch_add(&m->f->reconnects, 1);
    m->ever_connected = 1;
    return 0;
}

static int monitor_next_message(struct monitor *m)
{
    char msg[SIM_MSG_MAX];
    sim_vitals_step(&m->vit);
    sim_control_id(m->ctl, m->f->run_tag, m->index, ++m->seq);
    size_t n = sim_oru_build(msg, sizeof(msg), &m->vit, &m->pat, m->name, m->ctl, hdx_now_us());
    m->frame_len = n ? mllp_wrap((const uint8_t *)msg, n, m->frame, sizeof(m->frame)) : 0;
    if (!m->frame_len) return -1;
    m->pending = 1;
    atomic_fetch_add(&m->f->sent, 1);
    return 0;
}

static int monitor_read_ack(struct monitor *m, struct mllp_scan *sc)
{
    for (;;) {
        size_t resume = 0;
        if (m->have && mllp_scan(m->in, m->have, SIM_ACKBUF - 3, &resume, sc) == MLLP_FRAME)
            return 0;
        if (m->have == SIM_ACKBUF) return -1;
        long n = cli_read(&m->conn, m->in + m->have, SIM_ACKBUF - m->have);
        if (n <= 0) return -1;
        m->have += (size_t)n;
    }
}

/* Sends the pending message (or a new one) and waits for its ACK, as a monitor does. */
static int monitor_exchange(struct monitor *m)
{
    struct fleet *f = m->f;
    struct mllp_scan sc;
    if (m->pending)
        atomic_fetch_add(&f->resent, 1);
    else if (monitor_next_message(m) != 0)
        return -1;
    if (cli_write(&m->conn, m->frame, m->frame_len) != 0 || monitor_read_ack(m, &sc) != 0) {
        atomic_fetch_add(&f->errors, 1);
        monitor_disconnect(m);
        return -1;
    }
    enum sim_ack a = sim_ack_check(m->in + sc.payload_off, sc.payload_len, m->ctl);
    memmove(m->in, m->in + sc.consumed, m->have - sc.consumed);
    m->have -= sc.consumed;
    if (a == SIM_ACK_BAD) { /* not an answer to this message: start over, resend it */
        atomic_fetch_add(&f->errors, 1);
        monitor_disconnect(m);
        return -1;
    }
    m->pending = 0; /* AE/AR: the receiver has decided; resending would not change that */
    atomic_fetch_add(&f->acked, 1);
    atomic_fetch_add(a == SIM_ACK_AA ? &f->aa : a == SIM_ACK_AE ? &f->ae : &f->ar, 1);
    if (a != SIM_ACK_AA) atomic_fetch_add(&f->errors, 1);
    return 0;
}

static void *monitor_main(void *arg)
{
    struct monitor *m = arg;
    struct fleet *f = m->f;
    /* stagger the monitors over one interval: the fleet's rate is then smooth, not bursts */
    int64_t due = hdx_monotonic_us() + f->interval_us * (m->index - 1) / f->n;
    while (!fleet_sleep_until(f, due)) {
        int64_t now = hdx_monotonic_us();
        if ((!m->connected && monitor_connect(m) != 0) || monitor_exchange(m) != 0) {
            due = now + monitor_backoff_us(m);
            continue;
        }
        m->backoff_ms = 0;
        m->outage_logged = 0;
        due += f->interval_us;
        if (due < now - f->interval_us) /* after a long stall, resume the pace; no burst */
            due = now;
    }
    monitor_disconnect(m);
    return NULL;
}

static void fleet_print(struct fleet *f, const char *what, int64_t elapsed_us)
{
    double s = (double)elapsed_us / 1e6;
    printf("sim: %s t=%.1fs sent=%llu acked=%llu errors=%llu aa=%llu ae=%llu ar=%llu "
           "resent=%llu reconnects=%llu connected=%u/%u rate=%.1f/s\n",
           what, s, (unsigned long long)f->sent, (unsigned long long)f->acked,
           (unsigned long long)f->errors, (unsigned long long)f->aa, (unsigned long long)f->ae,
           (unsigned long long)f->ar, (unsigned long long)f->resent,
           (unsigned long long)f->reconnects, (unsigned)f->connected, f->n,
           s > 0 ? (double)f->acked / s : 0.0);
    fflush(stdout);
}

/* The main thread only waits for signals and the clock; monitors never see a signal. */
static void fleet_wait(struct fleet *f, const sigset_t *sigs, double seconds, int quiet)
{
    int64_t t0 = hdx_monotonic_us(), next = t0 + SIM_REPORT_US;
    int64_t end = seconds > 0 ? t0 + (int64_t)(seconds * 1e6) : INT64_MAX;
    for (;;) {
        int64_t now = hdx_monotonic_us();
        if (now >= end) return;
        if (now >= next) {
            if (!quiet) fleet_print(f, "progress", now - t0);
            next += SIM_REPORT_US;
            continue;
        }
        int64_t wait = (next < end ? next : end) - now;
        struct timespec ts = {(time_t)(wait / 1000000), (long)(wait % 1000000) * 1000};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) return;
    }
}

static int fleet_run(struct fleet *f, struct monitor *mons, double seconds, int quiet)
{
    sigset_t sigs;
    pthread_condattr_t ca;
    unsigned started = 0;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    /* blocked before the threads exist, so they inherit the mask; left blocked afterwards, so a
     * second Ctrl-C during the shutdown cannot turn a clean stop into a kill */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the sleeps use hdx_monotonic_us */
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&f->mu, NULL);
    int64_t t0 = hdx_monotonic_us();
    for (; started < f->n; started++)
        if (pthread_create(&mons[started].tid, NULL, monitor_main, &mons[started]) != 0) {
            fprintf(stderr, "hdx sim: cannot start monitor thread %u\n", started + 1);
            break;
        }
    if (started == f->n) fleet_wait(f, &sigs, seconds, quiet);
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(mons[i].tid, NULL);
    fleet_print(f, "stopped", hdx_monotonic_us() - t0);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    if (started < f->n) return 1;
    if (!f->acked) fprintf(stderr, "hdx sim: no message was acknowledged\n");
    return f->acked ? 0 : 1;
}

static int fleet_setup(struct fleet *f, struct monitor *mons, const char *dir, const char *prefix,
                       int quiet)
{
    f->run_tag = sim_run_tag();
    for (unsigned i = 0; i < f->n; i++) {
        struct monitor *m = &mons[i];
        m->f = f;
        m->index = i + 1;
        m->conn.fd = -1;
        snprintf(m->name, sizeof(m->name), "%s-%02u", prefix, m->index);
        int rc = sim_enrol(dir, m->name, "device", m->cert, m->key, sizeof(m->cert));
        if (rc < 0) return -1;
        if (rc == 1 && !quiet) printf("sim: enrolled device %s (%s)\n", m->name, m->cert);
        sim_patient_init(&m->pat, m->index);
        sim_vitals_init(&m->vit, m->index); /* bed i's patient keeps its resting vitals */
    }
    return 0;
}

struct sim_opts {
    const char *dir, *to, *prefix;
    double monitors, rate, seconds;
    int quiet;
};

static int sim_parse(int argc, char **argv, struct sim_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) return fputs(sim_usage, stdout), 1;
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (!strcmp(a, "-d"))
            o->dir = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--to"))
            o->to = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--prefix"))
            o->prefix = cli_arg(argc, argv, &i);
        else if (!strcmp(a, "--monitors")) {
            if (sim_parse_number(a, cli_arg(argc, argv, &i), 1, 1000, &o->monitors)) return -1;
        } else if (!strcmp(a, "--rate")) {
            if (sim_parse_number(a, cli_arg(argc, argv, &i), 0.001, 1e6, &o->rate)) return -1;
        } else if (!strcmp(a, "--seconds")) {
            if (sim_parse_number(a, cli_arg(argc, argv, &i), 0, 1e9, &o->seconds)) return -1;
        } else
            return -1;
    }
    return o->dir && o->monitors == (unsigned)o->monitors ? 0 : -1;
}

int cmd_sim(int argc, char **argv)
{
    struct sim_opts o = {NULL, NULL, "monitor", 8, 8, 0, 0};
    int rc = sim_parse(argc, argv, &o);
    if (rc) return rc > 0 ? 0 : (fputs(sim_usage, stderr), 2);
    struct hdx_conf conf;
    char ca[HDX_PATH_MAX], path[HDX_PATH_MAX], err[512] = "path too long";
    hdx_conf_defaults(&conf);
    if (hdx_path(path, sizeof(path), o.dir, "hdx.conf") ||
        hdx_conf_load(&conf, path, err, sizeof(err)) != HDX_OK ||
        hdx_path(ca, sizeof(ca), o.dir, "ca.pem")) {
        fprintf(stderr, "hdx sim: %s is not an hdx data directory (%s)\n", o.dir, err);
        return 1;
    }
    struct fleet *f = calloc(1, sizeof(*f));
    struct monitor *mons = calloc((size_t)o.monitors, sizeof(*mons));
    rc = 1;
    if (f && mons) {
        f->to = o.to ? o.to : conf.mllp_listen;
        f->ca = ca;
        f->n = (unsigned)o.monitors;
        f->interval_us = (int64_t)(1e6 * f->n / o.rate);
        if (fleet_setup(f, mons, o.dir, o.prefix, o.quiet) == 0) {
            if (!o.quiet)
                printf("sim: %u monitors -> %s, %.3g msgs/s in total\n", f->n, f->to, o.rate);
            fflush(stdout); /* before the monitors' stderr lines, also when redirected */
            rc = fleet_run(f, mons, o.seconds, o.quiet);
        }
    }
    free(mons);
    free(f);
    return rc;
}
