/* eval: the C side of `make eval`. Reads one JSON string literal per line
 * on stdin (the text to inspect), runs inspect_text on its decoded bytes
 * and prints one line per input: the injection score, then TYPE:start:end
 * for every finding (byte offsets into the decoded text). tests/eval/run.py
 * does the scoring. Reads only stdin; prints no values. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content/inspect.h"
#include "content/json.h"

int main(void)
{
	char err[256];
	struct inspector *ins = inspector_new(NULL, 0, err, sizeof(err));
	if (!ins) {
		fprintf(stderr, "eval: %s\n", err);
		return 2;
	}
	struct inspect_scratch *s = inspect_scratch_new(ins);
	struct inspect_result r;
	struct json_text t = { 0 };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	inspect_result_init(&r);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n < 2 || line[0] != '"' || line[n - 1] != '"' ||
		    json_decode(line + 1, (size_t)n - 2, &t) != 0) {
			printf("ERR\n");
			continue;
		}
		if (inspect_text(s, t.data, t.len, &r) != 0) {
			printf("ERR\n");
			continue;
		}
		printf("%.3f", r.injection_score);
		for (size_t i = 0; i < r.nspans; i++)
			printf(" %s:%zu:%zu", finding_name(r.spans[i].type), r.spans[i].start, r.spans[i].end);
		printf("\n");
		fflush(stdout);
	}
	free(line);
	json_text_free(&t);
	inspect_result_free(&r);
	inspect_scratch_free(s);
	inspector_unref(ins);
	return 0;
}
