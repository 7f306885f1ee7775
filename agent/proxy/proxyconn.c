/* proxyconn: the client's side of an explicit proxy (see proxyconn.h).
 *
 * The proxy addresses live in the same kernel target set as the LLM
 * endpoints, keyed by (address, proxy port), and are kept current by one
 * targets.c resolver per port (a proxy's name resolves like an endpoint's).
 * A proxy the config does not list, caught by the first-flight guard with
 * a watched name in its CONNECT line, joins a learned set (address:port,
 * expiring like a learned endpoint): put in the endpoints' target set, its
 * connections would meet the TLS classifier, which refuses a CONNECT line,
 * and every proxied call of that user would fail until it expired.
 *
 * The client's head is only peeked until it is decided, then replayed to
 * the real proxy exactly as sent (a CONNECT), or with "Connection: close"
 * (plain HTTP, one request per connection). Nothing the client sends after
 * it moves before the proxy answered and, for a tunnel, before its first
 * flight was read here. Why a ClientHello in a tunnel to a watched host
 * must name that host: the decision to intercept was taken on it; a client
 * that asks for api.openai.com and then says "example.org" in its SNI wants
 * the agent to pick the wrong branch, so it is refused, never relayed. And
 * why a ClientHello naming a watched host is refused in a tunnel to any
 * other name: behind a CDN that hosts both, the SNI is what routes. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "audit/audit.h"
#include "kernel/capture.h"
#include "proxy/exchange.h"
#include "log.h"
#include "loop.h"
#include "providers/providers.h"
#include "proxy/proxyconn.h"
#include "proxy/proxyhead.h"
#include "net/sni.h"
#include "kernel/targets.h"

#define HEAD_MAX (32 * 1024)            /* a request to a proxy (the default max_header_bytes) */
#define HELLO_MAX (SNI_MAX_HELLO + 1024)

struct proxy_port {
	struct agent *ag;
	uint16_t port;
	struct targets *targets;
};

struct proxyconn_set {
	struct targets *learned;        /* proxies the first-flight guard caught (NULL: guard off) */
	size_t n;
	struct proxy_port ports[];
};

static int apply_proxy(void *arg, const struct sockaddr *addr, bool add)
{
	struct proxy_port *p = arg;
	return add ? capture_target_add(p->ag->cap, addr, p->port) :
		     capture_target_del(p->ag->cap, addr, p->port);
}

/* A learned proxy's address carries its port (as targets_learn_endpoint's
 * entries): that address:port only joins the kernel target set. */
static int apply_learned(void *arg, const struct sockaddr *addr, bool add)
{
	struct agent *ag = arg;
	uint16_t port = ntohs(addr->sa_family == AF_INET ? ((const struct sockaddr_in *)addr)->sin_port :
							   ((const struct sockaddr_in6 *)addr)->sin6_port);

	return add ? capture_target_add(ag->cap, addr, port) : capture_target_del(ag->cap, addr, port);
}

/* The learned proxies: entries only (names matched, never resolved), with
 * the lifetime and cap of the endpoints the guard teaches targets.c. */
static int start_learned(struct agent *ag, struct proxyconn_set *s, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	struct targets_opts to = { .apply = apply_learned, .arg = ag, .min_ttl_s = cfg->dns_min_ttl_s,
				   .max_ttl_s = cfg->dns_max_ttl_s, .match_only = true };
	int ret;

	if (!(s->learned = targets_new(&to)))
		return -ENOMEM;
	if ((ret = proxyconn_set_names(ag, (const char *const *)cfg->endpoints, cfg->n_endpoints)))
		return ret;
	/* Its thread only expires entries. */
	if ((ret = targets_start(s->learned))) {
		snprintf(err, errlen, "proxies: cannot start the learned proxies' timer: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* An address literal as a sockaddr (port 0), or false for a name. */
static bool literal(const char *host, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* One port's resolver: its literal addresses now, its names resolved once
 * before the agent says ready (as endpoints are), then kept current. */
static int start_port(struct agent *ag, struct proxy_port *pp, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	const char *names[64];
	size_t nn = 0;
	struct targets_opts to = { .apply = apply_proxy, .arg = pp, .min_ttl_s = cfg->dns_min_ttl_s,
				   .max_ttl_s = cfg->dns_max_ttl_s };
	int ret;

	if (!(pp->targets = targets_new(&to)))
		return -ENOMEM;
	for (size_t i = 0; i < cfg->n_proxies; i++) {
		struct sockaddr_storage ss;
		if (cfg->proxies[i].port != pp->port)
			continue;
		if (!literal(cfg->proxies[i].host, &ss)) {
			names[nn++] = cfg->proxies[i].host;
			continue;
		}
		if ((ret = targets_add_static(pp->targets, (struct sockaddr *)&ss))) {
			snprintf(err, errlen, "proxies: cannot add %s: %s", cfg->proxies[i].host,
				 strerror(-ret));
			return ret;
		}
	}
	if (!nn)
		return 0;
	if ((ret = targets_set_domains(pp->targets, names, nn)))
		return ret;
	targets_refresh(pp->targets, loop_now_ms() / 1000);
	if ((ret = targets_start(pp->targets))) {
		snprintf(err, errlen, "proxies: cannot start the resolver: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

int proxyconn_init(struct agent *ag, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	struct proxyconn_set *s;
	int ret;

	if (!cfg->n_proxies && !cfg->first_flight_guard)
		return 0;
	if (!(s = calloc(1, sizeof(*s) + cfg->n_proxies * sizeof(s->ports[0]))))
		return -ENOMEM;
	ag->proxies = s;
	if (cfg->first_flight_guard && (ret = start_learned(ag, s, err, errlen)))
		return ret;
	for (size_t i = 0; i < cfg->n_proxies; i++) {
		bool seen = false;
		for (size_t k = 0; k < s->n; k++)
			seen |= s->ports[k].port == cfg->proxies[i].port;
		if (seen)
			continue;
		struct proxy_port *pp = &s->ports[s->n++];
		pp->ag = ag;
		pp->port = cfg->proxies[i].port;
		if ((ret = start_port(ag, pp, err, errlen)))
			return ret;
	}
	return 0;
}

void proxyconn_free(struct agent *ag)
{
	if (!ag->proxies)
		return;
	for (size_t i = 0; i < ag->proxies->n; i++)
		targets_free(ag->proxies->ports[i].targets);
	targets_free(ag->proxies->learned);
	free(ag->proxies);
	ag->proxies = NULL;
}

int proxyconn_set_names(struct agent *ag, const char *const *names, size_t n)
{
	if (!ag->proxies || !ag->proxies->learned)
		return 0;
	return targets_set_domains(ag->proxies->learned, names, n);
}

int proxyconn_learn(struct agent *ag, const char *name, const struct sockaddr *addr, uint32_t ttl_s, uint64_t now)
{
	if (!ag->proxies || !ag->proxies->learned)
		return -EOPNOTSUPP;
	return targets_learn_endpoint(ag->proxies->learned, name, addr, ttl_s, now);
}

/* Is addr:port (addr's own port ignored) a learned proxy? */
static bool learned_proxy(struct targets *learned, const struct sockaddr *addr, uint16_t port)
{
	struct sockaddr_storage ss;

	if (!learned || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return false;
	memset(&ss, 0, sizeof(ss));
	if (addr->sa_family == AF_INET) {
		memcpy(&ss, addr, sizeof(struct sockaddr_in));
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
	} else {
		memcpy(&ss, addr, sizeof(struct sockaddr_in6));
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	}
	return targets_contains(learned, (struct sockaddr *)&ss);
}

static bool listed_proxy(struct proxyconn_set *s, const struct sockaddr *addr, uint16_t port)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ports[i].port == port && s->ports[i].targets && targets_contains(s->ports[i].targets, addr))
			return true;
	return false;
}

bool proxyconn_is_proxy_addr(struct agent *ag, const struct sockaddr *addr, uint16_t port)
{
	if (!ag->proxies)
		return false;
	return listed_proxy(ag->proxies, addr, port) || learned_proxy(ag->proxies->learned, addr, port);
}

/* The original destination's address (port 0; v4-mapped as AF_INET). */
static void origin_addr(const struct vigil_origin *o, struct sockaddr_storage *out)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (!memcmp(o->orig_addr, mapped, 12)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, o->orig_addr + 12, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, o->orig_addr, 16);
	}
	*out = ss;
}

bool proxyconn_is_proxy(struct agent *ag, const struct vigil_origin *o)
{
	struct sockaddr_storage ss;

	if (!ag->proxies)
		return false;
	origin_addr(o, &ss);
	return proxyconn_is_proxy_addr(ag, (struct sockaddr *)&ss, o->orig_port);
}

bool proxyconn_is_learned(struct agent *ag, const struct vigil_origin *o)
{
	struct sockaddr_storage ss;

	if (!ag->proxies || !ag->proxies->learned)
		return false;
	origin_addr(o, &ss);
	return !listed_proxy(ag->proxies, (struct sockaddr *)&ss, o->orig_port) &&
	       learned_proxy(ag->proxies->learned, (struct sockaddr *)&ss, o->orig_port);
}

/* ---- refusals ---- */

/* Reads and drops what the client already sent (bounded), so that closing
 * does not answer with a reset that could destroy the reply in flight. */
static void drain(int cfd)
{
	char buf[4096];
	for (int i = 0; i < 16; i++)
		if (recv(cfd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
}

static void audit_refusal(struct agent *ag, const struct conn_info *info, const char *reason,
			  const char *error, int status)
{
	struct audit_event ev;
	audit_event_init(&ev, "connection");
	conn_info_fill_event(info, &ev);
	ev.action = "block";
	ev.reason = reason;
	ev.error = error;
	ev.status = status;
	ev.latency_ms = loop_now_ms() - info->t_start_ms;
	audit_emit(ag->audit, &ev);
	log_info("proxy client %s (uid %lld, pid %lld) refused: %s", info->id.comm,
		 (long long)info->id.uid, (long long)info->id.pid, error);
}

/* An HTTP error in the shape of the provider the host belongs to (what the
 * SDK in front of the user knows how to show), then close. */
static enum proxyconn_step refuse_http(struct agent *ag, int cfd, const struct conn_info *info,
				       int status, const char *code, const char *msg)
{
	struct exchange ex = { .provider = provider_identify(info->sni[0] ? info->sni : NULL, NULL) };
	char body[1024], out[1536];
	int blen = exchange_error_body(&ex, status, code, msg, body, sizeof(body));
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
			 "Connection: close\r\nX-Vigil-Error: %s\r\n\r\n%s",
			 status, exchange_status_text(status), blen, code, body);

	drain(cfd);
	if (send(cfd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("proxy client: cannot send the refusal: %s", strerror(errno));
	shutdown(cfd, SHUT_WR);
	audit_refusal(ag, info, code, msg, status);
	return PROXYCONN_REFUSED;
}

/* Inside a tunnel the client already speaks TLS: a fatal alert, then close. */
static enum proxyconn_step refuse_tls(struct agent *ag, int cfd, const struct conn_info *info,
				      unsigned char alert, const char *reason, const char *msg)
{
	unsigned char rec[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert };
	drain(cfd);
	if (send(cfd, rec, sizeof(rec), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("proxy client: cannot send the alert: %s", strerror(errno));
	shutdown(cfd, SHUT_WR);
	audit_refusal(ag, info, reason, msg, 0);
	return PROXYCONN_REFUSED;
}

/* ---- the client's request to its proxy ---- */

static bool intercepted_host(struct agent *ag, const char *host)
{
	const struct config *cfg = ag->cfg;
	return ag->certgen &&
	       config_host_watched((const char *const *)cfg->endpoints, cfg->n_endpoints, host) &&
	       !config_host_watched((const char *const *)cfg->passthrough, cfg->n_passthrough, host);
}

enum proxyconn_step proxyconn_head(struct agent *ag, int cfd, struct conn_info *info,
				   bool deadline_passed, struct proxyconn_fwd *fwd,
				   const char **error)
{
	static char buf[HEAD_MAX];   /* loop thread only */
	size_t max = ag->cfg->max_head_bytes < HEAD_MAX ? ag->cfg->max_head_bytes : HEAD_MAX;
	struct proxyhead ph;
	ssize_t n = recv(cfd, buf, max, MSG_PEEK);
	int hl;

	if (n == 0) {
		*error = "client closed before sending";
		return PROXYCONN_GONE;
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR) {
		*error = "client read failed";
		return PROXYCONN_GONE;
	}
	hl = n > 0 ? proxyhead_parse(buf, (size_t)n, max, &ph) : 0;
	if (hl == 0 && !deadline_passed)
		return PROXYCONN_MORE;
	if (hl == 0)
		return refuse_http(ag, cfd, info, 408, "proxy_request_timeout",
				   "no complete proxy request in time");
	if (hl < 0)
		return refuse_http(ag, cfd, info, -hl, "proxy_bad_request",
				   hl == -431 ? "proxy request head too large" :
				   hl == -411 ? "chunked request bodies are not forwarded" :
				   "malformed proxy request (bad host, port or syntax)");
	snprintf(info->sni, sizeof(info->sni), "%s", ph.host);
	fwd->head_len = ph.head_len;
	fwd->tunnel = ph.kind == PROXYHEAD_CONNECT;
	fwd->body_len = ph.body_len;
	if (ph.kind == PROXYHEAD_FORWARD) {
		const struct config *cfg = ag->cfg;
		/* Plain HTTP to an LLM API puts the key and the prompt on the wire
		 * in clear, and past inspection: refused, whatever the path. */
		if (config_host_watched((const char *const *)cfg->endpoints, cfg->n_endpoints, ph.host))
			return refuse_http(ag, cfd, info, 403, "https_required",
					   "plain HTTP to this API is refused; use https://");
		return PROXYCONN_FORWARD;
	}
	/* A CONNECT is replayed to the real proxy whatever the host: its
	 * answer (a 407 challenge, a refusal) is the client's business. For a
	 * host to intercept, remember the target (and the credentials, for a
	 * reconnect) to check the ClientHello against once the tunnel is up. */
	info->tunnel_port = 0;
	explicit_bzero(info->tunnel_auth, sizeof(info->tunnel_auth));
	if (intercepted_host(ag, ph.host)) {
		snprintf(info->tunnel_host, sizeof(info->tunnel_host), "%s", ph.host);
		info->tunnel_port = ph.port;
		if (ph.auth && ph.auth_len < sizeof(info->tunnel_auth)) {
			memcpy(info->tunnel_auth, ph.auth, ph.auth_len);
			info->tunnel_auth[ph.auth_len] = 0;
		}
	}
	return PROXYCONN_FORWARD;
}

/* ---- a CONNECT forwarded to the real proxy ---- */

int proxyconn_replay_head(int cfd, int ufd, const struct proxyconn_fwd *fwd)
{
	char buf[HEAD_MAX], out[HEAD_MAX + 32];
	const char *send_buf = buf;
	ssize_t n;
	int len = (int)fwd->head_len;

	if (fwd->head_len > sizeof(buf))
		return -E2BIG;
	if (recv(cfd, buf, fwd->head_len, MSG_DONTWAIT) != (ssize_t)fwd->head_len)
		return -EIO;
	if (!fwd->tunnel) {
		len = proxyhead_close_after(buf, fwd->head_len, out, sizeof(out));
		send_buf = out;
	}
	/* A fresh socket's send buffer takes a head this small whole. */
	n = len < 0 ? len : send(ufd, send_buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* it may carry the client's proxy credentials */
	explicit_bzero(buf, fwd->head_len);
	explicit_bzero(out, sizeof(out));
	if (n < 0)
		return len < 0 ? len : -errno;
	return n == len ? len : -EAGAIN;
}

int proxyconn_pass_reply(int ufd, int cfd, size_t *passed, int64_t *body_len)
{
	char buf[8192];
	int status = 0, hl;
	ssize_t n = recv(ufd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);

	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	hl = proxyhead_connect_reply(buf, (size_t)n, sizeof(buf), &status, body_len);
	if (hl < 0 || (hl == 0 && (size_t)n == sizeof(buf)))
		return -EPROTO;
	if (hl == 0)
		return 0;
	if (recv(ufd, buf, (size_t)hl, MSG_DONTWAIT) != hl ||
	    send(cfd, buf, (size_t)hl, MSG_DONTWAIT | MSG_NOSIGNAL) != hl)
		return -EIO;
	*passed = (size_t)hl;
	return status;
}

/* The ClientHello in a tunnel to a host to intercept: it must name that
 * host, the decision was taken on it. */
static enum proxyconn_step watched_hello(struct agent *ag, int cfd, struct conn_info *info,
					 enum sni_status st, char *name)
{
	char msg[600];

	switch (st) {
	case SNI_FOUND: {
		size_t len = strlen(name);
		if (len && name[len - 1] == '.')
			name[len - 1] = 0;   /* compared as the CONNECT host was normalised */
		if (!strcmp(name, info->tunnel_host)) {
			snprintf(info->sni, sizeof(info->sni), "%s", name);
			return PROXYCONN_INTERCEPT;
		}
		snprintf(msg, sizeof(msg), "ClientHello names %s, the CONNECT named %s", name,
			 info->tunnel_host);
		return refuse_tls(ag, cfd, info, 112, "tunnel_sni_mismatch", msg);
	}
	case SNI_ABSENT:
		return refuse_tls(ag, cfd, info, 112, "tunnel_no_sni",
				  "ClientHello in the tunnel has no server name");
	case SNI_NOT_TLS:
		return refuse_tls(ag, cfd, info, 10, "tunnel_not_tls",
				  "the tunnel to a watched host does not carry TLS");
	case SNI_MALFORMED:
		return refuse_tls(ag, cfd, info, 50, "tunnel_clienthello_invalid",
				  "malformed ClientHello in the tunnel");
	default:
		return refuse_tls(ag, cfd, info, 40, "tunnel_clienthello_timeout",
				  "no complete ClientHello in the tunnel in time");
	}
}

enum proxyconn_step proxyconn_tunnel_first(struct agent *ag, int cfd, int ufd,
					   struct conn_info *info, bool deadline_passed,
					   const char **error)
{
	static uint8_t buf[HELLO_MAX];   /* loop thread only */
	const struct config *cfg = ag->cfg;
	char name[256], msg[600];
	enum sni_status st;
	ssize_t n;

	name[0] = 0;
	/* The server speaks first (SSH, SMTP banners): not a TLS client
	 * naming a host, so nothing to look for; but a TLS server never
	 * speaks first, so not in a tunnel to a host we intercept. */
	if (recv(ufd, buf, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
		return info->tunnel_port ? refuse_tls(ag, cfd, info, 10, "tunnel_not_tls",
						      "the far end of a tunnel to a watched host spoke first") :
					   PROXYCONN_FORWARD;
	n = recv(cfd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		*error = n == 0 ? NULL : "client read failed";
		return PROXYCONN_GONE;
	}
	st = n > 0 ? sni_parse(buf, (size_t)n, name, sizeof(name)) : SNI_NEED_MORE;
	if (st == SNI_NEED_MORE && (n < 0 || (size_t)n < sizeof(buf)) && !deadline_passed)
		return PROXYCONN_MORE;
	if (info->tunnel_port)
		return watched_hello(ag, cfd, info, st, name);
	if (st == SNI_FOUND) {
		size_t len = strlen(name);
		if (len && name[len - 1] == '.')
			name[len - 1] = 0;
		if (!config_host_watched((const char *const *)cfg->endpoints, cfg->n_endpoints, name))
			return PROXYCONN_FORWARD;
		snprintf(msg, sizeof(msg), "ClientHello names watched %s inside a tunnel to %s", name,
			 info->sni);
		return refuse_tls(ag, cfd, info, 112, "tunnel_watched_sni", msg);
	}
	if (st == SNI_MALFORMED)
		return refuse_tls(ag, cfd, info, 50, "tunnel_clienthello_invalid",
				  "malformed ClientHello in the tunnel");
	if (st == SNI_NEED_MORE)
		/* Silence on both sides, or a ClientHello trickled past the
		 * deadline: a late name could be a watched one. */
		return refuse_tls(ag, cfd, info, 40, "tunnel_first_flight_timeout",
				  "nothing classifiable in the tunnel in time");
	return PROXYCONN_FORWARD;   /* no SNI, or not TLS: no host a CDN could route by */
}
