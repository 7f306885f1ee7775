/* vigil-collector: receives agents' audit batches and answers SOC queries.
 * This first version validates its configuration only; ingest, storage and
 * the query API arrive with the collector issue. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "Usage: vigil-collector [--config FILE] [--check]\n"
		   "  -c, --config FILE  collector configuration (default /etc/vigil/collector.yaml)\n"
		   "      --check        validate the configuration and exit\n"
		   "  -h, --help         this help\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (opt != 'c' && opt != 'k') {
			usage(stderr);
			return 2;
		}
	}
	fprintf(stderr, "vigil-collector: not implemented in this build\n");
	return 1;
}
