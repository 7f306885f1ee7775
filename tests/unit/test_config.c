/* config: every mistake is reported with the file and the line it is on,
 * and a valid file yields exactly the values written in it. */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "config.h"
#include "pki.h"
#include "providers/webapps.h"

static char path[64];

static int load_text(const char *text, struct config **c, char *err, size_t errlen)
{
	snprintf(path, sizeof(path), "/tmp/vigil-test-config-%d.yaml", (int)getpid());
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	int ret = config_load(path, c, err, errlen);
	unlink(path);
	return ret;
}

/* Expects the load to fail with "<path>:<line>: ..." mentioning needle. */
static int fails_at(const char *text, int line, const char *needle, char *err, size_t errlen)
{
	struct config *c = NULL;
	char want[128];
	if (load_text(text, &c, err, errlen) == 0) {
		config_free(c);
		snprintf(err, errlen, "(loaded without error)");
		return 0;
	}
	snprintf(want, sizeof(want), "%s:%d: ", path, line);
	return strncmp(err, want, strlen(want)) == 0 && strstr(err, needle) != NULL;
}

/* How many hosts the web app catalog adds to the watched set. */
static size_t webapp_hosts(void)
{
	size_t n, k = 0;
	const struct webapp *const *all = webapp_all(&n);
	for (size_t i = 0; i < n; i++)
		for (const char *const *h = all[i]->hosts; *h; h++)
			k++;
	return k;
}

TEST(full_config_is_read)
{
	struct config *c;
	char err[512];
	int ret = load_text("listen: 127.0.0.1:16001\n"
			    "listen6: \"[::1]:16002\"\n"
			    "cgroup: /sys/fs/cgroup/unified/test\n"
			    "fail_mode: closed\n"
			    "dns_learning: off\n"
			    "first_flight_guard: off\n"
			    "quic: targets\n"
			    "ca_cert: /tmp/ca.crt\n"
			    "ca_key: /tmp/ca.key\n"
			    "upstream_ca: /tmp/up.pem\n"
			    "endpoints: [api.openai.com, \"*.openai.azure.com\"]\n"
			    "passthrough:\n  - pinned.example.com\n"
			    "target_addresses: [127.0.0.2, \"::1\"]\n"
			    "target_ports: [443, 8443]\n"
			    "policy: /etc/vigil/policy.yaml\n"
			    "audit_log: /tmp/events.jsonl\n"
			    "spool_dir: /tmp/spool\n"
			    "agent_id: ws-42\n"
			    "limits:\n  max_header_bytes: 16k\n  max_body_bytes: 8M\n  ws_max_frame: 64k\n  header_timeout: 2s\n"
			    "  idle_timeout: 5m\n  ws_idle_timeout: 1h\n  max_connections: 500\n"
			    "collector:\n  address: c.example:7443\n  ca: /a\n  cert: /b\n  key: /c\n",
			    &c, err, sizeof(err));
	CHECK(ret == 0, "valid config refused: %s", err);
	CHECK(ntohs(c->listen4.sin_port) == 16001, "listen port %u", ntohs(c->listen4.sin_port));
	CHECK(ntohs(c->listen6.sin6_port) == 16002, "listen6 port %u", ntohs(c->listen6.sin6_port));
	CHECK(c->fail_closed, "fail_mode closed not applied");
	CHECK(!c->dns_learning, "dns_learning off not applied");
	CHECK(!c->first_flight_guard, "first_flight_guard off not applied");
	CHECK(!c->quic_all, "quic: targets not applied");
	CHECK(!strcmp(c->cgroup, "/sys/fs/cgroup/unified/test"), "cgroup %s", c->cgroup);
	CHECK(c->n_endpoints == 2 + webapp_hosts() && !strcmp(c->endpoints[1], "*.openai.azure.com"),
	      "endpoints (the two listed, then the web apps' hosts)");
	CHECK(c->n_passthrough == 1, "passthrough count %zu", c->n_passthrough);
	CHECK(c->n_target_addrs == 2 && c->target_addrs[1].ss_family == AF_INET6, "target_addresses");
	CHECK(c->n_target_ports == 2 && c->target_ports[1] == 8443, "target_ports");
	CHECK(c->max_head_bytes == 16384, "max_header_bytes %u", c->max_head_bytes);
	CHECK(c->max_body_bytes == 8ULL << 20, "max_body_bytes %llu", (unsigned long long)c->max_body_bytes);
	CHECK(c->ws_max_frame == 64u << 10 && c->ws_max_message == 16u << 20, "ws limits %llu %llu",
	      (unsigned long long)c->ws_max_frame, (unsigned long long)c->ws_max_message);
	CHECK(c->header_timeout_ms == 2000 && c->idle_timeout_ms == 300000, "timeouts %u %u",
	      c->header_timeout_ms, c->idle_timeout_ms);
	CHECK(c->ws_idle_timeout_ms == 3600000, "ws_idle_timeout %u", c->ws_idle_timeout_ms);
	CHECK(c->max_connections == 500, "max_connections");
	CHECK(!strcmp(c->collector.address, "c.example:7443"), "collector address");
	CHECK(!strcmp(c->agent_id, "ws-42"), "agent_id");
	config_free(c);
}

TEST(defaults_when_keys_absent)
{
	struct config *c;
	char err[512];
	CHECK(load_text("audit_log: /tmp/x.jsonl\n", &c, err, sizeof(err)) == 0, "%s", err);
	CHECK(ntohs(c->listen4.sin_port) == 15001, "default listen port");
	CHECK(c->listen4.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "default listen address");
	CHECK(ntohs(c->listen6.sin6_port) == 15001, "listen6 follows listen's port");
	CHECK(!c->fail_closed, "default fail_mode is open");
	CHECK(c->dns_learning, "DNS learning is on by default");
	CHECK(c->first_flight_guard, "the first-flight guard is on by default");
	CHECK(c->quic_all, "UDP/443 is refused to every address by default (quic: all)");
	CHECK(c->n_endpoints > 5, "built-in catalog used when endpoints absent");
	CHECK(config_host_watched((const char *const *)c->endpoints, c->n_endpoints, "api.openai.com"),
	      "catalog lacks api.openai.com");
	CHECK(c->n_target_ports == 2 && c->target_ports[0] == 443 && c->target_ports[1] == 80,
	      "default ports 443 and 80 (plain HTTP must reach the agent to be refused)");
	CHECK(c->unwatched_sni == CONFIG_UNWATCHED_INTERCEPT, "default unwatched_sni is intercept");
	CHECK(c->clienthello_timeout_ms == 3000, "default clienthello_timeout %u", c->clienthello_timeout_ms);
	CHECK(c->cgroup[0] == '/', "cgroup auto resolved to a path: %s", c->cgroup);
	config_free(c);
}

TEST(empty_file_is_all_defaults)
{
	struct config *c;
	char err[512];
	CHECK(load_text("", &c, err, sizeof(err)) == 0, "%s", err);
	config_free(c);
}

TEST(errors_name_file_and_line)
{
	char err[512];
	CHECK(fails_at("listen: 127.0.0.1:1\nbogus: 1\n", 2, "unknown key 'bogus'", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1\n", 1, "IPv4ADDRESS:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 300.0.0.1:80\n", 1, "IPv4ADDRESS:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1:70000\n", 1, "IPv4ADDRESS:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("\nlisten6: \"::1:80\"\n", 2, "[IPv6ADDRESS]:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("fail_mode: sometimes\n", 1, "open or closed", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1:1\ndns_learning: maybe\n", 2, "on or off", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1:1\n\nfirst_flight_guard: [on]\n", 3, "first_flight_guard must be on or off", err,
		       sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1:1\nquic: off\n", 2, "quic must be targets or all", err, sizeof(err)),
	      "%s", err);
	CHECK(fails_at("endpoints:\n  - api.openai.com\n  - bad_domain!\n", 3, "not a domain", err, sizeof(err)), "%s", err);
	CHECK(fails_at("endpoints: [\"http://x.com\"]\n", 1, "not a domain", err, sizeof(err)), "%s", err);
	CHECK(fails_at("target_ports: [443, 0]\n", 1, "out of range", err, sizeof(err)), "%s", err);
	CHECK(fails_at("target_addresses:\n  - 127.0.0.2\n  - api.openai.com\n", 3, "not an IPv4 or IPv6", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  header_timeout: soon\n", 2, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  max_connections: 100\n  ws_idle_timeout: never\n", 3, "duration", err, sizeof(err)),
	      "%s", err);
	CHECK(fails_at("limits:\n  max_body_bytes: 12Q\n", 2, "size", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  max_body_bytes: 10\n", 2, "1k..1G", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  ws_max_frame: 100\n", 2, "ws_max_frame must be 1k..1G", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  ws_max_message: 2G\n", 2, "ws_max_message must be 1k..1G", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  ws_max_frame: lots\n", 2, "size", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  nonsense: 1\n", 2, "limits.nonsense", err, sizeof(err)), "%s", err);
	CHECK(fails_at("collector:\n  address: x:1\n", 2, "needs address, ca, cert and key", err, sizeof(err)), "%s", err);
	CHECK(fails_at("collector:\n  address: x:1\n  port: 2\n", 3, "collector.port", err, sizeof(err)), "%s", err);
	CHECK(fails_at("audit_log: /a\naudit_log: /b\n", 2, "duplicate key", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: [unclosed\n", 2, "", err, sizeof(err)) ||
	      fails_at("listen: [unclosed\n", 1, "", err, sizeof(err)), "YAML syntax error without line: %s", err);
	CHECK(fails_at("- a\n- b\n", 1, "mapping", err, sizeof(err)), "%s", err);
	CHECK(fails_at("a: &x 1\nb: *x\n", 1, "anchors", err, sizeof(err)), "%s", err);
	CHECK(fails_at("log_level: loud\n", 1, "log_level", err, sizeof(err)), "%s", err);
	CHECK(fails_at("audit_log: \"\"\n", 1, "non-empty", err, sizeof(err)), "%s", err);
	CHECK(fails_at("listen: 127.0.0.1:1\nunwatched_sni: relay\n", 2, "intercept, passthrough or block", err,
		       sizeof(err)), "%s", err);
	CHECK(fails_at("unwatched_sni: [block]\n", 1, "intercept, passthrough or block", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  clienthello_timeout: later\n", 2, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  clienthello_timeout: 0s\n", 2, "between 1ms and 24h", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  idle_timeout: 5m\n  clienthello_timeout: 2m\n", 3, "at most 60s", err, sizeof(err)),
	      "%s", err);
}

TEST(classification_keys)
{
	static const char *const modes[] = { "intercept", "passthrough", "block" };
	for (int m = 0; m < 3; m++) {
		struct config *c = NULL;
		char err[512], text[128];
		snprintf(text, sizeof(text), "unwatched_sni: %s\nlimits:\n  clienthello_timeout: 1500ms\n", modes[m]);
		CHECK(load_text(text, &c, err, sizeof(err)) == 0, "%s refused: %s", modes[m], err);
		CHECK(c->unwatched_sni == m && !strcmp(config_unwatched_name(c->unwatched_sni), modes[m]),
		      "unwatched_sni %s read as %d", modes[m], c->unwatched_sni);
		CHECK(c->clienthello_timeout_ms == 1500, "clienthello_timeout %u", c->clienthello_timeout_ms);
		config_free(c);
	}
}

TEST(missing_file_is_an_error)
{
	struct config *c;
	char err[512];
	int ret = config_load("/nonexistent/vigil.yaml", &c, err, sizeof(err));
	CHECK(ret == -ENOENT, "ret %d", ret);
	CHECK(strstr(err, "/nonexistent/vigil.yaml") != NULL, "error names the file: %s", err);
}

TEST(wildcard_matching)
{
	const char *list[] = { "api.openai.com", "*.openai.azure.com" };
	CHECK(config_host_watched(list, 2, "API.OpenAI.com"), "case-insensitive exact match");
	CHECK(config_host_watched(list, 2, "myco.openai.azure.com"), "wildcard match");
	CHECK(!config_host_watched(list, 2, "openai.azure.com"), "wildcard must not match the bare suffix");
	CHECK(!config_host_watched(list, 2, "evilopenai.azure.com"), "wildcard must match a label boundary");
	CHECK(!config_host_watched(list, 2, "api.openai.com.evil.net"), "exact entry matched a longer name");
	CHECK(config_host_watched(list, 2, "api.openai.com."), "one trailing dot is the same name");
	CHECK(config_host_watched(list, 2, "x.OpenAI.Azure.com."), "trailing dot with a wildcard entry");
	CHECK(!config_host_watched(list, 2, "api.openai.com.."), "two trailing dots are not the name");
	CHECK(!config_host_watched(list, 2, "api.openai.co"), "a prefix of an entry matched");
}

TEST(audit_pipeline_keys)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("spool_max_bytes: 64M\nspool_fsync: always\nship_batch_events: 250\n"
			"ship_interval: 200ms\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->spool_max_bytes == 64ULL << 20, "spool_max_bytes %llu", (unsigned long long)c->spool_max_bytes);
	CHECK(c->spool_fsync == CONFIG_FSYNC_ALWAYS, "spool_fsync %d", c->spool_fsync);
	CHECK(c->ship_batch_events == 250, "ship_batch_events %u", c->ship_batch_events);
	CHECK(c->ship_interval_ms == 200, "ship_interval %u ms", c->ship_interval_ms);
	config_free(c);
	CHECK(load_text("agent_id: x\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->spool_fsync == CONFIG_FSYNC_BATCH && c->spool_max_bytes == 1ULL << 30 &&
	      c->ship_batch_events == 1000 && c->ship_interval_ms == 1000,
	      "defaults: fsync %d max %llu batch %u interval %u", c->spool_fsync,
	      (unsigned long long)c->spool_max_bytes, c->ship_batch_events, c->ship_interval_ms);
	config_free(c);
	CHECK(fails_at("spool_fsync: sometimes\n", 1, "spool_fsync", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nspool_max_bytes: 10k\n", 2, "spool_max_bytes", err, sizeof(err)), "%s", err);
	CHECK(fails_at("ship_batch_events: 0\n", 1, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("ship_interval: 0s\n", 1, "", err, sizeof(err)), "%s", err);
}

TEST(vault_keys)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("agent_id: x\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->vault_ttl_ms == 3600000 && c->vault_max_entries == 4096, "defaults: ttl %u max %u",
	      c->vault_ttl_ms, c->vault_max_entries);
	config_free(c);
	CHECK(load_text("vault_ttl: 10m\nvault_max_entries: 100\n", &c, err, sizeof(err)) == 0,
	      "load failed: %s", err);
	CHECK(c->vault_ttl_ms == 600000 && c->vault_max_entries == 100, "ttl %u max %u",
	      c->vault_ttl_ms, c->vault_max_entries);
	config_free(c);
	CHECK(fails_at("agent_id: x\nvault_ttl: 0s\n", 2, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("vault_ttl: 25h\n", 1, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("vault_ttl: soon\n", 1, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\n\nvault_max_entries: 0\n", 3, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("vault_max_entries: lots\n", 1, "", err, sizeof(err)), "%s", err);
}

TEST(rejected_ca_keys)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("agent_id: x\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(!c->rejected_ca_passthrough && c->rejected_ca_ttl_ms == 3600000, "defaults: %d %u",
	      c->rejected_ca_passthrough, c->rejected_ca_ttl_ms);
	config_free(c);
	CHECK(load_text("on_rejected_ca: passthrough\nrejected_ca_ttl: 10m\n", &c, err, sizeof(err)) == 0,
	      "load failed: %s", err);
	CHECK(c->rejected_ca_passthrough && c->rejected_ca_ttl_ms == 600000, "passthrough %d ttl %u",
	      c->rejected_ca_passthrough, c->rejected_ca_ttl_ms);
	config_free(c);
	CHECK(load_text("on_rejected_ca: block\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(!c->rejected_ca_passthrough, "block read as passthrough");
	config_free(c);
	CHECK(fails_at("agent_id: x\non_rejected_ca: allow\n", 2, "on_rejected_ca must be block or passthrough",
		       err, sizeof(err)), "%s", err);
	CHECK(fails_at("on_rejected_ca: [block]\n", 1, "on_rejected_ca", err, sizeof(err)), "%s", err);
	CHECK(fails_at("rejected_ca_ttl: 0s\n", 1, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nrejected_ca_ttl: 2d\n", 2, "duration", err, sizeof(err)), "%s", err);
}

TEST(proxy_keys)
{
	struct config *c;
	char err[512], text[512], auth[64];
	snprintf(auth, sizeof(auth), "/tmp/vigil-test-proxy-auth-%d", (int)getpid());
	FILE *f = fopen(auth, "w");
	fputs("alice:pa:ss\n", f);
	fclose(f);
	chmod(auth, 0600);
	snprintf(text, sizeof(text),
		 "proxies: [Proxy.Corp.example:3128, \"10.0.0.8:8080\", \"[fd00::1]:3128\", squid:3128]\n"
		 "upstream_proxy: egress.corp.example:3128\nupstream_proxy_auth: %s\n", auth);
	int ret = load_text(text, &c, err, sizeof(err));
	CHECK(ret == 0, "valid proxy keys refused: %s", err);
	CHECK(c->n_proxies == 4 && !strcmp(c->proxies[0].host, "proxy.corp.example") && c->proxies[0].port == 3128 &&
	      !strcmp(c->proxies[1].host, "10.0.0.8") && c->proxies[1].port == 8080 &&
	      !strcmp(c->proxies[2].host, "fd00::1") && !strcmp(c->proxies[3].host, "squid"), "proxies");
	CHECK(!strcmp(c->upstream_proxy.host, "egress.corp.example") && c->upstream_proxy.port == 3128, "upstream");
	/* base64("alice:pa:ss") */
	CHECK(c->upstream_proxy_auth && !strcmp(c->upstream_proxy_auth, "Basic YWxpY2U6cGE6c3M="), "auth %s",
	      c->upstream_proxy_auth ? "(wrong)" : "(none)");
	config_free(c);

	chmod(auth, 0644);
	snprintf(text, sizeof(text), "upstream_proxy: e.x:1\n\nupstream_proxy_auth: %s\n", auth);
	CHECK(fails_at(text, 3, "chmod 600", err, sizeof(err)), "%s", err);
	chmod(auth, 0600);
	snprintf(text, sizeof(text), "listen: 127.0.0.1:1\nupstream_proxy_auth: %s\n", auth);
	CHECK(fails_at(text, 2, "needs upstream_proxy", err, sizeof(err)), "%s", err);
	f = fopen(auth, "w");
	fputs("no-colon\n", f);
	fclose(f);
	snprintf(text, sizeof(text), "upstream_proxy: e.x:1\nupstream_proxy_auth: %s\n", auth);
	CHECK(fails_at(text, 2, "user:password", err, sizeof(err)), "%s", err);
	unlink(auth);
	CHECK(fails_at(text, 2, "cannot open", err, sizeof(err)), "%s", err);
	CHECK(fails_at("proxies: [\"proxy:99999\"]\n", 1, "HOST:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("proxies:\n  - proxy:3128\n  - proxy\n", 3, "HOST:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("proxies: [\"pro xy:3128\"]\n", 1, "HOST:PORT", err, sizeof(err)), "%s", err);
	CHECK(fails_at("upstream_proxy: [a:1]\n", 1, "HOST:PORT", err, sizeof(err)), "%s", err);
}

/* A certificate file whose subject CN is cn (self-signed is enough: only
 * the name is read). */
static int write_cert(const char *file, const char *cn)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	char err[256];
	int ret = pki_key_generate(PKI_KEY_EC_P256, &k, err, sizeof(err));
	if (!ret)
		ret = pki_ca_self_signed(k, &(struct pki_ca_opts){ .common_name = cn, .days = 1, .pathlen = -1 },
					 &x, err, sizeof(err));
	if (!ret)
		ret = pki_certs_save(file, &x, 1, true, err, sizeof(err));
	X509_free(x);
	EVP_PKEY_free(k);
	return ret;
}

TEST(agent_id_comes_from_the_enrolled_certificate)
{
	struct config *c = NULL;
	char err[512], cert[64], text[512];
	snprintf(cert, sizeof(cert), "/tmp/vigil-test-config-%d.crt", (int)getpid());
	CHECK(write_cert(cert, "ws-042") == 0, "cannot make a certificate");
	snprintf(text, sizeof(text), "collector:\n  address: c:1\n  ca: /a\n  cert: %s\n  key: /k\n", cert);
	CHECK(load_text(text, &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(config_resolve_identity(c, err, sizeof(err)) == 0, "resolve failed: %s", err);
	CHECK(!strcmp(c->agent_id, "ws-042"), "unset agent_id became '%s', not the certificate's", c->agent_id);
	config_free(c);

	/* The same name written out is fine. */
	snprintf(text, sizeof(text), "agent_id: ws-042\ncollector:\n  address: c:1\n  ca: /a\n  cert: %s\n  key: /k\n",
		 cert);
	CHECK(load_text(text, &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(config_resolve_identity(c, err, sizeof(err)) == 0, "resolve failed: %s", err);
	config_free(c);

	/* A different one is refused, at its line, naming both. */
	snprintf(text, sizeof(text), "listen: 127.0.0.1:1\nagent_id: laptop-7\ncollector:\n  address: c:1\n"
		 "  ca: /a\n  cert: %s\n  key: /k\n", cert);
	CHECK(load_text(text, &c, err, sizeof(err)) == 0, "load failed: %s", err);
	int ret = config_resolve_identity(c, err, sizeof(err));
	char want[128];
	snprintf(want, sizeof(want), "%s:2: ", path);
	config_free(c);
	CHECK(ret == -EINVAL, "mismatch accepted (%d)", ret);
	CHECK(!strncmp(err, want, strlen(want)) && strstr(err, "'laptop-7'") && strstr(err, "'ws-042'"),
	      "message does not name the line and both ids: %s", err);

	/* A certificate that cannot be read is an error too, never a guess. */
	unlink(cert);
	snprintf(text, sizeof(text), "collector:\n  address: c:1\n  ca: /a\n  cert: %s\n  key: /k\n", cert);
	CHECK(load_text(text, &c, err, sizeof(err)) == 0, "load failed: %s", err);
	ret = config_resolve_identity(c, err, sizeof(err));
	config_free(c);
	CHECK(ret < 0 && strstr(err, "collector.cert"), "unreadable certificate: %d %s", ret, err);
}

TEST(max_buffered_bytes_key)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("limits:\n  max_buffered_bytes: 64M\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->max_buffered_bytes == 64ULL << 20, "max_buffered_bytes %llu", (unsigned long long)c->max_buffered_bytes);
	config_free(c);
	CHECK(load_text("agent_id: x\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->max_buffered_bytes == 256ULL << 20, "default %llu, want 256M", (unsigned long long)c->max_buffered_bytes);
	config_free(c);
	CHECK(fails_at("limits:\n  max_buffered_bytes: 100k\n", 2, "max_buffered_bytes", err, sizeof(err)), "%s", err);
	CHECK(fails_at("limits:\n  max_buffered_bytes: lots\n", 2, "", err, sizeof(err)), "%s", err);
}

TEST(mcp_and_justify_keys)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("endpoints: [api.openai.com]\nmcp_servers: [mcp.example.com, '*.mcp.example.org', api.openai.com]\n"
			"justify_socket: /tmp/j.sock\njustify_ttl: 5m\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->n_mcp_servers == 3 && c->n_endpoints == 3 + webapp_hosts(), "mcp %zu endpoints %zu (MCP servers join the watched set once)",
	      c->n_mcp_servers, c->n_endpoints);
	CHECK(config_host_watched((const char *const *)c->endpoints, c->n_endpoints, "a.mcp.example.org"), "glob not watched");
	CHECK(!strcmp(c->justify_socket, "/tmp/j.sock") && c->justify_ttl_ms == 300000, "justify keys");
	config_free(c);
	CHECK(load_text("agent_id: x\n", &c, err, sizeof(err)) == 0 && !strcmp(c->justify_socket, "/run/vigil/justify.sock") &&
	      c->justify_ttl_ms == 3600000 && c->n_mcp_servers == 0, "defaults");
	config_free(c);
	CHECK(fails_at("agent_id: x\nmcp_servers: [ok.example, 'bad host']\n", 2, "bad host", err, sizeof(err)), "%s", err);
	CHECK(fails_at("justify_ttl: 0s\n", 1, "duration", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\njustify_socket: ''\n", 2, "", err, sizeof(err)), "%s", err);
}

TEST(mcp_commands_key)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("agent_id: x\nmcp_commands: [corp-tools-server, fs_server.py]\n", &c, err, sizeof(err)) == 0,
	      "load failed: %s", err);
	CHECK(c->n_mcp_commands == 2 && !strcmp(c->mcp_commands[0], "corp-tools-server") &&
		      !strcmp(c->mcp_commands[1], "fs_server.py"),
	      "mcp_commands: %zu", c->n_mcp_commands);
	config_free(c);
	/* a path, a shell word, an option: not a program's file name */
	CHECK(fails_at("agent_id: x\nmcp_commands:\n  - ok-server\n  - /usr/bin/evil\n", 4, "/usr/bin/evil", err,
		       sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nmcp_commands: ['a b']\n", 2, "file name", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nmcp_commands: [-rf]\n", 2, "-rf", err, sizeof(err)), "%s", err);
}

TEST(http2_keys)
{
	struct config *c = NULL;
	char err[512];
	CHECK(load_text("", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(c->h2.enabled && c->h2.max_concurrent_streams == 32 && c->h2.max_header_list_bytes == 65536 &&
	      c->h2.max_resets_per_second == 100 && c->h2.max_continuations == 8 && c->h2.header_table_size == 4096,
	      "http2 defaults");
	config_free(c);
	CHECK(load_text("http2:\n  enabled: off\n  max_concurrent_streams: 4\n  max_header_list_bytes: 8k\n"
			"  max_resets_per_second: 10\n  max_continuations: 0\n  header_table_size: 0\n",
			&c, err, sizeof(err)) == 0, "load failed: %s", err);
	CHECK(!c->h2.enabled && c->h2.max_concurrent_streams == 4 && c->h2.max_header_list_bytes == 8192 &&
	      c->h2.max_resets_per_second == 10 && c->h2.max_continuations == 0 && c->h2.header_table_size == 0,
	      "http2 values not read");
	config_free(c);
	CHECK(fails_at("http2: on\n", 1, "http2 must be a mapping", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  enabled: sometimes\n", 2, "http2.enabled must be on or off", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  max_concurrent_streams: 0\n", 2, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  max_concurrent_streams: 5000\n", 2, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  max_header_list_bytes: 100\n", 2, "1k..1M", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  header_table_size: 1M\n", 2, "0..64k", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  max_resets_per_second: lots\n", 2, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n  max_continuations: 2000\n", 2, "", err, sizeof(err)), "%s", err);
	CHECK(fails_at("http2:\n\n  window: 1\n", 3, "http2.window", err, sizeof(err)), "%s", err);
}

TEST(webapps_are_watched_unless_excluded)
{
	struct config *c = NULL;
	char err[512];
	const char *const *e;
	CHECK(load_text("endpoints: [api.openai.com]\n", &c, err, sizeof(err)) == 0, "load failed: %s", err);
	e = (const char *const *)c->endpoints;
	CHECK(c->n_endpoints == 1 + webapp_hosts(), "endpoints %zu", c->n_endpoints);
	CHECK(config_host_watched(e, c->n_endpoints, "chatgpt.com") &&
	      config_host_watched(e, c->n_endpoints, "files.oaiusercontent.com") &&
	      config_host_watched(e, c->n_endpoints, "claude.ai"), "a web app host is not watched by default");
	CHECK(!config_host_watched(e, c->n_endpoints, "google.com") &&
	      !config_host_watched(e, c->n_endpoints, "openai.com"), "a site of the same company is watched");
	config_free(c);
	CHECK(load_text("endpoints: [api.openai.com, chatgpt.com]\nwebapps_exclude: [claude.ai, CHAT.openai.com]\n",
			&c, err, sizeof(err)) == 0, "load failed: %s", err);
	e = (const char *const *)c->endpoints;
	CHECK(c->n_endpoints == 1 + webapp_hosts() - 2, "endpoints %zu: chatgpt.com listed once, two hosts excluded",
	      c->n_endpoints);
	CHECK(!config_host_watched(e, c->n_endpoints, "claude.ai") &&
	      !config_host_watched(e, c->n_endpoints, "chat.openai.com"), "an excluded host is watched");
	CHECK(config_host_watched(e, c->n_endpoints, "chatgpt.com") &&
	      config_host_watched(e, c->n_endpoints, "gemini.google.com"), "exclusion went too far");
	config_free(c);
	CHECK(fails_at("agent_id: x\nwebapps_exclude:\n  - claude.ai\n  - example.com\n", 4, "web app catalog", err,
		       sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nwebapps_exclude: ['bad host']\n", 2, "bad host", err, sizeof(err)), "%s", err);
	CHECK(fails_at("agent_id: x\nwebapps_exclude: {a: b}\n", 2, "", err, sizeof(err)), "%s", err);
}
