/* hdx ae add|remove|list: DICOM AE titles bound to enrolled devices. An association on the
 * DICOM TLS port is accepted only when its calling AE title is bound to the device its client
 * certificate names (net/dicom_session.h); the bindings are admin records (commit/admin.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "commit/admin.h"
#include "core/err.h"
#include "core/util.h"

static const char ae_usage[] =
    "usage: hdx ae add TITLE --device NAME -d DIR\n"
    "       hdx ae remove TITLE -d DIR\n"
    "       hdx ae list -d DIR\n"
    "\n"
    "add     binds the calling AE title TITLE to the enrolled device NAME: hdxd accepts a\n"
    "        DICOM association with this calling AE title only over a TLS connection whose\n"
    "        client certificate is NAME's (or, on dicom.plain_listen, from an allow-listed\n"
    "        address). A title belongs to one device; a device may have several titles.\n"
    "        TITLE: 1-16 printable ASCII characters, no backslash, no leading or trailing\n"
    "        space (PS3.5 AE). The binding is an admin record in the log (hdx verify checks\n"
    "        the dicom_aes table against them).\n"
    "remove  removes the binding: the title's next association is rejected (calling AE title\n"
    "        not recognized); open associations keep running until they end.\n"
    "list    prints TITLE device=NAME since=TIME for every binding.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static int usage(void)
{
    fputs(ae_usage, stderr);
    return 2;
}

static int ae_add(const char *dir, const char *title, const char *name)
{
    struct cli_ctx ctx;
    struct hdx_device d;
    struct hdx_dicom_ae cur;
    char why[256];
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = hdx_store_device_get(ctx.store, name, &d);
    if (rc != HDX_OK || d.revoked_us) {
        fprintf(stderr, "hdx ae add: %s\n", rc != HDX_OK ? "no such device" : "device is revoked");
        cli_close(&ctx);
        return 1;
    }
    rc = hdx_store_dicom_ae_get(ctx.store, title, &cur);
    if (rc == HDX_OK && strcmp(cur.name, name) != 0) {
        fprintf(stderr, "hdx ae add: AE title %s is bound to device %s (hdx ae remove it first)\n",
                title, cur.name);
        cli_close(&ctx);
        return 1;
    }
    if (rc == HDX_OK) {
        printf("%s device=%s unchanged\n", title, name);
        cli_close(&ctx);
        return 0;
    }
    struct hdx_admin a = {.op = HDX_ADMIN_AE_ADD};
    snprintf(a.name, sizeof(a.name), "%s", name);
    snprintf(a.title, sizeof(a.title), "%s", title);
    rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    if (rc == HDX_OK &&
        (hdx_store_dicom_ae_get(ctx.store, title, &cur) != HDX_OK || strcmp(cur.name, name) != 0)) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the store does not hold the binding after its record");
    }
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx ae add: %s\n", why);
        return 1;
    }
    printf("%s device=%s\n", title, name);
    return 0;
}

static int ae_remove(const char *dir, const char *title)
{
    struct cli_ctx ctx;
    struct hdx_dicom_ae cur;
    char why[256];
    if (cli_open(dir, 1, &ctx)) return 1;
    int rc = hdx_store_dicom_ae_get(ctx.store, title, &cur);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx ae remove: %s\n",
                rc == HDX_E_NOTFOUND ? "no such AE title" : hdx_strerror(rc));
        cli_close(&ctx);
        return 1;
    }
    struct hdx_admin a = {.op = HDX_ADMIN_AE_REMOVE};
    snprintf(a.title, sizeof(a.title), "%s", title);
    rc = cli_admin_run(dir, &ctx, &a, why, sizeof(why));
    if (rc == HDX_OK && hdx_store_dicom_ae_get(ctx.store, title, &cur) != HDX_E_NOTFOUND) {
        rc = HDX_E_STORE;
        snprintf(why, sizeof(why), "the store still holds the binding after its record");
    }
    cli_close(&ctx);
    if (rc != HDX_OK) {
        fprintf(stderr, "hdx ae remove: %s\n", why);
        return 1;
    }
    printf("%s removed\n", title);
    return 0;
}

static int print_ae(void *arg, const struct hdx_dicom_ae *a, int bad)
{
    char when[40];
    if (bad) {
        printf("%s damaged (run hdx verify)\n", a->title);
        return 0;
    }
    hdx_format_time(a->set_us, when, sizeof(when));
    printf("%s device=%s since=%s\n", a->title, a->name, when);
    return 0;
}

int cmd_ae(int argc, char **argv)
{
    const char *dir = NULL, *title = NULL, *device = NULL;
    if (argc < 2) return usage();
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        fputs(ae_usage, stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--device"))
            device = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--help")) {
            fputs(ae_usage, stdout);
            return 0;
        } else if (argv[i][0] != '-' && !title)
            title = argv[i];
        else
            return usage();
    }
    if (!dir) return usage();
    if (!strcmp(verb, "list")) {
        struct cli_ctx ctx;
        if (title || device) return usage();
        if (cli_open(dir, 0, &ctx)) return 1;
        int rc = hdx_store_dicom_aes_list(ctx.store, print_ae, NULL);
        cli_close(&ctx);
        if (rc != HDX_OK) fprintf(stderr, "hdx ae list: %s\n", hdx_strerror(rc));
        return rc == HDX_OK ? 0 : 1;
    }
    if (!title) return usage();
    if (!hdx_admin_ae_title_valid(title)) {
        fprintf(stderr,
                "hdx ae: '%s' is not an AE title (1-16 printable ASCII characters, no "
                "backslash, no leading or trailing space)\n",
                title);
        return 2;
    }
    if (!strcmp(verb, "add")) {
        if (!device) return usage();
        return ae_add(dir, title, device);
    }
    if (!strcmp(verb, "remove") && !device) return ae_remove(dir, title);
    return usage();
}
