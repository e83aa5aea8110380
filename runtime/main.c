/* main.c — the nmc command line: global options, the command dispatch table, help and
 * version. Each command lives in its own file (runtime/cli_job.c, runtime/cmd_store.c, ...)
 * and receives the arguments after its name. Exit codes: 0 ok, 1 failure of the work
 * (e.g. an invalid job), 2 usage or I/O error.
 */
#include "cli.h"
#include "dataset.h"
#include "diag.h"
#include "store.h"
#include "train.h"
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the first argument after the name */
    const char *summary;
    const char *usage;                 /* printed by `nmc help NAME`; NULL: run NAME --help */
} command_t;

/* ======================= COMMAND DISPATCH TABLE =======================================
 * Add a command here: { name, entry point, one-line summary, usage text or NULL }.
 * ====================================================================================== */
static const command_t COMMANDS[] = {
    { "validate", nmc_cmd_validate, "check job files against a backend's schema and rules", NMC_USAGE_VALIDATE },
    { "explain", nmc_cmd_explain, "print a job with every default and derived value resolved", NMC_USAGE_EXPLAIN },
    { "schema", nmc_cmd_schema, "print a backend's JSON Schema", NMC_USAGE_SCHEMA },
    { "models", nmc_cmd_models, "import, list and show models in the local store", NULL },
    { "filesets", nmc_cmd_filesets, "import, list and show filesets in the local store", NULL },
    { "train", nmc_cmd_train, "fine-tune a model: run a job end to end", NULL },
    { "data", nmc_cmd_data, "inspect training data exactly as the model will see it", NULL },
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: nmc [--version] [--help] COMMAND [ARGS...]\n\n"
                 "nmc fine-tunes LLMs locally with NeMo Customizer's Automodel and Unsloth job schemas.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "  %-10s %s\n", "help", "show help for a command");
    fprintf(out, "\nRun `nmc help COMMAND` for a command's options.\n");
}

static const command_t *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(COMMANDS[i].name, name) == 0) return &COMMANDS[i];
    return NULL;
}

/* "did you mean" over the command names; NULL when nothing is close */
static const char *closest(const char *name)
{
    const char *best = NULL;
    size_t bd = 3, n = strlen(name);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        size_t d = nmc_edit_distance(name, n, COMMANDS[i].name, strlen(COMMANDS[i].name));
        if (d < bd) bd = d, best = COMMANDS[i].name;
    }
    if (!best && nmc_edit_distance(name, n, "help", 4) < 3) best = "help";
    return best;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "nmc: error: unknown command '%s'\n", name);
    const char *dym = closest(name);
    if (dym) fprintf(stderr, "help: did you mean `nmc %s`?\n", dym);
    else fprintf(stderr, "help: run `nmc --help` for the list of commands\n");
    return 2;
}

static int help(int argc, char **argv)
{
    if (argc == 0) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[0], "help") || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        fputs("usage: nmc help [COMMAND]\n\nWithout COMMAND: the list of commands. With one: its "
              "options (the same as `nmc COMMAND --help`).\n", stdout);
        return 0;
    }
    const command_t *c = find(argv[0]);
    if (!c) return unknown_command(argv[0]);
    if (c->usage) {
        fputs(c->usage, stdout);
        return 0;
    }
    char *args[] = { "--help", NULL };
    return c->run(1, args);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("nmc %s\n", NMC_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0) return help(argc - 2, argv + 2);
    if (cmd[0] == '-') {
        fprintf(stderr, "nmc: error: unknown option '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    const command_t *c = find(cmd);
    if (!c) return unknown_command(cmd);
    return c->run(argc - 2, argv + 2);
}
