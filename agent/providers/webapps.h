/* webapps: the chat web apps people type into (chatgpt.com, claude.ai,
 * gemini.google.com, ...), as providers.
 *
 * Owns: the catalog of each app's hosts (its page host and the upload and
 * auxiliary hosts it sends user content to), and, per app, which request
 * paths carry the user's prompt and attachments, where the text, model and
 * conversation id are in them, where the answer's text is in its stream,
 * and how a refusal is shown inside the app. Each app is one data file
 * (agent/webapp_<name>.c) behind the table in webapps.c: adding an app is
 * that file and one table line; a changed format is a changed path list.
 *
 * Never allocates, never logs content, never reads past the lengths given.
 * Layer: providers/.
 */
#ifndef VIGIL_WEBAPPS_H
#define VIGIL_WEBAPPS_H

#include <stdbool.h>
#include <stddef.h>

/* One kind of request of an app. path: '/'-separated segments where "*"
 * matches any one segment, "x*" one segment starting with x, "{conv}" one segment that is the conversation
 * id, and a final "**" any rest (the query string is never matched). */
struct webapp_route {
	const char *path;
	const char *const *text;     /* JSON paths of what the model reads (NULL-terminated) */
	const char *model;           /* JSON path of the model name, or NULL */
	const char *conv;            /* JSON path of the conversation id, or NULL */
	bool prompt;                 /* the answer to it is the model's reply stream */
	bool upload;                 /* it carries a file the user attached */
};

struct webapp {
	const char *name;            /* "chatgpt": the event's app */
	const char *provider;        /* "chatgpt_web": the event's and policy's provider */
	const char *const *hosts;    /* exact host names, NULL-terminated */
	const struct webapp_route *routes;  /* terminated by a route with path NULL */
	/* answer stream: fields carrying a piece of the reply (a delta); and
	 * fields repeating the whole reply so far (scanned, not restored
	 * piecewise) */
	const char *const *answer_delta;
	const char *const *answer_whole;
	/* where the answer names the conversation (a new chat gets its id
	 * only there), or NULL */
	const char *const *answer_conv;
	/* a refused prompt: the reply stream whose text is the policy message
	 * ("{MSG}" stands for it, a JSON string), sent with status 200 and
	 * this content type so the app displays it as an answer; NULL = the
	 * app has no such stream we can speak, use error_json */
	const char *refusal_stream;
	const char *refusal_type;
	/* any other refused request: the app's error body ("{MSG}" as above),
	 * with the agent's status */
	const char *error_json;
	const char *notes;           /* how far the adapter goes (for the README) */
};

/* The catalog, in table order; n is set to its size. */
const struct webapp *const *webapp_all(size_t *n);

/* The app whose catalog holds host[0..hlen) (case ignored, no port, no
 * trailing dot), or NULL; *index is set to its table index. */
const struct webapp *webapp_by_host(const char *host, size_t hlen, size_t *index);

/* The route of path (query ignored), or NULL. conv (cap bytes, may be
 * NULL) receives a "{conv}" segment when it is a plausible id. */
const struct webapp_route *webapp_route(const struct webapp *a, const char *path, char *conv,
					size_t cap);

/* Copies an id (conversation, file) of at most cap-1 bytes of
 * [A-Za-z0-9_.:-] into dst; anything else gives "" (an id that is not one
 * never reaches an event). */
void webapp_copy_id(char *dst, size_t cap, const char *src, size_t len);

/* The whole HTTP/1.1 response refusing a request to app a: for a prompt
 * route with a refusal_stream, status 200 and the stream; otherwise
 * status and error_json. msg: the policy message (any bytes; JSON-escaped
 * here). origin: the request's Origin (may be NULL): when it is one of the
 * app's own hosts (its page uploading to its upload host), the refusal
 * allows that origin to read it, so the page can show why. Returns the
 * length, or -ENOSPC. */
int webapp_refusal(const struct webapp *a, const char *path, const char *origin, int status,
		   const char *code, const char *msg, char *out, size_t outlen);

#endif
