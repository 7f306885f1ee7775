/* validators: the checks that turn a pattern match into a finding
 * (see content/validators.h). Never logs or keeps the values it reads. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem, memrchr: also when built outside the Makefile */
#endif
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/inspect.h"
#include "content/validators.h"

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

int val_iban_country_len(const char *cc)
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
	if ((size_t)val_iban_country_len(c) != k)
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
bool val_looks_fake(const char *v, size_t n)
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
bool validate_azure_jqqj(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum) || next_is(t, n, *e, is_alnum))
		return false;
	return !val_looks_fake(t + *s, 52);
}

/* token-like values: not glued to other word characters */
bool validate_token(const char *t, size_t n, size_t *s, size_t *e)
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
	return !val_looks_fake(t + b, *e - b);
}

bool validate_tail(const char *t, size_t n, size_t *s, size_t *e)
{
	(void)s;
	return !next_is(t, n, *e, is_alnum);
}

bool validate_email(const char *t, size_t n, size_t *s, size_t *e)
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
bool val_word_is_one_of(const char *w, size_t len, const char *const *words)
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
	return val_word_is_one_of(t + i, we - i, words);
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

bool validate_card(const char *t, size_t n, size_t *s, size_t *e)
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
		if (val_rejected_claim(FINDING_CREDIT_CARD, t, st, *e))
			return false;
	}
	return false;
}

bool validate_ssn(const char *t, size_t n, size_t *s, size_t *e)
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

bool validate_iban(const char *t, size_t n, size_t *s, size_t *e)
{
	if (prev_is(t, *s, is_alnum))
		return false;
	int want = val_iban_country_len(t + *s);
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
	return val_word_is_one_of(t + i, we - i, words);
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

bool validate_phone(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_jwt(const char *t, size_t n, size_t *s, size_t *e)
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

bool validate_last40(const char *t, size_t n, size_t *s, size_t *e)
{
	if (*e - *s < 40 || next_is(t, n, *e, is_alnum) || (*e < n && (t[*e] == '/' || t[*e] == '+')))
		return false;
	*s = *e - 40;
	return !doc_example(t + *s, 40) && !val_looks_fake(t + *s, 40);
}

bool validate_last32(const char *t, size_t n, size_t *s, size_t *e)
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

/* The last word of key k[0..l): its start, *end its end, closing quotes
 * left out; a camelCase hump starts a word (db_password_min_length ->
 * length, secretKeyId -> Id). */
static size_t last_word(const char *k, size_t l, size_t *end)
{
	size_t e = l;
	while (e > 0 && strchr("\"')", k[e - 1]))
		e--;
	size_t b = e;
	while (b > 0 && isalpha((unsigned char)k[b - 1]) &&
	       !(b < e && isupper((unsigned char)k[b]) && islower((unsigned char)k[b - 1])))
		b--;
	*end = e;
	return b;
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
	size_t e, b = last_word(k, l, &e);
	if (b == 0)
		return true;
	for (int i = 0; props[i]; i++)
		if (strlen(props[i]) == e - b && !strncasecmp(k + b, props[i], e - b))
			return false;
	return true;
}

/* password = value: the span is the value only */
bool validate_password(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_last_word(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_connstr(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_vendor(const char *t, size_t n, size_t *s, size_t *e)
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
		if (val_looks_fake(t + *s, *e - *s))
			return false;                  /* AC123456...: a test SID */
		b = *s + 4;
	}
	/* a webhook URL's last segment, a Telegram bot's secret after ':' */
	const char *sl = memrchr(t + b, '/', *e - b);
	if (sl)
		b = (size_t)(sl - t) + 1;
	return *e - b >= 8 && !val_looks_fake(t + b, *e - b);
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
	size_t e, b = last_word(k, l, &e);
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

bool validate_secret_assign(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_urlenc_secret(const char *t, size_t n, size_t *s, size_t *e)
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
bool validate_define_secret(const char *t, size_t n, size_t *s, size_t *e)
{
	return validate_last_word(t, n, s, e) && random_value(t + *s, *e - *s) && !doc_example(t + *s, *e - *s);
}

/* A card- or IBAN-shaped span that its checksum rejected: 13-19 digits
 * in one run or in even groups, or a known country code at its length.
 * What a validator rightly rejected is still not a phone number or an
 * SSN, so no other detector may claim part of it. */
bool val_rejected_claim(enum finding_type type, const char *t, size_t s, size_t e)
{
	if (type == FINDING_IBAN)
		return e - s >= 15 && val_iban_country_len(t + s) != 0;
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
