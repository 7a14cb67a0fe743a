package churnwatch.peer;

import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/** Counts for the harness's `first` and `done` lines, shared by the stream threads. */
final class Stats {
    static final LongAdder PROCESSED = new LongAdder();
    static final LongAdder OUTREACH = new LongAdder();
    static final LongAdder REJECTED = new LongAdder();
    static final Map<String, LongAdder> SUPPRESSED = new ConcurrentHashMap<>();
    static final AtomicLong FIRST_MS = new AtomicLong();
    /** Highest input offset processed, per input partition. */
    static final Map<Integer, Long> HIGHEST = new ConcurrentHashMap<>();
    private static final AtomicBoolean FIRST = new AtomicBoolean();

    private Stats() {}

    /** Called for every input record; prints `first <unix s>` at the first. */
    static void processed() {
        PROCESSED.increment();
        if (!FIRST.get() && FIRST.compareAndSet(false, true)) {
            long now = System.currentTimeMillis();
            FIRST_MS.set(now);
            System.out.printf("first %.3f%n", now / 1000.0);
            System.out.flush();
        }
    }

    static void offset(int partition, long offset) {
        HIGHEST.merge(partition, offset, Math::max);
    }

    /**
     * Distinct input records covered: per partition, the highest offset
     * processed + 1 minus where the partition started. Unlike PROCESSED it does
     * not count records processed twice (after a task migrated or a producer
     * was fenced, the records since the last commit are processed again).
     */
    static long covered(Map<Integer, Long> earliest) {
        long n = 0;
        for (var e : HIGHEST.entrySet()) {
            n += e.getValue() + 1 - earliest.getOrDefault(e.getKey(), 0L);
        }
        return n;
    }

    static void suppressed(String reason) {
        SUPPRESSED.computeIfAbsent(reason, r -> new LongAdder()).increment();
    }

    static Map<String, Long> suppressedCounts() {
        Map<String, Long> m = new TreeMap<>();
        SUPPRESSED.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }
}
