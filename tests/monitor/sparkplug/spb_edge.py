"""A Sparkplug B edge node written with pysparkplug, an implementation plantwatch did not write.

Run by the interoperability tests with the Python of the virtual environment ``tests/run`` creates
(pysparkplug 0.6.1 needs paho-mqtt < 2; plantwatch runs on paho 2, so they never share a process):

    $PLANTWATCH_SPARKPLUG_VENV/bin/python spb_edge.py PORT GROUP NODE DEVICE SENSOR[,SENSOR...]

It reads one JSON command per line on stdin and answers each with one JSON line on stdout:

* ``{"op": "connect", "values": [...]}``: connect with pysparkplug's EdgeNode (NDEATH will with bdSeq, NBIRTH, DBIRTH of
  DEVICE with every sensor as a Double metric, aliases 1..n)
* ``{"op": "rows", "rows": [[...], ...], "rate": HZ, "alias_only": true}``: one DDATA per row with only
  the metrics that changed since they were last sent (report-by-exception); alias-only payloads are
  built with pysparkplug's DData without datatypes, the others with ``EdgeNode.update_device``
* ``{"op": "ddata", "metrics": [{"alias": 1, "datatype": 10, "value": 1.0}], "seq": "next"|"again"|"back"|"skip"}``:
  one crafted DDATA (for rejections and gaps); ``{"op": "dbirth", "device": ..., "metrics": [[name, value], ...]}``
* ``{"op": "raw", "topic": ..., "hex": ...}``: any bytes; ``{"op": "ndeath", "bd_seq": N}``: an NDEATH
* ``{"op": "commands"}``: how many rebirth requests arrived (each answered with new births at once)

Death by killing: the test sends SIGKILL and the broker publishes the will.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from typing import Any


def main() -> int:
    import pysparkplug as spb

    port, group, node_id, device_id, sensors_text = sys.argv[1:6]
    sensors = sensors_text.split(",")
    double = spb.DataType.DOUBLE
    state: dict[str, Any] = {"rebirths": 0, "sent": None, "last_seq": -1, "bd_seq": None}

    def now() -> int:
        return spb.get_current_timestamp()

    client = spb.Client(client_id=f"spb-edge-{node_id}-{time.monotonic_ns()}")

    def metric(i: int, value: float, ts: int | None = None, named: bool = True) -> Any:
        return spb.Metric(
            timestamp=ts, name=sensors[i] if named else None, datatype=double, value=float(value), alias=i + 1
        )

    device = spb.Device(device_id, [metric(i, 0.0, now()) for i in range(len(sensors))])
    node: Any = None

    def next_seq() -> int:
        seq = node._seq  # pysparkplug's own per-node seq cycle (0-255)
        state["last_seq"] = seq
        return int(seq)

    def publish(kind: Any, payload: Any, dev: str | None = device_id, dtypes: bool = False) -> None:
        topic = spb.Topic(message_type=kind, group_id=group, edge_node_id=node_id, device_id=dev)
        client.publish(
            spb.Message(topic=topic, payload=payload, qos=spb.QoS.AT_MOST_ONCE, retain=False), include_dtypes=dtypes
        )

    def rebirth(_: Any, message: Any) -> None:
        asked = any(m.name == "Node Control/Rebirth" and m.value for m in message.payload.metrics)
        if not asked:
            return
        state["rebirths"] += 1
        node._EdgeNode__seq_cycler = itertools.cycle(range(256))  # a rebirth starts seq at 0 again
        bd = spb.Metric(timestamp=now(), name="bdSeq", datatype=spb.DataType.INT64, value=state["bd_seq"])
        publish(spb.MessageType.NBIRTH, spb.NBirth(timestamp=now(), seq=next_seq(), metrics=(bd,)), None, True)
        metrics = tuple(device.metrics.values())
        publish(spb.MessageType.DBIRTH, spb.DBirth(timestamp=now(), seq=next_seq(), metrics=metrics), device_id, True)
        state["sent"] = None

    node = spb.EdgeNode(group, node_id, [], client=client, cmd_callback=rebirth)
    node.register(device)

    def rows(cmd: dict[str, Any]) -> dict[str, Any]:
        period = 1.0 / float(cmd.get("rate", 100.0))
        sent = 0
        for row in cmd["rows"]:
            last = state["sent"]
            changed = [i for i, v in enumerate(row) if last is None or v != last[i]]
            state["sent"] = list(row)
            ts = now()
            if cmd.get("alias_only", True):
                device.update([metric(i, row[i], ts) for i in changed])  # what a rebirth will say
                ms = tuple(metric(i, row[i], named=False) for i in changed)
                publish(spb.MessageType.DDATA, spb.DData(timestamp=ts, seq=next_seq(), metrics=ms))
            else:
                ms = tuple(metric(i, row[i], ts) for i in changed)
                node.update_device(device_id, ms)
                state["last_seq"] = (state["last_seq"] + 1) % 256
            sent += 1
            time.sleep(period)
        return {"sent": sent, "last_seq": state["last_seq"]}

    def ddata(cmd: dict[str, Any]) -> dict[str, Any]:
        how = cmd.get("seq", "next")
        if how == "skip":
            next_seq()
        seq = next_seq() if how in ("next", "skip") else state["last_seq"]
        if how == "back":
            seq = (state["last_seq"] - 5) % 256
        ms = []
        for m in cmd["metrics"]:
            dt = spb.DataType(m.get("datatype", 10))
            ms.append(
                spb.Metric(timestamp=None, name=m.get("name"), datatype=dt, value=m["value"], alias=m.get("alias"))
            )
        payload = spb.DData(timestamp=now(), seq=seq, metrics=tuple(ms))
        publish(spb.MessageType.DDATA, payload, cmd.get("device", device_id), bool(cmd.get("dtypes", False)))
        return {"seq": seq}

    def dbirth(cmd: dict[str, Any]) -> dict[str, Any]:
        ms = tuple(
            spb.Metric(timestamp=now(), name=name, datatype=double, value=float(v), alias=i + 1)
            for i, (name, v) in enumerate(cmd["metrics"])
        )
        publish(spb.MessageType.DBIRTH, spb.DBirth(timestamp=now(), seq=next_seq(), metrics=ms), cmd["device"], True)
        return {}

    def raw(cmd: dict[str, Any]) -> dict[str, Any]:
        client._client.publish(cmd["topic"], bytes.fromhex(cmd["hex"]), qos=0)
        return {}

    def ndeath(cmd: dict[str, Any]) -> dict[str, Any]:
        bd = spb.Metric(timestamp=now(), name="bdSeq", datatype=spb.DataType.INT64, value=int(cmd["bd_seq"]))
        publish(spb.MessageType.NDEATH, spb.NDeath(timestamp=now(), bd_seq_metric=bd), None)
        return {}

    def connect(cmd: dict[str, Any]) -> dict[str, Any]:
        if "values" in cmd:  # the DBIRTH carries the device's current values
            device.update([metric(i, v, now()) for i, v in enumerate(cmd["values"])])
        node.connect("127.0.0.1", port=int(port), blocking=False)
        deadline = time.monotonic() + 10
        while not node._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        state["bd_seq"] = (node._bd_seq_metric.value - 1) % 256  # this session's (the next is set up already)
        return {"connected": bool(node._connected), "bd_seq": state["bd_seq"]}

    ops = {"connect": connect, "rows": rows, "ddata": ddata, "dbirth": dbirth, "raw": raw, "ndeath": ndeath}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "commands":
            answer: dict[str, Any] = {"rebirths": state["rebirths"]}
        else:
            answer = ops[cmd["op"]](cmd)
        time.sleep(0.05)  # QoS 0: let paho's thread write it out before we answer
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
