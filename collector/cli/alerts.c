/* alerts: `vigil alerts`, the collector's alerts on unusual behaviour
 * (collector/alerts.h): the events of kind "alert", newest first, with the
 * detector in RULE and the evidence in the reason (--json shows every
 * field). A thin client over the events API, same options as `vigil
 * query`. */
#include <stdio.h>
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil alerts --server URL --token T [--since DURATION] [--user U] [--host H]\n"
		   "                    [--rule volume|new_use|burst|injection|tamper|silent] [--limit N]\n"
		   "                    [--json | --csv] [--cacert FILE] [--insecure]\n"
		   "  Alerts raised by the collector's detectors (thresholds: alerts: in collector.yaml).\n");
}

int cli_alerts_main(int argc, char **argv)
{
	static const char *const filters[] = { "since", "user", "host", "rule", "limit", NULL };
	static const struct cli_cmd cmd = { "alerts", usage, filters, NULL, true };
	struct cli_args a;
	char q[4096] = "/api/v1/events?kind=alert";
	int rc = cli_cmd_parse(&cmd, argc, argv, &a);
	if (rc >= 0)
		return rc;
	cli_cmd_query(&cmd, &a, q, sizeof(q));
	return cli_server_print(&a.sv, "alerts", q, false);
}
