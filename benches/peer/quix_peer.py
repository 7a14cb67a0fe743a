"""The peer of churnwatch in the end-to-end load harness (tools/loadtest):
a small Quix Streams application doing the same kind of stateful work in
Quix's idiom, over the same input topic.

- input: churnwatch.v1.InteractionEvent, binary protobuf, key = customer_id
  (decoded by a custom Deserializer with a _pb2 module generated at start from
  proto/churnwatch/v1/events.proto by grpcio-tools, into a temp dir);
- state: per customer, in Quix's RocksDB store (with its changelog topic, as
  Quix does by default): events seen, activity events, last activity time and
  a running mean gap between active days;
- silence rule: an activity event that comes after a gap longer than
  max(SILENCE_DAYS, SILENCE_FACTOR x the customer's mean gap) emits one
  outreach-like record (JSON) to the output topic;
- at-least-once (Quix's default), commit every 5 s (Quix's default).

It stops when it has processed EXPECTED messages. Protocol with the harness,
on stdout, one line each: `first <unix s>` at the first message, `done
<json>` once the application has stopped (its last checkpoint committed).
It then waits until its standard input closes, so the harness can read the
process's CPU time and memory before it exits.

  python quix_peer.py --bootstrap 127.0.0.1:9092 --topic IN --output OUT \
      --group G --expected N --proto-dir proto --state-dir DIR
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time


def generate_pb2(proto_dir: str, out_dir: str):
    """Compiles events.proto with grpcio-tools; returns the module."""
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            os.path.join(proto_dir, "churnwatch", "v1", "events.proto"),
        ],
        check=True,
    )
    sys.path.insert(0, out_dir)
    return importlib.import_module("churnwatch.v1.events_pb2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--expected", type=int, required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--silence-days", type=float, default=14.0)
    ap.add_argument("--silence-factor", type=float, default=3.0)
    args = ap.parse_args()

    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    pb = generate_pb2(args.proto_dir, tempfile.mkdtemp(prefix="quix-peer-pb2-"))
    InteractionEvent = pb.InteractionEvent
    activity = {"purchase", "session"}

    class EventDeserializer(Deserializer):
        """Binary InteractionEvent -> the few fields the rule needs."""

        def __call__(self, value: bytes, ctx):
            ev = InteractionEvent.FromString(value)
            return {
                "customer_id": ev.customer_id,
                "at": ev.occurred_at.seconds,
                "kind": ev.WhichOneof("kind"),
            }

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(args.topic, key_deserializer="str", value_deserializer=EventDeserializer())
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")

    silence = args.silence_days * 86400.0
    factor = args.silence_factor
    seen = {"n": 0, "outreach": 0, "first": None}

    def silence_rule(ev, state):
        """Per-customer state and the silence rule; None when nothing fires."""
        seen["n"] += 1
        if seen["first"] is None:
            seen["first"] = time.time()
            print(f"first {seen['first']:.3f}", flush=True)
        if seen["n"] >= args.expected:
            app.stop()
        # One record per customer (one changelog message per changed customer
        # per checkpoint, as churnwatch writes): [events, active, last, mean gap].
        c = state.get("c") or [0, 0, None, 0.0]
        c[0] += 1
        if ev["kind"] in activity:
            at = ev["at"]
            last = c[2]
            c[1] += 1
            if last is None or at > last:
                c[2] = at
            if last is not None and at > last:
                gap = at - last
                mean_gap = c[3]
                c[3] = mean_gap + (gap - mean_gap) / (c[1] - 1)
                if c[1] >= 3 and gap > max(silence, factor * mean_gap):
                    state.set("c", c)
                    seen["outreach"] += 1
                    return {
                        "customer_id": ev["customer_id"],
                        "playbook": "win_back",
                        "reason": "silence",
                        "silent_days": round(gap / 86400.0, 2),
                        "usual_gap_days": round(mean_gap / 86400.0, 2),
                        "decided_at": at,
                        "events": c[0],
                    }
        state.set("c", c)
        return None

    sdf = app.dataframe(source)
    sdf = sdf.apply(silence_rule, stateful=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(sink)

    started = time.time()
    app.run()
    cpu = os.times()
    print(
        "done "
        + json.dumps(
            {
                "processed": seen["n"],
                "outreach": seen["outreach"],
                "first": seen["first"],
                "started": started,
                "stopped": time.time(),
                "cpu_s": cpu.user + cpu.system,
            }
        ),
        flush=True,
    )
    # Stay alive (and measurable) until the harness closes our stdin.
    sys.stdin.read()


if __name__ == "__main__":
    main()
