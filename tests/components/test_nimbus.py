"""Submitting a streamparse topology to the stand-in Nimbus with streamparse's own code.

The calls are the ones ``sparse submit`` makes after building the jar and virtualenvs
(``streamparse.cli.submit.submit_topology``): resolve the options, open the (here
SSH-less) tunnel, get the Thrift client, upload the jar, kill an existing topology if
forced, and submit. The stand-in records what arrived and checks it as Nimbus would.
"""

from __future__ import annotations

import json
import os

import pytest
from streamparse.cli.common import resolve_options
from streamparse.cli.submit import (
    THRIFT_CHUNK_SIZE,
    _kill_existing_topology,
    _submit_topology,
    _upload_jar,
)
from streamparse.thrift import storm_thrift
from streamparse.util import get_nimbus_client, ssh_tunnel
from tests.components.multilang import (
    STREAMPARSE_RUN,
    ShellBolt,
    ShellSpout,
    component_conf,
    context_from_topology,
)
from tests.components.nimbus import StandInNimbus, validate_topology
from thriftpy2.thrift import TApplicationException


@pytest.fixture
def sample_topology(monkeypatch, sample_resources):
    """A fresh streamparse Topology class over the sample components.

    Fresh per test: ``_submit_topology`` rewrites the component scripts in place.
    """
    monkeypatch.syspath_prepend(str(sample_resources))
    monkeypatch.delenv("STREAMPARSE_NIMBUS", raising=False)
    from sample_bolts.echo import EchoBolt
    from sample_bolts.printer import PrintingBolt
    from sample_spouts.counter import CounterSpout
    from streamparse import Grouping, Topology

    class SampleTopology(Topology):
        counter = CounterSpout.spec(par=1, config={"counter.limit": 3})
        echo = EchoBolt.spec(inputs={counter: Grouping.fields("n")}, par=2)
        printer = PrintingBolt.spec(inputs=[echo["default"]], par=1)

    return SampleTopology


@pytest.fixture
def jar(tmp_path):
    """A dummy jar spanning three of streamparse's 300 KiB upload chunks."""
    path = tmp_path / "topology.jar"
    path.write_bytes(os.urandom(2 * THRIFT_CHUNK_SIZE + 12345))
    return path


def sparse_submit(nimbus, topology_class, jar, name="sample", force=False, cli_options=None):
    """The Nimbus-facing part of ``streamparse.cli.submit.submit_topology``."""
    env_config = nimbus.env_config(serializer="json")
    options = resolve_options(cli_options or {}, env_config, topology_class, name)
    options["topology.original_name"] = name
    with ssh_tunnel(env_config) as (host, port):
        client = get_nimbus_client(env_config, host=host, port=port, timeout=5000)
        remote_jar = _upload_jar(client, str(jar))
        _kill_existing_topology(name, force, None, client)
        _submit_topology(
            name, topology_class, remote_jar, {}, env_config, client, options=options, active=True
        )
    return remote_jar


def test_sparse_submit_reaches_nimbus_intact(sample_topology, jar):
    with StandInNimbus() as nimbus:
        remote_jar = sparse_submit(
            nimbus, sample_topology, jar, cli_options={"topology.message.timeout.secs": 60}
        )

        assert nimbus.call_names == [
            "getClusterInfo",  # resolve_options: the worker list
            "beginFileUpload",
            "uploadChunk",
            "uploadChunk",
            "uploadChunk",
            "finishFileUpload",
            "getClusterInfo",  # nimbus_storm_version (>= 1.1.0: ask about the name)
            "isTopologyNameAllowed",
            "submitTopologyWithOpts",
        ]
        assert nimbus.errors == [] and nimbus.handler.unexpected == []
        (sub,) = nimbus.submissions
        assert sub.jar_location == remote_jar
        assert sub.jar_bytes == jar.read_bytes()
        assert sub.name == "sample"
        assert sub.initial_status == storm_thrift.TopologyInitialStatus.ACTIVE
        assert sub.conf == json.loads(sub.json_conf)
        assert sub.conf["topology.message.timeout.secs"] == 60
        assert sub.conf["topology.original_name"] == "sample"
        assert sub.conf["storm.workers.list"] == ["127.0.0.1"]  # from getClusterInfo
        assert sub.conf["topology.workers"] == 1 and sub.conf["topology.acker.executors"] == 1

        topology = sub.topology
        assert isinstance(topology, storm_thrift.StormTopology)
        assert validate_topology(topology) == []
        assert set(topology.spouts) == {"counter"} and set(topology.bolts) == {"echo", "printer"}
        shells = {
            name: comp.bolt_object.shell if name in topology.bolts else comp.spout_object.shell
            for name, comp in {**topology.spouts, **topology.bolts}.items()
        }
        assert {n: (s.execution_command, s.script) for n, s in shells.items()} == {
            "counter": ("streamparse_run", "-s json sample_spouts.counter.CounterSpout"),
            "echo": ("streamparse_run", "-s json sample_bolts.echo.EchoBolt"),
            "printer": ("streamparse_run", "-s json sample_bolts.printer.PrintingBolt"),
        }
        counter = topology.spouts["counter"].common
        echo = topology.bolts["echo"].common
        printer = topology.bolts["printer"].common
        assert (counter.parallelism_hint, echo.parallelism_hint, printer.parallelism_hint) == (
            1,
            2,
            1,
        )
        assert json.loads(counter.json_conf) == {"counter.limit": 3}
        assert counter.inputs == {}
        assert {s: i.output_fields for s, i in counter.streams.items()} == {"default": ["n"]}
        assert {s: i.output_fields for s, i in echo.streams.items()} == {
            "default": ["value"],
            "ticks": ["freq"],
        }
        ((gsid, grouping),) = echo.inputs.items()
        assert (gsid.componentId, gsid.streamId) == ("counter", "default")
        assert grouping.fields == ["n"]
        ((gsid, grouping),) = printer.inputs.items()
        assert (gsid.componentId, gsid.streamId) == ("echo", "default")
        assert grouping.shuffle is not None


def test_submitted_components_run_under_the_driver(sample_topology, jar, sample_resources):
    """What Nimbus received starts and works: the rewritten ``-s json ...`` scripts, the
    context Storm derives from the topology, the conf merged with the component's."""
    with StandInNimbus() as nimbus:
        sparse_submit(nimbus, sample_topology, jar)
        sub = nimbus.submissions[0]

    context = context_from_topology(sub.topology, "echo", task_index=1)
    assert context["task->component"] == {
        "1": "__acker",
        "2": "counter",
        "3": "echo",
        "4": "echo",
        "5": "printer",
    }
    assert context["taskid"] == 4
    assert context["source->stream->grouping"] == {
        "counter": {"default": {"type": "FIELDS", "fields": ["n"]}}
    }
    assert context["source->stream->fields"] == {"counter": {"default": ["n"]}}
    assert context["stream->target->grouping"] == {"default": {"printer": {"type": "SHUFFLE"}}}
    assert component_conf(sub.topology, "counter") == {"counter.limit": 3}

    with (
        ShellSpout.from_topology(
            sub.topology, "counter", cwd=sample_resources, conf=sub.conf
        ) as spout,
        ShellBolt.from_topology(
            sub.topology, "echo", cwd=sample_resources, conf=sub.conf, task_index=1
        ) as bolt,
    ):
        assert spout.argv == [STREAMPARSE_RUN, "-s json sample_spouts.counter.CounterSpout"]
        spout.next_until(lambda: len(spout.emits) == 3)
        assert spout.next().emits == []  # counter.limit from the component conf
        for emit in spout.emits:
            result = bolt.execute(emit.values, comp="counter")
            assert result.values() == [emit.values]
            assert result.emits[0].need_task_ids is False
            spout.ack(emit.msg_id)
        assert spout.pending_ids == []


def test_forced_resubmission_kills_the_running_topology(sample_topology, jar):
    with StandInNimbus() as nimbus:
        sparse_submit(nimbus, sample_topology, jar)
        client = nimbus.client()
        assert client.isTopologyNameAllowed("sample") is False  # alive already
        with pytest.raises(storm_thrift.AlreadyAliveException):
            client.submitTopologyWithOpts(
                "sample",
                nimbus.submissions[0].jar_location,
                "{}",
                nimbus.submissions[0].topology,
                storm_thrift.SubmitOptions(initial_status=1),
            )

        sparse_submit(nimbus, sample_topology, jar, force=True)

        first, second = nimbus.submissions
        assert first.killed and not second.killed
        assert "killTopologyWithOpts" in nimbus.call_names
        assert list(nimbus.handler.alive) == ["sample"]
        info = client.getTopologyInfo(second.topology_id)
        assert (info.name, info.status) == ("sample", "ACTIVE")
        summary = client.getClusterInfo()
        assert [t.name for t in summary.topologies] == ["sample"]
        assert summary.nimbuses[0].version == "2.8.1" and summary.nimbuses[0].isLeader


def test_nimbus_rejects_what_storm_rejects(sample_topology, jar):
    with StandInNimbus() as nimbus:
        client = nimbus.client()
        topology = sample_topology.thrift_topology

        with pytest.raises(TApplicationException, match="does not exist"):
            client.uploadChunk("/no/such/upload.jar", b"x")
        with pytest.raises(TApplicationException, match="upload not finished"):
            client.submitTopology("sample", "/no/such/upload.jar", "{}", topology)

        location = client.beginFileUpload()
        client.uploadChunk(location, b"jar")
        client.finishFileUpload(location)
        assert client.isTopologyNameAllowed("bad.name") is False
        with pytest.raises(storm_thrift.InvalidTopologyException, match="name"):
            client.submitTopology("bad.name", location, "{}", topology)
        with pytest.raises(storm_thrift.InvalidTopologyException, match="JSON object"):
            client.submitTopology("sample", location, "[]", topology)

        broken = storm_thrift.StormTopology(
            spouts=topology.spouts,
            bolts={
                "echo": storm_thrift.Bolt(
                    bolt_object=topology.bolts["echo"].bolt_object,
                    common=storm_thrift.ComponentCommon(
                        inputs={
                            storm_thrift.GlobalStreamId(
                                componentId="counter", streamId="default"
                            ): storm_thrift.Grouping(fields=["no_such_field"]),
                            storm_thrift.GlobalStreamId(
                                componentId="ghost", streamId="default"
                            ): storm_thrift.Grouping(shuffle=storm_thrift.NullStruct()),
                        },
                        streams=topology.bolts["echo"].common.streams,
                        parallelism_hint=1,
                        json_conf="{}",
                    ),
                )
            },
            state_spouts={},
        )
        with pytest.raises(storm_thrift.InvalidTopologyException) as excinfo:
            client.submitTopology("sample", location, "{}", broken)
        assert "non-existent fields: ['no_such_field']" in excinfo.value.msg
        assert "non-existent component [ghost]" in excinfo.value.msg

        with pytest.raises(TApplicationException, match="does not implement getSupervisorPageInfo"):
            client.getSupervisorPageInfo("id", "host", False)
        assert nimbus.handler.unexpected == ["getSupervisorPageInfo"]
        assert nimbus.submissions == []
