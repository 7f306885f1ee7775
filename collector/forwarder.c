/* forwarder: one thread per target: feed a batch from the cursor, render it,
 * deliver it, then move the cursor (see forwarder.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "osutil.h"
#include "export.h"
#include "forwarder.h"
#include "jsonw.h"
#include "log.h"
#include "siem.h"
#include "store.h"

#define IDLE_POLL_MS 500
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define IO_TIMEOUT_S 30

struct target {
	struct forwarder *fw;
	const struct colconf_forward *cf;
	char cursor_path[PATH_MAX];
	char url[1024];
	uint64_t cursor;
	pthread_t thr;
	bool started;
	CURL *curl;
	int fd;                   /* syslog connection, -1 when closed */
	SSL_CTX *tls_ctx;
	SSL *ssl;
};

struct forwarder {
	const struct colconf *conf;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	char host[256];
	struct target *t;
	size_t n;
};

/* Sleeps up to ms, returning early (true) when the forwarder stops. */
static bool nap(struct forwarder *fw, unsigned ms)
{
	struct timespec ts;
	osutil_deadline_ms(&ts, ms);
	pthread_mutex_lock(&fw->mu);
	while (!fw->stop && pthread_cond_timedwait(&fw->cv, &fw->mu, &ts) != ETIMEDOUT)
		;
	bool stop = fw->stop;
	pthread_mutex_unlock(&fw->mu);
	return stop;
}

/* ---- the durable cursor ---- */

static uint64_t cursor_load(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return (uint64_t)v;
}

/* Write, fsync, rename: after a crash the file holds the old or the new
 * cursor, never a torn one. */
static int cursor_save(const char *path, uint64_t v)
{
	char tmp[PATH_MAX + 8], buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)v);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n || fsync(fd)) {
		int e = errno ? errno : EIO;
		close(fd);
		return -e;
	}
	close(fd);
	return rename(tmp, path) ? -errno : 0;
}

/* ---- rendering a batch ---- */

static int render_http(const struct target *t, const struct store_rows *r, struct jsonw *w)
{
	enum colconf_fwd_format fmt = t->cf->format;
	if (fmt == FWD_OTLP)
		siem_otlp_open(w, t->fw->host);
	for (size_t i = 0; i < r->n; i++) {
		const struct store_event *e = &r->ev[i];
		if (fmt == FWD_OTLP) {
			siem_otlp_record(e, w);
			continue;
		}
		if (fmt == FWD_HEC) {
			siem_hec_event(e, w);
			jsonw_raw(w, "\n", 1);
			w->need_comma = false;
			continue;
		}
		unsigned m = siem_ocsf_classes(e);
		for (unsigned c = 1; c <= SIEM_OCSF_DETECTION; c <<= 1)
			if (m & c) {
				siem_ocsf_record(e, (enum siem_ocsf_class)c, w);
				jsonw_raw(w, "\n", 1);
				w->need_comma = false;
			}
	}
	if (fmt == FWD_OTLP)
		siem_otlp_close(w);
	return w->oom ? -ENOMEM : 0;
}

/* ---- HTTP targets (libcurl) ---- */

static size_t discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

/* The URL to POST to: a bare endpoint gets the format's standard path. */
static void target_url(struct target *t)
{
	const char *u = t->cf->url, *host = strstr(u, "://") + 3, *path = strchr(host, '/');
	const char *std = t->cf->format == FWD_OTLP ? "/v1/logs" : t->cf->format == FWD_HEC ? "/services/collector/event"
											     : "";
	bool bare = !path || !strcmp(path, "/");
	snprintf(t->url, sizeof(t->url), "%.*s%s", (int)(path ? (size_t)(path - u) : strlen(u)), u, bare ? std : path);
}

/* Aborts a transfer in flight when the collector stops. */
static int on_progress(void *u, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a;
	(void)b;
	(void)c;
	(void)d;
	return __atomic_load_n(&((struct forwarder *)u)->stop, __ATOMIC_RELAXED) ? 1 : 0;
}

static int send_http(struct target *t, const char *body, size_t len, char *why, size_t wl)
{
	struct curl_slist *h = NULL;
	char auth[1100] = "";
	long code = 0;
	if (!t->curl && !(t->curl = curl_easy_init())) {
		snprintf(why, wl, "curl_easy_init failed");
		return -ENOMEM;
	}
	CURL *c = t->curl;
	curl_easy_reset(c);
	h = curl_slist_append(h, t->cf->format == FWD_OTLP ? "Content-Type: application/json"
							   : "Content-Type: application/x-ndjson");
	if (t->cf->token) {
		snprintf(auth, sizeof(auth), "Authorization: %s %s", t->cf->format == FWD_HEC ? "Splunk" : "Bearer",
			 t->cf->token);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, t->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)IO_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, t->fw);
	if (t->cf->ca)
		curl_easy_setopt(c, CURLOPT_CAINFO, t->cf->ca);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	OPENSSL_cleanse(auth, sizeof(auth));
	if (rc != CURLE_OK) {
		snprintf(why, wl, "%s", curl_easy_strerror(rc));
		return -EIO;
	}
	if (code < 200 || code > 299) {
		snprintf(why, wl, "HTTP %ld", code);
		return -EIO;
	}
	return 0;
}

/* ---- syslog over TCP / TLS ---- */

static void syslog_close(struct target *t)
{
	if (t->ssl) {
		SSL_free(t->ssl);
		t->ssl = NULL;
	}
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

static int syslog_connect(struct target *t, char *why, size_t wl)
{
	char host[256];
	const char *a = t->cf->address, *colon = strrchr(a, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - a), a);
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		snprintf(why, wl, "%s", gai_strerror(rc));
		return -EIO;
	}
	t->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	if (t->fd >= 0) {
		setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (t->fd < 0 || connect(t->fd, ai->ai_addr, ai->ai_addrlen)) {
		snprintf(why, wl, "connect: %s", strerror(errno));
		freeaddrinfo(ai);
		syslog_close(t);
		return -EIO;
	}
	freeaddrinfo(ai);
	if (!t->cf->tls)
		return 0;
	if (!t->tls_ctx) {
		t->tls_ctx = SSL_CTX_new(TLS_client_method());
		if (!t->tls_ctx) {
			snprintf(why, wl, "SSL_CTX_new failed");
			syslog_close(t);
			return -ENOMEM;
		}
		SSL_CTX_set_min_proto_version(t->tls_ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(t->tls_ctx, SSL_VERIFY_PEER, NULL);
		if (t->cf->ca ? SSL_CTX_load_verify_locations(t->tls_ctx, t->cf->ca, NULL) != 1
			      : SSL_CTX_set_default_verify_paths(t->tls_ctx) != 1)
			log_warn("forward %s: cannot load the CA %s", t->cf->name, t->cf->ca ? t->cf->ca : "(system)");
	}
	/* RFC 5425: the server's certificate must match the name we dialled. */
	if (!(t->ssl = SSL_new(t->tls_ctx)) || !SSL_set1_host(t->ssl, host) ||
	    (!isdigit((unsigned char)host[0]) && !strchr(host, ':') && !SSL_set_tlsext_host_name(t->ssl, host)) ||
	    !SSL_set_fd(t->ssl, t->fd) || SSL_connect(t->ssl) != 1) {
		unsigned long e = ERR_get_error();
		snprintf(why, wl, "TLS: %s", e ? ERR_reason_error_string(e) : "handshake failed");
		ERR_clear_error();
		syslog_close(t);
		return -EIO;
	}
	return 0;
}

static int write_all(struct target *t, const char *p, size_t n)
{
	while (n) {
		ssize_t k = t->ssl ? SSL_write(t->ssl, p, n > INT_MAX ? INT_MAX : (int)n)
				   : send(t->fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* RFC 5425 / RFC 6587 octet counting: "LEN SP SYSLOG-MSG", no newline. */
static int send_syslog(struct target *t, const struct store_rows *r, char *why, size_t wl)
{
	if (t->fd < 0 && syslog_connect(t, why, wl))
		return -EIO;
	for (size_t i = 0; i < r->n; i++) {
		char *msg = NULL, hdr[24];
		size_t len = 0;
		FILE *m = open_memstream(&msg, &len);
		if (!m)
			return -ENOMEM;
		export_line(EXPORT_SYSLOG, &r->ev[i], t->fw->host, m);
		fclose(m);
		while (len && msg[len - 1] == '\n')
			len--;
		int hl = snprintf(hdr, sizeof(hdr), "%zu ", len);
		int rc = write_all(t, hdr, (size_t)hl) || write_all(t, msg, len) ? -EIO : 0;
		free(msg);
		if (rc) {
			snprintf(why, wl, "send: %s", strerror(errno ? errno : EPIPE));
			syslog_close(t);
			return rc;
		}
	}
	return 0;
}

/* ---- the loop ---- */

static int deliver(struct target *t, const struct store_rows *r, char *why, size_t wl)
{
	if (t->cf->format == FWD_SYSLOG)
		return send_syslog(t, r, why, wl);
	struct jsonw w;
	jsonw_init(&w);
	int rc = render_http(t, r, &w);
	if (rc)
		snprintf(why, wl, "out of memory rendering %zu events", r->n);
	else
		rc = send_http(t, w.out.data, w.out.len, why, wl);
	jsonw_free(&w);
	return rc;
}

static void *target_loop(void *arg)
{
	struct target *t = arg;
	struct forwarder *fw = t->fw;
	struct store *s = NULL;
	unsigned backoff = 0;
	bool failing = false;
	char err[512];
	while (!s) {
		if (!store_open(fw->conf->store, &s, err, sizeof(err)))
			break;
		log_err("forward %s: %s", t->cf->name, err);
		if (nap(fw, BACKOFF_MAX_MS))
			return NULL;
	}
	for (;;) {
		struct store_rows rows;
		uint64_t next;
		unsigned wait = IDLE_POLL_MS;
		int rc = store_feed(s, t->cursor, t->cf->batch, &rows, &next);
		if (rc) {
			snprintf(err, sizeof(err), "store: %s", store_errmsg(s));
		} else if (rows.n) {
			rc = deliver(t, &rows, err, sizeof(err));
			if (!rc) {
				t->cursor = next;
				if (cursor_save(t->cursor_path, next))
					log_err("forward %s: cannot save the cursor to %s: %s", t->cf->name,
						t->cursor_path, strerror(errno));
				log_debug("forward %s: delivered %zu events (cursor %llu)", t->cf->name, rows.n,
					  (unsigned long long)next);
				wait = 0;   /* more may be waiting */
			}
			store_rows_free(&rows);
		} else {
			store_rows_free(&rows);
		}
		if (rc) {
			backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
			wait = backoff;
			if (!failing)
				log_warn("forward %s: %s; retrying (up to every %d s)", t->cf->name, err,
					 BACKOFF_MAX_MS / 1000);
			failing = true;
		} else if (failing) {
			log_info("forward %s: delivering again", t->cf->name);
			failing = false;
			backoff = 0;
		}
		if (wait ? nap(fw, wait) : __atomic_load_n(&fw->stop, __ATOMIC_RELAXED))
			break;
	}
	store_close(s);
	return NULL;
}

/* Default state directory: next to the SQLite database. */
static int state_dir(const struct colconf *c, char *out, size_t len, char *err, size_t errlen)
{
	if (c->forward_state) {
		snprintf(out, len, "%s", c->forward_state);
	} else if (strncmp(c->store, "sqlite:", 7)) {
		snprintf(err, errlen, "forward: the ClickHouse store needs forward_state (a directory for the cursors)");
		return -EINVAL;
	} else {
		const char *p = c->store + strlen("sqlite:"), *slash = strrchr(p, '/');
		if (slash)
			snprintf(out, len, "%.*s", (int)(slash - p ? slash - p : 1), p);
		else
			snprintf(out, len, ".");
	}
	if (mkdir(out, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "forward_state %s: %s", out, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

int forwarder_start(const struct colconf *c, struct forwarder **out, char *err, size_t errlen)
{
	char dir[PATH_MAX - 80];
	*out = NULL;
	if (!c->n_forwards)
		return 0;
	if (state_dir(c, dir, sizeof(dir), err, errlen))
		return -EINVAL;
	curl_global_init(CURL_GLOBAL_DEFAULT);   /* before any thread uses curl */
	struct forwarder *fw = calloc(1, sizeof(*fw));
	if (!fw || !(fw->t = calloc(c->n_forwards, sizeof(*fw->t)))) {
		free(fw);
		return -ENOMEM;
	}
	fw->conf = c;
	fw->n = c->n_forwards;
	pthread_mutex_init(&fw->mu, NULL);
	pthread_cond_init(&fw->cv, NULL);
	if (gethostname(fw->host, sizeof(fw->host)))
		snprintf(fw->host, sizeof(fw->host), "vigil-collector");
	for (size_t i = 0; i < fw->n; i++) {
		struct target *t = &fw->t[i];
		t->fw = fw;
		t->cf = &c->forwards[i];
		t->fd = -1;
		snprintf(t->cursor_path, sizeof(t->cursor_path), "%s/%s.cursor", dir, t->cf->name);
		t->cursor = cursor_load(t->cursor_path);
		if (t->cf->url)
			target_url(t);
		if (pthread_create(&t->thr, NULL, target_loop, t)) {
			snprintf(err, errlen, "forward %s: cannot start its thread", t->cf->name);
			forwarder_stop(fw);
			return -ENOMEM;
		}
		t->started = true;
		log_info("forward %s: %s from cursor %llu", t->cf->name, t->cf->url ? t->url : t->cf->address,
			 (unsigned long long)t->cursor);
	}
	*out = fw;
	return 0;
}

void forwarder_stop(struct forwarder *fw)
{
	if (!fw)
		return;
	pthread_mutex_lock(&fw->mu);
	fw->stop = true;
	pthread_cond_broadcast(&fw->cv);
	pthread_mutex_unlock(&fw->mu);
	for (size_t i = 0; i < fw->n; i++) {
		struct target *t = &fw->t[i];
		if (t->started)
			pthread_join(t->thr, NULL);
		if (t->curl)
			curl_easy_cleanup(t->curl);
		syslog_close(t);
		SSL_CTX_free(t->tls_ctx);
	}
	pthread_mutex_destroy(&fw->mu);
	pthread_cond_destroy(&fw->cv);
	free(fw->t);
	free(fw);
}
