"""Wait until /healthz answers 200, then print the line a newcomer needs to log in.

Usage: python scripts/ready.py PORT NOTE_FILE (run by scripts/serve.sh). NOTE_FILE holds the
"user / password hint" text written by `manage.py bootstrap --login-note`; it is deleted once
read, as it may hold a generated password.
"""

import contextlib
import os
import signal
import sys
import time
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 300
POLL_SECONDS = 1.0


def healthy(url: str) -> bool:
    """True when /healthz answers 200 (Postgres, Redis, worker and beat all up)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback URL
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(port: str, note_file: str) -> int:
    # Stopped by serve.sh on Ctrl-C: leave quietly, without a traceback.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        with open(note_file) as fh:
            login = fh.read().strip()
    except OSError:
        login = ""
    with contextlib.suppress(OSError):
        os.unlink(note_file)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not healthy(f"{base}/healthz"):
        if time.monotonic() > deadline:
            print(
                f"\nNot ready after {TIMEOUT_SECONDS} s: {base}/healthz says what is down.\n",
                flush=True,
            )
            return 0
        time.sleep(POLL_SECONDS)
    rule = "=" * 72
    text = f"Ready: open {base}" + (f" ({login})" if login else "")
    print(f"\n{rule}\n{text}\nCtrl-C stops everything.\n{rule}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
