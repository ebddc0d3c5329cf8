/* hdx: every hdx command but the daemon. `hdx help` lists them. */
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage_text[] =
    "usage: hdx COMMAND [ARGS]\n"
    "\n"
    "  init DIR                         create a data directory (CA, keys, store, hdx.conf)\n"
    "  device add|revoke|list ...       enrol, revoke and list device certificates\n"
    "  user add|passwd|lock|list ...    people: passwords, TOTP, recovery codes, sessions\n"
    "  client add|scope|revoke|list ... SMART Backend Services clients: JWK Sets, scopes\n"
    "  ae add|remove|list ...           DICOM AE titles bound to enrolled devices\n"
    "  training set USER YYYY-MM-DD     record a user's security-awareness training\n"
    "  careteam add|remove|list ...     which patients a clinician or nurse cares for\n"
    "  consent add|remove|list ...      patients' directives denying a purpose or a role\n"
    "  break-glass list|review ...      clinicians' emergency access grants and their review\n"
    "  send -d DIR --cert C --key K FILE...   send HL7 v2 over MLLP/TLS, print each ACK\n"
    "  tail -d DIR --cert C --key K     receive committed messages as they arrive\n"
    "  get SEQ -d DIR                   print one stored message\n"
    "  query -d DIR [filters]           list stored messages by patient, type, time\n"
    "  dicom ls|get -d DIR ...          stored DICOM instances; one back as a Part 10 file\n"
    "  audit query|disclosures -d DIR   the audit trail; disclosures of one patient\n"
    "  route list|status|retry|skip ... outbound routes: cursors, lag, dead letters\n"
    "  access-review -d DIR             who should lose access: dormant, unused, unreviewed\n"
    "  verify -d DIR                    check every record; exit 0 only if intact\n"
    "  sth -d DIR                       the newest signed tree head of the log, JSON\n"
    "  proof inclusion|consistency ...  Merkle proofs against signed tree heads, JSON\n"
    "  verify-proof --pubkey F PROOF    check a proof offline with the log's public key\n"
    "  witness -d DIR --cert C --key K  watch the log's signed heads for forks and rollbacks\n"
    "  receipt check RECEIPTS...        prove that the log holds what its receipts promise\n"
    "  sim -d DIR                       simulated bedside monitors streaming vitals\n"
    "  bench -d DIR                     ingest benchmark over mutual TLS\n"
    "\n"
    "`hdx COMMAND --help` describes each command. Exit status: 0 success, 1 failure,\n"
    "2 usage error.\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"init", cmd_init},
    {"device", cmd_device},
    {"user", cmd_user},
    {"client", cmd_client},
    {"ae", cmd_ae},
    {"training", cmd_training},
    {"send", cmd_send},
    {"tail", cmd_tail},
    {"get", cmd_get},
    {"query", cmd_query},
    {"dicom", cmd_dicom},
    {"verify", cmd_verify},
    {"sth", cmd_sth},
    {"proof", cmd_proof},
    {"verify-proof", cmd_verify_proof},
    {"witness", cmd_witness},
    {"receipt", cmd_receipt},
    {"sim", cmd_sim},
    {"bench", cmd_bench},
    {"audit", cmd_audit},
    {"careteam", cmd_careteam},
    {"consent", cmd_consent},
    {"break-glass", cmd_break_glass},
    {"access-review", cmd_access_review},
    {"route", cmd_route},
};

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("hdx %s\n", HDX_VERSION);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "hdx: unknown command '%s'\n%s", argv[1], usage_text);
    return 2;
}
