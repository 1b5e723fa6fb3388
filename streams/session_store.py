"""Session state on disk: Faust's RocksDB store, for tables written a batch at a time.

Faust's RocksDB store finds which partition a write belongs to from the stream event
being processed. The worker writes a whole batch's sessions after folding its events,
outside any one event; such writes go to the key's own partition, the one its changelog
record lands in (Kafka's default partitioner, which the table's ``use_partitioner`` uses).
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from faust.stores import STORES
from faust.stores.rocksdb import Store
from faust.streams import current_event

URL = "rocksdb-keyed://"


class KeyPartitionedRocksDB(Store):
    def _set(self, key: bytes, value: bytes | None) -> None:
        if current_event() is not None:
            super()._set(key, value)
            return
        partition = (murmur2(key) & 0x7FFFFFFF) % (self.table.partitions or self.app.conf.topic_partitions)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)


STORES.aliases["rocksdb-keyed"] = f"{__name__}:KeyPartitionedRocksDB"
