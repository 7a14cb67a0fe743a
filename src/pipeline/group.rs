//! What the broker says about this loop's consumer group: how many members
//! it has, and whether this member is one of them.
//!
//! Under the classic protocol librdkafka's group list (ListGroups and
//! DescribeGroups, which rdkafka wraps) answers that. Under the consumer
//! protocol (KIP-848) DescribeGroups knows no such group, and a member whose
//! first assignment is empty is never called back (librdkafka starts a
//! reconciliation only when the assignment changes), so neither the member
//! count nor "joined" can be had from the client alone. The broker's
//! ConsumerGroupDescribe answers both; librdkafka 2.12 sends it from
//! `rd_kafka_DescribeConsumerGroups`, which rdkafka 0.39 does not wrap:
//! hence the few FFI calls here, each result copied out before the event
//! that owns it is destroyed.

use std::{
    ffi::{CStr, CString},
    time::Duration,
};

use rdkafka::{bindings as rd, consumer::BaseConsumer, consumer::Consumer};

use super::LoopContext;

/// The group as the broker described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub members: usize,
    /// This consumer's member id is among the members (the coordinator
    /// accepted it, whatever its assignment).
    pub member: bool,
}

/// Classic groups: the member count from the group list (this member's
/// assignment callback says "joined").
pub fn classic(consumer: &BaseConsumer<LoopContext>, group: &str) -> Option<GroupView> {
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_millis(500))
        .ok()?;
    let members = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| g.members().len())?;
    Some(GroupView {
        members,
        member: false,
    })
}

/// Consumer-protocol groups: ConsumerGroupDescribe, with this member's id
/// looked up among the members. None when the broker does not answer within
/// `timeout` or answers with an error.
pub fn describe(
    consumer: &BaseConsumer<LoopContext>,
    group: &str,
    timeout: Duration,
) -> Option<GroupView> {
    let name = CString::new(group).ok()?;
    let rk = consumer.client().native_ptr();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `rk` is the live handle of `consumer`, borrowed for this call;
    // the options, queue and event are created and destroyed here; every
    // pointer read from the event is used before the event is destroyed,
    // and the strings are copied out.
    unsafe {
        let me = {
            let p = rd::rd_kafka_memberid(rk);
            if p.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                rd::rd_kafka_mem_free(rk, p.cast());
                s
            }
        };
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        );
        if options.is_null() {
            return None;
        }
        let mut errbuf = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errbuf.as_mut_ptr(),
            errbuf.len(),
        );
        let queue = rd::rd_kafka_queue_new(rk);
        let mut groups = [name.as_ptr()];
        rd::rd_kafka_DescribeConsumerGroups(rk, groups.as_mut_ptr(), 1, options, queue);
        // A little beyond the request timeout: the result always comes.
        let event = rd::rd_kafka_queue_poll(queue, ms.saturating_add(500));
        let view = if event.is_null() {
            None
        } else {
            let view = read_view(event, &me);
            rd::rd_kafka_event_destroy(event);
            view
        };
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        view
    }
}

/// # Safety
/// `event` must be a live event from `rd_kafka_DescribeConsumerGroups`.
unsafe fn read_view(event: *mut rd::rd_kafka_event_t, me: &str) -> Option<GroupView> {
    let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
    if result.is_null()
        || rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    {
        return None;
    }
    let mut n = 0usize;
    let descs = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut n);
    if descs.is_null() || n == 0 {
        return None;
    }
    let desc = *descs;
    if desc.is_null() || !rd::rd_kafka_ConsumerGroupDescription_error(desc).is_null() {
        return None;
    }
    let members = rd::rd_kafka_ConsumerGroupDescription_member_count(desc);
    let member = !me.is_empty()
        && (0..members).any(|i| {
            let m = rd::rd_kafka_ConsumerGroupDescription_member(desc, i);
            if m.is_null() {
                return false;
            }
            let id = rd::rd_kafka_MemberDescription_consumer_id(m);
            !id.is_null() && CStr::from_ptr(id).to_bytes() == me.as_bytes()
        });
    Some(GroupView { members, member })
}
