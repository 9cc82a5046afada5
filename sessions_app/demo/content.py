"""Demo content drawn from the catalogue: users, session shapes, query and message variants.

Variants are rendered once per (symbol, kind) and reused, so generating millions of events costs
a lookup and a choice each; they are seeded from their key, so the same seed gives the same data.
"""

import json
import random
import zlib
from functools import lru_cache
from typing import Any

from sessions_app.demo import catalogue as cat

VARIANTS = 6
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    """`value` escaped for PostgreSQL's COPY text format."""
    return value.translate(_COPY_ESCAPES)


def copy_json(value) -> str:
    return copy_text(json.dumps(value, separators=(",", ":")))


def _rng(*parts) -> random.Random:
    return random.Random(zlib.crc32(repr(parts).encode()))  # noqa: S311 - demo data


@lru_cache(maxsize=16)
def users(seed: int, count: int, prefix: str = "") -> tuple[tuple[str, ...], tuple[float, ...]]:
    """`count` user ids and Zipf-like cumulative weights: a few heavy users, many light ones."""
    rng = random.Random(seed * 7919 + count)  # noqa: S311 - demo data
    names: list[str] = []
    seen: set[str] = set()
    bots = iter(cat.BOT_USERS)
    for rank in range(count):
        # The heaviest "users" are automated clients; people follow.
        bot = next(bots, None) if rank in (0, 1, 2, 4, 7) else None
        name = bot or f"{rng.choice(cat.FIRST_NAMES)}.{rng.choice(cat.LAST_NAMES)}"
        while name in seen:
            name = f"{name.rstrip('0123456789')}{rng.randint(2, 999)}"
        seen.add(name)
        names.append(prefix + name)
    # Zipf-Mandelbrot: the top user has a few percent of all sessions, the tail one or two.
    cumulative, total = [], 0.0
    for rank in range(count):
        total += 1.0 / (rank + 6) ** 1.05
        cumulative.append(total)
    return tuple(names), tuple(cumulative)


def pick_assets(rng: random.Random, session_type: str) -> list[str]:
    """The symbols a session of this type is about."""
    if session_type == "equity":
        return rng.sample(_EQUITY_LIST, rng.choices((1, 2, 3), (70, 22, 8))[0])
    if session_type == "crypto":
        picks = rng.sample(_CRYPTO_HEAVY, rng.choices((1, 2, 3), (60, 28, 12))[0])
        return list(dict.fromkeys(picks))
    if session_type == "portfolio":
        etfs = rng.sample(_ETF_LIST, rng.randint(2, 4))
        return etfs + rng.sample(_EQUITY_LIST, rng.randint(0, 3))
    if session_type == "comparative":
        group = rng.choice(cat.PEER_GROUPS)
        return rng.sample(group, rng.randint(2, min(4, len(group))))
    if session_type == "macro":
        assets = rng.sample(_MACRO_LIST, rng.randint(1, 3))
        return assets + rng.sample(("TLT", "SPY", "GLD"), rng.randint(0, 1))
    return rng.sample(_EQUITY_LIST, rng.choices((1, 2, 3), (50, 35, 15))[0])


_EQUITY_LIST = list(cat.EQUITIES)
_ETF_LIST = list(cat.ETFS)
_MACRO_LIST = list(cat.MACRO_SERIES)
# Bitcoin and Ether dominate crypto research; list them several times (duplicates dropped).
_CRYPTO_HEAVY = ["BTC"] * 4 + ["ETH"] * 2 + list(cat.CRYPTO)


def purpose(rng: random.Random, session_type: str, assets: list[str]) -> str:
    template = rng.choice(cat.PURPOSES[session_type])
    return template.format(a=assets[0] if assets else "the market", all=", ".join(assets[:4]))


def benchmark(symbol: str) -> str:
    if symbol in cat.CRYPTO:
        return "BTC" if symbol != "BTC" else "ETH"
    if symbol in cat.MACRO_SERIES:
        return "SPY"
    return "QQQ" if symbol in ("NVDA", "AMD", "MSFT", "AAPL", "GOOGL", "META") else "SPY"


@lru_cache(maxsize=4096)
def query_variants(symbol: str, query_type: str) -> tuple[tuple[dict, str], ...]:
    """Rendered (parameters, result summary) pairs for a query of this type about `symbol`."""
    rng = _rng("q", symbol, query_type)
    is_series = symbol in cat.MACRO_SERIES
    price = cat.PRICES.get(symbol, 100.0)
    ccy = "USD"
    out = []
    for _ in range(VARIANTS):
        move = rng.gauss(0, 1.6 if symbol not in cat.CRYPTO else 3.5)
        last = price * (1 + rng.gauss(0, 0.04))
        if query_type == "macro" or (is_series and query_type in ("price", "technical")):
            series = symbol if is_series else rng.choice(_MACRO_LIST)
            title, unit, level = cat.MACRO_SERIES[series]
            value = level * (1 + rng.gauss(0, 0.01))
            month = rng.choice(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep"))
            params: dict[str, Any] = {
                "series": series,
                "start": rng.choice(("2010-01-01", "2019-01-01")),
            }
            params["frequency"] = rng.choice(("monthly", "quarterly", "daily"))
            summary = f"{series} ({title}) latest {value:,.2f} {unit} for {month}; "
            summary += f"{rng.gauss(0, 0.3):+.2f} vs prior"
        elif query_type == "price":
            params = {
                "symbol": symbol,
                "interval": rng.choice(("1d", "1h", "15m", "1wk")),
                "range": rng.choice(("5d", "1mo", "6mo", "1y", "ytd")),
            }
            summary = f"{symbol} {last:,.2f} {ccy} ({move:+.2f}% 1d)"
        elif query_type == "fundamentals":
            pe = rng.uniform(11, 45)
            params = {
                "symbol": symbol,
                "metrics": rng.choice((["pe", "eps"], ["revenue", "margins"], ["pe", "fcf"])),
                "period": rng.choice(("ttm", "quarterly", "annual")),
            }
            summary = (
                f"{symbol} P/E {pe:.1f}, EPS {last / pe:.2f}, revenue "
                f"{rng.gauss(8, 9):+.1f}% YoY, op. margin {rng.uniform(8, 42):.1f}%"
            )
        elif query_type == "technical":
            indicators = rng.choice((["rsi", "macd"], ["sma50", "sma200"], ["bollinger"]))
            params = {"symbol": symbol, "indicators": indicators, "interval": "1d"}
            rsi = rng.uniform(22, 78)
            trend = "bullish" if rsi > 50 else "bearish"
            summary = f"{symbol} RSI(14) {rsi:.1f}, MACD {trend} crossover, "
            summary += f"{rng.gauss(2, 6):+.1f}% vs 50-day average"
        elif query_type == "news":
            params = {"symbol": symbol, "limit": rng.choice((10, 20)), "since": "24h"}
            headline = rng.choice(cat.HEADLINES).format(a=symbol)
            summary = f'{rng.randint(3, 40)} articles; top: "{headline}"'
        elif query_type == "sentiment":
            score = rng.gauss(0.1, 0.35)
            label = "positive" if score > 0.15 else "negative" if score < -0.15 else "neutral"
            params = {"symbol": symbol, "sources": rng.choice((["news"], ["news", "social"]))}
            summary = f"Sentiment {score:+.2f} ({label}) from {rng.randint(40, 2400)} items"
        else:  # correlation
            other = benchmark(symbol)
            window = rng.choice((30, 90, 252))
            params = {"symbols": [symbol, other], "window": window}
            summary = f"corr({symbol}, {other}) {rng.uniform(-0.2, 0.95):.2f} over {window}d"
        out.append((params, summary))
    return tuple(out)


@lru_cache(maxsize=4096)
def query_variants_copy(symbol: str, query_type: str) -> tuple[tuple[str, str], ...]:
    """query_variants as COPY-escaped text (parameters JSON, summary)."""
    return tuple((copy_json(p), copy_text(s)) for p, s in query_variants(symbol, query_type))


@lru_cache(maxsize=4096)
def message_variants(a: str, b: str, role: str) -> tuple[str, ...]:
    """Rendered user prompts or assistant replies about `a` (and `b`)."""
    rng = _rng("m", a, b, role)
    templates = cat.USER_PROMPTS if role == "user" else cat.ASSISTANT_REPLIES
    out = []
    for _ in range(VARIANTS):
        out.append(
            rng.choice(templates).format(
                a=a,
                b=b,
                all=f"{a}, {b}",
                chg=rng.gauss(0.5, 2.0),
                vol=rng.uniform(0.8, 3.5),
                pe=rng.uniform(12, 40),
                pe5=rng.uniform(14, 30),
                m=rng.uniform(-2, 4),
                rsi=rng.uniform(25, 80),
                d=rng.uniform(-8, 12),
                c=rng.uniform(0.1, 0.9),
            )
        )
    return tuple(out)


@lru_cache(maxsize=4096)
def message_variants_copy(a: str, b: str, role: str) -> tuple[str, ...]:
    return tuple(copy_text(text) for text in message_variants(a, b, role))


def tool_result(tool: str, symbol: str) -> str:
    """What a tool message says the tool returned."""
    return f"{tool}({symbol}) returned {len(tool) * 37 % 90 + 10} rows"


# Query type an agent tool fetches its data with (tools without one record no query).
TOOL_QUERY_TYPE = {
    "get_quote": "price",
    "get_fundamentals": "fundamentals",
    "search_news": "news",
    "compute_correlation": "correlation",
    "fetch_macro_series": "macro",
}

CONTEXTS = {
    "timeframe": ("1d", "1wk", "1mo", "intraday"),
    "risk_profile": ("conservative", "balanced", "aggressive"),
    "currency": ("USD", "USD", "USD", "EUR", "GBP"),
}
PREFERENCES = [
    {"chart": "candles", "theme": "dark", "currency": "USD"},
    {"chart": "line", "theme": "light", "currency": "USD"},
    {"chart": "candles", "theme": "light", "currency": "EUR"},
    {"chart": "area", "theme": "dark", "currency": "USD", "show_volume": True},
]
CLIENT_VERSIONS = ("2.4.1", "2.4.0", "2.3.7", "2.5.0-beta.2")
LOCALES = ("en-US", "en-US", "en-GB", "de-DE", "fr-FR", "ja-JP")


def context(rng: random.Random, session_type: str, assets: list[str]) -> dict:
    value = {"watchlist": assets, "timeframe": rng.choice(CONTEXTS["timeframe"])}
    if session_type in ("portfolio", "agent"):
        value["risk_profile"] = rng.choice(CONTEXTS["risk_profile"])
    if session_type in ("equity", "comparative", "portfolio"):
        value["benchmark"] = benchmark(assets[0]) if assets else "SPY"
    return value


def intermediate_results(rng: random.Random, session_type: str, assets: list[str]) -> dict:
    symbol = assets[0] if assets else "SPY"
    if session_type == "agent":
        return {"draft": f"Brief on {symbol}: see findings", "steps_done": rng.randint(2, 9)}
    if session_type == "macro":
        return {"regime": rng.choice(("disinflation", "reflation", "stagflation risk"))}
    signal = rng.choice(("buy", "hold", "hold", "trim", "watch"))
    return {"signal": {"symbol": symbol, "action": signal, "confidence": rng.randint(40, 95)}}


def client(rng: random.Random, session_type: str) -> tuple[str, str, str | None]:
    """(source, device, ip) of the client that opened the session."""
    keys = list(cat.SOURCES)
    if session_type == "agent":
        source = rng.choice(("mcp", "mcp", "python-sdk", "api"))
    else:
        source = rng.choices(keys, [cat.SOURCES[k][1] for k in keys])[0]
    name = cat.SOURCES[source][0]
    device = rng.choice(cat.DEVICES[name])
    if device == "server" and rng.random() < 0.5:
        return name, device, None
    ip = f"{rng.choice((73, 81, 98, 145, 172, 185, 203))}.{rng.randint(0, 255)}"
    return name, device, f"{ip}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def metadata(rng: random.Random) -> dict:
    return {"client_version": rng.choice(CLIENT_VERSIONS), "locale": rng.choice(LOCALES)}
