"""The consumer's decode entry point: every message gives a row, a tombstone's None, or a reason."""

import json
from pathlib import Path

from instashop.ingest.decode import MAX_MESSAGE_BYTES, Rejected, decode_message, general_path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "debezium" / "no_schema_string_decimals.jsonl"


def test_captured_messages_give_the_general_paths_rows():
    for line in FIXTURE.read_text().splitlines():
        m = json.loads(line)
        key, value = (None if v is None else v.encode() for v in (m["key"], m["value"]))
        assert decode_message(m["topic"], key, value) == general_path(key, value)


def test_bad_messages_are_rejected_with_the_reason():
    oversized = b"{" + b" " * MAX_MESSAGE_BYTES + b"}"
    assert decode_message("instashop.public.transactions", b"{}", oversized) == Rejected(
        f"message of {len(oversized)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
    )
    rejected = decode_message("instashop.public.transactions", b'{"transaction_id": 1}', b"not json")
    assert isinstance(rejected, Rejected) and rejected.reason
