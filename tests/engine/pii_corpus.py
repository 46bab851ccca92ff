"""A labelled PII corpus written for this project (nothing in it is real or downloaded).

POSITIVES: for every kind the scrubber claims, at least 40 values in the contexts they turn up in
(chat questions, support tickets, logs, configs, JSON, SQL, e-mails, code); each case names the
value that must be replaced. Values are fictitious: card numbers completed with the Luhn digit
(the brands' public test numbers among them), IBANs and SSNs made to their rules, phone numbers made
up (in the fictional ranges where a region has them), IP addresses mostly from the documentation
ranges, keys of random characters in each provider's format.

NEGATIVES: near misses that must be left alone, by category: version strings, order ids that pass
the Luhn check, timestamps, measurements, hashes, UUIDs, ports, prices, counts, placeholders, code.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

_RANDOM = random.Random(19)


@dataclass(frozen=True)
class Case:
    """A text holding one sensitive ``value`` of ``kind``."""

    kind: str
    text: str
    value: str


def _cases(kind: str, contexts: list[str], values: list[str]) -> list[Case]:
    assert len(contexts) == len(values), (kind, len(contexts), len(values))
    return [Case(kind, context.replace("{}", value), value) for context, value in zip(contexts, values)]


def _chars(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_RANDOM.choice(alphabet) for _ in range(n))


def _digits(n: int) -> str:
    return _chars(n, string.digits)


def luhn_completed(body: str) -> str:
    """``body`` and the Luhn check digit that makes it pass."""
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str(-total % 10)


def iban(country: str, bban: str) -> str:
    """The IBAN of ``bban`` in ``country`` with its ISO 7064 check digits."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def _grouped(number: str, sizes: tuple[int, ...], sep: str = " ") -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(number[i:i + size])
        i += size
    return sep.join(parts)


# --- credit cards -------------------------------------------------------------------------------
_CARD_NUMBERS = [
    "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000",
    "4012888888881881", "5105105105105100", "371449635398431", "2223003122003222", "36227206271667",
    "6011000990139424", "4242424242424242", "5200828282828210", "4000056655665556", "3566002020360505",
] + [luhn_completed(prefix + _digits(length - len(prefix) - 1)) for prefix, length in [
    ("4", 16), ("4", 16), ("4", 16), ("4", 16), ("4", 13), ("51", 16), ("52", 16), ("53", 16), ("54", 16),
    ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("644", 16),
    ("3528", 16), ("3589", 16), ("36", 14), ("300", 14), ("62", 16), ("4", 16), ("51", 16), ("37", 15),
    ("4", 16), ("55", 16), ("6011", 16), ("4", 16), ("53", 16)]]


def _card_form(number: str, i: int) -> str:
    """Written in groups (spaces or dashes) for even i, in one block for odd i."""
    if i % 2:
        return number
    sizes = {15: (4, 6, 5), 14: (4, 6, 4), 13: (4, 3, 3, 3)}.get(len(number), (4, 4, 4, 4))
    return _grouped(number, sizes, "-" if i % 4 == 2 else " ")


_CARD_CONTEXTS = [
    "paid with {} yesterday and the order still shows pending",
    "Customer read out her card number {} exp 09/27 over chat",
    "refund to the visa {} please, it was charged twice",
    "Card: {}  CVV: 123  Exp: 04/28",
    '{"card_number": "{}", "exp_month": 4, "exp_year": 2028}',
    "card={}",
    "why was my mastercard {} declined at checkout?",
    "Billing card on file {} belongs to the old account",
    "the amex {} was charged $1,249.00 on 2026-03-02",
    "SELECT * FROM payments WHERE card_pan = '{}'",
    "Hi, I entered {} as my credit card but the form says invalid",
    "payment method: card {} (debit)",
    "<td>Card</td><td>{}</td>",
    "please charge {} for the renewal",
    "Discover card {} expires 11/26",
    "count failed payments where card.number = '{}' last 7 days",
    "He pasted his full card {} into the support form",
    "ERROR payment declined pan={}",
    "new credit card: {}, same billing address",
    "jcb {} used at the Osaka store",
    "I typed {} but my debit card was rejected",
    "From: billing\nYour card {} will be charged on the 1st.",
    "- card: {}\n- exp: 02/29",
    "Diners Club card {} is on the corporate account",
    "my visa is {}, can you update it?",
    "credit_card_number,{},Jane,2027-01",
    "charged card ending... actually the full number {} appears in the log",
    "payment: {} / 05/27 / 442",
    "where payment.card = '{}' and status = 'failed'",
    "CARD NUMBER {}",
    "Kartennummer / card no. {}",
    "stripe test card {} works in sandbox",
    "amex card {} needs the 4-digit CID",
    "numéro de carte bancaire (credit card) {}",
    "Paid via card {} on the kiosk",
    'payload = {"card": "{}", "cvc": "314"}',
    "the mastercard number {} shows twice in the export",
    "cc card {} exp 10/30",
    "visa debit {} was blocked by fraud rules",
    "she gave card {} and expiry 12/27",
    "debit card {} linked to the wallet",
    "re-run the payment with card {}",
    "billing: card {} (primary)",
    "unionpay card {} failed 3DS",
    "card no {} cardholder J DOE",
]
CARDS = _cases("credit_card", _CARD_CONTEXTS, [_card_form(n, i) for i, n in enumerate(_CARD_NUMBERS)])

# --- IBANs --------------------------------------------------------------------------------------
_IBAN_FORMATS = [  # country, BBAN alphabet per position: A letter, N digit, C letter or digit
    ("GB", "AAAANNNNNNNNNNNNNN"), ("DE", "NNNNNNNNNNNNNNNNNN"), ("FR", "NNNNNNNNNNCCCCCCCCCCCNN"),
    ("ES", "NNNNNNNNNNNNNNNNNNNN"), ("IT", "ANNNNNNNNNNCCCCCCCCCCCC"), ("NL", "AAAANNNNNNNNNN"),
    ("BE", "NNNNNNNNNNNN"), ("CH", "NNNNNCCCCCCCCCCCC"), ("AT", "NNNNNNNNNNNNNNNN"), ("PL", "N" * 24),
    ("SE", "N" * 20), ("IE", "AAAANNNNNNNNNNNNNN"), ("PT", "N" * 21), ("DK", "N" * 14), ("FI", "N" * 14),
]
_ALPHABETS = {"A": string.ascii_uppercase, "N": string.digits, "C": string.ascii_uppercase + string.digits}
_IBANS = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
          "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957"] + [
    iban(country, "".join(_RANDOM.choice(_ALPHABETS[c]) for c in layout))
    for country, layout in _IBAN_FORMATS * 3][:39]


def _iban_form(value: str, i: int) -> str:
    """Compact for even i, in groups of four for odd i (as printed on statements)."""
    return value if i % 2 == 0 else " ".join(value[j:j + 4] for j in range(0, len(value), 4))


_IBAN_CONTEXTS = [
    "please wire the deposit to IBAN {} by Friday",
    "IBAN: {}",
    "Bank details - {} - reference INV-2291",
    '{"iban": "{}", "bic": "DEUTDEFF"}',
    "refund the customer to {} (account holder J. Doe)",
    "Kontoverbindung: {}",
    "where payout.iban = '{}' and status = 'failed'",
    "my iban is {} can you check why the transfer bounced",
    "Beneficiary account {}",
    "SEPA transfer to {} returned AC04",
    "RIB / IBAN {}",
    "- iban: {}\n- bic: BNPAFRPP",
    "Payout account changed to {} yesterday",
    "transfer 250 EUR to {}",
    "the vendor's IBAN {} is on the invoice",
    "IBAN {} BIC INGBNL2A",
    "updated bank account {} for payroll",
    "Salary goes to {}",
    "direct debit mandate for {}",
    "count refunds where bank.iban equals '{}'",
    "<iban>{}</iban>",
    "account_number={}",
    "Coordonnées bancaires : {}",
    "send the money to {} not the old account",
    "iban,{},EUR,active",
    "wrong IBAN entered: {}",
    "the landlord asked for rent to {}",
    "ERROR sepa.validate iban={} bank unreachable",
    "Customer: please use {} for the chargeback",
    "IBAN {} (Konto bei der Sparkasse)",
    "conto corrente IBAN {}",
    "New payee: {}",
    "Our bank account: {}",
    "pay to: {}",
    "standing order from {}",
    "iban={}&amount=120.00",
    "reimburse travel to {}",
    "my bank changed, new iban {}",
    "Payment to {} was flagged",
    "tenant iban {} on file",
    "IBAN du fournisseur : {}",
    "bank transfer to {} pending",
    "refund destination {}",
    "Supplier {} - net 30",
    "account {} (savings)",
]
IBANS = _cases("iban", _IBAN_CONTEXTS, [_iban_form(v, i) for i, v in enumerate(_IBANS)])

# --- US social security numbers -----------------------------------------------------------------


def _ssn() -> str:
    area = _RANDOM.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{_RANDOM.randint(1, 99):02d}-{_RANDOM.randint(1, 9999):04d}"


_SSNS = [_ssn() for _ in range(45)]
_SSN_CONTEXTS = [  # "{}" dashed; "{spaced}" and "{digits}" other forms that need the word before them
    "SSN: {}",
    "my social security number is {}",
    "Applicant SSN {} DOB 1984-02-11",
    '{"ssn": "{}", "name": "J. Doe"}',
    "where employee.ssn = '{}'",
    "ssn={}",
    "Please verify SSN {} before onboarding",
    "W-2 shows {} as the employee's SSN",
    "social security no. {}",
    "SSN {} was entered twice on the form",
    "taxpayer id (SSN): {}",
    "<ssn>{}</ssn>",
    "ssn,{},active",
    "Her SSN is {}.",
    "patient ssn {} on the intake sheet",
    "SS# {}",
    "the SSN field had {} in it",
    "- ssn: {}",
    "lookup ssn {} failed",
    "employee {} (SSN) missing from payroll",
    "My SSN {} shows on the report",
    "SSN - {}",
    "Social Security Number: {}",
    "verify {} is his ssn",
    "background check for SSN {}",
    "ssn: {spaced}",
    "SSN {spaced}",
    "social security number {spaced}",
    "ssn {digits}",
    "SSN: {digits}",
    "my ssn is {digits}",
    "social security {digits}",
    '"ssn": "{digits}"',
    "ssn={digits}",
    "SSN#{digits}",
    "social security no {spaced}",
    "the SSN {digits} was rejected",
    "SSN {spaced} (spaces)",
    "ssn number {digits}",
    "applicant SSN {digits}",
    "SSN {dotted}",
    "ssn {dotted}",
    "social security {dotted}",
    "Enter SSN: {digits}",
    "SSN on file {spaced}",
]


def _ssn_case(context: str, dashed: str) -> Case:
    forms = {"{spaced}": dashed.replace("-", " "), "{digits}": dashed.replace("-", ""),
             "{dotted}": dashed.replace("-", ".")}
    for placeholder, value in forms.items():
        if placeholder in context:
            return Case("ssn", context.replace(placeholder, value), value)
    return Case("ssn", context.replace("{}", dashed), dashed)


SSNS = [_ssn_case(c, v) for c, v in zip(_SSN_CONTEXTS, _SSNS)]

# --- IP addresses -------------------------------------------------------------------------------
_IPS = [
    "192.168.10.23", "10.0.0.5", "172.16.254.1", "203.0.113.7", "198.51.100.23", "192.0.2.146", "8.8.8.8",
    "1.1.1.1", "100.64.12.9", "10.12.0.0/16", "203.0.113.250", "127.0.0.1", "169.254.169.254", "198.51.100.2",
    "192.0.2.1", "172.31.40.17", "10.240.3.77", "203.0.113.99", "192.168.1.1", "45.33.32.156", "198.18.0.12",
    "::1", "2606:4700:4700::1111", "2001:4860:4860::8888", "2001:db8::1", "fe80::1ff:fe23:4567:890a",
    "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:192.0.2.128", "fe80::1%eth0", "2001:db8:85a3::8a2e:370:7334",
    "2001:db8::/32", "2a00:1450:4001:81c::200e", "2001:db8:0:0:1:0:0:1", "fd00::1234", "2001:db8::ff00:42:8329",
    "2001:db8:1234::", "10.1.2.3", "192.0.2.55", "2620:fe::fe", "203.0.113.12", "2001:db8:aaaa:bbbb::12",
    "198.51.100.77", "2001:db8:10::1", "192.168.0.200", "2001:db8::2",
]
_IP_CONTEXTS = [
    "client {} connected",
    "Why did 500s spike from {} last night?",
    "ssh admin@{} -p 2222",
    "count requests where client.ip = '{}' last 24 hours",
    '{"client_ip": "{}", "status": 403}',
    "X-Forwarded-For: {}",
    "GET /login from {} returned 401",
    "allowlist {} in the firewall",
    "server at {} is down",
    "route {} via the vpn",
    "block {} it keeps scanning us",
    "curl http://{}:8080/health",
    "[2026-03-01 12:00:01] sshd: Failed password for root from {} port 52211",
    "nameserver {}",
    "the metadata endpoint {} was queried",
    "ping {} shows 40% loss",
    "where source.ip equals {}",
    "upstream {}:5432 refused the connection",
    "my home IP is {} can you unban it",
    "nginx: connect() to {}:80 failed",
    "DNS resolves to {}",
    "listen on {} port 8080",
    "IPv6 resolver {}",
    "dig AAAA example.com returned {}",
    "bind the service to [{}]:9000",
    "remote_addr={} user_agent=curl/8.4",
    "traffic from {} dropped",
    "host {} is unreachable",
    "peer {} closed the stream",
    "allow {} in the security group",
    "ip: {}",
    "resolved to {} on the edge",
    "inet6 {} scope global",
    "from {} via proxy",
    "src={} dst=unknown",
    "the VPN assigned {}",
    "ip addr add {} dev eth0",
    "Connection from {} closed",
    "requests by country where ip = '{}'",
    "rate limit hit for {}",
    "gateway {}",
    "failed logins from {}",
    "upstream: [{}]:443",
    "client IP = \"{}\", sorted by hostname",
    "next hop {}",
]
IPS = _cases("ip_address", _IP_CONTEXTS, _IPS)

# --- e-mail addresses ---------------------------------------------------------------------------
_EMAILS = [
    "jane.doe@example.com", "j.smith+billing@sub.example-corp.com", "ANA.LOPEZ@EXAMPLE.ORG", "bob_92@mail.example.net",
    "support-team@example.io", "first.last@example.co.uk", "o'brien@example.ie", "user123@example.dev",
    "li.wei@example.cn", "m.muller@example.de", "priya.k@example.in", "noreply@notifications.example.com",
    "x@example.fr", "test.user+tag+sorting@example.com", "a-b-c@ex-ample.com", "sales@example.com.au",
    "pierre.dupont@example.fr", "hr@corp.example.org", "devops@example.cloud", "ceo@startup.example.ai",
    "kim.lee@example.kr", "yuki.tanaka@example.jp", "accounts.payable@example.biz", "jdoe@example.edu",
    "dev+ci@example.app", "anna.svensson@example.se", "lars@example.no", "helpdesk@it.example.com",
    "finance.team@example.co", "maria.garcia@example.es", "tom@example.museum", "sam.o@example.info",
    "security@example.org", "johnny.appleseed@example.com", "r.k@example.nl", "ops-alerts@example.net",
    "paula@example.com.br", "chen_li88@example.com", "eve@example.travel", "admin@shop.example.store",
    "jane@example.com", "mike.o@example.us", "z.zhang@example.hk", "contact@example.ch", "olga@example.pl",
]
_EMAIL_CONTEXTS = [
    "Contact {} about it",
    "mail: {}.",
    "count errors where user.email = '{}' this week",
    '{"email": "{}", "plan": "pro"}',
    "From: Jane <{}>",
    "mailto:{}",
    "please cc {} on the ticket",
    "login failed for {}",
    "user {} reset the password",
    "send the invoice to {}",
    "Reply-To: {}",
    "where customer.email equals '{}'",
    "ERROR smtp: 550 mailbox unavailable for {}",
    "email,{},active",
    "ping me at {} if it breaks again",
    "account owner: {}",
    "<a href=\"mailto:{}\">write to us</a>",
    "invited {} to the workspace",
    "the report goes to {} every Monday",
    "unsubscribe {} from the digest",
    "- owner: {}",
    "git config user.email {}",
    "signed up as {}!",
    "bounced: {} (hard bounce)",
    "To: {}; Cc: team",
    "who is {}?",
    "escalate to {}",
    "my email is {} and I can't log in",
    "new lead {} from the webinar",
    "email={}&source=ads",
    "Subject: refund\nFrom: {}",
    "SELECT * FROM users WHERE email = '{}'",
    "The address {} is not verified",
    "forward to {} asap",
    "owner {} approved the change",
    "sent to {} at 09:14",
    "{} wrote: please fix",
    "alerts go to {}",
    "billing contact: {}",
    "the customer ({}) asked for a refund",
    "email me: {}",
    "assign to {}",
    "registered with {} in 2024",
    "notify {} on failure",
    "user_email: \"{}\"",
]
EMAILS = _cases("email", _EMAIL_CONTEXTS, _EMAILS)

# --- phone numbers (regions US, GB, DE, FR, IN, and any with +) ----------------------------------
_PHONES = [
    "(415) 555-0100", "(415)555-0100", "415-555-0123", "415.555.0142", "+1 415 555 0100", "+1-212-555-0175",
    "1-800-555-0199", "+14155550100", "4155550100", "212 555 0147", "020 7946 0958", "+44 20 7946 0958",
    "0161 496 0000", "0113 496 0123", "+44 117 496 0456", "+44 7911 123456", "030 12345678", "+49 30 12345678",
    "089 1234567", "+49 151 12345678", "0151 12345678", "+49 (0)40 822 3344", "01 23 45 67 89",
    "+33 1 23 45 67 89", "06 12 34 56 78", "+33 6 12 34 56 78", "+33 (0)4 91 12 34 56", "+91 98765 43210",
    "098765 43210", "022 2345 6789", "+91 22 2345 6789", "+91-80-4123-4567", "(212) 555-0147", "646-555-0111",
    "+1 (617) 555-0133", "718.555.0122", "+61 2 9374 4000", "+81 3-1234-5678", "+55 11 91234-5678",
    "0044 20 7946 0958", "07911 123456", "(312) 555-0190", "+1 646 555 0111", "6175550133", "+353 1 234 5678",
]
_PHONE_CONTEXTS = [
    "call {} now",
    "Call me at {} tomorrow",
    "my number is {}",
    "phone: {}",
    '{"phone": "{}", "verified": false}',
    "Tel {} (office)",
    "text me on {}",
    "customer left a voicemail from {}",
    "reach the on-call at {}",
    "mobile {}",
    "UK office {}",
    "London desk: {}",
    "Manchester branch {}",
    "Leeds support line {}",
    "Bristol {}",
    "WhatsApp {}",
    "Berlin Büro {}",
    "Telefon {}",
    "München {}",
    "Handy {}",
    "mobil: {}",
    "Hamburg office {}",
    "Paris, tél. {}",
    "standard {}",
    "portable {}",
    "appelez le {}",
    "Marseille {}",
    "WhatsApp India {}",
    "call the Delhi team on {}",
    "Mumbai office {}",
    "India support {}",
    "Bengaluru desk {}",
    "fax {}",
    "landline or {}",
    "Boston HQ {}",
    "NY office {}",
    "Sydney {}",
    "Tokyo {}",
    "São Paulo {}",
    "from abroad dial {}",
    "mobile: {}",
    "Chicago line {}",
    "sms {}",
    "phone number {}",
    "Dublin {}",
]
PHONES = _cases("phone", _PHONE_CONTEXTS, _PHONES)

# --- API keys, tokens and secrets ---------------------------------------------------------------
_URLSAFE = string.ascii_letters + string.digits + "_-"
_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ." + _chars(43, _URLSAFE)
_PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_chars(64) for _ in range(3)) + "\n-----END RSA PRIVATE KEY-----"
_KEYS = [
    ("OPENAI_API_KEY={}", "sk-proj-" + _chars(48, _URLSAFE)),
    ("key {}", "sk-ant-api03-" + _chars(40, _URLSAFE)),
    ("export OPENAI_API_KEY='{}'", "sk-" + _chars(48)),
    ("langsmith {}", "lsv2_pt_" + _chars(32, string.hexdigits.lower()) + "_" + _chars(10, string.hexdigits.lower())),
    ("aws {}", "AKIA" + _chars(16, string.ascii_uppercase + string.digits)),
    ("AWS_ACCESS_KEY_ID: {}", "AKIA" + _chars(16, string.ascii_uppercase + string.digits)),
    ("token {}", "ghp_" + _chars(36)),
    ("git clone https://{}@github.com/acme/app.git", "ghp_" + _chars(36)),
    ("GITHUB_TOKEN={}", "github_pat_" + _chars(22) + "_" + _chars(59)),
    ("slack {}", "xoxb-" + _digits(12) + "-" + _digits(13) + "-" + _chars(24)),
    ("stripe key {}", "sk_live_" + _chars(24)),
    ("STRIPE_SECRET_KEY={}", "sk_test_" + _chars(24)),
    ("maps key {}", "AIza" + _chars(35, _URLSAFE)),
    ("Authorization: Bearer {}", _JWT),
    ("id_token {}", _JWT[:-4] + _chars(4, _URLSAFE)),
    ("Authorization: Bearer {}", _chars(40, _URLSAFE)),
    ("curl -H 'Authorization: bearer {}' https://api.example.com", _chars(32)),
    ("Authorization: Basic {}", "dXNlcjpzM2NyZXQtcGFzcw=="),
    ("HF_TOKEN={}", "hf_" + _chars(34)),
    ("gitlab {}", "glpat-" + _chars(20, _URLSAFE)),
    ("//registry.npmjs.org/:_authToken={}", "npm_" + _chars(36)),
    ("deploy key:\n{}\n", _PEM),
    ("AWS_SECRET_ACCESS_KEY={}", _chars(40, string.ascii_letters + string.digits + "/+")),
    ("aws_secret_access_key = {}", _chars(40, string.ascii_letters + string.digits + "/+")),
    ("client_secret={}", _chars(32)),
    ('{"client_secret": "{}"}', _chars(40, _URLSAFE)),
    ("DB_PASSWORD={}", "Tr0ub4dor&3x"),
    ("POSTGRES_PASSWORD: {}", _chars(16)),
    ("password: {}", "hunter2hunter2"),
    ('{"password": "{}"}', "correct-horse-battery"),
    ("password={}", "S3cr3t!2026"),
    ("MYSQL_ROOT_PASSWORD={}", _chars(20)),
    ("api_key: {}", _chars(32, string.hexdigits.lower())),
    ("X-API-Key: {}", _chars(40)),
    ("SENDGRID_API_KEY={}", "SG." + _chars(22, _URLSAFE) + "." + _chars(43, _URLSAFE)),
    ("secret: {}", _chars(24)),
    ("JWT_SECRET={}", _chars(48)),
    ("DJANGO_SECRET_KEY='{}'", _chars(50)),
    ("REDIS_PASSWORD={}", _chars(18)),
    ("access_token={}", _chars(40, _URLSAFE)),
    ('"refresh_token": "{}"', _chars(64, _URLSAFE)),
    ("auth_token: {}", _chars(32)),
    ("passwd={}", "pa55w0rd!!"),
    ("smtp password: {}", "mailpass-2026"),
    ("my password: {}", "Summer2026!"),
    ("PRIVATE_KEY={}", _chars(64, string.hexdigits.lower())),
    ("SECRET_KEY_BASE={}", _chars(64, string.hexdigits.lower())),
    ("credentials: {}", _chars(28)),
    ("TWILIO_AUTH_TOKEN={}", _chars(32, string.hexdigits.lower())),
    ("DB_PWD={}", "letmein-42"),
    ("DATABASE_URL=postgres://app:{}@db.internal:5432/app", "hunter2hunter2"),
    ("mongodb://admin:{}@cluster0.example.net/test", _chars(16)),
    ("REDIS_URL=redis://:{}@cache:6379/0", _chars(24)),
]
KEYS = _cases("api_key", [c for c, _ in _KEYS], [v for _, v in _KEYS])

POSITIVES: list[Case] = CARDS + IBANS + SSNS + IPS + EMAILS + PHONES + KEYS

# --- near misses --------------------------------------------------------------------------------


def _luhn_order_ids(n: int) -> list[str]:
    """Random 16-digit ids in one block that pass the Luhn check and start like a card."""
    prefixes = [_RANDOM.choice(["4", "51", "53", "55", "6011"]) for _ in range(n)]
    return [luhn_completed(prefix + _digits(15 - len(prefix))) for prefix in prefixes]


_ORDER_IDS = _luhn_order_ids(30)
NEGATIVES: list[tuple[str, str]] = [("order id", text.replace("{}", oid)) for text, oid in zip([
    "order {} shipped", "Order #{} was refunded", "tracking number {}", "invoice {} is overdue",
    '{"order_id": "{}", "status": "paid"}', "where order.id = '{}'", "order_id={}", "ticket {} closed",
    "shipment {} left the warehouse", "ref {}", "transaction id {}", "sku {} out of stock",
    "account id {} merged", "customer id {}", "request {} timed out", "job {} finished",
    "batch {} imported", "parcel {} delivered", "booking {} confirmed", "reservation {}",
    "order number {}", "receipt no. {}", "case {} escalated", "event id {}", "cart {} abandoned",
    "subscription {} renewed", "po number {}", "return {} approved", "claim {} opened", "order {} in transit",
], _ORDER_IDS)] + [(category, text) for category, texts in {
    "version": [
        "version 1.2.3.4", "v1.2.3.4", "app_version web-3.8.2, release 1.2.3", "upgrade to version 10.0.19041.1",
        "pip install numpy==1.26.4.1", "firmware 2.4.1.12 is out", "build 5.1.0.233", "Chrome/120.0.6099.109 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0", "kernel 5.15.0.91", "release 2026.3.1.4",
        "node v18.19.0 and npm 10.2.3", "requires python>=3.11.4", "SDK 4.2.0.1 changelog", "version: 1.0.0.0",
        "rev 3.2.1.0 fixes the leak", "patch 8.1.2.5 applied", "ver 7.0.0.1", "lodash@4.17.21", "tls.version TLSv1.3",
        "section 4.2.1.3 of the spec", "OID 1.3.6.1.4.1.311.21.7", "see chapter 2.3.4.1", "semver 2.14.4-beta.1",
        "1.2.3.4.5 is a five-part version", "~=2.2.366", "django>=4.2.11", "Version 12.0.1.0 (beta)",
        "upgraded from v3.4.5.6 to v3.4.5.7",
    ],
    "timestamp": [
        "ts 2026-10-16T02:38:21.559Z and date 2026-10-16", "meeting at 10:30:00 in room 12", "2026-03-01 12:00:01,123",
        "started 14:05:33.120 ended 14:06:01.004", "epoch 1760582301", "1760582301559 ms since epoch",
        "Sat, 01 Mar 2026 12:00:01 GMT", "20260301T120001Z", "2026/03/01 12:00", "duration 01:02:03:04",
        "uptime 12:34:56", "cron 0 2 * * *", "2026-03-01T12:00:01+05:30", "Q1 2026: 2026-01-01 to 2026-03-31",
        "at 23:59:59.999999", "timestamp=1709294401", "date 01/03/2026", "week 2026-W09", "the 12:30:45 train",
        "log 2026-03-01 12:00:01.123456 INFO",
    ],
    "measurement": [
        "latency 1006 ms over 7200 s, p95 duration_ms", "buffer sizes 256 512 1024", "powers of two: 256 512 1024 2048",
        "1920x1080 at 60 Hz", "resolution 3840 x 2160", "weights 12.5 kg, 13.1 kg", "3.14159265358979",
        "memory 16384 MB, swap 8192 MB", "disk 512 GB, 1024 GB, 2048 GB", "temperature 21.5 C at 45% humidity",
        "coordinates 37.7749, -122.4194", "lat 51.5074 lon -0.1278", "batch sizes 128 256 512", "1 024 000 bytes",
        "grid 100 200 300 400", "count 12345678 rows; id 0000000000000000", "p50 12 ms, p99 480 ms, max 2300 ms",
        "tokens 1024 2048 4096 8192", "sizes 64 128 256 512 1024", "speed 299 792 458 m/s",
        "population 8 336 817", "distance 384 400 km", "shards 16 32 64", "bitrate 128 kbps 320 kbps",
        "matrix [[1, 2], [3, 4]]",
    ],
    "hash": [
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "md5 5d41402abc4b2a76b9719d911017c592", "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "git sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "etag \"33a64df551425fcc55e4d42a148795d9f25f89d4\"",
        "trace.id is '4bf92f3577b34da6' and session sess_8a9db3eb6a", "span 00f067aa0ba902b7",
        "fingerprint 43:51:43:a1:b5:fc:8b:b7:0a:3a:a9:b1:0f:66:73:a8",
        "digest sha1:2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        "blob 8ab686eafeb1f44702738c8b0f24f2567c36da6d", "checksum 1a79a4d60de6718e8e5b326e338ae533",
        "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "hash 0x7fffffffffffffff", "crc32 0x1c291ca3", "nonce 4bf92f3577b34da6a3ce929d0e0e4736",
    ],
    "uuid": [
        "request 123e4567-e89b-12d3-a456-426614174000 failed", "uuid 550e8400-e29b-41d4-a716-446655440000",
        '{"id": "f47ac10b-58cc-4372-a567-0e02b2c3d479"}', "where session.id = '6fa459ea-ee8a-3ca4-894e-db77e160355e'",
        "trace 0af7651916cd43dd8448eb211c80319c", "user 9b2c1d7e-3f4a-4b5c-8d9e-0f1a2b3c4d5e logged in",
        "run_id=01HQZX3K5V8JY2N4W6T0R9P7M2", "ulid 01ARZ3NDEKTSV4RRFFQ69G5FAV", "ksuid 0ujtsYcgvSTl8PAuAdqWYSMnLOv",
        "object 3fa85f64-5717-4562-b3fc-2c963f66afa6 created",
    ],
    "port": [
        "localhost:8080", "listen :5432", "redis://localhost:6379/0", "ports 80, 443 and 8443 are open",
        "http://localhost:3000/api", "EXPOSE 8000", "docker run -p 8080:80 nginx",
        "kafka:9092,kafka2:9093", "ssh -p 2222 deploy@bastion", "port 65535 is the max", "service on :9000/metrics",
        "host.docker.internal:5000", "bind :8081", "connect db:5432/app", "range 30000-32767",
    ],
    "price": [
        "total $1,249.00 on 2026-03-02", "price 19.99 EUR", "cost: $0.0025 per 1K tokens", "€1.234.567,89",
        "revenue 12,345,678.90 USD", "£49.99/month", "budget 2 500 000 EUR", "₹1,23,456.78", "refund of 3.50",
        "amount_cents 129900", "order.total_usd 4321.09", "salary 85,000 - 95,000", "¥12,800 incl. tax",
        "fee 1.5% + 0.25", "credit 100.00 applied",
    ],
    "code": [
        "x = a[::2] + b[::-1]", "std::vector<int> v; std::map<std::string, int> m;", "a::b::c()",
        "SELECT count(*) FROM t WHERE id IN (1, 2, 3) LIMIT 1000", "for i in range(1, 1024):", "0x7f000001",
        "if (x >= 10 && y <= 20) {}", "arr[1:2:3]", "regex \\d{3}-\\d{2}-\\d{4}", "printf(\"%d.%d.%d.%d\", a, b, c, d)",
        "def password_hash(value): ...", "max_tokens: 4096", '"prompt_tokens": 12345678', "tokenizer: gpt2",
        "token_type: bearer", "password: ********", "api_key: ${OPENAI_API_KEY}", "password = os.environ['DB_PASSWORD']",
        "token: null", "secret: true", "password: required", "api_key: Optional[str] = None", "password_reset_url: /reset",
        "client_secret: <your client secret>", "AWS_SECRET_ACCESS_KEY=$AWS_SECRET", "token = get_token(user)",
        "password: str", "secret_name: prod-db", "passwordless: enabled", "bypass: 12345678",
        "the skeleton key is task-sk-tiny", "Authorization: Bearer <token>", "bearer tokens expire", "num_tokens=1000000",
        "compass: north by northwest", "PWD=/home/deploy", "postgres://app:${DB_PASSWORD}@db:5432/app",
        "redis://cache:6379/0",
    ],
    "id": [
        "EMP-004211 joined", "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "ZIP 94105-1234", "zip code 10001",
        "postcode SW1A 1AA", "part no. 12-345-6789-0", "error code E1234-5678", "SKU 000-00-0000",
        "ssn placeholder 000-12-3456",
        "sample SSN 123-45-6789", "666-12-3456 is never issued", "ITIN 912-34-5678",
        "SSN 078-05-1120 (the Woolworth card)",
        "invoice 2026-0042-17", "PO-2026-000123", "ticket JIRA-12345", "release train 24.03", "flight LH 400",
        "room 4.12.3", "model prod-assistant-v3", "gpt-4o-2024-08-06", 
        "IBAN GB00WEST12345698765432 (bad checksum)",
        "DE00370400440532013000", "order 4111 1111 1111 1112 (fails the Luhn check)",
        "card 4111111111111112 (bad check digit)",
        "GTIN 00012345600012", "NPI 1234567893", "DUNS 15-048-3782",
    ],
    "address-like": [
        "999.12.1.1 is not an address, nor is 10.0.0", "256.256.256.256", "1.2.3", "10.0.0.0.1", "300.1.2.3",
        "user@localhost and @handle are not emails", "@channel please review", "email me at jane at example dot com",
        "foo@bar", "name@123", "lodash@4.17.21 and react@18.2.0", "user.email and client.ip columns",
        "http.status_code 500 from service.name checkout", "a:b:c:d", "12:34:56:78", "MAC 00:1A:2B:3C:4D:5E",
        "dead:beef", "::", "time 10:10:10:10", "IPv6 is 128 bits",
    ],
    "phone-like": [
        "256 512 1024", "call stack depth 1024 2048", "range 100 200 300", "numbers 1 2 3 4 5 6 7 8 9 10",
        "Fibonacci 1 1 2 3 5 8 13 21 34", "2026 03 01", "scores 98 87 76 65", "+1 for this idea",
        "1 800 flowers", "call 911", "dial 112",
        "press 1 then 2 then 3", "the year 1999 and 2000", "10 20 30 40 50 60 70",
    ],
    "question": [
        "Show total order value by service.name today where trace.id is '4bf92f3577b34da6'",
        "count errors per service over the last 7 days where latency is above 1006 ms",
        "p95 of duration_ms where http.status_code >= 500 in the last 15 minutes",
        "Which 10 routes have the highest error rate since 2026-03-01?",
        "heatmap of queue.wait_ms for job.type = 'invoice' over the past 24 hours",
        "avg cart.item_count by region where coupon_applied = true, last 30 days",
        "sum of payment.amount_cents by payment.currency this week",
        "how many requests had http.status_code 404 or 410 yesterday?",
        "max ledger.write_ms for merchant.id 88213 in the last hour",
        "top 5 error.code values by count over 90 days",
        "COUNT_DISTINCT user.id where plan = 'pro' between 2026-01-01 and 2026-03-31",
        "show rows where retry_count > 3 and queue.name = 'emails-v2'",
        "median ttfb_ms by edge.pop for the last 6 hours, sorted desc",
        "requests per minute where db.statement contains 'SELECT 1'",
        "what is the p99 of llm.latency_ms for model gpt-4o-mini-2024-07-18?",
        "errors where k8s.pod.name = 'checkout-7d9f8b6c5-x2x4z'",
        "count spans where span.kind = 'server' and duration_ms > 2500",
        "group by app.version where app.version in ('3.8.2', '3.9.0')",
        "events where build.number = 20260301 and status = 'failed'",
        "avg fraud.score where payment.provider = 'adyen' over the last 48 hours",
    ],
    "log": [
        "INFO 2026-03-01 12:00:01,123 worker-3 processed 1200 jobs in 35.2s",
        "WARN pool size 32/32 exhausted, queue depth 1024",
        "GET /api/v2/orders?page=3&per_page=100 200 12ms",
        "ERROR [pid 48213] OOMKilled after 8192Mi",
        "level=info msg=\"flushed 4096 rows\" duration=1.203s",
        "HTTP/1.1 503 Service Unavailable Retry-After: 120",
        "kube: Back-off restarting failed container (restarts: 14)",
        "gc pause 12.4ms heap 512MiB -> 384MiB",
        "DEBUG cache hit ratio 0.973 (1024/1052)",
        "2026-03-01T12:00:01Z build #4821 passed in 6m12s",
        "retrying in 2.5 s (attempt 3 of 10)",
        "wrote 1,048,576 bytes to /var/log/app.log",
        "exit status 137",
        "commit a1b2c3d merged into main by ci-bot",
        "node_exporter up 36d 4h",
    ],
    "url": [
        "https://docs.example.com/v2/guide#section-4",
        "see https://github.com/acme/flywheel/pull/1234",
        "http://localhost:8000/api/items?limit=50",
        "s3://bucket/prefix/2026/03/01/part-00001.parquet",
        "https://example.com/search?q=price+under+100",
        "file:///tmp/report-2026-03-01.html",
        "https://cdn.example.net/assets/app.3f2a9c.js",
        "gs://models/checkpoints/step-12000/",
        "ftp://mirror.example.org/pub/linux/6.8.1/",
        "https://status.example.io/incidents/20260301",
    ],
    "date": [
        "due 2026-04-15", "from 01.03.2026 to 15.03.2026", "created 1984-02-11",
        "March 1, 2026 at 9:00 AM", "FY2026 Q3", "2026-03-01/2026-03-31", "week 9 of 2026",
        "ISO week 2026-W09-6", "30/06/2026", "12.05.2026 14:30",
    ],
    "math": [
        "2 + 2 = 4", "x = 3.14 * r ** 2", "f(x) = 1 / (1 + e^-x)", "1e-9 < eps < 1e-6", "matrix 4x4, det = -12",
        "sum(1..100) = 5050", "sqrt(2) = 1.41421356", "7 * 8 = 56", "log2(1024) = 10", "ratio 16:9",
    ],
}.items() for text in texts]
