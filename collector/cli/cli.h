/* cli: the `vigil` admin/SOC tool. main.c dispatches argv[1] through the
 * table cli_commands[]; each subcommand lives in its own file (ca.c,
 * later query.c, verify.c, policy.c, status.c) and exposes one entry point
 * declared here.
 *
 * Conventions every subcommand follows: `--help` prints usage to stdout
 * and exits 0; errors go to stderr prefixed "vigil <cmd>: "; exit status 0
 * on success, CLI_EXIT_FAIL (1) on failure, CLI_EXIT_USAGE (2) on a usage
 * error. argv[0] of the entry point is the subcommand name. */
#ifndef VIGIL_CLI_H
#define VIGIL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

struct cli_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help; /* one line for `vigil --help` */
};

/* NULL-name-terminated; defined in main.c. */
extern const struct cli_command cli_commands[];

/* ca.c: `vigil ca init|trust|untrust` */
int cli_ca_main(int argc, char **argv);
int cli_query_main(int argc, char **argv);   /* query.c: `vigil query` */
int cli_verify_main(int argc, char **argv);  /* verify.c: `vigil verify` */
int cli_policy_main(int argc, char **argv);  /* policy.c: `vigil policy check|explain` */
int cli_justify_main(int argc, char **argv); /* justify.c: `vigil justify ID "reason"` */

/* query.c: the collector API connection that `vigil query` and `vigil
 * verify` share: --server/--token/--cacert/--insecure, with $VIGIL_SERVER
 * and $VIGIL_TOKEN as defaults. */
struct cli_server {
	const char *server, *token, *cacert;
	bool insecure;
};
void cli_server_init(struct cli_server *s);
/* Takes getopt's opt ('S', 'T', 'C', 'k'); false if opt is not one of them. */
bool cli_server_opt(struct cli_server *s, int opt, const char *arg);
/* True if server and token are both set and non-empty. */
bool cli_server_ready(const struct cli_server *s);
/* Appends ?key=val or &key=val (percent-encoded; nothing when val is NULL). */
void cli_query_param(char *q, size_t qlen, const char *key, const char *val);
/* GET (or POST) path_query and print the body: the exit status of a
 * subcommand (2 for the server's 400, 1 for any other failure). */
int cli_server_print(const struct cli_server *s, const char *cmd, const char *path_query, bool post);

/* The command line of a subcommand of the collector's API (query,
 * inventory, alerts, verify): the server options, --help, --json/--csv
 * when formats is set, the filters (each --NAME VALUE a query parameter
 * NAME, '-' written '_'), and one more option taking a value (extra, or
 * NULL). */
#define CLI_MAX_FILTERS 16
struct cli_cmd {
	const char *name;                /* "alerts": in messages */
	void (*usage)(FILE *f);
	const char *const *filters;      /* NULL-terminated, at most CLI_MAX_FILTERS */
	const char *extra;
	bool formats;
};
struct cli_args {
	struct cli_server sv;
	const char *vals[CLI_MAX_FILTERS];   /* the value given for filters[i], or NULL */
	const char *fmt;                     /* "table", "json" or "csv" */
	const char *extra;                   /* the extra option's value, or NULL */
};
/* Parses argv into *a. Returns -1 to go on, else the exit status (after
 * --help, or a usage error, with the usage printed). */
int cli_cmd_parse(const struct cli_cmd *c, int argc, char **argv, struct cli_args *a);
/* Appends every filter given to q (cli_query_param), then the format. */
void cli_cmd_query(const struct cli_cmd *c, const struct cli_args *a, char *q, size_t qlen);

int cli_inventory_main(int argc, char **argv); /* inventory.c: `vigil inventory` */
int cli_alerts_main(int argc, char **argv);    /* alerts.c: `vigil alerts` */
/* verify's request and report (query.c keeps the one copy of the transport). */
int cli_verify_run(const struct cli_server *s, const char *agent);

/* Add the entry points of new subcommands here (query, verify, policy,
 * status), then one row in cli_commands[] in main.c. */

#endif
