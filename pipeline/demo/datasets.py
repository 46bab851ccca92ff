"""The fictional observability datasets of the demo: names, columns, column kinds and values.

Column kinds drive which queries make sense:

- ``numeric``: a measure (percentiles, averages, numeric filters); with ``groupable`` it is a
  low-cardinality code such as ``http.status_code`` (breakdowns and numeric filters, no AVG).
- ``string``: with ``groupable`` a low-cardinality label (breakdowns, ``=``, ``in``), without
  it free text (``contains``, ``starts-with``).
- ``bool``: a flag (``= true``, breakdowns).
- ``id``: an identifier (``COUNT_DISTINCT``, ``exists``, ``=``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NUMERIC, STRING, BOOL, ID = "numeric", "string", "bool", "id"


@dataclass(frozen=True)
class Column:
    """One column: its name, kind, natural aliases and sample literal values."""

    name: str
    kind: str
    aliases: tuple[str, ...] = ()
    values: tuple = ()
    groupable: bool = False

    @property
    def is_measure(self) -> bool:
        return self.kind == NUMERIC and not self.groupable


@dataclass(frozen=True)
class Dataset:
    """A dataset: its name, what one row is (``noun``) and its columns in a fixed order (the only
    ones queries use). ``listed`` is every name one request sends, when it sends more than these
    (:func:`pipeline.demo.columns.request_view`)."""

    name: str
    noun: str
    columns: tuple[Column, ...] = field(default_factory=tuple)
    listed: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def listed_names(self) -> list[str]:
        """The names a request sends (its own columns when nothing else is listed)."""
        return list(self.listed) if self.listed else self.column_names

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _num(name, aliases=(), values=(), groupable=False):
    return Column(name, NUMERIC, tuple(aliases), tuple(values), groupable)


def _str(name, aliases=(), values=(), groupable=True):
    return Column(name, STRING, tuple(aliases), tuple(values), groupable)


def _text(name, aliases=(), values=()):
    return Column(name, STRING, tuple(aliases), tuple(values), False)


def _bool(name, aliases=()):
    return Column(name, BOOL, tuple(aliases), (True, False), True)


def _id(name, aliases=(), values=()):
    return Column(name, ID, tuple(aliases), tuple(values), False)


_STATUS = _num("http.status_code", ["status code", "HTTP status"], [400, 404, 429, 500, 502, 503], True)
_DURATION = _num("duration_ms", ["latency", "duration", "response time"], [100, 250, 500, 1000, 2000, 5000])

DATASETS: tuple[Dataset, ...] = (
    Dataset("checkout-api", "requests", (
        _DURATION, _STATUS,
        _str("http.method", ["method", "HTTP method"], ["GET", "POST", "PUT", "DELETE"]),
        _text("http.route", ["route", "endpoint"], ["/api/cart", "/api/checkout", "/api/orders", "/api/v2/"]),
        _str("service.name", ["service"], ["checkout", "cart", "pricing", "inventory", "tax"]),
        _id("user.id", ["user", "users"], ["u_48213", "u_10077"]),
        _num("cart.item_count", ["items in the cart", "cart size"], [1, 3, 5, 10, 20]),
        _num("order.total_usd", ["order total", "order value"], [50, 100, 250, 500, 1000]),
        _str("payment.method", ["payment method"], ["card", "paypal", "apple_pay", "gift_card"]),
        _bool("error", ["errors", "failed"]),
        _id("trace.id", ["trace", "traces"], ["4bf92f3577b34da6"]),
        _str("region", ["region"], ["us-east-1", "us-west-2", "eu-west-1"]),
        _text("db.statement", ["SQL statement", "query"], ["SELECT", "UPDATE orders", "INSERT INTO carts"]),
        _bool("coupon_applied", ["coupon used"]),
    )),
    Dataset("search-service", "searches", (
        _DURATION,
        _text("query.text", ["search text", "search query"], ["shoes", "iphone", "gift card", "red dress"]),
        _num("query.length", ["query length"], [3, 10, 30, 64]),
        _num("results.count", ["number of results", "result count"], [0, 1, 10, 100, 1000]),
        _str("index.name", ["index"], ["products", "articles", "users", "autocomplete"]),
        _bool("cache_hit", ["cache hits", "cached"]),
        _str("search.backend", ["backend"], ["elasticsearch", "vespa", "opensearch"]),
        _STATUS,
        _id("user.id", ["user", "users"], ["u_48213", "u_90211"]),
        _num("rerank.duration_ms", ["rerank time", "reranking latency"], [20, 50, 100, 250]),
        _bool("zero_results", ["empty result pages", "no results"]),
        _str("locale", ["language", "locale"], ["en-US", "de-DE", "fr-FR", "ja-JP"]),
        _id("shard.id", ["shard", "shards"], ["shard-07", "shard-12"]),
        _num("page", ["result page"], [1, 2, 5]),
    )),
    Dataset("mobile-app", "events", (
        _str("app.version", ["app version", "release"], ["5.2.0", "5.3.1", "5.4.0-beta"]),
        _str("device.model", ["device", "phone model"], ["iPhone 15", "Pixel 8", "Galaxy S23", "iPhone 12"]),
        _str("os.name", ["OS", "platform"], ["iOS", "Android"]),
        _str("screen.name", ["screen"], ["home", "cart", "product_detail", "search", "settings"]),
        _str("event.name", ["event", "event type"], ["app_start", "screen_view", "crash", "tap", "purchase"]),
        _id("session.id", ["session", "sessions"], ["s_8f2a91"]),
        _id("user.id", ["user", "users"], ["u_48213"]),
        _num("startup_ms", ["startup time", "cold start time", "launch time"], [500, 1000, 2000, 4000]),
        _num("frame_drop_count", ["dropped frames", "frame drops"], [1, 5, 10, 30]),
        _bool("crash", ["crashes", "crashed"]),
        _str("network.type", ["network", "connection type"], ["wifi", "cellular", "offline"]),
        _num("battery_level", ["battery", "battery percentage"], [10, 20, 50, 80]),
        _str("country", ["country"], ["US", "DE", "BR", "IN", "JP"]),
        _num("memory_mb", ["memory", "memory usage"], [200, 400, 800]),
    )),
    Dataset("k8s-cluster", "pod events", (
        _str("k8s.namespace.name", ["namespace"], ["prod", "staging", "kube-system", "monitoring"]),
        _text("k8s.pod.name", ["pod", "pod name"], ["checkout-", "search-api-", "payments-worker-"]),
        _str("k8s.node.name", ["node"], ["node-a1", "node-a2", "node-b1", "node-gpu-1"]),
        _str("k8s.container.name", ["container"], ["app", "istio-proxy", "fluent-bit"]),
        _num("container.cpu.utilization", ["CPU", "CPU usage", "cpu utilization"], [50, 80, 90, 95]),
        _num("container.memory.rss_mb", ["memory", "RSS", "memory usage"], [256, 512, 1024, 2048]),
        _num("restart_count", ["restarts", "restart count"], [1, 3, 5, 10]),
        _str("pod.phase", ["phase", "pod phase"], ["Running", "Pending", "Failed", "Succeeded"]),
        _bool("oom_killed", ["OOM kills", "OOM killed"]),
        _str("event.reason", ["reason", "event reason"], ["BackOff", "OOMKilling", "FailedScheduling", "Evicted"]),
        _str("cluster.name", ["cluster"], ["prod-us-east", "prod-eu-west", "staging-us"]),
        _text("image.tag", ["image tag", "image"], ["v1.42", "sha-", "latest"]),
        _bool("ready", ["readiness", "ready pods"]),
        _num("scheduling_latency_ms", ["scheduling latency", "time to schedule"], [100, 1000, 5000]),
    )),
    Dataset("cdn-edge", "requests", (
        _str("edge.pop", ["PoP", "edge location"], ["IAD", "FRA", "NRT", "GRU", "SYD"]),
        _str("cache.status", ["cache status"], ["HIT", "MISS", "EXPIRED", "BYPASS"]),
        _STATUS,
        _str("http.host", ["host", "hostname"], ["www.example.com", "static.example.com", "api.example.com"]),
        _text("url.path", ["path", "URL path"], ["/static/", "/images/", "/api/", ".js"]),
        _num("bytes_sent", ["response size", "bytes"], [1024, 100000, 1000000]),
        _num("ttfb_ms", ["time to first byte", "TTFB"], [50, 100, 200, 500, 1000]),
        _str("client.country", ["country", "client country"], ["US", "GB", "DE", "BR", "JP"]),
        _str("tls.version", ["TLS version"], ["TLSv1.2", "TLSv1.3"]),
        _num("origin.duration_ms", ["origin latency", "origin time"], [100, 500, 1000, 3000]),
        _bool("waf.blocked", ["WAF blocks", "blocked by the WAF"]),
        _id("client.ip", ["client IP", "client IPs"], ["203.0.113.7", "198.51.100.23"]),
        _id("request.id", ["request ID", "requests"], ["req_9a81c2"]),
    )),
    Dataset("payments-worker", "jobs", (
        _str("job.type", ["job type"], ["capture", "refund", "payout", "reconcile"]),
        _num("payment.amount_cents", ["amount", "payment amount"], [1000, 5000, 10000, 100000]),
        _str("payment.currency", ["currency"], ["USD", "EUR", "GBP", "JPY"]),
        _str("payment.provider", ["provider", "PSP"], ["stripe", "adyen", "braintree"]),
        _num("retry_count", ["retries", "retry count"], [1, 2, 3, 5]),
        _str("queue.name", ["queue"], ["payments-high", "payments-default", "payments-low"]),
        _num("queue.wait_ms", ["queue wait", "time in queue"], [100, 1000, 5000, 30000]),
        _DURATION,
        _str("job.status", ["status", "job status"], ["succeeded", "failed", "retrying", "dead_lettered"]),
        _id("merchant.id", ["merchant", "merchants"], ["m_2231", "m_0456"]),
        _id("idempotency_key", ["idempotency key", "idempotency keys"], ["idem_77ab"]),
        _str("error.code", ["error code", "decline code"],
             ["card_declined", "insufficient_funds", "provider_timeout", "rate_limited"]),
        _num("ledger.write_ms", ["ledger write time", "ledger latency"], [10, 50, 200]),
        _num("fraud.score", ["fraud score", "risk score"], [50, 80, 90]),
        _bool("is_test_mode", ["test mode"]),
    )),
    Dataset("auth-gateway", "login attempts", (
        _str("auth.method", ["auth method", "login method"], ["password", "sso", "passkey", "magic_link"]),
        _str("auth.result", ["result", "outcome"], ["success", "failure", "mfa_required", "locked"]),
        _str("mfa.type", ["MFA type", "second factor"], ["totp", "sms", "webauthn"]),
        _id("tenant.id", ["tenant", "tenants"], ["t_acme", "t_globex"]),
        _id("user.id", ["user", "users"], ["u_48213"]),
        _num("token.ttl_s", ["token TTL", "token lifetime"], [300, 3600, 86400]),
        _str("idp.name", ["identity provider", "IdP"], ["okta", "azure-ad", "google", "internal"]),
        _str("ip.reputation", ["IP reputation"], ["good", "suspicious", "bad"]),
        _num("login.attempts", ["attempts", "login attempts"], [3, 5, 10]),
        _num("jwt.validation_ms", ["JWT validation time", "token validation latency"], [1, 5, 20, 50]),
        _STATUS,
        _str("geo.country", ["country"], ["US", "DE", "IN", "NG", "RU"]),
        _bool("rate_limited", ["rate limits", "rate-limited"]),
        _text("client.user_agent", ["user agent", "UA"], ["curl", "Mozilla", "okhttp", "python-requests"]),
    )),
    Dataset("ml-inference", "predictions", (
        _str("model.name", ["model"], ["ranker-v4", "embedder-small", "fraud-xgb", "reco-two-tower"]),
        _str("model.version", ["model version"], ["2024.10", "2024.11", "canary"]),
        _str("gpu.type", ["GPU", "GPU type"], ["A100", "L4", "T4"]),
        _num("batch.size", ["batch size"], [8, 16, 32, 64]),
        _num("inference_ms", ["inference latency", "inference time", "latency"], [10, 50, 100, 250, 1000]),
        _num("queue_time_ms", ["queue time", "time queued"], [5, 20, 100, 500]),
        _num("tokens.input", ["input tokens", "prompt tokens"], [128, 512, 2048]),
        _num("tokens.output", ["output tokens"], [32, 128, 512]),
        _num("gpu.memory_used_mb", ["GPU memory", "VRAM usage"], [4000, 12000, 30000]),
        _num("prediction.score", ["score", "prediction score"], [0.5, 0.8, 0.9, 0.99]),
        _num("feature_store.latency_ms", ["feature store latency", "feature fetch time"], [5, 20, 50]),
        _id("request.id", ["request ID", "requests"], ["req_5c1e"]),
        _str("endpoint.name", ["endpoint"], ["/v1/rank", "/v1/embed", "/v1/score"]),
        _bool("fallback_used", ["fallbacks", "fallback"]),
        _bool("cache_hit", ["cache hits", "cached"]),
    )),
)

#: The stand-in "public" datasets: the only ones in the base corpus the base model is trained on.
BASE_DATASETS: tuple[str, ...] = ("checkout-api", "search-service", "mobile-app", "k8s-cluster", "cdn-edge")
#: Datasets only this team has: seen in production traces, never in the base corpus.
TEAM_DATASETS: tuple[str, ...] = ("payments-worker", "auth-gateway", "ml-inference")

_BY_NAME = {d.name: d for d in DATASETS}


def get_dataset(name: str) -> Dataset:
    """The dataset called ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]
