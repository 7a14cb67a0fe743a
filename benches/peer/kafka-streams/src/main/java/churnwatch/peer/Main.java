package churnwatch.peer;

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.LogAndContinueExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of churnwatch's load harness. Protocol (as
 * benches/peer/quix_peer.py): `first <unix s>` on stdout at the first record;
 * `done <json>` once EXPECTED records are processed and the instance is closed
 * (its last commit done); then it waits for stdin to close. With --restore (a
 * fresh state dir), `restored <json>` once every store is restored from its
 * changelog. Settings and why: README.md beside this folder.
 */
public final class Main {
    private Main() {}

    /** Command line; every flag has a default except the harness's five. */
    record Args(
            String bootstrap,
            String topic,
            String output,
            String group,
            long expected,
            String stateDir,
            String guarantee,
            boolean restore,
            int threads,
            long commitMs,
            long cacheBytes,
            long blockCacheBytes,
            long memtableBytes,
            long writeBufferBytes,
            int maxPollRecords,
            Duration punctuate,
            double silenceDays,
            double silenceFactor,
            Map<String, String> properties) {

        static Args parse(String[] a) {
            Map<String, String> m = new HashMap<>();
            m.put("--guarantee", "at_least_once");
            m.put("--threads", "1");
            m.put("--commit-interval-ms", "1000");
            m.put("--cache-bytes", String.valueOf(64L << 20));
            m.put("--block-cache-bytes", String.valueOf(64L << 20));
            m.put("--memtable-bytes", String.valueOf(32L << 20));
            m.put("--write-buffer-bytes", String.valueOf(8L << 20));
            m.put("--max-poll-records", "2000");
            m.put("--punctuate-s", "3600");
            m.put("--silence-days", "14");
            m.put("--silence-factor", "3");
            boolean restore = false;
            Map<String, String> props = new HashMap<>();
            for (int i = 0; i < a.length; i++) {
                if (a[i].equals("--restore")) {
                    restore = true;
                } else if (a[i].equals("--property") && i + 1 < a.length && a[i + 1].contains("=")) {
                    String kv = a[++i];
                    props.put(kv.substring(0, kv.indexOf('=')), kv.substring(kv.indexOf('=') + 1));
                } else if (a[i].startsWith("--") && i + 1 < a.length) {
                    m.put(a[i], a[++i]);
                } else {
                    throw new IllegalArgumentException("unexpected argument " + a[i]);
                }
            }
            for (String k : List.of("--bootstrap", "--topic", "--output", "--group", "--expected", "--state-dir")) {
                if (!m.containsKey(k)) {
                    throw new IllegalArgumentException("missing " + k);
                }
            }
            String g = m.get("--guarantee");
            if (!g.equals("at_least_once") && !g.equals("exactly_once_v2")) {
                throw new IllegalArgumentException("--guarantee must be at_least_once or exactly_once_v2, not " + g);
            }
            return new Args(
                    m.get("--bootstrap"),
                    m.get("--topic"),
                    m.get("--output"),
                    m.get("--group"),
                    Long.parseLong(m.get("--expected")),
                    m.get("--state-dir"),
                    g,
                    restore,
                    Integer.parseInt(m.get("--threads")),
                    Long.parseLong(m.get("--commit-interval-ms")),
                    Long.parseLong(m.get("--cache-bytes")),
                    Long.parseLong(m.get("--block-cache-bytes")),
                    Long.parseLong(m.get("--memtable-bytes")),
                    Long.parseLong(m.get("--write-buffer-bytes")),
                    Integer.parseInt(m.get("--max-poll-records")),
                    Duration.ofSeconds(Long.parseLong(m.get("--punctuate-s"))),
                    Double.parseDouble(m.get("--silence-days")),
                    Double.parseDouble(m.get("--silence-factor")),
                    props);
        }

        String deadLetter() {
            return group + "-dead-letter";
        }
    }

    static Properties config(Args a) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, a.group());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, a.bootstrap());
        p.put(StreamsConfig.STATE_DIR_CONFIG, a.stateDir());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, a.guarantee());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, a.threads());
        // The same for both guarantees, and churnwatch's own (processing.commit_interval_ms).
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, a.commitMs());
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, a.cacheBytes());
        p.put(StreamsConfig.ROCKSDB_CONFIG_SETTER_CLASS_CONFIG, BoundedRocksDb.class);
        p.put(BoundedRocksDb.CACHE_BYTES, a.blockCacheBytes());
        p.put(BoundedRocksDb.MEMTABLE_BYTES, a.memtableBytes());
        p.put(BoundedRocksDb.WRITE_BUFFER_BYTES, a.writeBufferBytes());
        p.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, EventTimeExtractor.class);
        // Bad input never stops the peer: undecodable records go to the dead-letter topic.
        p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, LogAndContinueExceptionHandler.class);
        p.put(StreamsConfig.ERRORS_DEAD_LETTER_QUEUE_TOPIC_NAME_CONFIG, a.deadLetter());
        // No global store here; set so Streams 4.x does not warn about its 5.0 default.
        p.put(StreamsConfig.PROCESSING_EXCEPTION_HANDLER_GLOBAL_ENABLED_CONFIG, true);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), a.maxPollRecords());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MIN_BYTES_CONFIG), 64 * 1024);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG), 100);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG), 4 << 20);
        // churnwatch's producer settings (src/pipeline/sink.rs), for outreach and changelogs alike.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "lz4");
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 256 * 1024);
        // --property KEY=VALUE (repeatable): any Streams, consumer. or producer. setting, last.
        p.putAll(a.properties());
        return p;
    }

    static Topology topology(Args a) {
        Rules rules = new Rules(a.silenceDays(), a.silenceFactor());
        Topology t = new Topology();
        t.addSource("events", new StringDeserializer(), new ProtoSerdes.EventDeserializer(), a.topic());
        t.addProcessor("churn", () -> new ChurnProcessor(rules, a.punctuate()), "events");
        // Persistent (RocksDB), changelogged (the default), behind the record cache.
        t.addStateStore(
                Stores.keyValueStoreBuilder(
                                Stores.persistentKeyValueStore(ChurnProcessor.FACTS), Serdes.String(), ProtoSerdes.facts())
                        .withCachingEnabled(),
                "churn");
        t.addStateStore(
                Stores.keyValueStoreBuilder(
                                Stores.persistentKeyValueStore(ChurnProcessor.TIMERS), Serdes.Bytes(), Serdes.ByteArray())
                        .withCachingEnabled(),
                "churn");
        t.addSink(ChurnProcessor.OUTREACH_SINK, a.output(), new StringSerializer(), new ByteArraySerializer(), "churn");
        t.addSink(ChurnProcessor.DEAD_LETTER_SINK, a.deadLetter(), new StringSerializer(), new ByteArraySerializer(), "churn");
        return t;
    }

    /**
     * The output and dead-letter topics, with the input's partition count, when
     * missing (brokers here do not auto-create). Records carry event times, so
     * no time-based retention (-1) that would delete them as old at once.
     */
    static Map<Integer, Long> createTopics(Args a) throws InterruptedException, ExecutionException {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.bootstrap());
        try (Admin admin = Admin.create(p)) {
            int partitions = admin.describeTopics(List.of(a.topic()))
                    .allTopicNames()
                    .get()
                    .get(a.topic())
                    .partitions()
                    .size();
            List<NewTopic> topics = new ArrayList<>();
            for (String name : List.of(a.output(), a.deadLetter())) {
                topics.add(new NewTopic(name, java.util.Optional.of(partitions), java.util.Optional.empty())
                        .configs(Map.of("retention.ms", "-1")));
            }
            for (var f : admin.createTopics(topics).values().values()) {
                try {
                    f.get();
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
            // Where each input partition starts, to count the records covered.
            Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
            for (int i = 0; i < partitions; i++) {
                specs.put(new TopicPartition(a.topic(), i), OffsetSpec.earliest());
            }
            Map<Integer, Long> earliest = new HashMap<>();
            admin.listOffsets(specs).all().get().forEach((tp, info) -> earliest.put(tp.partition(), info.offset()));
            return earliest;
        }
    }

    static double cpuSeconds() {
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        return os.getProcessCpuTime() / 1e9;
    }

    public static void main(String[] argv) throws Exception {
        Args a;
        try {
            a = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("kstreams-peer: " + e.getMessage());
            System.exit(2);
            return;
        }
        double started = System.currentTimeMillis() / 1000.0;
        Map<Integer, Long> earliest = createTopics(a);
        RestoreTracker restore = new RestoreTracker();
        KafkaStreams streams = new KafkaStreams(topology(a), config(a));
        streams.setGlobalStateRestoreListener(restore);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kstreams-peer: stream thread failed: " + e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        String restored = null;
        while (true) {
            KafkaStreams.State s = streams.state();
            if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING
                    || s == KafkaStreams.State.PENDING_ERROR || s == KafkaStreams.State.PENDING_SHUTDOWN) {
                System.err.println("kstreams-peer: stopped early in state " + s);
                streams.close(Duration.ofSeconds(60));
                System.exit(1);
            }
            if (restored == null && s == KafkaStreams.State.RUNNING && restore.inProgress.get() == 0
                    && (a.restore() || restore.records.get() > 0)) {
                restored = String.format(
                        Locale.ROOT,
                        "{\"records\":%d,\"to_restore\":%d,\"changelog_partitions\":%d,\"seconds\":%.3f,\"ready_after_s\":%.3f}",
                        restore.records.get(),
                        restore.toRestore.get(),
                        restore.partitions.get(),
                        restore.seconds(),
                        System.currentTimeMillis() / 1000.0 - started);
                System.out.println("restored " + restored);
                System.out.flush();
            }
            if (Stats.covered(earliest) >= a.expected() && (!a.restore() || restored != null)) {
                break;
            }
            Thread.sleep(20);
        }
        // close() commits every task (and, with exactly_once_v2, its open
        // transaction), flushes the producer and the stores, and leaves the group.
        // LEAVE_GROUP: Streams' classic consumer otherwise stays in the group until
        // its session times out (45 s), and a restore instance started right
        // after would wait for that before it is assigned anything.
        boolean clean = streams.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                .withTimeout(Duration.ofSeconds(120)));
        double stopped = System.currentTimeMillis() / 1000.0;
        StringBuilder sup = new StringBuilder("{");
        Stats.suppressedCounts().forEach((k, v) -> sup.append(sup.length() > 1 ? "," : "").append('"').append(k).append("\":").append(v));
        sup.append('}');
        System.out.println(String.format(
                Locale.ROOT,
                "done {\"processed\":%d,\"covered\":%d,\"outreach\":%d,\"suppressed\":%s,\"rejected\":%d,\"first\":%s,\"started\":%.3f,\"stopped\":%.3f,"
                        + "\"cpu_s\":%.3f,\"guarantee\":\"%s\",\"threads\":%d,\"closed_cleanly\":%b,\"restore\":%s}",
                Stats.PROCESSED.sum(),
                Stats.covered(earliest),
                Stats.OUTREACH.sum(),
                sup,
                Stats.REJECTED.sum(),
                Stats.FIRST_MS.get() == 0 ? "null" : String.format(Locale.ROOT, "%.3f", Stats.FIRST_MS.get() / 1000.0),
                started,
                stopped,
                cpuSeconds(),
                a.guarantee(),
                a.threads(),
                clean,
                restored == null ? "null" : restored));
        System.out.flush();
        // Stay alive (and measurable) until the harness closes our stdin.
        while (System.in.read() >= 0) {
            // discard
        }
        System.exit(clean ? 0 : 1);
    }
}
