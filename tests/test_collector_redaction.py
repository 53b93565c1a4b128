"""The broker password never appears in a log line or an error (issue 20, finding 7): a real
``doxa collect`` with a password in DOXA_MQTT_URL, a malformed URL, and the URL parser's errors."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_collector_support import DOXA, REPO, doxa_env, start_doxa_collect, wait_for

from protocols.broker_url import BrokerUrlError, parse_broker_url

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"http://meter:{SECRET}@broker:1883",
        f"mqtt://meter:{SECRET}@broker:port",
        f"mqtt://meter:{SECRET}@[broker",
        f"mqtt://meter:{SECRET}@",
        f"mqtt://meter:{SECRET}/x@broker:99999",
        f"mqtt://{SECRET}@:1883",
    ],
)
def test_broker_url_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(BrokerUrlError) as info:
        parse_broker_url(url)
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)


def test_redaction_of_urls_and_of_any_text() -> None:
    from protocols.broker_url import redact_text, redact_url

    assert redact_url(f"mqtt://meter:{SECRET}@h:1883") == "mqtt://meter:***@h:1883"
    assert redact_url(f"mqtts://{SECRET}@h") == "mqtts://***@h"
    assert redact_url("mqtt://h:1883") == "mqtt://h:1883"
    line = f"a mqtt://meter:{SECRET}@h:1 and postgresql://doxa:{SECRET}@db/doxa"
    assert redact_text(line) == "a mqtt://meter:***@h:1 and postgresql://doxa:***@db/doxa"


@pytest.mark.db
def test_doxa_collect_refuses_a_malformed_url_without_printing_the_password(
    db_url: str, tmp_path: Path
) -> None:
    env = doxa_env(db_url, f"mqtt://meter:{SECRET}@127.0.0.1:notaport", tmp_path)
    done = subprocess.run(
        [str(DOXA), "collect"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "bad port in MQTT URL 'mqtt://meter:***@127.0.0.1:notaport'" in done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.db
@pytest.mark.mqtt
def test_doxa_collect_logs_the_broker_without_its_password(
    db_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    with_password = mqtt_url.replace("mqtt://", f"mqtt://meter:{SECRET}@")
    log = tmp_path / "collect.log"
    child = start_doxa_collect(
        doxa_env(db_url, with_password, tmp_path), log, "--collector-id", "redact-1"
    )
    try:
        wait_for(
            lambda: "collector redact-1 started" in log.read_text(errors="replace"),
            timeout=30,
            what="the start-up line",
        )
        time.sleep(0.5)  # (the connection line follows)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
    text = log.read_text(errors="replace")
    assert f"MQTT {with_password.replace(SECRET, '***')}" in text
    assert SECRET not in text


def test_the_collectors_log_filter_masks_messages_and_tracebacks() -> None:
    import io
    import logging

    from doxa.commands.collect import _RedactCredentials

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(_RedactCredentials())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("broker %s refused", f"mqtt://meter:{SECRET}@h:1883")
        try:
            raise ConnectionError(f"cannot reach postgresql://doxa:{SECRET}@db:5432/doxa")
        except ConnectionError:
            logger.exception("database down")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "broker mqtt://meter:***@h:1883 refused" in text
    assert "postgresql://doxa:***@db:5432/doxa" in text
    assert SECRET not in text
