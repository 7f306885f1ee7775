/* ca_browser: puts the interception CA where browsers look. Chromium and
 * Electron apps on Linux take local trust anchors from the user's NSS
 * database (~/.pki/nssdb), Firefox from its profile's cert9.db or from the
 * enterprise policy Certificates.Install; none of them read
 * /etc/ssl/certs.
 *
 * Must never: touch a database as root (a home is its user's to shape: a
 * symlinked cert9.db must not make root write elsewhere, so certutil runs
 * with the owner's uid, gid and no supplementary groups), act on a home or
 * database not owned by its user, delete any NSS entry but CA_NSS_NICK, or
 * rewrite a policy file it cannot parse (other policies are kept as they
 * are: the file is re-serialized, never truncated to ours). */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ca_browser.h"
#include "../../agent/content/json.h"
#include "jsonw.h"
#include "ytree.h"

#define USER_UID_MIN 1000  /* Debian's UID_MIN / UID_MAX for people */
#define USER_UID_MAX 59999
#define MAX_POLICY_BYTES (1 << 20)

/* Where a user's NSS databases live, relative to the home. */
static const char *const nss_dirs[] = {
	"/.pki/nssdb",                          /* Chromium, Electron, Chrome */
	"/snap/chromium/current/.pki/nssdb",    /* Chromium as a snap */
	"/.mozilla/firefox/*",                  /* Firefox profiles */
	"/snap/firefox/common/.mozilla/firefox/*",
	NULL,
};

/* Runs certutil with argv as uid/gid, stdin from in_fd (or /dev/null),
 * output discarded. Returns its exit status or -1. */
static int certutil_as(uid_t uid, gid_t gid, const char *const argv[], int in_fd)
{
	pid_t pid;
	int status;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (null < 0 || dup2(in_fd >= 0 ? in_fd : null, 0) < 0 || dup2(null, 1) < 0 ||
		    dup2(null, 2) < 0)
			_exit(126);
		if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(126);
		execvp("certutil", (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Deletes every entry named CA_NSS_NICK (a rotated CA may have left more
 * than one). Returns how many were deleted. */
static int nss_delete(uid_t uid, gid_t gid, const char *sqldb)
{
	const char *const argv[] = { "certutil", "-D", "-d", sqldb, "-n", CA_NSS_NICK, NULL };
	int n = 0;

	while (n < 8 && certutil_as(uid, gid, argv, -1) == 0)
		n++;
	return n;
}

struct walk {
	const char *root;
	const char *cert_path; /* rooted anchor, trust only */
	FILE *manifest;        /* trust only */
	bool trust;
	int failures;
};

/* Length of root without trailing slashes: db + root_len is the path on
 * the target (as ca_rooted joins them). */
static size_t root_len(const char *root)
{
	size_t n = strlen(root);

	while (n > 0 && root[n - 1] == '/')
		n--;
	return n;
}

/* One database (db: the rooted directory holding cert9.db). */
static void nss_one(struct walk *wk, const char *db, const char *user)
{
	char sqldb[PATH_MAX + 8];
	const char *target = db + root_len(wk->root);
	struct stat st;

	if (lstat(db, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	{
		char f[PATH_MAX + 16];
		struct stat fst;

		snprintf(f, sizeof(f), "%s/cert9.db", db);
		/* Only a real database of the home's owner, never a link. */
		if (lstat(f, &fst) < 0 || !S_ISREG(fst.st_mode) || fst.st_uid != st.st_uid)
			return;
	}
	snprintf(sqldb, sizeof(sqldb), "sql:%s", db);
	if (!wk->trust) {
		if (nss_delete(st.st_uid, st.st_gid, sqldb) > 0)
			printf("removed the CA from NSS db %s (%s)\n", db, user);
		return;
	}
	nss_delete(st.st_uid, st.st_gid, sqldb);
	{
		const char *const argv[] = { "certutil", "-A", "-d", sqldb, "-n", CA_NSS_NICK, "-t", "C,,",
					     NULL };
		int fd = open(wk->cert_path, O_RDONLY | O_CLOEXEC);
		int rc = fd < 0 ? -1 : certutil_as(st.st_uid, st.st_gid, argv, fd);

		if (fd >= 0)
			close(fd);
		if (rc != 0) {
			fprintf(stderr, "vigil ca trust: NSS db %s (%s): certutil -A failed (status %d%s)\n",
				db, user, rc, rc == 127 ? ", is libnss3-tools installed?" : "");
			wk->failures++;
			return;
		}
	}
	fprintf(wk->manifest, "nssdb %s\n", *target == '/' ? target : db);
	printf("added the CA to NSS db %s (%s)\n", db, user);
}

/* Every NSS database of one user's home (rooted). */
static void nss_home(struct walk *wk, const char *home, uid_t uid, const char *user)
{
	struct stat st;

	if (lstat(home, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid)
		return;
	for (int i = 0; nss_dirs[i]; i++) {
		char pat[PATH_MAX];
		glob_t g;

		if (snprintf(pat, sizeof(pat), "%s%s", home, nss_dirs[i]) >= (int)sizeof(pat))
			continue;
		if (glob(pat, GLOB_NOSORT, NULL, &g) != 0)
			continue;
		for (size_t j = 0; j < g.gl_pathc; j++)
			nss_one(wk, g.gl_pathv[j], user);
		globfree(&g);
	}
}

/* Walks the people in root's /etc/passwd (never NSS lookups: under a
 * staging root, the target's users are what count). */
static void nss_walk(struct walk *wk)
{
	char path[PATH_MAX], home[PATH_MAX];
	struct passwd *pw;
	FILE *f;

	if (ca_rooted(path, sizeof(path), wk->root, "/etc/passwd") < 0 || !(f = fopen(path, "re")))
		return;
	while ((pw = fgetpwent(f)) != NULL) {
		if (pw->pw_uid < USER_UID_MIN || pw->pw_uid > USER_UID_MAX || pw->pw_dir[0] != '/')
			continue;
		if (ca_rooted(home, sizeof(home), wk->root, pw->pw_dir) < 0)
			continue;
		nss_home(wk, home, pw->pw_uid, pw->pw_name);
	}
	fclose(f);
}

/* ---------------- Firefox policies.json ---------------- */

/* The path to Certificates.Install inside the policy document. */
static const char *const pol_keys[] = { "policies", "Certificates", "Install" };

static bool is_scalar(const struct ynode *n, const char *s)
{
	return n->kind == YNODE_SCALAR && n->quoted && strcmp(n->str, s) == 0;
}

/* Is the pair with key k at level the next step towards Install? */
static bool on_path(const struct ynode *k, const struct ynode *v, int level)
{
	return level < 3 && is_scalar(k, pol_keys[level]) &&
	       v->kind == (level == 2 ? YNODE_SEQ : YNODE_MAP);
}

/* How many entries n (a node at level, on the path) keeps once cert is
 * removed: removal prunes containers it leaves empty. */
static size_t kept(const struct ynode *n, int level, const char *cert)
{
	size_t k = 0;

	if (level == 3) {
		for (size_t i = 0; i < n->nkids; i++)
			k += !is_scalar(n->kids[i], cert);
		return k;
	}
	for (size_t i = 0; i < ytree_map_len(n); i++) {
		const struct ynode *key = ytree_map_key(n, i), *v = ytree_map_val(n, i);
		k += on_path(key, v, level) ? kept(v, level + 1, cert) > 0 : 1;
	}
	return k;
}

static void emit_node(struct jsonw *w, const char *key, const struct ynode *n)
{
	if (n->kind == YNODE_SCALAR) {
		if (n->quoted) {
			jsonw_str(w, key, n->str);
		} else { /* a number or a literal: json_scan validated it */
			jsonw_key(w, key);
			jsonw_raw(w, n->str, strlen(n->str));
			w->need_comma = true;
		}
	} else if (n->kind == YNODE_SEQ) {
		jsonw_arr_open(w, key);
		for (size_t i = 0; i < n->nkids; i++)
			emit_node(w, NULL, n->kids[i]);
		jsonw_arr_close(w);
	} else {
		jsonw_key(w, key);
		jsonw_obj_open(w);
		for (size_t i = 0; i < ytree_map_len(n); i++)
			emit_node(w, ytree_map_key(n, i)->str, ytree_map_val(n, i));
		jsonw_obj_close(w);
	}
}

/* A fresh chain from level down to Install: [cert]. */
static void emit_fresh(struct jsonw *w, int level, const char *cert)
{
	if (level == 3) {
		jsonw_str(w, NULL, cert);
		return;
	}
	if (level == 2)
		jsonw_arr_open(w, pol_keys[level]);
	else {
		jsonw_key(w, pol_keys[level]);
		jsonw_obj_open(w);
	}
	emit_fresh(w, level + 1, cert);
	if (level == 2)
		jsonw_arr_close(w);
	else
		jsonw_obj_close(w);
}

/* n (at level, on the path) with cert added once or removed. */
static void emit_level(struct jsonw *w, const char *key, const struct ynode *n, int level,
		       const char *cert, bool add)
{
	bool found = false;

	if (level == 3) {
		jsonw_arr_open(w, key);
		for (size_t i = 0; i < n->nkids; i++)
			if (!is_scalar(n->kids[i], cert))
				emit_node(w, NULL, n->kids[i]);
		if (add)
			jsonw_str(w, NULL, cert);
		jsonw_arr_close(w);
		return;
	}
	jsonw_key(w, key);
	jsonw_obj_open(w);
	for (size_t i = 0; i < ytree_map_len(n); i++) {
		const struct ynode *k = ytree_map_key(n, i), *v = ytree_map_val(n, i);

		if (!on_path(k, v, level)) {
			emit_node(w, k->str, v);
			continue;
		}
		found = true;
		if (add || kept(v, level + 1, cert) > 0)
			emit_level(w, k->str, v, level + 1, cert, add);
	}
	if (add && !found)
		emit_fresh(w, level, cert);
	jsonw_obj_close(w);
}

/* Reads the policy file; *doc NULL when absent. 0 or -errno with a message. */
static int policy_load(const char *path, struct ynode **doc, char *err, size_t errlen)
{
	char *buf = NULL;
	ssize_t n;
	int fd, rc;

	*doc = NULL;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	buf = malloc(MAX_POLICY_BYTES + 1);
	n = buf ? read(fd, buf, MAX_POLICY_BYTES + 1) : -1;
	close(fd);
	if (n < 0 || n > MAX_POLICY_BYTES) {
		snprintf(err, errlen, "%s: unreadable or over 1 MiB", path);
		free(buf);
		return -EINVAL;
	}
	/* Strict JSON first: the YAML loader below would accept more. */
	if (json_scan(buf, (size_t)n, NULL, NULL) != 0) {
		snprintf(err, errlen, "%s: not valid JSON", path);
		free(buf);
		return -EINVAL;
	}
	rc = ytree_parse(path, buf, (size_t)n, doc, err, errlen);
	free(buf);
	if (rc == 0 && (!*doc || (*doc)->kind != YNODE_MAP)) {
		snprintf(err, errlen, "%s: not a JSON object", path);
		ytree_free(*doc);
		*doc = NULL;
		return -EINVAL;
	}
	return rc;
}

/* Adds or removes cert in the policy file. created: in (untrust) whether
 * trust created the file; out (trust) whether it did now. */
static int policy_update(const char *root, const char *cert, bool add, bool *created, char *err,
			 size_t errlen)
{
	char path[PATH_MAX];
	struct ynode *doc = NULL;
	struct ynode empty = { .kind = YNODE_MAP };
	struct jsonw w;
	int rc;

	if (ca_rooted(path, sizeof(path), root, CA_FIREFOX_POLICY) < 0)
		return -ENAMETOOLONG;
	rc = policy_load(path, &doc, err, errlen);
	if (rc < 0)
		return rc;
	if (!doc && !add)
		return 0;
	if (add)
		*created = !doc;
	if (!add && kept(doc, 0, cert) == 0 && *created) {
		ytree_free(doc);
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
		printf("removed %s\n", path);
		return 0;
	}
	jsonw_init(&w);
	emit_level(&w, NULL, doc ? doc : &empty, 0, cert, add);
	jsonw_raw(&w, "\n", 1);
	rc = w.oom ? -ENOMEM : ca_write_text(root, CA_FIREFOX_POLICY, w.out.data);
	jsonw_free(&w);
	ytree_free(doc);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	else
		printf("%s %s\n", add ? (*created ? "wrote" : "merged the CA into") : "removed the CA from",
		       path);
	return rc;
}

int ca_browser_trust(const char *root, const char *cert_abs, bool policy_created, FILE *manifest)
{
	char cert_path[PATH_MAX], err[512];
	struct walk wk = { .root = root, .cert_path = cert_path, .manifest = manifest, .trust = true };
	bool created = false;

	if (ca_rooted(cert_path, sizeof(cert_path), root, cert_abs) < 0)
		return 1;
	nss_walk(&wk);
	if (policy_update(root, cert_abs, true, &created, err, sizeof(err)) < 0) {
		/* Left as it was: Firefox keeps its other policies. */
		fprintf(stderr, "vigil ca trust: Firefox policy not changed: %s\n", err);
		wk.failures++;
	} else {
		fprintf(manifest, "firefox-policy %s\n",
			created || policy_created ? "created" : "merged");
	}
	fflush(manifest);
	return wk.failures;
}

/* Manifest-listed databases, in case their user left the passwd range. */
static void nss_manifest(struct walk *wk, const char *manifest_path, bool *policy_created)
{
	char line[PATH_MAX + 32], db[PATH_MAX];
	FILE *f = fopen(manifest_path, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(line, "firefox-policy created") == 0)
			*policy_created = true;
		else if (strncmp(line, "nssdb /", 7) == 0 &&
			 ca_rooted(db, sizeof(db), wk->root, line + 6) == 0)
			nss_one(wk, db, "from the manifest");
	}
	fclose(f);
}

int ca_browser_untrust(const char *root, const char *cert_abs, const char *manifest_path)
{
	char err[512];
	struct walk wk = { .root = root, .trust = false };
	bool created = false;

	nss_manifest(&wk, manifest_path, &created);
	nss_walk(&wk);
	if (policy_update(root, cert_abs, false, &created, err, sizeof(err)) < 0) {
		fprintf(stderr, "vigil ca untrust: Firefox policy not changed: %s\n", err);
		wk.failures++;
	}
	return wk.failures;
}
