/* policy: loader, validator and matcher for policy files (see policy.h for
 * the contract and scripts/policy.example.yaml for the syntax).
 *
 * Three files: load.c parses and checks a file into a compiled policy
 * (types in policy_int.h), eval.c matches requests and answers against
 * it, and this file holds action names and the holder that swaps policies
 * on reload.
 *
 * Must never: log or keep request content (only counts and names reach
 * it), or change a policy after policy_load returned it. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hs/hs.h>
#include <openssl/evp.h>

#include "policy/policy.h"
#include "policy/policy_int.h"
#include "ytree.h"

#define DEFAULT_DPKG_INFO "/var/lib/dpkg/info"
#define MAX_POLICY_BYTES (4u << 20)


const char *policy_action_name(enum policy_action a)
{
	switch (a) {
	case POLICY_ALLOW: return "allow";
	case POLICY_ALERT: return "alert";
	case POLICY_REDACT: return "redact";
	case POLICY_BLOCK: return "block";
	case POLICY_WARN: return "warn";
	}
	return "unknown";
}

/* ------------------------------------------------------------ holder */

void policy_holder_init(struct policy_holder *h, struct policy *p)
{
	pthread_mutex_init(&h->lock, NULL);
	h->cur = p;
}

void policy_holder_destroy(struct policy_holder *h)
{
	policy_unref(h->cur);
	h->cur = NULL;
	pthread_mutex_destroy(&h->lock);
}

struct policy *policy_holder_get(struct policy_holder *h)
{
	struct policy *p;

	pthread_mutex_lock(&h->lock);
	p = policy_ref(h->cur);
	pthread_mutex_unlock(&h->lock);
	return p;
}

int policy_holder_reload(struct policy_holder *h, const char *path,
			 const struct policy_load_opts *opts, char **errs)
{
	struct policy *np, *old;
	int ret = policy_load(path, opts, &np, errs);

	if (ret)
		return ret;
	pthread_mutex_lock(&h->lock);
	old = h->cur;
	h->cur = np;
	pthread_mutex_unlock(&h->lock);
	policy_unref(old);
	return 0;
}
