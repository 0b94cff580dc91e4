"""The forumstats topology: Kafka -> per-bucket windows -> Parquet on S3. Wiring only.

Named forumstats_topology.py, not forumstats.py: streamparse imports a topology file as a
top-level module named after the file, which would resolve to the forumstats package.
"""

from streamparse import Grouping, Topology

from bolts.latest_snapshots import LatestSnapshotBolt
from bolts.parquet_sink import ParquetSinkBolt
from bolts.window_count import WindowCountBolt
from forumstats.topology_config import topology_options
from spouts.kafka_events import KafkaEventSpout

OPTIONS = topology_options()


class ForumStats(Topology):
    events = KafkaEventSpout.spec(name="events", par=OPTIONS.spout_parallelism)
    counts = WindowCountBolt.spec(
        name="counts", par=OPTIONS.count_parallelism,
        inputs={events["batches"]: Grouping.fields("bucket")},
        config={"topology.tick.tuple.freq.secs": OPTIONS.tick_secs})
    sink = ParquetSinkBolt.spec(
        name="sink", par=OPTIONS.sink_parallelism,
        inputs={counts["windows"]: Grouping.fields("bucket"),
                events["dead_letters"]: Grouping.SHUFFLE,
                counts["dead_letters"]: Grouping.SHUFFLE},
        config={"topology.tick.tuple.freq.secs": OPTIONS.tick_secs})
    latest = LatestSnapshotBolt.spec(
        name="latest", par=1,
        inputs={counts["windows"]: Grouping.GLOBAL, counts["partials"]: Grouping.GLOBAL},
        config={"topology.tick.tuple.freq.secs": OPTIONS.tick_secs})
