"""Issue 16, item 7: on a fresh `make demo` nothing may start before what it needs exists.

- The connector is registered only once its publication (created by the OLTP migrations) covers
  every captured table: registered before, Debezium failed and had to be restarted.
- Every topic is created up front with its settings (the Spark app's side: test_realtime_metrics,
  test_app_started_before_its_topics_exist_counts_what_comes).
"""

import time
import uuid

import psycopg2
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from instashop.capture import topics
from instashop.capture.connector import ConnectClient, ConnectError, load_config
from instashop.kafka_auth import ADMIN, client_config

pytestmark = pytest.mark.integration


@pytest.fixture
def connect(settings):
    """A Connect client and a connector name; whatever was registered under it, and a replication
    slot it may have created, are removed afterwards."""
    client = ConnectClient(settings)
    name = f"it-not-ready-{uuid.uuid4().hex[:8]}"
    yield client, name
    client.delete(name)
    with psycopg2.connect(settings.shop_admin("instashop")) as conn, conn.cursor() as cur:
        deadline = time.monotonic() + 30
        while True:  # a deleted connector's task lets go of its slot within seconds
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (_slot(name),))
            row = cur.fetchone()
            if row is None or not row[0] or time.monotonic() > deadline:
                break
            time.sleep(1)
        if row is not None:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (_slot(name),))
    conn.close()


def _slot(name: str) -> str:
    return name.replace("-", "_")


@pytest.mark.parametrize(
    "change",
    [
        {"publication.name": "it_publication_never_created"},  # migrations not run at all
        {"table.include.list": load_config()["table.include.list"] + ",public.it_table_not_published"},
    ],
    ids=["no-publication", "table-not-published"],
)
def test_the_connector_is_not_registered_before_its_publication_covers_its_tables(connect, change):
    client, name = connect
    config = {**load_config(), **change, "slot.name": _slot(name)}
    with pytest.raises(ConnectError, match="instashop db migrate"):
        client.register(name, config)
    assert client.state(name).connector == "MISSING"


def test_topics_are_created_once_with_their_settings(settings):
    run = uuid.uuid4().hex[:8]
    wanted = {f"it{run}.public.transactions": topics.STREAM, f"it{run}.aggregates": topics.LIVE_AGGREGATES}
    kafka = client_config(settings, ADMIN)
    admin = AdminClient(kafka)
    try:
        assert sorted(topics.ensure(kafka, wanted)) == sorted(wanted)
        assert topics.ensure(kafka, wanted) == []  # idempotent
        metadata = admin.list_topics(timeout=10).topics
        assert {t: len(metadata[t].partitions) for t in wanted} == {t: s.partitions for t, s in wanted.items()}
        resource = ConfigResource(ConfigResource.Type.TOPIC, f"it{run}.aggregates")
        config = admin.describe_configs([resource])[resource].result(timeout=10)
        assert {k: config[k].value for k in topics.LIVE_AGGREGATES.config} == topics.LIVE_AGGREGATES.config
    finally:
        admin.delete_topics(list(wanted))
