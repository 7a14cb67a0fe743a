// The KRaft quorum as the Admin API describes it (KIP-595/836), for the
// fault trials: `kafka.sh quorum DIR` runs this with the broker's classpath
// (kafka-clients holds the Admin client; the broker artifact ships no
// kafka-metadata-quorum tool). Prints one line:
//   leader=ID epoch=E hw=H voters=ID:LEO,ID:LEO,... observers=ID:LEO,...
// With a second argument `elect-preferred` it first moves every partition's
// leadership back to its preferred replica (what the broker's own leader
// rebalance does after `leader.imbalance.check.interval.seconds`, 300 s),
// as `kafka-leader-election --election-type preferred` would (the broker
// artifact ships no such tool either).
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.errors.ElectionNotNeededException;

public class Quorum {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(p)) {
            if (args.length > 1 && args[1].equals("elect-preferred")) {
                // Partitions already led by their preferred replica answer
                // ElectionNotNeeded: not a failure.
                admin.electLeaders(ElectionType.PREFERRED, null).partitions().get()
                    .forEach((tp, err) -> err.filter(e -> !(e instanceof ElectionNotNeededException))
                        .ifPresent(e -> System.err.println(tp + ": " + e)));
            }
            QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
            System.out.println("leader=" + q.leaderId() + " epoch=" + q.leaderEpoch()
                + " hw=" + q.highWatermark()
                + " voters=" + replicas(q.voters())
                + " observers=" + replicas(q.observers()));
        }
    }

    static String replicas(java.util.List<QuorumInfo.ReplicaState> rs) {
        return rs.stream().map(r -> r.replicaId() + ":" + r.logEndOffset())
            .collect(Collectors.joining(","));
    }
}
