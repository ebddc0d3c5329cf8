/* hdx sth: the newest signed tree head of a data directory's log, as JSON. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/err.h"
#include "merkle/sth.h"

static const char sth_usage[] =
    "usage: hdx sth -d DIR [--all]\n"
    "Prints the newest signed tree head of DIR's log as one line of JSON:\n"
    "{\"tree_size\":N,\"timestamp_ms\":T,\"root_hash\":\"hex\",\"signature\":\"hex\"}\n"
    "(format in docs/LOG-FORMAT.md). hdxd signs one at least every second while records\n"
    "arrive, with DIR/log.key; DIR/log.pub.pem verifies it. --all prints every head kept,\n"
    "oldest first, one per line. Exit 1 when there is none yet.\n";

static int print_sth(void *ctx, const struct hdx_sth *sth)
{
    char json[512];
    if (hdx_sth_json(sth, json, sizeof(json)) >= 0) puts(json);
    ++*(int *)ctx;
    return 0;
}

int cmd_sth(int argc, char **argv)
{
    const char *dir = NULL;
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d"))
            dir = cli_arg(argc, argv, &i);
        else if (!strcmp(argv[i], "--all"))
            all = 1;
        else {
            int help = !strcmp(argv[i], "--help");
            fputs(sth_usage, help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    if (!dir) {
        fputs(sth_usage, stderr);
        return 2;
    }
    struct cli_ctx ctx;
    struct hdx_sth sth;
    char json[512];
    if (cli_open(dir, 0, &ctx)) return 1;
    if (all) {
        int n = 0;
        hdx_store_sth_list(ctx.store, print_sth, &n);
        cli_close(&ctx);
        return n ? 0 : 1;
    }
    int rc = hdx_store_sth_latest(ctx.store, &sth);
    cli_close(&ctx);
    if (rc != HDX_OK || hdx_sth_json(&sth, json, sizeof(json)) < 0) {
        fprintf(stderr, "hdx sth: %s\n",
                rc == HDX_E_NOTFOUND ? "no signed tree head yet" : hdx_strerror(rc));
        return 1;
    }
    puts(json);
    return 0;
}
