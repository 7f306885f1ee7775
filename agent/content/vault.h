/* vault: reversible tokens ([[VGL_EMAIL_7f3a2b]]) and the original values
 * they stand for, so a value the model was never sent can be put back in
 * its answer (detok.h).
 *
 * A vault belongs to one owner: a user and a program (uid, executable and
 * interpreted script, from the kernel's identity of the connection), not
 * to one connection, so a conversation that reconnects still gets its
 * values back, and another user or program never gets them. The store
 * keeps at most max_entries values per owner, each for ttl after its last
 * use; the least recently used value goes first when a vault is full.
 *
 * Owns: the only copies of tokenized values, in memory. Every value is
 * wiped (OPENSSL_cleanse) when it expires, is evicted, or its vault or
 * the store is freed; lookups copy the value out under the vault's lock,
 * so no pointer into the vault ever escapes. Never logs.
 *
 * Threads: every function may be called from any thread; a store lock
 * guards the set of vaults, a lock per vault its entries (taken in that
 * order). Nothing here assumes one thread per connection: an event loop
 * can call the same functions.
 */
#ifndef VIGIL_VAULT_H
#define VIGIL_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "content/findings.h"
#include "content/json.h"

/* "[[VGL_" TYPE "_" 6 hex "]]": at most 6 + 19 + 1 + 6 + 2 bytes */
#define VAULT_TOKEN_MAX 40
#define VAULT_TOKEN_PREFIX "[[VGL_"

#define VAULT_DEFAULT_TTL_MS (3600u * 1000u)
#define VAULT_DEFAULT_MAX_ENTRIES 4096
/* Owners kept at once; past it the vault unused for longest is dropped. */
#define VAULT_STORE_MAX_OWNERS 4096

struct vault;
struct vault_store;

/* Monotonic milliseconds. */
typedef uint64_t (*vault_clock_fn)(void);

/* A vault of its own, outside any store (tests, tools): key (borrowed,
 * copied; NULL draws a random one) keys the token derivation; max_entries
 * bounds it (0 = VAULT_DEFAULT_MAX_ENTRIES; a full vault evicts its least
 * recently used value); values never expire. NULL on ENOMEM. */
struct vault *vault_new(const unsigned char *key, size_t keylen, size_t max_entries);
/* Drops the caller's reference; the last one wipes every value. NULL ok. */
void vault_free(struct vault *v);

/* Token for value (same value and type -> same token while it is kept).
 * tok receives a NUL-terminated token of at most VAULT_TOKEN_MAX bytes.
 * Returns 0, -ENOSPC (no distinct token could be derived), -ENOMEM, -EIO.
 * The value is copied. */
int vault_tokenize(struct vault *v, enum finding_type type, const char *value, size_t n,
		   char tok[VAULT_TOKEN_MAX + 1]);

/* Appends the original value of tok to out. Returns 1 if restored, 0 if
 * the token is unknown or expired (out untouched), -ENOMEM. */
int vault_lookup(struct vault *v, const char *tok, size_t toklen, struct buf *out);
/* Values kept (expired ones not yet swept included). */
size_t vault_count(struct vault *v);

/* HMAC-SHA256(key, type name | 0 | salt | value): the vault's token
 * derivation, also used by redact.c for keyed hashes. 0, -ENOMEM, -EIO. */
int vault_keyed_digest(const unsigned char *key, size_t keylen, enum finding_type type,
		       uint32_t salt, const char *value, size_t n, unsigned char out[32]);

/* A store of per-owner vaults. ttl_ms 0 = VAULT_DEFAULT_TTL_MS,
 * max_entries 0 = VAULT_DEFAULT_MAX_ENTRIES; clock NULL = CLOCK_MONOTONIC.
 * NULL on ENOMEM. */
struct vault_store *vault_store_new(uint64_t ttl_ms, size_t max_entries, vault_clock_fn clock);
/* Wipes and frees every vault the store holds; vaults still referenced by
 * a caller are emptied now and freed with their last reference. NULL ok. */
void vault_store_free(struct vault_store *vs);

/* The vault of owner (any bytes, e.g. "uid\0exe\0script"), created empty
 * if absent. Returns a new reference (vault_free it), NULL on ENOMEM. */
struct vault *vault_store_get(struct vault_store *vs, const void *owner, size_t owner_len);

/* Wipes values unused for ttl and drops vaults left empty and unused.
 * Returns the number of values wiped. Cheap when nothing expired: call it
 * from a periodic tick. */
size_t vault_store_sweep(struct vault_store *vs);
/* Owners currently held. */
size_t vault_store_owners(struct vault_store *vs);

#endif
