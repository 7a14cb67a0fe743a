// The KRaft quorum as the Admin API describes it (KIP-595/836), for the
// fault trials: `kafka.sh quorum DIR` runs this with the broker's classpath
// (kafka-clients holds the Admin client; the broker artifact ships no
// kafka-metadata-quorum tool). Prints one line:
//   leader=ID epoch=E hw=H voters=ID:LEO,ID:LEO,... observers=ID:LEO,...
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.QuorumInfo;

public class Quorum {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(p)) {
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
