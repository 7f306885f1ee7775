/* findings: the one list of finding types (what a detector can report) and
 * their stable names. Policy files, audit events, metrics and the inspector
 * all use this table, so a type has exactly one spelling everywhere. The
 * table is header-only (no state). Never add raw values here: a finding is
 * a type and a count, the value stays in the request. */
#ifndef VIGIL_FINDINGS_H
#define VIGIL_FINDINGS_H

#include <stdbool.h>
#include <string.h>
#include <strings.h>

enum finding_type {
	FINDING_EMAIL = 0,
	FINDING_PHONE,
	FINDING_CREDIT_CARD,
	FINDING_US_SSN,
	FINDING_IBAN,
	FINDING_IP_ADDRESS,
	FINDING_AWS_ACCESS_KEY,
	FINDING_AWS_SECRET_KEY,
	FINDING_GITHUB_TOKEN,
	FINDING_OPENAI_API_KEY,
	FINDING_ANTHROPIC_API_KEY,
	FINDING_SLACK_TOKEN,
	FINDING_PRIVATE_KEY,
	FINDING_JWT,
	FINDING_GOOGLE_API_KEY,
	FINDING_GITLAB_TOKEN,
	FINDING_STRIPE_KEY,
	FINDING_HUGGINGFACE_TOKEN,
	FINDING_AZURE_KEY,
	FINDING_PASSWORD_ASSIGNMENT,
	FINDING_CONNECTION_STRING,
	/* A credential in a well-known vendor format without a type of its
	 * own (npm, SendGrid, DigitalOcean, Shopify, Databricks, ...): one type,
	 * not one per vendor, because policy keeps a 64-bit mask of types and
	 * the audit event at most AUDIT_MAX_FINDING_TYPES of them. */
	FINDING_SECRET_TOKEN,
	/* A random-looking value assigned to a secret-like key (api_key,
	 * secret_key, token, requirepass, ...) in a config or code syntax. */
	FINDING_SECRET_ASSIGNMENT,
	FINDING_PROMPT_INJECTION,
	FINDING_CUSTOM,
	/* Not a detector: the body claimed to be JSON but is not. Counted so
	 * policy and audit can see it; such a body is never rewritten. */
	FINDING_INVALID_JSON,
	/* Not detectors: what the inspector could not read. OPAQUE_CONTENT is
	 * content it cannot see into (images, audio, PDFs, archives, unknown
	 * binaries, named by media type and size only); INSPECTION_LIMIT says
	 * a limit was reached (spans, candidates, nesting, decoded size), so
	 * the findings are incomplete and a redaction would be partial. */
	FINDING_OPAQUE_CONTENT,
	FINDING_INSPECTION_LIMIT,
	FINDING__COUNT
};

enum finding_class { FINDING_CLASS_PII, FINDING_CLASS_SECRET, FINDING_CLASS_OTHER };

struct finding_info {
	const char *name;
	enum finding_class cls;
};

static const struct finding_info finding_table[FINDING__COUNT] = {
	[FINDING_EMAIL]               = { "EMAIL", FINDING_CLASS_PII },
	[FINDING_PHONE]               = { "PHONE", FINDING_CLASS_PII },
	[FINDING_CREDIT_CARD]         = { "CREDIT_CARD", FINDING_CLASS_PII },
	[FINDING_US_SSN]              = { "US_SSN", FINDING_CLASS_PII },
	[FINDING_IBAN]                = { "IBAN", FINDING_CLASS_PII },
	[FINDING_IP_ADDRESS]          = { "IP_ADDRESS", FINDING_CLASS_PII },
	[FINDING_AWS_ACCESS_KEY]      = { "AWS_ACCESS_KEY", FINDING_CLASS_SECRET },
	[FINDING_AWS_SECRET_KEY]      = { "AWS_SECRET_KEY", FINDING_CLASS_SECRET },
	[FINDING_GITHUB_TOKEN]        = { "GITHUB_TOKEN", FINDING_CLASS_SECRET },
	[FINDING_OPENAI_API_KEY]      = { "OPENAI_API_KEY", FINDING_CLASS_SECRET },
	[FINDING_ANTHROPIC_API_KEY]   = { "ANTHROPIC_API_KEY", FINDING_CLASS_SECRET },
	[FINDING_SLACK_TOKEN]         = { "SLACK_TOKEN", FINDING_CLASS_SECRET },
	[FINDING_PRIVATE_KEY]         = { "PRIVATE_KEY", FINDING_CLASS_SECRET },
	[FINDING_JWT]                 = { "JWT", FINDING_CLASS_SECRET },
	[FINDING_GOOGLE_API_KEY]      = { "GOOGLE_API_KEY", FINDING_CLASS_SECRET },
	[FINDING_GITLAB_TOKEN]        = { "GITLAB_TOKEN", FINDING_CLASS_SECRET },
	[FINDING_STRIPE_KEY]          = { "STRIPE_KEY", FINDING_CLASS_SECRET },
	[FINDING_HUGGINGFACE_TOKEN]   = { "HUGGINGFACE_TOKEN", FINDING_CLASS_SECRET },
	[FINDING_AZURE_KEY]           = { "AZURE_KEY", FINDING_CLASS_SECRET },
	[FINDING_PASSWORD_ASSIGNMENT] = { "PASSWORD_ASSIGNMENT", FINDING_CLASS_SECRET },
	[FINDING_CONNECTION_STRING]   = { "CONNECTION_STRING", FINDING_CLASS_SECRET },
	[FINDING_SECRET_TOKEN]        = { "SECRET_TOKEN", FINDING_CLASS_SECRET },
	[FINDING_SECRET_ASSIGNMENT]   = { "SECRET_ASSIGNMENT", FINDING_CLASS_SECRET },
	[FINDING_PROMPT_INJECTION]    = { "PROMPT_INJECTION", FINDING_CLASS_OTHER },
	[FINDING_CUSTOM]              = { "CUSTOM", FINDING_CLASS_OTHER },
	[FINDING_INVALID_JSON]        = { "INVALID_JSON", FINDING_CLASS_OTHER },
	[FINDING_OPAQUE_CONTENT]      = { "OPAQUE_CONTENT", FINDING_CLASS_OTHER },
	[FINDING_INSPECTION_LIMIT]    = { "INSPECTION_LIMIT", FINDING_CLASS_OTHER },
};

/* Stable upper-case name ("EMAIL"); "UNKNOWN" for an out-of-range value.
 * The string is static. */
static inline const char *finding_name(enum finding_type t)
{
	return ((unsigned)t < FINDING__COUNT) ? finding_table[t].name : "UNKNOWN";
}

/* Name (case-insensitive) to type; -1 if the name is not a finding type. */
static inline int finding_from_name(const char *name)
{
	for (int i = 0; i < FINDING__COUNT; i++)
		if (name && strcasecmp(name, finding_table[i].name) == 0)
			return i;
	return -1;
}

static inline bool finding_is_secret(enum finding_type t)
{
	return (unsigned)t < FINDING__COUNT && finding_table[t].cls == FINDING_CLASS_SECRET;
}

static inline bool finding_is_pii(enum finding_type t)
{
	return (unsigned)t < FINDING__COUNT && finding_table[t].cls == FINDING_CLASS_PII;
}

#endif
