"""With LOG_FORMAT=json every line on stderr is JSON, warnings included (finding 6 of the core rebuild)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_python_warnings_are_json_lines_too() -> None:
    script = textwrap.dedent("""
        import logging, warnings
        import urllib3
        from oauth_token_operator.kopf_edge.logs import configure_logging
        from oauth_token_operator.settings import OperatorSettings
        configure_logging(OperatorSettings(log_format="json"))
        warnings.warn("Unverified HTTPS request", urllib3.exceptions.InsecureRequestWarning)
        logging.getLogger("oauth_token_operator.test").warning("a line of ours")
    """)
    result = subprocess.run([sys.executable, "-W", "default", "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr
    parsed = [json.loads(line) for line in lines]  # fails on any plain-text line
    assert "Unverified HTTPS request" in parsed[0]["message"]
    assert parsed[1]["message"] == "a line of ours"
