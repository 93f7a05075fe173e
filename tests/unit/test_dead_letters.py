import hashlib

from instashop.ingest.dead_letters import EXCERPT_BYTES, MAX_FORWARDED_VALUE_BYTES, DeadLetter, dlq_message, excerpt

# librdkafka's producer refuses a message above its message.max.bytes (1,000,000 by default).
PRODUCER_LIMIT = 1_000_000


def _letter(value: bytes | None, key: bytes | None = b'{"id": 1}') -> DeadLetter:
    return DeadLetter("instashop.public.transactions", 2, 41, key, value, "bad")


def _size(message) -> int:
    headers = sum(len(name) + len(value) for name, value in message.headers.items())
    return len(message.key) + len(message.value or b"") + headers


def test_a_value_that_fits_is_forwarded_whole_with_its_digest():
    value = b"v" * MAX_FORWARDED_VALUE_BYTES
    message = dlq_message(_letter(value))
    assert message.value == value
    assert message.headers["dlq.value.truncated"] == "false"
    assert message.headers["dlq.value.sha256"] == hashlib.sha256(value).hexdigest()


def test_a_value_too_large_to_forward_becomes_an_excerpt_the_producer_accepts():
    for size in (MAX_FORWARDED_VALUE_BYTES + 1, 1_048_588, 64 << 20):
        value = b"w" * size
        message = dlq_message(_letter(value, key=b"k" * 2_000_000))
        assert message.value == value[:EXCERPT_BYTES]
        assert message.headers["dlq.value.bytes"] == str(size)
        assert message.headers["dlq.value.sha256"] == hashlib.sha256(value).hexdigest()
        assert message.headers["dlq.value.truncated"] == "true"
        assert _size(message) < PRODUCER_LIMIT


def test_letters_are_keyed_by_where_they_were_read():
    first, again = dlq_message(_letter(b"x")), dlq_message(_letter(b"x", key=None))
    assert first.key == again.key == b"instashop.public.transactions/2/41"
    assert first.headers["dlq.key"] == b'{"id": 1}'
    assert "dlq.key" not in again.headers


def test_a_tombstone_has_no_digest():
    message = dlq_message(_letter(None))
    assert message.value is None
    assert message.headers["dlq.value.bytes"] == "0"
    assert "dlq.value.sha256" not in message.headers


def test_the_table_excerpt_is_bounded_text():
    assert excerpt(None) is None
    assert excerpt(b"a\x00\xff") == "a\ufffd\ufffd"
    assert len(excerpt(b"z" * (EXCERPT_BYTES + 10))) == EXCERPT_BYTES
