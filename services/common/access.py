"""The enterprise's access code: a secret made for one project (一项一码 plus a code only its notices carry).

The credit code and the project code are public; the access code is derived from the project
code with the console's secret key (HMAC-SHA256), so every console replica and the notifier
agree on it without storing it, and changing the key withdraws every link at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

# 16 characters of base32 (80 bits), shown in groups of four: easy to read out on the phone
_GROUPS = 4


def access_code(secret_key: str, project_code: str) -> str:
    digest = hmac.new(secret_key.encode(), f"project-access:{project_code}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(digest).decode()[: 4 * _GROUPS]
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def normalise(code: str) -> str:
    """What a person typed, as the code is written: upper case, no spaces, dashes between groups."""
    text = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def check_access_code(secret_key: str, project_code: str, given: str) -> bool:
    return hmac.compare_digest(access_code(secret_key, project_code), normalise(given))


def access_link(public_url: str, secret_key: str, project_code: str) -> str:
    """The link of the enterprise's notices: opens the project's page in the console."""
    return (f"{public_url.rstrip('/')}/e/open?project={quote(project_code, safe='')}"
            f"&code={access_code(secret_key, project_code)}")
