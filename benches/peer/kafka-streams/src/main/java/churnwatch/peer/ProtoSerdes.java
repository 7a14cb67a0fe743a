package churnwatch.peer;

import churnwatch.peer.pb.Facts;
import churnwatch.v1.Events.InteractionEvent;
import com.google.protobuf.InvalidProtocolBufferException;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/** Binary protobuf in and out: the input events and the facts store's values. */
final class ProtoSerdes {
    private ProtoSerdes() {}

    /**
     * churnwatch.v1.InteractionEvent. A value that does not decode throws, so
     * Kafka Streams' deserialization handler (log and continue) sends the raw
     * record to the dead-letter topic instead of stopping.
     */
    static final class EventDeserializer implements Deserializer<InteractionEvent> {
        @Override
        public InteractionEvent deserialize(String topic, byte[] data) {
            if (data == null) {
                return null;
            }
            try {
                return InteractionEvent.parseFrom(data);
            } catch (InvalidProtocolBufferException e) {
                throw new SerializationException("not a churnwatch.v1.InteractionEvent: " + e.getMessage(), e);
            }
        }
    }

    /** The facts store's values: protobuf (a typical customer is a few tens of bytes). */
    static Serde<Facts> facts() {
        Serializer<Facts> ser = (topic, f) -> f == null ? null : f.toByteArray();
        Deserializer<Facts> de = (topic, b) -> {
            if (b == null) {
                return null;
            }
            try {
                return Facts.parseFrom(b);
            } catch (InvalidProtocolBufferException e) {
                throw new SerializationException("corrupt facts record: " + e.getMessage(), e);
            }
        };
        return org.apache.kafka.common.serialization.Serdes.serdeFrom(ser, de);
    }
}
