package churnwatch.peer;

import churnwatch.v1.Events.InteractionEvent;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Stream time is event time (occurred_at), as in churnwatch, not the time the
 * record was produced. Kafka Streams hands the extractor the record already
 * deserialized, so the event is decoded once.
 */
public final class EventTimeExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
        if (record.value() instanceof InteractionEvent ev && ev.hasOccurredAt()) {
            return ev.getOccurredAt().getSeconds() * 1000L + ev.getOccurredAt().getNanos() / 1_000_000;
        }
        // No event time: the processor rejects it to the dead-letter topic; it
        // must not move stream time, nor be dropped by Streams for a negative time.
        return partitionTime >= 0 ? partitionTime : Math.max(0L, record.timestamp());
    }
}
