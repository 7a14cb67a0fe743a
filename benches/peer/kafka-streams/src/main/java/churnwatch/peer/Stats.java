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

    static void suppressed(String reason) {
        SUPPRESSED.computeIfAbsent(reason, r -> new LongAdder()).increment();
    }

    static Map<String, Long> suppressedCounts() {
        Map<String, Long> m = new TreeMap<>();
        SUPPRESSED.forEach((k, v) -> m.put(k, v.sum()));
        return m;
    }
}
