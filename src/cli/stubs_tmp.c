#include "cli/cli.h"
int cmd_sim(int argc, char **argv) { (void)argc; (void)argv; return 2; }
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return 2; }
