/* bench_inspect: throughput of the inspection engine against PCRE2-JIT
 * running the same patterns one by one, and the cost of inspecting 4 KB
 * and 32 KB chat requests. Fixed seed, so runs compare. Prints numbers and
 * PASS/MISS against the targets; exits non-zero only if a
 * measurement fails.
 *
 * Standalone build (from the repository root):
 *   gcc -std=gnu11 -O2 -Iagent -Icommon tests/bench/bench_inspect.c agent/content/inspect.c agent/content/validators.c agent/content/detectors.c agent/content/decode.c \
 *       agent/providers/providers.c agent/content/json.c -o /tmp/bench_inspect \
 *       $(pkg-config --cflags --libs libhs libpcre2-8 zlib libbrotlidec libzstd)
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content/inspect.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static const char *const words[] = {
	"the", "request", "function", "returns", "a", "list", "of", "users", "and", "their",
	"orders", "please", "summarise", "this", "document", "for", "me", "with", "error", "handling",
	"database", "query", "timeout", "deploy", "service", "config", "value", "in", "production",
	"customer", "invoice", "total", "2024", "version", "3.2.1", "is", "not", "working", "when",
	"I", "call", "it", "from", "Python", "code", "review", "meeting", "notes", "action", "items",
};

/* Prompt-like text; about one finding per 2 KB (mostly clean, like real
 * prompts: the clean path is what must be fast). */
static void gen(char *buf, size_t n)
{
	static const char *const pii[] = {
		" contact jane.doe@example.org ", " card 4111 1111 1111 1111 ", " ip 10.20.30.40 ",
		" key AKIA2OGYBAH6TQJ5V3XL ", " call (415) 555-0132 ",
	};
	size_t o = 0;
	while (o + 64 < n) {
		const char *w = (rnd() % 400 == 0) ? pii[rnd() % 5] : words[rnd() % (sizeof(words) / sizeof(words[0]))];
		size_t l = strlen(w);
		memcpy(buf + o, w, l);
		o += l;
		buf[o++] = (rnd() % 12 == 0) ? '.' : ' ';
		if (rnd() % 20 == 0)
			buf[o++] = '\n';
	}
	while (o < n)
		buf[o++] = ' ';
}

static int bench_pcre2(const char *text, size_t n, double *mbps)
{
	pcre2_code *re[256];
	int nre = 0;
	bool cl;
	const char *p;
	for (unsigned i = 0; (p = inspect_builtin_pattern(i, &cl)) && nre < 256; i++) {
		int err;
		PCRE2_SIZE off;
		re[nre] = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, cl ? PCRE2_CASELESS : 0, &err, &off, NULL);
		if (!re[nre]) {
			fprintf(stderr, "pcre2: pattern %u does not compile (skipped)\n", i);
			continue;
		}
		pcre2_jit_compile(re[nre], PCRE2_JIT_COMPLETE);
		nre++;
	}
	pcre2_match_data *md = pcre2_match_data_create(4, NULL);
	size_t matches = 0;
	double t0 = now();
	int reps = 0;
	do {
		for (int k = 0; k < nre; k++) {
			PCRE2_SIZE start = 0;
			while (start < n) {
				int rc = pcre2_jit_match(re[k], (PCRE2_SPTR)text, n, start, 0, md, NULL);
				if (rc < 0)
					break;
				PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
				matches++;
				start = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
			}
		}
		reps++;
	} while (now() - t0 < 1.0);
	double dt = now() - t0;
	*mbps = (double)n * reps / dt / 1e6;
	printf("pcre2-jit: %d patterns one by one, %zu matches/pass\n", nre, matches / reps);
	for (int k = 0; k < nre; k++)
		pcre2_code_free(re[k]);
	pcre2_match_data_free(md);
	return 0;
}

static void make_body(char *out, size_t cap, const char *text, size_t tlen)
{
	size_t o = (size_t)snprintf(out, cap, "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":["
				    "{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"},"
				    "{\"role\":\"user\",\"content\":\"");
	for (size_t i = 0; i < tlen && o + 8 < cap; i++) {
		char c = text[i];
		if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = c;
		}
	}
	snprintf(out + o, cap - o, "\"}]}");
}

int main(void)
{
	const size_t N = 4 << 20;
	char *text = malloc(N);
	char err[256];
	struct inspect_result r;
	gen(text, N);
	struct inspector *ins = inspector_new(NULL, 0, err, sizeof(err));
	if (!ins) {
		fprintf(stderr, "bench: %s\n", err);
		return 1;
	}
	struct inspect_scratch *s = inspect_scratch_new(ins);
	inspect_result_init(&r);

	/* 1. throughput over 64 KB pieces (strings in real bodies are small) */
	const size_t piece = 64 << 10;
	double t0 = now();
	size_t bytes = 0, found = 0;
	do {
		for (size_t o = 0; o + piece <= N; o += piece) {
			if (inspect_text(s, text + o, piece, &r)) {
				fprintf(stderr, "bench: inspect_text failed\n");
				return 1;
			}
			bytes += piece;
			found += r.nspans;
		}
	} while (now() - t0 < 1.0);
	double vigil = bytes / (now() - t0) / 1e6;
	double pc;
	bench_pcre2(text, N, &pc);
	printf("vigil inspect_text: %.0f MB/s (%zu findings/pass incl. validation)\n", vigil, found / (bytes / N));
	printf("pcre2-jit same patterns: %.1f MB/s\n", pc);
	printf("speed-up: %.1fx  [%s: target >= 5x]\n", vigil / pc, vigil / pc >= 5 ? "PASS" : "MISS");

	/* 2. per-request cost, 4 KB and 32 KB prompts (OpenAI chat body):
	 * the mixed corpus above, and plain prose (words only) */
	char *prose = malloc(65536);
	size_t po = 0;
	while (po + 16 < 65536) {
		const char *w = words[rnd() % 30];
		memcpy(prose + po, w, strlen(w));
		po += strlen(w);
		prose[po++] = ' ';
	}
	memset(prose + po, ' ', 65536 - po);
	size_t sizes[4] = { 4096, 32768, 4096, 32768 };
	for (int k = 0; k < 4; k++) {
		char *body = malloc(sizes[k] * 2 + 512);
		make_body(body, sizes[k] * 2 + 512, k < 2 ? text + 12345 : prose, sizes[k]);
		size_t blen = strlen(body);
		int iters = 0;
		t0 = now();
		do {
			if (inspect_request(s, "api.openai.com", "/v1/chat/completions", body, blen, &r)) {
				fprintf(stderr, "bench: inspect_request failed\n");
				return 1;
			}
			iters++;
		} while (now() - t0 < 1.0);
		double us = (now() - t0) / iters * 1e6;
		printf("inspect_request %2zu KB %s prompt: %.1f us/request (%u findings)\n", sizes[k] / 1024,
		       k < 2 ? "mixed" : "prose", us, inspect_result_total(&r));
		free(body);
	}
	printf("note: the <20%% CPU target compares with the agent's own per-request CPU (proxy_bench).\n");
	free(prose);
	inspect_result_free(&r);
	inspect_scratch_free(s);
	inspector_unref(ins);
	free(text);
	return 0;
}
