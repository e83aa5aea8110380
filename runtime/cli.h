/* cli.h — the job commands of the nmc CLI (runtime/cli_job.c): `validate`, `schema`,
 * `explain`. Each takes the arguments after the command name (argv[0] is the first of them)
 * and returns the process exit code: 0 ok, 1 invalid job, 2 usage or I/O error.
 * They print (stdout for results, stderr for usage errors); the library they call never does.
 */
#ifndef NMC_CLI_H
#define NMC_CLI_H

#define NMC_VERSION "0.1.0"

int nmc_cmd_validate(int argc, char **argv);
int nmc_cmd_schema(int argc, char **argv);
int nmc_cmd_explain(int argc, char **argv);

extern const char NMC_USAGE_VALIDATE[];
extern const char NMC_USAGE_SCHEMA[];
extern const char NMC_USAGE_EXPLAIN[];

#endif
