"""The consumer's fast path gives the general path's rows, and leaves it everything else.

Captured messages of both converter settings, synthetic schema'd ones (as the ingest benchmark
writes) and every way we can think of to spoil them: the fast path either returns exactly what
`debezium.decode` + `events.map_change` return, or None (the general path then maps the message or
names the reason it is bad).
"""

import copy
import json
from pathlib import Path

import pytest

from benchmarks.cdc_events import ChangeStream
from instashop.ingest import typed_changes
from instashop.ingest.debezium import DecodeError
from instashop.ingest.decode import general_path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "debezium"
MODES = ["no_schema_string_decimals", "schema_precise_decimals"]


def _fixture(mode: str) -> list[tuple[str, bytes | None, bytes | None]]:
    messages = []
    for line in (FIXTURES / f"{mode}.jsonl").read_text().splitlines():
        m = json.loads(line)
        messages.append((m["topic"], *(None if v is None else v.encode() for v in (m["key"], m["value"]))))
    return messages


def _general(key: bytes | None, value: bytes | None):
    """The general path's row, or the DecodeError it raises."""
    try:
        return general_path(key, value)
    except DecodeError as err:
        return err


def _assert_same_or_declined(topic: str, key: bytes | None, value: bytes | None) -> bool:
    """True when the fast path took the message (and then gave the general path's row)."""
    fast = typed_changes.map_message(topic, key, value)
    if fast is None:
        return False
    assert fast == _general(key, value), f"{topic} {value!r}"
    return True


@pytest.mark.parametrize("mode", MODES)
def test_captured_creates_updates_and_reads_take_the_fast_path_with_equal_rows(mode):
    for topic, key, value in _fixture(mode):
        taken = _assert_same_or_declined(topic, key, value)
        op = None if value is None else json.loads(value).get("payload", json.loads(value)).get("op")
        assert taken == (op in ("c", "u", "r")), f"{op} {value!r}"


def test_benchmark_messages_take_the_fast_path_with_equal_rows():
    stream = ChangeStream("unit")
    for _ in range(30):
        for topic, key, value in stream.session():
            assert _assert_same_or_declined(topic, key, value)


def _spoiled(envelope: dict) -> list[dict]:
    """Copies of a decoded message with one thing wrong (or unusual) each."""
    payload = envelope.get("payload", envelope)
    variants = []
    if payload.get("after") is None:  # a delete: the general path's alone
        return variants

    def variant(change) -> None:
        spoiled = copy.deepcopy(envelope)
        change(spoiled.get("payload", spoiled))
        variants.append(spoiled)

    for column, value in payload["after"].items():
        for bad in (None, "3", 3, 10.05, True, "NaN", "yesterday", "", [], {"value": "AQ==", "scale": 2}):
            if bad != value:
                variant(lambda p, c=column, b=bad: p["after"].__setitem__(c, b))
        variant(lambda p, c=column: p["after"].pop(c))
    variant(lambda p: p["after"].__setitem__("unexpected_column", 1))
    variant(lambda p: p.__setitem__("op", "x"))
    variant(lambda p: p.__setitem__("op", "d"))
    variant(lambda p: p.__setitem__("before", dict(p["after"])))
    variant(lambda p: p.__setitem__("after", None))
    variant(lambda p: p["source"].__setitem__("table", "refunds"))
    variant(lambda p: p["source"].__setitem__("lsn", "1"))
    variant(lambda p: p["source"].pop("ts_ms"))
    if "payload" in envelope:
        variant(lambda p: None)
        variants[-1]["extra"] = 1
        variants.append({"payload": payload, "schema": envelope["schema"]})  # members in the other order
    return variants


@pytest.mark.parametrize("mode", MODES)
def test_spoiled_messages_are_declined_or_mapped_alike(mode):
    taken = declined = 0
    for topic, key, value in _fixture(mode):
        if value is None:
            continue
        for spoiled in _spoiled(json.loads(value)):
            if _assert_same_or_declined(topic, key, json.dumps(spoiled, separators=(",", ":")).encode()):
                taken += 1
            else:
                declined += 1
        for bad_key in (None, b"", b"not json", b"[]", b"{}"):
            assert not _assert_same_or_declined(topic, bad_key, value)
        assert not _assert_same_or_declined("instashop.public.refunds", key, value)
    assert taken and declined  # some spoilings are harmless (extra column, 3 for an int), most are not
