package churnwatch.peer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import churnwatch.peer.pb.Outreach;
import churnwatch.v1.Events.InteractionEvent;
import churnwatch.v1.Events.Session;
import churnwatch.v1.Events.TicketOpened;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Timestamp;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.Test;

/** The peer's topology through Kafka Streams' own test driver (real RocksDB stores). */
class ChurnProcessorTest {
    static final long DAY = 86_400L;

    static InteractionEvent session(String id, long at) {
        return InteractionEvent.newBuilder()
                .setEventId(id + "-" + at)
                .setCustomerId(id)
                .setOccurredAt(Timestamp.newBuilder().setSeconds(at))
                .setSession(Session.getDefaultInstance())
                .build();
    }

    /** Runs events (key = customer id unless given) through the topology; returns outreach and dead letters. */
    static List<List<String>> run(long punctuateSeconds, List<InteractionEvent> events, List<String> keys) throws Exception {
        Path state = Files.createTempDirectory("kstreams-peer-test");
        Main.Args a = Main.Args.parse(new String[] {
            "--bootstrap", "unused:9092", "--topic", "in", "--output", "out", "--group", "t",
            "--expected", "0", "--state-dir", state.toString(), "--punctuate-s", String.valueOf(punctuateSeconds)
        });
        try (TopologyTestDriver d = new TopologyTestDriver(Main.topology(a), Main.config(a))) {
            TestInputTopic<String, byte[]> in = d.createInputTopic("in", new StringSerializer(), new ByteArraySerializer());
            for (int i = 0; i < events.size(); i++) {
                InteractionEvent ev = events.get(i);
                in.pipeInput(keys == null ? ev.getCustomerId() : keys.get(i), ev.toByteArray());
            }
            TestOutputTopic<String, byte[]> out = d.createOutputTopic("out", new StringDeserializer(), new ByteArrayDeserializer());
            List<String> records = new ArrayList<>();
            for (TestRecord<String, byte[]> r : out.readRecordsToList()) {
                Outreach o = Outreach.parseFrom(r.value());
                records.add(o.getCustomerId() + " " + o.getReason() + " " + o.getPlaybook() + " at day "
                        + (o.getDecidedAt() / DAY) + ": " + o.getEvidence());
            }
            TestOutputTopic<String, byte[]> dead = d.createOutputTopic("t-dead-letter", new StringDeserializer(), new ByteArrayDeserializer());
            List<String> rejected = dead.readRecordsToList().stream()
                    .map(r -> new String(r.headers().lastHeader(ChurnProcessor.REASON_HEADER).value(), StandardCharsets.UTF_8))
                    .collect(Collectors.toList());
            return List.of(records, rejected);
        }
    }

    /**
     * c is active every other day from day 0 to 8 (usually every 2 days), then
     * silent until cBackOnDay; d is active daily from day 9 to 24 and moves stream
     * time. In time order, except that a return after day 24 comes last.
     */
    static List<InteractionEvent> rhythmThenSilence(long cBackOnDay) {
        List<InteractionEvent> evs = new ArrayList<>();
        for (long day = 0; day <= 8; day += 2) {
            evs.add(session("c", day * DAY + 3600));
        }
        for (long day = 9; day <= 24; day++) {
            evs.add(session("d", day * DAY));
            if (day == cBackOnDay) {
                evs.add(session("c", cBackOnDay * DAY + 60));
            }
        }
        if (cBackOnDay > 24) {
            evs.add(session("c", cBackOnDay * DAY + 60));
        }
        return evs;
    }

    @Test
    void a_customer_silent_past_its_threshold_gets_one_record_decided_when_the_silence_crossed_it() throws Exception {
        List<String> out = run(3600, rhythmThenSilence(30), null).get(0);
        // max(14 days, 3 x 2 days) after the last active day (8): day 22, whenever it was noticed.
        assertEquals(List.of("c silence check_in at day 22: no activity for 14 days; usually every 2"), out);
    }

    @Test
    void the_records_do_not_depend_on_when_the_punctuator_runs() throws Exception {
        // With a 30-day punctuation interval the punctuator never runs before c's
        // next event (day 30): process() fires the due timer itself, the same record.
        List<InteractionEvent> evs = rhythmThenSilence(30);
        assertEquals(run(3600, evs, null).get(0), run(30 * DAY, evs, null).get(0));
        assertEquals(1, run(30 * DAY, evs, null).get(0).size());
    }

    @Test
    void an_active_customer_inside_its_rhythm_gets_nothing() throws Exception {
        // Back on day 20, before day 22: no silence; the new last day (20) moves the
        // threshold to day 34, after the last stream time (day 24).
        assertEquals(List.of(), run(3600, rhythmThenSilence(20), null).get(0));
    }

    @Test
    void no_record_while_a_ticket_is_open() throws Exception {
        List<InteractionEvent> evs = new ArrayList<>(rhythmThenSilence(30));
        evs.add(5, InteractionEvent.newBuilder()
                .setCustomerId("c")
                .setOccurredAt(Timestamp.newBuilder().setSeconds(9 * DAY))
                .setTicketOpened(TicketOpened.newBuilder().setTicketId("T-1"))
                .build());
        assertEquals(List.of(), run(3600, evs, null).get(0));
    }

    @Test
    void invalid_events_go_to_the_dead_letter_topic_with_their_reason() throws Exception {
        List<InteractionEvent> evs = List.of(
                session("c", DAY),
                session("c", DAY).toBuilder().clearOccurredAt().build(),
                session("", DAY));
        List<List<String>> got = run(3600, evs, List.of("x", "c", "c"));
        assertEquals(List.of("key_mismatch", "missing_occurred_at", "missing_customer_id"), got.get(1));
        assertTrue(got.get(0).isEmpty());
    }
}
