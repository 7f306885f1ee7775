/* conninfo: a redirected connection's identity and destination as audit
 * event fields and as a policy context, for every handler that audits or
 * decides it (the relay, the interceptor, explicit proxies, WebSocket
 * sessions), and what follows a refusal of the interception CA. */
#include "agent.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "audit/audit.h"
#include "policy/policy.h"
#include "providers/providers.h"

void conn_info_identity_event(const struct identity *id, struct audit_event *ev)
{
	ev->user = id->user[0] ? id->user : NULL;
	ev->uid = id->uid;
	ev->gid = id->gid;
	ev->pid = id->pid;
	ev->tid = id->tid;
	ev->comm = id->comm[0] ? id->comm : NULL;
	ev->exe = id->exe[0] ? id->exe : NULL;
	ev->cgroup = id->cgroup[0] ? id->cgroup : NULL;
	ev->container_id = id->container_id[0] ? id->container_id : NULL;
	ev->dst_ip = id->dst_ip[0] ? id->dst_ip : NULL;
	ev->dst_port = id->dst_port;
}

void conn_info_fill_event(const struct conn_info *info, struct audit_event *ev)
{
	conn_info_identity_event(&info->id, ev);
	ev->sni = info->sni[0] ? info->sni : NULL;
}

void conn_info_identity_ctx(const struct identity *id, struct policy_ctx *x)
{
	memset(x, 0, sizeof(*x));
	x->user = id->user[0] ? id->user : NULL;
	x->uid = id->uid;
	x->gid = id->gid;
	x->groups = id->groups;
	x->ngroups = (size_t)(id->ngroups > 0 ? id->ngroups : 0);
	x->exe = id->exe[0] ? id->exe : NULL;
	x->script = id->script[0] ? id->script : NULL;
	x->comm = id->comm[0] ? id->comm : NULL;
	x->cgroup = id->cgroup[0] ? id->cgroup : NULL;
	x->now = time(NULL);
}

void conn_info_policy_ctx(const struct conn_info *info, struct policy_ctx *x)
{
	conn_info_identity_ctx(&info->id, x);
	x->host = info->sni[0] ? info->sni : NULL;
	x->provider = x->host ? provider_name(provider_identify(x->host, NULL)) : NULL;
}

bool conn_info_rejected_ca(struct agent *ag, const struct conn_info *info, uint64_t *ttl_ms, char *rule,
			   size_t rulelen)
{
	struct policy *p;
	struct policy_rejca d;
	struct policy_ctx x;
	bool pass = ag->cfg->rejected_ca_passthrough;

	*ttl_ms = ag->cfg->rejected_ca_ttl_ms;
	snprintf(rule, rulelen, "on_rejected_ca");
	if (ag->policy && (p = policy_holder_get(ag->policy))) {
		conn_info_policy_ctx(info, &x);
		if (policy_eval_rejected_ca(p, &x, &d)) {
			pass = d.passthrough;
			*ttl_ms = d.ttl_ms ? d.ttl_ms : *ttl_ms;
			/* copied: the name lives in the policy, which a reload may free */
			snprintf(rule, rulelen, "%s", d.rule);
		}
		policy_unref(p);
	}
	return pass;
}
