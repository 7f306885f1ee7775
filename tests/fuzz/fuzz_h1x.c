/* libFuzzer target: the sans-IO HTTP/1.1 exchange engine (agent/proxy/h1x.c)
 * with the real exchange behind it, fed arbitrary client and upstream bytes
 * at arbitrary split points, with the upstream's end, a pooled upstream
 * that dies, a failed connect and the clock chosen by the input.
 * Invariants: nothing crashes or leaks; the engine always ends (it never
 * asks for nothing while not done); bytes toward the upstream only exist
 * once it is connected; whatever the engine refused starts with an
 * HTTP/1.1 status line; the buffer budget is given back in full.
 *
 * Input: byte 0 client piece size, byte 1 upstream piece size, byte 2
 * flags, bytes 3-4 the client stream's length (little endian), then the
 * client stream, then the upstream's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "audit/audit.h"
#include "config.h"
#include "log.h"
#include "proxy/exchange.h"
#include "proxy/h1x.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct agent ag;
static struct conn_info info;

/* A real agent (policy tokenizing e-mail addresses, inspector, vault, an
 * audit log in a temporary directory); the detectors compile once. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/vigil-fuzz-h1x-XXXXXX", path[300], text[600], err[512];
	FILE *f;
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERR);
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/policy.yaml", dir);
	if (!(f = fopen(path, "w")))
		abort();
	fputs("version: 1\ndefault: allow\nredaction:\n  EMAIL: tokenize\nrules:\n"
	      "  - name: pii\n    when: { finding: [EMAIL] }\n    action: redact\n", f);
	fclose(f);
	snprintf(text, sizeof(text), "policy: %s\nspool_dir: %s\n", path, dir);
	snprintf(path, sizeof(path), "%s/agent.yaml", dir);
	if (!(f = fopen(path, "w")))
		abort();
	fputs(text, f);
	fclose(f);
	if (config_load(path, &ag.cfg, err, sizeof(err)))
		abort();
	/* small limits, so inputs reach them */
	ag.cfg->max_head_bytes = 1024;
	ag.cfg->max_body_bytes = 2048;
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	struct audit_opts ao = { .agent_id = "fuzz", .log_path = path };
	if (audit_open(&ao, &ag.audit, err, sizeof(err)) || exchange_global_init(&ag, err, sizeof(err)))
		abort();
	info.id.uid = 1000;
	snprintf(info.id.exe, sizeof(info.id.exe), "/usr/bin/fuzz");
	snprintf(info.sni, sizeof(info.sni), "api.openai.com");
	info.tunnel_fd = -1;
	return 0;
}

/* Drains what the engine has for one side; checks a refusal's shape. */
static void drain(struct h1x *e, bool client, bool *first, bool up_open)
{
	struct iovec iov[2];
	unsigned n = client ? h1x_client_out(e, iov) : h1x_upstream_out(e, iov);
	size_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		if (client && *first && iov[i].iov_len >= 5 && memcmp(iov[i].iov_base, "HTTP/", 5))
			abort();   /* the client's first bytes are always a status line */
		if (iov[i].iov_len)
			*first = false;
		total += iov[i].iov_len;
	}
	if (!client && n && !up_open)
		abort();   /* bytes for an upstream that does not exist */
	client ? h1x_client_sent(e, total) : h1x_upstream_sent(e, total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	size_t cpiece = 1 + data[0] % 97, upiece = 1 + data[1] % 97;
	uint8_t flags = data[2];
	size_t clen = (size_t)data[3] | (size_t)data[4] << 8;
	data += 5;
	size -= 5;
	if (clen > size)
		clen = size;
	const uint8_t *client = data, *up = data + clen;
	size_t ulen = size - clen, cpos = 0, upos = 0;
	uint64_t now = 5000;
	struct exchange_conn xc = { 0 };
	bool dying = flags & 1, first = true, up_open = false;
	struct h1x *e = h1x_new(&ag, &info, &xc, now);
	if (!e)
		return 0;

	for (int guard = 0;; guard++) {
		if (guard > 200000)
			abort();   /* the engine never ends */
		drain(e, true, &first, up_open);
		unsigned act = h1x_actions(e);
		if (act & H1X_UP_CLOSE)
			up_open = false;
		if (act & H1X_WEBSOCKET) {
			const char *cp, *upd;
			size_t cl, ul;
			h1x_ws(e, &cp, &cl, &upd, &ul);
			h1x_ws_done(e, now);
			continue;
		}
		if (act & H1X_CONNECT) {
			if (flags & 2) {
				h1x_upstream_failed(e, NULL, "connect refused", now);
			} else {
				up_open = true;
				h1x_upstream_connected(e, dying, now);
			}
			continue;
		}
		struct iovec iov[2];
		if (h1x_upstream_out(e, iov)) {
			drain(e, false, &first, up_open);
			if (flags & 4) {
				/* the upstream cannot be written */
				h1x_upstream_write_failed(e, now);
			}
			continue;
		}
		if (h1x_done(e))
			break;
		if (h1x_want_client(e) && cpos < clen) {
			size_t k = clen - cpos < cpiece ? clen - cpos : cpiece;
			cpos += h1x_client_data(e, client + cpos, k, now);
			now += flags & 8 ? 3000 : 1;
			h1x_tick(e, now);
			continue;
		}
		if (h1x_want_upstream(e)) {
			if (dying) {
				dying = false;
				h1x_upstream_eof(e, 0, now);
			} else if (upos < ulen) {
				size_t k = ulen - upos < upiece ? ulen - upos : upiece;
				upos += h1x_upstream_data(e, up + upos, k, now);
			} else if (flags & 16) {
				now = h1x_deadline(e) ? h1x_deadline(e) : now + 1;
				h1x_tick(e, now);
			} else {
				h1x_upstream_eof(e, flags & 32 ? -5 : 0, now);
			}
			continue;
		}
		if (h1x_want_client(e)) {
			if (flags & 64) {
				now = h1x_deadline(e) ? h1x_deadline(e) : now + 1;
				h1x_tick(e, now);
			} else {
				h1x_client_eof(e, 0, now);
			}
			continue;
		}
		if (!h1x_deadline(e))
			abort();   /* waits for nothing, yet is not done */
		now = h1x_deadline(e);
		h1x_tick(e, now);
	}
	h1x_free(e);
	exchange_conn_free(&xc);
	if (atomic_load(&ag.stats.buffered))
		abort();   /* the buffer budget was not given back */
	return 0;
}
