/* hdx dicom ls|get: the DICOM instances in the log, read from the store file (like hdx get and
 * hdx query without --user, every read is an audit record first: cli_offline_audit). Each
 * instance is a record of kind dicom whose body is a Part 10 file: hdx's meta header, then the
 * data set exactly as the sender sent it (net/dicom_session.h). */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/err.h"
#include "core/util.h"
#include "crypto/keys.h"
#include "dicom/dataset.h"

static const char dicom_usage[] =
    "usage: hdx dicom ls -d DIR [--patient ID]\n"
    "       hdx dicom get SOPINSTANCEUID -d DIR -o FILE\n"
    "\n"
    "ls   one line per stored instance, oldest first: seq, time, sender, SOP class, study,\n"
    "     series and SOP instance UIDs, modality, study date. --patient ID lists only the\n"
    "     instances whose Patient ID (0010,0020) is ID (matched through its blind index:\n"
    "     the identifier itself is not in the store).\n"
    "get  writes the newest stored version of the instance to FILE (created with mode 0600,\n"
    "     never overwritten): a DICOM Part 10 file whose data set is byte for byte what the\n"
    "     sender sent, after hdx's meta header (transfer syntax as negotiated, source AE\n"
    "     title the calling AE). FILE - writes to standard output.\n"
    "\n"
    "Both decrypt the records: they are reads of PHI, each recorded in the audit trail\n"
    "(event access, action offline_read) before anything is printed.\n"
    "Exit status: 0 success, 1 failure (get: no such instance), 2 usage error.\n";

struct dicom_walk {
    struct cli_ctx *ctx;
    const char *want; /* get: the SOP Instance UID */
    int list;
    uint64_t found_seq;
    uint8_t *found;
    size_t found_len;
    uint8_t found_patient[HDX_BLIND_LEN];
    int failed;
    size_t n;
    struct cli_read_tally tally;
    int pass; /* 0: count what will be disclosed; 1: print */
};

static int each_instance(void *arg, const struct hdx_record *r)
{
    struct dicom_walk *w = arg;
    uint8_t *pt = NULL;
    size_t len = 0;
    struct hdx_dcm_file f;
    struct hdx_ds_error err;
    if (hdx_record_open(r, w->ctx->kr, &pt, &len) != HDX_OK) {
        fprintf(stderr, "hdx dicom: record %llu does not decrypt\n", (unsigned long long)r->seq);
        w->failed = 1;
        return 0;
    }
    if (hdx_dcm_file_parse(pt, len, &f, &err) != HDX_OK) {
        fprintf(stderr, "hdx dicom: record %llu is not a Part 10 file: %s\n",
                (unsigned long long)r->seq, err.why ? err.why : "?");
        w->failed = 1;
    } else if (w->list) {
        if (w->pass == 0) {
            if (!w->tally.first) w->tally.first = r->seq;
            w->tally.last = r->seq;
        } else {
            struct hdx_dcm_keys k;
            struct hdx_ds_limits lim;
            char when[40];
            enum hdx_ds_syntax syn = hdx_ds_syntax_of(f.ts, &(int){0});
            hdx_ds_limits_default(&lim);
            memset(&k, 0, sizeof(k));
            /* a deflated data set is listed from its meta header only */
            int ok = !strcmp(f.ts, "1.2.840.10008.1.2.1.99")
                         ? 0
                         : hdx_dcm_extract(pt + f.dataset_off, len - f.dataset_off, syn, &lim, &k,
                                           &err) == HDX_OK;
            hdx_format_time(r->time_us, when, sizeof(when));
            printf("seq=%llu time=%s sender=%s type=%s study=%s series=%s instance=%s "
                   "modality=%s study_date=%s\n",
                   (unsigned long long)r->seq, when, r->sender, r->type,
                   ok && k.study_uid[0] ? k.study_uid : "-",
                   ok && k.series_uid[0] ? k.series_uid : "-", f.sop_instance,
                   ok && k.modality[0] ? k.modality : "-",
                   ok && k.study_date[0] ? k.study_date : "-");
            sodium_memzero(&k, sizeof(k));
        }
        w->n++;
    } else if (!strcmp(f.sop_instance, w->want)) { /* the newest version wins */
        if (w->found) {
            sodium_memzero(w->found, w->found_len);
            free(w->found);
        }
        w->found = pt;
        w->found_len = len;
        w->found_seq = r->seq;
        memcpy(w->found_patient, r->patient, HDX_BLIND_LEN);
        return 0;
    }
    sodium_memzero(pt, len);
    free(pt);
    return 0;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = !strcmp(path, "-") ? STDOUT_FILENO
                                : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -errno;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            if (fd != STDOUT_FILENO) close(fd);
            return -e;
        }
        off += (size_t)w;
    }
    return fd != STDOUT_FILENO && close(fd) != 0 ? -errno : 0;
}

int cmd_dicom(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *patient = NULL, *uid = NULL;
    if (argc < 2) {
        fputs(dicom_usage, stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        fputs(dicom_usage, stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "-o"))
            out = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--patient"))
            patient = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help")) {
            fputs(dicom_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !uid)
            uid = argv[i];
        else {
            fputs(dicom_usage, stderr);
            return 2;
        }
    }
    int list = !strcmp(verb, "ls");
    if (!dir || (list ? uid || out : strcmp(verb, "get") || !uid || !out || patient)) {
        fputs(dicom_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    uint8_t token[HDX_BLIND_LEN];
    if (cli_open(dir, 0, &ctx)) return 1;
    struct hdx_store_filter flt = {.kind = HDX_KIND_DICOM};
    if (patient) {
        if (hdx_blind(ctx.kr, "patient", patient, strlen(patient), token) != HDX_OK) {
            fprintf(stderr, "hdx dicom: cannot make the patient's token\n");
            cli_close(&ctx);
            return 1;
        }
        flt.patient = token;
    }
    struct dicom_walk w = {.ctx = &ctx, .want = uid, .list = list};
    long rc = hdx_store_scan(ctx.store, &flt, 0, each_instance, &w);
    if (rc >= 0 && list) {
        /* what will be printed is on record first: one audit record for the listing */
        struct cli_read_tally t = {.has_patient = patient != NULL,
                                   .first = w.tally.first,
                                   .last = w.tally.last,
                                   .count = w.n};
        if (patient) memcpy(t.patient, token, HDX_BLIND_LEN);
        if (w.n) (void)cli_offline_audit(dir, "offline-dicom-ls", &t, 1);
        w.pass = 1;
        w.n = 0;
        rc = hdx_store_scan(ctx.store, &flt, 0, each_instance, &w);
    }
    cli_close(&ctx);
    if (rc < 0) {
        fprintf(stderr, "hdx dicom: cannot read the store: %s\n", hdx_strerror((int)rc));
        return 1;
    }
    if (list) return w.failed;
    if (!w.found) {
        fprintf(stderr, "hdx dicom get: no stored instance %s\n", uid);
        return 1;
    }
    static const uint8_t zero[HDX_BLIND_LEN];
    struct cli_read_tally t = {.has_patient = memcmp(w.found_patient, zero, HDX_BLIND_LEN) != 0,
                               .first = w.found_seq,
                               .last = w.found_seq,
                               .count = 1};
    memcpy(t.patient, w.found_patient, HDX_BLIND_LEN);
    (void)cli_offline_audit(dir, "offline-dicom-get", &t, 1);
    int wr = write_file(out, w.found, w.found_len);
    sodium_memzero(w.found, w.found_len);
    free(w.found);
    if (wr != 0) {
        fprintf(stderr, "hdx dicom get: %s: %s\n", out, strerror(-wr));
        return 1;
    }
    if (strcmp(out, "-") != 0)
        printf("seq=%llu file=%s bytes=%zu\n", (unsigned long long)w.found_seq, out, w.found_len);
    return 0;
}
