package churnwatch.peer;

import churnwatch.peer.pb.FactsOrBuilder;
import churnwatch.peer.pb.Outreach;

/**
 * The silence rule, the satisfaction-drop rule and suppression: pure functions of
 * one customer's facts and a stream time (unix seconds). No store, no clock.
 */
final class Rules {
    /** Silence counts only once the customer has a rhythm (churnwatch's overdue_min_repeats). */
    static final int MIN_REPEATS = 4;
    /** A fall of the fast satisfaction average below the baseline by this much (satisfaction_full_drop). */
    static final float SAT_DROP = 0.3f;
    /** No second record within this long of the last one (churnwatch's outreach cooldown). */
    static final long COOLDOWN_S = 14 * 86_400L;

    final double silenceDays;
    final double silenceFactor;

    Rules(double silenceDays, double silenceFactor) {
        this.silenceDays = silenceDays;
        this.silenceFactor = silenceFactor;
    }

    /** The customer's usual gap between active days (churnwatch's typical_gap_days), at least 1. */
    static double usualGapDays(FactsOrBuilder f) {
        return Math.max(1.0, (double) (f.getLastDay() - f.getFirstDay()) / f.getRepeatDays());
    }

    /**
     * When this customer's silence crosses its threshold, max(silenceDays,
     * silenceFactor x usual gap) days after the last active day (start of that
     * UTC day, as churnwatch counts silence in days); 0 when there is no rhythm yet.
     */
    long dueAt(FactsOrBuilder f) {
        if (!f.getActive() || f.getRepeatDays() < MIN_REPEATS) {
            return 0;
        }
        long days = (long) Math.ceil(Math.max(silenceDays, silenceFactor * usualGapDays(f)));
        return (f.getLastDay() + days) * 86_400L;
    }

    /** Why a record is held back, or null: consent, cooldown, a ticket being worked. */
    static String suppressed(FactsOrBuilder f, long now) {
        if (f.getNoContact()) {
            return "no_consent";
        }
        if (f.getLastOutreachAt() > 0 && now - f.getLastOutreachAt() < COOLDOWN_S) {
            return "cooldown";
        }
        if (f.getOpenTicketsCount() > 0) {
            return "ticket_in_progress";
        }
        return null;
    }

    /** The silence record, decided at the due time (whenever the punctuator ran). */
    Outreach silence(String customer, FactsOrBuilder f, long due) {
        double gap = usualGapDays(f);
        int silent = (int) (FactsFold.dayOf(due) - f.getLastDay());
        return base(customer, f)
                .setReason("silence")
                .setPlaybook(f.getPurchases() > 0 ? "win_back" : "check_in")
                .setDecidedAt(due)
                .setEvidence(String.format("no activity for %d days; usually every %d", silent, Math.round(gap)))
                .setSilentDays(silent)
                .setUsualGapDays(gap)
                .build();
    }

    /** Whether the last answer dropped satisfaction below the customer's own baseline. */
    static boolean satisfactionDropped(FactsOrBuilder f) {
        return f.getAnswers() >= 2 && f.getSatBaseline() - f.getSatFast() >= SAT_DROP;
    }

    Outreach satisfactionDrop(String customer, FactsOrBuilder f, long at) {
        String last = f.hasLastNps() ? "NPS " + f.getLastNps() + " of 10" : "CSAT " + f.getLastCsat() + " of 5";
        return base(customer, f)
                .setReason("satisfaction_drop")
                .setPlaybook("feedback_follow_up")
                .setDecidedAt(at)
                .setEvidence(String.format("%s; usually %.0f%%, now %.0f%%", last, 100 * f.getSatBaseline(), 100 * f.getSatFast()))
                .setUsualGapDays(f.getRepeatDays() > 0 ? usualGapDays(f) : 0)
                .build();
    }

    private static Outreach.Builder base(String customer, FactsOrBuilder f) {
        Outreach.Builder o = Outreach.newBuilder()
                .setCustomerId(customer)
                .setRepeatDays(f.getRepeatDays())
                .setOpenTickets(f.getOpenTicketsCount())
                .setLastActivityAt(f.getLastActivityAt())
                .setPurchases(f.getPurchases())
                .setAmount(f.getAmount());
        if (f.hasLastNps()) {
            o.setLastNps(f.getLastNps());
        }
        if (f.hasLastCsat()) {
            o.setLastCsat(f.getLastCsat());
        }
        return o;
    }
}
