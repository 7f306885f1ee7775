/* ca_browser: the browsers' trust stores for `vigil ca trust|untrust`: every
 * existing user's NSS databases (Chromium and Electron's ~/.pki/nssdb,
 * Firefox profiles' cert9.db) and Firefox's enterprise policy file.
 * ca.c calls it after the system store is done; paths are absolute on the
 * target system and resolved under root (staging, tests). */
#ifndef VIGIL_CA_BROWSER_H
#define VIGIL_CA_BROWSER_H

#include <stdbool.h>
#include <stdio.h>

/* The nickname under which the anchor goes into NSS databases: untrust
 * deletes this nickname and nothing else. */
#define CA_NSS_NICK "Vigil Interception CA (vigil ca trust)"
/* Firefox on Linux reads this policy file (Certificates.Install). */
#define CA_FIREFOX_POLICY "/etc/firefox/policies/policies.json"

/* Adds the anchor (cert_abs, a PEM file on the target) to every NSS
 * database of users with uid 1000..59999 in root's /etc/passwd whose home
 * they own, running certutil as that user; merges cert_abs into the
 * Firefox policy file. Appends what it did to manifest ("nssdb PATH",
 * "firefox-policy created|merged"; created also when policy_created: an
 * earlier trust created the file). Returns the number of failures
 * (each already reported on stderr). */
int ca_browser_trust(const char *root, const char *cert_abs, bool policy_created, FILE *manifest);

/* Undoes ca_browser_trust (and the login hook's additions): deletes
 * CA_NSS_NICK from the same databases and from those manifest lists,
 * removes cert_abs from the policy file, and the file itself if the
 * manifest says trust created it and nothing else is left in it.
 * Returns the number of failures. */
int ca_browser_untrust(const char *root, const char *cert_abs, const char *manifest_path);

/* From ca.c: root + abs into buf; atomic write of text to root + abs. */
int ca_rooted(char *buf, size_t len, const char *root, const char *abs);
int ca_write_text(const char *root, const char *abs, const char *text);

#endif
