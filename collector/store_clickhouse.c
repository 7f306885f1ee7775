#include <errno.h>
#include <stdio.h>
#include "store.h"
int store_clickhouse_open(const char *url, struct store **out, char *err, size_t errlen)
{
	*out = NULL;
	snprintf(err, errlen, "%s: not yet", url);
	return -ENOTSUP;
}
