/* ca: `vigil ca init|trust|untrust`, the interception CA's life cycle on a
 * workstation.
 *
 * init creates the CA key and certificate (a self-signed root, or an
 * intermediate name-constrained to the LLM provider domains when given a
 * parent); trust installs the trust anchor in the system store, writes
 * the environment files for runtimes that ignore it (Python requests,
 * Node) for login shells, user sessions and, through systemd
 * DefaultEnvironment= drop-ins, services; then the browsers' stores
 * (ca_browser.c); untrust removes exactly what trust added.
 *
 * Must never: overwrite an existing CA key without --force, leave a key
 * readable by anyone but root even briefly (pki_key_save), remove files it
 * did not install (untrust only touches its fixed list of paths and the
 * directories its manifest says trust created), or run
 * update-ca-certificates or systemctl against a staging root other than /
 * (nor systemctl where systemd is not PID 1). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "ca_browser.h"
#include "cli.h"
#include "osutil.h"
#include "pki.h"

#define DEFAULT_CA_DIR "/etc/vigil/ca"
#define DEFAULT_CA_NAME "Vigil Interception CA"
#define DEFAULT_SUB_CA_NAME "Vigil Interception Intermediate CA"
#define DEFAULT_CA_DAYS 730
#define CA_CERT_FILE "intercept.crt"
#define CA_KEY_FILE "intercept.key"

/* What trust installs, as absolute paths on the target system. untrust
 * removes these and nothing else. */
#define TRUST_CERT "/usr/local/share/ca-certificates/vigil-intercept.crt"
#define TRUST_ENV_SH "/etc/vigil/ca-env.sh"
#define TRUST_ENV_D "/etc/environment.d/90-vigil.conf"
#define TRUST_PROFILE "/etc/profile.d/vigil-ca.sh"
#define TRUST_MANIFEST "/etc/vigil/ca-trust.manifest"
/* systemd manager defaults: every service (and, for user.conf.d, every
 * user-manager unit) started after the manager reads them gets the
 * variables, which login shells alone never reach. */
#define TRUST_SYSTEMD_SYS "/etc/systemd/system.conf.d/90-vigil-ca.conf"
#define TRUST_SYSTEMD_USER "/etc/systemd/user.conf.d/90-vigil-ca.conf"
/* Login hook: a user's NSS database gets the CA at login if it lacks it
 * (new users, and browsers first run after trust). */
#define TRUST_NSS_HOOK "/etc/profile.d/vigil-ca-nss.sh"
#define SYSTEM_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

static const char *const trust_files[] = { TRUST_CERT,	     TRUST_ENV_SH,	 TRUST_ENV_D,
					   TRUST_PROFILE,    TRUST_SYSTEMD_SYS, TRUST_SYSTEMD_USER,
					   TRUST_NSS_HOOK,   NULL };

static void cmd_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cmd_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vigil ca %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int parse_days(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 36500)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* ---------------- init ---------------- */

static void init_usage(FILE *f)
{
	fprintf(f,
		"usage: vigil ca init --dir DIR [--parent-cert P --parent-key K] [--name NAME]\n"
		"                     [--days N] [--constrained] [--force]\n\n"
		"Creates DIR (mode 0700) with " CA_CERT_FILE " and " CA_KEY_FILE " (mode 0600), an\n"
		"EC P-256 interception CA.\n"
		"  --dir DIR          where to write the CA (default " DEFAULT_CA_DIR ")\n"
		"  --parent-cert P    issue an intermediate from this CA certificate (PEM; may\n"
		"                     hold its chain). The intermediate is name-constrained to\n"
		"                     the LLM provider domains and " CA_CERT_FILE " holds the\n"
		"                     intermediate followed by P's certificates.\n"
		"  --parent-key K     the parent CA's private key (PEM)\n"
		"  --name NAME        subject common name (default \"" DEFAULT_CA_NAME "\", or\n"
		"                     \"" DEFAULT_SUB_CA_NAME "\" with a parent)\n"
		"  --days N           validity in days (default %d; an intermediate never\n"
		"                     outlives its parent)\n"
		"  --constrained      also name-constrain a self-signed root to the LLM domains\n"
		"  --force            replace an existing key\n",
		DEFAULT_CA_DAYS);
}


static void print_cert(const char *what, X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char cn[256] = "";
	BIO *b = BIO_new_fp(stdout, BIO_NOCLOSE);

	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	printf("%s: CN=%s, valid until ", what, cn);
	fflush(stdout);
	if (b) {
		ASN1_TIME_print(b, X509_get0_notAfter(x));
		BIO_free(b);
	}
	printf("\n  SHA-256 fingerprint ");
	if (X509_digest(x, EVP_sha256(), md, &mdlen))
		for (unsigned int i = 0; i < mdlen; i++)
			printf("%02X%s", md[i], i + 1 < mdlen ? ":" : "\n");
	else
		printf("?\n");
}

static int ca_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "parent-cert", required_argument, NULL, 'c' },
		{ "parent-key", required_argument, NULL, 'k' },
		{ "name", required_argument, NULL, 'n' },
		{ "days", required_argument, NULL, 'D' },
		{ "constrained", no_argument, NULL, 'C' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *pcert = NULL, *pkey = NULL, *name = NULL;
	int days = DEFAULT_CA_DAYS, c, rc = CLI_EXIT_FAIL;
	bool force = false, constrained = false, key_written = false;
	char cert_path[PATH_MAX], key_path[PATH_MAX], err[512];
	STACK_OF(X509) *parent_chain = NULL;
	EVP_PKEY *parent_key = NULL, *key = NULL;
	X509 *ca = NULL, **certs = NULL;
	size_t ncerts = 0;
	struct stat st;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'c': pcert = optarg; break;
		case 'k': pkey = optarg; break;
		case 'n': name = optarg; break;
		case 'D':
			if (parse_days(optarg, &days) < 0) {
				cmd_err("init", "--days: expected 1..36500, got '%s'", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'C': constrained = true; break;
		case 'f': force = true; break;
		case 'h': init_usage(stdout); return CLI_EXIT_OK;
		default: init_usage(stderr); return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cmd_err("init", "unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!dir)
		dir = DEFAULT_CA_DIR;
	if (!name)
		name = pcert ? DEFAULT_SUB_CA_NAME : DEFAULT_CA_NAME;
	if (!*dir || !*name || strlen(name) > 64) {
		cmd_err("init", "--dir must not be empty and --name must be 1..64 characters");
		return CLI_EXIT_USAGE;
	}
	if (!pcert != !pkey) {
		cmd_err("init", "--parent-cert and --parent-key go together");
		return CLI_EXIT_USAGE;
	}
	if (pcert && constrained) {
		cmd_err("init", "--constrained is for a self-signed root (an intermediate is always constrained)");
		return CLI_EXIT_USAGE;
	}
	if (snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, CA_CERT_FILE) >= (int)sizeof(cert_path) ||
	    snprintf(key_path, sizeof(key_path), "%s/%s", dir, CA_KEY_FILE) >= (int)sizeof(key_path)) {
		cmd_err("init", "%s: path too long", dir);
		return CLI_EXIT_USAGE;
	}

	c = osutil_mkdir_p(dir, 0755, 0700);
	if (c < 0) {
		cmd_err("init", "%s: %s", dir, strerror(-c));
		return CLI_EXIT_FAIL;
	}
	if (stat(dir, &st) == 0 && (st.st_mode & 0077))
		fprintf(stderr, "vigil ca init: warning: %s is accessible by group/others (mode %03o); "
				"the key file itself is 0600\n", dir, (unsigned)(st.st_mode & 0777));
	if (!force && lstat(key_path, &st) == 0) {
		cmd_err("init", "%s already exists; use --force to replace the CA", key_path);
		return CLI_EXIT_FAIL;
	}
	if (pcert) {
		if (pki_certs_load(pcert, &parent_chain, err, sizeof(err)) < 0 ||
		    pki_key_load(pkey, &parent_key, err, sizeof(err)) < 0) {
			cmd_err("init", "%s", err);
			goto out;
		}
	}
	if (pki_key_generate(PKI_KEY_EC_P256, &key, err, sizeof(err)) < 0) {
		cmd_err("init", "%s", err);
		goto out;
	}
	{
		struct pki_ca_opts o = {
			.common_name = name,
			.organization = "Vigil",
			.days = days,
			.pathlen = 0, /* signs leaves only */
			.permitted_dns = (pcert || constrained) ? pki_llm_domains : NULL,
		};
		int r = pcert ? pki_ca_issue(sk_X509_value(parent_chain, 0), parent_key, key, &o, &ca,
					     err, sizeof(err))
			      : pki_ca_self_signed(key, &o, &ca, err, sizeof(err));
		if (r < 0) {
			cmd_err("init", "%s%s", pcert ? "parent: " : "", err);
			goto out;
		}
	}
	ncerts = 1 + (parent_chain ? (size_t)sk_X509_num(parent_chain) : 0);
	certs = calloc(ncerts, sizeof(*certs));
	if (!certs) {
		cmd_err("init", "out of memory");
		goto out;
	}
	certs[0] = ca;
	for (size_t i = 1; i < ncerts; i++)
		certs[i] = sk_X509_value(parent_chain, (int)i - 1);

	if (pki_key_save(key_path, key, force, err, sizeof(err)) < 0) {
		cmd_err("init", "%s", err);
		goto out;
	}
	key_written = true;
	if (pki_certs_save(cert_path, certs, ncerts, true, err, sizeof(err)) < 0) {
		cmd_err("init", "%s", err);
		goto out;
	}
	printf("wrote %s (mode 0600) and %s\n", key_path, cert_path);
	print_cert(pcert ? "intermediate CA, name-constrained to LLM provider domains"
		   : constrained ? "self-signed root CA, name-constrained to LLM provider domains"
				 : "self-signed root CA",
		   ca);
	rc = CLI_EXIT_OK;
out:
	/* A key without its certificate is useless and would block the
	 * next init without --force. */
	if (rc != CLI_EXIT_OK && key_written)
		unlink(key_path);
	free(certs);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(parent_key);
	sk_X509_pop_free(parent_chain, X509_free);
	return rc;
}

/* ---------------- trust / untrust ---------------- */

/* root + abs ("/" + "/etc/x" = "/etc/x"; "/tmp/r/" + "/etc/x" = "/tmp/r/etc/x"). */
int ca_rooted(char *buf, size_t len, const char *root, const char *abs)
{
	size_t rl = strlen(root);

	while (rl > 0 && root[rl - 1] == '/')
		rl--;
	if (snprintf(buf, len, "%.*s%s", (int)rl, root, abs) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static bool root_is_slash(const char *root)
{
	char real[PATH_MAX];

	return realpath(root, real) && strcmp(real, "/") == 0;
}

#define MAX_CREATED_DIRS 16

struct created_dirs {
	char *dir[MAX_CREATED_DIRS]; /* absolute on the target, owned */
	int n;
};

static void created_dirs_add(struct created_dirs *cd, const char *abs)
{
	for (int i = 0; i < cd->n; i++)
		if (strcmp(cd->dir[i], abs) == 0)
			return;
	if (cd->n < MAX_CREATED_DIRS) {
		char *d = strdup(abs);
		if (d)
			cd->dir[cd->n++] = d;
	}
}

static void created_dirs_free(struct created_dirs *cd)
{
	for (int i = 0; i < cd->n; i++)
		free(cd->dir[i]);
	cd->n = 0;
}

/* Reads the "dir PATH" lines of an existing manifest (if any). */
static void manifest_read(const char *root, struct created_dirs *cd)
{
	char path[PATH_MAX], line[PATH_MAX + 16];
	FILE *f;

	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) < 0)
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "dir /", 5) == 0)
			created_dirs_add(cd, line + 4);
	}
	fclose(f);
}

/* Does the existing manifest (if any) hold this exact line? */
static bool manifest_has(const char *root, const char *want)
{
	char path[PATH_MAX], line[PATH_MAX + 16];
	bool found = false;
	FILE *f;

	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) < 0 || !(f = fopen(path, "re")))
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		found = strcmp(line, want) == 0;
	}
	fclose(f);
	return found;
}

/* Creates the parent directories of abs under root, recording the ones
 * that did not exist (so untrust can remove exactly those). */
static int make_parents(const char *root, const char *abs, struct created_dirs *cd)
{
	char sub[PATH_MAX], full[PATH_MAX];
	const char *p = abs;

	while ((p = strchr(p + 1, '/')) != NULL) {
		snprintf(sub, sizeof(sub), "%.*s", (int)(p - abs), abs);
		if (ca_rooted(full, sizeof(full), root, sub) < 0)
			return -ENAMETOOLONG;
		if (mkdir(full, 0755) == 0)
			created_dirs_add(cd, sub);
		else if (errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* Writes text to root+abs atomically, mode 0644. */
int ca_write_text(const char *root, const char *abs, const char *text)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	size_t len = strlen(text);
	int fd, rc = 0;

	if (ca_rooted(path, sizeof(path), root, abs) < 0)
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Runs argv (no shell), stdout/stderr inherited. Returns its exit status,
 * 127 when it could not be executed, or -1. */
static int run_cmd(const char *const argv[])
{
	pid_t pid;
	int status;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The drop-ins change the system manager's DefaultEnvironment=, which it
 * reads at start and on re-exec (daemon-reload re-reads units, not
 * system.conf). Only when systemd really is PID 1 (sd_booted(3)'s test):
 * these machines and containers often run another init, and then the
 * drop-in simply applies at the next boot with systemd. A failure here is
 * a warning: the files are installed either way. User managers read
 * user.conf.d when they start, i.e. at the user's next login. */
static void systemd_apply(const char *cmd)
{
	static const char *const reexec[] = { "systemctl", "daemon-reexec", NULL };
	struct stat st;
	int rc;

	if (lstat("/run/systemd/system", &st) < 0 || !S_ISDIR(st.st_mode)) {
		printf("systemd is not PID 1 here: the DefaultEnvironment drop-ins apply when a "
		       "systemd manager next starts\n");
		return;
	}
	rc = run_cmd(reexec);
	if (rc != 0)
		fprintf(stderr, "vigil ca %s: warning: systemctl daemon-reexec failed (status %d); "
				"services get the new environment after a reboot\n", cmd, rc);
	else
		printf("ran systemctl daemon-reexec (services started from now on get the "
		       "environment; running ones after their restart)\n");
}

static int finish_update(const char *cmd, const char *root)
{
	int st;

	if (!root_is_slash(root)) {
		printf("skipped update-ca-certificates and systemctl (--root %s is not /); on the "
		       "target run them after installing these files\n", root);
		return CLI_EXIT_OK;
	}
	{
		static const char *const argv[] = { "update-ca-certificates", NULL };
		st = run_cmd(argv);
	}
	if (st != 0) {
		cmd_err(cmd, "update-ca-certificates failed (status %d)", st);
		return CLI_EXIT_FAIL;
	}
	printf("ran update-ca-certificates\n");
	systemd_apply(cmd);
	return CLI_EXIT_OK;
}

static void trust_usage(FILE *f)
{
	fprintf(f,
		"usage: vigil ca trust [--dir DIR] [--root R]\n\n"
		"Installs the CA's trust anchor (the last certificate of DIR/" CA_CERT_FILE ")\n"
		"as R" TRUST_CERT " and runs update-ca-certificates\n"
		"(only when R is /), then writes R" TRUST_ENV_SH ", R" TRUST_ENV_D "\n"
		"and R" TRUST_PROFILE " setting SSL_CERT_FILE and REQUESTS_CA_BUNDLE (the\n"
		"system bundle " SYSTEM_BUNDLE ") and NODE_EXTRA_CA_CERTS\n"
		"(the installed anchor) for runtimes that ignore the system store, and the\n"
		"same as systemd DefaultEnvironment= drop-ins R" TRUST_SYSTEMD_SYS "\n"
		"and R" TRUST_SYSTEMD_USER " for services (applied with systemctl\n"
		"daemon-reexec when R is / and systemd is PID 1), and R" TRUST_NSS_HOOK "\n"
		"(adds the CA to a user's NSS db at login). Browsers: adds the CA to every\n"
		"user's NSS databases (certutil, as that user) and to Firefox's\n"
		"R" CA_FIREFOX_POLICY " (merged). Exit 1 if any of that failed.\n"
		"  --dir DIR   the CA directory (default " DEFAULT_CA_DIR ")\n"
		"  --root R    install under this root instead of / (staging, tests)\n");
}

static int ca_trust(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = DEFAULT_CA_DIR, *root = "/";
	char cert_path[PATH_MAX], path[PATH_MAX], err[512];
	STACK_OF(X509) *chain = NULL;
	struct created_dirs cd = { .n = 0 };
	X509 *anchor;
	FILE *mf = NULL;
	struct stat st;
	int c, rc = CLI_EXIT_FAIL, browser_failures;
	bool policy_created;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'r': root = optarg; break;
		case 'h': trust_usage(stdout); return CLI_EXIT_OK;
		default: trust_usage(stderr); return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cmd_err("trust", "unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!*root || !*dir) {
		cmd_err("trust", "--dir and --root must not be empty");
		return CLI_EXIT_USAGE;
	}
	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		cmd_err("trust", "%s: not a directory", root);
		return CLI_EXIT_FAIL;
	}
	snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, CA_CERT_FILE);
	if (pki_certs_load(cert_path, &chain, err, sizeof(err)) < 0) {
		cmd_err("trust", "%s", err);
		return CLI_EXIT_FAIL;
	}
	/* Clients anchor on the top of the chain: for an intermediate that
	 * is the parent (whose key never lives on this machine). */
	anchor = sk_X509_value(chain, sk_X509_num(chain) - 1);
	if (X509_check_issued(anchor, anchor) != X509_V_OK)
		fprintf(stderr, "vigil ca trust: warning: the last certificate in %s is not "
				"self-signed; clients also need its issuer\n", cert_path);

	manifest_read(root, &cd);
	for (int i = 0; trust_files[i]; i++) {
		c = make_parents(root, trust_files[i], &cd);
		if (c < 0) {
			cmd_err("trust", "%s%s: %s", root, trust_files[i], strerror(-c));
			goto out;
		}
	}
	c = make_parents(root, TRUST_MANIFEST, &cd);
	if (c == 0)
		c = make_parents(root, CA_FIREFOX_POLICY, &cd);
	if (c < 0) {
		cmd_err("trust", "%s: %s", root, strerror(-c));
		goto out;
	}
	policy_created = manifest_has(root, "firefox-policy created");
	/* The manifest goes first, so an interrupted trust can still be
	 * undone. Only directories are recorded: the files are fixed. */
	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) < 0 || !(mf = fopen(path, "we"))) {
		cmd_err("trust", "%s: %s", path, strerror(errno));
		goto out;
	}
	fprintf(mf, "# written by vigil ca trust; vigil ca untrust removes the files it\n"
		    "# installed and these directories it created (if empty)\n");
	for (int i = 0; i < cd.n; i++)
		fprintf(mf, "dir %s\n", cd.dir[i]);
	if (fclose(mf) != 0) {
		mf = NULL;
		cmd_err("trust", "%s: %s", path, strerror(errno));
		goto out;
	}
	mf = NULL;

	if (ca_rooted(path, sizeof(path), root, TRUST_CERT) < 0 ||
	    pki_certs_save(path, &anchor, 1, true, err, sizeof(err)) < 0) {
		cmd_err("trust", "%s", err);
		goto out;
	}
	printf("installed %s\n", path);
	{
		static const char sh[] =
			"# written by vigil ca trust: Vigil's interception CA for runtimes that\n"
			"# ignore the system trust store. Removed by vigil ca untrust.\n"
			"export SSL_CERT_FILE=" SYSTEM_BUNDLE "\n"
			"export REQUESTS_CA_BUNDLE=" SYSTEM_BUNDLE "\n"
			"export NODE_EXTRA_CA_CERTS=" TRUST_CERT "\n";
		static const char envd[] =
			"# written by vigil ca trust (systemd environment.d); removed by vigil ca untrust\n"
			"SSL_CERT_FILE=" SYSTEM_BUNDLE "\n"
			"REQUESTS_CA_BUNDLE=" SYSTEM_BUNDLE "\n"
			"NODE_EXTRA_CA_CERTS=" TRUST_CERT "\n";
		static const char profile[] =
			"# written by vigil ca trust; removed by vigil ca untrust\n"
			"[ -r " TRUST_ENV_SH " ] && . " TRUST_ENV_SH "\n";
		/* systemd splits DefaultEnvironment= on spaces, honouring
		 * quotes; each assignment quoted so a path with a space
		 * would still be one. Drop-ins add to the main file. */
		static const char sysd[] =
			"# written by vigil ca trust: Vigil's interception CA for services that\n"
			"# ignore the system trust store (Node, certifi). Removed by vigil ca untrust.\n"
			"[Manager]\n"
			"DefaultEnvironment=\"SSL_CERT_FILE=" SYSTEM_BUNDLE "\" "
			"\"REQUESTS_CA_BUNDLE=" SYSTEM_BUNDLE "\" "
			"\"NODE_EXTRA_CA_CERTS=" TRUST_CERT "\"\n";
		/* Runs as the user in a login shell: creates ~/.pki/nssdb as
		 * Chromium would (empty password) and adds the CA once. */
		static const char nss_hook[] =
			"# written by vigil ca trust: adds Vigil's interception CA to this user's\n"
			"# NSS database (Chromium, Electron) at login if it is missing.\n"
			"# Removed by vigil ca untrust.\n"
			"if [ \"$(id -u)\" -ge 1000 ] && [ -n \"$HOME\" ] && [ -r " TRUST_CERT " ] &&\n"
			"   command -v certutil >/dev/null 2>&1; then\n"
			"\t_vigil_db=\"$HOME/.pki/nssdb\"\n"
			"\tif [ ! -e \"$_vigil_db/cert9.db\" ]; then\n"
			"\t\tmkdir -p -m 700 \"$HOME/.pki\" \"$_vigil_db\" &&\n"
			"\t\tcertutil -N -d \"sql:$_vigil_db\" --empty-password >/dev/null 2>&1\n"
			"\tfi\n"
			"\tcertutil -L -d \"sql:$_vigil_db\" -n '" CA_NSS_NICK "' >/dev/null 2>&1 ||\n"
			"\t\tcertutil -A -d \"sql:$_vigil_db\" -n '" CA_NSS_NICK "' -t C,, \\\n"
			"\t\t\t-i " TRUST_CERT " >/dev/null 2>&1\n"
			"\tunset _vigil_db\n"
			"fi\n";
		const char *files[][2] = { { TRUST_ENV_SH, sh },	{ TRUST_ENV_D, envd },
					   { TRUST_PROFILE, profile },	{ TRUST_SYSTEMD_SYS, sysd },
					   { TRUST_SYSTEMD_USER, sysd },	{ TRUST_NSS_HOOK, nss_hook } };
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			c = ca_write_text(root, files[i][0], files[i][1]);
			if (c < 0) {
				cmd_err("trust", "%s%s: %s", root, files[i][0], strerror(-c));
				goto out;
			}
			ca_rooted(path, sizeof(path), root, files[i][0]);
			printf("wrote %s\n", path);
		}
	}
	/* Browsers after the system store: a failure there leaves the
	 * rest installed (and recorded) but is reported in the exit status. */
	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) < 0 || !(mf = fopen(path, "ae"))) {
		cmd_err("trust", "%s: %s", path, strerror(errno));
		goto out;
	}
	browser_failures = ca_browser_trust(root, TRUST_CERT, policy_created, mf);
	c = fclose(mf);
	mf = NULL;
	if (c != 0) {
		cmd_err("trust", "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = finish_update("trust", root);
	if (rc == CLI_EXIT_OK && browser_failures)
		rc = CLI_EXIT_FAIL;
out:
	if (mf)
		fclose(mf);
	created_dirs_free(&cd);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

static void untrust_usage(FILE *f)
{
	fprintf(f,
		"usage: vigil ca untrust [--root R]\n\n"
		"Removes what `vigil ca trust` installed under R (default /): the anchor in\n"
		"the system store, the environment files, the directories trust created;\n"
		"then reruns update-ca-certificates (only when R is /).\n");
}

static int dir_depth_cmp(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

	return la < lb ? 1 : la > lb ? -1 : 0; /* deepest first */
}

static int ca_untrust(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = "/";
	char path[PATH_MAX];
	struct created_dirs cd = { .n = 0 };
	struct stat st;
	int c, rc = CLI_EXIT_OK, removed = 0;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'h': untrust_usage(stdout); return CLI_EXIT_OK;
		default: untrust_usage(stderr); return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cmd_err("untrust", "unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	if (!*root) {
		cmd_err("untrust", "--root must not be empty");
		return CLI_EXIT_USAGE;
	}
	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		cmd_err("untrust", "%s: not a directory", root);
		return CLI_EXIT_FAIL;
	}
	manifest_read(root, &cd);
	/* Browsers first: they read the manifest, and the policy file sits in
	 * a directory trust may have created. */
	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) < 0 ||
	    ca_browser_untrust(root, TRUST_CERT, path) > 0)
		rc = CLI_EXIT_FAIL;
	for (int i = 0; trust_files[i]; i++) {
		if (ca_rooted(path, sizeof(path), root, trust_files[i]) < 0)
			continue;
		if (unlink(path) == 0) {
			printf("removed %s\n", path);
			removed++;
		} else if (errno != ENOENT) {
			cmd_err("untrust", "%s: %s", path, strerror(errno));
			rc = CLI_EXIT_FAIL;
		}
	}
	if (ca_rooted(path, sizeof(path), root, TRUST_MANIFEST) == 0 && unlink(path) < 0 &&
	    errno != ENOENT) {
		cmd_err("untrust", "%s: %s", path, strerror(errno));
		rc = CLI_EXIT_FAIL;
	}
	/* Only directories trust created, and only if now empty (something
	 * else may have moved in since). */
	qsort(cd.dir, (size_t)cd.n, sizeof(cd.dir[0]), dir_depth_cmp);
	for (int i = 0; i < cd.n; i++) {
		if (ca_rooted(path, sizeof(path), root, cd.dir[i]) == 0 && rmdir(path) == 0)
			printf("removed %s/\n", path);
	}
	created_dirs_free(&cd);
	if (!removed)
		printf("nothing to remove under %s\n", root);
	if (rc == CLI_EXIT_OK)
		rc = finish_update("untrust", root);
	return rc;
}

/* ---------------- dispatch ---------------- */

static void ca_usage(FILE *f)
{
	fprintf(f, "usage: vigil ca <init|trust|untrust> [options]\n"
		   "  init      create the interception CA (self-signed, or an intermediate\n"
		   "            name-constrained to LLM provider domains)\n"
		   "  trust     install it in the system store and the runtime environment\n"
		   "  untrust   remove what trust installed\n"
		   "Run `vigil ca <command> --help` for options.\n");
}

int cli_ca_main(int argc, char **argv)
{
	if (argc < 2) {
		ca_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ca_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "init") == 0)
		return ca_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "trust") == 0)
		return ca_trust(argc - 1, argv + 1);
	if (strcmp(argv[1], "untrust") == 0)
		return ca_untrust(argc - 1, argv + 1);
	fprintf(stderr, "vigil ca: unknown command '%s'\n", argv[1]);
	ca_usage(stderr);
	return CLI_EXIT_USAGE;
}
