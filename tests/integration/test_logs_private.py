"""Logs hold no personal data: the demo, run with every logger at DEBUG until its alert reached
a care manager, never writes a resident's name, phone number (in any of the forms people write
it: +821012345678, 01012345678, 010-1234-5678) or address, nor what a resident said on a call,
nor a care note a care manager wrote (and corrected) on a card, nor a webhook's form body."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

ANBU = str(Path(sys.executable).with_name("anbu"))


def phone_forms(e164: str) -> set[str]:
    """+821012345678 -> itself, 01012345678, 010-1234-5678 (and 02-123-4567 style for Seoul)."""
    national = "0" + e164.removeprefix("+82")
    forms = {e164, national, e164.removeprefix("+")}
    if len(national) == 11:
        forms.add(f"{national[:3]}-{national[3:7]}-{national[7:]}")
    elif len(national) == 10:
        head = 2 if national.startswith("02") else 3
        forms.add(f"{national[:head]}-{national[head:-4]}-{national[-4:]}")
    return forms


def test_phone_forms() -> None:
    assert phone_forms("+821012345678") == {
        "+821012345678", "821012345678", "01012345678", "010-1234-5678"
    }  # fmt: skip


def _address_everyone(dsn: str, stop: threading.Event) -> None:
    """Give every enrolled resident an address as soon as they are enrolled (the demo's town
    has none), so that anything logging a resident's record would log it."""
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "UPDATE anbu.resident SET address = '서울특별시 종로구 자하문로 ' || id || '길 7'"
                    " WHERE address IS NULL"
                )
        except psycopg.Error:
            pass  # the schema is being migrated
        stop.wait(0.2)


def care_note(resident_id: int) -> str:
    """The care note written on a resident's card, a text no log line may carry."""
    return f"방문 메모 {resident_id}: 혈압약 복용 확인, 무릎 통증 호소"


def read_every_card(log: Path, demo: subprocess.Popen[str]) -> None:
    """As the demo's care manager would: a token, then every resident's card and activity, a
    care note written on each, corrected and read back (their names, phones, addresses and
    notes travel in those answers, never into a log line)."""
    deadline = time.monotonic() + 180
    while not (found := re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/", log.read_text())):
        assert demo.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.2)
    base = found.group(1)
    got = httpx.post(f"{base}/api/v1/token", data={"username": "cheongun", "password": "anbu-demo"})
    assert got.status_code == 200, got.text
    auth = {"Authorization": f"Bearer {got.json()['access_token']}"}
    listed = httpx.get(f"{base}/api/v1/residents", headers=auth)
    assert listed.status_code == 200 and listed.json()["data"], listed.text
    for resident in listed.json()["data"]:
        for path in ("", "/activity"):
            card = httpx.get(f"{base}/api/v1/residents/{resident['id']}{path}", headers=auth)
            assert card.status_code == 200, card.text
        if resident["status"] == "ended":
            continue
        notes = f"{base}/api/v1/residents/{resident['id']}/notes"
        written = httpx.post(notes, json={"body": "임시 메모"}, headers=auth)
        assert written.status_code == 201, written.text
        body = {"body": care_note(resident["id"]), "corrects": written.json()["id"]}
        fixed = httpx.post(notes, json=body, headers=auth)
        assert fixed.status_code == 201, fixed.text
        assert httpx.get(notes, headers=auth).status_code == 200


def test_demo_at_debug_logs_no_name_phone_address_or_speech(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANBU_")}
    env["ANBU_DATABASE_URL"] = db_url
    env["TMPDIR"] = str(tmp_path)
    stop = threading.Event()
    addresser = threading.Thread(target=_address_everyone, args=(db_url, stop), daemon=True)
    addresser.start()
    out = tmp_path / "demo.log"
    try:
        with out.open("w") as sink:
            demo = subprocess.Popen(
                [ANBU, "demo", "--verbose", "--duration", "150", "--speed", "2000", "--homes", "3",
                 "--port", "0", "--stop-when-done", "--broker", "mosquitto"],
                env=env, stdout=sink, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            try:
                read_every_card(out, demo)
                returncode = demo.wait(240)
            finally:
                if demo.poll() is None:
                    demo.kill()
                    demo.wait()
    finally:
        stop.set()
        addresser.join(5)
    logs = out.read_text()
    assert returncode == 0, logs[-4000:]
    assert " DEBUG " in logs, "not logged at DEBUG: the test proves nothing"
    with psycopg.connect(db_url) as conn:
        residents = conn.execute(
            "SELECT display_name, phone, address FROM anbu.resident"
        ).fetchall()
        said = [
            r[0]
            for r in conn.execute(
                "SELECT speech FROM anbu.calls WHERE coalesce(speech, '') <> ''"
            ).fetchall()
        ]
        managers = [r[0] for r in conn.execute("SELECT phone FROM anbu.care_manager").fetchall()]
        noted = [r[0] for r in conn.execute("SELECT DISTINCT resident_id FROM anbu.care_note")]
        calls = conn.execute("SELECT count(*) FROM anbu.calls").fetchone()
    assert residents and calls and calls[0] > 0 and noted
    secrets: dict[str, str] = {}
    for name, phone, address in residents:
        secrets[name] = "name"
        for form in phone_forms(phone):
            secrets[form] = "resident phone"
        if address:
            secrets[address] = "address"
    for phone in managers:
        for form in phone_forms(phone):
            secrets[form] = "care manager phone"
    for text in said:
        if len(text) >= 2:
            secrets[text] = "speech transcript"
    for rid in noted:
        secrets[care_note(rid)] = "care note"
        secrets["임시 메모"] = "care note"
    assert any(kind == "address" for kind in secrets.values())
    for line in logs.splitlines():
        for secret, kind in secrets.items():
            assert secret not in line, f"a {kind} in the logs: {line[:300]}"
        # a Twilio webhook's form body (CallSid=...&SpeechResult=...) is never logged
        for field in ("SpeechResult=", "Digits=", "From=%2B", "To=%2B"):
            assert field not in line, f"a webhook body in the logs: {line[:300]}"
    print(f"{len(logs.splitlines())} log lines checked against {len(secrets)} private strings")
