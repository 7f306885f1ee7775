/* exchange: per-request bookkeeping and decisions.
 *
 * Request: the whole body is inspected (its Content-Encoding undone first,
 * within max_body_bytes; inspect.c: every JSON string decoded, provider
 * adapters say which text the model reads), and so are the path, the
 * query and the header values except the provider credential; a decision
 * is taken (the policy when one is loaded; until then a default table:
 * secrets block, PII is redacted, prompt injection is an alert), and the
 * body is rewritten only when something is replaced: a request with no
 * finding is forwarded byte for byte.
 *
 * Response: forwarded as it arrives. Token usage is read from the
 * provider's own usage fields (providers.c: prompt, completion and cached
 * prompt tokens of each API): in an SSE stream
 * every event is scanned and the last value wins (Anthropic sends
 * output_tokens cumulatively; OpenAI sends one final usage chunk). The
 * model's text is scanned for findings with bounded state, and when the
 * request carried reversible tokens they are restored in the answer, even
 * split across events (detok.c); such a response is re-framed as chunked
 * because its length changes. */
#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "content/answer.h"
#include "policy/budget.h"
#include "content/decode.h"
#include "content/detok.h"
#include "proxy/exchange.h"
#include "loop.h"
#include "policy/justify.h"
#include "pricing.h"
#include "proxy/mcp.h"
#include "content/toolcall.h"
#include "audit/audit.h"
#include "metrics.h"
#include "log.h"
#include "content/redact.h"
#include "proxy/sse.h"
#include "providers/webapps.h"

#define RESP_COPY_MAX (1u << 20)
#define SSE_EVENT_MAX (1u << 20)

/* A new inspector for policy p (its custom detectors), swapped in whole:
 * connections holding the old one keep it until they end. */
static int swap_inspector(struct agent *ag, const struct policy *p, char *err, size_t errlen)
{
	size_t n = 0;
	const struct inspect_custom *custom = p ? policy_detectors(p, &n) : NULL;
	struct inspector *ins = inspector_new(custom, n, err, errlen), *old;
	if (!ins)
		return -EINVAL;
	pthread_mutex_lock(&ag->inspector_lock);
	old = ag->inspector;
	ag->inspector = ins;
	pthread_mutex_unlock(&ag->inspector_lock);
	inspector_unref(old);
	return 0;
}

/* The socket of `vigil justify` (warn rules). Without it a warn rule still
 * refuses; its message then cannot offer a way on. */
static void start_justify(struct agent *ag)
{
	char err[256];
	const struct config *cfg = ag->cfg;
	if (justify_start(ag, cfg->justify_socket, cfg->justify_ttl_ms, &ag->justify, err, sizeof(err)))
		log_warn("warn rules cannot be justified: %s", err);
}

int exchange_global_init(struct agent *ag, char *err, size_t errlen)
{
	const struct config *cfg = ag->cfg;
	struct policy *p = NULL;
	char *errs = NULL, path[4200];
	int ret;

	pthread_mutex_init(&ag->inspector_lock, NULL);
	if (!(ag->vaults = vault_store_new(cfg->vault_ttl_ms, cfg->vault_max_entries, loop_now_ms))) {
		snprintf(err, errlen, "cannot allocate the token vault");
		return -ENOMEM;
	}
	if (RAND_bytes(ag->hash_key, sizeof(ag->hash_key)) != 1) {
		snprintf(err, errlen, "cannot draw the redaction hash key");
		return -EIO;
	}
	if (cfg->policy) {
		if ((ret = policy_load(cfg->policy, NULL, &p, &errs))) {
			snprintf(err, errlen, "policy refused:\n%s", errs ? errs : strerror(-ret));
			free(errs);
			return ret;
		}
		if (!(ag->policy = calloc(1, sizeof(*ag->policy)))) {
			policy_unref(p);
			return -ENOMEM;
		}
		policy_holder_init(ag->policy, p);
		start_justify(ag);
		snprintf(path, sizeof(path), "%s/budgets.state", cfg->spool_dir);
		if ((ret = budget_store_open(path, &ag->budgets))) {
			snprintf(err, errlen, "%s: %s", path, strerror(-ret));
			return ret;
		}
	}
	return swap_inspector(ag, p, err, errlen);
}

int exchange_reload_policy(struct agent *ag, char **errs)
{
	char err[512];
	struct policy *p;
	int ret;

	*errs = NULL;
	if (!ag->policy)
		return 0;   /* started without a policy file: the default table stays */
	if ((ret = policy_holder_reload(ag->policy, ag->cfg->policy, NULL, errs)))
		return ret;
	p = policy_holder_get(ag->policy);
	ret = swap_inspector(ag, p, err, sizeof(err));
	policy_unref(p);
	if (ret && !(*errs = strdup(err)))
		ret = -ENOMEM;
	return ret;
}

void exchange_global_free(struct agent *ag)
{
	justify_stop(ag->justify);
	ag->justify = NULL;
	if (ag->budgets) {
		budget_save(ag->budgets, time(NULL));
		budget_store_free(ag->budgets);
		ag->budgets = NULL;
	}
	if (ag->policy) {
		policy_holder_destroy(ag->policy);
		free(ag->policy);
		ag->policy = NULL;
	}
	inspector_unref(ag->inspector);
	ag->inspector = NULL;
	vault_store_free(ag->vaults);   /* wipes every tokenized value */
	ag->vaults = NULL;
	OPENSSL_cleanse(ag->hash_key, sizeof(ag->hash_key));
}

/* The vault of this connection's user and program (uid, executable,
 * script), shared with their other connections, so a conversation that
 * reconnects still gets its values back. NULL on ENOMEM. */
static struct vault *conn_vault(struct exchange *ex)
{
	const struct identity *id = &ex->info->id;
	char owner[sizeof(id->exe) + sizeof(id->script) + 24];
	int n;
	if (ex->xc->vault || !ex->ag->vaults)
		return ex->xc->vault;
	if (id->uid < 0) {
		/* nobody known to share with: this connection's own vault */
		ex->xc->vault = vault_new(NULL, 0, ex->ag->cfg->vault_max_entries);
		return ex->xc->vault;
	}
	n = snprintf(owner, sizeof(owner), "%lld", (long long)id->uid);
	if (n < 0 || (size_t)n >= sizeof(owner))
		return NULL;
	size_t len = (size_t)n + 1, el = strnlen(id->exe, sizeof(id->exe)),
	       sl = strnlen(id->script, sizeof(id->script));
	memcpy(owner + len, id->exe, el);
	len += el;
	owner[len++] = 0;
	memcpy(owner + len, id->script, sl);
	len += sl;
	ex->xc->vault = vault_store_get(ex->ag->vaults, owner, len);
	return ex->xc->vault;
}

static struct inspect_scratch *xc_scratch(struct exchange_conn *xc, struct agent *ag)
{
	if (!xc->scratch) {
		/* the results go with the scratch: an idle connection holds neither */
		if (!(xc->res = calloc(2, sizeof(*xc->res))))
			return NULL;
		xc->hres = xc->res + 1;
		inspect_result_init(xc->res);
		inspect_result_init(xc->hres);
		pthread_mutex_lock(&ag->inspector_lock);
		xc->scratch = inspect_scratch_new(ag->inspector);
		pthread_mutex_unlock(&ag->inspector_lock);
		if (!xc->scratch) {
			free(xc->res);
			xc->res = xc->hres = NULL;
		}
	}
	return xc->scratch;
}

static struct inspect_scratch *conn_scratch(struct exchange *ex)
{
	return xc_scratch(ex->xc, ex->ag);
}

int exchange_bytes_hold_findings(struct exchange_conn *xc, struct agent *ag, const char *p, size_t n)
{
	struct inspect_scratch *scratch = xc_scratch(xc, ag);
	if (!scratch)
		return -ENOMEM;
	int rc = inspect_bytes(scratch, p, n, xc->hres);
	if (rc)
		return rc;
	for (int k = 0; k < FINDING__COUNT; k++)
		if (k != FINDING_PROMPT_INJECTION && xc->hres->counts[k])
			return 1;
	return 0;
}

void exchange_conn_free(struct exchange_conn *xc)
{
	inspect_scratch_free(xc->scratch);
	if (xc->scratch) {
		inspect_result_free(xc->res);
		inspect_result_free(xc->hres);
		free(xc->res);
	}
	vault_free(xc->vault);
	xc->res = xc->hres = NULL;
	xc->scratch = NULL;
	xc->vault = NULL;
}

void exchange_conn_idle(struct exchange_conn *xc)
{
	struct vault *v = xc->vault;
	xc->vault = NULL;
	exchange_conn_free(xc);
	xc->vault = v;
}

void exchange_init(struct exchange *ex, struct agent *ag, const struct conn_info *info,
		   struct exchange_conn *xc)
{
	memset(ex, 0, sizeof(*ex));
	ex->ag = ag;
	ex->info = info;
	ex->xc = xc;
	provider_usage_init(&ex->usage);
	ex->injection_score = -1;
	ex->action = "allow";
	ex->provider = PROVIDER_GENERIC;
	/* what the user sent or is answered: no stale copy in freed memory */
	ex->stage.secret = true;
	ex->text.secret = true;
	ex->out.secret = true;
	ex->tpl_pre.secret = true;
	ex->tpl_post.secret = true;
	ex->decoded.secret = true;
}

void exchange_free(struct exchange *ex)
{
	sse_free(ex->sse);
	detok_free(ex->detok);
	answer_free(ex->ans);
	buf_free(&ex->stage);
	inspect_stream_free(ex->out_scan);
	buf_free(&ex->text);
	buf_free(&ex->out);
	buf_free(&ex->tpl_pre);
	buf_free(&ex->tpl_post);
	secret_free(ex->resp_copy, ex->resp_cap);
	secret_free(ex->new_body, ex->new_body_len);
	buf_free(&ex->decoded);
	free(ex->new_target);
	for (unsigned i = 0; i < HTTP_MAX_HEADERS; i++)
		free(ex->new_hdr[i]);
	mcp_free(ex->mcp);
	ex->mcp = NULL;
	free(ex->calls);
	ex->calls = NULL;
	free(ex->ws_usage);
	ex->ws_usage = NULL;
	policy_unref(ex->policy);
	ex->policy = NULL;
	ex->sse = NULL;
	ex->detok = NULL;
	ex->ans = NULL;
	ex->out_scan = NULL;
	ex->resp_copy = NULL;
	ex->new_body = NULL;
}

/* what: why, for the client's error message (no values, only types). */
static void block(struct exchange *ex, int status, const char *code, const char *rule,
		  const char *what, const char *detail)
{
	ex->blocked = true;
	ex->block_status = status;
	ex->block_code = code;
	ex->action = "block";
	ex->rule = rule;
	snprintf(ex->block_message, sizeof(ex->block_message), "request blocked: %s (%s); rule %s",
		 what, detail, rule);
}

/* The decision without a policy file: nothing secret leaves, personal data
 * leaves redacted, suspected injection is audited (JSON that is not valid
 * is refused after it, as under a policy). */
static void decide_default(struct exchange *ex, struct redact_policy *rp)
{
	const char *secret = NULL;
	bool pii = false;

	for (int t = 0; t < FINDING__COUNT; t++) {
		if (!ex->counts[t])
			continue;
		if (finding_table[t].cls == FINDING_CLASS_SECRET && !secret)
			secret = finding_name((enum finding_type)t);
		if (finding_table[t].cls == FINDING_CLASS_PII) {
			pii = true;
			rp->action[t] = REDACT_PLACEHOLDER;
		}
	}
	if (secret) {
		block(ex, 403, "secret_detected", "default:secrets",
		      "it contains a credential", secret);
		return;
	}
	if (ex->counts[FINDING_INSPECTION_LIMIT]) {
		block(ex, 403, "inspection_limit", "default:inspection_limit",
		      "it could not be inspected whole", "INSPECTION_LIMIT");
		return;
	}
	if (pii) {
		ex->action = "redact";
		ex->rule = "default:pii";
	} else if (ex->counts[FINDING_PROMPT_INJECTION] || ex->counts[FINDING_OPAQUE_CONTENT]) {
		ex->action = "alert";
		ex->rule = ex->counts[FINDING_PROMPT_INJECTION] ? "default:injection" : "default:opaque";
	}
}

/* A warn rule: refused with a message saying how to continue, unless this
 * user and program justified it (then allowed, and the event says so).
 * Returns true if refused. */
static bool decide_warn(struct exchange *ex, const struct policy_decision *d)
{
	const struct identity *id = &ex->info->id;
	char jid[JUSTIFY_ID_LEN];

	if (ex->ag->justify && justify_exempt(ex->ag->justify, id->uid, id->exe, d->rule, jid)) {
		snprintf(ex->reason_buf, sizeof(ex->reason_buf), "justified: %s", jid);
		ex->reason = ex->reason_buf;
		return false;
	}
	ex->blocked = true;
	ex->block_status = 403;
	ex->block_code = "policy_warning";
	ex->action = "warn";
	if (!ex->ag->justify) {
		snprintf(ex->block_message, sizeof(ex->block_message), "%s", d->message);
		return true;
	}
	justify_warn(ex->ag->justify, id->uid, id->exe, d->rule, jid);
	snprintf(ex->reason_buf, sizeof(ex->reason_buf), "warned: %s", jid);
	ex->reason = ex->reason_buf;
	snprintf(ex->block_message, sizeof(ex->block_message),
		 "%s. To continue, run: vigil justify %s \"<why you need this>\" and retry", d->message, jid);
	return true;
}

/* The policy's decision, then its budgets. */
static void decide_policy(struct exchange *ex, const struct inspect_result *res, size_t len,
			  struct redact_policy *rp)
{
	struct policy_ctx *c = &ex->ctx;
	struct policy_decision d;
	struct budget_verdict v;

	conn_info_policy_ctx(ex->info, c);
	c->path = ex->path;
	policy_ctx_set_inspect(c, res);
	c->model = ex->model[0] ? ex->model : NULL;
	c->provider = provider_name(ex->provider);   /* the request's, not the host's guess */
	c->request_bytes = len;
	mcp_policy_ctx(ex, c);

	policy_eval(ex->policy, c, &d);
	ex->policy_hash = policy_hash(ex->policy);
	ex->rule = d.rule;
	switch (d.enforce) {
	case POLICY_BLOCK:
		ex->blocked = true;
		ex->block_status = d.status ? d.status : 403;
		ex->block_code = "policy_blocked";
		ex->action = "block";
		snprintf(ex->block_message, sizeof(ex->block_message), "%s", d.message);
		return;
	case POLICY_WARN:
		if (decide_warn(ex, &d))
			return;
		ex->action = "allow";
		break;
	case POLICY_REDACT:
		ex->action = "redact";
		for (int t = 0; t < FINDING__COUNT; t++)
			rp->action[t] = d.redact ? d.redact[t] : REDACT_PLACEHOLDER;
		break;
	case POLICY_ALERT:
		ex->action = "alert";
		break;
	default:
		ex->action = "allow";
		break;
	}
	if (d.monitor && d.action != d.enforce) {
		snprintf(ex->reason_buf, sizeof(ex->reason_buf), "monitor: rule '%s' would %s", d.rule,
			 policy_action_name(d.action));
		ex->reason = ex->reason_buf;
	}
	if (ex->ag->budgets && budget_check(ex->ag->budgets, ex->policy, c, c->now, &v) == 1) {
		ex->blocked = true;
		ex->block_status = v.status ? v.status : 429;
		ex->block_code = "budget_exhausted";
		ex->action = "block";
		ex->rule = v.budget;
		ex->reason = "budget_exhausted";
		snprintf(ex->block_message, sizeof(ex->block_message), "%s", v.message);
	} else if (v.exhausted && v.monitor) {
		snprintf(ex->reason_buf, sizeof(ex->reason_buf), "monitor: budget '%s' exhausted",
			 v.budget ? v.budget : "?");
		ex->reason = ex->reason_buf;
	}
}

/* The answer rule, chosen when the request is decided (a streamed answer
 * is redacted as it passes). Without a policy file answers are only
 * scanned and reported (output_findings), never rewritten. */
static void decide_answer(struct exchange *ex)
{
	struct policy_answer a;
	if (!ex->policy || !policy_eval_answer(ex->policy, &ex->ctx, &a))
		return;
	ex->answer_rule = a.rule;
	if (a.warn) {
		/* coaching, not rewriting: which types the rule is about */
		for (int t = 0; t < FINDING__COUNT; t++)
			if (a.redact[t] != REDACT_KEEP)
				ex->answer_warn_types |= 1ull << t;
		return;
	}
	if (a.monitor) {
		snprintf(ex->answer_reason, sizeof(ex->answer_reason),
			 "monitor: answer rule '%s' would redact", a.rule);
		return;
	}
	for (int t = 0; t < FINDING__COUNT; t++) {
		ex->answer_rp.action[t] = (enum redact_action)a.redact[t];
		if (a.redact[t] != REDACT_KEEP)
			ex->redact_answer = true;
	}
	ex->answer_rp.hash_key = ex->ag->hash_key;
	ex->answer_rp.hash_key_len = sizeof(ex->ag->hash_key);
}

void exchange_done(struct exchange *ex)
{
	uint64_t tokens;
	if (!ex->policy || !ex->ag->budgets || ex->blocked || !ex->status)
		return;
	int64_t prompt = provider_usage_prompt(&ex->usage);
	if (prompt >= 0 || ex->usage.completion >= 0)
		tokens = (uint64_t)(prompt > 0 ? prompt : 0) +
			 (uint64_t)(ex->usage.completion > 0 ? ex->usage.completion : 0);
	else
		tokens = budget_estimate_tokens(ex->bytes_up + ex->bytes_down);
	budget_charge(ex->ag->budgets, ex->policy, &ex->ctx, tokens, time(NULL));
	/* Cost budgets: the policy's copy of the pricing table, the provider's
	 * usage (cached prompt tokens at their own price), or without usage the
	 * estimate priced as input. */
	const struct pricing *pr = policy_pricing(ex->policy);
	double cost;
	bool known = prompt >= 0 || ex->usage.completion >= 0;
	if (pr->n && pricing_cost(pr->rows, pr->n, provider_name(ex->provider), ex->model, known ? prompt : (int64_t)tokens,
				  known ? ex->usage.completion : 0, ex->usage.cached, &cost))
		budget_charge_cost(ex->ag->budgets, ex->policy, &ex->ctx, (uint64_t)llround(cost * 1e6), time(NULL));
}

static void apply_redaction(struct exchange *ex, const char *body, size_t len,
			    struct redact_policy *rp)
{
	struct buf out = { .secret = true };   /* the prompt, as forwarded */
	bool any = false;
	int ret;

	for (int t = 0; t < FINDING__COUNT; t++)
		if (rp->action[t] != REDACT_KEEP && ex->counts[t])
			any = true;
	if (!any)
		return;
	rp->hash_key = ex->ag->hash_key;
	rp->hash_key_len = sizeof(ex->ag->hash_key);
	for (int t = 0; t < FINDING__COUNT; t++)
		if (rp->action[t] == REDACT_TOKENIZE && ex->counts[t])
			conn_vault(ex);
	rp->vault = ex->xc->vault;
	/* base64 text (a data: URI, a document block) and a compressed
	 * multipart part cannot be rewritten in place: refuse, never skip */
	for (size_t i = 0; i < ex->xc->res->nspans; i++) {
		const struct inspect_span *sp = &ex->xc->res->spans[i];
		if (sp->sealed && rp->action[sp->type] != REDACT_KEEP) {
			block(ex, 403, "redaction_impossible", ex->rule ? ex->rule : "default:pii",
			      "a value to redact is inside encoded content (base64, a compressed part)",
			      finding_name(sp->type));
			return;
		}
	}
	ret = redact_body(body, len, ex->xc->res, rp, &out, &ex->redacted);
	if (ret == REDACT_CHANGED) {
		ex->new_body = out.data;
		ex->new_body_len = out.len;
		for (int t = 0; t < FINDING__COUNT; t++)
			if (rp->action[t] == REDACT_TOKENIZE && ex->counts[t])
				ex->tokenized = true;
		return;
	}
	buf_free(&out);
	if (ret == REDACT_INVALID_JSON) {
		/* found, but where a rewrite could break what the provider
		 * reads: refused, never forwarded as sent */
		block(ex, 403, "redaction_impossible", ex->rule ? ex->rule : "default:pii",
		      "a value to redact is in a body that is not valid JSON", "INVALID_JSON");
		return;
	}
	if (ret < 0) {
		/* A request we decided to redact but could not must not leave as is. */
		block(ex, 403, "redaction_failed", ex->rule ? ex->rule : "default:pii",
		      "its sensitive values could not be redacted", strerror(-ret));
	}
}

/* Undo the body's Content-Encoding for inspection. Returns false (and
 * blocks) when it cannot be read: an unknown coding is 415 as a provider
 * would answer, a bomb past the size cap is 413 with INSPECTION_LIMIT,
 * corrupt data is 400 (the provider would read it differently, or not). */
static unsigned header_count(const struct http_request *req, const char *name)
{
	unsigned n = 0;
	for (unsigned i = 0; i < req->nheaders; i++)
		n += req->headers[i].name_len == strlen(name) &&
		     !strncasecmp(req->headers[i].name, name, req->headers[i].name_len);
	return n;
}

static bool decode_body(struct exchange *ex, const struct http_request *req, const char **body,
			size_t *len)
{
	const struct http_header *ce = http_find_header(req->headers, req->nheaders, "content-encoding");
	int ret;
	/* Two Content-Encoding or Content-Type lines: the provider may read
	 * the other one (combine the codings, take the last type) than the
	 * one inspected here. Refused rather than guessed. */
	if (header_count(req, "content-encoding") > 1 || header_count(req, "content-type") > 1) {
		block(ex, 400, "ambiguous_request", "default:decode",
		      "it has more than one Content-Encoding or Content-Type", "send one of each");
		return false;
	}
	if (!ce || !*len)
		return true;
	ret = decode_content(ce->value, ce->value_len, *body, *len, ex->ag->cfg->max_body_bytes,
			     &ex->decoded);
	if (ret == -ENOTSUP) {
		block(ex, 415, "unsupported_content_encoding", "default:decode",
		      "its Content-Encoding cannot be inspected", "use gzip, deflate, br or zstd");
		return false;
	}
	if (ret == -E2BIG) {
		ex->counts[FINDING_INSPECTION_LIMIT] = 1;
		block(ex, 413, "inspection_limit", "default:inspection_limit",
		      "its decoded body is over max_body_bytes", "INSPECTION_LIMIT");
		return false;
	}
	if (ret) {
		block(ex, ret == -ENOMEM ? 503 : 400, "undecodable_body", "default:decode",
		      "its body does not decode as its Content-Encoding says",
		      ret == -ENOMEM ? "out of memory" : "corrupt or truncated");
		return false;
	}
	*body = ex->decoded.data ? ex->decoded.data : "";
	*len = ex->decoded.len;
	return true;
}

/* ------------------------------------------------------- request head */

/* The provider credential in its designated place is the user's own key
 * to that provider, not a leak: Authorization, x-api-key (Anthropic),
 * x-goog-api-key (Gemini), api-key (Azure OpenAI). */
static bool credential_header(const struct http_header *h)
{
	static const char *const names[] = { "authorization", "proxy-authorization", "x-api-key",
					     "x-goog-api-key", "api-key" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (h->name_len == strlen(names[i]) && !strncasecmp(h->name, names[i], h->name_len))
			return true;
	return false;
}

/* Scan text t[0..n) (decoded; map to raw offsets, NULL = identity) of
 * header hdr (-1: the target) and record its findings. */
static int head_scan(struct exchange *ex, struct inspect_scratch *scratch, int hdr, const char *t,
		     size_t n, const uint32_t *map)
{
	struct inspect_result *hr = ex->xc->hres;
	int ret = inspect_text(scratch, t, n, hr);
	if (ret)
		return ret;
	for (int k = 0; k < FINDING__COUNT; k++)
		if (k != FINDING_PROMPT_INJECTION)
			ex->head_counts[k] += hr->counts[k];
	for (size_t i = 0; i < hr->nspans; i++) {
		if (ex->n_head_spans >= sizeof(ex->head_spans) / sizeof(ex->head_spans[0])) {
			ex->head_counts[FINDING_INSPECTION_LIMIT] = 1;
			break;
		}
		ex->head_spans[ex->n_head_spans++] = (struct head_span){
			hdr, map ? map[hr->spans[i].start] : (uint32_t)hr->spans[i].start,
			map ? map[hr->spans[i].end] : (uint32_t)hr->spans[i].end, hr->spans[i].type };
	}
	return 0;
}

/* Path, query pairs (percent-decoded) and header values. A query key
 * parameter (Gemini's ?key=) is the API key in its designated place and
 * is skipped. */
static int inspect_head(struct exchange *ex, const struct http_request *req,
			struct inspect_scratch *scratch)
{
	struct buf dec = { 0 };
	uint32_t *map = NULL, *m2 = NULL;
	size_t cap = 0, cap2 = 0;
	enum provider_id provider = provider_identify(ex->info->sni, ex->path);
	const char *t = req->target;
	size_t tl = req->target_len, q = 0;
	int ret = 0;

	while (q < tl && t[q] != '?' && t[q] != '#')
		q++;
	if ((ret = decode_form(t, q, &dec, &map, &cap)) ||
	    (ret = head_scan(ex, scratch, -1, dec.data, dec.len, map)))
		goto out;
	for (size_t i = q + 1; q < tl && t[q] == '?' && i < tl;) {
		size_t e = i;
		while (e < tl && t[e] != '&' && t[e] != '#')
			e++;
		size_t name = i;
		while (name < e && t[name] != '=')
			name++;
		if (e > i && !(name < e && provider_query_key(provider, t + i, name - i))) {
			if ((ret = decode_form(t + i, e - i, &dec, &m2, &cap2)))
				goto out;
			for (size_t k = 0; k <= dec.len; k++)
				m2[k] += (uint32_t)i;
			if ((ret = head_scan(ex, scratch, -1, dec.data, dec.len, m2)))
				goto out;
		}
		if (e >= tl || t[e] == '#')
			break;
		i = e + 1;
	}
	for (unsigned h = 0; h < req->nheaders; h++) {
		if (credential_header(&req->headers[h]))
			continue;
		if ((ret = head_scan(ex, scratch, (int)h, req->headers[h].value, req->headers[h].value_len, NULL)))
			goto out;
	}
out:
	buf_free(&dec);
	free(map);
	free(m2);
	return ret;
}

/* src[0..n) with the head spans of hdr replaced by "[TYPE]" (pct: as
 * "%5BTYPE%5D" for a URL), spans of types act says to keep left alone
 * (act NULL: replace all, for the event). */
static int head_redacted(const struct exchange *ex, int hdr, const char *src, size_t n, bool pct,
			 const struct redact_policy *act, struct buf *out)
{
	size_t pos = 0;
	int ret;
	for (unsigned i = 0; i < ex->n_head_spans; i++) {
		const struct head_span *sp = &ex->head_spans[i];
		char rep[64];
		if (sp->hdr != hdr || sp->start < pos || sp->end > n ||
		    (act && act->action[sp->type] == REDACT_KEEP))
			continue;
		snprintf(rep, sizeof(rep), pct ? "%%5B%s%%5D" : "[%s]", finding_name(sp->type));
		if ((ret = buf_append(out, src + pos, sp->start - pos)) ||
		    (ret = buf_append(out, rep, strlen(rep))))
			return ret;
		pos = sp->end;
	}
	return buf_append(out, src + pos, n - pos);
}

/* The event's path: findings in it replaced by their type, so the audit
 * log and the spool never hold the raw value. */
static void head_event_path(struct exchange *ex, const struct http_request *req)
{
	struct buf out = { 0 };
	size_t q = 0;
	while (q < req->target_len && req->target[q] != '?' && req->target[q] != '#')
		q++;
	if (head_redacted(ex, -1, req->target, q, false, NULL, &out) == 0) {
		size_t l = out.len < sizeof(ex->path) - 1 ? out.len : sizeof(ex->path) - 1;
		memcpy(ex->path, out.data, l);
		ex->path[l] = 0;
	} else {
		snprintf(ex->path, sizeof(ex->path), "[path withheld]");
	}
	buf_free(&out);
}

/* A redact decision rewrites the head too: the target's and the header
 * values' findings are replaced before the request is forwarded. */
static int head_plan_rewrite(struct exchange *ex, const struct http_request *req,
			     const struct redact_policy *rp)
{
	struct buf out = { 0 };
	bool any = false;
	int ret;
	for (unsigned i = 0; i < ex->n_head_spans; i++)
		any |= rp->action[ex->head_spans[i].type] != REDACT_KEEP;
	if (!any)
		return 0;
	if ((ret = head_redacted(ex, -1, req->target, req->target_len, true, rp, &out)))
		goto err;
	ex->new_target = out.data;
	ex->new_target_len = out.len;
	for (unsigned h = 0; h < req->nheaders && h < HTTP_MAX_HEADERS; h++) {
		bool here = false;
		for (unsigned i = 0; i < ex->n_head_spans; i++)
			here |= ex->head_spans[i].hdr == (int)h && rp->action[ex->head_spans[i].type] != REDACT_KEEP;
		if (!here)
			continue;
		memset(&out, 0, sizeof(out));
		if ((ret = head_redacted(ex, (int)h, req->headers[h].value, req->headers[h].value_len, false, rp, &out)))
			goto err;
		ex->new_hdr[h] = out.data;
		ex->new_hdr_len[h] = out.len;
	}
	return 0;
err:
	buf_free(&out);
	return ret;
}

void exchange_rewrite_head(struct exchange *ex, struct http_request *req)
{
	if (ex->new_target) {
		req->target = ex->new_target;
		req->target_len = ex->new_target_len;
	}
	for (unsigned h = 0; h < req->nheaders && h < HTTP_MAX_HEADERS; h++)
		if (ex->new_hdr[h]) {
			req->headers[h].value = ex->new_hdr[h];
			req->headers[h].value_len = ex->new_hdr_len[h];
		}
}

static void set_method_path(struct exchange *ex, const struct http_request *req)
{
	size_t ml = req->method_len < sizeof(ex->method) - 1 ? req->method_len : sizeof(ex->method) - 1;
	size_t pl = 0;

	memcpy(ex->method, req->method, ml);
	ex->method[ml] = 0;
	while (pl < req->target_len && pl < sizeof(ex->path) - 1 && req->target[pl] != '?' &&
	       req->target[pl] != '#')
		pl++;
	memcpy(ex->path, req->target, pl);
	ex->path[pl] = 0;
	const struct http_header *o = http_find_header(req->headers, req->nheaders, "origin");
	if (o && o->value_len < sizeof(ex->origin)) {
		memcpy(ex->origin, o->value, o->value_len);
		ex->origin[o->value_len] = 0;
	}
}

void exchange_request(struct exchange *ex, const struct http_request *req, const char *body,
		      size_t len)
{
	struct inspect_scratch *scratch;
	struct inspect_result *res;
	struct redact_policy rp;
	int ret;

	set_method_path(ex, req);
	mcp_request(ex, req);
	/* bytes_up is the driver's count of the request as received (head
	 * and body): adding the body here counted it twice. */

	if (!(scratch = conn_scratch(ex))) {
		block(ex, 503, "inspection_unavailable", "default:fail_closed",
		      "inspection unavailable", "out of memory");
		return;
	}
	if (!decode_body(ex, req, &body, &len))
		return;
	bool mcp_unreadable = !mcp_request_body(ex, body, len);
	res = ex->xc->res;
	const struct http_header *ct = http_find_header(req->headers, req->nheaders, "content-type");
	ret = inspect_request_typed(scratch, ex->info->sni, ex->path, ct ? ct->value : "",
				    ct ? ct->value_len : 0, body, len, res);
	if (ret) {
		/* Inspection failed: the request must not leave uninspected. */
		block(ex, 503, "inspection_failed", "default:fail_closed",
		      "inspection failed", strerror(-ret));
		return;
	}
	if ((ret = inspect_head(ex, req, scratch))) {
		block(ex, 503, "inspection_failed", "default:fail_closed",
		      "inspection failed", strerror(-ret));
		return;
	}
	if (ex->n_head_spans)
		head_event_path(ex, req);
	for (int t = 0; t < FINDING__COUNT; t++) {
		uint64_t sum = (uint64_t)res->counts[t] + ex->head_counts[t];
		res->counts[t] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
	}
	if (ex->head_counts[FINDING_INSPECTION_LIMIT])
		res->counts[FINDING_INSPECTION_LIMIT] = 1;
	ex->provider = res->info.provider;
	snprintf(ex->model, sizeof(ex->model), "%s", res->info.model);
	snprintf(ex->conversation, sizeof(ex->conversation), "%s", res->info.conversation);
	ex->stream = res->info.stream;
	ex->injection_score = res->injection_score;
	memcpy(ex->counts, res->counts, sizeof(ex->counts));
	if (mcp_unreadable) {
		/* its tool would go unjudged; inspected all the same, so the
		 * event names what it carried */
		block(ex, 400, "mcp_unreadable", "default:fail_closed",
		      "an MCP message the agent cannot read as JSON-RPC, so its method and tool cannot be judged",
		      "send JSON-RPC 2.0");
		return;
	}

	memset(&rp, 0, sizeof(rp));
	if (ex->ag->policy && (ex->policy = policy_holder_get(ex->ag->policy)))
		decide_policy(ex, res, len, &rp);
	else
		decide_default(ex, &rp);
	/* A body that looks like JSON and is not: a lenient parser at the
	 * provider may read it (NaN, trailing commas), but the agent cannot
	 * say which model or what it asks for, so rules on those could be
	 * walked around. Refused, unless a policy decides INVALID_JSON itself
	 * or only monitors. */
	if (!ex->blocked && ex->counts[FINDING_INVALID_JSON] &&
	    !(ex->policy && (policy_names_finding(ex->policy, FINDING_INVALID_JSON) || policy_global_monitor(ex->policy))))
		block(ex, 400, "invalid_json", "default:invalid_json",
		      "its body is not valid JSON, so what it asks for cannot be read", "INVALID_JSON");
	/* A redaction over incomplete findings would forward the values past
	 * the limit raw while the event says "redact": refuse it instead. */
	if (!ex->blocked && ex->counts[FINDING_INSPECTION_LIMIT] && !strcmp(ex->action, "redact"))
		block(ex, 403, "inspection_limit", ex->rule ? ex->rule : "default:inspection_limit",
		      "it could not be inspected whole, so it cannot be redacted", "INSPECTION_LIMIT");
	if (!ex->blocked && !strcmp(ex->action, "redact") && head_plan_rewrite(ex, req, &rp))
		block(ex, 503, "redaction_failed", ex->rule ? ex->rule : "default:pii",
		      "its request head could not be redacted", "out of memory");
	if (!ex->blocked)
		decide_answer(ex);
	if (!ex->blocked)
		apply_redaction(ex, body, len, &rp);
	/* what could not be read is named in the event, never its bytes */
	if (ex->counts[FINDING_OPAQUE_CONTENT] && !ex->reason) {
		snprintf(ex->opaque_buf, sizeof(ex->opaque_buf), "opaque: %s, %zu bytes",
			 res->opaque_type, res->opaque_bytes);
		ex->reason = ex->opaque_buf;
	}
	/* the rewritten body is the decoded one: it goes out without coding */
	if (ex->new_body && ex->decoded.data)
		ex->drop_content_encoding = true;
}

const char *exchange_body(struct exchange *ex, const char *body, size_t *len)
{
	if (ex->new_body) {
		*len = ex->new_body_len;
		return ex->new_body;
	}
	return body;
}

/* Model text of one response document goes to the output scanner. */
static void scan_output(struct exchange *ex, const char *doc, size_t len)
{
	if (!ex->out_scan)
		return;
	ex->text.len = 0;
	if (provider_response_text(ex->provider, doc, len, &ex->text) == 0 && ex->text.len)
		inspect_stream_feed(ex->out_scan, ex->text.data, ex->text.len);
}

/* ---- token restoration in event streams ----
 * A token can be split across events ("[[VG" in one delta, "L_EMAIL_..."
 * in the next), with JSON framing between the pieces, so raw-byte
 * restoration cannot see it. Instead each event's text delta is decoded,
 * run through the restorer (which holds back a possible token prefix), and
 * written back into that event's JSON; text still held back when a
 * non-text event (finish, usage, [DONE]) arrives is sent first in a copy of
 * the last text event. Events are re-serialized: ids and comments are
 * dropped, which no provider's SDK relies on. */

/* The text field of an event and its channel: the field and the last
 * "index" before it (OpenAI tool_calls[].index, Anthropic's block index),
 * so parallel tool calls or content blocks are told apart. */
struct text_find {
	size_t off, len;
	bool found, json;
	long index;
	char chan[96];
	const char *const *app;   /* a web app's delta fields, tried first */
};

/* s is the text field id (tag "w": a web app's own; "": an API's, see
 * provider_stream_field): remember where, and its channel. */
static bool take_text(struct text_find *f, const struct json_string *s, const char *tag, int id, bool json)
{
	f->off = s->off;
	f->len = s->len;
	f->found = true;
	f->json = json;
	snprintf(f->chan, sizeof(f->chan), "%s%d:%ld", tag, id, f->index);
	return true;
}

/* s is one of a web app's delta fields */
static bool take_app_text(struct text_find *f, const struct json_string *s)
{
	for (int i = 0; f->app && f->app[i]; i++)
		if (json_path_match(s->path, f->app[i]))
			return take_text(f, s, "w", i, false);
	return false;
}

static int find_text(void *ctx, const char *doc, const struct json_string *s)
{
	struct text_find *f = ctx;
	const struct json_path *p = s->path;
	if (s->kind == JSON_NUMBER && p->depth && p->elem[p->depth - 1].key &&
	    json_raw_equals(p->elem[p->depth - 1].key, p->elem[p->depth - 1].key_len, "index")) {
		f->index = s->len < 10 ? strtol(doc + s->off, NULL, 10) : -1;
		return 0;
	}
	if (s->kind != JSON_STRING || s->is_key)
		return 0;
	if (take_app_text(f, s))
		return 1;
	bool json;
	int id = provider_stream_field(s->path, &json);
	return id >= 0 && take_text(f, s, "", id, json);
}

static void emit_event(struct exchange *ex, const char *event, size_t event_len, const char *d1,
		       size_t l1, const char *d2, size_t l2, const char *d3, size_t l3)
{
	if (event_len && !(event_len == 7 && !memcmp(event, "message", 7))) {
		buf_append(&ex->out, "event: ", 7);
		buf_append(&ex->out, event, event_len);
		buf_append(&ex->out, "\n", 1);
	}
	/* Data lines: the pieces are concatenated, then split on newlines. */
	buf_append(&ex->out, "data: ", 6);
	const char *parts[3] = { d1, d2, d3 };
	size_t lens[3] = { l1, l2, l3 };
	for (int i = 0; i < 3; i++)
		for (size_t k = 0; k < lens[i]; k++) {
			if (parts[i][k] == '\n')
				buf_append(&ex->out, "\ndata: ", 7);
			else
				buf_append(&ex->out, parts[i] + k, 1);
		}
	buf_append(&ex->out, "\n\n", 2);
}

/* Model text of one event on its way to the client: answer redaction
 * (which holds back a possible value), then token restoration (which
 * holds back a possible token prefix). Returns 0, ANSWER_OVERRUN, -errno. */
static int text_through(struct exchange *ex, const char *in, size_t n, struct buf *out)
{
	int rc;
	if (ex->ans) {
		ex->stage.len = 0;
		if ((rc = answer_feed(ex->ans, in, n, &ex->stage)))
			return rc;
		in = ex->stage.data ? ex->stage.data : "";
		n = ex->stage.len;
	}
	if (ex->detok)
		return detok_feed(ex->detok, in, n, out);
	return buf_append(out, in, n);
}

/* Everything both stages hold, released. */
static int text_flush(struct exchange *ex, struct buf *out)
{
	int rc;
	if (ex->ans) {
		ex->stage.len = 0;
		if ((rc = answer_finish(ex->ans, &ex->stage)))
			return rc;
		rc = ex->detok ? detok_feed(ex->detok, ex->stage.data ? ex->stage.data : "", ex->stage.len, out)
			       : buf_append(out, ex->stage.data, ex->stage.len);
		if (rc)
			return rc;
	}
	return ex->detok ? detok_finish(ex->detok, out) : 0;
}

/* A value in the answer grew past what the redactor may hold back: the
 * rest is not sent. The client gets an error event in its provider's
 * shape (the SDKs raise it) and then the end of the stream. */
static void cut_stream(struct exchange *ex)
{
	char body[512];
	int n;
	if (ex->answer_cut)
		return;
	ex->answer_cut = true;
	ex->error = "answer_redaction_limit: a value in the answer was longer than the redaction hold-back; stream cut";
	n = exchange_error_body(ex, 502, "answer_redaction_limit",
				"a value in the answer could not be redacted whole; the answer was cut", body,
				sizeof(body));
	emit_event(ex, "error", 5, body, (size_t)n, NULL, 0, NULL, 0);
}

/* Sends text the stages still hold, in a copy of the last text event. */
static void flush_held_text(struct exchange *ex)
{
	struct buf tail = { .secret = true }, enc = { 0 };
	int rc;
	if (!ex->detok && !ex->ans)
		return;
	rc = text_flush(ex, &tail);
	if (ex->detok) {
		detok_free(ex->detok);
		ex->detok = detok_new(ex->xc->vault, false);
	}
	ex->tpl_chan[0] = 0;
	if (rc == ANSWER_OVERRUN || rc < 0)
		cut_stream(ex);
	else if (tail.len && ex->have_tpl && json_encode(tail.data, tail.len, &enc) == 0)
		emit_event(ex, ex->tpl_event, strlen(ex->tpl_event), ex->tpl_pre.data, ex->tpl_pre.len,
			   enc.data, enc.len, ex->tpl_post.data, ex->tpl_post.len);
	buf_free(&tail);
	buf_free(&enc);
}

/* Events that repeat the whole text so far (OpenAI Responses:
 * output_text.done, content_part.done, output_item.done, completed)
 * carry no delta: with answer redaction on, their text fields are
 * redacted whole (the values were counted in the deltas already). */
static bool sse_whole_text_path(const struct json_path *p)
{
	static const char *const paths[] = { "text", "part.text", "item.content[*].text",
					     "response.output[*].content[*].text", NULL };
	for (int i = 0; paths[i]; i++)
		if (json_path_match(p, paths[i]))
			return true;
	return false;
}

/* A non-text event: its repeated whole text redacted, then its tokens
 * restored (JSON-escaped in place, as in a whole JSON answer). */
static void emit_whole_text_event(struct exchange *ex, const char *event, size_t event_len,
				  const char *data, size_t data_len)
{
	struct buf red = { .secret = true }, restored = { .secret = true };
	uint32_t again[FINDING__COUNT] = { 0 };
	struct detok *d;
	int rc = ex->ans ? answer_redact_doc(ex->xc->scratch, &ex->answer_rp, sse_whole_text_path, data,
					     data_len, &red, again) : REDACT_UNCHANGED;
	if (rc < 0) {
		cut_stream(ex);
		goto out;
	}
	if (rc == REDACT_CHANGED) {
		data = red.data;
		data_len = red.len;
	}
	if (ex->detok && (d = detok_new(ex->xc->vault, true))) {
		if (detok_feed(d, data, data_len, &restored) == 0 && detok_finish(d, &restored) == 0 &&
		    detok_restored(d)) {
			data = restored.data;
			data_len = restored.len;
		}
		detok_free(d);
	}
	emit_event(ex, event, event_len, data, data_len, NULL, 0, NULL, 0);
out:
	buf_free(&red);
	buf_free(&restored);
}

/* Anthropic's keep-alive: it carries no text and does not end a block, so
 * held text waits across it instead of being released early. */
static bool is_ping(const char *event, size_t event_len)
{
	return event_len == 4 && !memcmp(event, "ping", 4);
}

static void rewrite_event(struct exchange *ex, const char *event, size_t event_len,
			  const char *data, size_t data_len)
{
	struct text_find f = { 0 };
	struct json_text txt = { 0 };
	struct buf done = { .secret = true }, enc = { 0 };
	int rc = -EINVAL;

	if (ex->answer_cut)
		return;
	f.index = -1;
	f.app = provider_stream_delta_paths(ex->provider);
	if (json_scan(data, data_len, find_text, &f) >= 0 && f.found &&
	    json_decode(data + f.off, f.len, &txt) == 0) {
		if (strcmp(f.chan, ex->tpl_chan)) {
			/* another channel (a tool call's arguments after the text, a
			 * second content block): what the last one holds is its own */
			flush_held_text(ex);
			if (ex->answer_cut)
				goto out;
			snprintf(ex->tpl_chan, sizeof(ex->tpl_chan), "%s", f.chan);
			if (ex->detok && f.json) {
				detok_free(ex->detok);
				ex->detok = detok_new(ex->xc->vault, true);
			}
		}
		rc = text_through(ex, txt.data, txt.len, &done);
		if (rc == ANSWER_OVERRUN || (rc < 0 && ex->ans)) {
			cut_stream(ex);
			goto out;
		}
	}
	if (rc == 0 && json_encode(done.data ? done.data : "", done.len, &enc) == 0) {
		emit_event(ex, event, event_len, data, f.off, enc.data ? enc.data : "", enc.len,
			   data + f.off + f.len, data_len - f.off - f.len);
		ex->tpl_pre.len = ex->tpl_post.len = 0;
		buf_append(&ex->tpl_pre, data, f.off);
		buf_append(&ex->tpl_post, data + f.off + f.len, data_len - f.off - f.len);
		snprintf(ex->tpl_event, sizeof(ex->tpl_event), "%.*s", (int)event_len, event);
		ex->have_tpl = true;
	} else {
		if (!is_ping(event, event_len))
			flush_held_text(ex);
		if (!ex->answer_cut)
			emit_whole_text_event(ex, event, event_len, data, data_len);
	}
out:
	json_text_free(&txt);   /* wiped */
	buf_free(&done);
	buf_free(&enc);
}

/* ---- tools the model asks to run (names and counts only) ---- */

/* The rule that forbids the calls seen so far, if any: the request's
 * context with the called tools in place of the declared ones. */
static const char *tools_forbidden(struct exchange *ex)
{
	struct policy_ctx c;
	struct policy_decision d;
	if (!ex->policy || !ex->calls || !ex->calls->n)
		return NULL;
	c = ex->ctx;
	c.ntools = 0;
	policy_eval(ex->policy, &c, &d);
	if (d.enforce == POLICY_BLOCK)
		return NULL;   /* a refusal not about tools (the request passed an earlier rule) */
	c.tools = (const char (*)[PROVIDER_TOOL_NAME_MAX])ex->calls->names;
	c.ntools = ex->calls->n;
	policy_eval(ex->policy, &c, &d);
	if (d.enforce != POLICY_BLOCK)
		return NULL;
	snprintf(ex->tools_msg, sizeof(ex->tools_msg), "%s", d.message);
	return d.rule;
}

/* Records the calls of one answer document; true if one is forbidden and
 * the answer is held (so it can still be refused). */
static bool record_tool_calls(struct exchange *ex, const char *doc, size_t len)
{
	if (!ex->calls && memmem(doc, len, "\"name\"", 6) && !(ex->calls = calloc(1, sizeof(*ex->calls))))
		return ex->hold_tools;   /* cannot tell: refuse what we hold rather than pass it */
	if (!ex->calls || toolcall_scan(doc, len, ex->calls, NULL) <= 0)
		return false;
	const char *rule = ex->hold_tools ? tools_forbidden(ex) : NULL;
	if (rule) {
		ex->rule = rule;
		ex->action = "block";
		ex->reason = "tool_call_refused";
	}
	return rule != NULL;
}

/* Responses streams repeat a call in output_item.done and in the final
 * response object: only output_item.added counts it. */
static bool stream_tool_calls(struct exchange *ex, const char *event, size_t event_len, const char *data,
			      size_t data_len)
{
	if (event_len > 9 && !memcmp(event, "response.", 9) &&
	    !(event_len == 26 && !memcmp(event, "response.output_item.added", 26)))
		return false;
	return record_tool_calls(ex, data, data_len);
}

/* The stream ends with an error event in the provider's shape before the
 * forbidden call's event; later events are dropped. */
static void refuse_tool_call(struct exchange *ex)
{
	char body[512];
	int n;
	flush_held_text(ex);
	ex->answer_cut = true;
	n = exchange_error_body(ex, 403, "tool_call_refused", ex->tools_msg, body, sizeof(body));
	if (n > 0)
		emit_event(ex, "error", 5, body, (size_t)n, NULL, 0, NULL, 0);
}

static int on_sse_event(void *arg, const char *event, size_t event_len, const char *data,
			size_t data_len)
{
	struct exchange *ex = arg;
	provider_usage_scan(&ex->usage, data, data_len);
	scan_output(ex, data, data_len);
	provider_answer_conversation(ex->provider, data, data_len, ex->conversation, sizeof(ex->conversation));
	if (!ex->answer_cut && stream_tool_calls(ex, event, event_len, data, data_len)) {
		refuse_tool_call(ex);
		return 0;
	}
	if (ex->transform)
		rewrite_event(ex, event, event_len, data, data_len);
	return 0;
}

/* Whether a non-stream answer is text the detectors can read (JSON or
 * any text type, or no type at all); audio, images and files pass as they are. */
static bool resp_is_text(const struct http_response *resp)
{
	for (unsigned i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];
		if (h->name_len != 12 || strncasecmp(h->name, "content-type", 12))
			continue;
		size_t n = h->value_len;
		const char *v = h->value;
		const char *semi = memchr(v, ';', n);
		if (semi)
			n = (size_t)(semi - v);
		return (n >= 5 && !strncasecmp(v, "text/", 5)) ||
		       (n == 16 && !strncasecmp(v, "application/json", 16)) ||
		       (n > 5 && !strncasecmp(v + n - 5, "+json", 5));
	}
	return true;
}

void exchange_response_head(struct exchange *ex, const struct http_response *resp)
{
	mcp_response_head(ex, resp);
	if (ex->mcp && ex->transform)
		return;   /* an MCP call's answer: held whole and judged by mcp.c */
	ex->event_stream = resp->event_stream;
	if (ex->event_stream)
		ex->sse = sse_new(SSE_EVENT_MAX);
	if (ex->xc->scratch)
		ex->out_scan = inspect_stream_new(ex->xc->scratch);
	if (resp->body == HTTP_BODY_NONE)
		return;
	/* Tokens are restored whenever this user and program has values in
	 * the vault, not only when this request carried tokens: a reconnected
	 * conversation, or one the provider keeps server-side (Responses API
	 * previous_response_id), answers with tokens from earlier requests.
	 * Raw JSON bodies: restored in place, JSON-escaped. Event streams:
	 * restored on decoded text, event by event. */
	if (conn_vault(ex) && vault_count(ex->xc->vault)) {
		ex->detok = detok_new(ex->xc->vault, !ex->event_stream);
		ex->transform = ex->detok != NULL && (!ex->event_stream || ex->sse);
	}
	if (ex->policy && policy_has_tool_rules(ex->policy) && ex->status < 300) {
		/* whole events (streams) or the whole answer (JSON) are held so
		 * that a forbidden tool call never reaches the client */
		ex->hold_tools = true;
		if (ex->event_stream)
			ex->transform = ex->sse != NULL;
		else if (resp_is_text(resp))
			ex->resp_doc = ex->transform = true;
		if (ex->event_stream && !ex->sse)
			ex->cut = true;
	}
	if (ex->redact_answer && ex->xc->scratch) {
		if (ex->event_stream) {
			ex->ans = answer_new(ex->xc->scratch, &ex->answer_rp);
			ex->transform = true;
			if (!ex->ans || !ex->sse)
				ex->cut = true;   /* cannot redact: send nothing rather than the raw answer */
		} else if (resp_is_text(resp)) {
			ex->resp_doc = true;  /* buffered whole (bounded), rewritten at the end */
			ex->transform = true;
		}
	}
}

void exchange_response_data(struct exchange *ex, const char *data, size_t len)
{
	if (mcp_response_data(ex, data, len))
		return;
	if (ex->transform && !ex->event_stream && !ex->resp_doc)
		detok_feed(ex->detok, data, len, &ex->out);
	if (ex->event_stream) {
		if (ex->sse)
			sse_feed(ex->sse, data, len, on_sse_event, ex);
		return;
	}
	if (ex->resp_copy_full)
		return;
	if (ex->resp_len + len > RESP_COPY_MAX) {
		ex->resp_copy_full = true;   /* too large to be a usage-bearing answer we parse */
		if (ex->resp_doc) {
			/* nothing of it was sent; the rest cannot be checked */
			ex->cut = true;
			ex->error = "answer_redaction_limit: the answer is over 1 MiB and could not be redacted; connection cut";
		}
		return;
	}
	if (ex->resp_len + len > ex->resp_cap) {
		size_t cap = ex->resp_cap ? ex->resp_cap : 4096;
		while (cap < ex->resp_len + len)
			cap *= 2;
		char *nb = secret_realloc(ex->resp_copy, ex->resp_len, ex->resp_cap, cap);
		if (!nb) {
			ex->resp_copy_full = true;
			ex->cut = ex->resp_doc;
			return;
		}
		ex->resp_copy = nb;
		ex->resp_cap = cap;
	}
	memcpy(ex->resp_copy + ex->resp_len, data, len);
	ex->resp_len += len;
}

/* The buffered answer, redacted, then its tokens restored, into ex->out. */
static void finish_doc(struct exchange *ex)
{
	struct buf red = { .secret = true };
	const char *doc = ex->resp_copy ? ex->resp_copy : "";
	size_t len = ex->resp_len;
	/* held for tool calls only: nothing to redact */
	int rc = ex->redact_answer ? answer_redact_doc(ex->xc->scratch, &ex->answer_rp, NULL, doc, len, &red,
							ex->ans_counts) : 0;
	if (rc < 0) {
		ex->cut = true;   /* decided to redact, could not: the raw answer stays here */
		ex->error = "answer_redaction_failed";
	} else {
		if (rc == REDACT_CHANGED) {
			doc = red.data;
			len = red.len;
		}
		if (ex->detok) {
			detok_feed(ex->detok, doc, len, &ex->out);
			detok_finish(ex->detok, &ex->out);
		} else {
			buf_append(&ex->out, doc, len);
		}
	}
	buf_free(&red);
}

/* An answer rule with action warn whose types the answer carries: the
 * answer went out unchanged; the event says warn, the rule, and what was
 * found (types and counts), after any reason the request had. A request
 * the policy already refused or flagged keeps its own action. */
static void answer_warned(struct exchange *ex)
{
	char *b = ex->answer_warn_reason;
	size_t cap = sizeof(ex->answer_warn_reason), n;
	bool any = false;

	for (int t = 0; t < FINDING__COUNT; t++)
		any |= ex->out_counts[t] && (ex->answer_warn_types & (1ull << t));
	if (!any || !ex->action || strcmp(ex->action, "allow"))
		return;
	n = (size_t)snprintf(b, cap, "%s%sanswer warned by rule '%s':", ex->reason ? ex->reason : "",
			     ex->reason ? "; " : "", ex->answer_rule ? ex->answer_rule : "?");
	for (int t = 0; t < FINDING__COUNT && n < cap; t++)
		if (ex->out_counts[t] && (ex->answer_warn_types & (1ull << t)))
			n += (size_t)snprintf(b + n, cap - n, " %s %u", finding_name((enum finding_type)t),
					      ex->out_counts[t]);
	ex->action = "warn";
	ex->rule = ex->answer_rule;
	ex->reason = b;
}

/* "answer redacted by rule 'x': EMAIL 2, PHONE 1" (types and counts only),
 * after any reason the request already had. */
static void answer_summary(struct exchange *ex)
{
	char *b = ex->answer_reason;
	size_t cap = sizeof(ex->answer_reason), n;
	bool any = false;
	if (ex->ans)
		for (int t = 0; t < FINDING__COUNT; t++)
			ex->ans_counts[t] += answer_counts(ex->ans)[t];
	for (int t = 0; t < FINDING__COUNT; t++)
		any |= ex->ans_counts[t] != 0;
	if (any) {
		n = (size_t)snprintf(b, cap, "%s%sanswer redacted by rule '%s':", ex->reason ? ex->reason : "",
				     ex->reason ? "; " : "", ex->answer_rule ? ex->answer_rule : "?");
		for (int t = 0; t < FINDING__COUNT && n < cap; t++)
			if (ex->ans_counts[t])
				n += (size_t)snprintf(b + n, cap - n, " %s %u", finding_name((enum finding_type)t),
						      ex->ans_counts[t]);
	} else if (b[0] && ex->reason) {
		char tmp[sizeof(ex->answer_reason)];
		snprintf(tmp, sizeof(tmp), "%s", b);
		snprintf(b, cap, "%s; %s", ex->reason, tmp);
	}
	if (b[0])
		ex->reason = b;
	answer_warned(ex);
}

void exchange_response_end(struct exchange *ex)
{
	if (mcp_response_end(ex))
		return;
	if (!ex->event_stream && ex->resp_copy && !ex->resp_copy_full &&
	    record_tool_calls(ex, ex->resp_copy, ex->resp_len) && ex->resp_doc) {
		/* the head is out already: the client sees a cut answer, never the call */
		ex->cut = true;
		ex->error = "tool_call_refused: the answer calls a tool the policy forbids; answer cut";
		return;
	}
	if (ex->resp_doc && !ex->cut)
		finish_doc(ex);
	else if (ex->transform && !ex->event_stream && !ex->resp_doc)
		detok_finish(ex->detok, &ex->out);
	else if (ex->transform && ex->event_stream)
		flush_held_text(ex);
	if (!ex->event_stream && ex->resp_copy && !ex->resp_copy_full) {
		provider_usage_scan(&ex->usage, ex->resp_copy, ex->resp_len);
		scan_output(ex, ex->resp_copy, ex->resp_len);
	}
	if (ex->out_scan) {
		inspect_stream_finish(ex->out_scan);
		memcpy(ex->out_counts, inspect_stream_counts(ex->out_scan), sizeof(ex->out_counts));
	}
	answer_summary(ex);
}

void exchange_scan_usage(const char *doc, size_t len, int64_t *prompt, int64_t *completion)
{
	struct provider_usage u;
	provider_usage_init(&u);
	u.prompt = *prompt;
	u.completion = *completion;
	provider_usage_scan(&u, doc, len);
	*prompt = u.prompt;
	*completion = u.completion;
}

/* The non-zero per-type counts as audit findings (type name + count). */
void exchange_fill_event(const struct exchange *ex, struct audit_event *ev)
{
	if (ex->kind)
		ev->kind = ex->kind;
	ev->ws_usage = ex->ws_usage;
	ev->provider = provider_name(ex->provider);
	ev->method = ex->method[0] ? ex->method : NULL;
	ev->path = ex->path[0] ? ex->path : NULL;
	ev->model = ex->model[0] ? ex->model : NULL;
	ev->app = provider_webapp(ex->provider) ? provider_webapp(ex->provider)->name : NULL;
	ev->conversation = ex->conversation[0] ? ex->conversation : NULL;
	ev->stream = ex->stream;
	ev->action = ex->action;
	ev->rule = ex->rule;
	ev->reason = ex->reason;
	ev->error = ex->error;
	ev->status = ex->status;
	ev->bytes_up = ex->bytes_up;
	ev->bytes_down = ex->bytes_down;
	ev->prompt_tokens = provider_usage_prompt(&ex->usage);
	ev->completion_tokens = ex->usage.completion;
	ev->cached_tokens = ex->usage.cached;
	ev->latency_ms = ex->latency_ms;
	ev->injection_score = ex->injection_score;
	ev->policy_hash = ex->policy_hash;
	ev->n_findings = audit_findings_from_counts(ex->counts, ev->findings);
	ev->n_output_findings = audit_findings_from_counts(ex->out_counts, ev->output_findings);
	ev->n_output_redacted = audit_findings_from_counts(ex->ans_counts, ev->output_redacted);
	mcp_fill_event(ex, ev);
	if (ex->calls && ex->calls->n)
		ev->tool_calls = toolcall_summary(ex->calls);
}

uint64_t exchange_audit_begin(struct exchange *ex)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	conn_info_fill_event(ex->info, &ev);
	exchange_fill_event(ex, &ev);
	return audit_begin(ex->ag->audit, &ev);
}

void exchange_audit_end(struct exchange *ex, uint64_t ticket)
{
	struct audit_event ev;
	audit_event_init(&ev, "request");
	conn_info_fill_event(ex->info, &ev);
	exchange_fill_event(ex, &ev);
	audit_end(ex->ag->audit, ticket, &ev);
	metrics_count_action(ex->ag, ev.action);
}

const char *exchange_status_text(int status)
{
	return http_status_text(status);
}

int exchange_error_body(const struct exchange *ex, int status, const char *code, const char *msg,
			char *out, size_t outlen)
{
	return exchange_error_body_for(ex->provider, status, code, msg, out, outlen);
}

int exchange_error_response(enum provider_id provider, const char *path, const char *origin, int status,
			    const char *code, const char *msg, char *out, size_t outlen)
{
	char body[1024];
	int blen;
	if (provider_webapp(provider))
		return webapp_refusal(provider_webapp(provider), path, origin, status, code, msg, out, outlen);
	blen = exchange_error_body_for(provider, status, code, msg, body, sizeof(body));
	int n = snprintf(out, outlen,
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			 "Content-Length: %d\r\nConnection: close\r\nX-Vigil-Error: %s\r\n%s\r\n%s",
			 status, exchange_status_text(status), blen, code,
			 status == 503 ? "Retry-After: 1\r\n" : "", body);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

void exchange_name_refused(struct exchange *ex, const struct http_request *req)
{
	struct inspect_scratch *scratch = conn_scratch(ex);

	set_method_path(ex, req);
	/* Refused unread, but its path still goes into the event: findings
	 * in it are replaced there like on any other request. */
	if (!scratch || inspect_head(ex, req, scratch))
		snprintf(ex->path, sizeof(ex->path), "[path withheld]");
	else if (ex->n_head_spans)
		head_event_path(ex, req);
	ex->provider = provider_identify(ex->info->sni, ex->path);
}

void exchange_refuse(struct exchange *ex, const struct http_request *req, int status, enum reason why,
		     const char *msg)
{
	exchange_name_refused(ex, req);
	ex->blocked = true;
	ex->block_status = status;
	ex->block_code = reason_name(why);
	ex->action = "block";
	ex->reason = reason_name(why);
	snprintf(ex->block_message, sizeof(ex->block_message), "%s", msg);
}

int exchange_error_body_for(enum provider_id provider, int status, const char *code, const char *msg,
			    char *out, size_t outlen)
{
	return provider_error_body(provider, status, code, msg ? msg : exchange_status_text(status), out, outlen);
}
