"""What demo sessions are about: real symbols per session type, query mixes, texts, tools.

Shares and timings are rough impressions of a research assistant's traffic, tuned so the
dashboard looks like a working product rather than uniform noise.
"""

# Symbol -> a plausible recent price, so summaries quote believable numbers.
EQUITIES = {
    "AAPL": 189.0, "MSFT": 415.0, "GOOGL": 165.0, "AMZN": 180.0, "NVDA": 880.0, "META": 490.0,
    "TSLA": 175.0, "JPM": 195.0, "V": 275.0, "MA": 460.0, "UNH": 490.0, "XOM": 115.0,
    "JNJ": 152.0, "PG": 162.0, "HD": 345.0, "COST": 720.0, "AVGO": 1300.0, "AMD": 160.0,
    "NFLX": 610.0, "CRM": 300.0, "ORCL": 125.0, "INTC": 35.0, "BAC": 37.0, "WMT": 60.0,
    "KO": 61.0, "PEP": 170.0, "DIS": 112.0, "ADBE": 500.0, "CSCO": 49.0, "PFE": 28.0,
    "LLY": 770.0, "ABBV": 170.0, "CVX": 158.0, "GS": 450.0, "MS": 95.0, "BA": 180.0,
    "NKE": 93.0, "SBUX": 85.0, "UBER": 72.0, "PLTR": 24.0, "SHOP": 75.0, "ASML": 950.0,
}  # fmt: skip
CRYPTO = {
    "BTC": 64000.0, "ETH": 3100.0, "SOL": 145.0, "XRP": 0.52, "ADA": 0.45, "DOGE": 0.15,
    "AVAX": 35.0, "DOT": 7.0, "LINK": 14.0, "MATIC": 0.7, "LTC": 82.0, "ATOM": 8.5,
    "ARB": 1.1, "OP": 2.5,
}  # fmt: skip
ETFS = {
    "SPY": 520.0, "QQQ": 440.0, "IWM": 205.0, "VTI": 255.0, "VOO": 478.0, "AGG": 97.0,
    "TLT": 92.0, "GLD": 215.0, "VNQ": 85.0, "EFA": 78.0, "EEM": 42.0, "XLF": 41.0,
    "XLE": 93.0, "XLK": 210.0, "HYG": 77.0, "SCHD": 78.0,
}  # fmt: skip
# FRED series id -> (description, unit, typical level)
MACRO_SERIES = {
    "CPIAUCSL": ("CPI, all urban consumers", "index", 312.0),
    "UNRATE": ("Unemployment rate", "%", 3.9),
    "DGS10": ("10-year Treasury yield", "%", 4.3),
    "DGS2": ("2-year Treasury yield", "%", 4.8),
    "FEDFUNDS": ("Effective federal funds rate", "%", 5.33),
    "GDP": ("Gross domestic product", "bn USD", 28300.0),
    "PAYEMS": ("Nonfarm payrolls", "thousands", 158000.0),
    "PCEPI": ("PCE price index", "index", 123.0),
    "T10Y2Y": ("10y minus 2y spread", "pp", -0.4),
    "M2SL": ("M2 money stock", "bn USD", 20800.0),
    "INDPRO": ("Industrial production", "index", 102.5),
    "HOUST": ("Housing starts", "thousands", 1320.0),
    "UMCSENT": ("Consumer sentiment", "index", 77.0),
    "VIXCLS": ("CBOE volatility index", "index", 14.5),
}
# Peer groups comparative sessions draw 2-4 members from.
PEER_GROUPS = [
    ["AAPL", "MSFT", "GOOGL", "META"],
    ["NVDA", "AMD", "AVGO", "INTC", "ASML"],
    ["JPM", "BAC", "GS", "MS"],
    ["V", "MA"],
    ["XOM", "CVX"],
    ["KO", "PEP"],
    ["LLY", "PFE", "JNJ", "ABBV", "UNH"],
    ["AMZN", "WMT", "COST", "HD"],
    ["NFLX", "DIS"],
    ["CRM", "ORCL", "ADBE", "SHOP"],
    ["TSLA", "UBER"],
    ["BTC", "ETH", "SOL"],
]

PRICES = {**EQUITIES, **CRYPTO, **ETFS}

SESSION_TYPE_SHARES = {
    "equity": 35,
    "crypto": 17,
    "portfolio": 12,
    "comparative": 10,
    "macro": 8,
    "agent": 18,
}

QUERY_TYPES = ("price", "fundamentals", "technical", "news", "sentiment", "correlation", "macro")
# Share of each query type per session type (same order as QUERY_TYPES).
QUERY_MIX = {
    "equity": (30, 18, 20, 15, 10, 4, 3),
    "crypto": (36, 2, 26, 14, 15, 6, 1),
    "portfolio": (22, 14, 10, 10, 8, 26, 10),
    "comparative": (20, 30, 14, 8, 6, 22, 0),
    "macro": (8, 0, 4, 16, 6, 14, 52),
    "agent": (30, 25, 10, 20, 5, 5, 5),
}
# Median milliseconds of an uncached query per type; cache hits take a few ms.
QUERY_MEDIAN_MS = {
    "price": 85,
    "fundamentals": 260,
    "technical": 190,
    "news": 420,
    "sentiment": 640,
    "correlation": 880,
    "macro": 310,
}
# Chance that a query of this type is served from cache (~40-70 % overall).
QUERY_CACHE_RATE = {
    "price": 0.68,
    "fundamentals": 0.62,
    "technical": 0.5,
    "news": 0.35,
    "sentiment": 0.4,
    "correlation": 0.45,
    "macro": 0.72,
}
QUERY_ERRORS = (
    "Upstream timeout after 5000 ms",
    "Rate limited by data provider (HTTP 429)",
    "Symbol not found at provider",
    "Insufficient history for the requested window",
    "Provider returned malformed data",
)

STATUS_SHARES = {"completed": 72, "abandoned": 14, "expired": 10, "failed": 4}
TTL_HOURS_SHARES = {24: 70, 8: 10, 4: 6, 48: 8, 72: 4, 168: 2}

SOURCES = {
    "web": ("web-dashboard", 38),
    "python-sdk": ("python-sdk", 22),
    "mcp": ("mcp", 16),
    "api": ("rest-api", 14),
    "slack": ("slack-bot", 6),
    "excel": ("excel-addin", 4),
}
DEVICES = {
    "web-dashboard": ("desktop", "desktop", "desktop", "laptop", "tablet", "mobile"),
    "python-sdk": ("server", "notebook", "laptop"),
    "mcp": ("claude-desktop", "cursor", "vscode"),
    "rest-api": ("server",),
    "slack-bot": ("mobile", "desktop"),
    "excel-addin": ("desktop",),
}

TAGS = {
    "equity": ["earnings", "swing-trade", "long-term", "dividends", "watchlist", "momentum"],
    "crypto": ["defi", "on-chain", "volatility", "layer-2", "momentum", "halving"],
    "portfolio": ["rebalance", "risk", "allocation", "drawdown", "tax-loss", "quarterly-review"],
    "comparative": ["peer-review", "valuation", "sector", "margins", "earnings"],
    "macro": ["inflation", "rates", "fomc", "labor-market", "recession-watch", "yield-curve"],
    "agent": ["research-agent", "mcp", "report", "autonomous", "due-diligence"],
}

PURPOSES = {
    "equity": [
        "Earnings preview for {a}",
        "Is {a} a buy after the pullback?",
        "Swing setup check on {a}",
        "Dividend safety review: {a}",
        "{a} valuation after guidance update",
        "Quick look at {a} price action",
    ],
    "crypto": [
        "{a} weekend volatility check",
        "On-chain flows for {a}",
        "{a} breakout or fakeout?",
        "Position sizing for {a}",
    ],
    "portfolio": [
        "Quarterly rebalance: {all}",
        "Risk review of core holdings",
        "Correlation check before adding {a}",
        "Drawdown analysis for the 60/40 sleeve",
    ],
    "comparative": [
        "{all}: margins and growth side by side",
        "Which of {all} is cheapest on forward P/E?",
        "Peer comparison {all}",
    ],
    "macro": [
        "What does the latest {a} print mean for rates?",
        "Recession signals: {all}",
        "FOMC preview with {all}",
        "Inflation trend check ({a})",
    ],
    "agent": [
        "Research agent: due diligence on {a}",
        "Agent: weekly market brief",
        "Agent: summarize the {a} 10-Q",
        "Agent: compare {all}",
    ],
}

HEADLINES = [
    "{a} beats estimates as revenue growth accelerates",
    "{a} slips after cautious guidance",
    "Analysts raise {a} price target on strong demand",
    "{a} announces buyback and dividend increase",
    "Regulators open inquiry into {a}",
    "{a} rallies as sector rotation continues",
    "{a} unveils new product line at annual event",
    "Short interest in {a} climbs to six-month high",
]

USER_PROMPTS = [
    "What moved {a} today?",
    "Summarize the latest quarterly report for {a}.",
    "Compare {a} and {b} on margins and growth.",
    "Is {a} overbought right now?",
    "Give me the bull and bear case for {a}.",
    "How exposed is {a} to higher rates?",
    "Build a short risk report for {all}.",
    "Any notable news on {a} this week?",
]
ASSISTANT_REPLIES = [
    "{a} is up {chg:.1f}% on the day; volume is {vol:.1f}x its 20-day average, "
    "mostly after the analyst upgrade.",
    "{a} trades at {pe:.1f}x forward earnings against a five-year average of {pe5:.1f}x; "
    "margins expanded {m:.1f} points year on year.",
    "RSI(14) on {a} is {rsi:.0f}; price sits {d:.1f}% above the 50-day average, so momentum "
    "is stretched but not extreme.",
    "Bull case: pricing power and buybacks. Bear case: slowing unit growth and a rich "
    "multiple ({pe:.1f}x).",
    "Over 90 days {a} and {b} have a correlation of {c:.2f}; {a} carries the higher beta.",
    "Three items stand out for {a}: the guidance raise, the new buyback, and a pending "
    "regulatory review.",
]

# Agent tools: name -> (tokens in range, tokens out range, duration ms range)
TOOLS = {
    "get_quote": ((300, 900), (60, 200), (120, 700)),
    "get_fundamentals": ((1500, 4000), (200, 600), (300, 1400)),
    "search_news": ((2000, 6000), (300, 900), (500, 2600)),
    "summarize_filing": ((12000, 40000), (800, 2500), (3000, 15000)),
    "compute_correlation": ((800, 2000), (100, 300), (400, 3000)),
    "fetch_macro_series": ((600, 1500), (100, 300), (200, 900)),
    "run_backtest": ((2000, 5000), (400, 1200), (2000, 20000)),
}
TOOL_SHARES = (30, 20, 20, 6, 10, 8, 6)
# Micro-dollars per token in and out ($3 and $15 per million tokens).
MICRO_USD_PER_TOKEN_IN = 3
MICRO_USD_PER_TOKEN_OUT = 15
TOOL_ERRORS = ("Tool timed out", "Upstream provider error (HTTP 502)", "Invalid arguments")

FIRST_NAMES = [
    "maria", "james", "wei", "aisha", "lucas", "sofia", "noah", "yuki", "omar", "elena",
    "daniel", "priya", "liam", "chloe", "mateo", "hana", "ethan", "fatima", "oliver", "ines",
    "arjun", "zoe", "felix", "nora", "samuel", "leila", "hugo", "mei", "david", "amara",
]  # fmt: skip
LAST_NAMES = [
    "garcia", "smith", "chen", "khan", "muller", "rossi", "kim", "tanaka", "silva", "novak",
    "patel", "johnson", "dubois", "nguyen", "lopez", "cohen", "berg", "okafor", "ivanova",
    "walsh", "moreau", "sato", "haddad", "larsen", "costa", "fischer", "reyes", "park",
]  # fmt: skip
BOT_USERS = ["quant-bot", "research-agent", "risk-monitor", "morning-brief", "alpha-scanner"]

# Weight of each UTC hour: European and US market hours, quiet nights.
HOUR_WEIGHTS = (
    2, 1, 1, 1, 1, 2, 4, 8, 12, 13, 13, 12, 12, 16, 20, 22, 21, 19, 15, 11, 8, 6, 4, 3,
)  # fmt: skip
# Monday .. Sunday.
WEEKDAY_WEIGHTS = (1.0, 1.05, 1.05, 1.0, 0.9, 0.32, 0.28)
