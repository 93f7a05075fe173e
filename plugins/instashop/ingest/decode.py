"""From a CDC message to its warehouse row: the consumer's one decode entry point, `decode_message`.

Two paths, one result. The fast path (`typed_changes`) decodes the shapes our connector writes
straight into typed rows. Anything it does not take (deletes, other encodings, every malformed
message) takes the general path: `debezium.decode` parses the envelope (schema, op, source, row)
and `events.map_change` maps the change to its business event. The fast path declines rather than
rejects, so every dead-letter reason is the general path's (tests/unit/test_typed_changes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from instashop.ingest import debezium, events, typed_changes

# A change event of the shop's tables is a few KiB; anything this large is not one of ours.
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Rejected:
    """A message that maps to no row: the reason its dead letter carries."""

    reason: str


def decode_message(topic: str, key: bytes | None, value: bytes | None) -> events.Mapped | Rejected | None:
    """The message's warehouse row, Rejected with the reason, or None (a tombstone: nothing to write)."""
    try:
        if value is not None and len(value) > MAX_MESSAGE_BYTES:
            return Rejected(f"message of {len(value)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
        mapped = typed_changes.map_message(topic, key, value)
        return mapped if mapped is not None else general_path(key, value)
    except debezium.DecodeError as err:
        return Rejected(str(err))
    except Exception as err:  # a poison message must never stop the pipeline
        return Rejected(f"unexpected {type(err).__name__}: {err}")


def general_path(key: bytes | None, value: bytes | None) -> events.Mapped | None:
    """Any Debezium JSON message: its row, or None for a tombstone; raises DecodeError with the reason."""
    change = debezium.decode(key, value)
    return None if change is None else events.map_change(change)
