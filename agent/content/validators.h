/* validators: what confirms a detector's candidate (checksums, structure,
 * word boundaries, context words, placeholders and documented examples), and
 * the small character tests the scanner shares with them. */
#ifndef VIGIL_VALIDATORS_H
#define VIGIL_VALIDATORS_H

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>

#include "content/findings.h"

static inline bool is_alnum(int c) { return isascii(c) && isalnum(c); }
static inline bool is_digit(int c) { return c >= '0' && c <= '9'; }

static inline bool prev_is(const char *t, size_t s, bool (*f)(int))
{
	return s > 0 && f((unsigned char)t[s - 1]);
}

static inline bool next_is(const char *t, size_t n, size_t e, bool (*f)(int))
{
	return e < n && f((unsigned char)t[e]);
}

static inline bool is_tokch(int c) { return is_alnum(c) || c == '_' || c == '-'; }

/* Separators inside a card number or IBAN: the printed ones, and the soft
 * line break (newline plus indentation) of a value wrapped by a PDF copy
 * or a psql table cell. */
static inline bool is_valsep(int c) { return c == ' ' || c == '-' || c == '\n' || c == '\r' || c == '\t'; }

/* The validators of content/detectors.c's table: each confirms the
 * candidate [*s, *e) of t[0..n) and may narrow it. */
bool validate_azure_jqqj(const char *t, size_t n, size_t *s, size_t *e);
bool validate_card(const char *t, size_t n, size_t *s, size_t *e);
bool validate_connstr(const char *t, size_t n, size_t *s, size_t *e);
bool validate_define_secret(const char *t, size_t n, size_t *s, size_t *e);
bool validate_email(const char *t, size_t n, size_t *s, size_t *e);
bool validate_iban(const char *t, size_t n, size_t *s, size_t *e);
bool validate_jwt(const char *t, size_t n, size_t *s, size_t *e);
bool validate_last32(const char *t, size_t n, size_t *s, size_t *e);
bool validate_last40(const char *t, size_t n, size_t *s, size_t *e);
bool validate_last_word(const char *t, size_t n, size_t *s, size_t *e);
bool validate_password(const char *t, size_t n, size_t *s, size_t *e);
bool validate_phone(const char *t, size_t n, size_t *s, size_t *e);
bool validate_secret_assign(const char *t, size_t n, size_t *s, size_t *e);
bool validate_ssn(const char *t, size_t n, size_t *s, size_t *e);
bool validate_tail(const char *t, size_t n, size_t *s, size_t *e);
bool validate_token(const char *t, size_t n, size_t *s, size_t *e);
bool validate_urlenc_secret(const char *t, size_t n, size_t *s, size_t *e);
bool validate_vendor(const char *t, size_t n, size_t *s, size_t *e);

/* One of words (NULL-terminated), exactly, caseless. */
bool val_word_is_one_of(const char *w, size_t len, const char *const *words);
/* A value made up for an example: repeated or sequential characters. */
bool val_looks_fake(const char *v, size_t n);
/* The IBAN length of the country code at cc, 0 if none. */
int val_iban_country_len(const char *cc);
/* A card- or IBAN-shaped span that its checksum rejected: no other
 * detector may claim part of it. */
bool val_rejected_claim(enum finding_type type, const char *t, size_t s, size_t e);

#endif
