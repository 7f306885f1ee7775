/* intercept: placeholder until the TLS interceptor lands in this file. */
#include <errno.h>
#include "agent.h"

int intercept_start(struct agent *ag, int cfd, const struct conn_info *info)
{
	(void)ag, (void)cfd, (void)info;
	return -ENOSYS;
}

int intercept_init(struct agent *ag, char *err, size_t errlen)
{
	(void)ag, (void)err, (void)errlen;
	return 0;
}

void intercept_shutdown(struct agent *ag)
{
	(void)ag;
}
