/* evfields: the audit event's fields, written once.
 *
 * Owns the list every encoding of an event is generated from or checked
 * against: struct vigil_event, its mapping to and from the protoc-c
 * Vigil__Audit__Event (common/evcodec.c), the JSON line (its key order IS
 * the order of this list: it is part of CONTRACT.md), and which fields the
 * collector's stores keep as columns (the others come from the raw event,
 * collector/export.c). Must never: be reordered (the JSON order would
 * change), or disagree with proto/vigil/audit.proto: the build runs
 * evcodec_fields_check() (common/evfields_check.c) against the protoc-c
 * descriptor and fails on any field missing on one side, or with another
 * number or type; test_evcodec and test_store check the JSON line and the
 * stores' columns against it.
 *
 * Adding a field: one line here, one line in audit.proto (a number above
 * every existing one), and, if the stores should keep a column for it
 * (store COL), the column in store_sqlite.c / store_clickhouse.c and
 * struct store_event (test_store fails until they exist). RAW fields are
 * carried by the stored raw event and exported from it.
 *
 * X(name, proto number, kind, json, store)
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
 */
#ifndef VIGIL_EVFIELDS_H
#define VIGIL_EVFIELDS_H

#define EVFIELDS(X)                                                            \
	X(schema_version, 1, U32, NONE, RAW)   /* 0 on encode = current */          \
	X(time_us, 2, I64, TIME, COL)          /* unix microseconds */              \
	X(event_id, 3, STR, STR, COL)          /* UUID */                           \
	X(agent_id, 4, STR, STR, COL)                                               \
	X(boot_id, 5, STR, STR, COL)                                                \
	X(host, 7, STR, STR, COL)                                                   \
	X(seq, 6, U64, U64, COL)                                                    \
	X(kind, 8, STR, STR, COL)              /* request|connection|bypass|gap|... */ \
	X(user, 9, STR, STR, COL)                                                   \
	X(uid, 10, S64, OPT, COL)              /* -1 = unknown */                   \
	X(gid, 11, S64, OPT, COL)                                                   \
	X(pid, 12, S64, OPT, COL)                                                   \
	X(tid, 13, S64, OPT, COL)                                                   \
	X(comm, 14, STR, STR, COL)                                                  \
	X(exe, 15, STR, STR, COL)                                                   \
	X(cgroup, 16, STR, STR, COL)                                                \
	X(container_id, 46, STR, STR, COL)     /* the runtime's id from the cgroup path */ \
	X(dst_ip, 17, STR, STR, COL)                                                \
	X(dst_port, 18, U32, U64, COL)                                              \
	X(sni, 19, STR, STR, COL)                                                   \
	X(provider, 20, STR, STR, COL)                                              \
	X(method, 21, STR, STR, COL)                                                \
	X(path, 22, STR, STR, COL)                                                  \
	X(model, 23, STR, STR, COL)                                                 \
	X(mcp_method, 50, STR, STR, RAW)       /* MCP (kind mcp) */                 \
	X(tool, 51, STR, STR, RAW)                                                  \
	X(mcp_session, 52, STR, STR, RAW)                                           \
	X(tool_calls, 53, STR, STR, RAW)       /* tools called in the answer: "name:count,..." */ \
	X(stream, 24, BOOL, BOOL, COL)                                              \
	X(action, 25, STR, STR, COL)                                                \
	X(rule, 26, STR, STR, COL)                                                  \
	X(reason, 27, STR, STR, COL)                                                \
	X(findings, 29, FINDINGS, FINDINGS, COL)  /* <= EVCODEC_MAX_FINDINGS */     \
	X(output_findings, 44, FINDINGS, FINDINGS, RAW)  /* in the model's answer */ \
	X(output_redacted, 45, FINDINGS, FINDINGS, RAW)  /* replaced in the answer */ \
	X(injection_score, 30, DOUBLE, SCORE, COL)  /* < 0 = not computed */        \
	X(status, 31, I32, NZ, COL)            /* HTTP status, 0 = none */          \
	X(bytes_up, 32, U64, U64, COL)                                              \
	X(bytes_down, 33, U64, U64, COL)                                            \
	X(prompt_tokens, 34, S64, OPT, COL)    /* -1 = unknown */                   \
	X(completion_tokens, 35, S64, OPT, COL)                                     \
	X(latency_ms, 36, U64, U64, COL)                                            \
	X(error, 28, STR, STR, COL)                                                 \
	X(policy_hash, 37, STR, STR, COL)                                           \
	X(gap_count, 38, U64, GAP, COL)        /* kind gap */                       \
	X(gap_first_seq, 39, U64, GAP, COL)                                         \
	X(gap_last_seq, 40, U64, GAP, COL)                                          \
	X(content, 43, STR, OMIT, COL)         /* redacted prompt text; NULL unless policy says so */ \
	X(prev_hash, 41, HASH, HEX, COL)                                            \
	X(hash, 42, HASH, HEX, COL)

#endif
