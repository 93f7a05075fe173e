"""Dead letters: messages the consumer could not turn into rows, kept with the reason.

Each one is written to the `dead_letters` table (in the batch's DWH transaction) and published to
the DLQ topic after the commit. Whatever its size, a message the broker accepted must end as one
letter: the broker takes batches up to its `message.max.bytes` (1,048,588 by default) and, when
compressed, values many times larger, while a producer refuses any message over its own
`message.max.bytes` (1,000,000). A value too large to forward is replaced on the DLQ topic by an
excerpt, with its size and SHA-256 in the headers; the table always holds the excerpt and digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# What the table keeps of a key or value, and what the DLQ topic keeps of one too large to forward.
EXCERPT_BYTES = 64 * 1024
# The largest value forwarded whole: with the excerpted key and the headers, a DLQ message stays
# well under the producer's 1,000,000 byte limit.
MAX_FORWARDED_VALUE_BYTES = 512 * 1024


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str

    @property
    def value_bytes(self) -> int:
        return len(self.value or b"")

    @property
    def value_sha256(self) -> str | None:
        return None if self.value is None else hashlib.sha256(self.value).hexdigest()

    @property
    def dlq_key(self) -> bytes:
        """Where the message was read: a redelivered batch publishes its letters again under the same
        keys, so a compacted topic or a de-duplicating reader sees each letter once."""
        return f"{self.topic}/{self.partition}/{self.offset}".encode()


@dataclass(frozen=True)
class DlqMessage:
    key: bytes
    value: bytes | None
    headers: dict[str, str | bytes | None]


def dlq_message(letter: DeadLetter) -> DlqMessage:
    """The letter as published to the DLQ topic: the value whole if it fits, else an excerpt."""
    truncated = letter.value is not None and len(letter.value) > MAX_FORWARDED_VALUE_BYTES
    headers: dict[str, str | bytes | None] = {
        "dlq.reason": letter.reason,
        "dlq.topic": letter.topic,
        "dlq.partition": str(letter.partition),
        "dlq.offset": str(letter.offset),
        "dlq.value.bytes": str(letter.value_bytes),
        "dlq.value.truncated": str(truncated).lower(),
    }
    if letter.key is not None:
        headers["dlq.key"] = letter.key[:EXCERPT_BYTES]
    if (digest := letter.value_sha256) is not None:
        headers["dlq.value.sha256"] = digest
    value = letter.value[:EXCERPT_BYTES] if truncated and letter.value is not None else letter.value
    return DlqMessage(letter.dlq_key, value, headers)


def excerpt(raw: bytes | None) -> str | None:
    """The first EXCERPT_BYTES as text for the table (invalid UTF-8 and NULs replaced)."""
    if raw is None:
        return None
    return raw[:EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
