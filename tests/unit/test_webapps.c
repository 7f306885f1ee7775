/* Unit tests for agent/providers/webapps.c and the app adapters (agent/webapp_*.c),
 * through the provider interface inspect.c and exchange.c use: recorded
 * shapes of each app's prompt request, answer stream and upload, and what
 * the adapter takes from them (the text the model reads, the model, the
 * conversation id), the refusal a person sees in the app, and hostile
 * ids and paths. */
#include "check.h"

#include "content/json.h"
#include "providers/providers.h"
#include "providers/webapps.h"

struct seen {
	const char *body;
	char visible[1024];   /* visible strings, '|'-joined */
	int hidden;           /* strings reported as not read by the model */
};

static int seen_cb(void *ctx, size_t off, size_t len, bool visible)
{
	struct seen *s = ctx;
	const char *q = s->body + off + len + 1;
	if (*q == ':')
		return 0;           /* a member name: values only here */
	if (!visible) {
		s->hidden++;
		return 0;
	}
	size_t l = strlen(s->visible);
	snprintf(s->visible + l, sizeof(s->visible) - l, "%s%.*s", l ? "|" : "", (int)len, s->body + off);
	return 0;
}

static int parse(const char *host, const char *path, const char *body, struct provider_info *info,
		 struct seen *s)
{
	memset(s, 0, sizeof(*s));
	s->body = body;
	return provider_parse_request(host, path, body, strlen(body), info, seen_cb, s);
}

/* Model text of one answer document (an SSE data payload) for host. */
static int answer(const char *host, const char *doc, char *out, size_t cap)
{
	struct buf b = { 0 };
	int rc = provider_response_text(provider_identify(host, NULL), doc, strlen(doc), &b);
	snprintf(out, cap, "%.*s", (int)b.len, b.data ? b.data : "");
	buf_free(&b);
	return rc;
}

/* ChatGPT's prompt, as the page sends it (trimmed of ids that do not matter). */
static const char chatgpt_prompt[] =
	"{\"action\":\"next\",\"messages\":[{\"id\":\"aaa1\",\"author\":{\"role\":\"user\"},"
	"\"create_time\":1733500000.1,\"content\":{\"content_type\":\"text\",\"parts\":[\"mail bob@example.com the plan\"]},"
	"\"metadata\":{\"attachments\":[{\"id\":\"file-Abc\",\"name\":\"plan.txt\",\"size\":120}]}}],"
	"\"conversation_id\":\"67530e1a-1b2c-800d-9e0f-112233445566\",\"parent_message_id\":\"aaa0\","
	"\"model\":\"gpt-4o\",\"timezone_offset_min\":-60,\"history_and_training_disabled\":false,"
	"\"conversation_mode\":{\"kind\":\"primary_assistant\"},\"force_paragen\":false,\"websocket_request_id\":\"w1\"}";

TEST(chatgpt_prompt_text_model_and_conversation)
{
	struct provider_info info;
	struct seen s;
	CHECK(parse("chatgpt.com", "/backend-api/conversation", chatgpt_prompt, &info, &s) == 0, "parse");
	CHECK(!strcmp(provider_name(info.provider), "chatgpt_web"), "provider %s", provider_name(info.provider));
	CHECK(!strcmp(s.visible, "mail bob@example.com the plan"), "visible: '%s'", s.visible);
	CHECK(s.hidden > 5, "the other strings are still reported for scanning (%d)", s.hidden);
	CHECK(!strcmp(info.model, "gpt-4o"), "model '%s'", info.model);
	CHECK(!strcmp(info.conversation, "67530e1a-1b2c-800d-9e0f-112233445566"), "conversation '%s'", info.conversation);
	CHECK(info.prompt && info.stream && !info.upload, "a prompt whose answer streams");
	/* the current front end's path and the old host */
	CHECK(parse("chat.openai.com:443", "/backend-api/f/conversation?x=1", chatgpt_prompt, &info, &s) == 0 &&
	      info.prompt && !strcmp(info.model, "gpt-4o"), "/backend-api/f/conversation on chat.openai.com");
	CHECK(provider_webapp(info.provider) && !strcmp(provider_webapp(info.provider)->name, "chatgpt"), "app name");
}

TEST(chatgpt_new_chat_has_no_conversation_yet)
{
	struct provider_info info;
	struct seen s;
	const char *b = "{\"action\":\"next\",\"messages\":[{\"author\":{\"role\":\"user\"},\"content\":"
			"{\"content_type\":\"multimodal_text\",\"parts\":[{\"content_type\":\"image_asset_pointer\","
			"\"asset_pointer\":\"file-service://file-X\"},\"what is this\"]}}],\"model\":\"auto\"}";
	CHECK(parse("chatgpt.com", "/backend-api/conversation", b, &info, &s) == 0, "parse");
	CHECK(!strcmp(s.visible, "what is this"), "visible '%s' (the image pointer is not text)", s.visible);
	CHECK(info.conversation[0] == 0 && !strcmp(info.model, "auto"), "conv '%s' model '%s'", info.conversation,
	      info.model);
}

TEST(chatgpt_answer_both_encodings)
{
	char out[256];
	/* whole message so far */
	CHECK(answer("chatgpt.com", "{\"message\":{\"id\":\"m\",\"author\":{\"role\":\"assistant\"},\"content\":"
		     "{\"content_type\":\"text\",\"parts\":[\"Hello there\"]},\"status\":\"in_progress\"},"
		     "\"conversation_id\":\"c\",\"error\":null}", out, sizeof(out)) == 0 &&
	      !strcmp(out, "Hello there"), "whole: '%s'", out);
	/* delta encoding: first event adds the message, then appends */
	CHECK(answer("chatgpt.com", "{\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"content\":{\"parts\":[\"He\"]}}}}",
		     out, sizeof(out)) == 0 && !strcmp(out, "He"), "add: '%s'", out);
	CHECK(answer("chatgpt.com", "{\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\"llo\"}", out,
		     sizeof(out)) == 0 && !strcmp(out, "llo"), "append: '%s'", out);
	CHECK(answer("chatgpt.com", "{\"v\":\" wor\"}", out, sizeof(out)) == 0 && !strcmp(out, " wor"), "bare v: '%s'", out);
	CHECK(answer("chatgpt.com", "{\"o\":\"patch\",\"v\":[{\"p\":\"/message/content/parts/0\",\"o\":\"append\","
		     "\"v\":\"ld\"}]}", out, sizeof(out)) == 0 && !strcmp(out, "ld"), "patch: '%s'", out);
	/* the restorer's delta fields: the app's first */
	const char *const *d = provider_stream_delta_paths(provider_identify("chatgpt.com", NULL));
	CHECK(d && !strcmp(d[0], "v"), "delta paths");
	CHECK(!provider_stream_delta_paths(provider_identify("api.openai.com", NULL)), "an API has none of its own");
	CHECK(answer("chatgpt.com", "not json", out, sizeof(out)) == -EINVAL, "not JSON");
	/* a new chat learns its id from the answer */
	enum provider_id p = provider_identify("chatgpt.com", NULL);
	char conv[PROVIDER_CONV_MAX] = "";
	const char *first = "{\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"m\"},\"conversation_id\":\"6753-new\"}}";
	provider_answer_conversation(p, "{\"v\":\"x\"}", strlen("{\"v\":\"x\"}"), conv, sizeof(conv));
	CHECK(conv[0] == 0, "an id from nowhere: '%s'", conv);
	provider_answer_conversation(p, first, strlen(first), conv, sizeof(conv));
	CHECK(!strcmp(conv, "6753-new"), "id from the answer: '%s'", conv);
	provider_answer_conversation(p, "{\"conversation_id\":\"other\"}", strlen("{\"conversation_id\":\"other\"}"), conv, sizeof(conv));
	CHECK(!strcmp(conv, "6753-new"), "a known id is not replaced: '%s'", conv);
	conv[0] = 0;
	provider_answer_conversation(p, "{\"conversation_id\":\"a b\"}", strlen("{\"conversation_id\":\"a b\"}"), conv, sizeof(conv));
	CHECK(conv[0] == 0, "a hostile id: '%s'", conv);
	provider_answer_conversation(provider_identify("api.openai.com", NULL), "{\"conversation_id\":\"x\"}", strlen("{\"conversation_id\":\"x\"}"), conv,
				     sizeof(conv));
	CHECK(conv[0] == 0, "an API's answer names no conversation");
}

static const char claude_prompt[] =
	"{\"prompt\":\"call +1 415 555 0100 about it\",\"parent_message_uuid\":\"00000000-0000-4000-8000-000000000000\","
	"\"timezone\":\"Europe/Paris\",\"personalized_styles\":[{\"type\":\"default\",\"key\":\"Default\"}],"
	"\"locale\":\"en-US\",\"tools\":[],\"attachments\":[{\"file_name\":\"notes.txt\",\"file_type\":\"text/plain\","
	"\"file_size\":24,\"extracted_content\":\"AKIA in here somewhere\"}],\"files\":[],\"sync_sources\":[],"
	"\"rendering_mode\":\"messages\",\"model\":\"claude-sonnet-4-20250514\"}";

TEST(claude_prompt_attachments_and_conversation_from_path)
{
	struct provider_info info;
	struct seen s;
	CHECK(parse("claude.ai", "/api/organizations/0f1e2d3c-aaaa-bbbb-cccc-001122334455/chat_conversations/"
		    "9a8b7c6d-1111-2222-3333-445566778899/completion", claude_prompt, &info, &s) == 0, "parse");
	CHECK(!strcmp(provider_name(info.provider), "claude_web"), "provider %s", provider_name(info.provider));
	CHECK(!strcmp(s.visible, "call +1 415 555 0100 about it|notes.txt|AKIA in here somewhere"), "visible '%s'",
	      s.visible);
	CHECK(!strcmp(info.conversation, "9a8b7c6d-1111-2222-3333-445566778899"), "conversation '%s'", info.conversation);
	CHECK(!strcmp(info.model, "claude-sonnet-4-20250514") && info.prompt, "model '%s'", info.model);
}

TEST(claude_answer_shapes)
{
	char out[128];
	CHECK(answer("claude.ai", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
		     "\"text\":\"Sure\"}}", out, sizeof(out)) == 0 && !strcmp(out, "Sure"), "messages shape '%s'", out);
	CHECK(answer("claude.ai", "{\"type\":\"completion\",\"id\":\"x\",\"completion\":\" thing\",\"stop_reason\":null,"
		     "\"model\":\"claude-2.1\"}", out, sizeof(out)) == 0 && !strcmp(out, " thing"), "completion shape '%s'",
	      out);
}

TEST(uploads_are_recognised)
{
	struct provider_info info;
	struct seen s;
	CHECK(parse("claude.ai", "/api/0f1e2d3c/upload", "", &info, &s) == 0 && info.upload && !info.prompt, "claude upload");
	CHECK(parse("claude.ai", "/api/organizations/0f1e2d3c/upload", "", &info, &s) == 0 && info.upload, "claude org upload");
	CHECK(parse("files.oaiusercontent.com", "/file-AbC123?se=2024&sig=x", "plain text", &info, &s) == 0 &&
	      info.upload && !strcmp(provider_name(info.provider), "chatgpt_web"), "chatgpt PUT upload");
	CHECK(parse("chatgpt.com", "/backend-api/files", "{\"file_name\":\"a.txt\",\"file_size\":3,\"use_case\":\"my_files\"}",
		    &info, &s) == 0 && info.upload && s.visible[0] == 0 && s.hidden == 2, "chatgpt upload request");
	CHECK(parse("chat.deepseek.com", "/api/v0/file/upload_file", "", &info, &s) == 0 && info.upload, "deepseek");
}

TEST(other_apps_prompts)
{
	struct provider_info info;
	struct seen s;
	CHECK(parse("chat.deepseek.com", "/api/v0/chat/completion",
		    "{\"chat_session_id\":\"5c3e-77\",\"parent_message_id\":null,\"prompt\":\"hi there\","
		    "\"ref_file_ids\":[],\"thinking_enabled\":false,\"search_enabled\":false}", &info, &s) == 0, "deepseek");
	CHECK(!strcmp(s.visible, "hi there") && !strcmp(info.conversation, "5c3e-77") && info.prompt, "deepseek '%s' '%s'",
	      s.visible, info.conversation);
	CHECK(parse("www.perplexity.ai", "/rest/sse/perplexity_ask",
		    "{\"query_str\":\"q?\",\"params\":{\"model_preference\":\"pplx_pro\",\"last_backend_uuid\":\"b-1\","
		    "\"frontend_uuid\":\"f\"}}", &info, &s) == 0, "perplexity");
	CHECK(!strcmp(s.visible, "q?") && !strcmp(info.model, "pplx_pro") && !strcmp(info.conversation, "b-1"),
	      "perplexity '%s' '%s' '%s'", s.visible, info.model, info.conversation);
	CHECK(parse("chat.mistral.ai", "/api/chat", "{\"chatId\":\"c9\",\"messageInput\":\"bonjour\",\"model\":"
		    "\"mistral-large-latest\",\"mode\":\"append\"}", &info, &s) == 0 && !strcmp(s.visible, "bonjour") &&
	      !strcmp(info.model, "mistral-large-latest") && !strcmp(info.conversation, "c9"), "mistral '%s'", s.visible);
	CHECK(parse("gemini.google.com", "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate?bl=x",
		    "f.req=%5Bnull%5D&at=x", &info, &s) == 0 && info.prompt && !info.is_json &&
	      !strcmp(provider_name(info.provider), "gemini_web"), "gemini: a form body, inspected as text");
	CHECK(provider_identify("gemini.google.com", NULL) != PROVIDER_GEMINI, "the web app is not the API");
}

TEST(other_requests_on_an_app_host_are_scanned_not_read)
{
	struct provider_info info;
	struct seen s;
	CHECK(parse("chatgpt.com", "/backend-api/conversation/67530e1a/title", "{\"title\":\"secret plan\"}", &info, &s) == 0,
	      "parse");
	CHECK(s.visible[0] == 0 && s.hidden == 1 && !info.prompt && !info.upload, "a title is scanned, not read");
	CHECK(provider_identify("chatgpt.com.evil.example", NULL) < PROVIDER_WEBAPP &&
	      provider_identify("evilchatgpt.com", NULL) < PROVIDER_WEBAPP &&
	      provider_identify("sub.claude.ai", NULL) < PROVIDER_WEBAPP, "look-alike hosts are not the app");
	CHECK(provider_identify("ChatGPT.COM.", NULL) >= PROVIDER_WEBAPP, "case and trailing dot");
}

TEST(hostile_ids_never_reach_the_event)
{
	struct provider_info info;
	struct seen s;
	char big[200];
	/* a conversation "id" carrying text, a quote, or too long */
	CHECK(parse("chatgpt.com", "/backend-api/conversation", "{\"conversation_id\":\"bob@example.com\\\"x\"}", &info,
		    &s) == 0 && info.conversation[0] == 0, "an id with a quote kept: '%s'", info.conversation);
	CHECK(parse("chatgpt.com", "/backend-api/conversation", "{\"conversation_id\":\"a b\"}", &info, &s) == 0 &&
	      info.conversation[0] == 0, "an id with a space kept");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	char body[300];
	snprintf(body, sizeof(body), "{\"conversation_id\":\"%s\"}", big);
	CHECK(parse("chatgpt.com", "/backend-api/conversation", body, &info, &s) == 0 && info.conversation[0] == 0,
	      "an overlong id kept (truncated ids would collide)");
	CHECK(parse("claude.ai", "/api/organizations/o/chat_conversations/%2e%2e/completion", claude_prompt, &info, &s) == 0 &&
	      info.conversation[0] == 0 && info.prompt, "a percent-encoded path segment kept as an id");
	/* paths that are almost routes */
	CHECK(!webapp_route(provider_webapp(info.provider), "/api/organizations/o/chat_conversations//completion", NULL, 0),
	      "an empty segment matched");
	CHECK(!webapp_route(provider_webapp(info.provider), "/api/organizations/o/chat_conversations/c/completion/x", NULL, 0),
	      "a longer path matched");
	CHECK(webapp_route(provider_webapp(info.provider), "/api/organizations/o/chat_conversations/c/completion/", NULL, 0),
	      "a trailing slash");
}

TEST(refusal_is_an_answer_the_app_shows)
{
	char out[4096];
	size_t app;
	const struct webapp *a = webapp_by_host("chatgpt.com", 11, &app);
	CHECK(a, "chatgpt.com in the catalog");
	int n = webapp_refusal(a, "/backend-api/conversation", NULL, 403, "policy_blocked", "no \"keys\"\n please", out,
			       sizeof(out));
	CHECK(n > 0 && !strncmp(out, "HTTP/1.1 200 OK\r\n", 17), "a prompt's refusal is a 200 stream: %.40s", out);
	CHECK(strstr(out, "text/event-stream") && strstr(out, "\"parts\":[\"Vigil: no \\\"keys\\\"\\n please\"]") &&
	      strstr(out, "data: [DONE]"), "ChatGPT's stream shape with the message escaped: %s", out);
	/* Content-Length is the body's */
	const char *body = strstr(out, "\r\n\r\n") + 4;
	CHECK(strstr(out, "Content-Length: ") && (size_t)atoi(strstr(out, "Content-Length: ") + 16) == strlen(body),
	      "Content-Length");
	/* the data: payload is JSON */
	const char *d = strstr(body, "data: ") + 6;
	CHECK(json_scan(d, (size_t)(strchr(d, '\n') - d), NULL, NULL) == 0, "payload is not JSON");
	/* an upload refused: the app's error with the agent's status */
	n = webapp_refusal(a, "/backend-api/files", "https://chatgpt.com", 403, "policy_blocked", "a secret", out, sizeof(out));
	CHECK(n > 0 && !strncmp(out, "HTTP/1.1 403 ", 13) && strstr(out, "{\"detail\":\"Vigil: a secret\"}"), "%s", out);
	CHECK(strstr(out, "Access-Control-Allow-Origin: https://chatgpt.com\r\n"), "the app's page may read its refusal: %s", out);
	/* Claude: the Messages stream shape */
	a = webapp_by_host("claude.ai", 9, NULL);
	n = webapp_refusal(a, "/api/organizations/o/chat_conversations/c/completion", "https://evil.example", 403, "policy_warning", "x", out,
			   sizeof(out));
	CHECK(n > 0 && strstr(out, "event: content_block_delta") && strstr(out, "\"text\":\"Vigil: x\"") &&
	      strstr(out, "event: message_stop"), "%s", out);
	CHECK(!strstr(out, "Access-Control"), "another origin is never allowed: %s", out);
	/* Gemini has no stream we speak: its error */
	a = webapp_by_host("gemini.google.com", 17, NULL);
	n = webapp_refusal(a, "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate", NULL, 403, "b", "x", out,
			   sizeof(out));
	CHECK(n > 0 && !strncmp(out, "HTTP/1.1 403 ", 13), "%s", out);
	CHECK(webapp_refusal(a, "/", NULL, 403, "b", "x", out, 64) == -ENOSPC, "a short buffer");
}

TEST(every_app_is_complete)
{
	size_t n;
	const struct webapp *const *all = webapp_all(&n);
	CHECK(n >= 7 && n <= PROVIDER_MAX_WEBAPPS, "%zu apps", n);
	for (size_t i = 0; i < n; i++) {
		const struct webapp *a = all[i];
		CHECK(a->name && a->provider && a->hosts && a->hosts[0] && a->routes && a->answer_delta &&
		      a->answer_whole && a->error_json && strstr(a->error_json, "{MSG}"), "app %zu incomplete", i);
		CHECK(!a->refusal_stream || (a->refusal_type && strstr(a->refusal_stream, "{MSG}")), "%s stream", a->name);
		CHECK(provider_known(a->provider) && !strcmp(provider_name((enum provider_id)(PROVIDER_WEBAPP + i)), a->provider),
		      "%s provider name", a->name);
		for (const char *const *h = a->hosts; *h; h++) {
			size_t k;
			CHECK(webapp_by_host(*h, strlen(*h), &k) == a && k == i, "host %s claimed twice", *h);
		}
	}
	CHECK(provider_known("openai") && !provider_known("chatgpt") && !provider_known(""), "provider_known");
}
