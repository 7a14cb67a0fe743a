package churnwatch.peer;

import java.util.Map;
import org.apache.kafka.streams.state.RocksDBConfigSetter;
import org.rocksdb.BlockBasedTableConfig;
import org.rocksdb.Cache;
import org.rocksdb.LRUCache;
import org.rocksdb.Options;
import org.rocksdb.WriteBufferManager;

/**
 * Every RocksDB instance of the process (2 stores x 8 partitions here) shares
 * one block cache and one memtable budget, charged to that cache, instead of
 * Kafka Streams' per-store defaults (a 50 MiB block cache and 3 x 16 MiB
 * memtables for each store: 1.5 GiB of possible native memory for 16 stores,
 * outside the JVM heap). See README.md for the figures and why.
 */
public final class BoundedRocksDb implements RocksDBConfigSetter {
    /** Streams config keys (passed through to config setters). */
    static final String CACHE_BYTES = "peer.rocksdb.block.cache.bytes";
    static final String MEMTABLE_BYTES = "peer.rocksdb.memtable.bytes";
    static final String WRITE_BUFFER_BYTES = "peer.rocksdb.write.buffer.bytes";

    private static Cache cache;
    private static WriteBufferManager writeBuffers;

    private static synchronized void shared(Map<String, Object> configs) {
        if (cache == null) {
            long cacheBytes = Long.parseLong(String.valueOf(configs.get(CACHE_BYTES)));
            long memtableBytes = Long.parseLong(String.valueOf(configs.get(MEMTABLE_BYTES)));
            // Index and filter blocks get a high-priority tenth, so data blocks
            // cannot push them out.
            cache = new LRUCache(cacheBytes, -1, false, 0.1);
            writeBuffers = new WriteBufferManager(memtableBytes, cache);
        }
    }

    @Override
    public void setConfig(String storeName, Options options, Map<String, Object> configs) {
        shared(configs);
        BlockBasedTableConfig table = (BlockBasedTableConfig) options.tableFormatConfig();
        table.setBlockCache(cache);
        // Counted in the shared cache (bounded), not allocated per open file.
        table.setCacheIndexAndFilterBlocks(true);
        table.setCacheIndexAndFilterBlocksWithHighPriority(true);
        table.setPinTopLevelIndexAndFilter(true);
        options.setTableFormatConfig(table);
        options.setWriteBufferManager(writeBuffers);
        options.setWriteBufferSize(Long.parseLong(String.valueOf(configs.get(WRITE_BUFFER_BYTES))));
        options.setMaxWriteBufferNumber(2);
    }

    @Override
    public void close(String storeName, Options options) {
        // The cache and the write buffer manager are shared by every store of
        // the process and live as long as it: nothing to close per store.
    }
}
