/* vigil justify: lifts a `warn` rule for the calling user and program, with
 * a reason that goes into the audit trail. Any local user may run it: the
 * agent learns who is asking from the socket itself (SO_PEERCRED), never
 * from this program, so one user cannot justify another's warning. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include "cli.h"
#include "config.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil justify [--socket PATH] ID \"reason\"\n\n"
		   "ID is the warning id the refused request's error message gave. The\n"
		   "agent exempts you and that program from that rule for justify_ttl and\n"
		   "records your reason. --socket (or $VIGIL_JUSTIFY_SOCKET) is the agent's\n"
		   "justify_socket (default " CONFIG_JUSTIFY_SOCKET ").\n");
}

int cli_justify_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = getenv("VIGIL_JUSTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	char msg[512], reply[256];
	int c, fd, n;
	ssize_t r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'h': usage(stdout); return CLI_EXIT_OK;
		default: usage(stderr); return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind != 2 || !argv[optind + 1][0]) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!path || !path[0])
		path = CONFIG_JUSTIFY_SOCKET;
	n = snprintf(msg, sizeof(msg), "JUSTIFY %s %s\n", argv[optind], argv[optind + 1]);
	if (n < 0 || (size_t)n >= sizeof(msg) || strlen(path) >= sizeof(sa.sun_path) ||
	    strpbrk(argv[optind + 1], "\n")) {
		fprintf(stderr, "vigil justify: the reason must be one line of at most 200 characters\n");
		return CLI_EXIT_USAGE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "vigil justify: cannot reach the agent at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CLI_EXIT_FAIL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write(fd, msg, (size_t)n) != n || (r = read(fd, reply, sizeof(reply) - 1)) <= 0) {
		fprintf(stderr, "vigil justify: no answer from the agent\n");
		close(fd);
		return CLI_EXIT_FAIL;
	}
	close(fd);
	reply[r] = 0;
	if (!strncmp(reply, "OK ", 3)) {
		printf("%s", reply + 3);
		return CLI_EXIT_OK;
	}
	fprintf(stderr, "vigil justify: %s", !strncmp(reply, "ERR ", 4) ? reply + 4 : reply);
	return CLI_EXIT_FAIL;
}
