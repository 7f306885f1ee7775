/* alerts: the detectors on generated traffic. Forty users work office hours
 * for fourteen days through their own programs and providers, with noise
 * (volume varying by +-50%, scattered findings and blocks, low injection
 * scores, agents reporting every five minutes all day). Then anomalies are
 * injected: runaway loops, a program or provider new to a user, bursts of
 * blocks, high injection scores, tamper records, agents going silent. The
 * clean traffic must raise (almost) nothing; with anomalies, precision and
 * recall are measured per detector and printed. Four of the loops are
 * subtle (about 3x an hour, under the default volume_factor of 5): they
 * show where the volume detector stops seeing. */
#include <math.h>
#include "alerts.h"
#include "check.h"

#define USERS 40
#define DAYS 14
#define HOUR (3600LL * 1000000)
#define DAY (24 * HOUR)
#define T0 (1767225600LL * 1000000)   /* 2026-01-01, a Thursday: weekends do not matter here */

static uint64_t rng = 88172645463325252ULL;
static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / (double)(1ULL << 53);
}

static const char *const exes[] = { "/usr/bin/python3", "/usr/bin/node", "/opt/cursor/cursor", "/usr/bin/curl",
				    "/usr/local/bin/aider" };
static const char *const provs[] = { "openai", "anthropic", "gemini" };

enum { ITEM_EVENT, ITEM_SEEN };
struct item {
	int type;
	int64_t t;
	int user;
	char kind[16], action[8], exe[64], prov[16];
	int64_t tokens;
	double score;
	bool finding;
};

static struct item *items;
static size_t nitems, capitems;

static struct item *add(int type, int64_t t, int user)
{
	if (nitems == capitems) {
		capitems = capitems ? capitems * 2 : 65536;
		items = realloc(items, capitems * sizeof(*items));
	}
	struct item *it = &items[nitems++];
	memset(it, 0, sizeof(*it));
	it->type = type;
	it->t = t;
	it->user = user;
	it->score = -1;
	snprintf(it->kind, sizeof(it->kind), "request");
	snprintf(it->action, sizeof(it->action), "allow");
	return it;
}

struct profile {
	int exe[2], prov[2], npairs;
	double base;             /* tokens per request */
};
static struct profile prof[USERS];
static int64_t stopped[USERS];   /* agent silent from (0 = never) */

static void pair_of(int u, int k, struct item *it)
{
	snprintf(it->exe, sizeof(it->exe), "%s", exes[prof[u].exe[k % 2]]);
	snprintf(it->prov, sizeof(it->prov), "%s", provs[prof[u].prov[(k / 2) % 2]]);
}

static void gen_normal(void)
{
	for (int u = 0; u < USERS; u++) {
		prof[u].exe[0] = u % 5;
		prof[u].exe[1] = (u + 1 + u / 5) % 5;
		prof[u].prov[0] = u % 3;
		prof[u].prov[1] = (u + 1) % 3;
		prof[u].base = 300 + urand() * 2700;
		for (int d = 0; d < DAYS; d++) {
			for (int64_t m = 0; m < 24 * 60; m += 5)   /* the agent's batches */
				add(ITEM_SEEN, T0 + d * DAY + m * 60000000LL, u);
			for (int h = 9; h < 17; h++) {
				int n = 2 + (int)(urand() * 5);
				for (int r = 0; r < n; r++) {
					struct item *it = add(ITEM_EVENT, T0 + d * DAY + h * HOUR + (int64_t)(urand() * HOUR), u);
					/* Every pair on the first day, then at random among them. */
					pair_of(u, d == 0 && h == 9 && r < 4 ? r : (int)(urand() * 4), it);
					it->tokens = (int64_t)(prof[u].base * (0.5 + urand()));
					it->finding = urand() < 0.05;
					if (urand() < 0.01)
						snprintf(it->action, sizeof(it->action), "block");
					if (urand() < 0.02)
						it->score = 0.1 + urand() * 0.5;
				}
				if (d == 0 && h == 9)   /* make sure all four pairs appear on day 0 */
					for (int k = 0; k < 4; k++) {
						struct item *it = add(ITEM_EVENT, T0 + h * HOUR + k, u);
						pair_of(u, k, it);
						it->tokens = (int64_t)prof[u].base;
					}
			}
		}
	}
}

/* Injected anomalies: what the detectors must find. */
struct anomaly {
	const char *rule;
	int user;
	int64_t from, to;
	bool found;
};
static struct anomaly anom[64];
static int nanom;

static void inject(void)
{
	for (int i = 0; i < 6; i++) {   /* runaway agent loop: an hour at ~15x */
		int u = 3 + i * 6, d = 9 + i % 4;
		int64_t t = T0 + d * DAY + 14 * HOUR;
		for (int r = 0; r < 60; r++) {
			struct item *it = add(ITEM_EVENT, t + r * 50000000LL, u);
			pair_of(u, 0, it);
			it->tokens = (int64_t)(prof[u].base);
		}
		anom[nanom++] = (struct anomaly){ "volume", u, t, t + HOUR, false };
	}
	for (int i = 0; i < 4; i++) {   /* subtle loops, ~3x an hour: below volume_factor 5 */
		int u = 8 + i * 7, d = 10 + i % 3;
		int64_t t = T0 + d * DAY + 10 * HOUR;
		for (int r = 0; r < 10; r++) {
			struct item *it = add(ITEM_EVENT, t + r * 300000000LL, u);
			pair_of(u, 0, it);
			it->tokens = (int64_t)(prof[u].base);
		}
		anom[nanom++] = (struct anomaly){ "volume", u, t, t + HOUR, false };
	}
	for (int i = 0; i < 6; i++) {   /* a program and provider new to the user */
		int u = 1 + i * 6, d = 8 + i % 5;
		int64_t t = T0 + d * DAY + 11 * HOUR + 1234567;
		struct item *it = add(ITEM_EVENT, t, u);
		snprintf(it->exe, sizeof(it->exe), "/tmp/.x/agent-loop");
		snprintf(it->prov, sizeof(it->prov), "deepseek");
		it->tokens = 100;
		anom[nanom++] = (struct anomaly){ "new_use", u, t, t + 1, false };
	}
	for (int i = 0; i < 6; i++) {   /* a burst of blocked requests */
		int u = 2 + i * 6, d = 7 + i % 6;
		int64_t t = T0 + d * DAY + 15 * HOUR;
		for (int r = 0; r < 7; r++) {
			struct item *it = add(ITEM_EVENT, t + r * 25000000LL, u);
			pair_of(u, 1, it);
			it->tokens = 50;
			snprintf(it->action, sizeof(it->action), "block");
			it->finding = true;
		}
		anom[nanom++] = (struct anomaly){ "burst", u, t, t + 7 * 25000000LL, false };
	}
	for (int i = 0; i < 6; i++) {   /* prompt injection */
		int u = 4 + i * 6, d = 6 + i;
		int64_t t = T0 + d * DAY + 10 * HOUR + 777;
		struct item *it = add(ITEM_EVENT, t, u);
		pair_of(u, 0, it);
		it->tokens = 400;
		it->score = 0.85 + 0.02 * i;
		anom[nanom++] = (struct anomaly){ "injection", u, t, t, false };
	}
	for (int i = 0; i < 3; i++) {   /* tamper records */
		int u = 5 + i * 10, d = 10 + i;
		int64_t t = T0 + d * DAY + 16 * HOUR;
		struct item *it = add(ITEM_EVENT, t, u);
		snprintf(it->kind, sizeof(it->kind), "tamper");
		anom[nanom++] = (struct anomaly){ "tamper", u, t, t, false };
	}
	for (int i = 0; i < 3; i++) {   /* agents going silent */
		int u = 6 + i * 10;
		stopped[u] = T0 + (11 + i) * DAY + 12 * HOUR;
		/* Its last report was up to 5 min before it stopped: the alert is
		 * due 900 s after that, within a tick (60 s). */
		anom[nanom++] = (struct anomaly){ "silent", u, stopped[u] + (900LL - 300) * 1000000,
						  stopped[u] + (900LL + 60) * 1000000, false };
	}
}

static int by_time(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	return x->t < y->t ? -1 : x->t > y->t;
}

struct tally {
	int alerts, tp;
	char fp_why[4][300];
	int nfp;
};

static const char *const rules[] = { "volume", "new_use", "burst", "injection", "tamper", "silent" };
static struct tally tal[6];

static int rule_index(const char *r)
{
	for (int i = 0; i < 6; i++)
		if (!strcmp(rules[i], r))
			return i;
	return 0;
}

static int user_of(const struct store_event *al)
{
	int u = -1;
	if (al->user && sscanf(al->user, "user%d", &u) == 1)
		return u;
	if (al->host && sscanf(al->host, "ws%d", &u) == 1)
		return u;
	return -1;
}

static void on_alert(void *ctx, const struct store_event *al)
{
	(void)ctx;
	int ri = rule_index(al->rule), u = user_of(al);
	struct tally *t = &tal[ri];
	bool hit = false;
	CHECK(!strcmp(al->kind, "alert") && al->reason && *al->reason, "alert without kind or evidence");
	for (int i = 0; i < nanom; i++) {
		struct anomaly *a = &anom[i];
		if (!strcmp(a->rule, al->rule) && a->user == u && al->time_us >= a->from && al->time_us <= a->to) {
			a->found = hit = true;
		}
	}
	t->alerts++;
	if (hit)
		t->tp++;
	else if (t->nfp < 4)
		snprintf(t->fp_why[t->nfp++], sizeof(t->fp_why[0]), "%s", al->reason);
}

static void run(bool anomalies, struct colconf_alerts *c)
{
	char users[USERS][16], hosts[USERS][16], agents[USERS][16], ids[32];
	nitems = 0;
	nanom = 0;
	memset(stopped, 0, sizeof(stopped));
	memset(tal, 0, sizeof(tal));
	rng = 88172645463325252ULL;
	gen_normal();
	if (anomalies)
		inject();
	qsort(items, nitems, sizeof(*items), by_time);
	for (int u = 0; u < USERS; u++) {
		snprintf(users[u], 16, "user%02d", u);
		snprintf(hosts[u], 16, "ws%02d", u);
		snprintf(agents[u], 16, "agent%02d", u);
	}
	struct alerts *a = alerts_new(c);
	int64_t next_tick = T0;
	for (size_t i = 0; i < nitems; i++) {
		struct item *it = &items[i];
		while (next_tick <= it->t) {
			alerts_tick(a, next_tick, true, on_alert, NULL);
			next_tick += 60000000LL;
		}
		int u = it->user;
		if (stopped[u] && it->t >= stopped[u])
			continue;   /* a silent agent sends nothing at all */
		if (it->type == ITEM_SEEN) {
			alerts_agent_seen(a, agents[u], hosts[u], it->t);
			continue;
		}
		struct store_finding f = { .type = "EMAIL", .count = 1 };
		snprintf(ids, sizeof(ids), "ev%zu", i);
		struct store_event e = {
			.time_us = it->t, .event_id = ids, .agent_id = agents[u], .host = hosts[u], .kind = it->kind,
			.user = users[u], .uid = 1000 + u, .pid = 100, .exe = it->exe, .provider = it->prov, .model = "m",
			.action = it->action, .findings = it->finding ? &f : NULL, .nfindings = it->finding,
			.injection_score = it->score, .prompt_tokens = it->tokens * 3 / 4,
			.completion_tokens = it->tokens - it->tokens * 3 / 4,
		};
		alerts_observe(a, &e, true, on_alert, NULL);
	}
	alerts_free(a);
}

TEST(clean_traffic_raises_almost_nothing)
{
	struct colconf_alerts c = { .enabled = true, .volume_window_s = 3600, .volume_factor = 5, .volume_sigma = 4,
				    .volume_min_tokens = 20000, .volume_history = 6, .new_use_after_s = 86400,
				    .burst_count = 5, .burst_window_s = 600, .injection_score = 0.8,
				    .silent_after_s = 900 };
	run(false, &c);
	int total = 0;
	for (int i = 0; i < 6; i++) {
		total += tal[i].alerts;
		for (int k = 0; k < tal[i].nfp; k++)
			printf("  false alarm %s: %s\n", rules[i], tal[i].fp_why[k]);
	}
	size_t events = 0;
	for (size_t i = 0; i < nitems; i++)
		events += items[i].type == ITEM_EVENT;
	printf("clean traffic: %zu events of %d users over %d days: %d alerts\n", events, USERS, DAYS, total);
	CHECK(total <= 2, "%d false alarms on clean traffic", total);
}

TEST(injected_anomalies_precision_and_recall)
{
	struct colconf_alerts c = { .enabled = true, .volume_window_s = 3600, .volume_factor = 5, .volume_sigma = 4,
				    .volume_min_tokens = 20000, .volume_history = 6, .new_use_after_s = 86400,
				    .burst_count = 5, .burst_window_s = 600, .injection_score = 0.8,
				    .silent_after_s = 900 };
	run(true, &c);
	int alerts = 0, tp = 0, found = 0;
	for (int i = 0; i < 6; i++) {
		int n = 0, f = 0;
		for (int k = 0; k < nanom; k++)
			if (!strcmp(anom[k].rule, rules[i])) {
				n++;
				f += anom[k].found;
			}
		printf("  %-9s anomalies %d found %d (recall %.2f); alerts %d true %d (precision %.2f)\n", rules[i], n, f,
		       n ? (double)f / n : 1.0, tal[i].alerts, tal[i].tp,
		       tal[i].alerts ? (double)tal[i].tp / tal[i].alerts : 1.0);
		for (int k = 0; k < tal[i].nfp; k++)
			printf("    false alarm: %s\n", tal[i].fp_why[k]);
		alerts += tal[i].alerts;
		tp += tal[i].tp;
		found += f;
	}
	double precision = alerts ? (double)tp / alerts : 0, recall = (double)found / nanom;
	printf("injected %d anomalies: precision %.3f (%d/%d alerts), recall %.3f (%d/%d)\n", nanom, precision, tp, alerts,
	       recall, found, nanom);
	CHECK(precision >= 0.9 && recall >= 0.8, "precision %.3f recall %.3f", precision, recall);
	for (int k = 0; k < nanom; k++)
		CHECK(anom[k].found || strcmp(anom[k].rule, "injection"), "an injection score of %.2f was missed", 0.85);
}

TEST(replay_builds_baselines_without_alerting)
{
	struct colconf_alerts c = { .enabled = true, .volume_window_s = 3600, .volume_factor = 5, .volume_sigma = 4,
				    .volume_min_tokens = 100, .volume_history = 1, .new_use_after_s = 0,
				    .burst_count = 2, .burst_window_s = 600, .injection_score = 0.5,
				    .silent_after_s = 900 };
	struct alerts *a = alerts_new(&c);
	memset(tal, 0, sizeof(tal));
	nanom = 0;
	struct store_event e = { .time_us = T0, .agent_id = "ag", .host = "h", .kind = "request", .user = "user01",
				 .exe = "/x", .provider = "openai", .action = "block", .injection_score = 0.9,
				 .prompt_tokens = 100000 };
	for (int i = 0; i < 5; i++) {
		e.time_us = T0 + i * HOUR;
		alerts_observe(a, &e, false, on_alert, NULL);
	}
	alerts_tick(a, T0 + DAY, false, on_alert, NULL);
	int total = 0;
	for (int i = 0; i < 6; i++)
		total += tal[i].alerts;
	CHECK(total == 0, "%d alerts while replaying", total);
	/* The collector's own records are never use. */
	struct store_event own = e;
	own.kind = "alert";
	own.time_us = T0 + 2 * DAY;
	alerts_observe(a, &own, true, on_alert, NULL);
	own.kind = "review";
	alerts_observe(a, &own, true, on_alert, NULL);
	for (int i = 0; i < 6; i++)
		total += tal[i].alerts;
	CHECK(total == 0, "alerted on its own records: %d", total);
	alerts_free(a);
}
