/* config: YAML -> struct config. Every key is checked here, unknown keys are
 * errors (a typo in a security tool's config must not silently mean "off"),
 * and every message carries file:line. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "config.h"
#include "log.h"
#include "pki.h"
#include "proxy/proxyhead.h"
#include "providers/webapps.h"
#include "ytree.h"

const char *const config_default_endpoints[] = {
	"api.openai.com",
	"api.anthropic.com",
	"generativelanguage.googleapis.com",
	"*.openai.azure.com",
	"bedrock-runtime.us-east-1.amazonaws.com",
	"bedrock-runtime.us-west-2.amazonaws.com",
	"bedrock-runtime.eu-central-1.amazonaws.com",
	"api.mistral.ai",
	"api.cohere.com",
	"api.cohere.ai",
	"api.groq.com",
	"api.together.xyz",
	"api.deepseek.com",
	"api.x.ai",
	"openrouter.ai",
	"api.perplexity.ai",
	"api.fireworks.ai",
	NULL,
};

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->cgroup);
	free(c->pin_dir);
	free(c->ca_cert);
	free(c->ca_key);
	free(c->upstream_ca);
	for (size_t i = 0; i < c->n_endpoints; i++)
		free(c->endpoints[i]);
	free(c->endpoints);
	free(c->justify_socket);
	for (size_t i = 0; i < c->n_mcp_servers; i++)
		free(c->mcp_servers[i]);
	free(c->mcp_servers);
	for (size_t i = 0; i < c->n_mcp_commands; i++)
		free(c->mcp_commands[i]);
	free(c->mcp_commands);
	for (size_t i = 0; i < c->n_webapps_exclude; i++)
		free(c->webapps_exclude[i]);
	free(c->webapps_exclude);
	for (size_t i = 0; i < c->n_passthrough; i++)
		free(c->passthrough[i]);
	free(c->passthrough);
	free(c->target_ports);
	free(c->target_addrs);
	for (size_t i = 0; i < c->n_proxies; i++)
		free(c->proxies[i].host);
	free(c->proxies);
	free(c->upstream_proxy.host);
	if (c->upstream_proxy_auth) {
		explicit_bzero(c->upstream_proxy_auth, strlen(c->upstream_proxy_auth));
		free(c->upstream_proxy_auth);
	}
	free(c->policy);
	free(c->audit_log);
	free(c->spool_dir);
	free(c->agent_id);
	free(c->user);
	free(c->collector.address);
	free(c->collector.ca);
	free(c->collector.cert);
	free(c->collector.key);
	free(c);
}

int config_cgroup2_root(char *out, size_t outlen)
{
	FILE *f = fopen("/proc/mounts", "re");
	char dev[256], dir[4096], type[64];
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2")) {
			if (snprintf(out, outlen, "%s", dir) < (int)outlen)
				ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

bool config_host_watched(const char *const *list, size_t n, const char *host)
{
	size_t hl = strlen(host);
	/* Callers pass names normalised by sni_host_normalise; the trailing
	 * dot is dropped here too so that no caller can forget it. */
	if (hl > 1 && host[hl - 1] == '.')
		hl--;
	for (size_t i = 0; i < n; i++) {
		const char *e = list[i];
		if (e[0] == '*' && e[1] == '.') {
			size_t sl = strlen(e + 1); /* ".suffix" */
			if (hl > sl && !strncasecmp(host + hl - sl, e + 1, sl))
				return true;
		} else if (strlen(e) == hl && !strncasecmp(e, host, hl)) {
			return true;
		}
	}
	return false;
}

static const char *const unwatched_names[] = {
	[CONFIG_UNWATCHED_INTERCEPT] = "intercept",
	[CONFIG_UNWATCHED_PASSTHROUGH] = "passthrough",
	[CONFIG_UNWATCHED_BLOCK] = "block",
};

const char *config_unwatched_name(int mode)
{
	return mode >= 0 && mode < 3 ? unwatched_names[mode] : "?";
}

static int set_unwatched(const char *file, const struct ynode *n, struct config *c, char *err,
			 size_t errlen)
{
	for (int m = 0; n->kind == YNODE_SCALAR && m < 3; m++)
		if (!strcmp(n->str, unwatched_names[m])) {
			c->unwatched_sni = m;
			return 0;
		}
	snprintf(err, errlen, "%s:%d: unwatched_sni must be intercept, passthrough or block", file, n->line);
	return -EINVAL;
}

/* "a.b.c.d:port" */
static int parse_listen4(const char *file, const struct ynode *n, struct sockaddr_in *sa, char *err,
			 size_t errlen)
{
	char host[64];
	const char *colon;
	char *end;
	unsigned long port;

	if (n->kind != YNODE_SCALAR)
		goto bad;
	colon = strrchr(n->str, ':');
	if (!colon || (size_t)(colon - n->str) >= sizeof(host))
		goto bad;
	memcpy(host, n->str, (size_t)(colon - n->str));
	host[colon - n->str] = 0;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535 || colon[1] == 0)
		goto bad;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "%s:%d: expected IPv4ADDRESS:PORT such as 127.0.0.1:15001", file, n->line);
	return -EINVAL;
}

/* "[v6]:port" or "none" */
static int parse_listen6(const char *file, const struct ynode *n, struct sockaddr_in6 *sa, char *err,
			 size_t errlen)
{
	char host[64];
	const char *close;
	char *end;
	unsigned long port;

	memset(sa, 0, sizeof(*sa));
	sa->sin6_family = AF_INET6;
	if (n->kind != YNODE_SCALAR)
		goto bad;
	if (!strcmp(n->str, "none"))
		return 0;
	close = strchr(n->str, ']');
	if (n->str[0] != '[' || !close || close[1] != ':' || (size_t)(close - n->str) >= sizeof(host))
		goto bad;
	memcpy(host, n->str + 1, (size_t)(close - n->str - 1));
	host[close - n->str - 1] = 0;
	errno = 0;
	port = strtoul(close + 2, &end, 10);
	if (errno || *end || port == 0 || port > 65535 || close[2] == 0)
		goto bad;
	sa->sin6_port = htons((uint16_t)port);
	if (inet_pton(AF_INET6, host, &sa->sin6_addr) != 1)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "%s:%d: expected [IPv6ADDRESS]:PORT such as [::1]:15001, or none", file,
		 n->line);
	return -EINVAL;
}

static int set_str(const char *file, const struct ynode *n, char **dst, char *err, size_t errlen)
{
	if (n->kind != YNODE_SCALAR || !n->str[0]) {
		snprintf(err, errlen, "%s:%d: expected a non-empty string", file, n->line);
		return -EINVAL;
	}
	free(*dst);
	*dst = strdup(n->str);
	return *dst ? 0 : -ENOMEM;
}

/* A domain pattern: a DNS name, or "*." followed by one. */
static bool valid_domain_pattern(const char *s)
{
	size_t len, label = 0;
	if (s[0] == '*' && s[1] == '.')
		s += 2;
	len = strlen(s);
	if (len == 0 || len > 253 || !strchr(s, '.'))
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      (*p == '-' && label > 0)))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[len - 1] != '-';
}

/* A list of strings, each checked by valid (else "FILE:LINE: 'x' is not
 * <what>"), replacing *dst. */
static int set_list(const char *file, const struct ynode *n, char ***dst, size_t *cnt, bool (*valid)(const char *),
		    const char *what, char *err, size_t errlen)
{
	const char **list;
	size_t len;
	int ret = ytree_strlist(file, n, &list, &len, err, errlen);
	if (ret)
		return ret;
	char **v = calloc(len + 1, sizeof(*v));
	if (!v) {
		free(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		const struct ynode *item = n->kind == YNODE_SEQ ? n->kids[i] : n;
		if (!valid(list[i])) {
			snprintf(err, errlen, "%s:%d: '%s' is not %s", file, item->line, list[i], what);
			ret = -EINVAL;
			goto fail;
		}
		if (!(v[i] = strdup(list[i]))) {
			ret = -ENOMEM;
			goto fail;
		}
	}
	free(list);
	for (size_t i = 0; i < *cnt; i++)
		free((*dst)[i]);
	free(*dst);
	*dst = v;
	*cnt = len;
	return 0;
fail:
	for (size_t i = 0; i < len; i++)
		free(v[i]);
	free(v);
	free(list);
	return ret;
}

static int set_domains(const char *file, const struct ynode *n, char ***dst, size_t *cnt, char *err,
		       size_t errlen)
{
	return set_list(file, n, dst, cnt, valid_domain_pattern, "a domain name or *.domain pattern", err, errlen);
}

/* A program's file name (mcp_commands): what exec's comm shows, so no
 * '/', and the characters of package and command names only. */
static bool valid_command_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > CONFIG_COMMAND_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._+-", *s))
			return false;
	return true;
}

/* MCP servers are intercepted like LLM endpoints: they join the watched
 * set (and so DNS learning and target resolution) whatever order the keys
 * came in. */
static int watch_mcp_servers(struct config *c)
{
	char **v;
	if (!c->n_mcp_servers)
		return 0;
	v = realloc(c->endpoints, (c->n_endpoints + c->n_mcp_servers + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->endpoints = v;
	for (size_t i = 0; i < c->n_mcp_servers; i++) {
		if (config_host_watched((const char *const *)v, c->n_endpoints, c->mcp_servers[i]))
			continue;
		if (!(v[c->n_endpoints] = strdup(c->mcp_servers[i])))
			return -ENOMEM;
		v[++c->n_endpoints] = NULL;
	}
	return 0;
}

/* webapps_exclude: hosts of the web app catalog to leave unwatched. A name
 * outside the catalog is a mistake (it would silently exclude nothing). */
static int set_webapps_exclude(const char *file, const struct ynode *n, struct config *c, char *err,
			       size_t errlen)
{
	int ret = set_domains(file, n, &c->webapps_exclude, &c->n_webapps_exclude, err, errlen);
	for (size_t i = 0; !ret && i < c->n_webapps_exclude; i++) {
		const char *h = c->webapps_exclude[i];
		if (!webapp_by_host(h, strlen(h), NULL)) {
			const struct ynode *item = n->kind == YNODE_SEQ ? n->kids[i] : n;
			snprintf(err, errlen, "%s:%d: '%s' is not a host of the web app catalog "
				 "(chatgpt.com, claude.ai, gemini.google.com, ...; see README)", file, item->line, h);
			ret = -EINVAL;
		}
	}
	return ret;
}

/* The chat web apps' hosts are watched by default, whatever endpoints:
 * says, less webapps_exclude: typing into chatgpt.com is the commonest way
 * data reaches a model. */
static int watch_webapps(struct config *c)
{
	size_t n;
	const struct webapp *const *all = webapp_all(&n);
	for (size_t i = 0; i < n; i++)
		for (const char *const *h = all[i]->hosts; *h; h++) {
			char **v;
			if (config_host_watched((const char *const *)c->webapps_exclude, c->n_webapps_exclude, *h) ||
			    config_host_watched((const char *const *)c->endpoints, c->n_endpoints, *h))
				continue;
			if (!(v = realloc(c->endpoints, (c->n_endpoints + 2) * sizeof(*v))))
				return -ENOMEM;
			c->endpoints = v;
			if (!(v[c->n_endpoints] = strdup(*h)))
				return -ENOMEM;
			v[++c->n_endpoints] = NULL;
		}
	return 0;
}

static int set_ports(const char *file, const struct ynode *n, struct config *c, char *err,
		     size_t errlen)
{
	size_t cnt = n->kind == YNODE_SCALAR ? 1 : n->nkids;
	uint16_t *v;

	if (n->kind == YNODE_MAP || cnt == 0 || cnt > 64) {
		snprintf(err, errlen, "%s:%d: expected a port or a list of 1 to 64 ports", file, n->line);
		return -EINVAL;
	}
	v = calloc(cnt, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < cnt; i++) {
		unsigned long long p;
		const struct ynode *item = n->kind == YNODE_SEQ ? n->kids[i] : n;
		if (ytree_u64(file, item, 1, 65535, &p, err, errlen)) {
			free(v);
			return -EINVAL;
		}
		v[i] = (uint16_t)p;
	}
	free(c->target_ports);
	c->target_ports = v;
	c->n_target_ports = cnt;
	return 0;
}

static int set_addrs(const char *file, const struct ynode *n, struct config *c, char *err,
		     size_t errlen)
{
	const char **list;
	size_t len;
	int ret = ytree_strlist(file, n, &list, &len, err, errlen);
	if (ret)
		return ret;
	struct sockaddr_storage *v = calloc(len ? len : 1, sizeof(*v));
	if (!v) {
		free(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&v[i];
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&v[i];
		if (inet_pton(AF_INET, list[i], &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
		} else if (inet_pton(AF_INET6, list[i], &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
		} else {
			snprintf(err, errlen, "%s:%d: '%s' is not an IPv4 or IPv6 address", file,
				 n->kind == YNODE_SEQ ? n->kids[i]->line : n->line, list[i]);
			free(list);
			free(v);
			return -EINVAL;
		}
	}
	free(list);
	free(c->target_addrs);
	c->target_addrs = v;
	c->n_target_addrs = len;
	return 0;
}

/* HOST:PORT of a proxy: a name, an IPv4 address or [IPv6], and a port. */
static int parse_hostport(const char *file, const struct ynode *n, struct config_hostport *hp,
			  char *err, size_t errlen)
{
	char host[PROXYHEAD_HOST_MAX];
	bool is_ip;

	if (n->kind != YNODE_SCALAR ||
	    proxyhead_authority(n->str, strlen(n->str), 0, host, &hp->port, &is_ip)) {
		snprintf(err, errlen, "%s:%d: expected HOST:PORT such as proxy.corp.example:3128 "
			 "or [::1]:3128", file, n->line);
		return -EINVAL;
	}
	free(hp->host);
	return (hp->host = strdup(host)) ? 0 : -ENOMEM;
}

static int set_proxies(const char *file, const struct ynode *n, struct config *c, char *err,
		       size_t errlen)
{
	size_t cnt = n->kind == YNODE_SCALAR ? 1 : n->nkids;
	struct config_hostport *v;

	if (n->kind == YNODE_MAP || cnt > 64) {
		snprintf(err, errlen, "%s:%d: expected a list of at most 64 HOST:PORT", file, n->line);
		return -EINVAL;
	}
	if (!(v = calloc(cnt ? cnt : 1, sizeof(*v))))
		return -ENOMEM;
	for (size_t i = 0; i < cnt; i++) {
		int ret = parse_hostport(file, n->kind == YNODE_SEQ ? n->kids[i] : n, &v[i], err, errlen);
		if (ret) {
			while (i)
				free(v[--i].host);
			free(v);
			return ret;
		}
	}
	for (size_t i = 0; i < c->n_proxies; i++)
		free(c->proxies[i].host);
	free(c->proxies);
	c->proxies = v;
	c->n_proxies = cnt;
	return 0;
}

/* upstream_proxy_auth: a file holding "user:password" (one line), owned
 * by whoever runs the agent and readable by nobody else: a credential the
 * whole company's egress may trust must not be one `cat` away for every
 * local user. Kept as the ready header value; the file text is wiped. */
static int set_proxy_auth(const char *file, const struct ynode *n, struct config *c, char *err,
			  size_t errlen)
{
	char buf[1024], *enc = NULL;
	struct stat st;
	ssize_t len;
	int fd, ret = -EINVAL;

	if (n->kind != YNODE_SCALAR || !n->str[0]) {
		snprintf(err, errlen, "%s:%d: expected the path of a file holding user:password", file,
			 n->line);
		return -EINVAL;
	}
	if ((fd = open(n->str, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "%s:%d: cannot open %s: %s", file, n->line, n->str, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s:%d: %s is not a regular file", file, n->line, n->str);
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "%s:%d: %s is accessible by group or others (mode %03o): "
			 "chmod 600 it", file, n->line, n->str, (unsigned)(st.st_mode & 0777));
		goto out;
	}
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0)
		len = 0;
	buf[len] = 0;
	if ((size_t)len == sizeof(buf) - 1) {
		snprintf(err, errlen, "%s:%d: %s is too long for user:password", file, n->line, n->str);
		goto out;
	}
	len = (ssize_t)strcspn(buf, "\r\n");
	buf[len] = 0;
	for (ssize_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			len = -1;
	if (len <= 0 || !strchr(buf, ':') || buf[0] == ':') {
		snprintf(err, errlen, "%s:%d: %s must hold one line user:password", file, n->line, n->str);
		goto out;
	}
	if (!(enc = malloc(6 + 4 * ((size_t)len / 3 + 1) + 1))) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(enc, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)enc + 6, (unsigned char *)buf, (int)len);
	if (c->upstream_proxy_auth) {
		explicit_bzero(c->upstream_proxy_auth, strlen(c->upstream_proxy_auth));
		free(c->upstream_proxy_auth);
	}
	c->upstream_proxy_auth = enc;
	ret = 0;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return ret;
}

/* on | off (true | false) */
static int set_onoff(const char *file, const struct ynode *n, const char *key, bool *dst, char *err, size_t errlen)
{
	if (n->kind == YNODE_SCALAR && (!strcmp(n->str, "on") || !strcmp(n->str, "true")))
		*dst = true;
	else if (n->kind == YNODE_SCALAR && (!strcmp(n->str, "off") || !strcmp(n->str, "false")))
		*dst = false;
	else {
		snprintf(err, errlen, "%s:%d: %s must be on or off", file, n->line, key);
		return -EINVAL;
	}
	return 0;
}

/* A key with two words: yes (*dst true) or no (false). */
static int set_either(const char *file, const struct ynode *n, const char *key, const char *yes, const char *no,
		      bool *dst, char *err, size_t errlen)
{
	if (n->kind == YNODE_SCALAR && !strcmp(n->str, yes))
		*dst = true;
	else if (n->kind == YNODE_SCALAR && !strcmp(n->str, no))
		*dst = false;
	else {
		snprintf(err, errlen, "%s:%d: %s must be %s or %s", file, n->line, key, no, yes);
		return -EINVAL;
	}
	return 0;
}

static int set_u32(const char *file, const struct ynode *n, unsigned long long min,
		   unsigned long long max, uint32_t *dst, char *err, size_t errlen)
{
	unsigned long long v;
	int ret = ytree_u64(file, n, min, max, &v, err, errlen);
	if (!ret)
		*dst = (uint32_t)v;
	return ret;
}

/* "file:line: " and the message about node n: -EINVAL. The error of
 * every section that is not a mapping and every key no one knows. */
static int __attribute__((format(printf, 5, 6)))
key_error(const char *file, const struct ynode *n, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int o = snprintf(err, errlen, "%s:%d: ", file, n->line);
	if (o >= 0 && (size_t)o < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + o, errlen - (size_t)o, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* http2: the limits a hostile HTTP/2 client meets (agent/proxy/h2.h). */
static int load_http2(const char *file, const struct ynode *m, struct config *c, char *err,
		      size_t errlen)
{
	if (m->kind != YNODE_MAP)
		return key_error(file, m, err, errlen, "http2 must be a mapping");
	for (size_t i = 0; i < ytree_map_len(m); i++) {
		const char *k = ytree_map_key(m, i)->str;
		const struct ynode *v = ytree_map_val(m, i);
		unsigned long long sz;
		int ret;
		if (!strcmp(k, "enabled"))
			ret = set_onoff(file, v, "http2.enabled", &c->h2.enabled, err, errlen);
		else if (!strcmp(k, "max_concurrent_streams"))
			ret = set_u32(file, v, 1, 1000, &c->h2.max_concurrent_streams, err, errlen);
		else if (!strcmp(k, "max_resets_per_second"))
			ret = set_u32(file, v, 1, 100000, &c->h2.max_resets_per_second, err, errlen);
		else if (!strcmp(k, "max_continuations"))
			ret = set_u32(file, v, 0, 1000, &c->h2.max_continuations, err, errlen);
		else if (!strcmp(k, "max_header_list_bytes") || !strcmp(k, "header_table_size")) {
			bool list = k[0] == 'm';
			if ((ret = ytree_size(file, v, &sz, err, errlen)))
				return ret;
			if (list ? sz < 1024 || sz > (1u << 20) : sz > 65536) {
				snprintf(err, errlen, "%s:%d: http2.%s must be %s", file, v->line, k,
					 list ? "1k..1M" : "0..64k");
				return -ERANGE;
			}
			*(list ? &c->h2.max_header_list_bytes : &c->h2.header_table_size) = (uint32_t)sz;
		} else {
			return key_error(file, ytree_map_key(m, i), err, errlen, "unknown key 'http2.%s'", k);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int set_ms(const char *file, const struct ynode *n, uint32_t *dst, char *err, size_t errlen)
{
	unsigned long long v;
	int ret = ytree_duration_ms(file, n, &v, err, errlen);
	if (ret)
		return ret;
	if (v == 0 || v > 24ULL * 3600 * 1000) {
		snprintf(err, errlen, "%s:%d: duration must be between 1ms and 24h", file, n->line);
		return -ERANGE;
	}
	*dst = (uint32_t)v;
	return 0;
}

static int load_limits(const char *file, const struct ynode *m, struct config *c, char *err,
		       size_t errlen)
{
	if (m->kind != YNODE_MAP)
		return key_error(file, m, err, errlen, "limits must be a mapping");
	for (size_t i = 0; i < ytree_map_len(m); i++) {
		const char *k = ytree_map_key(m, i)->str;
		const struct ynode *v = ytree_map_val(m, i);
		unsigned long long sz;
		int ret;
		if (!strcmp(k, "max_header_bytes")) {
			if ((ret = ytree_size(file, v, &sz, err, errlen)))
				return ret;
			if (sz < 1024 || sz > (1u << 20)) {
				snprintf(err, errlen, "%s:%d: max_header_bytes must be 1k..1M", file, v->line);
				return -ERANGE;
			}
			c->max_head_bytes = (uint32_t)sz;
		} else if (!strcmp(k, "max_headers")) {
			if ((ret = set_u32(file, v, 8, 128, &c->max_headers, err, errlen)))
				return ret;
		} else if (!strcmp(k, "max_body_bytes")) {
			if ((ret = ytree_size(file, v, &sz, err, errlen)))
				return ret;
			if (sz < 1024 || sz > (1ULL << 30)) {
				snprintf(err, errlen, "%s:%d: max_body_bytes must be 1k..1G", file, v->line);
				return -ERANGE;
			}
			c->max_body_bytes = sz;
		} else if (!strcmp(k, "ws_max_frame") || !strcmp(k, "ws_max_message")) {
			/* WebSocket (ws.c): past either, the session closes with 1009 */
			if ((ret = ytree_size(file, v, &sz, err, errlen)))
				return ret;
			if (sz < 1024 || sz > (1ULL << 30)) {
				snprintf(err, errlen, "%s:%d: %s must be 1k..1G", file, v->line, k);
				return -ERANGE;
			}
			*(k[7] == 'f' ? &c->ws_max_frame : &c->ws_max_message) = sz;
		} else if (!strcmp(k, "max_buffered_bytes")) {
			if ((ret = ytree_size(file, v, &sz, err, errlen)))
				return ret;
			if (sz < (1ULL << 20) || sz > (1ULL << 40)) {
				snprintf(err, errlen, "%s:%d: max_buffered_bytes must be 1M..1T", file, v->line);
				return -ERANGE;
			}
			c->max_buffered_bytes = sz;
		} else if (!strcmp(k, "header_timeout")) {
			if ((ret = set_ms(file, v, &c->header_timeout_ms, err, errlen)))
				return ret;
		} else if (!strcmp(k, "clienthello_timeout")) {
			if ((ret = set_ms(file, v, &c->clienthello_timeout_ms, err, errlen)))
				return ret;
			/* Longer than a minute only widens the window an idle
			 * socket holds a slot; a real client sends at once. */
			if (c->clienthello_timeout_ms > 60000) {
				snprintf(err, errlen, "%s:%d: clienthello_timeout must be at most 60s", file,
					 v->line);
				return -ERANGE;
			}
		} else if (!strcmp(k, "idle_timeout")) {
			if ((ret = set_ms(file, v, &c->idle_timeout_ms, err, errlen)))
				return ret;
		} else if (!strcmp(k, "ws_idle_timeout")) {
			if ((ret = set_ms(file, v, &c->ws_idle_timeout_ms, err, errlen)))
				return ret;
		} else if (!strcmp(k, "upstream_timeout")) {
			if ((ret = set_ms(file, v, &c->upstream_timeout_ms, err, errlen)))
				return ret;
		} else if (!strcmp(k, "max_connections")) {
			if ((ret = set_u32(file, v, 16, 1000000, &c->max_connections, err, errlen)))
				return ret;
		} else {
			return key_error(file, ytree_map_key(m, i), err, errlen, "unknown key 'limits.%s'", k);
		}
	}
	return 0;
}

static int load_collector(const char *file, const struct ynode *m, struct config *c, char *err,
			  size_t errlen)
{
	if (m->kind != YNODE_MAP)
		return key_error(file, m, err, errlen, "collector must be a mapping");
	for (size_t i = 0; i < ytree_map_len(m); i++) {
		const char *k = ytree_map_key(m, i)->str;
		const struct ynode *v = ytree_map_val(m, i);
		char **dst = !strcmp(k, "address") ? &c->collector.address :
			     !strcmp(k, "ca") ? &c->collector.ca :
			     !strcmp(k, "cert") ? &c->collector.cert :
			     !strcmp(k, "key") ? &c->collector.key : NULL;
		if (!dst)
			return key_error(file, ytree_map_key(m, i), err, errlen, "unknown key 'collector.%s'", k);
		int ret = set_str(file, v, dst, err, errlen);
		if (ret)
			return ret;
	}
	if (!c->collector.address || !c->collector.ca || !c->collector.cert || !c->collector.key) {
		snprintf(err, errlen, "%s:%d: collector needs address, ca, cert and key", file, m->line);
		return -EINVAL;
	}
	return 0;
}

static int set_defaults(struct config *c)
{
	char host[256];
	size_t n = 0;

	c->listen4.sin_family = AF_INET;
	c->listen4.sin_port = htons(15001);
	c->listen4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->listen6.sin6_family = AF_INET6;
	c->listen6.sin6_addr = in6addr_loopback;
	c->max_head_bytes = 32768;
	c->max_headers = 100;
	c->max_body_bytes = 16ULL << 20;
	c->ws_max_frame = 16ULL << 20;
	c->ws_max_message = 16ULL << 20;
	c->h2.enabled = true;
	/* served one at a time (h2.h): more open streams only queue */
	c->h2.max_concurrent_streams = 32;
	c->h2.max_header_list_bytes = 65536;
	c->h2.max_resets_per_second = 100;
	c->h2.max_continuations = 8;
	c->h2.header_table_size = 4096;
	c->max_buffered_bytes = 256ULL << 20;
	c->header_timeout_ms = 10000;
	/* A client writes its ClientHello right after connect(); three
	 * seconds covers a loaded machine, and nothing is relayed meanwhile. */
	c->clienthello_timeout_ms = 3000;
	c->unwatched_sni = CONFIG_UNWATCHED_INTERCEPT;
	c->idle_timeout_ms = 120000;
	c->ws_idle_timeout_ms = 30 * 60000;
	c->upstream_timeout_ms = 30000;
	c->max_connections = 10000;
	c->dns_min_ttl_s = 30;
	c->dns_learning = true;
	c->first_flight_guard = true;
	c->quic_all = true;
	c->dns_max_ttl_s = 3600;
	c->log_level = LOG_INFO;
	c->spool_max_bytes = 1ULL << 30;
	c->spool_fsync = CONFIG_FSYNC_BATCH;
	c->ship_batch_events = 1000;
	c->ship_interval_ms = 1000;
	c->vault_ttl_ms = 3600u * 1000u;
	c->rejected_ca_ttl_ms = 3600u * 1000u;
	c->justify_ttl_ms = 3600u * 1000u;
	if (!(c->justify_socket = strdup(CONFIG_JUSTIFY_SOCKET)))
		return -ENOMEM;
	c->vault_max_entries = 4096;
	while (config_default_endpoints[n])
		n++;
	c->endpoints = calloc(n + 1, sizeof(char *));
	if (!c->endpoints)
		return -ENOMEM;
	for (c->n_endpoints = 0; c->n_endpoints < n; c->n_endpoints++)
		if (!(c->endpoints[c->n_endpoints] = strdup(config_default_endpoints[c->n_endpoints])))
			return -ENOMEM;
	/* 80 too: plain HTTP to an endpoint must reach the agent to be refused,
	 * not leave the machine unseen. */
	c->target_ports = calloc(2, sizeof(uint16_t));
	if (!c->target_ports)
		return -ENOMEM;
	c->target_ports[0] = 443;
	c->target_ports[1] = 80;
	c->n_target_ports = 2;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = 0;
	if (!(c->cgroup = strdup("auto")) || !(c->pin_dir = strdup("/sys/fs/bpf/vigil")) ||
	    !(c->upstream_ca = strdup("system")) || !(c->spool_dir = strdup("/var/lib/vigil/spool")) ||
	    !(c->agent_id = strdup(host)))
		return -ENOMEM;
	return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct ynode *root = NULL;
	struct config *c;
	const struct ynode *listen6 = NULL;
	int ret, auth_line = 0;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if ((ret = set_defaults(c)) || !(c->path = strdup(path))) {
		ret = ret ? ret : -ENOMEM;
		goto err;
	}
	if ((ret = ytree_load(path, &root, err, errlen)))
		goto err;

	for (size_t i = 0; root && i < ytree_map_len(root); i++) {
		const struct ynode *kn = ytree_map_key(root, i), *v = ytree_map_val(root, i);
		const char *k = kn->str;

		if (!strcmp(k, "listen"))
			ret = parse_listen4(path, v, &c->listen4, err, errlen);
		else if (!strcmp(k, "metrics"))
			ret = parse_listen4(path, v, &c->metrics, err, errlen);
		else if (!strcmp(k, "listen6"))
			listen6 = v;
		else if (!strcmp(k, "cgroup"))
			ret = set_str(path, v, &c->cgroup, err, errlen);
		else if (!strcmp(k, "fail_mode"))
			ret = set_either(path, v, k, "closed", "open", &c->fail_closed, err, errlen);
		else if (!strcmp(k, "quic"))
			ret = set_either(path, v, k, "all", "targets", &c->quic_all, err, errlen);
		else if (!strcmp(k, "dns_learning"))
			ret = set_onoff(path, v, k, &c->dns_learning, err, errlen);
		else if (!strcmp(k, "first_flight_guard"))
			ret = set_onoff(path, v, k, &c->first_flight_guard, err, errlen);
		else if (!strcmp(k, "pin_dir"))
			ret = set_str(path, v, &c->pin_dir, err, errlen);
		else if (!strcmp(k, "ca_cert"))
			ret = set_str(path, v, &c->ca_cert, err, errlen);
		else if (!strcmp(k, "ca_key"))
			ret = set_str(path, v, &c->ca_key, err, errlen);
		else if (!strcmp(k, "upstream_ca"))
			ret = set_str(path, v, &c->upstream_ca, err, errlen);
		else if (!strcmp(k, "endpoints"))
			ret = set_domains(path, v, &c->endpoints, &c->n_endpoints, err, errlen);
		else if (!strcmp(k, "mcp_servers"))
			ret = set_domains(path, v, &c->mcp_servers, &c->n_mcp_servers, err, errlen);
		else if (!strcmp(k, "mcp_commands"))
			ret = set_list(path, v, &c->mcp_commands, &c->n_mcp_commands, valid_command_name,
				       "a program file name (letters, digits, '.', '_', '+', '-')", err, errlen);
		else if (!strcmp(k, "webapps_exclude"))
			ret = set_webapps_exclude(path, v, c, err, errlen);
		else if (!strcmp(k, "passthrough"))
			ret = set_domains(path, v, &c->passthrough, &c->n_passthrough, err, errlen);
		else if (!strcmp(k, "target_addresses"))
			ret = set_addrs(path, v, c, err, errlen);
		else if (!strcmp(k, "target_ports"))
			ret = set_ports(path, v, c, err, errlen);
		else if (!strcmp(k, "unwatched_sni"))
			ret = set_unwatched(path, v, c, err, errlen);
		else if (!strcmp(k, "proxies"))
			ret = set_proxies(path, v, c, err, errlen);
		else if (!strcmp(k, "upstream_proxy"))
			ret = parse_hostport(path, v, &c->upstream_proxy, err, errlen);
		else if (!strcmp(k, "upstream_proxy_auth")) {
			ret = set_proxy_auth(path, v, c, err, errlen);
			auth_line = v->line;
		} else if (!strcmp(k, "policy"))
			ret = set_str(path, v, &c->policy, err, errlen);
		else if (!strcmp(k, "audit_log"))
			ret = set_str(path, v, &c->audit_log, err, errlen);
		else if (!strcmp(k, "spool_dir"))
			ret = set_str(path, v, &c->spool_dir, err, errlen);
		else if (!strcmp(k, "user"))
			ret = set_str(path, v, &c->user, err, errlen);
		else if (!strcmp(k, "agent_id")) {
			ret = set_str(path, v, &c->agent_id, err, errlen);
			c->agent_id_line = v->line;
		}
		else if (!strcmp(k, "collector"))
			ret = load_collector(path, v, c, err, errlen);
		else if (!strcmp(k, "spool_max_bytes")) {
			unsigned long long sz;
			if (!(ret = ytree_size(path, v, &sz, err, errlen))) {
				/* below 1 MiB a single batch could not fit next to a gap record */
				if (sz < (1ULL << 20) || sz > (1ULL << 40)) {
					snprintf(err, errlen, "%s:%d: spool_max_bytes must be 1M..1T", path, v->line);
					ret = -ERANGE;
				} else {
					c->spool_max_bytes = sz;
				}
			}
		} else if (!strcmp(k, "spool_fsync")) {
			static const char *const fs[] = { "always", "batch", "never" };
			ret = -EINVAL;
			for (int l = 0; v->kind == YNODE_SCALAR && l < 3; l++)
				if (!strcmp(v->str, fs[l])) {
					c->spool_fsync = l;
					ret = 0;
				}
			if (ret)
				snprintf(err, errlen, "%s:%d: spool_fsync must be always, batch or never",
					 path, v->line);
		} else if (!strcmp(k, "ship_batch_events"))
			ret = set_u32(path, v, 1, 100000, &c->ship_batch_events, err, errlen);
		else if (!strcmp(k, "ship_interval"))
			ret = set_ms(path, v, &c->ship_interval_ms, err, errlen);
		else if (!strcmp(k, "limits"))
			ret = load_limits(path, v, c, err, errlen);
		else if (!strcmp(k, "http2"))
			ret = load_http2(path, v, c, err, errlen);
		else if (!strcmp(k, "justify_socket"))
			ret = set_str(path, v, &c->justify_socket, err, errlen);
		else if (!strcmp(k, "justify_ttl"))
			ret = set_ms(path, v, &c->justify_ttl_ms, err, errlen);
		else if (!strcmp(k, "vault_ttl"))
			ret = set_ms(path, v, &c->vault_ttl_ms, err, errlen);
		else if (!strcmp(k, "vault_max_entries"))
			ret = set_u32(path, v, 1, 1000000, &c->vault_max_entries, err, errlen);
		else if (!strcmp(k, "on_rejected_ca")) {
			ret = v->kind == YNODE_SCALAR && (!strcmp(v->str, "block") || !strcmp(v->str, "passthrough"))
				      ? 0 : -EINVAL;
			if (ret)
				snprintf(err, errlen, "%s:%d: on_rejected_ca must be block or passthrough",
					 path, v->line);
			else
				c->rejected_ca_passthrough = !strcmp(v->str, "passthrough");
		} else if (!strcmp(k, "rejected_ca_ttl"))
			ret = set_ms(path, v, &c->rejected_ca_ttl_ms, err, errlen);
		else if (!strcmp(k, "log_level")) {
			static const char *const lv[] = { "error", "warning", "info", "debug" };
			ret = -EINVAL;
			for (int l = 0; v->kind == YNODE_SCALAR && l < 4; l++)
				if (!strcmp(v->str, lv[l])) {
					c->log_level = l;
					ret = 0;
				}
			if (ret)
				snprintf(err, errlen, "%s:%d: log_level must be error, warning, info or debug",
					 path, v->line);
		} else {
			ret = key_error(path, kn, err, errlen, "unknown key '%s'", k);
		}
		if (ret)
			goto err;
	}

	/* listen6 defaults to [::1] on the IPv4 listener's port. */
	if (listen6) {
		if ((ret = parse_listen6(path, listen6, &c->listen6, err, errlen)))
			goto err;
	} else {
		c->listen6.sin6_port = c->listen4.sin_port;
	}
	if (!strcmp(c->cgroup, "auto")) {
		char root_path[4096];
		if (config_cgroup2_root(root_path, sizeof(root_path)) == 0) {
			free(c->cgroup);
			if (!(c->cgroup = strdup(root_path))) {
				ret = -ENOMEM;
				goto err;
			}
		}
	}
	if (!c->ca_cert != !c->ca_key) {
		snprintf(err, errlen, "%s: ca_cert and ca_key go together", path);
		ret = -EINVAL;
		goto err;
	}
	if (c->upstream_proxy_auth && !c->upstream_proxy.host) {
		snprintf(err, errlen, "%s:%d: upstream_proxy_auth needs upstream_proxy", path, auth_line);
		ret = -EINVAL;
		goto err;
	}
	if ((ret = watch_mcp_servers(c)) || (ret = watch_webapps(c)))
		goto err;
	if (c->header_timeout_ms > c->idle_timeout_ms) {
		snprintf(err, errlen, "%s: limits.header_timeout is longer than limits.idle_timeout", path);
		ret = -EINVAL;
		goto err;
	}
	ytree_free(root);
	*out = c;
	return 0;
err:
	ytree_free(root);
	config_free(c);
	return ret;
}

int config_resolve_identity(struct config *c, char *err, size_t errlen)
{
	X509 *x = NULL;
	char cn[128], perr[256];
	int ret;

	if (!c->collector.cert)
		return 0;
	if ((ret = pki_cert_load(c->collector.cert, &x, perr, sizeof(perr)))) {
		snprintf(err, errlen, "%s: collector.cert: %s", c->path, perr);
		return ret;
	}
	ret = pki_cert_cn(x, cn, sizeof(cn));
	X509_free(x);
	if (ret) {
		snprintf(err, errlen, "%s: collector.cert %s names no usable agent id (CN)", c->path,
			 c->collector.cert);
		return -EINVAL;
	}
	if (c->agent_id_line) {
		if (strcmp(c->agent_id, cn) != 0) {
			snprintf(err, errlen,
				 "%s:%d: agent_id '%s' differs from the agent id '%s' that collector.cert %s "
				 "was enrolled for; the collector would refuse every batch (remove agent_id "
				 "or enroll again)", c->path, c->agent_id_line, c->agent_id, cn,
				 c->collector.cert);
			return -EINVAL;
		}
		return 0;
	}
	free(c->agent_id);
	return (c->agent_id = strdup(cn)) ? 0 : -ENOMEM;
}
