#!/usr/bin/env python3
"""Realistic pasted content with planted sensitive values and hard
look-alikes, run through the agent's inspector (build/eval/eval), scored.

What a user pastes into a chat: CSV rows, .env files, YAML, logs and stack
traces, SQL, e-mail threads with signatures, code in several languages,
tool-call arguments (JSON). Every document mixes filler, planted values
(labelled: kind, byte span) and look-alikes (labelled the same way): order
ids, UUIDs, OIDs, 4-part versions, parcel tracking numbers, documentation
keys, placeholders, password-handling code, git remotes, hashes, base64
blobs, Luhn-failing card numbers, bad IBANs, timestamps, invoice numbers.
Keys, separators, quoting and casing vary per document so that no single
spelling carries a look-alike or a plant.

Scores:
  recall       planted values overlapped by a finding of their class
               (a secret found as any secret type is blocked; PII as any
               PII type is redacted)
  look-alikes  look-alike instances overlapped by any finding, and clean
               documents (look-alikes only) that got any finding (= the
               request would have been altered or blocked)

Stdlib only. Seeded: VIGIL_GEN_SEED (default: from the clock), printed
first so a failing run can be replayed. VIGIL_GEN_DOCS sets the number of
documents (default 1500)."""
import base64, json, os, random, string, subprocess, sys, time, uuid, zlib, collections

SEED = int(os.environ.get("VIGIL_GEN_SEED") or int(time.time()) % 1000000)
NDOCS = int(os.environ.get("VIGIL_GEN_DOCS") or 1500)
R = random.Random(SEED)
AL = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UP = string.ascii_uppercase + string.digits

PII = {"EMAIL", "PHONE", "CREDIT_CARD", "US_SSN", "IBAN", "IP_ADDRESS"}
SECRET = {"AWS_ACCESS_KEY", "AWS_SECRET_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
          "SLACK_TOKEN", "PRIVATE_KEY", "JWT", "GOOGLE_API_KEY", "GITLAB_TOKEN", "STRIPE_KEY",
          "HUGGINGFACE_TOKEN", "AZURE_KEY", "PASSWORD_ASSIGNMENT", "CONNECTION_STRING", "SECRET_TOKEN",
          "SECRET_ASSIGNMENT"}


def rs(n, cs=AL):
    return "".join(R.choice(cs) for _ in range(n))


def pick(*xs):
    return R.choice(xs)


# ------------------------------------------------------------ values

def luhn_complete(body):
    s = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch)
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        s += d
    return body + str((10 - s % 10) % 10)


def card(valid=True):
    kind = R.randrange(5)
    if kind == 0:
        num = luhn_complete("4" + rs(14, string.digits))
    elif kind == 1:
        num = luhn_complete(str(R.randint(51, 55)) + rs(13, string.digits))
    elif kind == 2:
        num = luhn_complete(str(R.randint(2221, 2720)) + rs(11, string.digits))
    elif kind == 3:
        num = luhn_complete(pick("34", "37") + rs(12, string.digits))
    else:
        num = luhn_complete("6011" + rs(11, string.digits))
    if not valid:
        num = num[:-1] + str((int(num[-1]) + R.randint(1, 9)) % 10)
    sep = pick("", " ", "-", " ")
    if len(num) == 15:
        return sep.join([num[:4], num[4:10], num[10:]]) if sep else num
    return sep.join(num[i:i + 4] for i in range(0, 16, 4)) if sep else num


IBAN_FMT = {"DE": lambda: rs(18, string.digits), "GB": lambda: rs(4, string.ascii_uppercase) + rs(14, string.digits),
            "FR": lambda: rs(23, string.digits), "NL": lambda: rs(4, string.ascii_uppercase) + rs(10, string.digits),
            "ES": lambda: rs(20, string.digits), "IT": lambda: rs(1, string.ascii_uppercase) + rs(22, string.digits),
            "SE": lambda: rs(20, string.digits), "CH": lambda: rs(17, string.digits)}


def iban(valid=True):
    cc = R.choice(list(IBAN_FMT))
    bban = IBAN_FMT[cc]()
    num = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    check = 98 - num % 97
    if not valid:
        check = (check + R.randint(1, 50)) % 97 + 2
    s = f"{cc}{check:02d}{bban}"
    if R.random() < 0.5:
        s = " ".join(s[i:i + 4] for i in range(0, len(s), 4))
    return s


def ssn():
    area = R.choice([x for x in range(1, 900) if x != 666])
    s = f"{area:03d}{R.randint(1, 99):02d}{R.randint(1, 9999):04d}"
    return pick(f"{s[:3]}-{s[3:5]}-{s[5:]}", f"{s[:3]} {s[3:5]} {s[5:]}")


FIRST = ["anna", "lars", "maria", "wei", "yuki", "priya", "joao", "emma", "noah", "olivia", "ahmed", "sofia",
         "lukas", "chloe", "raj", "mei", "ivan", "zoe", "omar", "lea"]
LAST = ["berg", "smith", "garcia", "wang", "tanaka", "sharma", "silva", "muller", "dubois", "rossi",
        "kowalski", "nguyen", "kim", "larsen", "okafor", "novak"]
DOM = ["example.com", "acme-corp.io", "mail.contoso.co.uk", "fabrikam.de", "globex.fr", "initech.com",
       "umbrella.co.jp", "wayne-ent.com.br", "stark.in", "hooli.xyz", "cyberdyne.se"]


def email():
    f, l = R.choice(FIRST), R.choice(LAST)
    local = pick(f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{R.randint(1, 99)}", f"{f}+{pick('news', 'git', 'x')}", f"{l}.{f}")
    e = f"{local}@{R.choice(DOM)}"
    return e.upper() if R.random() < 0.05 else e


def d(n):
    return rs(n, string.digits)


def phone():
    nz = lambda n: str(R.randint(1, 9)) + d(n - 1)
    forms = [
        lambda: f"({R.randint(201, 989)}) {R.randint(201, 989)}-{d(4)}",
        lambda: f"{R.randint(201, 989)}-{R.randint(201, 989)}-{d(4)}",
        lambda: f"+1 {R.randint(201, 989)} {R.randint(201, 989)} {d(4)}",
        lambda: f"+44 20 {d(4)} {d(4)}", lambda: f"020 {d(4)} {d(4)}", lambda: f"07{d(3)} {d(6)}",
        lambda: f"+49 30 {d(8)}", lambda: f"030 {d(8)}", lambda: f"030/{d(8)}", lambda: f"0049-30-{d(8)}",
        lambda: f"0{R.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"0{R.randint(1, 9)}.{d(2)}.{d(2)}.{d(2)}.{d(2)}", lambda: f"+33 {R.randint(1, 9)} {d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"070-{d(3)} {d(2)} {d(2)}", lambda: f"+46 70 {d(3)} {d(2)} {d(2)}",
        lambda: f"03-{d(4)}-{d(4)}", lambda: f"090-{d(4)}-{d(4)}", lambda: f"+81 3-{d(4)}-{d(4)}",
        lambda: f"+91 {R.randint(6, 9)}{d(4)} {d(5)}", lambda: f"+91 {R.randint(6, 9)}{d(9)}",
        lambda: f"13{R.randint(0, 9)} {d(4)} {d(4)}", lambda: f"+86 13{R.randint(0, 9)} {d(4)} {d(4)}",
        lambda: f"({R.randint(11, 99)}) 9{d(4)}-{d(4)}", lambda: f"+55 11 9{d(4)}-{d(4)}",
        lambda: f"+39 06 {d(4)} {d(4)}", lambda: f"6{d(2)} {d(3)} {d(3)}", lambda: f"+34 6{d(2)} {d(2)} {d(2)} {d(2)}",
        lambda: f"04{d(2)} {d(3)} {d(3)}", lambda: f"+61 4{d(2)} {d(3)} {d(3)}",
        lambda: f"010-{d(4)}-{d(4)}", lambda: f"06-{d(8)}", lambda: f"+31 6 {d(8)}",
        lambda: f"+52 55 {d(4)} {d(4)}",
    ]
    return R.choice(forms)()


def ipv4():
    return pick(f"10.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}",
                f"192.168.{R.randint(0, 255)}.{R.randint(1, 254)}",
                f"{R.randint(11, 223)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)}")


def ipv6():
    return pick(f"2001:db8:{rs(4, HEX)}::{rs(4, HEX)}:{rs(3, HEX)}",
                ":".join(rs(4, HEX) for _ in range(8)), f"fe80::{rs(4, HEX)}:{rs(4, HEX)}:{rs(4, HEX)}:{rs(4, HEX)}")


def gh_token():
    body = rs(30)
    crc = zlib.crc32(body.encode()) & 0xFFFFFFFF
    b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    enc = ""
    for _ in range(6):
        enc = b62[crc % 62] + enc
        crc //= 62
    return pick("ghp_", "gho_", "ghs_") + body + enc


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt():
    h = b64url(json.dumps({"alg": pick("HS256", "RS256"), "typ": "JWT"}).encode())
    p = b64url(json.dumps({"sub": str(R.randint(1, 10**9)), "iat": R.randint(1.6e9, 1.8e9),
                           "role": pick("admin", "user")}).encode())
    return f"{h}.{p}.{b64url(os.urandom(0) + bytes(R.randrange(256) for _ in range(32)))}"


def pem():
    lines = [base64.b64encode(bytes(R.randrange(256) for _ in range(48))).decode() for _ in range(R.randint(4, 8))]
    kind = pick("RSA ", "EC ", "", "OPENSSH ")
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


def password():
    return rs(R.randint(3, 6)) + pick("!", "#", "$", "%", "@", "") + rs(R.randint(3, 8)) + d(R.randint(1, 3))


VENDOR = [lambda: "npm_" + rs(36), lambda: "SG." + rs(22, AL + "_-") + "." + rs(43, AL + "_-"),
          lambda: pick("dop", "doo", "dor") + "_v1_" + rs(64, HEX), lambda: pick("shpat_", "shpss_") + rs(32, HEX),
          lambda: "dapi" + rs(32, HEX), lambda: "SK" + rs(32, HEX), lambda: "pypi-AgEIcHlwaS5vcmc" + rs(70, AL + "_-"),
          lambda: "dckr_pat_" + rs(27, AL + "_-"), lambda: "glsa_" + rs(32) + "_" + rs(8, HEX),
          lambda: "lin_api_" + rs(40), lambda: "dp.pt." + rs(43), lambda: "hvs." + rs(95, AL + "_-"),
          lambda: "PMAK-" + rs(24, HEX) + "-" + rs(34, HEX), lambda: "ntn_" + d(11) + rs(35),
          lambda: d(10) + ":AA" + rs(33, AL + "_-"), lambda: "NRAK-" + rs(27, UP), lambda: "sntryu_" + rs(64, HEX),
          lambda: "sq0atp-" + rs(22, AL + "_-"), lambda: "gsk_" + rs(52), lambda: "key-" + rs(32, HEX),
          lambda: "HRKU-" + rs(60, AL + "_-")]

SECRET_KEYS = ["api_key", "API_KEY", "apiKey", "ApiKey", "secret_key", "SECRET_KEY", "client_secret", "clientSecret",
               "access_token", "ACCESS_TOKEN", "auth_token", "AUTH_TOKEN", "webhook_secret", "SIGNING_KEY",
               "encryption_key", "service_token", "APP_SECRET", "x-api-key", "private_key"]
PASS_KEYS = ["password", "PASSWORD", "db_password", "DB_PASSWORD", "passwd", "pwd", "userPassword", "MYSQL_PASSWORD",
             "smtp_pass", "redisPassword"]


def secret_plant():
    """(kind, value, key name suggestion)"""
    k = R.randrange(14)
    if k == 0:
        return "aws_id", "AKIA" + rs(16, UP), "aws_access_key_id"
    if k == 1:
        return "aws_secret", rs(40, AL + "/+"), "aws_secret_access_key"
    if k == 2:
        return "github", gh_token(), pick("GITHUB_TOKEN", "gh_token", "token")
    if k == 3:
        return "openai", "sk-proj-" + rs(20) + "T3BlbkFJ" + rs(20), "OPENAI_API_KEY"
    if k == 4:
        return "anthropic", "sk-ant-api03-" + rs(93, AL + "_-") + "AA", "ANTHROPIC_API_KEY"
    if k == 5:
        return "slack", f"xoxb-{d(12)}-{d(13)}-{rs(24)}", "SLACK_BOT_TOKEN"
    if k == 6:
        return "stripe", "sk_live_" + rs(24), "STRIPE_SECRET_KEY"
    if k in (7, 8):
        return "vendor", R.choice(VENDOR)(), pick("TOKEN", "deploy_token", "key", "SERVICE_KEY")
    if k == 9:
        return "password", password(), R.choice(PASS_KEYS)
    if k == 10:
        return "assign", pick(rs(32, HEX), rs(R.randint(20, 40)), rs(24, AL + "-_")), R.choice(SECRET_KEYS)
    if k == 11:
        return "jwt", jwt(), pick("id_token", "jwt", "session")
    if k == 12:
        return "google", "AIza" + rs(35, AL + "_-"), "GOOGLE_API_KEY"
    return "gitlab", "glpat-" + rs(20, AL + "_-"), "GITLAB_TOKEN"


KIND_CLASS = {"email": PII, "phone": PII, "card": PII, "iban": PII, "ssn": PII, "ip": PII}

# ------------------------------------------------------------ look-alikes

DOC_EXAMPLES = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AKIAI44QH8DHBEXAMPLE",
                "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"]
PLACEHOLDERS = ["xoxb-your-token", "sk-...", "sk-xxxxxxxxxxxxxxxxxxxxxxxx", "${OPENAI_API_KEY}", "<your-api-key>",
                "changeme", "YOUR_API_KEY_HERE", "xxxxxxxxxxxxxxxx", "<REDACTED>", "$(cat /run/secrets/token)",
                "{{ .Values.apiKey }}", "%(API_KEY)s", "********", "sk-proj-REPLACE_ME", "ghp_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "npm_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "os.environ['API_KEY']", "process.env.API_KEY",
                "os.getenv(\"SECRET_KEY\")", "None", "null", "\"\""]
PW_CODE = ["if new_password != confirm_password:", "password = getpass()", "password: str",
           "def set_password(self, password: str) -> None:", "if (password === confirmPassword) {",
           "user.password = hashed_password", "password = request.form['password']",
           "const password = await prompt('Password: ');", "String password = System.getenv(\"DB_PASSWORD\");",
           "password := os.Getenv(\"DB_PASSWORD\")", "self.password = password", "if not check_password(password, user.pw_hash):",
           "password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())", "assert password == expected_password",
           "api_key = settings.API_KEY", "token = response.json()['access_token']", "secret_key = get_secret('app')",
           "password: String,", "password=None,", "token = self.token", "ACCESS_TOKEN = config.access_token"]


def lookalike():
    k = R.randrange(42)
    if k >= 36:
        return everyday_lookalike(k)
    if k >= 30:
        return national_id_lookalike(k)
    if k >= 22:
        return more_lookalike(k)
    if k == 0:
        return "order_id", f"{d(3)}-{d(7)}-{d(7)}"
    if k == 1:
        return "uuid", str(uuid.UUID(int=R.getrandbits(128), version=4))
    if k == 2:
        return "oid", "1.3.6.1.4.1." + ".".join(str(R.randint(0, 9999)) for _ in range(R.randint(2, 6)))
    if k == 3:
        return "version", pick("version ", "v", "build ", "requests==", "Version: ", "left-pad@", "firmware ") + ".".join(
            str(R.randint(0, 30)) for _ in range(R.randint(4, 5)))
    if k == 4:
        return "tracking", pick(f"{d(4)} {d(4)} {d(4)}", "1Z" + rs(16, UP), " ".join(d(4) for _ in range(5)) + " " + d(2),
                                f"{d(4)}-{d(4)}-{d(4)}", "JD" + d(18))
    if k == 5:
        return "doc_key", R.choice(DOC_EXAMPLES)
    if k == 6:
        return "placeholder", f"{R.choice(SECRET_KEYS + PASS_KEYS)}{pick('=', ': ', ' = ', ':=')}{R.choice(PLACEHOLDERS)}"
    if k == 7:
        return "pw_code", R.choice(PW_CODE)
    if k == 8:
        org, repo = R.choice(LAST), R.choice(FIRST)
        return "git_remote", pick(f"git@github.com:{org}/{repo}.git", f"ssh://git@gitlab.com/{org}/{repo}.git",
                                  f"git@bitbucket.org:{org}/{repo}.git", f"deploy@build-0{R.randint(1, 9)}.{R.choice(DOM)}:/srv/{repo}")
    if k == 9:
        return "hash", pick(rs(40, HEX), rs(64, HEX), rs(32, HEX), "sha256:" + rs(64, HEX), rs(7, HEX))
    if k == 10:
        return "base64", base64.b64encode(bytes(R.randrange(256) for _ in range(R.randint(18, 150)))).decode()
    if k == 11:
        return "bad_card", card(valid=False)
    if k == 12:
        return "bad_iban", iban(valid=False)
    if k == 13:
        return "timestamp", pick(str(R.randint(1.6e9, 1.8e9)), str(R.randint(1.6e12, 1.8e12)),
                                 f"2024-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}Z",
                                 f"{R.randint(1, 28):02d}.{R.randint(1, 12):02d}.2025")
    if k == 14:
        return "invoice", pick(f"INV-2024-{d(6)}", f"PO {d(10)}", f"Ticket #{d(4)}-{d(4)}-{d(2)}", f"case {d(8)}",
                               f"REF {d(3)} {d(3)} {d(3)}")
    if k == 15:
        return "mac", ":".join(rs(2, HEX) for _ in range(6))
    if k == 16:
        return "k8s", f"web-{rs(9, HEX)}-{rs(5, string.ascii_lowercase + string.digits)}"
    if k == 17:
        return "isbn", pick(f"978-{d(1)}-{d(2)}-{d(6)}-{d(1)}", f"ISBN 978{d(10)}")
    if k == 18:
        return "price", pick(f"${R.randint(1, 99)},{d(3)}.{d(2)}", f"{R.randint(1, 999)} {d(3)} {d(3)} EUR", f"{d(1)}.{d(3)}.{d(3)},{d(2)}")
    if k == 19:
        return "coords", f"{R.uniform(-80, 80):.6f}, {R.uniform(-170, 170):.6f}"
    if k == 20:
        return "port_range", pick(f"{R.randint(1000, 9000)}-{R.randint(9001, 65000)}", f"localhost:{R.randint(1000, 65000)}")
    return "semver_pin", pick(f"numpy=={R.randint(1, 2)}.{R.randint(0, 30)}.{R.randint(0, 9)}", f"node@{R.randint(14, 22)}.{R.randint(0, 20)}.{R.randint(0, 9)}")


def more_lookalike(k):
    """the second half: identifiers next to words that usually announce a
    value (call, tel, key, token, secret, password) or shaped like one"""
    if k == 22:
        return "near_phone_word", pick(f"Call ID: {d(4)}-{d(6)}", f"call #{d(7)}", f"cell {pick('A', 'B', 'C')}{d(2)}:{pick('D', 'E')}{d(3)}",
                                       f"fax model {d(4)}-{d(3)}", f"Tel-Aviv office, floor {d(2)}", f"contact form v{d(1)}.{d(1)}.{d(2)}")
    if k == 23:
        return "bank_code", pick(f"sort code {d(2)}-{d(2)}-{d(2)}", f"routing {d(9)}", f"BIC DEUTDEFF{d(3)}", f"SWIFT {rs(8, string.ascii_uppercase)}")
    if k == 24:
        return "hex_addr", pick("0x" + rs(12, HEX), "Error 0x" + rs(8, "0123456789ABCDEF"), "at 0x" + rs(16, HEX))
    if k == 25:
        return "user_agent", pick(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/{R.randint(100, 130)}.0.{d(4)}.{d(3)}",
                                  f"curl/{R.randint(7, 8)}.{R.randint(0, 88)}.{R.randint(0, 9)}", f"python-requests/2.{R.randint(20, 32)}.{R.randint(0, 9)}")
    if k == 26:
        return "at_sign", pick("@babel/core", f"@{R.choice(LAST)}/{R.choice(FIRST)}", "HEAD@{1}", "@media (max-width: 600px)",
                               f"image@sha256:{rs(64, HEX)}", "@dataclass(frozen=True)", f"{R.choice(FIRST)}@localhost")
    if k == 27:
        return "secret_word", pick(f"max_tokens={R.randint(100, 9000)}", f"token_count: {d(4)}", "secret_name: prod-db-credentials",
                                   "SECRET_KEY = get_random_secret_key()", f"password_min_length = {R.randint(8, 16)}",
                                   f"auth_token_ttl: {d(4)}", "tokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')",
                                   "API_KEY_HEADER = 'X-Api-Key'", "secret: true", f"api_key_id = {d(5)}",
                                   "access_token_url = https://oauth2.googleapis.com/token", "client_secret_file: client_secret.json",
                                   "private_key_path: ~/.ssh/id_ed25519", "token_type: Bearer", "password_reset_token_expiry: 3600",
                                   f"KEY_ROTATION_DAYS={R.randint(30, 365)}", "secretRef:\n  name: api-credentials")
    if k == 28:
        return "hash_assign", pick(f"checksum = '{rs(32, HEX)}'", f"etag: \"{rs(40, HEX)}\"", f"commit: {rs(40, HEX)}",
                                   f"\"integrity\": \"sha512-{base64.b64encode(bytes(R.randrange(256) for _ in range(64))).decode()}\"",
                                   f"request_id = {uuid.UUID(int=R.getrandbits(128), version=4)}", f"sha256sum: {rs(64, HEX)}")
    return "data_uri", "data:image/png;base64," + base64.b64encode(bytes(R.randrange(256) for _ in range(R.randint(40, 200)))).decode()


def national_id_lookalike(k):
    """numbers with a name: company, tax, health and device identifiers,
    code constants, encrypted or templated secrets"""
    if k == 30:
        return "national_id", pick(f"VAT DE{d(9)}", f"EIN {d(2)}-{d(7)}", f"SIREN {R.randint(1, 9)}{d(2)} {d(3)} {d(3)}",
                                   f"NHS number {R.randint(4, 9)}{d(2)} {d(3)} {d(4)}", f"Steuernummer {d(2)}/{d(3)}/{d(5)}",
                                   f"IMEI {d(2)}-{d(6)}-{d(6)}-{d(1)}")
    if k == 31:
        return "product_code", pick(f"EAN {d(13)}", f"GTIN {d(14)}", f"VIN 1HG{rs(14, 'ABCDEFGHJKLMNPRSTUVWXYZ0123456789')}",
                                    f"ISO 3166-{R.randint(1, 3)}", f"RFC {d(4)}", f"PLZ {d(5)} Berlin", f"SKU-{d(6)}-{d(2)}")
    if k == 32:
        return "code_numbers", pick(f"time.sleep({d(4)})", f"range(0, {d(6)})", f"[{d(1)}, {d(2)}, {d(3)}, {d(4)}, {d(5)}]",
                                    f"timeout_ms = {d(5)}", f"0o{R.randint(100, 777)}", f"1e-{R.randint(3, 12)}",
                                    f"np.random.seed({d(9)})")
    if k == 33:
        return "templated_secret", pick("csrf_token: {{ csrf_token() }}", "api_key: !vault |", "password: ENC[AES256_GCM,data:" + rs(24, AL + "+/") + ",type:str]",
                                        "secret: ref+vault://secret/data/app#/api_key", "token: ${{ secrets.GITHUB_TOKEN }}",
                                        "DB_PASSWORD: {{ .Values.db.password | b64enc }}", "apiKey: process.env.STRIPE_SECRET_KEY ?? ''")
    if k == 34:
        return "dates_times", pick(f"{R.randint(1, 28)}/{R.randint(1, 12)}/20{R.randint(10, 30)}", f"20{R.randint(10, 30)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}",
                                   f"{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}.{d(6)}", f"Q{R.randint(1, 4)} 20{R.randint(10, 30)}",
                                   f"week {R.randint(1, 52)}, 20{R.randint(10, 30)}")
    return "amounts", pick(f"{R.randint(1, 999)} {d(3)} {d(3)} kr", f"${R.randint(1, 999)},{d(3)},{d(3)}.{d(2)}", f"{R.randint(1, 99)}.{d(3)}.{d(3)} Ft",
                           f"qty {d(3)} x {d(4)}", f"{R.randint(1, 99)} {d(3)} {d(3)},{d(2)} \u20ac")


def everyday_lookalike(k):
    """numbers and words of ordinary logs, SQL, tickets and prose"""
    if k == 36:
        return "log_numbers", pick(f"GET /api/v1/orders/{d(5)}/items?page={R.randint(1, 9)} 200 {d(4)} 0.0{d(2)}",
                                   f"latency p99={d(4)}.{d(2)}ms", f"bytes={d(7)}", f"rss={d(3)} {d(3)} {d(3)} B",
                                   f"[{d(2)}/{pick('Jan', 'Feb', 'Mar')}/2025:{d(2)}:{d(2)}:{d(2)} +0000]")
    if k == 37:
        return "sql_numbers", pick(f"WHERE id IN ({d(4)}, {d(4)}, {d(4)})", f"LIMIT {d(3)} OFFSET {d(4)}", "DECIMAL(10,2)",
                                   f"'2024-0{R.randint(1, 9)}-1{R.randint(0, 9)} 12:00:00+02'", f"VALUES ({d(6)}, {d(3)}.{d(2)}, {d(2)})")
    if k == 38:
        return "ticket_ids", pick(f"Build #2024.{d(2)}.{d(2)}.{d(4)}", f"PR #{d(5)}", f"JIRA-{d(4)}", f"Case 5003k0000{rs(6)}",
                                  f"Serial No. {d(4)}-{d(4)}-{d(2)}", f"Chassis 4T1BF1FK5CU{d(6)}", f"run {d(3)}-{d(3)}-{d(4)}-{d(2)}")
    if k == 39:
        return "secret_words", pick("the secret to good code is small functions", "a token bucket algorithm limits the rate",
                                    "send it as a password protected zip", "key: value pairs in the config",
                                    "public key infrastructure", "the password field is empty", "rotate the api key monthly")
    if k == 40:
        return "email_like", pick("icon@2x.png", "logo@3x.webp", "user at example dot com", f"@{R.choice(FIRST)}", "foo@bar",
                                  "name@localhost", "git@localhost:repo")
    return "number_words", pick(f"{R.randint(1, 999)} {d(3)} {d(3)} rows", f"top {d(2)} of {d(3)} {d(3)}", f"{d(2)}-{d(2)}-{d(4)} build",
                                f"{R.randint(1, 999)},{d(3)},{d(3)} requests", f"{d(1)}.{d(2)}.{d(3)}.{d(2)}")


# ------------------------------------------------------------ documents

class Doc:
    def __init__(self):
        self.parts = []
        self.labels = []    # (kind, is_plant, start_char, end_char)
        self.n = 0

    def add(self, s):
        self.parts.append(s)
        self.n += len(s)

    def put(self, kind, value, plant):
        self.labels.append((kind, plant, self.n, self.n + len(value)))
        self.add(value)

    def text(self):
        return "".join(self.parts)


WORDS = ("the service returns an error when the request times out please check the logs and tell me why "
         "we deploy this config to production tomorrow can you summarise the thread below and draft a reply "
         "the customer asked about their invoice and delivery status").split()


def prose(n):
    return " ".join(R.choice(WORDS) for _ in range(n))


def pii_plant():
    k = R.randrange(7)
    return [("email", email()), ("phone", phone()), ("card", card()), ("iban", iban()), ("ssn", ssn()),
            ("ip", ipv4()), ("ip", ipv6())][k]


def mixed_items(plants):
    """a shuffled list of ('plant', kind, value) / ('look', kind, value)"""
    items = []
    for _ in range(plants):
        if R.random() < 0.5:
            k, v = pii_plant()
        else:
            k, v, _ = secret_plant()
        items.append(("plant", k, v))
    for _ in range(R.randint(1, 4)):
        k, v = lookalike()
        items.append(("look", k, v))
    R.shuffle(items)
    return items


# Secrets that only their key makes secret (a password, a random value
# for api_key): a bare one in a CSV cell or a log line is not detectable by
# anyone, so in genres without keys they are written with their key.
KEYED = {"password", "assign", "aws_secret"}


def emit(doc, item, keyed=False):
    if item[0] == "plant" and item[1] in KEYED and not keyed:
        k = R.choice(PASS_KEYS) if item[1] == "password" else \
            pick("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey") if item[1] == "aws_secret" else \
            R.choice(SECRET_KEYS)
        doc.add(k + pick("=", ": ", " = ", ":"))
    doc.put(item[1], item[2], item[0] == "plant")


def g_csv(doc, items):
    hdr = pick("id,name,contact,notes", "order_id,customer,value,comment", "ID;Name;Wert;Bemerkung")
    sep = "," if "," in hdr else ";"
    doc.add(hdr + "\n")
    for i, it in enumerate(items):
        doc.add(f"{R.randint(1, 99999)}{sep}{R.choice(FIRST).title()} {R.choice(LAST).title()}{sep}")
        q = pick('"', "")
        doc.add(q)
        emit(doc, it)
        doc.add(q + f"{sep}{prose(R.randint(0, 4))}\n")


def keyname(it):
    if it[1] in ("password",):
        return R.choice(PASS_KEYS)
    if it[0] == "plant" and it[1] in ("assign", "vendor", "aws_secret"):
        return R.choice(SECRET_KEYS) if it[1] != "aws_secret" else pick("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY")
    if it[0] == "plant":      # a value under a name that says what it is, or a neutral one
        return pick("contact", "value", "owner", "note", "details", "customer", "notify", "billing")
    return pick("NOTE", "ref", "contact", "value", "ID", "owner_email", "build_id", "checksum", "remote", "endpoint")


def g_env(doc, items):
    doc.add(pick("# .env\n", "# production settings\n", ""))
    for it in items:
        if it[1] in ("placeholder", "pw_code"):
            doc.add(pick("", "# ") )
            emit(doc, it)
            doc.add("\n")
            continue
        q = pick('"', "", "'")
        doc.add(f"{pick('export ', '')}{keyname(it).upper().replace('-', '_')}={q}")
        emit(doc, it, keyed=True)
        doc.add(q + "\n")


def g_yaml(doc, items):
    doc.add(pick("app:\n", "spec:\n  config:\n", "services:\n  api:\n    environment:\n"))
    ind = "  " * R.randint(1, 3)
    for it in items:
        if it[1] in ("placeholder", "pw_code"):
            doc.add(ind + "# ")
            emit(doc, it)
            doc.add("\n")
            continue
        q = pick('"', "", "'")
        doc.add(f"{ind}{keyname(it)}: {q}")
        emit(doc, it, keyed=True)
        doc.add(q + "\n")


def g_json(doc, items):
    doc.add("{" + pick("\n", ""))
    for i, it in enumerate(items):
        doc.add(f'  "{keyname(it) if it[1] not in ("placeholder", "pw_code") else "comment"}": "')
        emit(doc, it, keyed=True)
        doc.add('"' + ("," if i + 1 < len(items) else "") + "\n")
    doc.add("}")


def g_tool(doc, items):
    name = pick("send_email", "create_ticket", "lookup_customer", "run_sql", "update_crm")
    doc.add('{"type": "function", "name": "%s", "arguments": {' % name)
    for i, it in enumerate(items):
        doc.add(f'"{pick("to", "body", "query", "customer", "notes", "phone", "note")}": "{prose(R.randint(0, 3))} ')
        emit(doc, it)
        doc.add('"' + (", " if i + 1 < len(items) else ""))
    doc.add("}}")


def g_log(doc, items):
    for it in items:
        ts = f"2025-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}.{d(3)}Z"
        doc.add(f"{ts} {pick('INFO', 'WARN', 'ERROR', 'DEBUG')} [{pick('worker-3', 'main', 'http-nio-8080-exec-7')}] "
                f"{pick('request', 'auth', 'billing', 'sync')} {prose(R.randint(1, 4))} {pick('id=', 'value=', 'user=', '', 'src=')}")
        emit(doc, it)
        doc.add(f" pid={R.randint(100, 65000)} took={R.randint(1, 999)}ms\n")
    if R.random() < 0.5:
        doc.add("Traceback (most recent call last):\n  File \"/srv/app/handlers.py\", line %d, in handle\n"
                "    resp = client.post(url, json=payload, timeout=30)\nrequests.exceptions.ReadTimeout: "
                "HTTPSConnectionPool(host='api.%s', port=443): Read timed out. (read timeout=30)\n" % (R.randint(10, 999), R.choice(DOM)))
    else:
        doc.add("java.lang.IllegalStateException: connection pool exhausted\n\tat com.acme.db.Pool.get(Pool.java:%d)\n"
                "\tat com.acme.api.Handler.run(Handler.java:%d)\n\tat java.base/java.lang.Thread.run(Thread.java:833)\n"
                % (R.randint(10, 999), R.randint(10, 999)))


def g_sql(doc, items):
    doc.add(pick("INSERT INTO customers (id, name, contact, note) VALUES\n", "-- migration 0042\nINSERT INTO audit VALUES\n"))
    for i, it in enumerate(items):
        doc.add(f"  ({R.randint(1, 99999)}, '{R.choice(FIRST).title()}', '")
        emit(doc, it)
        doc.add("', '" + prose(R.randint(0, 3)) + "')" + ("," if i + 1 < len(items) else ";") + "\n")
    doc.add(pick("SELECT * FROM orders WHERE created_at > now() - interval '7 days';\n", ""))


def g_mail(doc, items):
    f, l = R.choice(FIRST).title(), R.choice(LAST).title()
    doc.add(f"Hi team,\n\n{prose(R.randint(6, 15))}.\n\n")
    for it in items:
        doc.add(pick("See: ", "FYI ", "details: ", "- ", "The value is ") )
        emit(doc, it)
        doc.add(pick(".\n", "\n", " - thanks\n"))
    doc.add(f"\nBest regards,\n{f} {l}\n{pick('Senior Engineer', 'Account Manager', 'CTO')}\n")
    doc.add(f"\nOn {pick('Mon', 'Tue', 'Wed')}, {R.randint(1, 28)} {pick('May', 'Jun', 'Jul')} 2025 at {R.randint(1, 12)}:{R.randint(10, 59)}, "
            f"{R.choice(FIRST).title()} wrote:\n> {prose(R.randint(5, 12))}\n> {prose(R.randint(3, 8))}\n")


def g_code(doc, items):
    lang = R.randrange(4)
    doc.add(["import os\nimport requests\n\n", "const axios = require('axios');\n\n", "package main\n\nimport \"fmt\"\n\n",
             "public class Client {\n"][lang])
    for it in items:
        if it[1] == "pw_code":
            doc.add("    ")
            emit(doc, it)
            doc.add("\n")
            continue
        k = keyname(it)
        k = k if not (lang == 3) else k.upper().replace("-", "_")
        q = pick('"', "'") if lang in (0, 1) else '"'
        pre = ["%s = " % k.replace("-", "_"), "const %s = " % k.replace("-", "_"), "\t%s := " % k.replace("-", "_"),
               "    private static final String %s = " % k][lang]
        if it[1] == "placeholder":
            pre = ["# ", "// ", "// ", "    // "][lang]
            q = ""
        doc.add(pre + q)
        emit(doc, it, keyed=it[1] != "placeholder")
        doc.add(q + (";" if lang in (1, 3) and it[1] != "placeholder" else "") + "\n")
    doc.add(["\nresp = requests.get(URL, timeout=10)\n", "\nmodule.exports = { client };\n",
             "\nfunc main() { fmt.Println(\"ok\") }\n", "}\n"][lang])


GENRES = [("csv", g_csv), ("env", g_env), ("yaml", g_yaml), ("json", g_json), ("tool_args", g_tool),
          ("log", g_log), ("sql", g_sql), ("email", g_mail), ("code", g_code)]


def signature_doc(doc):
    """an e-mail signature with a labelled phone number (M:, T:, Tel., ...)"""
    doc.add(f"{prose(R.randint(5, 12))}\n\n--\n{R.choice(FIRST).title()} {R.choice(LAST).title()}\n")
    doc.add(pick("M: ", "T: ", "Tel. ", "Mobile: ", "Phone ", "Direct: ", "Tel: ", "Mob. "))
    doc.put("phone", phone(), True)
    doc.add(f"\n{R.choice(DOM)}\n")


def wrapped_doc(doc):
    """a card or IBAN wrapped across lines, as copied from a PDF or psql"""
    v = card() if R.random() < 0.5 else iban()
    if " " not in v:
        cut = R.randint(4, len(v) - 4)
    else:
        spaces = [i for i, c in enumerate(v) if c == " "]
        cut = R.choice(spaces)
    ind = " " * R.randint(0, 8)
    head = pick("Card number: ", "IBAN: ", "Payment details ", "account ")
    doc.add(head)
    start = doc.n
    first, rest = v[:cut].rstrip(), v[cut:].lstrip()
    doc.add(first + "\n" + ind)
    doc.add(rest)
    doc.labels.append(("wrapped_" + ("iban" if v[:2].isalpha() else "card"), True, start, doc.n))
    doc.add(f"\n{prose(R.randint(3, 8))}\n")


def make_docs():
    docs = []
    for i in range(NDOCS):
        doc = Doc()
        r = R.random()
        if r < 0.06:
            signature_doc(doc)
            genre = "signature"
        elif r < 0.10:
            wrapped_doc(doc)
            genre = "wrapped"
        else:
            genre, fn = R.choice(GENRES)
            plants = 0 if R.random() < 0.4 else R.randint(1, 3)
            fn(doc, mixed_items(plants))
        docs.append((genre, doc))
    return docs


def run(binary, texts):
    inp = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run([binary], input=inp.encode(), stdout=subprocess.PIPE, check=True).stdout.decode()
    res = []
    for t, line in zip(texts, out.splitlines()):
        b2c, bpos = {}, 0
        for ci, ch in enumerate(t):
            b2c[bpos] = ci
            bpos += len(ch.encode())
        b2c[bpos] = len(t)
        spans = []
        for p in line.split()[1:]:
            ty, s, e = p.rsplit(":", 2)
            spans.append((ty, b2c.get(int(s), 0), b2c.get(int(e), len(t))))
        res.append(spans)
    return res


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/eval/eval"
    docs = make_docs()
    texts = [d.text() for _, d in docs]
    res = run(binary, texts)
    rec = collections.defaultdict(lambda: [0, 0])      # kind -> [caught, total]
    look = collections.defaultdict(lambda: [0, 0])     # kind -> [altered, total]
    clean_docs = clean_altered = 0
    stray = 0                                          # findings on neither plant nor look-alike
    misses, alters = [], []
    for (genre, doc), spans in zip(docs, res):
        t = doc.text()
        has_plant = any(p for _, p, _, _ in doc.labels)
        for kind, plant, s, e in doc.labels:
            hit = [ty for ty, fs, fe in spans if fs < e and s < fe]
            if plant:
                cls = KIND_CLASS.get(kind.replace("wrapped_", "").replace("card", "card"), SECRET)
                if kind.startswith("wrapped_"):
                    cls = PII
                ok = any(ty in cls for ty in hit)
                rec[kind][0] += ok
                rec[kind][1] += 1
                if not ok:
                    misses.append((kind, genre, t[max(0, s - 40):e + 20], hit))
            else:
                look[kind][0] += bool(hit)
                look[kind][1] += 1
                if hit:
                    alters.append((kind, genre, t[max(0, s - 40):e + 10], hit))
        for ty, fs, fe in spans:
            if not any(fs < e and s < fe for _, _, s, e in doc.labels):
                stray += 1
                alters.append(("(filler)", genre, t[fs:fe], [ty]))
        if not has_plant:
            clean_docs += 1
            clean_altered += bool(spans)
    tot_c = sum(v[0] for v in rec.values())
    tot_p = sum(v[1] for v in rec.values())
    tot_a = sum(v[0] for v in look.values())
    tot_l = sum(v[1] for v in look.values())
    print(f"\n## Generated pasted content (tests/eval/gen.py, seed {SEED}, {NDOCS} documents)\n")
    print("| planted kind | caught | planted | recall |")
    print("|---|---|---|---|")
    for k in sorted(rec):
        c, n = rec[k]
        print(f"| {k} | {c} | {n} | {c / n:.3f} |")
    print(f"| **all** | {tot_c} | {tot_p} | {tot_c / tot_p:.3f} |")
    print("\n| look-alike kind | altered | instances | rate |")
    print("|---|---|---|---|")
    for k in sorted(look):
        a, n = look[k]
        print(f"| {k} | {a} | {n} | {a / n:.3f} |")
    print(f"| **all** | {tot_a} | {tot_l} | {tot_a / tot_l:.3f} |")
    print(f"\nHeadline (seed {SEED}): recall {tot_c / tot_p:.3f} of {tot_p} planted values "
          f"[target >= 0.97: {'PASS' if tot_c / tot_p >= 0.97 else 'MISS'}]; look-alike instances altered "
          f"{tot_a / tot_l:.3f} of {tot_l}; documents with look-alikes only altered or blocked "
          f"{clean_altered / max(clean_docs, 1):.3f} of {clean_docs} [target <= 0.02: "
          f"{'PASS' if clean_altered / max(clean_docs, 1) <= 0.02 and tot_a / tot_l <= 0.02 else 'MISS'}]; "
          f"{stray} findings on filler text.")
    if os.environ.get("VIGIL_GEN_DUMP"):
        for m in misses:
            print("   MISS %s (%s): %r found=%s" % m)
        for a in alters:
            print("   ALTERED %s (%s): %r as %s" % a)


if __name__ == "__main__":
    main()
