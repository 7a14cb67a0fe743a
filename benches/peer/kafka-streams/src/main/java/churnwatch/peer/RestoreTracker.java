package churnwatch.peer;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.processor.StateRestoreListener;

/** Records restored from the changelogs and how long it took (first start to last end). */
final class RestoreTracker implements StateRestoreListener {
    final AtomicLong records = new AtomicLong();
    final AtomicLong toRestore = new AtomicLong();
    final AtomicInteger inProgress = new AtomicInteger();
    final AtomicInteger partitions = new AtomicInteger();
    final AtomicLong firstStartNanos = new AtomicLong();
    final AtomicLong lastEndNanos = new AtomicLong();

    @Override
    public void onRestoreStart(TopicPartition tp, String store, long startOffset, long endOffset) {
        firstStartNanos.compareAndSet(0, System.nanoTime());
        inProgress.incrementAndGet();
        partitions.incrementAndGet();
        toRestore.addAndGet(Math.max(0, endOffset - startOffset));
    }

    @Override
    public void onBatchRestored(TopicPartition tp, String store, long batchEndOffset, long numRestored) {
        records.addAndGet(numRestored);
    }

    @Override
    public void onRestoreEnd(TopicPartition tp, String store, long totalRestored) {
        lastEndNanos.set(System.nanoTime());
        inProgress.decrementAndGet();
    }

    @Override
    public void onRestoreSuspended(TopicPartition tp, String store, long totalRestored) {
        inProgress.decrementAndGet();
    }

    double seconds() {
        long s = firstStartNanos.get();
        long e = lastEndNanos.get();
        return s == 0 || e < s ? 0.0 : (e - s) / 1e9;
    }
}
