#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/seeds/ from churnwatch's own output.

    python3 fuzz/make_seeds.py [path/to/churnwatch]

decode_fold: a control byte, then events from `churnwatch generate` (JSON
Lines and length-delimited protobuf), plus one customer with every event kind
(written here, in both formats, for the kinds the generator never writes).
snapshot: single `CustomerState` snapshots split from `replay --state-out`.
model: the population model as the service writes it to the changelog
(serde JSON of `PopulationModel`).
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def s(num, text):
    return field(num, 2, text.encode())


def u(num, value):
    return field(num, 0, varint(value))


def ts(num, seconds):
    return field(num, 2, u(1, seconds))


def event(eid, cid, at, channel, kind_num, kind):
    return s(1, eid) + s(2, cid) + ts(3, at) + u(4, channel) + field(kind_num, 2, kind)


def delimited(messages):
    return b"".join(varint(len(m)) + m for m in messages)


def split_delimited(data):
    out, i = [], 0
    while i < len(data):
        n, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append(data[i : i + n])
        i += n
    return out


def top_fields(msg):
    """Field numbers present at the top level of a protobuf message."""
    found, i = set(), 0
    while i < len(msg):
        key, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        found.add(key >> 3)
        wire = key & 7
        if wire == 0:
            while msg[i] & 0x80:
                i += 1
            i += 1
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            n, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += n
    return found


T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
H = 3_600
D = 86_400


def every_kind():
    """One customer with every event kind: (JSON Lines, protobuf records)."""
    c = "cust-k"

    def t(x):
        return "2026-01-%02dT%02d:00:00Z" % (1 + x // D, (x % D) // H)

    rows = [
        (0, 6, 10, {"orderId": "o1", "amount": 120.5, "currency": "EUR"}, "purchase",
         s(1, "o1") + field(2, 1, struct.pack("<d", 120.5)) + s(3, "EUR")),
        (H, 6, 11, {"durationSeconds": 300}, "session", u(1, 300)),
        (2 * H, 4, 12, {"ticketId": "t1", "severity": "TICKET_SEVERITY_HIGH"}, "ticketOpened",
         s(1, "t1") + u(2, 3)),
        (30 * H, 4, 13, {"ticketId": "t1", "status": "TICKET_STATUS_FIRST_RESPONSE",
                         "responseSeconds": 100000}, "ticketUpdated",
         s(1, "t1") + u(2, 1) + u(3, 100000)),
        (31 * H, 3, 14, {"reason": "billing"}, "contact", s(1, "billing")),
        (32 * H, 2, 15, {"csat": 1}, "survey", u(2, 1)),
        (33 * H, 2, 15, {"nps": 2}, "survey", u(1, 2)),
        (34 * H, 3, 16, {"reason": "slow"}, "complaint", s(1, "slow")),
        (35 * H, 1, 17, {"plan": "pro", "renewsAt": "2026-01-20T00:00:00Z", "cancelled": True},
         "subscription", s(1, "pro") + ts(2, T0 + 19 * D) + u(3, 1)),
        (36 * H, 2, 18, {"contactAllowed": False, "channel": "CHANNEL_SMS"}, "consent",
         u(1, 0) + u(2, 8)),
        (37 * H, 2, 19, {"outreachId": "o-1", "outcome": "OUTCOME_IGNORED"}, "outreachOutcome",
         s(1, "o-1") + u(2, 5)),
        (3 * D, 4, 13, {"ticketId": "t1", "status": "TICKET_STATUS_RESOLVED"}, "ticketUpdated",
         s(1, "t1") + u(2, 2)),
        (4 * D, 4, 13, {"ticketId": "t1", "status": "TICKET_STATUS_REOPENED"}, "ticketUpdated",
         s(1, "t1") + u(2, 3)),
        (20 * D, 1, 20, {}, "erasure", b""),
    ]
    channels = ["CHANNEL_UNSPECIFIED", "CHANNEL_WEB", "CHANNEL_EMAIL", "CHANNEL_PHONE",
                "CHANNEL_CHAT", "CHANNEL_SOCIAL", "CHANNEL_APP", "CHANNEL_STORE", "CHANNEL_SMS"]
    lines, pbs = [], []
    for i, (dt, ch, num, js, name, pb) in enumerate(rows):
        eid = "k%d" % i
        lines.append(json.dumps({"eventId": eid, "customerId": c, "occurredAt": t(dt),
                                 "channel": channels[ch], name: js}, separators=(",", ":")))
        pbs.append(event(eid, c, T0 + dt, ch, num, pb))
    # snake_case field names are proto3 JSON too.
    lines.append('{"event_id":"k99","customer_id":"cust-k","occurred_at":"2026-01-21T00:00:00Z",'
                 '"channel":"CHANNEL_WEB","session":{}}')
    return ("\n".join(lines) + "\n").encode(), pbs


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "churnwatch"
    shutil.rmtree(SEEDS, ignore_errors=True)
    tmp = tempfile.mkdtemp()
    gen = [binary, "generate", "--customers", "200", "--span", "60d", "--seed", "7",
           "--silent-share", "0.5"]
    jl, pb = os.path.join(tmp, "ev.jsonl"), os.path.join(tmp, "ev.pb")
    subprocess.run(gen + ["--out", jl], check=True, stderr=subprocess.DEVNULL)
    subprocess.run(gen + ["--format", "protobuf", "--out", pb], check=True,
                   stderr=subprocess.DEVNULL)
    lines = open(jl, "rb").read().splitlines()
    records = split_delimited(open(pb, "rb").read())
    assert len(lines) == len(records)

    # decode_fold: whole histories of customers with the rarer kinds.
    by_customer = {}
    for i, line in enumerate(lines):
        ev = json.loads(line)
        by_customer.setdefault(ev["customerId"], []).append((i, ev))
    rare = ("ticketOpened", "survey", "consent", "contact")
    picked = sorted(
        (c for c, evs in by_customer.items() if any(k in e for _, e in evs for k in rare)),
        key=lambda c: -sum(k in e for _, e in by_customer[c] for k in rare),
    )[:6]
    controls = [0x00, 0x01 | 30 << 2, 0x80 | 7 << 2, 0x02, 0x03 | 1 << 2, 0x80 | 31 << 2]
    for n, (c, ctl) in enumerate(zip(picked, controls)):
        idx = [i for i, _ in by_customer[c]][:40]
        write("decode_fold", "gen-%d.jsonl" % n,
              bytes([ctl]) + b"".join(lines[i] + b"\n" for i in idx))
        write("decode_fold", "gen-%d.pb" % n,
              bytes([ctl]) + delimited(records[i] for i in idx))
    write("decode_fold", "gen-mixed.jsonl", bytes([0x01 | 3 << 2]) + b"\n".join(lines[:30]))
    write("decode_fold", "gen-mixed.pb", bytes([0x00]) + delimited(records[:30]))
    kinds_jl, kinds_pb = every_kind()
    write("decode_fold", "every-kind.jsonl", bytes([0x01 | 30 << 2]) + kinds_jl)
    write("decode_fold", "every-kind.pb", bytes([0x80 | 30 << 2]) + delimited(kinds_pb))

    # snapshot: states after a replay, the fullest ones and a few plain ones.
    states = os.path.join(tmp, "states.pb")
    subprocess.run([binary, "replay", "--quiet", "--input", jl, "--state-out", states,
                    "--as-of", "2026-03-15T00:00:00Z"], check=True, stderr=subprocess.DEVNULL)
    snaps = sorted(split_delimited(open(states, "rb").read()), key=len)
    chosen = snaps[:1] + snaps[-2:]
    # The largest with each optional part: support, satisfaction,
    # subscription, outreach.
    for part in (8, 9, 10, 12):
        with_part = [x for x in snaps if part in top_fields(x)]
        chosen += with_part[-2:]
    for n, snap in enumerate(dict.fromkeys(chosen)):
        write("snapshot", "state-%02d.pb" % n, snap)

    # model: PopulationModel as serde writes it (engine.rs record_model).
    prior = {"r": 0.243, "alpha": 30.898, "a": 0.793, "b": 2.426}
    fit = {"params": {"r": 0.9157, "alpha": 4.5173, "a": 0.6804, "b": 18.7897},
           "log_likelihood": -317230.68, "customers": 9957, "distinct_triples": 5651,
           "iterations": 61, "converged": True, "fitted_at": 1774828800}
    models = {
        "prior-bgnbd-day": {"family": "bgnbd", "time_unit": "day", "params": prior, "fit": None},
        "prior-mbgnbd-week": {"family": "mbgnbd", "time_unit": "week",
                              "params": dict(prior, alpha=4.414), "fit": None},
        "fit-bgnbd-day": {"family": "bgnbd", "time_unit": "day", "params": fit["params"],
                          "fit": fit},
        "boundary-fit": {"family": "bgnbd", "time_unit": "day",
                         "params": {"r": 0.9, "alpha": 4.5, "a": 1e65, "b": 1e124}, "fit": None},
    }
    for name, m in models.items():
        write("model", name + ".json", json.dumps(m).encode())
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
