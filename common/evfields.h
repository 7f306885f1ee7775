/* evfields: the audit event's fields, written once.
 *
 * Owns the list every encoding of an event is generated from or checked
 * against. Generated from it: struct vigil_event and its mapping to and
 * from the protoc-c Vigil__Audit__Event (common/evcodec.c); the JSON line
 * (its key order IS the order of this list, part of CONTRACT.md); the
 * agent's struct audit_event and its copy into the codec's form
 * (agent/audit/audit.c); which fields the export takes from the stored raw event
 * (collector/export.c). Checked against it: audit.proto, by the build
 * (common/evfields_check.c runs evcodec_fields_check() on protoc-c's
 * descriptor: a field on one side only, or with another number or type,
 * fails make); the stores' columns, readers and the export, by test_store
 * (every listed field goes agent event -> store -> export JSON unchanged,
 * on every backend). Must never be reordered (the JSON order would change).
 *
 * Adding a field: one line here, one line in audit.proto (a number above
 * every existing one), then set it where the agent sees it. With store RAW
 * that is all: the stores carry it in the raw event and the export reads it
 * from there. With store COL (a column of its own, for filters and
 * queries), also the column in store_sqlite.c / store_clickhouse.c, struct
 * store_event and the copies in collector/chain.c and export.c;
 * test_store fails until every one of them is there.
 *
 * X(name, proto number, kind, json, store, origin)
 *   kind  (C type / proto type): STR const char * / string (NULL and "" both
 *         absent); U32 uint32_t / uint32; U64 uint64_t / uint64; I32 int32_t /
 *         int32; I64 int64_t / int64; S64 int64_t / sint64 (-1 = unknown);
 *         BOOL; DOUBLE; FINDINGS const struct vigil_finding *name plus
 *         size_t n_name / repeated Finding; HASH uint8_t[32] / bytes.
 *   json: NONE not written; TIME RFC 3339 "time"; STR; U64; OPT integer or
 *         null when < 0; NZ integer or null when 0; SCORE number or null
 *         when < 0; BOOL; FINDINGS [{"type","count"}]; GAP only on gap
 *         events (kind gap or gap_count set); OMIT only when set; HEX.
 *   store: COL a column of its own in the stores; RAW only in raw.
 *   origin: EV set by the code that saw the exchange (a member of the
 *         agent's struct audit_event, agent/audit/audit.h); STAMP set by
 *         audit_emit itself (time, ids, sequence, chain).
 */
#ifndef VIGIL_EVFIELDS_H
#define VIGIL_EVFIELDS_H

#define EVFIELDS(X)                                                                             \
	X(schema_version, 1, U32, NONE, RAW, STAMP)  /* 0 on encode = current */                \
	X(time_us, 2, I64, TIME, COL, STAMP)  /* unix microseconds */                           \
	X(event_id, 3, STR, STR, COL, STAMP)  /* UUID */                                        \
	X(agent_id, 4, STR, STR, COL, STAMP)                                                    \
	X(boot_id, 5, STR, STR, COL, STAMP)                                                     \
	X(host, 7, STR, STR, COL, STAMP)                                                        \
	X(seq, 6, U64, U64, COL, STAMP)                                                         \
	X(kind, 8, STR, STR, COL, EV)  /* request|connection|bypass|gap|... */                  \
	X(user, 9, STR, STR, COL, EV)                                                           \
	X(uid, 10, S64, OPT, COL, EV)  /* -1 = unknown */                                       \
	X(gid, 11, S64, OPT, COL, EV)                                                           \
	X(pid, 12, S64, OPT, COL, EV)                                                           \
	X(tid, 13, S64, OPT, COL, EV)                                                           \
	X(comm, 14, STR, STR, COL, EV)                                                          \
	X(exe, 15, STR, STR, COL, EV)                                                           \
	X(cgroup, 16, STR, STR, COL, EV)                                                        \
	X(container_id, 46, STR, STR, COL, EV)  /* the runtime's id from the cgroup path */     \
	X(dst_ip, 17, STR, STR, COL, EV)                                                        \
	X(dst_port, 18, U32, U64, COL, EV)                                                      \
	X(sni, 19, STR, STR, COL, EV)                                                           \
	X(provider, 20, STR, STR, COL, EV)                                                      \
	X(method, 21, STR, STR, COL, EV)                                                        \
	X(path, 22, STR, STR, COL, EV)                                                          \
	X(model, 23, STR, STR, COL, EV)                                                         \
	X(mcp_server, 55, STR, STR, COL, EV)  /* MCP: the remote host, or a stdio server's package */ \
	X(mcp_method, 50, STR, STR, COL, EV)  /* MCP (kind mcp) */                              \
	X(tool, 51, STR, STR, COL, EV)                                                          \
	X(mcp_session, 52, STR, STR, COL, EV)                                                   \
	X(tool_calls, 53, STR, STR, RAW, EV)  /* tools called in the answer: "name:count,..." */ \
	X(ws_usage, 54, STR, OMIT, RAW, EV)  /* WebSocket session: tokens per response "in/out,..." */ \
	X(parent_exe, 56, STR, STR, RAW, EV)  /* stdio MCP launch: the client that started it */ \
	X(command, 63, STR, STR, RAW, EV)  /* stdio MCP launch: its command line, secrets replaced */ \
	X(app, 60, STR, STR, RAW, EV)  /* chat web app ("chatgpt", ...), absent for APIs */         \
	X(conversation, 61, STR, STR, RAW, EV)  /* the web app's conversation id, never content */ \
	X(stream, 24, BOOL, BOOL, COL, EV)                                                      \
	X(action, 25, STR, STR, COL, EV)                                                        \
	X(rule, 26, STR, STR, COL, EV)                                                          \
	X(reason, 27, STR, STR, COL, EV)                                                        \
	X(findings, 29, FINDINGS, FINDINGS, COL, EV)  /* <= EVCODEC_MAX_FINDINGS */             \
	X(output_findings, 44, FINDINGS, FINDINGS, RAW, EV)  /* in the model's answer */        \
	X(output_redacted, 45, FINDINGS, FINDINGS, RAW, EV)  /* replaced in the answer */       \
	X(injection_score, 30, DOUBLE, SCORE, COL, EV)  /* < 0 = not computed */                \
	X(status, 31, I32, NZ, COL, EV)  /* HTTP status, 0 = none */                            \
	X(bytes_up, 32, U64, U64, COL, EV)                                                      \
	X(bytes_down, 33, U64, U64, COL, EV)                                                    \
	X(prompt_tokens, 34, S64, OPT, COL, EV)  /* -1 = unknown */                             \
	X(completion_tokens, 35, S64, OPT, COL, EV)                                             \
	X(cached_tokens, 62, S64, OPT, COL, EV)  /* of prompt_tokens, read from the provider's cache */ \
	X(latency_ms, 36, U64, U64, COL, EV)                                                    \
	X(error, 28, STR, STR, COL, EV)                                                         \
	X(policy_hash, 37, STR, STR, COL, EV)                                                   \
	X(gap_count, 38, U64, GAP, COL, EV)  /* kind gap */                                     \
	X(gap_first_seq, 39, U64, GAP, COL, EV)                                                 \
	X(gap_last_seq, 40, U64, GAP, COL, EV)                                                  \
	X(content, 43, STR, OMIT, COL, EV)  /* redacted prompt text; NULL unless policy says so */ \
	X(prev_hash, 41, HASH, HEX, COL, STAMP)                                                 \
	X(hash, 42, HASH, HEX, COL, STAMP)

#endif
