/* buf: the one growable buffer. Appends keep the data NUL-terminated,
 * printf-style appends grow it as needed, and a failure leaves it as it was. */
#include "check.h"

#include <errno.h>
#include <stdint.h>

#include "buf.h"

TEST(append_keeps_text_terminated_across_growth)
{
	struct buf b = { 0 };
	char chunk[100];
	memset(chunk, 'a', sizeof(chunk));
	for (int i = 0; i < 50; i++)
		CHECK(buf_append(&b, chunk, sizeof(chunk)) == 0, "append %d failed", i);
	CHECK(b.len == 5000 && b.cap > b.len && b.data[b.len] == '\0', "len %zu cap %zu", b.len, b.cap);
	CHECK(strspn(b.data, "a") == 5000, "the bytes changed on growth");
	buf_free(&b);
	CHECK(!b.data && !b.len && !b.cap, "buf_free should leave an empty buffer");
}

TEST(printf_appends_and_grows_past_the_room_it_had)
{
	struct buf b = { 0 };
	CHECK(buf_printf(&b, "%s=%d", "n", 42) == 0 && !strcmp(b.data, "n=42"), "got %s", b.data);
	/* Exactly filling, then overflowing, the room left after the first append. */
	size_t room = b.cap - b.len - 1;
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(buf_printf(&b, "%.*s", (int)room, big) == 0 && b.len == 4 + room && b.data[b.len] == '\0',
	      "exact fill: len %zu", b.len);
	CHECK(buf_printf(&b, "[%s]", big) == 0, "grow failed");
	CHECK(b.len == 4 + room + 2 + 1999 && b.data[b.len - 1] == ']' && b.data[4 + room] == '[' &&
	      strlen(b.data) == b.len, "after growth: len %zu", b.len);
	CHECK(!memcmp(b.data, "n=42", 4), "the start changed on growth");
	buf_free(&b);
}

TEST(reserve_refuses_a_size_that_overflows)
{
	struct buf b = { 0 };
	CHECK(buf_append(&b, "abc", 3) == 0, "append failed");
	CHECK(buf_reserve(&b, SIZE_MAX - 1) == -ENOMEM, "an overflowing reserve should be -ENOMEM");
	/* len + extra is SIZE_MAX exactly: only the NUL overflows. */
	CHECK(buf_reserve(&b, SIZE_MAX - 3) == -ENOMEM, "a reserve whose NUL overflows should be -ENOMEM");
	CHECK(b.len == 3 && !strcmp(b.data, "abc"), "a failed reserve changed the buffer");
	buf_free(&b);
}

TEST(a_secret_buffer_grows_and_frees_like_any_other)
{
	struct buf b = { .secret = true };
	for (int i = 0; i < 1000; i++)
		CHECK(buf_printf(&b, "%03d", i % 1000) == 0, "append %d failed", i);
	CHECK(b.len == 3000 && b.data[b.len] == '\0', "len %zu", b.len);
	CHECK(!memcmp(b.data, "000001002", 9) && !memcmp(b.data + 2997, "999", 3), "the text changed on growth");
	buf_free(&b);
	CHECK(!b.data && !b.len && !b.cap && b.secret, "buf_free should keep the secret mark for reuse");
	CHECK(buf_append(&b, "x", 1) == 0 && !strcmp(b.data, "x"), "reuse after free failed");
	buf_free(&b);
}

TEST(secret_realloc_moves_what_is_used_and_takes_null)
{
	char *p = secret_realloc(NULL, 0, 0, 64);
	CHECK(p, "no block from NULL");
	memcpy(p, "prompt text", 11);
	char *q = secret_realloc(p, 11, 64, 4096);
	CHECK(q && !memcmp(q, "prompt text", 11), "the used bytes did not move");
	/* shrinking keeps what fits */
	char *r = secret_realloc(q, 11, 4096, 6);
	CHECK(r && !memcmp(r, "prompt", 6), "shrunk block lost its start");
	secret_free(r, 6);
	secret_free(NULL, 0);
}
