"""The forms streamparse makes of our topology: the Thrift ``StormTopology`` (built when the
class is defined), the Flux dict, binary Thrift from ``write()``, and what ``sparse submit``
sends to Nimbus (a stand-in Nimbus served from streamparse's own Thrift interface).

Every test loads the topology afresh with ``streamparse.util.get_topology_from_file``, the
way ``sparse submit`` does, after dropping the cached module: ``sparse submit`` rewrites the
component scripts in place, so a shared class would leak one test's submission into the next.
The settings come from config.json (FORUMSTATS_CONFIG / FORUMSTATS_ENV), as for a deployment.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
from pathlib import Path

import pytest
from streamparse.cli.common import resolve_options
from streamparse.cli.submit import _kill_existing_topology, _submit_topology, _upload_jar
from streamparse.thrift import storm_thrift
from streamparse.util import get_nimbus_client, get_topology_from_file, ssh_tunnel
from tests.components.multilang import (
    STREAMPARSE_RUN,
    ShellSpout,
    context_from_topology,
    grouping_json,
)
from tests.components.nimbus import StandInNimbus, validate_topology
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.utils import deserialize, serialize

from forumstats.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.json"
TOPOLOGY_FILE = ROOT / "topologies" / "forumstats_topology.py"
MODULE = TOPOLOGY_FILE.stem
BATCH_FIELDS = ["bucket", "source", "first", "last", "max_ts", "rows", "users", "span"]
DEAD_FIELDS = ["source", "first", "last", "origin", "records"]
WINDOW_FIELDS = ["bucket", "window"]
SCRIPTS = {
    "events": "spouts.kafka_events.KafkaEventSpout",
    "counts": "bolts.window_count.WindowCountBolt",
    "sink": "bolts.parquet_sink.ParquetSinkBolt",
}
FIELDS_BUCKET = {"type": "FIELDS", "fields": ["bucket"]}
SHUFFLE = {"type": "SHUFFLE"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def load(monkeypatch):
    """``load(config=..., env=...)`` -> the topology class from a fresh import."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # get_topology_from_file appends to it
    saved = sys.modules.pop(MODULE, None)

    def load_topology(config: Path = CONFIG, env: str = "local"):
        sys.modules.pop(MODULE, None)
        monkeypatch.setenv("FORUMSTATS_CONFIG", str(config))
        monkeypatch.setenv("FORUMSTATS_ENV", env)
        return get_topology_from_file(str(TOPOLOGY_FILE))

    yield load_topology
    sys.modules.pop(MODULE, None)
    if saved is not None:
        sys.modules[MODULE] = saved


def config_doc() -> dict:
    return json.loads(CONFIG.read_text())


def temp_config(tmp_path: Path, **options) -> Path:
    """config.json with the ``local`` environment's options changed (None removes one)."""
    doc = config_doc()
    opts = doc["envs"]["local"]["options"]
    for key, value in options.items():
        key = key.replace("__", ".")
        if value is None:
            opts.pop(key, None)
        else:
            opts[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def shape(topology) -> dict:
    """Everything Storm acts on, per component, in plain data."""
    topology = getattr(topology, "thrift_topology", topology)
    out = {}
    for kind, group in (("spout", topology.spouts or {}), ("bolt", topology.bolts or {})):
        for name, comp in group.items():
            obj = comp.spout_object if kind == "spout" else comp.bolt_object
            common = comp.common
            out[name] = {
                "kind": kind,
                "shell": (obj.shell.execution_command, obj.shell.script),
                "par": common.parallelism_hint,
                "conf": json.loads(common.json_conf or "{}"),
                "streams": {s: list(i.output_fields) for s, i in (common.streams or {}).items()},
                "direct": {s: bool(i.direct) for s, i in (common.streams or {}).items()},
                "inputs": {(g.componentId, g.streamId): grouping_json(gr)
                           for g, gr in (common.inputs or {}).items()},
            }
    return out


def check_ours(facts: dict, *, spout_par=1, count_par=2, sink_par=2, tick=1,
               script_prefix="") -> None:
    """The facts of our three components (other components may exist; they get checked
    generically by ``validate_topology``)."""
    assert {n for n, f in facts.items() if f["kind"] == "spout"} == {"events"}
    assert {"counts", "sink"} <= {n for n, f in facts.items() if f["kind"] == "bolt"}
    for name, script in SCRIPTS.items():
        assert facts[name]["shell"] == ("streamparse_run", script_prefix + script)
    events, counts, sink = facts["events"], facts["counts"], facts["sink"]

    assert events["streams"] == {"batches": BATCH_FIELDS, "dead_letters": DEAD_FIELDS,
                                 "status": ["task", "state", "detail"]}
    assert events["inputs"] == {} and events["conf"] == {}
    assert events["par"] == spout_par

    assert counts["inputs"] == {("events", "batches"): FIELDS_BUCKET}
    assert counts["streams"]["windows"] == WINDOW_FIELDS
    assert counts["streams"]["dead_letters"] == DEAD_FIELDS
    assert counts["conf"] == {"topology.tick.tuple.freq.secs": tick}
    assert counts["par"] == count_par

    assert sink["inputs"] == {("counts", "windows"): FIELDS_BUCKET,
                              ("events", "dead_letters"): SHUFFLE,
                              ("counts", "dead_letters"): SHUFFLE}
    assert sink["conf"] == {"topology.tick.tuple.freq.secs": tick}
    assert sink["par"] == sink_par

    # No direct streams (Storm 2.6+ cannot take direct emits from a multi-lang component).
    assert not any(any(f["direct"].values()) for f in facts.values())
    for name, f in facts.items():
        assert f["shell"][0] == "streamparse_run", name
        assert isinstance(f["par"], int) and f["par"] >= 1, name


# --------------------------------------------------------------------------- tests


def test_thrift_topology_wires_the_components_as_designed(load):
    topology = load()
    facts = shape(topology)

    check_ours(facts)
    assert validate_topology(topology.thrift_topology) == []
    # The contexts Storm derives: each count task hears every bucket via fields grouping.
    ctx = context_from_topology(topology, "counts", task_index=1)
    assert list(ctx["task->component"].values()).count("counts") == 2
    assert ctx["source->stream->fields"]["events"]["batches"] == BATCH_FIELDS
    assert ctx["stream->target->grouping"]["windows"]["sink"] == FIELDS_BUCKET


def test_parallelism_and_tick_come_from_the_config_environment(load, tmp_path):
    config = temp_config(tmp_path, forumstats__parallelism__spout=2,
                         forumstats__parallelism__counts=3, forumstats__parallelism__sink=4,
                         forumstats__buckets=4, forumstats__storm__tick_secs=2)
    topology = load(config)

    check_ours(shape(topology), spout_par=2, count_par=3, sink_par=4, tick=2)
    flux = topology.to_flux_dict("forumstats")
    pars = {c["id"]: c["parallelism"] for c in flux["spouts"] + flux["bolts"]}
    assert (pars["events"], pars["counts"], pars["sink"]) == (2, 3, 4)
    ctx = context_from_topology(topology, "sink", task_index=3)
    assert list(ctx["task->component"].values()).count("sink") == 4


def test_more_tasks_than_buckets_is_refused(load, tmp_path):
    config = temp_config(tmp_path, forumstats__parallelism__counts=8)
    with pytest.raises(ConfigError, match=r"forumstats\.parallelism\.counts=8 exceeds"):
        load(config)


def test_flux_dict_states_the_same_wiring(load):
    topology = load()
    flux = topology.to_flux_dict("forumstats")
    json.dumps(flux)  # plain data, ready for a Flux YAML file

    assert flux["name"] == "forumstats"
    comps = {c["id"]: c for c in flux["spouts"] + flux["bolts"]}
    assert [c["id"] for c in flux["spouts"]] == ["events"]
    facts = shape(topology)
    assert set(comps) == set(facts)
    for name, comp in comps.items():
        kind = "spouts.FluxShellSpout" if name == "events" else "bolts.FluxShellBolt"
        assert comp["className"] == f"org.apache.storm.flux.wrappers.{kind}"
        assert comp["constructorArgs"][0] == list(facts[name]["shell"])
        assert comp["parallelism"] == facts[name]["par"]
        methods = comp.get("configMethods", [])
        named = {m["args"][0]: m["args"][1] for m in methods if m["name"] == "setNamedStream"}
        assert named == facts[name]["streams"]
        conf = {m["args"][0]: m["args"][1] for m in methods
                if m["name"] == "addComponentConfig"}
        assert conf == facts[name]["conf"]

    streams = {(s["from"], s["to"], s["grouping"]["streamId"]): s["grouping"]
               for s in flux["streams"]}
    assert streams[("events", "counts", "batches")] == {
        "type": "FIELDS", "args": ["bucket"], "streamId": "batches"}
    assert streams[("counts", "sink", "windows")] == {
        "type": "FIELDS", "args": ["bucket"], "streamId": "windows"}
    assert streams[("events", "sink", "dead_letters")] == {
        "type": "SHUFFLE", "streamId": "dead_letters"}
    assert streams[("counts", "sink", "dead_letters")] == {
        "type": "SHUFFLE", "streamId": "dead_letters"}
    # One Flux stream per Thrift input, nothing more.
    thrift_inputs = {(src, name, stream) for name, f in facts.items()
                     for (src, stream) in f["inputs"]}
    assert set(streams) == thrift_inputs


def test_binary_thrift_round_trips(load):
    topology = load()
    buffer = io.BytesIO()
    topology.write(buffer)
    data = buffer.getvalue()

    assert data == serialize(topology.thrift_topology, TBinaryProtocolFactory())
    decoded = deserialize(storm_thrift.StormTopology(), data, TBinaryProtocolFactory())
    # streamparse's Grouping objects are subclasses that do not compare equal to plain
    # Thrift ones; equal bytes after a second encoding prove nothing was lost.
    assert serialize(decoded, TBinaryProtocolFactory()) == data
    assert shape(decoded) == shape(topology)
    check_ours(shape(decoded))


@pytest.mark.parametrize(("timeout", "ok"), [(60, False), (395, False), (396, True)])
def test_message_timeout_must_outlast_a_window_and_its_lateness(load, tmp_path, timeout, ok):
    # config.json local: window 1m + out_of_orderness 30s + allowed_lateness 5m + flush 5s
    config = temp_config(tmp_path, topology__message__timeout__secs=timeout)
    if ok:
        check_ours(shape(load(config)))
        return
    with pytest.raises(ConfigError) as excinfo:
        load(config)
    message = str(excinfo.value)
    assert f"topology.message.timeout.secs={timeout} is too short" in message
    assert "above 395" in message


def test_missing_message_timeout_means_storms_default_and_is_refused(load, tmp_path):
    config = temp_config(tmp_path, topology__message__timeout__secs=None)
    with pytest.raises(ConfigError, match=r"topology\.message\.timeout\.secs=30 is too short"):
        load(config)


def test_sparse_submit_hands_nimbus_the_real_topology(load, tmp_path):
    """The Nimbus-facing calls of ``streamparse.cli.submit.submit_topology`` with our topology
    and config.json's ``local`` environment (pointed at the stand-in Nimbus)."""
    topology = load()
    before = copy.deepcopy(shape(topology))
    doc = config_doc()
    local_options = doc["envs"]["local"]["options"]
    jar = tmp_path / "forumstats.jar"
    jar.write_bytes(os.urandom(4096))

    with StandInNimbus() as nimbus:
        env_config = {**doc["envs"]["local"], **nimbus.env_config()}
        options = resolve_options({}, env_config, topology, "forumstats")
        options["topology.original_name"] = "forumstats"
        with ssh_tunnel(env_config) as (host, port):
            client = get_nimbus_client(env_config, host=host, port=port, timeout=5000)
            remote_jar = _upload_jar(client, str(jar))
            _kill_existing_topology("forumstats", False, None, client)
            _submit_topology("forumstats", topology, remote_jar, doc, env_config, client,
                             options=options, active=True)

        assert nimbus.call_names == [
            "getClusterInfo", "beginFileUpload", "uploadChunk", "finishFileUpload",
            "getClusterInfo", "isTopologyNameAllowed", "submitTopologyWithOpts"]
        assert nimbus.errors == [] and nimbus.handler.unexpected == []
        (sub,) = nimbus.submissions

    assert sub.name == "forumstats" and sub.jar_bytes == jar.read_bytes()
    assert sub.initial_status == storm_thrift.TopologyInitialStatus.ACTIVE
    assert validate_topology(sub.topology) == []
    received = shape(sub.topology)
    # Same components and groupings; only the scripts gained the serializer (config.json).
    check_ours(received, script_prefix="-s json ")
    for facts in (before, received):
        for f in facts.values():
            f["shell"] = (f["shell"][0], f["shell"][1].removeprefix("-s json "))
    assert received == before

    conf = sub.conf
    for key, value in local_options.items():
        assert conf[key] == value, key
    assert {k for k in conf if k.startswith("forumstats.")} == {
        k for k in local_options if k.startswith("forumstats.")}
    # the Storm settings the exactness rules depend on arrive as configured
    assert {"topology.message.timeout.secs", "topology.max.spout.pending"} <= set(local_options)
    assert conf["topology.original_name"] == "forumstats"
    assert conf["pystorm.log.level"] == "info"

    # What Nimbus holds starts on a worker: the rewritten script, that conf, Storm's context.
    run_conf = {**conf, "forumstats.source": "generator", "forumstats.generator.events": 300}
    with ShellSpout.from_topology(sub.topology, "events", cwd=ROOT / "src", conf=run_conf,
                                  workdir=tmp_path / "spout") as spout:
        assert spout.argv == [STREAMPARSE_RUN, "-s json " + SCRIPTS["events"]]
        step = spout.next()
        assert {e.stream for e in step.emits} >= {"batches"}
        assert spout.errors == []
