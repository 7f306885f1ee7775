/* colconf: the collector's config. A mistake is reported as FILE:LINE:
 * reason (what `vigil-collector --check` prints), unknown keys are errors,
 * tokens need a role and a real length, and defaults are what the
 * documentation says. */
#include <unistd.h>
#include "check.h"
#include "colconf.h"

static char path[64];

static int load(const char *text, struct colconf **c, char *err, size_t len)
{
	snprintf(path, sizeof(path), "/tmp/vigil-test-colconf-%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	fclose(f);
	int rc = colconf_load(path, c, err, len);
	unlink(path);
	return rc;
}

#define BASE "tls_cert: /p/server.crt\ntls_key: /p/server.key\nclient_ca: /p/ca.crt\n"

TEST(minimal_config_gets_documented_defaults)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE, &c, err, sizeof(err)) == 0, "minimal config refused: %s", err);
	CHECK(!strcmp(c->listen, "0.0.0.0:7443") && !strcmp(c->api, "127.0.0.1:7444"), "defaults %s %s", c->listen, c->api);
	CHECK(!strncmp(c->store, "sqlite:", 7) && c->cert_days == 30 && c->retain_days == 0, "store %s days %u", c->store,
	      c->cert_days);
	CHECK(!strcmp(c->client_ca_key, "/p/ca.key"), "CA key not derived from client_ca: %s", c->client_ca_key);
	colconf_free(c);
}

TEST(full_config_and_token_roles)
{
	struct colconf *c;
	char err[256] = "";
	CHECK(load(BASE "listen: 127.0.0.1:9000\napi: 127.0.0.1:9001\nstore: clickhouse://127.0.0.1:8123/vigil\n"
		       "retain_days: 90\nsyslog_forward: 127.0.0.1:514\ntokens:\n"
		       "  - { token: aaaaaaaaaaaaaaaaaaaa, role: admin, name: alice }\n"
		       "  - { token: bbbbbbbbbbbbbbbbbbbb, role: analyst }\n"
		       "  - { token: cccccccccccccccccccc, role: metrics }\n",
		   &c, err, sizeof(err)) == 0, "full config refused: %s", err);
	CHECK(c->n_tokens == 3 && c->retain_days == 90, "tokens %zu retain %u", c->n_tokens, c->retain_days);
	const struct colconf_token *t = colconf_token_find(c, "bbbbbbbbbbbbbbbbbbbb");
	CHECK(t && t->role == ROLE_ANALYST && !strcmp(t->name, "analyst"), "analyst token not found or wrong role");
	CHECK(colconf_token_find(c, "aaaaaaaaaaaaaaaaaaaa")->role == ROLE_ADMIN, "admin role");
	CHECK(!colconf_token_find(c, "aaaaaaaaaaaaaaaaaaa") && !colconf_token_find(c, "") && !colconf_token_find(c, NULL),
	      "a prefix or empty token matched");
	colconf_free(c);
}

TEST(mistakes_are_reported_with_file_and_line)
{
	struct {
		const char *text, *want;
	} cases[] = {
		{ BASE "listen: nowhere\n", ":4: expected HOST:PORT" },
		{ BASE "stroe: sqlite:/x\n", ":4: unknown key 'stroe'" },
		{ BASE "store: mysql://x\n", ":4: store must be" },
		{ BASE "tokens:\n  - { token: short, role: admin }\n", ":5: a token must be at least 16" },
		{ BASE "tokens:\n  - { token: aaaaaaaaaaaaaaaaaaaa, role: root }\n", ":5: role must be" },
		{ BASE "tokens:\n  - { token: aaaaaaaaaaaaaaaaaaaa }\n", ":5: a token needs token and role" },
		{ BASE "retain_days: -3\n", ":4:" },
		{ "listen: 127.0.0.1:1\n", ":1: tls_cert, tls_key and client_ca are required" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct colconf *c = NULL;
		char err[256] = "";
		int rc = load(cases[i].text, &c, err, sizeof(err));
		CHECK(rc == -EINVAL && strstr(err, path) && strstr(err, cases[i].want),
		      "case %zu: rc %d, error '%s', want '%s'", i, rc, err, cases[i].want);
		CHECK(!c, "a refused config was returned");
	}
}
