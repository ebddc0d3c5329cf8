/* dcmjson_dump: test-only tool for tests/integration/dcmjson_oracle.py. Reads a DICOM Part 10
 * file (hdx_dcm_file_parse; a deflated data set inflated by hdx_ds_inflate), converts its data
 * set (group 0002 is not part of it) with hdx_dcmjson_dataset and prints the JSON, compact, on
 * stdout. Options: --inline-max N (default: inline every binary value, as dcm2json does),
 * --bulk URI, --skip-group-lengths. Exit 0; 1 refused by hdx (the reason on stderr); 2 the
 * file could not be read or is not Part 10. Not installed, not part of hdxd. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"
#include "dicom/dataset.h"
#include "dicom/dcmjson.h"

#define FILE_MAX ((size_t)512 << 20)

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL) return NULL;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *nb = ncap <= FILE_MAX ? realloc(buf, ncap) : NULL;
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    struct hdx_dcmjson_opts o = {NULL, SIZE_MAX, NULL, 0, (size_t)1 << 30};
    const char *path = NULL;
    struct hdx_dcm_file mf;
    struct hdx_ds_error err;
    uint8_t *buf, *ds, *inflated = NULL;
    size_t len, dslen;
    int deflated = 0;
    char why[128];
    json_t *j = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--inline-max") == 0 && i + 1 < argc)
            o.inline_max = (size_t)strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--bulk") == 0 && i + 1 < argc)
            o.bulk_uri = argv[++i];
        else if (strcmp(argv[i], "--skip-group-lengths") == 0)
            o.skip_group_lengths = 1;
        else
            path = argv[i];
    }
    if (path == NULL) {
        fprintf(stderr, "usage: dcmjson_dump [--inline-max N] [--bulk URI] file.dcm\n");
        return 2;
    }
    if ((buf = slurp(path, &len)) == NULL) {
        fprintf(stderr, "dcmjson_dump: cannot read the file\n");
        return 2;
    }
    if (hdx_dcm_file_parse(buf, len, &mf, &err) != HDX_OK) {
        fprintf(stderr, "dcmjson_dump: not Part 10: %s\n", err.why);
        free(buf);
        return 2;
    }
    enum hdx_ds_syntax syn = hdx_ds_syntax_of(mf.ts, &deflated);
    ds = buf + mf.dataset_off;
    dslen = len - mf.dataset_off;
    if (deflated) {
        if (hdx_ds_inflate(ds, dslen, FILE_MAX, &inflated, &dslen) != HDX_OK) {
            fprintf(stderr, "dcmjson_dump: inflate refused\n");
            free(buf);
            return 1;
        }
        ds = inflated;
    }
    int rc = hdx_dcmjson_dataset(ds, dslen, syn, &o, &j, why, sizeof why);
    free(inflated);
    free(buf);
    if (rc != HDX_OK) {
        fprintf(stderr, "dcmjson_dump: %s: %s\n", hdx_strerror(rc), why);
        return 1;
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL) return 1;
    puts(s);
    free(s);
    return 0;
}
