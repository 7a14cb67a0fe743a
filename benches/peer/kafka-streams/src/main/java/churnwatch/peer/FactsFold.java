package churnwatch.peer;

import churnwatch.peer.pb.Facts;
import churnwatch.v1.Events.InteractionEvent;
import churnwatch.v1.Events.TicketStatus;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

/**
 * One event folded into one customer's facts: pure (no store, no clock), the
 * same facts churnwatch keeps for these signals (crates/churnwatch-core/src/state, crates/churnwatch-core/src/fold).
 */
final class FactsFold {
    /** Beyond this many open tickets the oldest is forgotten (churnwatch's Support::MAX_OPEN). */
    static final int MAX_OPEN = 16;
    /** Days covered by the active-day bitmap (churnwatch's Activity::WINDOW). */
    static final int WINDOW = 64;
    /** Satisfaction EWMA weights (churnwatch's fold.satisfaction_fast_weight / _baseline_weight). */
    static final float FAST_WEIGHT = 0.5f;
    static final float BASELINE_WEIGHT = 0.1f;

    private FactsFold() {}

    /** What a fold changed that the rules care about. */
    enum Change {
        NONE,
        NEW_ACTIVE_DAY,
        SURVEY
    }

    static int dayOf(long unixSeconds) {
        return (int) Math.floorDiv(unixSeconds, 86_400L);
    }

    /** Folds {@code ev} (valid: customer id and occurred_at set) into {@code f}. */
    static Change fold(Facts.Builder f, InteractionEvent ev) {
        long at = ev.getOccurredAt().getSeconds();
        f.setEvents(f.getEvents() + 1);
        if (at > f.getLastEventAt()) {
            f.setLastEventAt(at);
        }
        switch (ev.getKindCase()) {
            case PURCHASE:
                f.setPurchases(f.getPurchases() + 1);
                f.setAmount(f.getAmount() + Math.max(0.0, ev.getPurchase().getAmount()));
                return activity(f, at);
            case SESSION:
                return activity(f, at);
            case TICKET_OPENED:
                openTicket(f, ticketHash(ev.getTicketOpened().getTicketId()));
                return Change.NONE;
            case TICKET_UPDATED:
                int h = ticketHash(ev.getTicketUpdated().getTicketId());
                TicketStatus st = ev.getTicketUpdated().getStatus();
                if (st == TicketStatus.TICKET_STATUS_RESOLVED) {
                    closeTicket(f, h);
                } else if (st == TicketStatus.TICKET_STATUS_REOPENED) {
                    openTicket(f, h);
                }
                return Change.NONE;
            case SURVEY:
                return survey(f, ev);
            case CONSENT:
                if (ev.getConsent().getChannelValue() == 0) {
                    f.setNoContact(!ev.getConsent().getContactAllowed());
                }
                return Change.NONE;
            case ERASURE:
                f.clear();
                return Change.NONE;
            default:
                return Change.NONE;
        }
    }

    private static int ticketHash(String id) {
        return Utils.murmur2(id.getBytes(StandardCharsets.UTF_8));
    }

    private static void openTicket(Facts.Builder f, int h) {
        if (f.getOpenTicketsList().contains(h)) {
            return;
        }
        if (f.getOpenTicketsCount() >= MAX_OPEN) {
            java.util.List<Integer> keep = new java.util.ArrayList<>(f.getOpenTicketsList().subList(1, MAX_OPEN));
            f.clearOpenTickets().addAllOpenTickets(keep);
        }
        f.addOpenTickets(h);
    }

    private static void closeTicket(Facts.Builder f, int h) {
        int i = f.getOpenTicketsList().indexOf(h);
        if (i >= 0) {
            java.util.List<Integer> keep = new java.util.ArrayList<>(f.getOpenTicketsList());
            keep.remove(i);
            f.clearOpenTickets().addAllOpenTickets(keep);
        }
    }

    /** Active days as churnwatch's Activity::record: a day counts once, whatever the order. */
    private static Change activity(Facts.Builder f, long at) {
        int day = dayOf(at);
        if (at > f.getLastActivityAt() || !f.getActive()) {
            f.setLastActivityAt(at);
        }
        if (!f.getActive()) {
            f.setActive(true).setFirstDay(day).setLastDay(day).setRepeatDays(0).setRecentDays(1L);
            return Change.NEW_ACTIVE_DAY;
        }
        int last = f.getLastDay();
        if (day > last) {
            int shift = day - last;
            long recent = shift >= WINDOW ? 0L : f.getRecentDays() << shift;
            f.setRecentDays(recent | 1L).setLastDay(day).setRepeatDays(f.getRepeatDays() + 1);
            return Change.NEW_ACTIVE_DAY;
        }
        if (day == f.getFirstDay()) {
            return Change.NONE;
        }
        int offset = last - day;
        if (offset < WINDOW) {
            long bit = 1L << offset;
            if ((f.getRecentDays() & bit) != 0) {
                return Change.NONE;
            }
            f.setRecentDays(f.getRecentDays() | bit);
        } else if (day > f.getFirstDay()) {
            return Change.NONE; // too late to tell whether it was counted: dropped, as churnwatch does
        }
        if (day < f.getFirstDay()) {
            f.setFirstDay(day);
        }
        f.setRepeatDays(f.getRepeatDays() + 1);
        return Change.NEW_ACTIVE_DAY;
    }

    private static Change survey(Facts.Builder f, InteractionEvent ev) {
        float score;
        switch (ev.getSurvey().getScoreCase()) {
            case NPS:
                int nps = ev.getSurvey().getNps();
                if (nps < 0 || nps > 10) {
                    return Change.NONE;
                }
                f.setLastNps(nps);
                score = nps / 10f;
                break;
            case CSAT:
                int csat = ev.getSurvey().getCsat();
                if (csat < 1 || csat > 5) {
                    return Change.NONE;
                }
                f.setLastCsat(csat);
                score = (csat - 1) / 4f;
                break;
            default:
                return Change.NONE;
        }
        if (f.getAnswers() == 0) {
            f.setSatFast(score).setSatBaseline(score);
        } else {
            f.setSatFast(f.getSatFast() + FAST_WEIGHT * (score - f.getSatFast()));
            f.setSatBaseline(f.getSatBaseline() + BASELINE_WEIGHT * (score - f.getSatBaseline()));
        }
        f.setAnswers(f.getAnswers() + 1);
        return Change.SURVEY;
    }
}
